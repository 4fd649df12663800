/**
 * Dynamic W8A8 and LLM.int8() through QLinear, at every ISA: bit-exact
 * against the spec computed here in JS (per-row activation quantization,
 * exact integer sums, ((acc * sx) * sw) + bias in float), thread-count
 * independence, and the LLM.int8() accuracy claim with injected outliers.
 */
import { describe, expect, it } from 'vitest';
import { Linear, QLinear, QuantkitError, Tensor, availableIsas, quantize, selectIsa, setThreads } from '../lib/index.js';
import { randomF32, refQuantize, rng, restoreRuntimeAfterAll } from './helpers.js';

const ISAS = availableIsas();
const { threads: startThreads } = restoreRuntimeAfterAll();

/** The W8A8 spec: activations per row like the int8 symmetric per-channel quantizer. */
function refW8A8(x: Float32Array, M: number, K: number, wq: Int8Array, sw: Float32Array, N: number, bias?: Float32Array): Float32Array {
  const qa = refQuantize(x, M, K, { bits: 8, asym: false, gran: 'channel' });
  const y = new Float32Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let acc = 0;
      for (let k = 0; k < K; k++) acc += qa.codes[m * K + k]! * wq[n * K + k]!;
      let v = Math.fround(Math.fround(acc * qa.scales[m]!) * sw[n]!);
      if (bias) v = Math.fround(v + bias[n]!);
      y[m * N + n] = v;
    }
  }
  return y;
}

function float64(x: Float32Array, M: number, K: number, w: Float32Array, N: number): Float64Array {
  const y = new Float64Array(M * N);
  for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
    let s = 0;
    for (let k = 0; k < K; k++) s += x[m * K + k]! * w[n * K + k]!;
    y[m * N + n] = s;
  }
  return y;
}

function maxErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let e = 0;
  for (let i = 0; i < a.length; i++) e = Math.max(e, Math.abs(a[i]! - b[i]!));
  return e;
}

describe.each(ISAS)('W8A8 at ISA %s', (level) => {
  it('matches the spec bit for bit on odd sizes', () => {
    selectIsa(level);
    for (const K of [1, 3, 8, 9, 31, 33, 64, 65, 127, 300]) {
      for (const [M, N] of [[1, 1], [1, 17], [3, 7], [4, 33], [5, 3], [17, 65], [33, 9]] as const) {
        const w = new Tensor('f32', [N, K], randomF32(N * K, K + N));
        const bias = (M + K) % 2 ? new Tensor('f32', [N], randomF32(N, 3)) : null;
        const lin = QLinear.fromLinear(new Linear(w, bias), { activations: 'int8' });
        const x = randomF32(M * K, K * M, -3, 3);
        const y = lin.forward(new Tensor('f32', [M, K], x));
        const want = refW8A8(x, M, K, lin.qweight.data as Int8Array, lin.qweight.scales, N, bias?.data);
        expect(Array.from(y.data), `${level} M=${M} N=${N} K=${K}`).toEqual(Array.from(want));
        // LLM.int8 with no column reaching the threshold is exactly W8A8.
        const llm = new QLinear(lin.qweight, bias, { activations: 'llm.int8', threshold: 100 });
        expect(Array.from(llm.forward(new Tensor('f32', [M, K], x)).data)).toEqual(Array.from(want));
        expect(llm.lastOutlierColumns).toBe(0);
      }
    }
  });

  it('handles zero rows, constant rows and extreme codes', () => {
    selectIsa(level);
    const K = 70, N = 5, M = 4;
    const wv = Float32Array.from({ length: N * K }, (_, i) => (i % 2 ? 1 : -1) * (1 + (i % 3)));
    const lin = QLinear.fromLinear(new Linear(new Tensor('f32', [N, K], wv)), { activations: 'int8' });
    const x = new Float32Array(M * K);
    x.fill(0.5, K, 2 * K); // constant row
    for (let k = 0; k < K; k++) x[2 * K + k] = k % 2 ? 1e30 : -1e30; // huge
    for (let k = 0; k < K; k++) x[3 * K + k] = -1e-40; // subnormal, all negative
    const y = lin.forward(new Tensor('f32', [M, K], x));
    expect(Array.from(y.data)).toEqual(Array.from(refW8A8(x, M, K, lin.qweight.data as Int8Array, lin.qweight.scales, N)));
    expect(Array.from(y.data.subarray(0, N))).toEqual([0, 0, 0, 0, 0]);
  });
});

