/**
 * Building blocks of the model code, checked against float64 formulas written
 * here: activations, LayerNorm/RMSNorm, RoPE (both pairings), causal GQA
 * attention over the KV cache, embeddings of every float dtype, ModuleList.
 * (Attention runs the native op over the cache's blocked key layout.)
 */
import { describe, expect, it } from 'vitest';
import { addInPlace, activationByName, erf, gateInPlace, geluExact, geluTanh, geluTanhNative, mulInPlace, relu, silu } from '../lib/nn/activations.js';
import { addInPlace as addF32, geluTanhInPlace, normRows, siluMulInPlace } from '../lib/ops/elementwise.js';

const SQRT_2_PI = Math.sqrt(2 / Math.PI);
import { addon } from '../lib/binding.js';
import { DecoderKVCache, ModuleList, beginForward, causalAttention, causalAttentionSteps } from '../lib/nn/attention.js';
import { runAsync } from '../lib/nn/steps.js';
import { causalAttentionOp, keyFloats, keyIndex } from '../lib/ops/attention.js';
import { Embedding } from '../lib/nn/embedding.js';
import { Module } from '../lib/nn/module.js';
import { LayerNorm, RMSNorm } from '../lib/nn/norm.js';
import { Rope, ropeInvFreq } from '../lib/nn/rope.js';
import { Tensor } from '../lib/tensor.js';
import { bf16BitsToNumber, f16BitsToNumber, randomF32, toBf16Bits, toF16Bits } from './helpers.js';

const maxAbs = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};

