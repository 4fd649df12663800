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
 * The group-fit helpers of GPTQ (lib/quant/gptq.ts) over a slice x [N, L]
 * (groups of G columns, the last one shorter) whose columns are columns
 * k0 .. k0 + L of the layer's input Hessian h [ldh, ldh] (float64,
 * symmetric). A group quantized with scales/zps [N, ceil(L / G)] (zps null:
 * 0) moves the layer's output on the calibration inputs by r' H_g r, r its
 * rounding error and H_g its block of h (in diagonal blocks of 128 columns:
 * native/ops/linalg_ops.h).
 */
export interface GroupFit {
  x: Float32Array;
  N: number;
  L: number;
  G: number;
  scales: Float32Array;
  zps: Int32Array | null;
  qmin: number;
  qmax: number;
  h: Float64Array;
  ldh: number;
  k0: number;
}

function checkFit(fn: string, f: GroupFit): void {
  if (!Number.isInteger(f.G) || f.G < 1) throw rangeError(fn, 'G', `must be an integer >= 1, got ${describe(f.G)}`);
  if (!Number.isInteger(f.N) || f.N < 0 || !Number.isInteger(f.L) || f.L < 0) throw rangeError(fn, 'N', `and L must be non-negative integers, got ${describe(f.N)} and ${describe(f.L)}`);
}

/** Each group's output error r' H_g r, [N, ceil(L / G)]. */
export function groupErrors(f: GroupFit): Float64Array {
  return runJobs(groupErrorsJob(f));
}

/** groupErrors as a job. */
export function* groupErrorsJob(f: GroupFit): Jobs<Float64Array> {
  checkFit('groupErrors', f);
  const out = new Float64Array(f.N * Math.ceil(f.L / f.G));
  const work = f.N * f.L * Math.min(f.G, 128);
  yield* job<unknown>(
    () => addon.gptqGroupErrors(f.x, f.N, f.L, f.G, f.scales, f.zps, f.qmin, f.qmax, f.h, f.ldh, f.k0, out),
    () => addon.gptqGroupErrorsAsync(f.x, f.N, f.L, f.G, f.scales, f.zps, f.qmin, f.qmax, f.h, f.ldh, f.k0, out),
    work,
  );
  return out;
}

/**
 * Up to `rounds` times per group: the codes at its scale, then the scale
 * that fits them best under H_g (least squares, the zero point kept), kept
 * while its error is lower than err (the error of the scales on entry, as
 * groupErrors gives it). f.scales and err are updated in place.
 */
export function groupRefit(f: GroupFit, rounds: number, err: Float64Array): void {
  runJobs(groupRefitJob(f, rounds, err));
}

/** groupRefit as a job. */
export function* groupRefitJob(f: GroupFit, rounds: number, err: Float64Array): Jobs<void> {
  checkFit('groupRefit', f);
  const work = f.N * f.L * Math.min(f.G, 128) * (2 * rounds + 1);
  yield* job<unknown>(
    () => addon.gptqGroupRefit(f.x, f.N, f.L, f.G, f.scales, f.zps, f.qmin, f.qmax, f.h, f.ldh, f.k0, rounds, err),
    () => addon.gptqGroupRefitAsync(f.x, f.N, f.L, f.G, f.scales, f.zps, f.qmin, f.qmax, f.h, f.ldh, f.k0, rounds, err),
    work,
  );
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
