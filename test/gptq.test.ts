/**
 * Calibrated quantization: the float64 Cholesky-inverse factor, GPTQ on one
 * weight (against round-to-nearest and against an unblocked float64 GPTQ
 * written here from the algorithm's definition), and quantizeModel with
 * calibration text on the real stories260K model, with calibration and
 * evaluation tokens disjoint.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  QLinear,
  QuantkitError,
  Tensor,
  cholInverseUpper,
  gptqQuantize,
  loadModelSync,
  perplexity,
  quantize,
  quantizeModel,
  saveQuantized,
  type QuantizedTensor,
} from '../lib/index.js';
import { addon } from '../lib/binding.js';
import { clampGroups, groupErrors, groupRefit } from '../lib/ops/linalg.js';
import { runJobs } from '../lib/ops/jobs.js';
import { GptqFactorCache, gptqFactorJobs, gptqJobs } from '../lib/quant/gptq.js';
import { readTextFile, tokenizeText } from '../lib/cli/load.js';
import { runCli, runCliJson } from './cli-run.js';
import { fixture, requireFixtures } from './fixtures.js';
import { randomF32, refParams, rne, rng } from './helpers.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qk-gptq-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Random SPD matrix A A^T + eps I, float64 [K, K]. */
function spd(K: number, seed: number, eps = 1e-3): Float64Array {
  const r = rng(seed);
  const A = Float64Array.from({ length: K * K }, () => r() - 0.5);
  const H = new Float64Array(K * K);
  for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) {
    let s = 0;
    for (let k = 0; k < K; k++) s += A[i * K + k]! * A[j * K + k]!;
    H[i * K + j] = s + (i === j ? eps : 0);
  }
  return H;
}

/** Correlated activations X [T, K] (a random mix of a few latent signals plus noise) and H = X^T X. */
function activations(T: number, K: number, seed: number): { x: Float32Array; h: Float64Array } {
  const r = rng(seed);
  const L = 6;
  const mix = Float64Array.from({ length: L * K }, () => r() - 0.5);
  const x = new Float32Array(T * K);
  for (let t = 0; t < T; t++) {
    const z = Array.from({ length: L }, () => r() * 2 - 1);
    for (let k = 0; k < K; k++) {
      let v = 0.05 * (r() - 0.5);
      for (let l = 0; l < L; l++) v += z[l]! * mix[l * K + k]!;
      x[t * K + k] = v * (1 + (k % 7)); // uneven channel scales
    }
  }
  const h = new Float64Array(K * K);
  for (let t = 0; t < T; t++) for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) h[i * K + j] += x[t * K + i]! * x[t * K + j]!;
  return { x, h };
}

/** ||X (W - Wq)^T||_F^2: how far the layer's outputs move on X. */
function outputError(x: Float32Array, T: number, K: number, w: Float32Array, q: QuantizedTensor): number {
  const d = q.dequantize().data;
  const N = w.length / K;
  let e = 0;
  for (let t = 0; t < T; t++) for (let n = 0; n < N; n++) {
    let s = 0;
    for (let k = 0; k < K; k++) s += x[t * K + k]! * (w[n * K + k]! - d[n * K + k]!);
    e += s * s;
  }
  return e;
}

/**
 * GPTQ from its definition, float64, unblocked, no activation order:
 * Hinv = (H + damp mean(diag) I)^-1 by Gauss-Jordan; for each column j:
 * quantize (group parameters from the updated weights at the group's first
 * column), err = (w_j - q_j) / Hinv[j, j], w_t -= err * Hinv[j, t] for t > j,
 * then Hinv <- Hinv - Hinv[:, j] Hinv[j, :] / Hinv[j, j] (the inverse of H
 * with column j removed). Returns the dequantized weights.
 */
