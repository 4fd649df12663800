/**
 * quantize / dequantize / pack at every ISA this CPU has, checked bit-exactly
 * against the spec written out in test/helpers.ts, on odd sizes, unaligned
 * groups and edge values; plus thread-count independence and bad input.
 */
import { describe, expect, it } from 'vitest';
import {
  Linear,
  QLinear,
  QuantizedTensor,
  matmul,
  matmulAsync,
  QuantkitError,
  Tensor,
  availableIsas,
  dequantize,
  getThreads,
  packInt2,
  packInt4,
  quantize,
  selectIsa,
  setThreads,
  unpackInt2,
  unpackInt4,
  type QuantizeOptions,
} from '../lib/index.js';
import { randomF32, refDequantize, refQuantize, rng, toBf16Bits, toF16Bits, bf16BitsToNumber, f16BitsToNumber, type RefSpec, restoreRuntimeAfterAll } from './helpers.js';

const ISAS = availableIsas();
restoreRuntimeAfterAll();

type Case = { name: string; opts: QuantizeOptions; ref: RefSpec };
function cases(K: number): Case[] {
  const out: Case[] = [];
  for (const asym of [false, true]) {
    const scheme = asym ? 'asymmetric' : 'symmetric';
    for (const bits of [8, 4] as const) {
      out.push({ name: `int${bits} ${scheme} tensor`, opts: { bits, scheme, granularity: 'tensor' }, ref: { bits, asym, gran: 'tensor' } });
      out.push({ name: `int${bits} ${scheme} channel`, opts: { bits, scheme, granularity: 'channel' }, ref: { bits, asym, gran: 'channel' } });
    }
  }
  // every group size, dividing K or not (then each row's last group is shorter), and one larger than K
  for (const G of [2, 6, 8, 32, 34, 64, 128, 2 * K + 2]) {
    for (const asym of [false, true]) {
      const scheme = asym ? 'asymmetric' : 'symmetric';
      for (const bits of [8, 4] as const) {
        out.push({ name: `int${bits} ${scheme} g${G}`, opts: { bits, scheme, granularity: 'group', groupSize: G }, ref: { bits, asym, gran: 'group', G } });
      }
    }
    out.push({ name: `int2 asymmetric g${G}`, opts: { bits: 2, scheme: 'asymmetric', granularity: 'group', groupSize: G }, ref: { bits: 2, asym: true, gran: 'group', G } });
  }
  out.push({ name: 'int2 asymmetric channel', opts: { bits: 2, granularity: 'channel' }, ref: { bits: 2, asym: true, gran: 'channel' } });
  return out;
}

/** Values that exercise the edges: zeros, constants, huge, tiny, subnormal, negatives, .5 quotients. */
function edgeRows(K: number, seed: number): Float32Array[] {
  const r = rng(seed);
  const rows: Float32Array[] = [];
  rows.push(new Float32Array(K)); // all zero
  rows.push(new Float32Array(K).fill(0.3)); // constant
  rows.push(new Float32Array(K).fill(-7.25)); // constant negative
  rows.push(Float32Array.from({ length: K }, () => (r() - 0.5) * 6e38)); // huge
  rows.push(Float32Array.from({ length: K }, () => (r() - 0.5) * 1e-38)); // tiny, some subnormal
  rows.push(Float32Array.from({ length: K }, (_, i) => (i % 3) * 1.4e-45)); // smallest subnormals
  rows.push(Float32Array.from({ length: K }, () => -1 - 5 * r())); // all negative
  rows.push(Float32Array.from({ length: K }, () => 1 + 5 * r())); // all positive
  rows.push(Float32Array.from({ length: K }, (_, i) => (i % 255) - 127)); // integers: x/scale lands on .5 often for some scales
  rows.push(Float32Array.from({ length: K }, (_, i) => (i % 2 ? 2.5 : -0.5) * (1 + (i % 7)))); // .5 quotients
  rows.push(randomF32(K, seed + 1, -3, 3));
  return rows;
}

