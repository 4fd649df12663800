/**
 * Element-wise activation ops in native code (lib/nn/activations.ts has the
 * JavaScript definitions they match).
 */
import { addon } from '../binding.js';
import { describe, rangeError, typeError } from '../errors.js';

/**
 * g = silu(g) * u, in place: silu in float64 rounded to f32, then an f32
 * product (the rounding sequence of activations.ts's silu() then
 * mulInPlace(); only the last bit of exp can differ). g, u f32 [n].
 */
export function siluMulInPlace(g: Float32Array, u: Float32Array): Float32Array {
  if (!(g instanceof Float32Array)) throw typeError('siluMulInPlace', 'g', `must be a Float32Array, got ${describe(g)}`);
  if (!(u instanceof Float32Array)) throw typeError('siluMulInPlace', 'u', `must be a Float32Array, got ${describe(u)}`);
  if (u.length !== g.length) throw rangeError('siluMulInPlace', 'u', `has ${u.length} values, 'g' has ${g.length}`);
  if (g.length > 0) addon.siluMul(g, u);
  return g;
}

/**
 * RMSNorm of rows x [rows, D] times w [D] into a new f32 array: the sum of
 * squares in float64 in index order, inv = 1 / sqrt(sum / D + eps), each
 * value x * inv * w in float64 rounded once to f32: bit for bit what the
 * JavaScript loop it replaced computed, on the thread pool.
 */
export function rmsNorm(x: Float32Array, w: Float32Array, D: number, eps: number): Float32Array {
  if (!(x instanceof Float32Array)) throw typeError('rmsNorm', 'x', `must be a Float32Array, got ${describe(x)}`);
  if (!(w instanceof Float32Array)) throw typeError('rmsNorm', 'w', `must be a Float32Array, got ${describe(w)}`);
  if (!Number.isSafeInteger(D) || D < 1) throw rangeError('rmsNorm', 'D', `must be a positive integer, got ${describe(D)}`);
  if (w.length !== D) throw rangeError('rmsNorm', 'w', `has ${w.length} values, D is ${D}`);
  if (x.length % D !== 0) throw rangeError('rmsNorm', 'x', `has ${x.length} values, not whole rows of D = ${D}`);
  if (typeof eps !== 'number' || !Number.isFinite(eps)) throw rangeError('rmsNorm', 'eps', `must be a finite number, got ${describe(eps)}`);
  const out = new Float32Array(x.length);
  if (x.length > 0) addon.rmsNorm(x, w, out, D, eps);
  return out;
}