describe('activations', () => {
  const xs = Float32Array.from([-6, -3, -1.5, -0.5, -1e-3, 0, 1e-3, 0.5, 1, 2.5, 6]);

  it('erf matches known values to 1.2e-7', () => {
    const known: [number, number][] = [
      [0, 0],
      [0.1, 0.1124629160182849],
      [0.5, 0.5204998778130465],
      [1, 0.8427007929497149],
      [2, 0.9953222650189527],
      [3, 0.9999779095030014],
      [-0.7, -0.6778011938374184],
    ];
    for (const [x, v] of known) expect(Math.abs(erf(x) - v)).toBeLessThan(1.2e-7);
  });

  it('silu, relu, gelu (exact and tanh) match their formulas', () => {
    const f32 = (fn: (v: number) => number) => Float32Array.from(xs, fn);
    expect(maxAbs(silu(xs.slice()), f32((v) => v / (1 + Math.exp(-v))))).toBe(0);
    expect(Array.from(relu(xs.slice()))).toEqual(Array.from(xs, (v) => Math.max(0, v)));
    expect(maxAbs(geluTanh(xs.slice()), f32((v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)))))).toBe(0);
    // exact GELU: x * Phi(x), with Phi from tables of the normal distribution
    const torch: [number, number][] = [
      [-3, -3 * 0.0013498980316301],
      [-1, -1 * 0.15865525393145707],
      [0.5, 0.5 * 0.6914624612740131],
      [1, 0.8413447460685429],
      [2.5, 2.5 * 0.9937903346742238],
    ];
    const g = geluExact(Float32Array.from(torch, ([x]) => x));
    torch.forEach(([, y], i) => expect(Math.abs(g[i]! - y)).toBeLessThan(4e-7));
    expect(Number.isNaN(relu(Float32Array.of(NaN))[0])).toBe(true);
  });

  it('native silu(g) * u is within 4e-7 of float64 silu(g) * u (the f32 exponential of the kernels), in parallel chunks too', () => {
    for (const n of [0, 1, 11, 100_003]) {
      const g = randomF32(n, 31).map((v) => v * 12);
      const u = randomF32(n, 32);
      if (n === 11) g.set(xs);
      const got = siluMulInPlace(g.slice(), u);
      let worst = 0;
      for (let i = 0; i < n; i++) {
        const want = (g[i]! / (1 + Math.exp(-g[i]!))) * u[i]!;
        worst = Math.max(worst, Math.abs(got[i]! - want) / Math.max(Math.abs(want), 1e-30));
      }
      expect(worst).toBeLessThanOrEqual(4e-7); // exp ~2e-7, a division and two roundings
    }
    const edge = siluMulInPlace(Float32Array.of(-200, 200, NaN, -0), Float32Array.of(1, 2, 1, 1));
    expect(Array.from(edge.subarray(0, 2))).toEqual([-0, 400]);
    expect(Number.isNaN(edge[2])).toBe(true);
    // gateInPlace: SiLU natively, other activations in JS
    expect(Array.from(gateInPlace(relu, Float32Array.of(-1, 2), Float32Array.of(3, 4)))).toEqual([0, 8]);
    expect(() => siluMulInPlace(new Float32Array(3), new Float32Array(2))).toThrow(/'u' has 2 values/);
    expect(() => siluMulInPlace([1] as unknown as Float32Array, new Float32Array(1))).toThrow(TypeError);
  });

  it('native RMSNorm / LayerNorm equal their float64 definitions (sums in 8 partials) bit for bit: odd widths, many rows (parallel chunks), edge values, fused residual', () => {
    // the spec of native/ops/elementwise_ops.h: partial i % 8, combined ((p0+p1)+(p2+p3))+((p4+p5)+(p6+p7))
    const sum8 = (n: number, f: (i: number) => number) => {
      const p = new Float64Array(8);
      for (let i = 0; i < n; i++) p[i % 8]! += f(i);
      return p[0]! + p[1]! + (p[2]! + p[3]!) + (p[4]! + p[5]! + (p[6]! + p[7]!));
    };
    const ref = (kind: 'rms' | 'layer', x: Float32Array, w: Float32Array | null, b: Float32Array | null, D: number, eps: number) => {
      const out = new Float32Array(x.length);
      for (let o = 0; o < x.length; o += D) {
        const v = (i: number) => x[o + i]!;
        if (kind === 'rms') {
          const inv = 1 / Math.sqrt(sum8(D, (i) => v(i) * v(i)) / D + eps);
          for (let i = 0; i < D; i++) out[o + i] = v(i) * inv * w![i]!;
          continue;
        }
        const mean = sum8(D, v) / D;
        const inv = 1 / Math.sqrt(sum8(D, (i) => (v(i) - mean) * (v(i) - mean)) / D + eps);
        for (let i = 0; i < D; i++) {
          let y = (v(i) - mean) * inv;
          if (w) y *= w[i]!;
          if (b) y += b[i]!;
          out[o + i] = y;
        }
      }
      return out;
    };
    for (const [rows, D] of [[0, 5], [1, 1], [3, 7], [37, 65], [300, 768], [2, 20_001]] as const) {
      const x = randomF32(rows * D, rows + D).map((v, i) => (i % 13 === 0 ? v * 1e4 : v));
      const r = randomF32(rows * D, rows + D + 7);
      const w = randomF32(D, D + 1, 0.5, 1.5);
      const b = randomF32(D, D + 2);
      const sum = x.map((v, i) => v + r[i]!);
      for (const eps of [1e-5, 0]) {
        const at = `rows ${rows} D ${D} eps ${eps}`;
        const rms = new RMSNorm(new Tensor('f32', [D], w), eps);
        expect(Array.from(rms.forward(new Tensor('f32', [rows, D], x)).data), at).toEqual(Array.from(ref('rms', x, w, null, D, eps)));
        const ln = new LayerNorm(D, eps, new Tensor('f32', [D], w), new Tensor('f32', [D], b));
        if (D > 1 || eps > 0) expect(Array.from(ln.forward(new Tensor('f32', [rows, D], x)).data), at).toEqual(Array.from(ref('layer', x, w, b, D, eps)));
        // fused: x + r kept in x, the norm of it returned
        const xa = x.slice();
        const y = rms.forwardAdd(new Tensor('f32', [rows, D], xa), new Tensor('f32', [rows, D], r)).data;
        expect(Array.from(xa), at).toEqual(Array.from(sum));
        expect(Array.from(y), at).toEqual(Array.from(ref('rms', sum, w, null, D, eps)));
        const xl = x.slice();
        const yl = new LayerNorm(D, eps, null, null).forwardAdd(new Tensor('f32', [rows, D], xl), new Tensor('f32', [rows, D], r)).data;
        expect(Array.from(xl), at).toEqual(Array.from(sum));
        if (D > 1 || eps > 0) expect(Array.from(yl), at).toEqual(Array.from(ref('layer', sum, null, null, D, eps)));
      }
    }
    // a zero row with eps 0 is 0 * inf: NaN, as the definition says
    expect(Number.isNaN(new RMSNorm(new Tensor('f32', [2], Float32Array.of(1, 1)), 0).forward(new Tensor('f32', [1, 2], new Float32Array(2))).data[0])).toBe(true);
    expect(() => new RMSNorm(new Tensor('f32', [2], Float32Array.of(1, 1)), NaN)).toThrow(/'eps' must be a finite number >= 0/);
    const w2 = new Float32Array(2);
    expect(() => normRows(new Float32Array(5), 2, { kind: 'rms', weight: w2, eps: 1e-5 })).toThrow(/'x' has 5 values, not whole rows of D = 2/);
    expect(() => normRows(new Float32Array(4), 2, { kind: 'rms', weight: new Float32Array(3), eps: 1e-5 })).toThrow(/'weight' has 3 values/);
    expect(() => normRows(new Float32Array(4), 2, { kind: 'rms', weight: null, eps: 1e-5 })).toThrow(TypeError);
    expect(() => normRows(new Float32Array(4), 2, { kind: 'rms', weight: w2, bias: w2, eps: 1e-5 })).toThrow(/'bias' must be null for an RMS norm/);
    expect(() => normRows(new Float32Array(4), 2, { kind: 'layer', weight: null, residual: new Float32Array(2), eps: 1e-5 })).toThrow(/'residual' has 2 values, x has 4/);
    expect(() => normRows(new Float32Array(4), 2, { kind: 'max' as 'rms', weight: w2, eps: 1e-5 })).toThrow(/'kind'/);
    expect(() => new RMSNorm(new Tensor('f32', [2], w2), 1e-5).forwardAdd(new Tensor('f32', [2, 2], new Float32Array(4)), new Tensor('f32', [1, 2], w2))).toThrow(/'residual' must have the shape of x/);
    expect(() => addon.norm(0, new Float32Array(4), null, w2, null, new Float32Array(3), 2, 1e-5)).toThrow(/'out' has 3 elements, expected 4/);
    expect(() => addon.norm(0, new Float32Array(4), null, w2, null, new Float32Array(4), 0, 1e-5)).toThrow(/'D' must be >= 1/);
    expect(() => addon.norm(2 as 0, new Float32Array(4), null, w2, null, new Float32Array(4), 2, 1e-5)).toThrow(/'kind'/);
    expect(() => addon.norm(0, new Float32Array(4), null, null, null, new Float32Array(4), 2, 1e-5)).toThrow(/'w'/);
    // addInPlace: native from 4096 values, JS below; the same f32 sums
    for (const n of [3, 4096, 70_001]) {
      const p = randomF32(n, n), q2 = randomF32(n, n + 1);
      const want = p.map((v, i) => v + q2[i]!);
      expect(Array.from(addF32(p, q2))).toEqual(Array.from(want));
    }
    expect(() => addF32(new Float32Array(3), new Float32Array(2))).toThrow(/'y' has 2 values/);
  });

  it('native GELU (tanh form) is within 4e-7 + |arg| 2^-22 of its float64 definition, for any length; the models use it', () => {
    for (const n of [1, 7, 40_001]) {
      const x = randomF32(n, n + 5).map((v) => v * 8);
      const got = geluTanhInPlace(x.slice());
      for (let i = 0; i < n; i++) {
        const v = x[i]!, arg = 2 * SQRT_2_PI * (v + 0.044715 * v * v * v);
        const want = v / (1 + Math.exp(-arg)); // = 0.5 v (1 + tanh(arg / 2)), without its cancellation
        expect(Math.abs(got[i]! - want)).toBeLessThanOrEqual((4e-7 + Math.abs(arg) * 2 ** -22) * Math.abs(want) + 1e-37);
      }
      // the same bits whatever the length (a token's activations do not depend on its batch)
      expect(Array.from(geluTanhInPlace(x.slice(0, 1)))).toEqual([got[0]]);
    }
    expect(maxAbs(geluTanhInPlace(Float32Array.of(-3, -1, 0, 0.5, 2)), geluTanh(Float32Array.of(-3, -1, 0, 0.5, 2)))).toBeLessThan(1e-6);
    expect(activationByName('gelu_new')).toBe(geluTanhNative);
    expect(() => geluTanhInPlace([1] as unknown as Float32Array)).toThrow(TypeError);
  });

  it('names map to functions; unknown names are ERR_UNSUPPORTED', () => {
    expect(activationByName('gelu_new')).toBe(geluTanhNative);
    expect(activationByName('gelu')).toBe(geluExact);
    expect(activationByName('silu')).toBe(silu);
    expect(() => activationByName('mish', 'cfg')).toThrow(expect.objectContaining({ code: 'ERR_UNSUPPORTED' }));
    expect(() => activationByName('toString')).toThrow();
    expect(Array.from(addInPlace(Float32Array.of(1, 2), Float32Array.of(3, 4)))).toEqual([4, 6]);
    expect(Array.from(mulInPlace(Float32Array.of(1, 2), Float32Array.of(3, 4)))).toEqual([3, 8]);
  });
});