function check(x: Float32Array, rows: number, K: number, c: Case, label: string) {
  const t = new Tensor('f32', [rows, K], x);
  const q = quantize(t, c.opts);
  const ref = refQuantize(x, rows, K, c.ref);
  expect(q.bits).toBe(c.ref.bits);
  expect(Array.from(q.scales), `${label} scales`).toEqual(Array.from(ref.scales));
  if (c.ref.asym) expect(Array.from(q.zeroPoints!), `${label} zero points`).toEqual(Array.from(ref.zps));
  else expect(q.zeroPoints).toBeNull();
  expect(Array.from(q.codes()), `${label} codes`).toEqual(Array.from(ref.codes));
  const deq = q.dequantize();
  const want = refDequantize(ref.codes, ref.scales, c.ref.asym ? ref.zps : null, ref.G, c.ref.gran === 'tensor', ref.K);
  expect(deq.shape).toEqual([rows, K]);
  expect(Array.from(deq.data), `${label} dequantized`).toEqual(Array.from(want));
  return q;
}

describe.each(ISAS)('quantize at ISA %s', (level) => {
  it('matches the spec bit for bit on odd sizes and every scheme', () => {
    expect(selectIsa(level)).toBe(level);
    for (const K of [1, 2, 3, 4, 5, 6, 7, 8, 9, 31, 33, 64, 127, 128, 4097]) {
      for (const rows of [1, 3]) {
        const x = randomF32(rows * K, K * 31 + rows, -2, 3);
        for (const c of cases(K)) {
          if (c.ref.bits !== 8 && c.ref.gran !== 'group' && K % 2 === 1 && c.ref.bits === 4) {
            // int4 per channel/tensor with odd K packs a padding nibble; still valid.
          }
          check(x, rows, K, c, `${level} K=${K} rows=${rows} ${c.name}`);
        }
      }
    }
  });

  it('handles zeros, constants, huge, tiny, subnormal and negative rows', () => {
    selectIsa(level);
    for (const K of [7, 64, 96]) {
      for (const [i, row] of edgeRows(K, 7 + K).entries()) {
        for (const c of cases(K)) {
          const q = check(row, 1, K, c, `${level} edge row ${i} K=${K} ${c.name}`);
          // Constant and all-zero rows come back exactly.
          if (i <= 2) expect(Array.from(q.dequantize().data)).toEqual(Array.from(row));
          for (const s of q.scales) expect(Number.isFinite(s) && s > 0).toBe(true);
        }
      }
    }
  });

  it('quantizes f16 and bf16 sources exactly like their f32 values', () => {
    selectIsa(level);
    const K = 96;
    const src = randomF32(3 * K, 99, -4, 4);
    const h = Uint16Array.from(src, toF16Bits);
    const b = Uint16Array.from(src, toBf16Bits);
    const hf = Float32Array.from(h, f16BitsToNumber);
    const bf = Float32Array.from(b, bf16BitsToNumber);
    for (const c of cases(K)) {
      const qa = quantize(new Tensor('f16', [3, K], h), c.opts);
      const qb = quantize(new Tensor('f32', [3, K], hf), c.opts);
      expect(Array.from(qa.data)).toEqual(Array.from(qb.data));
      expect(Array.from(qa.scales)).toEqual(Array.from(qb.scales));
      const qc = quantize(new Tensor('bf16', [3, K], b), c.opts);
      const qd = quantize(new Tensor('f32', [3, K], bf), c.opts);
      expect(Array.from(qc.data)).toEqual(Array.from(qd.data));
      expect(Array.from(qc.scales)).toEqual(Array.from(qd.scales));
    }
  });

  it('rejects NaN and Inf naming the tensor and the index', () => {
    selectIsa(level);
    for (const bad of [NaN, Infinity, -Infinity]) {
      for (const pos of [0, 5, 40, 99]) {
        const x = randomF32(100, pos);
        x[pos] = bad;
        const t = new Tensor('f32', [5, 20], x, 'layer0.weight');
        for (const opts of [{ granularity: 'tensor' }, { granularity: 'channel' }, { bits: 4, groupSize: 2 }] as QuantizeOptions[]) {
          let err: unknown;
          try {
            quantize(t, opts);
          } catch (e) {
            err = e;
          }
          expect(err).toBeInstanceOf(QuantkitError);
          expect((err as QuantkitError).code).toBe('ERR_NONFINITE');
          expect((err as Error).message).toContain("'layer0.weight'");
          expect((err as Error).message).toContain(`index ${pos}`);
        }
      }
    }
    const h = new Uint16Array(8);
    h[3] = 0x7e00; // f16 NaN
    expect(() => quantize(new Tensor('f16', [8], h))).toThrow(/NaN at index 3/);
  });
});

