/**
 * Element-wise activation ops in native code (lib/nn/activations.ts has the
 * JavaScript definitions they match).
 */
import { addon } from '../binding.js';
import { describe, rangeError, typeError } from '../errors.js';

/**
 * g = silu(g) * u, in place, in f32: (g / (1 + exp(-g))) * u with the
 * kernels' vector exponential (relative error ~2e-7; the same bits on every
 * ISA). g, u f32 [n].
 */
export function siluMulInPlace(g: Float32Array, u: Float32Array): Float32Array {
  if (!(g instanceof Float32Array)) throw typeError('siluMulInPlace', 'g', `must be a Float32Array, got ${describe(g)}`);
  if (!(u instanceof Float32Array)) throw typeError('siluMulInPlace', 'u', `must be a Float32Array, got ${describe(u)}`);
  if (u.length !== g.length) throw rangeError('siluMulInPlace', 'u', `has ${u.length} values, 'g' has ${g.length}`);
  if (g.length > 0) addon.siluMul(g, u);
  return g;
}

/** A Float32Array argument or a TypeError naming it. */
function f32Arg(fn: string, name: string, v: unknown): Float32Array {
  if (!(v instanceof Float32Array)) throw typeError(fn, name, `must be a Float32Array, got ${describe(v)}`);
  return v;
}

export interface NormOptions {
  /** 'rms' (x / rms(x) * weight, Llama) or 'layer' ((x - mean) / std * weight + bias). */
  readonly kind: 'rms' | 'layer';
  /** f32 [D]; required for 'rms'. */
  readonly weight: Float32Array | null;
  /** f32 [D], 'layer' only. */
  readonly bias?: Float32Array | null;
  readonly eps: number;
  /**
   * Added into x first, in place (x = x + residual, f32): the residual add
   * of a pre-norm block fused with the norm that follows it. Same length as x.
   */
  readonly residual?: Float32Array | null;
}

/**
 * The norm of each row of D values of x [rows, D] into a new f32 array, on
 * the thread pool: sums and products in float64 with one fixed summation
 * order (native/ops/elementwise_ops.h), so results do not depend on the
 * thread count. With `residual`, x += residual first (x is the block's
 * residual stream, kept for the next add). Into `out` (x's length; may be
 * x itself) when given.
 */
export function normRows(x: Float32Array, D: number, o: NormOptions, outArg?: Float32Array): Float32Array {
  const fn = 'normRows';
  f32Arg(fn, 'x', x);
  if (!Number.isSafeInteger(D) || D < 1) throw rangeError(fn, 'D', `must be a positive integer, got ${describe(D)}`);
  if (x.length % D !== 0) throw rangeError(fn, 'x', `has ${x.length} values, not whole rows of D = ${D}`);
  if (o.kind !== 'rms' && o.kind !== 'layer') throw rangeError(fn, 'kind', `must be 'rms' or 'layer', got ${describe(o.kind)}`);
  const w = o.weight === null && o.kind === 'layer' ? null : f32Arg(fn, 'weight', o.weight);
  const b = o.bias === undefined || o.bias === null ? null : f32Arg(fn, 'bias', o.bias);
  if (b && o.kind === 'rms') throw rangeError(fn, 'bias', 'must be null for an RMS norm');
  for (const [name, p] of [['weight', w], ['bias', b]] as const) {
    if (p && p.length !== D) throw rangeError(fn, name, `has ${p.length} values, D is ${D}`);
  }
  const r = o.residual === undefined || o.residual === null ? null : f32Arg(fn, 'residual', o.residual);
  if (r && r.length !== x.length) throw rangeError(fn, 'residual', `has ${r.length} values, x has ${x.length}`);
  if (typeof o.eps !== 'number' || !Number.isFinite(o.eps)) throw rangeError(fn, 'eps', `must be a finite number, got ${describe(o.eps)}`);
  if (outArg !== undefined) {
    f32Arg(fn, 'out', outArg);
    if (outArg.length !== x.length) throw rangeError(fn, 'out', `has ${outArg.length} values, x has ${x.length}`);
  }
  const out = outArg ?? new Float32Array(x.length);
  if (x.length > 0) addon.norm(o.kind === 'rms' ? 0 : 1, x, r, w, b, out, D, o.eps);
  return out;
}

/**
 * GELU, tanh form ("gelu_new"), in place, in f32 on the thread pool:
 * x / (1 + exp(-2 sqrt(2/pi) (x + 0.044715 x^3))), the same value as
 * 0.5 x (1 + tanh(...)) without its cancellation; relative error ~3e-7, the
 * same bits on every ISA and for any length.
 */
export function geluTanhInPlace(x: Float32Array): Float32Array {
  f32Arg('geluTanhInPlace', 'x', x);
  if (x.length > 0) addon.geluTanh(x);
  return x;
}

/** From this many values on, addInPlace runs natively (below, a JS loop beats the call). */
const NATIVE_ADD_MIN = 4096;

/** x = x + y elementwise in f32, in place; returns x. */
export function addInPlace(x: Float32Array, y: Float32Array): Float32Array {
  f32Arg('addInPlace', 'x', x);
  f32Arg('addInPlace', 'y', y);
  if (y.length !== x.length) throw rangeError('addInPlace', 'y', `has ${y.length} values, 'x' has ${x.length}`);
  if (x.length >= NATIVE_ADD_MIN) addon.addInPlace(x, y);
  else for (let i = 0; i < x.length; i++) x[i] = x[i]! + y[i]!;
  return x;
}

/**
 * Rotary embeddings in place on x [T, nHeads * stride], positions pos0 ..
 * pos0 + T - 1, with cos/sin tables [positions, half] in float64 (as
 * lib/nn/rope.ts builds them): each pair (a, b) of a head, (i, i + half) or
 * (2i, 2i + 1) when interleaved, becomes (x0 c - x1 s, x0 s + x1 c) in
 * float64 rounded to f32, natively on the thread pool.
 */
export function ropeInPlace(x: Float32Array, T: number, nHeads: number, stride: number, half: number, pos0: number, cos: Float64Array, sin: Float64Array, interleaved: boolean): void {
  f32Arg('ropeInPlace', 'x', x);
  if (x.length > 0) addon.rope(x, T, nHeads, stride, half, pos0, cos, sin, interleaved);
}