describe('norms', () => {
  const D = 24;
  const x = randomF32(3 * D, 1, -2, 2);
  const w = randomF32(D, 2, 0.5, 1.5);
  const b = randomF32(D, 3, -0.3, 0.3);

  it('LayerNorm over the last dimension, with and without affine params', () => {
    const ln = new LayerNorm(D, 1e-5, new Tensor('f32', [D], w), new Tensor('f32', [D], b));
    const y = ln.forward(new Tensor('f32', [3, D], x));
    expect(y.shape).toEqual([3, D]);
    const plain = new LayerNorm(D, 1e-5, null, null).forward(new Tensor('f32', [3, D], x)).data;
    for (let r = 0; r < 3; r++) {
      const row = Array.from(x.subarray(r * D, (r + 1) * D));
      const mean = row.reduce((a, v) => a + v, 0) / D;
      const v = row.reduce((a, u) => a + (u - mean) ** 2, 0) / D;
      for (let i = 0; i < D; i++) {
        const n = (row[i]! - mean) / Math.sqrt(v + 1e-5);
        expect(Math.abs(y.data[r * D + i]! - (n * w[i]! + b[i]!))).toBeLessThan(1e-6);
        expect(Math.abs(plain[r * D + i]! - n)).toBeLessThan(1e-6);
      }
    }
    expect([...ln.ownTensors()].map(([n]) => n)).toEqual(['weight', 'bias']);
  });

  it('RMSNorm', () => {
    const y = new RMSNorm(new Tensor('f32', [D], w), 1e-6).forward(new Tensor('f32', [3, D], x)).data;
    for (let r = 0; r < 3; r++) {
      const row = Array.from(x.subarray(r * D, (r + 1) * D));
      const s = 1 / Math.sqrt(row.reduce((a, v) => a + v * v, 0) / D + 1e-6);
      for (let i = 0; i < D; i++) expect(Math.abs(y[r * D + i]! - row[i]! * s * w[i]!)).toBeLessThan(1e-6);
    }
  });

  it('reject wrong shapes', () => {
    const rms = new RMSNorm(new Tensor('f32', [D], w), 1e-6);
    expect(() => rms.forward(new Tensor('f32', [2, 5], new Float32Array(10)))).toThrow(RangeError);
    expect(() => new LayerNorm(D, 1e-5, new Tensor('f32', [3], new Float32Array(3)), null)).toThrow(RangeError);
  });
});