function referenceGptq(w: Float32Array, N: number, K: number, h: Float64Array, G: number, asym: boolean, bits: 4 | 8): Float64Array {
  const qmin = bits === 4 ? (asym ? 0 : -8) : asym ? -128 : -127;
  const qmax = bits === 4 ? (asym ? 15 : 7) : 127;
  let mean = 0;
  for (let j = 0; j < K; j++) mean += h[j * K + j]!;
  mean /= K;
  // Gauss-Jordan inverse of the damped H
  const a = Array.from({ length: K }, (_, i) => [...Array.from({ length: K }, (_, j) => h[i * K + j]! + (i === j ? 0.01 * mean : 0)), ...Array.from({ length: K }, (_, j) => (i === j ? 1 : 0))]);
  for (let c = 0; c < K; c++) {
    const p = a[c]![c]!;
    for (let j = 0; j < 2 * K; j++) a[c]![j]! /= p;
    for (let i = 0; i < K; i++) if (i !== c) {
      const f = a[i]![c]!;
      for (let j = 0; j < 2 * K; j++) a[i]![j]! -= f * a[c]![j]!;
    }
  }
  const hinv = a.map((row) => row.slice(K));
  const W = Float64Array.from(w);
  const out = new Float64Array(N * K);
  const sc = new Float64Array(N), zp = new Float64Array(N);
  for (let j = 0; j < K; j++) {
    if (j % G === 0) {
      for (let n = 0; n < N; n++) {
        let mn = Infinity, mx = -Infinity;
        for (let k = j; k < Math.min(K, j + G); k++) (mn = Math.min(mn, W[n * K + k]!)), (mx = Math.max(mx, W[n * K + k]!));
        const p = refParams({ bits, asym, gran: 'group' }, Math.fround(mn), Math.fround(mx));
        sc[n] = p.scale;
        zp[n] = p.zp;
      }
    }
    const d = hinv[j]![j]!;
    for (let n = 0; n < N; n++) {
      const v = W[n * K + j]!;
      const q = Math.min(Math.max(rne(v / sc[n]!) + zp[n]!, qmin), qmax);
      const deq = (q - zp[n]!) * sc[n]!;
      out[n * K + j] = deq;
      const err = (v - deq) / d;
      for (let t = j + 1; t < K; t++) W[n * K + t] -= err * hinv[j]![t]!;
    }
    const col = hinv.map((row) => row[j]!);
    const rowj = hinv[j]!.slice();
    for (let i = 0; i < K; i++) for (let t = 0; t < K; t++) hinv[i]![t]! -= (col[i]! * rowj[t]!) / d;
  }
  return out;
}

describe('cholInverseUpper', () => {
  it('gives U upper triangular with H U^T U = I, for odd sizes', () => {
    for (const K of [0, 1, 2, 7, 40, 97]) {
      const H = spd(K, K + 1, 0.5);
      const U = cholInverseUpper(H, K);
      for (let i = 0; i < K; i++) for (let j = 0; j < i; j++) expect(U[i * K + j]).toBe(0);
      for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) {
          let hinv = 0; // (U^T U)[k, j]
          for (let p = 0; p <= Math.min(k, j); p++) hinv += U[p * K + k]! * U[p * K + j]!;
          s += H[i * K + k]! * hinv;
        }
        expect(Math.abs(s - (i === j ? 1 : 0)), `K=${K} [${i},${j}]`).toBeLessThan(1e-9);
      }
    }
  });

  it('refuses a matrix that is not positive definite, and bad arguments', () => {
    expect(() => cholInverseUpper(Float64Array.from([1, 2, 2, 1]), 2)).toThrow(expect.objectContaining({ code: 'ERR_NOT_POSITIVE_DEFINITE' }));
    expect(() => cholInverseUpper(Float64Array.from([NaN]), 1)).toThrow(QuantkitError);
    expect(() => cholInverseUpper(new Float32Array(4) as never, 2)).toThrow(TypeError);
    expect(() => cholInverseUpper(new Float64Array(3), 2)).toThrow(/'h' has 3 values/);
    expect(() => cholInverseUpper(new Float64Array(4), -1)).toThrow(RangeError);
  });
});