describe('threads', () => {
  it('gives identical results with 1, 2 and 7 threads', () => {
    const x = randomF32(301 * 256, 5, -3, 3);
    const t = new Tensor('f32', [301, 256], x);
    const results: QuantizedTensor[][] = [];
    for (const n of [1, 2, 7]) {
      setThreads(n);
      expect(getThreads()).toBe(n);
      results.push([
        quantize(t, { bits: 8, granularity: 'tensor' }),
        quantize(t, { bits: 8, scheme: 'asymmetric' }),
        quantize(t, { bits: 4, groupSize: 32, scheme: 'asymmetric' }),
      ]);
    }
    for (const r of results.slice(1)) {
      for (let i = 0; i < r.length; i++) {
        expect(Array.from(r[i]!.data)).toEqual(Array.from(results[0]![i]!.data));
        expect(Array.from(r[i]!.scales)).toEqual(Array.from(results[0]![i]!.scales));
        expect(Array.from(r[i]!.dequantize().data)).toEqual(Array.from(results[0]![i]!.dequantize().data));
      }
    }
  });
});

describe('packing', () => {
  it('uses the documented nibble and crumb order', () => {
    expect(Array.from(packInt4(Int8Array.from([1, -2])))).toEqual([0xe1]);
    expect(Array.from(packInt4(Int8Array.from([-8, 7, 3])))).toEqual([0x78, 0x03]);
    expect(Array.from(packInt4(Uint8Array.from([15, 0, 9, 10])))).toEqual([0x0f, 0xa9]);
    expect(Array.from(packInt2(Uint8Array.from([0, 1, 2, 3, 3])))).toEqual([0xe4, 0x03]);
  });

  it('round-trips every ISA on odd sizes, row by row', () => {
    for (const level of ISAS) {
      selectIsa(level);
      for (const K of [1, 2, 3, 5, 8, 31, 33, 127]) {
        const rows = 3;
        const r = rng(K);
        const s4 = Int8Array.from({ length: rows * K }, () => Math.floor(r() * 16) - 8);
        const p4 = packInt4(s4, [rows, K]);
        expect(p4.length).toBe(rows * Math.ceil(K / 2));
        expect(Array.from(unpackInt4(p4, [rows, K]))).toEqual(Array.from(s4));
        const u4 = Uint8Array.from({ length: rows * K }, () => Math.floor(r() * 16));
        expect(Array.from(unpackInt4(packInt4(u4, [rows, K]), [rows, K], { signed: false }))).toEqual(Array.from(u4));
        const u2 = Uint8Array.from({ length: rows * K }, () => Math.floor(r() * 4));
        const p2 = packInt2(u2, [rows, K]);
        expect(p2.length).toBe(rows * Math.ceil(K / 4));
        expect(Array.from(unpackInt2(p2, [rows, K]))).toEqual(Array.from(u2));
      }
    }
  });
});

describe('QuantizedTensor', () => {
  it('reports its bytes and metadata', () => {
    const t = new Tensor('f32', [8, 64], randomF32(512, 1));
    const q8 = quantize(t);
    expect(q8.nbytes).toBe(512 + 8 * 4);
    expect(q8.granularity).toBe('channel');
    expect(q8.groupSize).toBe(64);
    const q4 = quantize(t, { bits: 4, scheme: 'asymmetric', groupSize: 32 });
    expect(q4.nbytes).toBe(256 + 16 * 4 + 16);
    expect(dequantize(q4).shape).toEqual([8, 64]);
  });

  it('validates arrays it wraps', () => {
    const base = { bits: 8 as const, scheme: 'symmetric' as const, granularity: 'channel' as const, shape: [2, 4] };
    expect(() => new QuantizedTensor({ ...base, data: new Int8Array(8), scales: new Float32Array([1, 1]) })).not.toThrow();
    expect(() => new QuantizedTensor({ ...base, data: new Int8Array(7), scales: new Float32Array([1, 1]) })).toThrow(RangeError);
    expect(() => new QuantizedTensor({ ...base, data: new Uint8Array(8), scales: new Float32Array([1, 1]) })).toThrow(TypeError);
    expect(() => new QuantizedTensor({ ...base, data: new Int8Array(8), scales: new Float32Array([1, 0]) })).toThrow(/scales/);
    expect(() => new QuantizedTensor({ ...base, data: new Int8Array(8), scales: new Float32Array([1, NaN]) })).toThrow(/scales/);
    expect(
      () => new QuantizedTensor({ bits: 4, scheme: 'asymmetric', granularity: 'group', groupSize: 2, shape: [1, 4], data: new Uint8Array(2), scales: new Float32Array(2).fill(1), zeroPoints: Uint8Array.from([3, 16]) }),
    ).toThrow(/zeroPoints/);
  });
});

