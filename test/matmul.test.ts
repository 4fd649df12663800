/**
 * matmul / Linear / QLinear at every ISA against a float64 product of the
 * dequantized weights. Tolerance: any summation order of K float products is
 * within (K + 1) * 2^-24 * sum_k |x_k w_k| of the exact sum (the standard
 * bound for recursive summation, which covers blocked and lane-split sums);
 * we allow twice that.
 */
import { describe, expect, it } from 'vitest';
import {
  Linear,
  QLinear,
  QuantkitError,
  Tensor,
  availableIsas,
  isa,
  matmul,
  quantize,
  selectIsa,
  setThreads,
  type QuantizeOptions,
  type QuantizedTensor,
} from '../lib/index.js';
import { bf16BitsToNumber, f16BitsToNumber, randomF32, rng, toBf16Bits, toF16Bits, restoreRuntimeAfterAll } from './helpers.js';

const ISAS = availableIsas();
const { isa: startIsa, threads: startThreads } = restoreRuntimeAfterAll();

const U = 2 ** -24;

/**
 * On AMX, int8/int4 weights with f32 activations run the prefill GEMM on
 * split-bf16 tiles: up to this much relative error per product on top of an
 * f32 sum's (native/kernels/kernels.h, kPanelDqRelErr).
 */
const AMX_SPLIT_BF16 = 4 / 65536;

/** Float64 reference of x · w^T + b and the error bound for each output (`extra`: a relative error per product on top). */
function reference(x: Float32Array, M: number, K: number, w: Float32Array, N: number, bias?: Float32Array, extra = 0) {
  const y = new Float64Array(M * N);
  const bound = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0, a = 0;
      for (let k = 0; k < K; k++) {
        const p = x[m * K + k]! * w[n * K + k]!;
        s += p;
        a += Math.abs(p);
      }
      const b = bias ? bias[n]! : 0;
      y[m * N + n] = s + b;
      bound[m * N + n] = 2 * (K + 2) * U * (a + Math.abs(b)) + extra * a + 1e-300;
    }
  }
  return { y, bound };
}

function expectClose(got: Float32Array, ref: { y: Float64Array; bound: Float64Array }, label: string) {
  expect(got.length).toBe(ref.y.length);
  for (let i = 0; i < got.length; i++) {
    const err = Math.abs(got[i]! - ref.y[i]!);
    if (!(err <= ref.bound[i]!)) {
      throw new Error(`${label}: y[${i}] = ${got[i]} but float64 gives ${ref.y[i]} (error ${err} > bound ${ref.bound[i]})`);
    }
  }
}

type WCase = { name: string; make: (w: Float32Array, N: number, K: number) => { weight: Tensor | QuantizedTensor; deq: Float32Array } };

function weightCases(K: number): WCase[] {
  const out: WCase[] = [
    { name: 'f32', make: (w, N) => ({ weight: new Tensor('f32', [N, K], w), deq: w }) },
    {
      name: 'f16',
      make: (w, N) => {
        const h = Uint16Array.from(w, toF16Bits);
        return { weight: new Tensor('f16', [N, K], h), deq: Float32Array.from(h, f16BitsToNumber) };
      },
    },
    {
      name: 'bf16',
      make: (w, N) => {
        const b = Uint16Array.from(w, toBf16Bits);
        return { weight: new Tensor('bf16', [N, K], b), deq: Float32Array.from(b, bf16BitsToNumber) };
      },
    },
  ];
  const q = (opts: QuantizeOptions): WCase['make'] => (w, N) => {
    const qt = quantize(new Tensor('f32', [N, K], w), opts);
    return { weight: qt, deq: qt.dequantize().data };
  };
  for (const scheme of ['symmetric', 'asymmetric'] as const) {
    out.push({ name: `int8 ${scheme} tensor`, make: q({ bits: 8, scheme, granularity: 'tensor' }) });
    out.push({ name: `int8 ${scheme} channel`, make: q({ bits: 8, scheme, granularity: 'channel' }) });
    if (K % 2 === 0) {
      out.push({ name: `int4 ${scheme} channel`, make: q({ bits: 4, scheme, granularity: 'channel' }) });
      out.push({ name: `int4 ${scheme} tensor`, make: q({ bits: 4, scheme, granularity: 'tensor' }) });
    }
    // Group sizes that divide K and ones that do not (each row's last group
    // is then shorter: the driver runs it as a second product).
    for (const G of [2, 6, 8, 32, 64, 128]) {
      if (G > 2 * K) continue;
      const tail = K % G ? ` (last group ${K % G})` : '';
      out.push({ name: `int8 ${scheme} g${G}${tail}`, make: q({ bits: 8, scheme, granularity: 'group', groupSize: G }) });
      if (K % 2 === 0) out.push({ name: `int4 ${scheme} g${G}${tail}`, make: q({ bits: 4, scheme, granularity: 'group', groupSize: G }) });
    }
  }
  return out;
}