describe('RoPE', () => {
  const hd = 8;
  const nH = 2;
  const T = 5;

  it('invFreq = theta^(-2i/hd); linear scaling divides it', () => {
    const inv = ropeInvFreq(hd, 10000);
    for (let i = 0; i < hd / 2; i++) expect(inv[i]).toBeCloseTo(10000 ** (-(2 * i) / hd), 15);
    expect(ropeInvFreq(hd, 10000, { type: 'linear', factor: 4 })[1]).toBeCloseTo(inv[1]! / 4, 15);
    // llama3: the fastest (short-wavelength) frequencies are unchanged, the slowest divided by factor
    const l3 = ropeInvFreq(128, 500000, { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 });
    const base = ropeInvFreq(128, 500000);
    expect(l3[0]).toBe(base[0]);
    expect(l3[63]).toBeCloseTo(base[63]! / 8, 20);
  });

  it('rotate-half on HF-ordered rows equals interleaved on llama2.c-ordered rows', () => {
    const rope = new Rope(hd, 10000);
    const l2c = randomF32(T * nH * hd, 7);
    // HF[h*hd + i] = L2C[h*hd + 2i], HF[h*hd + hd/2 + i] = L2C[h*hd + 2i + 1]
    const perm = (v: Float32Array) => {
      const out = new Float32Array(v.length);
      for (let r = 0; r < T * nH; r++) {
        for (let i = 0; i < hd / 2; i++) {
          out[r * hd + i] = v[r * hd + 2 * i]!;
          out[r * hd + hd / 2 + i] = v[r * hd + 2 * i + 1]!;
        }
      }
      return out;
    };
    const hf = perm(l2c);
    rope.applyInterleaved(l2c, T, nH, 3);
    rope.applyRotateHalf(hf, T, nH, 3);
    expect(maxAbs(perm(l2c), hf)).toBe(0);
  });

  it('native rotations (long inputs) equal the JavaScript loop (short inputs) bit for bit: both pairings, partial rotary, positions past the first table', () => {
    const hd2 = 8, heads = 5, T2 = 60, pos0 = 70;
    const rope = new Rope(hd2, 10000);
    const cases = [
      { stride: 12, apply: (x: Float32Array, T: number, p: number) => rope.applyInterleaved(x, T, heads, p, 12) }, // partial rotary
      { stride: 8, apply: (x: Float32Array, T: number, p: number) => rope.applyRotateHalf(x, T, heads, p) },
    ];
    for (const { stride, apply } of cases) {
      const x = randomF32(T2 * heads * stride, stride); // >= 2400 values: the native path
      const whole = x.slice();
      apply(whole, T2, pos0);
      const one = x.slice(); // one position at a time: 40-60 values, the JS loop
      for (let t = 0; t < T2; t++) apply(one.subarray(t * heads * stride, (t + 1) * heads * stride), 1, pos0 + t);
      expect(Buffer.from(whole.buffer).equals(Buffer.from(one.buffer))).toBe(true);
    }
    expect(() => rope.applyRotateHalf(new Float32Array(8), 1, 1, -1)).toThrow(/'pos0'/);
  });

  it('is a rotation: q·k depends only on the position difference', () => {
    const rope = new Rope(hd, 10000);
    const q0 = randomF32(hd, 8);
    const k0 = randomF32(hd, 9);
    const dot = (pq: number, pk: number) => {
      const q = q0.slice();
      const k = k0.slice();
      rope.applyRotateHalf(q, 1, 1, pq);
      rope.applyRotateHalf(k, 1, 1, pk);
      return q.reduce((a, v, i) => a + v * k[i]!, 0);
    };
    expect(dot(7, 3)).toBeCloseTo(dot(104, 100), 5);
    expect(dot(0, 0)).toBeCloseTo(q0.reduce((a, v, i) => a + v * k0[i]!, 0), 5);
  });
});