describe('bad input', () => {
  const t = new Tensor('f32', [4, 64], randomF32(256, 3));
  it('names the argument in TypeErrors and RangeErrors', () => {
    expect(() => quantize({} as Tensor)).toThrow(TypeError);
    expect(() => quantize(new Tensor('i8', [4], new Int8Array(4)))).toThrow(/'t' must have dtype f32, f16 or bf16/);
    expect(() => quantize(t, { bits: 3 as 8 })).toThrow(/options.bits/);
    expect(() => quantize(t, { scheme: 'symm' as 'symmetric' })).toThrow(/options.scheme/);
    // the short names are the same schemes
    expect(quantize(t, { bits: 4, scheme: 'asym' }).scheme).toBe('asymmetric');
    expect(quantize(t, { bits: 4, scheme: 'asym' }).codes).toEqual(quantize(t, { bits: 4, scheme: 'asymmetric' }).codes);
    expect(quantize(t, { scheme: 'sym' }).scheme).toBe('symmetric');
    expect(() => quantize(t, { granularity: 'row' as 'channel' })).toThrow(/options.granularity/);
    expect(() => quantize(t, { bits: 4, groupSize: 3 })).toThrow(RangeError);
    expect(() => quantize(t, { bits: 4, groupSize: 0 })).toThrow(RangeError);
    expect(() => quantize(t, { bits: 2, scheme: 'symmetric' })).toThrow(/'asymmetric' for 2 bits/);
    expect(() => quantize(t, { granularity: 'channel', groupSize: 32 })).toThrow(/groupSize/);
    expect(() => quantize(t, 5 as unknown as QuantizeOptions)).toThrow(/options/);
    expect(() => dequantize(t as unknown as QuantizedTensor)).toThrow(TypeError);
    expect(() => packInt4(Int8Array.from([8]))).toThrow(/values.*\[-8, 7\]/);
    expect(() => packInt2(Uint8Array.from([4]))).toThrow(/values/);
    expect(() => packInt4(new Int8Array(6), [4])).toThrow(/shape/);
    expect(() => unpackInt4(new Uint8Array(3), [2, 4])).toThrow(/packed/);
    expect(() => setThreads(0)).toThrow(RangeError);
    expect(() => setThreads(2.5)).toThrow(RangeError);
    expect(() => setThreads('2' as unknown as number)).toThrow(TypeError);
    expect(() => selectIsa('sse9' as 'avx2')).toThrow(RangeError);
  });

  it('handles empty tensors', () => {
    const q = quantize(new Tensor('f32', [0, 8], new Float32Array(0)));
    expect(q.data.length).toBe(0);
    expect(q.dequantize().size).toBe(0);
  });
});

describe('int2 is quantize/pack only, and says so', () => {
  it('matmul, matmulAsync, QLinear and QLinear.fromLinear refuse a 2-bit weight with a clear error', async () => {
    const w = new Tensor('f32', [4, 64], randomF32(256, 3));
    const q2 = quantize(w, { bits: 2 });
    const x = new Tensor('f32', [1, 64], randomF32(64, 4));
    expect(() => matmul(x, q2)).toThrow(expect.objectContaining({ code: 'ERR_UNSUPPORTED', message: expect.stringMatching(/2-bit.*dequantize\(\) it first/) }));
    await expect(matmulAsync(x, q2)).rejects.toMatchObject({ code: 'ERR_UNSUPPORTED' });
    expect(() => new QLinear(q2)).toThrow(/'qweight' must be int8 or int4, got 2 bits/);
    expect(() => QLinear.fromLinear(new Linear(w), { bits: 2 as never })).toThrow(/'options.bits' must be 8 or 4/);
    // the documented way: dequantize, then multiply in float
    const y = matmul(x, dequantize(q2));
    expect(y.shape).toEqual([1, 4]);
  });
});
