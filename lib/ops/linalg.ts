/**
 * Float64 linear algebra for calibrated quantization, over the native core.
 */
import { addon } from '../binding.js';
import { QuantkitError, describe, rangeError, typeError } from '../errors.js';

/**
 * The upper-triangular U with H^-1 = U^T U, for a symmetric positive definite
 * H [K, K] (row-major; its lower triangle is read). GPTQ's error-feedback
 * matrix. A new array; H is not modified. Throws ERR_NOT_POSITIVE_DEFINITE
 * (a QuantkitError) when H is not numerically positive definite: GPTQ's
 * caller then damps it more.
 */
export function cholInverseUpper(h: Float64Array, K: number): Float64Array {
  if (!(h instanceof Float64Array)) throw typeError('cholInverseUpper', 'h', `must be a Float64Array, got ${describe(h)}`);
  if (!Number.isInteger(K) || K < 0) throw rangeError('cholInverseUpper', 'K', `must be a non-negative integer, got ${describe(K)}`);
  if (h.length !== K * K) throw rangeError('cholInverseUpper', 'h', `has ${h.length} values, K * K = ${K * K}`);
  const u = h.slice();
  if (!addon.cholInverseUpper(u, K)) throw new QuantkitError('ERR_NOT_POSITIVE_DEFINITE', `cholInverseUpper: the ${K} x ${K} matrix is not positive definite`);
  return u;
}