describe('causal attention with a KV cache', () => {
  const nH = 4;
  const nKv = 2;
  const hd = 6;
  const T = 7;
  const q = randomF32(T * nH * hd, 11);
  const k = randomF32(T * nKv * hd, 12);
  const v = randomF32(T * nKv * hd, 13);
  const shape = { nHeads: nH, nKvHeads: nKv, headDim: hd, scale: 1 / Math.sqrt(hd) };

  function reference(): Float64Array {
    const out = new Float64Array(T * nH * hd);
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < nH; h++) {
        const g = Math.floor(h / (nH / nKv));
        const s = Array.from({ length: t + 1 }, (_, j) => {
          let d = 0;
          for (let i = 0; i < hd; i++) d += q[(t * nH + h) * hd + i]! * k[(j * nKv + g) * hd + i]!;
          return d * shape.scale;
        });
        const m = Math.max(...s);
        const e = s.map((x) => Math.exp(x - m));
        const z = e.reduce((a, x) => a + x, 0);
        for (let j = 0; j <= t; j++) for (let i = 0; i < hd; i++) out[(t * nH + h) * hd + i]! += (e[j]! / z) * v[(j * nKv + g) * hd + i]!;
      }
    }
    return out;
  }

  it('full sequence and token-by-token both match the reference (GQA)', () => {
    const ref = reference();
    const cache = new DecoderKVCache(1, nKv * hd, 16);
    cache.reserve(T);
    cache.write(0, 0, k, v);
    expect(maxAbs(causalAttention(q, T, 0, cache, 0, shape), ref)).toBeLessThan(1e-6);

    const inc = new DecoderKVCache(1, nKv * hd, 16);
    const kvDim = nKv * hd;
    for (let t = 0; t < T; t++) {
      inc.reserve(t + 1);
      inc.write(0, t, k.subarray(t * kvDim, (t + 1) * kvDim), v.subarray(t * kvDim, (t + 1) * kvDim));
      const o = causalAttention(q.subarray(t * nH * hd, (t + 1) * nH * hd), 1, t, inc, 0, shape);
      inc.advance(1);
      expect(maxAbs(o, ref.subarray(t * nH * hd, (t + 1) * nH * hd))).toBeLessThan(1e-6);
    }
    expect(inc.length).toBe(T);
  });

  it('a token attends to the same bits in a prompt, in chunks and in decode steps (positions across 64-key blocks)', () => {
    const n = 150, H = 4, G = 2, D = 5, kvDim = G * D;
    const q2 = randomF32(n * H * D, 31), k2 = randomF32(n * kvDim, 32), v2 = randomF32(n * kvDim, 33);
    const sh = { nHeads: H, nKvHeads: G, headDim: D, scale: 0.7 };
    const whole = new DecoderKVCache(1, kvDim, n);
    whole.reserve(n);
    whole.write(0, 0, k2, v2);
    const all = causalAttention(q2, n, 0, whole, 0, sh);
    const inc = new DecoderKVCache(1, kvDim, n);
    const parts: Float32Array[] = [];
    for (let t = 0, i = 0; t < n; i++) {
      const len = Math.min([1, 70, 3, 1, 64][i % 5]!, n - t); // growth happens mid-block too
      inc.reserve(t + len);
      inc.write(0, t, k2.subarray(t * kvDim, (t + len) * kvDim), v2.subarray(t * kvDim, (t + len) * kvDim));
      parts.push(causalAttention(q2.subarray(t * H * D, (t + len) * H * D), len, t, inc, 0, sh));
      inc.advance(len);
      t += len;
    }
    const joined = new Float32Array(all.length);
    let o = 0;
    for (const p of parts) joined.set(p, (o += p.length) - p.length);
    expect(Buffer.from(joined.buffer).equals(Buffer.from(all.buffer))).toBe(true);
    // and against float64 at the last position (sees all 150)
    const t = n - 1;
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / (H / G));
      const sc = Array.from({ length: n }, (_, j) => {
        let d = 0;
        for (let i = 0; i < D; i++) d += q2[(t * H + h) * D + i]! * k2[j * kvDim + g * D + i]!;
        return d * sh.scale;
      });
      const m = Math.max(...sc);
      const z = sc.reduce((acc, x) => acc + Math.exp(x - m), 0);
      for (let i = 0; i < D; i++) {
        let want = 0;
        for (let j = 0; j < n; j++) want += (Math.exp(sc[j]! - m) / z) * v2[j * kvDim + g * D + i]!;
        expect(Math.abs(all[(t * H + h) * D + i]! - want)).toBeLessThan(1e-6);
      }
    }
  });

  it('the native op: async equals sync bit for bit; bad inputs name the argument', async () => {
    const cache = new DecoderKVCache(1, nKv * hd, 16);
    cache.reserve(T);
    cache.write(0, 0, k, v);
    const qs = nH * hd;
    const sync = causalAttention(q.subarray(5 * qs), 2, 5, cache, 0, shape);
    const viaAsync = await runAsync(causalAttentionSteps(q.subarray(5 * qs), 2, 5, cache, 0, shape));
    expect(Array.from(viaAsync)).toEqual(Array.from(sync));
    expect(maxAbs(sync, reference().subarray(5 * qs))).toBeLessThan(1e-6);
    const ok = { q: q.subarray(0, qs), T: 1, pos0: 0, keys: cache.keys(0), values: v, nHeads: nH, nKvHeads: nKv, headDim: hd, scale: 1 };
    expect(() => causalAttentionOp({ ...ok, nKvHeads: 3 })).toThrow(/nKvHeads.*divide/);
    expect(() => causalAttentionOp({ ...ok, keys: k })).toThrow(/keys.*whole blocks of 64/);
    expect(() => causalAttentionOp({ ...ok, pos0: T })).toThrow(/values.*needs/);
    expect(() => causalAttentionOp({ ...ok, q: new Float32Array(5) })).toThrow(RangeError);
    expect(() => causalAttentionOp({ ...ok, values: [1, 2] as unknown as Float32Array })).toThrow(TypeError);
    expect(() => causalAttentionOp({ ...ok, scale: NaN })).toThrow(/scale/);
  });

  it('the op with 8 query heads per kv head, keys written through keyIndex', () => {
    const H = 8, hd2 = 5, n = 40;
    const q2 = randomF32(H * hd2, 21), k2 = randomF32(n * hd2, 22), v2 = randomF32(n * hd2, 23);
    const kb = new Float32Array(keyFloats(n, hd2));
    for (let j = 0; j < n; j++) for (let c = 0; c < hd2; c++) kb[keyIndex(j, c, hd2)] = k2[j * hd2 + c]!;
    const o = causalAttentionOp({ q: q2, T: 1, pos0: n - 1, keys: kb, values: v2, nHeads: H, nKvHeads: 1, headDim: hd2, scale: 0.4 });
    for (let h = 0; h < H; h++) {
      const s = Array.from({ length: n }, (_, j) => {
        let d = 0;
        for (let i = 0; i < hd2; i++) d += q2[h * hd2 + i]! * k2[j * hd2 + i]!;
        return d * 0.4;
      });
      const m = Math.max(...s);
      const z = s.reduce((a, x) => a + Math.exp(x - m), 0);
      for (let i = 0; i < hd2; i++) {
        let want = 0;
        for (let j = 0; j < n; j++) want += (Math.exp(s[j]! - m) / z) * v2[j * hd2 + i]!;
        expect(Math.abs(o[h * hd2 + i]! - want)).toBeLessThan(1e-6);
      }
    }
  });

  it('the cache grows on demand, keeps its contents, and enforces capacity', () => {
    const c = new DecoderKVCache(2, 3, 200);
    c.reserve(2);
    c.write(1, 0, Float32Array.of(1, 2, 3, 4, 5, 6), Float32Array.of(6, 5, 4, 3, 2, 1));
    c.advance(2);
    c.reserve(150);
    expect([0, 1].flatMap((p) => [0, 1, 2].map((d) => c.keys(1)[keyIndex(p, d, 3)]))).toEqual([1, 2, 3, 4, 5, 6]);
    expect(Array.from(c.values(1).subarray(0, 6))).toEqual([6, 5, 4, 3, 2, 1]);
    expect(c.keys(1).length).toBeGreaterThanOrEqual(keyFloats(150, 3));
    expect(() => c.reserve(201)).toThrow(RangeError);
    const expectDims = { nLayers: 2, kvDim: 3, vocabSize: 10 };
    expect(beginForward('f', [1, 2], c, expectDims)).toEqual([c, 2]);
    expect(() => beginForward('f', [10], c, expectDims)).toThrow(RangeError);
    expect(() => beginForward('f', [1.5], c, expectDims)).toThrow(RangeError);
    expect(() => beginForward('f', [1], c, { ...expectDims, nLayers: 3 })).toThrow(RangeError);
    expect(() => beginForward('f', [1, 1], c, { ...expectDims, maxPositions: 3 })).toThrow(/learned positions/);
    c.reset();
    expect(c.length).toBe(0);
  });
});