function run(M: number, N: number, K: number, seed: number, label: string, withBias: boolean, wValues?: Float32Array, xValues?: Float32Array) {
  const x = xValues ?? randomF32(M * K, seed, -2, 2);
  const w = wValues ?? randomF32(N * K, seed + 1, -1, 1);
  const bias = withBias ? randomF32(N, seed + 2) : undefined;
  for (const c of weightCases(K)) {
    const { weight, deq } = c.make(w, N, K);
    // Values beyond a format's range (f16 tops out at 65504) become Inf there: not this test's subject.
    if (deq.some((v) => !Number.isFinite(v))) continue;
    const y = matmul(new Tensor('f32', [M, K], x), weight, bias ? new Tensor('f32', [N], bias) : undefined);
    expect(y.shape).toEqual([M, N]);
    const extra = isa() === 'amx' && c.name.startsWith('int') ? AMX_SPLIT_BF16 : 0;
    expectClose(y.data, reference(x, M, K, deq, N, bias, extra), `${label} ${c.name} M=${M} N=${N} K=${K}`);
  }
}

describe.each(ISAS)('matmul at ISA %s', (level) => {
  it('decode shapes (small M) on odd sizes', () => {
    selectIsa(level);
    for (const K of [1, 2, 3, 4, 5, 6, 7, 8, 9, 31, 33, 127, 128, 4097]) {
      for (const [M, N] of [[1, 1], [1, 7], [2, 17], [3, 33], [4, 5]] as const) run(M, N, K, K * 7 + M, level, (K + M) % 2 === 0);
    }
  });

  it('prefill shapes (large M) on odd sizes', () => {
    selectIsa(level);
    for (const K of [6, 33, 64, 130, 256]) {
      for (const [M, N] of [[5, 3], [7, 65], [17, 33], [33, 17], [130, 19]] as const) run(M, N, K, K * 3 + N, level, M % 2 === 1);
    }
  });

  it('edge values: zeros, huge, tiny, subnormal, all negative', () => {
    selectIsa(level);
    const K = 64, N = 9;
    for (const M of [1, 3, 20]) {
      const r = rng(M);
      const variants: [string, Float32Array, Float32Array][] = [
        ['zeros', new Float32Array(M * K), randomF32(N * K, 1)],
        ['zero weights', randomF32(M * K, 2), new Float32Array(N * K)],
        ['huge', Float32Array.from({ length: M * K }, () => (r() - 0.5) * 1e18), Float32Array.from({ length: N * K }, () => (r() - 0.5) * 1e18)],
        ['tiny', Float32Array.from({ length: M * K }, () => (r() - 0.5) * 1e-19), Float32Array.from({ length: N * K }, () => (r() - 0.5) * 1e-19)],
        ['subnormal weights', randomF32(M * K, 3), Float32Array.from({ length: N * K }, () => (r() - 0.5) * 1e-39)],
        ['all negative', Float32Array.from({ length: M * K }, () => -r() - 0.1), Float32Array.from({ length: N * K }, () => -r() - 0.1)],
      ];
      for (const [name, x, w] of variants) run(M, N, K, 5, `${level} ${name}`, true, w, x);
    }
  });
});