describe('LLM.int8()', () => {
  const K = 1024, N = 64, M = 16;
  const wv = randomF32(N * K, 41, -0.1, 0.1);
  const w = new Tensor('f32', [N, K], wv);
  const q = quantize(w); // int8 symmetric per channel
  const wdeq = q.dequantize().data;

  it('is >= 10x more accurate than W8A8 with outlier columns, and equal without', () => {
    const r = rng(5);
    for (const frac of [0.001, 0.005, 0.01]) {
      const x = randomF32(M * K, 42 + frac * 1000, -1, 1);
      const nOut = Math.max(1, Math.round(frac * K));
      const cols = new Set<number>();
      while (cols.size < nOut) cols.add(Math.floor(r() * K));
      for (const c of cols) for (let m = 0; m < M; m++) x[m * K + c] = (r() < 0.5 ? -1 : 1) * (20 + 40 * r());
      const exact = float64(x, M, K, wdeq, N);
      const xt = new Tensor('f32', [M, K], x);
      const w8 = new QLinear(q, null, { activations: 'int8' }).forward(xt).data;
      const llm = new QLinear(q, null, { activations: 'llm.int8' });
      const yl = llm.forward(xt).data;
      expect(llm.lastOutlierColumns).toBe(nOut);
      const e8 = maxErr(w8, exact), el = maxErr(yl, exact);
      expect(el * 10, `outlier fraction ${frac}: W8A8 error ${e8}, LLM.int8 error ${el}`).toBeLessThan(e8);
      // threshold 0 disables the decomposition.
      expect(Array.from(new QLinear(q, null, { activations: 'llm.int8', threshold: 0 }).forward(xt).data)).toEqual(Array.from(w8));
    }
    const plain = new Tensor('f32', [M, K], randomF32(M * K, 7, -1, 1));
    expect(Array.from(new QLinear(q, null, { activations: 'llm.int8' }).forward(plain).data)).toEqual(
      Array.from(new QLinear(q, null, { activations: 'int8' }).forward(plain).data),
    );
  });

  it('gives identical results with 1, 2 and 7 threads, sync and async', async () => {
    const x = randomF32(33 * K, 9, -1, 1);
    x[5] = 30;
    const xt = new Tensor('f32', [33, K], x);
    for (const mode of ['int8', 'llm.int8'] as const) {
      const l = new QLinear(q, null, { activations: mode });
      const outs = [1, 2, 7].map((n) => {
        setThreads(n);
        return Array.from(l.forward(xt).data);
      });
      setThreads(startThreads);
      expect(outs[1]).toEqual(outs[0]);
      expect(outs[2]).toEqual(outs[0]);
      expect(Array.from((await l.forwardAsync(xt)).data)).toEqual(outs[0]);
    }
  });

  it('rejects unsupported weights and bad input', () => {
    const asym = quantize(w, { scheme: 'asymmetric' });
    const err = (() => {
      try {
        new QLinear(asym, null, { activations: 'int8' });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(QuantkitError);
    expect((err as QuantkitError).code).toBe('ERR_UNSUPPORTED');
    expect(() => new QLinear(quantize(w, { bits: 4 }), null, { activations: 'llm.int8' })).toThrow(/int8 symmetric per-channel/);
    expect(() => new QLinear(q, null, { activations: 'fp8' as 'int8' })).toThrow(/options.activations/);
    expect(() => new QLinear(q, null, { activations: 'llm.int8', threshold: -1 })).toThrow(/options.threshold/);
    expect(() => new QLinear(q, null, { activations: 'int8', threshold: 3 })).toThrow(/only applies/);
    expect(() => QLinear.fromLinear(new Linear(w), { bits: 4, activations: 'llm.int8' })).toThrow(/options.bits/);
    const l = new QLinear(q, null, { activations: 'int8' });
    const x = new Float32Array(K);
    x[17] = NaN;
    expect(() => l.forward(new Tensor('f32', [1, K], x))).toThrow(/NaN at index 17/);
    // from 7 rows (AVX-512) the activations are quantized and packed per block of 16
    // rows: the first non-finite value is still the one named, whichever
    // block (and thread) finds it
    const xs = new Float32Array(40 * K);
    xs[37 * K + 2] = Infinity;
    xs[20 * K + 5] = -Infinity;
    expect(() => l.forward(new Tensor('f32', [40, K], xs))).toThrow(new RegExp(`-Infinity at index ${20 * K + 5}`));
    expect(() => l.forward(new Tensor('f32', [1, K + 1], new Float32Array(K + 1)))).toThrow(/'x' has last dimension/);
    // A hand-made int8 weight holding -128 is refused (the kernels' range is [-127, 127]).
    const bad = new Int8Array(N * K);
    bad[3] = -128;
    expect(() => new QLinear(new (q.constructor as typeof import('../lib/index.js').QuantizedTensor)({ bits: 8, scheme: 'symmetric', granularity: 'channel', shape: [N, K], data: bad, scales: q.scales }), null, { activations: 'int8' })).toThrow(/-128/);
  });
});
