/**
 * W4A8 (int4 weights, activations quantized to int8 per block of 32) through
 * QLinear, at every ISA: bit-exact against the spec computed here in JS on
 * the scalar reference, within float-rounding of it on the SIMD kernels
 * (they sum lanes in another order and take the +8 / zero-point offset out
 * in float), within the activation-rounding bound of a float64 product,
 * thread-count independence, the Promise form, and bad input.
 */
import { describe, expect, it } from 'vitest';
import { Linear, QLinear, QuantkitError, Tensor, availableIsas, quantize, selectIsa, setThreads, unpackInt4 } from '../lib/index.js';
import type { QuantizedTensor } from '../lib/index.js';
import { randomF32, refParams, rne, restoreRuntimeAfterAll } from './helpers.js';

const ISAS = availableIsas();
const { threads: startThreads } = restoreRuntimeAfterAll();

/** The weight codes q[n, k] (signed value, or u - z) and scales per group. */
function weightCodes(qw: QuantizedTensor): { q: Int32Array; s: Float32Array; G: number } {
  const [N, K] = qw.shape as [number, number];
  const asym = qw.scheme === 'asymmetric';
  const u = unpackInt4(qw.data as Uint8Array, [N, K], { signed: !asym });
  const G = qw.granularity === 'group' ? qw.groupSize : K;
  const perTensor = qw.granularity === 'tensor';
  const gpr = Math.ceil(K / G); // groups per row: the last one is shorter when G does not divide K
  const q = new Int32Array(N * K);
  const s = new Float32Array(N * gpr);
  for (let n = 0; n < N; n++) {
    for (let g = 0; g < gpr; g++) s[n * gpr + g] = perTensor ? qw.scales[0]! : qw.scales[n * gpr + g]!;
    for (let k = 0; k < K; k++) {
      const z = asym ? (perTensor ? qw.zeroPoints![0]! : qw.zeroPoints![n * gpr + Math.floor(k / G)]!) : 0;
      q[n * K + k] = u[n * K + k]! - z;
    }
  }
  return { q, s, G };
}

/** Activations per block of 32 (the last one shorter): scale and codes, as the README specifies. */
function quantizeBlocks(x: Float32Array, M: number, K: number): { xq: Int32Array; sx: Float32Array } {
  const nb = Math.ceil(K / 32);
  const xq = new Int32Array(M * K);
  const sx = new Float32Array(M * nb);
  for (let m = 0; m < M; m++) {
    for (let b = 0; b < nb; b++) {
      let amax = 0;
      for (let k = 32 * b; k < Math.min(K, 32 * b + 32); k++) amax = Math.max(amax, Math.abs(x[m * K + k]!));
      const s = refParams({ bits: 8, asym: false, gran: 'group' }, -amax, amax).scale;
      sx[m * nb + b] = s;
      for (let k = 32 * b; k < Math.min(K, 32 * b + 32); k++) {
        xq[m * K + k] = Math.min(127, Math.max(-127, rne(Math.fround(x[m * K + k]! / s))));
      }
    }
  }
  return { xq, sx };
}

/** The spec, in float32 steps: exact int sums per (group x block) segment, then acc += (s * sx) * d. */
function refW4A8(x: Float32Array, M: number, K: number, qw: QuantizedTensor, bias: Float32Array | null) {
  const N = qw.shape[0]!;
  const { q, s, G } = weightCodes(qw);
  const { xq, sx } = quantizeBlocks(x, M, K);
  const nb = Math.ceil(K / 32);
  const y = new Float32Array(M * N);
  const y64 = new Float64Array(M * N); // the same sum in float64
  const mag = new Float64Array(M * N); // sum of |terms| (for rounding bounds)
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let acc = 0, d = 0, e = 0, p = 0;
      for (let k = 0; k < K; k++) {
        d += q[n * K + k]! * xq[m * K + k]!;
        const sg = s[n * Math.ceil(K / G) + Math.floor(k / G)]!, sb = sx[m * nb + Math.floor(k / 32)]!;
        p += Math.abs(sg * sb * 16 * xq[m * K + k]!);
        if ((k + 1) % G === 0 || (k + 1) % 32 === 0 || k + 1 === K) {
          acc = Math.fround(acc + Math.fround(Math.fround(sg * sb) * d));
          e += sg * sb * d;
          d = 0;
        }
      }
      if (bias) {
        acc = Math.fround(acc + bias[n]!);
        e += bias[n]!;
        p += Math.abs(bias[n]!);
      }
      y[m * N + n] = acc;
      y64[m * N + n] = e;
      mag[m * N + n] = p;
    }
  }
  return { y, y64, mag };
}