describe('Embedding', () => {
  it('gathers rows of f32, f16 and bf16 tables as f32', () => {
    const vals = randomF32(4 * 3, 21);
    const f16 = new Uint16Array(vals.length);
    const bf = new Uint16Array(vals.length);
    vals.forEach((x, i) => {
      f16[i] = toF16Bits(x);
      bf[i] = toBf16Bits(x);
    });
    const ids = [3, 0, 3];
    const want = (dec: (i: number) => number) => ids.flatMap((id) => [0, 1, 2].map((j) => dec(id * 3 + j)));
    expect(Array.from(new Embedding(new Tensor('f32', [4, 3], vals)).forward(ids).data)).toEqual(want((i) => vals[i]!));
    expect(Array.from(new Embedding(new Tensor('f16', [4, 3], f16)).forward(ids).data)).toEqual(want((i) => f16BitsToNumber(f16[i]!)));
    expect(Array.from(new Embedding(new Tensor('bf16', [4, 3], bf)).forward(ids).data)).toEqual(want((i) => bf16BitsToNumber(bf[i]!)));
    expect(() => new Embedding(new Tensor('f32', [4, 3], vals)).forward([4])).toThrow(RangeError);
    // f16 specials: subnormal, inf
    const sp = new Embedding(new Tensor('f16', [1, 3], Uint16Array.of(0x0001, 0x7c00, 0xfc00))).forward([0]).data;
    expect(Array.from(sp)).toEqual([2 ** -24, Infinity, -Infinity]);
  });
});

describe('ModuleList', () => {
  class Leaf extends Module {}
  it('names children 0..n-1 and follows replaceChild', () => {
    const a = new Leaf();
    const list = new ModuleList([a, new Leaf()]);
    expect([...list.namedModules('layers')].map(([n]) => n)).toEqual(['layers', 'layers.0', 'layers.1']);
    const c = new Leaf();
    list.replaceChild('0', c);
    expect(list.at(0)).toBe(c);
    expect(list.length).toBe(2);
  });
});