describe('the native column walk (addon.gptqWalk)', () => {
  // N = 2, K = 4, one group of 4: every argument the walk reads is checked before it runs
  const args = () => ({
    w: new Float32Array(8), u: Float64Array.from({ length: 16 }, (_, i) => (i % 5 === 0 ? 1 : 0)), col: Int32Array.from([0, 1, 2, 3]),
    scales: new Float32Array(2).fill(0.5), zps: new Int32Array(2), codes: new Int8Array(8), e: new Float32Array(8),
  });
  const call = (a: ReturnType<typeof args>, over: { G?: number; qmin?: number; p1?: number; b1?: number } = {}) =>
    addon.gptqWalk(a.w, 2, 4, a.u, a.col, a.scales, a.zps, over.G ?? 4, over.qmin ?? -8, 7, a.codes, a.e, 0, 0, over.p1 ?? 4, over.b1 ?? 4);
  it('quantizes with the scale of each column', () => {
    const a = args();
    a.w.set([0.5, -1, 1.5, 9, 0, 0.25, -0.75, -9]);
    call(a);
    expect(Array.from(a.codes)).toEqual([1, -2, 3, 7, 0, 0, -2, -8]); // 0.25 / 0.5 and -0.75 / 0.5 round half to even
  });
  it('refuses what would read or write out of bounds', () => {
    let a = args();
    a.col[2] = 4;
    expect(() => call(a)).toThrow(/'col' has a column outside/);
    a = args();
    a.u[5] = 0;
    expect(() => call(a)).toThrow(/'u' has a zero diagonal/);
    a = args();
    a.scales[1] = 0;
    expect(() => call(a)).toThrow(/'scales' must be finite and > 0/);
    expect(() => call(args(), { G: 0 })).toThrow(/'G' must be >= 1/);
    expect(() => call(args(), { G: 1 })).toThrow(/'scales' .*8/); // ceil(4 / 1) groups per row need 8 scales
    expect(() => call(args(), { qmin: -129 })).toThrow(RangeError);
    expect(() => call(args(), { p1: 5, b1: 4 })).toThrow(/b0 <= p0 <= p1 <= b1 <= K/);
    expect(() => call(args(), { b1: 5, p1: 5 })).toThrow(/'b1' must satisfy b0 <= b1 <= K/);
    // the lazy update: W[:, 2:] -= E · U[0:2, 2:] (U = I: nothing moves)
    const st = args();
    st.w.set([1, 2, 3, 4, 5, 6, 7, 8]);
    st.e.set([1, 1, 1, 1]);
    addon.gptqLazyUpdate(st.w, 2, 4, st.u, st.e.subarray(0, 4), 0, 2);
    expect(Array.from(st.w)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    st.u[2] = 0.5; // U[0, 2]
    addon.gptqLazyUpdate(st.w, 2, 4, st.u, st.e.subarray(0, 4), 0, 2);
    expect(Array.from(st.w)).toEqual([1, 2, 2.5, 4, 5, 6, 6.5, 8]);
    expect(() => addon.gptqLazyUpdate(st.w, 2, 4, st.u, st.e, 0, 2)).toThrow(/'e'/);
  });
});

/** r' H_g r of the definition: H_g's diagonal blocks of up to 128 columns, in float64. */
function refGroupError(x: Float32Array, L: number, n: number, c0: number, len: number, s: number, z: number, qmin: number, qmax: number, h: Float64Array, ldh: number, k0: number): number {
  const r = new Float64Array(len);
  for (let i = 0; i < len; i++) {
    const v = x[n * L + c0 + i]!;
    const q = Math.min(Math.max(rne(Math.fround(v / s)) + z, qmin), qmax);
    r[i] = v - Math.fround((q - z) * s);
  }
  let e = 0;
  for (let b0 = 0; b0 < len; b0 += 128)
    for (let i = b0; i < Math.min(len, b0 + 128); i++)
      for (let j = b0; j < Math.min(len, b0 + 128); j++) e += r[i]! * h[(k0 + c0 + i) * ldh + k0 + c0 + j]! * r[j]!;
  return e;
}

describe('the group-fit helpers (groupErrors, groupRefit, clampGroups)', () => {
  it("groupErrors is each group's output error r' H_g r: ties, a shorter last group, extreme codes, H in blocks of 128", () => {
    const r = rng(31);
    for (const [N, L, G, k0] of [[5, 37, 8, 3], [3, 300, 300, 0], [4, 150, 64, 20]] as const) {
      const gl = Math.ceil(L / G), ldh = k0 + L + 2;
      // multiples of 0.125 with scale 0.25: many values fall exactly half-way between codes
      const x = Float32Array.from({ length: N * L }, () => Math.round((r() * 2 - 1) * 24) / 8);
      const scales = Float32Array.from({ length: N * gl }, () => 0.25);
      const zps = Int32Array.from({ length: N * gl }, (_, i) => (i % 3) - 1);
      const h = spd(ldh, 41);
      for (const z of [zps, null]) {
        const got = groupErrors({ x, N, L, G, scales, zps: z, qmin: -8, qmax: 7, h, ldh, k0 });
        for (let n = 0; n < N; n++) for (let j = 0; j < gl; j++) {
          const want = refGroupError(x, L, n, j * G, Math.min(L, (j + 1) * G) - j * G, 0.25, z ? z[n * gl + j]! : 0, -8, 7, h, ldh, k0);
          expect(Math.abs(got[n * gl + j]! - want), `${L} ${G} ${n},${j}`).toBeLessThanOrEqual(1e-12 * (1 + Math.abs(want)) + 1e-9 * want);
        }
      }
    }
  });

  it('groupRefit lowers each error it changes, reports the error of the scales it keeps, and matches the float64 rounds of its definition', () => {
    const r = rng(33);
    const N = 6, L = 70, G = 32, k0 = 5, ldh = 80, gl = Math.ceil(L / G);
    const x = Float32Array.from({ length: N * L }, () => (r() - 0.5) * (r() < 0.05 ? 6 : 1));
    const h = spd(ldh, 43);
    for (const [qmin, qmax, asym] of [[0, 15, true], [-8, 7, false], [-127, 127, false]] as const) {
      const scales = new Float32Array(N * gl), zps = asym ? new Int32Array(N * gl) : null;
      for (let n = 0; n < N; n++) for (let j = 0; j < gl; j++) {
        let lo = 0, hi = 0;
        for (let i = j * G; i < Math.min(L, (j + 1) * G); i++) (lo = Math.min(lo, x[n * L + i]!)), (hi = Math.max(hi, x[n * L + i]!));
        const s = asym ? (hi - lo) / (qmax - qmin) : Math.max(-lo, hi) / qmax;
        scales[n * gl + j] = s;
        if (zps) zps[n * gl + j] = Math.round(-lo / s);
      }
      const f = { x, N, L, G, scales: scales.slice(), zps, qmin, qmax, h, ldh, k0 };
      const err0 = groupErrors(f);
      const err = err0.slice();
      groupRefit(f, 10, err);
      expect(groupErrors(f)).toEqual(err);
      let changed = 0;
      for (let i = 0; i < N * gl; i++) {
        expect(err[i]!).toBeLessThanOrEqual(err0[i]!);
        if (f.scales[i] !== scales[i]) changed++;
      }
      expect(changed, `${qmin}..${qmax}`).toBeGreaterThan(0);
      // the definition, in float64: codes at s, then s = (d' H x) / (d' H d), kept while the error falls
      let same = 0;
      for (let n = 0; n < N; n++) for (let j = 0; j < gl; j++) {
        const c0 = j * G, len = Math.min(L, c0 + G) - c0, z = zps ? zps[n * gl + j]! : 0;
        let s = scales[n * gl + j]!, e = refGroupError(x, L, n, c0, len, s, z, qmin, qmax, h, ldh, k0);
        for (let round = 0; round < 10; round++) {
          let num = 0, den = 0;
          const d = new Float64Array(len);
          for (let i = 0; i < len; i++) d[i] = Math.min(Math.max(rne(Math.fround(x[n * L + c0 + i]! / s)) + z, qmin), qmax) - z;
          for (let i = 0; i < len; i++) for (let k = 0; k < len; k++) {
            const hik = h[(k0 + c0 + i) * ldh + k0 + c0 + k]!;
            (num += d[i]! * hik * x[n * L + c0 + k]!), (den += d[i]! * hik * d[k]!);
          }
          const s2 = Math.fround(num / den);
          if (!(s2 > 0) || s2 === s) break;
          const e2 = refGroupError(x, L, n, c0, len, s2, z, qmin, qmax, h, ldh, k0);
          if (!(e2 < e)) break;
          (s = s2), (e = e2);
        }
        if (s === f.scales[n * gl + j]) same++;
        else expect(Math.abs(s - f.scales[n * gl + j]!) / s, `${n},${j}`).toBeLessThan(1e-5);
      }
      expect(same, `${qmin}..${qmax}`).toBeGreaterThanOrEqual(N * gl - 1);
    }
  });

  it('clampGroups clamps each group to c times its bounds, and the helpers check their arguments', () => {
    const N = 5, L = 37, G = 8, gl = Math.ceil(L / G);
    const r = rng(31);
    const x = Float32Array.from({ length: N * L }, () => Math.round((r() * 2 - 1) * 24) / 8);
    const lo = Float32Array.from({ length: N * gl }, (_, i) => -1 - (i % 4)), hi = Float32Array.from({ length: N * gl }, (_, i) => 0.5 + (i % 5));
    const out = new Float32Array(N * L);
    clampGroups(x, N, L, G, lo, hi, 0.85, out);
    for (let n = 0; n < N; n++) for (let i = 0; i < L; i++) {
      const j = Math.floor(i / G);
      expect(out[n * L + i]).toBe(Math.fround(Math.min(Math.max(x[n * L + i]!, lo[n * gl + j]! * 0.85), hi[n * gl + j]! * 0.85)));
    }
    const h = spd(L, 3);
    const f = { x, N, L, G, scales: Float32Array.from({ length: N * gl }, () => 0.25), zps: null, qmin: -8, qmax: 7, h, ldh: L, k0: 0 };
    expect(() => groupErrors({ ...f, scales: new Float32Array(N * gl) })).toThrow(/'scales' must be finite and > 0/);
    expect(() => groupErrors({ ...f, G: 0 })).toThrow(/'G' must be an integer >= 1/);
    expect(() => groupErrors({ ...f, h: new Float64Array(3) })).toThrow(RangeError);
    expect(() => groupErrors({ ...f, k0: 1 })).toThrow(/'k0' \+ L must be <= ldh/);
    expect(() => groupRefit({ ...f, qmin: 9 }, 3, new Float64Array(N * gl))).toThrow(/'qmin' and qmax/);
    expect(() => groupRefit(f, 3, new Float64Array(2))).toThrow(/'err'/);
    expect(() => clampGroups(x, N, L, G, lo, hi, NaN, out)).toThrow(/'c' must be finite/);
    expect(() => clampGroups(x, N, L, G, lo, hi.subarray(1), 1, out)).toThrow(RangeError);
  });
});

describe('gptqQuantize', () => {
  const cases = [
    { bits: 4, scheme: 'asymmetric', groupSize: 32 },
    { bits: 4, scheme: 'symmetric', groupSize: 32 },
    { bits: 4, scheme: 'asymmetric', groupSize: 16 },
    { bits: 8, scheme: 'symmetric', groupSize: undefined },
    { bits: 8, scheme: 'asymmetric', groupSize: 32 },
  ] as const;

  it('with uncorrelated inputs (H = I) and no clipping search it is round-to-nearest: the same codes and scales as quantize()', () => {
    const N = 9, K = 72; // 72 = 2 x 32 + 8: a shorter last group
    const w = new Tensor('f32', [N, K], randomF32(N * K, 3, -1, 1));
    const I = new Float64Array(K * K);
    for (let k = 0; k < K; k++) I[k * K + k] = 1;
    for (const c of cases) {
      for (const actOrder of [false, true]) {
        const g = gptqQuantize(w, I, { ...c, actOrder, clip: false });
        const r = quantize(w, { bits: c.bits, scheme: c.scheme, ...(c.groupSize ? { granularity: 'group', groupSize: c.groupSize } : { granularity: 'channel' }) });
        const label = `${JSON.stringify(c)} actOrder=${actOrder}`;
        expect(Array.from(g.data), label).toEqual(Array.from(r.data));
        expect(Array.from(g.scales), label).toEqual(Array.from(r.scales));
        expect(g.zeroPoints && Array.from(g.zeroPoints), label).toEqual(r.zeroPoints && Array.from(r.zeroPoints));
        expect([g.granularity, g.groupSize], label).toEqual([r.granularity, r.groupSize]);
      }
    }
  });

  it('on correlated inputs it moves the outputs less than round-to-nearest, and follows the float64 definition', () => {
    const N = 12, K = 80, T = 400;
    const { x, h } = activations(T, K, 5);
    const w = new Tensor('f32', [N, K], randomF32(N * K, 6, -1, 1));
    for (const c of cases) {
      const rtn = quantize(w, { bits: c.bits, scheme: c.scheme, ...(c.groupSize ? { granularity: 'group', groupSize: c.groupSize } : { granularity: 'channel' }) });
      const eR = outputError(x, T, K, w.data, rtn);
      for (const actOrder of [false, true]) {
        for (const blockSize of [1, 16, 128]) {
          const g = gptqQuantize(w, h, { ...c, actOrder, blockSize });
          const eG = outputError(x, T, K, w.data, g);
          expect(eG, `${JSON.stringify(c)} actOrder=${actOrder} B=${blockSize}: GPTQ ${eG} vs RTN ${eR}`).toBeLessThan(0.8 * eR);
        }
      }
      // the unblocked float64 GPTQ of the definition: the same weights, up to
      // a few codes that f32 rounding moves across a rounding boundary
      const ref = referenceGptq(w.data, N, K, h, c.groupSize ?? K, c.scheme === 'asymmetric', c.bits);
      const got = gptqQuantize(w, h, { ...c, actOrder: false, clip: false }).dequantize().data;
      let differ = 0;
      for (let i = 0; i < N * K; i++) if (Math.abs(got[i]! - ref[i]!) > 1e-5 * (1 + Math.abs(ref[i]!))) differ++;
      expect(differ / (N * K), JSON.stringify(c)).toBeLessThan(0.02);
    }
  });

  it('the group fit: with H = I each group keeps a range and scale of less rounding error than min/max, never more', () => {
    const N = 16, K = 96;
    // heavy-tailed rows: a few large values make the min/max range coarse
    const r = rng(11);
    const w = new Tensor('f32', [N, K], Float32Array.from({ length: N * K }, () => (r() - 0.5) * (r() < 0.04 ? 8 : 1)));
    const I = new Float64Array(K * K);
    for (let k = 0; k < K; k++) I[k * K + k] = 1;
    for (const c of cases) {
      const plain = gptqQuantize(w, I, { ...c, clip: false, actOrder: false }).dequantize().data;
      const clipped = gptqQuantize(w, I, { ...c, actOrder: false });
      const d = clipped.dequantize().data;
      const G = c.groupSize ?? K;
      let better = 0;
      for (let n = 0; n < N; n++) for (let k0 = 0; k0 < K; k0 += G) {
        let eP = 0, eC = 0;
        for (let k = k0; k < Math.min(K, k0 + G); k++) (eP += (plain[n * K + k]! - w.data[n * K + k]!) ** 2), (eC += (d[n * K + k]! - w.data[n * K + k]!) ** 2);
        expect(eC, JSON.stringify(c)).toBeLessThanOrEqual(eP * (1 + 1e-6));
        if (eC < eP * 0.999) better++;
      }
      if (c.bits === 4) expect(better, JSON.stringify(c)).toBeGreaterThan(0);
    }
  });

  it('gives an input that is always zero a zero weight, and checks its arguments', () => {
    const N = 4, K = 32;
    const { h } = activations(64, K, 9);
    for (let k = 0; k < K; k++) (h[5 * K + k] = 0), (h[k * K + 5] = 0);
    const w = new Tensor('f32', [N, K], randomF32(N * K, 10, -1, 1));
    const d = gptqQuantize(w, h, { bits: 4, scheme: 'asymmetric', groupSize: 32 }).dequantize().data;
    for (let n = 0; n < N; n++) expect(d[n * K + 5]).toBe(0);
    expect(() => gptqQuantize(w, new Float64Array(3), { bits: 4, scheme: 'asymmetric' })).toThrow(/'h' must be a Float64Array of K \* K = 1024/);
    expect(() => gptqQuantize(w, h, { bits: 3 as never, scheme: 'asymmetric' })).toThrow(/'options.bits'/);
    expect(() => gptqQuantize(w, h, { bits: 4, scheme: 'asymmetric', groupSize: 7 })).toThrow(/'options.groupSize'/);
    expect(() => gptqQuantize(w, h, { bits: 4, scheme: 'asymmetric', damp: -1 })).toThrow(/'options.damp'/);
    expect(() => gptqQuantize(new Tensor('f32', [K], new Float32Array(K)) as never, h, { bits: 4, scheme: 'asymmetric' })).toThrow(TypeError);
  });
});

describe('GptqFactorCache (one factor for the layers that read one input)', () => {
  const K = 40, N = 12;
  const h = spd(K, 21);
  const w = new Tensor('f32', [N, K], randomF32(N * K, 22, -1, 1));
  const o = { bits: 4, scheme: 'asymmetric', groupSize: 16 } as const;

  it('hands the factor out again for equal values, makes a new one otherwise, and gives gptqQuantize\'s bits either way', () => {
    const cache = new GptqFactorCache(0.01, true);
    const f1 = runJobs(cache.get(h, K));
    expect(runJobs(cache.get(h.slice(), K))).toBe(f1); // another array, the same values
    const h2 = h.slice();
    h2[K + 3] += 1e-12; // one value differs (symmetry aside: only its values matter)
    const f2 = runJobs(cache.get(h2, K));
    expect(f2).not.toBe(f1);
    expect([cache.made, cache.reused]).toEqual([2, 1]);
    const plain = gptqQuantize(w, h, o);
    const shared = runJobs(gptqJobs(w, h.slice(), o, 'gptqQuantize', f1));
    expect(shared.data).toEqual(plain.data);
    expect(shared.scales).toEqual(plain.scales);
    expect(shared.zeroPoints).toEqual(plain.zeroPoints);
  });

  it('refuses a factor made for other options', () => {
    const f = runJobs(gptqFactorJobs(h, K, 0.01, true));
    expect(() => runJobs(gptqJobs(w, h, { ...o, damp: 0.1 }, 'gptqQuantize', f))).toThrow(/'factor' was made for K 40, damp 0.01, actOrder true/);
    expect(() => runJobs(gptqJobs(w, h, { ...o, actOrder: false }, 'gptqQuantize', f))).toThrow(RangeError);
  });
});

const haveStories = requireFixtures('stories260K/model.safetensors', 'stories260K/config.json', 'text/tinystories-head.txt');

describe.skipIf(!haveStories)('quantizeModel with calibration (stories260K; calibration and evaluation tokens disjoint)', () => {
  const MODEL = fixture('stories260K');
  const TEXT = fixture('text', 'tinystories-head.txt');
  const load = () => loadModelSync(MODEL);
  const all = () => tokenizeText(load().tokenizer!, readTextFile(TEXT));

  it('GPTQ beats round-to-nearest at int4 g32; the checkpoint records it and reloads bit-identically', async () => {
    const tokens = all();
    const cal = tokens.slice(0, 4096);
    const ev = tokens.slice(4096, 4096 + 8192);
    const rtn = load().model;
    quantizeModel(rtn, { weights: 'int4' });
    const g = load().model;
    const done: string[] = [];
    const s = quantizeModel(g, { weights: 'int4', calibration: { tokens: cal }, onProgress: (_d, _t, name) => done.push(name) });
    expect(s.config.method).toBe('gptq');
    expect(s.replaced).toHaveLength(35);
    expect(done).toEqual(s.replaced);
    expect(s.kept).toEqual(['lm_head']);
    const pR = perplexity(rtn, ev, { context: 256 }).ppl;
    const pG = perplexity(g, ev, { context: 256 }).ppl;
    console.log(`stories260K int4 asym g32 on ${ev.length} held-out tokens: RTN ${pR.toFixed(4)}, GPTQ (4,096 calibration tokens) ${pG.toFixed(4)}`);
    expect(pG).toBeLessThan(pR);
    const out = path.join(tmp, 'gptq-ckpt');
    await saveQuantized(g, s, [], out, JSON.parse(fs.readFileSync(path.join(MODEL, 'config.json'), 'utf8')));
    expect(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).quantization_config.method).toBe('gptq');
    const back = loadModelSync(out).model;
    const t = ev.slice(0, 64);
    expect(back.forward(t, back.createCache()).data).toEqual(g.forward(t, g.createCache()).data);
  });

  it('refuses bad calibration settings before changing anything', () => {
    const m = load().model;
    expect(() => quantizeModel(m, { weights: 'int4', calibration: { tokens: [1] } })).toThrow(/'options.calibration.tokens' must be an array of at least 2/);
    expect(() => quantizeModel(m, { weights: 'int4', calibration: { tokens: [1, 2, 3], context: 100000 } })).toThrow(/'options.calibration.context' must be an integer in \[2, 512\]/);
    expect(() => quantizeModel(m, { weights: 'int4', method: 'gptq' })).toThrow(/'gptq' needs calibration data/);
    expect(() => quantizeModel(m, { weights: 'int8', granularity: 'tensor', calibration: { tokens: [1, 2, 3] } })).toThrow(/'tensor' is not supported with method 'gptq'/);
    expect(() => quantizeModel(m, { weights: 'int4', method: 'awq' })).toThrow(/'awq' needs calibration data/);
    expect(() => quantizeModel(m, { weights: 'int4', method: 'qat' as never })).toThrow(/'options.method' must be 'rtn', 'gptq', 'awq', 'awq\+gptq'/);
    expect([...m.namedModules()].some(([, x]) => x instanceof QLinear)).toBe(false);
  });

  it('through the CLI: quantize --calib, and ppl refuses to calibrate on the text it evaluates', async () => {
    const text = readTextFile(TEXT);
    const cut = text.indexOf('\n\n', text.length / 5);
    const calib = path.join(tmp, 'calib.txt');
    const evalText = path.join(tmp, 'eval.txt');
    fs.writeFileSync(calib, text.slice(0, cut));
    fs.writeFileSync(evalText, text.slice(cut));
    const out = path.join(tmp, 'cli-gptq');
    const q = await runCliJson<{ quantization: string }>(['quantize', MODEL, '--out', out, '--weights', 'int4', '--calib', calib, '--calib-tokens', '2048']);
    expect(q.quantization).toBe('int4 asym g32 GPTQ');
    expect(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).quantization_config.method).toBe('gptq');
    const same = await runCli(['ppl', MODEL, '--text', evalText, '--weights', 'int4', '--calib', evalText]);
    expect(same.code).toBe(1);
    expect(same.err).toMatch(/--calib and --text name the same file/);
    const ok = await runCliJson<{ weights: string; ppl: number }>(['ppl', MODEL, '--text', evalText, '--max-tokens', '4096', '--weights', 'int4', '--calib', calib, '--calib-tokens', '2048']);
    expect(ok.weights).toBe('int4 asym g32 GPTQ');
    expect(Number.isFinite(ok.ppl)).toBe(true);
    // report: a row per calibrated method after each round-to-nearest one
    const rep = path.join(tmp, 'report-gptq');
    const r = await runCli(['report', MODEL, '--out', rep, '--text', evalText, '--max-tokens', '512', '--max-new-tokens', '4', '--calib', calib, '--calib-tokens', '1024']);
    expect(r.code, r.err).toBe(0);
    type Row = { label: string; outputSqnrByMethod?: { name: string; sqnrDb: Record<string, number> }[]; layers?: { name: string; output: { sqnrDb: number } }[] };
    const j = JSON.parse(fs.readFileSync(path.join(rep, 'report.json'), 'utf8')) as { results: Row[] };
    const methods = (f: string) => [f, `${f} GPTQ`, `${f} AWQ`, `${f} AWQ+GPTQ`];
    expect(j.results.map((x) => x.label)).toEqual(['fp32', ...methods('int8 sym per-channel'), ...methods('int4 asym g32')]);
    // and a column per method in the per-layer output error of each round-to-nearest config
    const int4 = j.results.find((x) => x.label === 'int4 asym g32')!;
    expect(int4.outputSqnrByMethod!.map((l) => l.name)).toEqual(int4.layers!.map((l) => l.name));
    for (const [i, l] of int4.outputSqnrByMethod!.entries()) {
      expect(Object.keys(l.sqnrDb)).toEqual(['rtn', 'gptq', 'awq', 'awq+gptq']);
      expect(l.sqnrDb.rtn, l.name).toBe(int4.layers![i]!.output.sqnrDb); // the same figure as the full table's
      for (const v of Object.values(l.sqnrDb)) expect(v, l.name).toBeGreaterThan(5);
    }
    // calibration lowers the output error of most layers (each layer on its own, float inputs)
    const better = int4.outputSqnrByMethod!.filter((l) => l.sqnrDb.gptq! > l.sqnrDb.rtn!).length;
    expect(better).toBeGreaterThan(int4.outputSqnrByMethod!.length / 2);
    expect(fs.readFileSync(path.join(rep, 'report.md'), 'utf8')).toMatch(/### Output SQNR by method, int4 asym g32\n[^]*rtn Y SQNR dB +gptq Y SQNR dB +awq Y SQNR dB +awq\+gptq Y SQNR dB/);
  });
});
