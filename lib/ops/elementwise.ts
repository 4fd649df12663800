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