function layer(N: number, K: number, seed: number, opts: { scheme?: 'symmetric' | 'asymmetric'; granularity?: 'group' | 'channel' | 'tensor'; groupSize?: number }, withBias: boolean) {
  const w = new Tensor('f32', [N, K], randomF32(N * K, seed));
  const bias = withBias ? new Tensor('f32', [N], randomF32(N, seed + 1)) : null;
  return QLinear.fromLinear(new Linear(w, bias), { bits: 4, activations: 'int8', ...opts });
}

describe.each(ISAS)('W4A8 at ISA %s', (level) => {
  it('follows the spec on odd sizes, group sizes and schemes', () => {
    selectIsa(level);
    const cases: [number, { scheme?: 'symmetric' | 'asymmetric'; granularity?: 'group' | 'channel' | 'tensor'; groupSize?: number }][] = [
      [64, { groupSize: 32 }],
      [96, { groupSize: 32, scheme: 'asymmetric' }],
      [160, { groupSize: 32 }],
      [192, { groupSize: 64 }],
      [256, { groupSize: 128, scheme: 'asymmetric' }],
      [384, { granularity: 'channel' }],
      [128, { granularity: 'tensor', scheme: 'asymmetric' }],
      [172, { groupSize: 4 }],
      [36, { groupSize: 6, scheme: 'asymmetric' }],
      [70, { granularity: 'channel' }],
      // a shorter last group: 172 = 5 x 32 + 12, 100 = 64 + 36, 300 = 2 x 128 + 44, 160 = 128 + 32, 200 = 4 x 48 + 8
      [172, { groupSize: 32 }],
      [100, { groupSize: 64, scheme: 'asymmetric' }],
      [300, { groupSize: 128 }],
      [160, { groupSize: 128, scheme: 'asymmetric' }],
      [200, { groupSize: 48 }],
    ];
    for (const [K, opts] of cases) {
      for (const [M, N] of [[1, 1], [1, 9], [3, 5], [4, 4], [5, 17], [9, 3]] as const) {
        const lin = layer(N, K, K + N, opts, (M + N) % 2 === 0);
        const x = randomF32(M * K, K * M + 1, -3, 3);
        const y = lin.forward(new Tensor('f32', [M, K], x)).data;
        const want = refW4A8(x, M, K, lin.qweight, lin.bias?.data ?? null);
        const label = `${level} M=${M} N=${N} K=${K} ${JSON.stringify(opts)}`;
        // With a shorter last group and G % 32 == 0 the driver sums the whole
        // groups and the last group as two products and adds them: within
        // float rounding of the spec's single k-ordered sum, not bit for bit.
        const split = opts.groupSize !== undefined && K % opts.groupSize !== 0 && opts.groupSize % 32 === 0;
        if (level === 'scalar' && !split) {
          expect(Array.from(y), label).toEqual(Array.from(want.y));
        } else {
          for (let i = 0; i < y.length; i++) {
            expect(Math.abs(y[i]! - want.y64[i]!), `${label} [${i}]`).toBeLessThanOrEqual(1e-6 * want.mag[i]! + 1e-30);
          }
        }
      }
    }
  });

  it('stays within the activation-rounding bound of a float64 product', () => {
    selectIsa(level);
    const [M, N, K] = [3, 40, 512];
    const lin = layer(N, K, 7, { groupSize: 32 }, true);
    const x = randomF32(M * K, 8, -2, 2);
    const y = lin.forward(new Tensor('f32', [M, K], x)).data;
    const wd = lin.qweight.dequantize().data;
    const b = lin.bias!.data;
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let ye = b[n]!, bound = 1e-5;
        for (let k = 0; k < K; k++) {
          ye += wd[n * K + k]! * x[m * K + k]!;
          let amax = 0;
          const b0 = Math.floor(k / 32) * 32;
          for (let j = b0; j < b0 + 32; j++) amax = Math.max(amax, Math.abs(x[m * K + j]!));
          bound += Math.abs(wd[n * K + k]!) * (amax / 127) * 0.5 * 1.0001;
        }
        expect(Math.abs(y[m * N + n]! - ye)).toBeLessThanOrEqual(bound);
      }
    }
  });

  it('gives the same result for every thread count and in its Promise form', async () => {
    selectIsa(level);
    const [N, K] = [300, 256];
    const lin = layer(N, K, 11, { groupSize: 64, scheme: 'asymmetric' }, true);
    // 6 rows: the rows kernel, 64-row tasks; 1 and 3 rows (decode): the
    // row-layout kernel, one range of rows per thread (150 -> 160 and 140)
    for (const lead of [[2, 3], [1], [3]]) {
      const M = lead.reduce((a, b) => a * b, 1);
      const x = new Tensor('f32', [...lead, K], randomF32(M * K, 12 + M, -4, 4));
      setThreads(1);
      const y1 = lin.forward(x);
      expect(y1.shape).toEqual([...lead, N]);
      for (const t of [2, 3]) {
        setThreads(t);
        expect(Array.from(lin.forward(x).data)).toEqual(Array.from(y1.data));
      }
      expect(Array.from((await lin.forwardAsync(x)).data)).toEqual(Array.from(y1.data));
    }
    setThreads(startThreads);
  });
});

