/**
 * Float64 linear algebra for calibrated quantization, over the native core.
 */
import { addon } from '../binding.js';
import { QuantkitError, describe, rangeError, typeError } from '../errors.js';
import { type Jobs, job, runJobs } from './jobs.js';

/**
 * The upper-triangular U with H^-1 = U^T U, for a symmetric positive definite
 * H [K, K] (row-major; its lower triangle is read). GPTQ's error-feedback
 * matrix. A new array; H is not modified. Throws ERR_NOT_POSITIVE_DEFINITE
 * (a QuantkitError) when H is not numerically positive definite: GPTQ's
 * caller then damps it more.
 */
export function cholInverseUpper(h: Float64Array, K: number): Float64Array {
  cholCheck('cholInverseUpper', h, K);
  const u = h.slice();
  if (!addon.cholInverseUpper(u, K)) throw new QuantkitError('ERR_NOT_POSITIVE_DEFINITE', `cholInverseUpper: the ${K} x ${K} matrix is not positive definite`);
  return u;
}

/**
 * cholInverseUpper as a job (ops/jobs.ts) that overwrites h with U (no
 * copy of a K x K matrix on the caller's thread); false, h then garbage,
 * when H is not positive definite.
 */
export function cholInverseUpperInPlaceJob(h: Float64Array, K: number): Jobs<boolean> {
  cholCheck('cholInverseUpper', h, K);
  return job(() => addon.cholInverseUpper(h, K), () => addon.cholInverseUpperAsync(h, K), (K * K * K) / 3);
}

function cholCheck(fn: string, h: Float64Array, K: number): void {
  if (!(h instanceof Float64Array)) throw typeError(fn, 'h', `must be a Float64Array, got ${describe(h)}`);
  if (!Number.isInteger(K) || K < 0) throw rangeError(fn, 'K', `must be a non-negative integer, got ${describe(K)}`);
  if (h.length !== K * K) throw rangeError(fn, 'h', `has ${h.length} values, K * K = ${K * K}`);
}

/** Where one stretch of GPTQ's column walk reads and writes (native/ops/linalg_ops.h, gptq_walk). */
export interface GptqWalkState {
  /** Working weights [N, K], walk order; updated in place. */
  w: Float32Array;
  N: number;
  K: number;
  /** U [K, K] of cholInverseUpper, walk order. */
  u: Float64Array;
  /** col[p]: the storage column walked p-th. */
  col: Int32Array;
  /** Scales and zero points [N, ceil(K / G)], storage order of groups. */
  scales: Float32Array;
  zps: Int32Array;
  G: number;
  qmin: number;
  qmax: number;
  /** Codes [N, K], storage order; written. */
  codes: Int8Array;
}

/**
 * Columns [p0, p1) of the lazy-batch block [b0, b1): quantize each, keep its
 * scaled error in e [N, b1 - b0] and feed it into the block's later columns.
 */
export function gptqWalk(s: GptqWalkState, e: Float32Array, b0: number, p0: number, p1: number, b1: number): void {
  addon.gptqWalk(s.w, s.N, s.K, s.u, s.col, s.scales, s.zps, s.G, s.qmin, s.qmax, s.codes, e, b0, p0, p1, b1);
}

/** gptqWalk as a job. */
export function* gptqWalkJob(s: GptqWalkState, e: Float32Array, b0: number, p0: number, p1: number, b1: number): Jobs<void> {
  yield* job<unknown>(
    () => gptqWalk(s, e, b0, p0, p1, b1),
    () => addon.gptqWalkAsync(s.w, s.N, s.K, s.u, s.col, s.scales, s.zps, s.G, s.qmin, s.qmax, s.codes, e, b0, p0, p1, b1),
    s.N * (p1 - p0) * (b1 - p0),
  );
}

/** After the block [b0, b1): W[:, b1:] -= E [N, b1 - b0] · U[b0:b1, b1:], natively (one f32 GEMM). */
export function gptqLazyUpdate(s: GptqWalkState, e: Float32Array, b0: number, b1: number): void {
  addon.gptqLazyUpdate(s.w, s.N, s.K, s.u, e, b0, b1);
}

/** gptqLazyUpdate as a job. */
export function* gptqLazyUpdateJob(s: GptqWalkState, e: Float32Array, b0: number, b1: number): Jobs<void> {
  yield* job<unknown>(
    () => gptqLazyUpdate(s, e, b0, b1),
    () => addon.gptqLazyUpdateAsync(s.w, s.N, s.K, s.u, e, b0, b1),
    s.N * (b1 - b0) * (s.K - b1),
  );
}

/**
 * Per group of a slice x [N, L] (groups of G columns, the last one shorter):
 * the rounding error of quantizing it with scales/zps [N, ceil(L / G)]
 * (zps null: 0), each column's squared error weighted by w [L].
 */
export function groupErrors(x: Float32Array, N: number, L: number, G: number, scales: Float32Array, zps: Int32Array | null, qmin: number, qmax: number, w: Float64Array): Float64Array {
  return runJobs(groupErrorsJob(x, N, L, G, scales, zps, qmin, qmax, w));
}

/** groupErrors as a job. */
export function* groupErrorsJob(x: Float32Array, N: number, L: number, G: number, scales: Float32Array, zps: Int32Array | null, qmin: number, qmax: number, w: Float64Array): Jobs<Float64Array> {
  if (!Number.isInteger(G) || G < 1) throw rangeError('groupErrors', 'G', `must be an integer >= 1, got ${describe(G)}`);
  if (!Number.isInteger(N) || N < 0 || !Number.isInteger(L) || L < 0) throw rangeError('groupErrors', 'N', `and L must be non-negative integers, got ${describe(N)} and ${describe(L)}`);
  const out = new Float64Array(N * Math.ceil(L / G));
  yield* job<unknown>(
    () => addon.gptqGroupErrors(x, N, L, G, scales, zps, qmin, qmax, w, out),
    () => addon.gptqGroupErrorsAsync(x, N, L, G, scales, zps, qmin, qmax, w, out),
    N * L,
  );
  return out;
}

/** x [N, L] with each group (of G columns) clamped to c * [lo, hi] of its row (lo, hi: [N, ceil(L / G)]), into out. */
export function clampGroups(x: Float32Array, N: number, L: number, G: number, lo: Float32Array, hi: Float32Array, c: number, out: Float32Array): void {
  addon.clampGroups(x, N, L, G, lo, hi, c, out);
}

/** clampGroups as a job. */
export function* clampGroupsJob(x: Float32Array, N: number, L: number, G: number, lo: Float32Array, hi: Float32Array, c: number, out: Float32Array): Jobs<void> {
  yield* job<unknown>(
    () => clampGroups(x, N, L, G, lo, hi, c, out),
    () => addon.clampGroupsAsync(x, N, L, G, lo, hi, c, out),
    N * L,
  );
}
