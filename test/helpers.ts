/**
 * Test-only helpers: a seeded PRNG, f16/bf16 encoders, and the quantization
 * formulas written out independently of lib/ and native/ (the spec as the
 * README states it), so tests compare the kernels against a second
 * implementation rather than against themselves.
 */

import { afterAll } from 'vitest';
import { getThreads, isa, selectIsa, setThreads } from '../lib/index.js';

/** Tests that switch the ISA or thread count put the process back as they found it. */
export function restoreRuntimeAfterAll(): { isa: ReturnType<typeof isa>; threads: number } {
  const saved = { isa: isa(), threads: getThreads() };
  afterAll(() => {
    selectIsa(saved.isa);
    setThreads(saved.threads);
  });
  return saved;
}

/** mulberry32: small, seeded, good enough for test data. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Uniform values in [lo, hi). */
export function randomF32(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * r();
  return out;
}

export { bf16BitsToNumber, f16BitsToNumber, toBf16Bits, toF16Bits } from './half-floats.js';

/** Round half to even. */
export function rne(v: number): number {
  const r = Math.round(v);
  return Math.abs(v - Math.trunc(v)) === 0.5 ? 2 * Math.round(v / 2) : r;
}

export type RefSpec = { bits: 8 | 4 | 2; asym: boolean; gran: 'tensor' | 'channel' | 'group'; G?: number };

export function refRange(s: RefSpec): [number, number] {
  if (s.bits === 8) return s.asym ? [-128, 127] : [-127, 127];
  if (s.bits === 4) return s.asym ? [0, 15] : [-8, 7];
  return [0, 3];
}

const FLT_TRUE_MIN = 1.401298464324817e-45;

/** Scale and zero point of one block, as the README specifies them. */
export function refParams(s: RefSpec, mn: number, mx: number): { scale: number; zp: number } {
  const [qmin, qmax] = refRange(s);
  let scale: number;
  if (mn === mx) scale = mn === 0 ? 1 : Math.abs(mn);
  else if (!s.asym) scale = Math.fround(Math.max(Math.abs(mn), Math.abs(mx)) / qmax);
  else scale = Math.fround((Math.max(mx, 0) - Math.min(mn, 0)) / (qmax - qmin));
  if (scale === 0) scale = FLT_TRUE_MIN;
  if (!s.asym) return { scale, zp: 0 };
  const lo = Math.min(mn, 0);
  const z = rne(Math.fround(qmin - Math.fround(lo / scale)));
  return { scale, zp: Math.min(Math.max(z, qmin), qmax) };
}

/**
 * Index of the scale of element i of a [rows, K] tensor in groups of G:
 * ceil(K / G) groups per row, the last one shorter when G does not divide K.
 */
export function refGroupOf(i: number, K: number, G: number): number {
  return Math.floor(i / K) * Math.ceil(K / G) + Math.floor((i % K) / G);
}

/** Reference quantization of x [rows, K]: codes (unpacked), scales, zero points. */
export function refQuantize(x: Float32Array, rows: number, K: number, s: RefSpec) {
  const [qmin, qmax] = refRange(s);
  const G = s.gran === 'group' ? s.G! : K;
  const gpr = Math.ceil(K / G);
  const ng = s.gran === 'tensor' ? 1 : rows * gpr;
  const scales = new Float32Array(ng);
  const zps = new Int32Array(ng);
  const codes = new Int8Array(rows * K);
  const block = (start: number, len: number) => {
    let mn = Infinity, mx = -Infinity;
    for (let i = 0; i < len; i++) {
      mn = Math.min(mn, x[start + i]!);
      mx = Math.max(mx, x[start + i]!);
    }
    return refParams(s, mn, mx);
  };
  if (s.gran === 'tensor') {
    const p = block(0, rows * K);
    scales[0] = p.scale;
    zps[0] = p.zp;
  } else {
    for (let g = 0; g < ng; g++) {
      const r = Math.floor(g / gpr), k0 = (g % gpr) * G;
      const p = block(r * K + k0, Math.min(G, K - k0));
      scales[g] = p.scale;
      zps[g] = p.zp;
    }
  }
  for (let i = 0; i < rows * K; i++) {
    const g = s.gran === 'tensor' ? 0 : refGroupOf(i, K, G);
    const v = rne(Math.fround(x[i]! / scales[g]!)) + zps[g]!;
    codes[i] = Math.min(Math.max(v, qmin), qmax);
  }
  return { codes, scales, zps, G, K };
}

/** Reference dequantization of unpacked codes. */
export function refDequantize(codes: Int8Array, scales: Float32Array, zps: Int32Array | null, G: number, perTensor: boolean, K = G): Float32Array {
  const out = new Float32Array(codes.length);
  for (let i = 0; i < codes.length; i++) {
    const g = perTensor ? 0 : refGroupOf(i, K, G);
    out[i] = Math.fround((codes[i]! - (zps ? zps[g]! : 0)) * scales[g]!);
  }
  return out;
}