describe('W4A8 options and bad input', () => {
  const w = new Tensor('f32', [8, 64], randomF32(8 * 64, 5));
  it('is QLinear with an int4 weight and activations int8', () => {
    const l = new QLinear(quantize(w, { bits: 4, scheme: 'asymmetric' }), null, { activations: 'int8' });
    expect(l.activations).toBe('int8');
    expect(l.forward(new Tensor('f32', [1, 64], randomF32(64, 6))).shape).toEqual([1, 8]);
    // LLM.int8 stays int8-only.
    expect(() => new QLinear(quantize(w, { bits: 4 }), null, { activations: 'llm.int8' })).toThrow(/int8 symmetric per-channel/);
    expect(() => QLinear.fromLinear(new Linear(w), { bits: 4, activations: 'llm.int8' })).toThrow(/options.bits/);
  });

  it('rejects non-finite input with a coded error, and an odd K', () => {
    const l = QLinear.fromLinear(new Linear(w), { bits: 4, activations: 'int8' });
    const x = new Float32Array(2 * 64);
    x[64 + 9] = -Infinity;
    let err: unknown;
    try {
      l.forward(new Tensor('f32', [2, 64], x));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(QuantkitError);
    expect((err as QuantkitError).code).toBe('ERR_NONFINITE');
    expect((err as Error).message).toMatch(/-Infinity at index 73/);
    expect(() => l.forward(new Tensor('f32', [1, 63], new Float32Array(63)))).toThrow(/'x' has last dimension/);
    const odd = quantize(new Tensor('f32', [2, 5], randomF32(10, 1)), { bits: 4, granularity: 'channel' });
    expect(() => new QLinear(odd, null, { activations: 'int8' })).toThrow(QuantkitError);
  });
});