describe('matmul threads', () => {
  it('gives bit-identical results with 1, 2 and 7 threads', () => {
    selectIsa(startIsa);
    const K = 256, N = 301;
    const w = randomF32(N * K, 11);
    const weights: (Tensor | QuantizedTensor)[] = [
      new Tensor('f32', [N, K], w),
      quantize(new Tensor('f32', [N, K], w)),
      quantize(new Tensor('f32', [N, K], w), { bits: 4, scheme: 'asymmetric', groupSize: 32 }),
    ];
    for (const M of [1, 3, 64]) {
      const x = new Tensor('f32', [M, K], randomF32(M * K, 12));
      for (const wt of weights) {
        const outs = [1, 2, 7].map((n) => {
          setThreads(n);
          return Array.from(matmul(x, wt).data);
        });
        expect(outs[1]).toEqual(outs[0]);
        expect(outs[2]).toEqual(outs[0]);
      }
    }
    setThreads(startThreads);
  });
});

describe('Linear and QLinear', () => {
  const K = 64, N = 24;
  const w = new Tensor('f32', [N, K], randomF32(N * K, 21));
  const b = new Tensor('f32', [N], randomF32(N, 22));
  const lin = new Linear(w, b);

  it('forward works on [..., K] inputs', () => {
    const x = new Tensor('f32', [2, 3, K], randomF32(6 * K, 23));
    const y = lin.forward(x);
    expect(y.shape).toEqual([2, 3, N]);
    expectClose(y.data, reference(x.data, 6, K, w.data as Float32Array, N, b.data), 'Linear');
    expect(lin.inFeatures).toBe(K);
    expect(lin.outFeatures).toBe(N);
  });

  it('QLinear.fromLinear int8 and int4 stay close to the float layer', () => {
    const x = new Tensor('f32', [5, K], randomF32(5 * K, 24));
    const yf = lin.forward(x).data;
    for (const [opts, tol] of [[{ bits: 8 }, 0.02], [{ bits: 4, groupSize: 32 }, 0.15]] as const) {
      const ql = QLinear.fromLinear(lin, opts);
      expect(ql.qweight.bits).toBe(opts.bits);
      const yq = ql.forward(x).data;
      let num = 0, den = 0;
      for (let i = 0; i < yf.length; i++) {
        num += (yq[i]! - yf[i]!) ** 2;
        den += yf[i]! ** 2;
      }
      expect(Math.sqrt(num / den)).toBeLessThan(tol);
      // And exactly the product with its own dequantized weight.
      expectClose(yq, reference(x.data, 5, K, ql.qweight.dequantize().data, N, b.data), 'QLinear');
    }
  });

  it('rejects bad input with named errors', () => {
    expect(() => new Linear(new Tensor('i8', [2, 2], new Int8Array(4)))).toThrow(/'weight' must have dtype/);
    expect(() => new Linear(new Tensor('f32', [4], new Float32Array(4)))).toThrow(/'weight' must be 2-D/);
    expect(() => new Linear(w, new Tensor('f32', [N + 1], new Float32Array(N + 1)))).toThrow(/'bias' must have shape/);
    expect(() => lin.forward(new Tensor('f32', [2, K + 1], new Float32Array(2 * (K + 1))))).toThrow(/'x' has last dimension/);
    expect(() => lin.forward(new Tensor('f16', [1, K], new Uint16Array(K)))).toThrow(/'x' must have dtype f32/);
    expect(() => lin.forward([1, 2] as unknown as Tensor)).toThrow(TypeError);
    expect(() => QLinear.fromLinear(lin, { bits: 2 as 8 })).toThrow(/options.bits/);
    expect(() => new QLinear(w as unknown as QuantizedTensor)).toThrow(/'qweight' must be a QuantizedTensor/);
    const q2 = quantize(w, { bits: 2, groupSize: 32 });
    let err: unknown;
    try {
      matmul(new Tensor('f32', [1, K], new Float32Array(K)), q2);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(QuantkitError);
    expect((err as QuantkitError).code).toBe('ERR_UNSUPPORTED');
    expect(() => matmul(new Tensor('f32', [1, K], new Float32Array(K)), w, new Tensor('f32', [3], new Float32Array(3)))).toThrow(/bias/);
  });

  it('handles empty shapes', () => {
    expect(matmul(new Tensor('f32', [0, K], new Float32Array(0)), w).shape).toEqual([0, N]);
    const y = matmul(new Tensor('f32', [2, 0], new Float32Array(0)), new Tensor('f32', [3, 0], new Float32Array(0)), new Tensor('f32', [3], Float32Array.from([1, 2, 3])));
    expect(Array.from(y.data)).toEqual([1, 2, 3, 1, 2, 3]);
  });
});
