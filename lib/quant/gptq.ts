/**
 * GPTQ (Frantar et al. 2022): quantize a weight W [N, K] column by column,
 * feeding each column's rounding error forward into the columns not yet
 * quantized, weighted by the inverse Hessian of the layer's inputs
 * (H = X^T X over calibration activations X [T, K]), so that the layer's
 * OUTPUT on those inputs moves as little as possible, rather than each
 * weight on its own.
 *
 *   U = upper Cholesky factor of (H + damp * mean(diag H) * I)^-1
 *   for each column j (in blocks of B): q_j = quant(w_j),
 *     e_j = (w_j - q_j) / U[j, j],  w_t -= e_j * U[j, t] for t > j in the block;
 *   after each block, the columns after it: W[:, b1:] -= E · U[b0:b1, b1:]
 *   (one native GEMM: the "lazy batch" update).
 * The factor U (a blocked float64 Cholesky and triangular inverse), the
 * column walk inside each block, the lazy-batch update and the clipping
 * search's clamps and error sums run natively (ops/linalg.ts); this file
 * orders the work and chooses the group parameters.
 *
 * Groups keep the storage layout the kernels read (scales per group of
 * consecutive columns, a shorter last group when G does not divide K). A
 * group's scale and zero point are chosen from the error-updated weights
 * when the walk reaches its first column; with activation order (columns
 * walked by decreasing H[j, j], the most active inputs first, while their
 * error can still be absorbed by the others) they are chosen up front from
 * W itself, since a group's columns are then visited out of order.
 * Each group's parameters are then fitted to the layer's output (option
 * clip, default on). The measure is the output error the group's rounding
 * causes on the calibration inputs, r' H_g r (r the rounding error, H_g the
 * group's block of H), not the rounding error itself: the range is shrunk
 * (clipping the few largest weights gives every other one a finer step) to
 * the candidate of least output error, then the scale is refitted to its
 * codes by least squares under H_g, round after round while that error
 * falls. On stories260K int4 this takes GPTQ from 1.056 to 1.037 x fp32
 * perplexity at g32 and from 1.088 to 1.061 at g128 (README, "Calibrated
 * 4-bit").
 * Column j whose input is always zero (H[j, j] = 0) gets weight 0.
 */
import { QuantkitError, describe, rangeError, typeError } from '../errors.js';
import { hugeArray } from '../ops/huge-pages.js';
import { type Jobs, chunkedRows, runJobs, runJobsAsync } from '../ops/jobs.js';
import { type GptqWalkState, type GroupFit, cholInverseUpperInPlaceJob, clampGroupsJob, groupErrorsJob, groupRefitJob, gptqLazyUpdateJob, gptqWalkJob } from '../ops/linalg.js';
import { Tensor } from '../tensor.js';
import { QuantizedTensor } from './qtensor.js';
import { type Scheme, codeRange } from './qtypes.js';
import { packInt4, quantizeJob } from './quantize.js';

export interface GptqOptions {
  bits: 8 | 4;
  scheme: Scheme;
  /** Values per scale along K; undefined: one per row (per channel). */
  groupSize?: number;
  /** Dampening, as a fraction of the mean of diag(H) added to the diagonal (default 0.01). */
  damp?: number;
  /** Columns per lazy-batch block (default 128). */
  blockSize?: number;
  /** Walk the columns by decreasing H[j, j] (default true). */
  actOrder?: boolean;
  /** Fit each group's range and scale to the layer's output on the calibration inputs (default true; see the header). */
  clip?: boolean;
  /** Name recorded on the QuantizedTensor. */
  name?: string;
}

/** Clipping search: ranges shrunk by CLIP_STEP, CLIP_STEPS times (1.0 down to 0.5). */
const CLIP_STEP = 0.05;
const CLIP_STEPS = 10;
/** The group fit's least-squares rounds at most (each stops once its error no longer falls). */
const REFIT_ROUNDS = 10;

/**
 * GPTQ-quantize w [N, K] (f32) against the input Hessian h [K, K] (float64,
 * row-major, symmetric; any positive scale: only its shape matters).
 */
export function gptqQuantize(w: Tensor<'f32'>, h: Float64Array, options: GptqOptions): QuantizedTensor {
  return runJobs(gptqJobs(w, h, options));
}

/**
 * gptqQuantize with its native calls (the factor, the walk, the updates,
 * the clipping search) on worker threads: the same bits, while the event
 * loop stays free. w and h must not change until it settles.
 */
export function gptqQuantizeAsync(w: Tensor<'f32'>, h: Float64Array, options: GptqOptions): Promise<QuantizedTensor> {
  return runJobsAsync(gptqJobs(w, h, options, 'gptqQuantizeAsync'));
}

/**
 * What GPTQ derives from H alone: the column order and the upper factor U
 * of the damped, permuted H^-1. Layers that read the same input (q, k and v;
 * gate and up) have the same H, so quantizeModel computes it once for them
 * (gptqJobs' `factor`). U is only read.
 */
export interface GptqFactor {
  readonly K: number;
  readonly damp: number;
  readonly actOrder: boolean;
  /** dead[j]: input j is always zero (H[j, j] = 0). */
  readonly dead: Uint8Array;
  /** H's diagonal as GPTQ uses it (dead inputs: 1), storage order. */
  readonly diag: Float64Array;
  /** perm[p]: the storage column walked p-th. */
  readonly perm: readonly number[];
  /** U [K, K], walk order. */
  readonly u: Float64Array;
}

/** GptqFactor of h [K, K] as jobs. */
export function* gptqFactorJobs(h: Float64Array, K: number, damp: number, actOrder: boolean, fn = 'gptqQuantize'): Jobs<GptqFactor> {
  // Dead inputs (always zero): weight 0, and a unit diagonal so H stays
  // invertible. h itself is not copied (K x K float64: a long copy on the
  // caller's thread); diag holds H's diagonal as GPTQ uses it.
  const dead = new Uint8Array(K);
  const diag = new Float64Array(K);
  for (let j = 0; j < K; j++) if (!(h[j * K + j]! > 0)) dead[j] = 1;
  let meanDiag = 0;
  for (let j = 0; j < K; j++) if (!dead[j]) meanDiag += h[j * K + j]!;
  meanDiag = K > 0 ? meanDiag / K : 0;
  if (!(meanDiag > 0)) meanDiag = 1;
  for (let j = 0; j < K; j++) diag[j] = dead[j] ? 1 : h[j * K + j]!;

  // Column order: perm[p] = the storage column walked p-th.
  const perm = Array.from({ length: K }, (_, j) => j);
  if (actOrder) perm.sort((a, b) => diag[b]! - diag[a]! || a - b);
  // The permuted Hessian, damped (more if it is not positive definite),
  // factored in place into U. Long loops run in chunks: the async form lets
  // the event loop run between them.
  for (let d = damp, tries = 0; ; d = d === 0 ? 1e-6 : d * 10, tries++) {
    const Hd = new Float64Array(K * K);
    yield* chunkedRows(K, K, (p0, p1) => {
      for (let p = p0; p < p1; p++) {
        const r = perm[p]! * K;
        for (let q = 0; q < K; q++) Hd[p * K + q] = h[r + perm[q]!]!;
        Hd[p * K + p] = diag[perm[p]!]! + d * meanDiag;
      }
    });
    if (yield* cholInverseUpperInPlaceJob(Hd, K)) return { K, damp, actOrder, dead, diag, perm, u: Hd };
    if (tries >= 6) throw new QuantkitError('ERR_NOT_POSITIVE_DEFINITE', `${fn}: the ${K} x ${K} Hessian is not positive definite, even damped by ${d} x its mean diagonal`);
  }
}

/**
 * The last factor made, handed out again for an H with the same values
 * (q, k and v read one input: one factor for the three). Holds one factor
 * at a time. The h arrays passed must not change while the cache is used.
 */
export class GptqFactorCache {
  #h: Float64Array | null = null;
  #f: GptqFactor | null = null;
  /** Factors computed and reused so far. */
  made = 0;
  reused = 0;
  constructor(
    readonly damp: number,
    readonly actOrder: boolean,
  ) {}

  *get(h: Float64Array, K: number, fn = 'gptqQuantize'): Jobs<GptqFactor> {
    const prev = this.#h;
    if (prev !== null && this.#f!.K === K && prev.length === h.length) {
      let same = true;
      if (prev !== h) {
        yield* chunkedRows(K, K, (r0, r1) => {
          for (let i = r0 * K; same && i < r1 * K; i++) if (prev[i] !== h[i]) same = false;
        });
      }
      if (same) {
        this.reused++;
        return this.#f!;
      }
    }
    // dropped before the next one is made: one K x K factor held at a time
    this.#h = this.#f = null;
    const f = yield* gptqFactorJobs(h, K, this.damp, this.actOrder, fn);
    this.made++;
    this.#h = h;
    this.#f = f;
    return f;
  }
}

/**
 * gptqQuantize as jobs (ops/jobs.ts), for callers that run it either way.
 * `factor`: gptqFactorJobs of this very h with these options' damp and
 * actOrder, computed once for several layers.
 */
export function* gptqJobs(w: Tensor<'f32'>, h: Float64Array, options: GptqOptions, fn = 'gptqQuantize', factor?: GptqFactor): Jobs<QuantizedTensor> {
  if (!(w instanceof Tensor) || w.dtype !== 'f32' || w.shape.length !== 2) throw typeError(fn, 'w', `must be an f32 Tensor [N, K], got ${describe(w)}`);
  const [N, K] = w.shape as [number, number];
  if (!(h instanceof Float64Array) || h.length !== K * K) throw rangeError(fn, 'h', `must be a Float64Array of K * K = ${K * K} values`);
  const { bits, scheme } = options;
  if (bits !== 8 && bits !== 4) throw rangeError(fn, 'options.bits', `must be 8 or 4, got ${describe(bits)}`);
  const G = options.groupSize ?? K;
  if (!Number.isInteger(G) || G < 1 || (options.groupSize !== undefined && (G < 2 || (bits === 4 && G % 2 !== 0)))) {
    throw rangeError(fn, 'options.groupSize', `must be an even integer >= 2, got ${describe(options.groupSize)}`);
  }
  const damp = options.damp ?? 0.01;
  if (!(damp >= 0) || !Number.isFinite(damp)) throw rangeError(fn, 'options.damp', `must be a finite number >= 0, got ${describe(damp)}`);
  const B = options.blockSize ?? 128;
  if (!Number.isInteger(B) || B < 1) throw rangeError(fn, 'options.blockSize', `must be a positive integer, got ${describe(B)}`);
  const actOrder = options.actOrder ?? true;
  const clip = options.clip ?? true;
  const asym = scheme === 'asymmetric';
  const [qmin, qmax] = codeRange(bits, scheme);
  const ng = K === 0 ? 0 : Math.ceil(K / G);
  if (factor && (factor.K !== K || factor.damp !== damp || factor.actOrder !== actOrder)) throw rangeError(fn, 'factor', `was made for K ${factor.K}, damp ${factor.damp}, actOrder ${factor.actOrder}`);
  const { dead, perm, u: U } = factor ?? (yield* gptqFactorJobs(h, K, damp, actOrder, fn));
  const W0 = w.data;

  // Working weights in walk order, f32 like the products that update them.
  const Wp = new Float32Array(N * K);
  yield* chunkedRows(N, K, (n0, n1) => {
    for (let n = n0; n < n1; n++) for (let p = 0; p < K; p++) Wp[n * K + p] = dead[perm[p]!] ? 0 : W0[n * K + perm[p]!]!;
  });

  const scales = hugeArray(Float32Array, N * ng); // on lines, as quantize()'s
  const zps = new Int32Array(N * ng);
  const codes = hugeArray(Int8Array, N * K); // the int8 layer's storage: on lines like quantize()'s
  // Scales and zero points of a slice [N, L] (storage order, columns k0 ..
  // k0 + L of the layer) holding `gl` groups per row (of G columns, the last
  // one shorter when G does not divide L), written to the global group g0 +
  // j: quantize() over the slice, so the rule is the one round-to-nearest
  // uses; then, with `clip`, fitted to the layer's output (the group fit):
  // the range of each group shrunk to c * [min, max] (quantize() of the
  // slice clamped to it, all groups in one call), kept per row and group
  // where it lowers the group's output error r' H_g r (r the rounding
  // error, H_g the group's block of H), then the scale refitted to the
  // codes by least squares under H_g, round after round while that error
  // falls (ops/linalg.ts groupRefit; the zero point stays).
  const sliceParams = function* (slice: Float32Array, L: number, gl: number, g0: number, k0: number): Jobs<void> {
    const opts = { bits, scheme, ...(gl > 1 ? { granularity: 'group' as const, groupSize: G } : { granularity: 'channel' as const }) };
    const t = new Tensor('f32', [N, L], slice);
    const p = yield* quantizeJob(t, opts);
    const sc = Float32Array.from(p.scales);
    const zp = p.zeroPoints ? Int32Array.from(p.zeroPoints) : null;
    if (clip) {
      // natively: the clamp of each candidate, the output errors and the refit (ops/linalg.ts)
      const fit = (scales: Float32Array, zps: Int32Array | null): GroupFit => ({ x: slice, N, L, G, scales, zps, qmin, qmax, h, ldh: K, k0 });
      const best = yield* groupErrorsJob(fit(sc, zp));
      const lo = new Float32Array(N * gl), hi = new Float32Array(N * gl);
      yield* chunkedRows(N, L, (n0, n1) => {
        for (let n = n0; n < n1; n++) for (let j = 0; j < gl; j++) {
          let a = Infinity, b = -Infinity;
          for (let i = j * G; i < Math.min(L, (j + 1) * G); i++) (a = Math.min(a, slice[n * L + i]!)), (b = Math.max(b, slice[n * L + i]!));
          (lo[n * gl + j] = a), (hi[n * gl + j] = b);
        }
      });
      const clipped = new Float32Array(N * L);
      for (let step = 1; step <= CLIP_STEPS; step++) {
        yield* clampGroupsJob(slice, N, L, G, lo, hi, 1 - step * CLIP_STEP, clipped);
        const pc = yield* quantizeJob(new Tensor('f32', [N, L], clipped), opts);
        const cz = pc.zeroPoints ? Int32Array.from(pc.zeroPoints) : null;
        const e = yield* groupErrorsJob(fit(pc.scales, cz));
        for (let i = 0; i < N * gl; i++) {
          if (e[i]! < best[i]!) {
            best[i] = e[i]!;
            sc[i] = pc.scales[i]!;
            if (zp) zp[i] = cz![i]!;
          }
        }
      }
      yield* groupRefitJob(fit(sc, zp), REFIT_ROUNDS, best);
    }
    for (let n = 0; n < N; n++) for (let j = 0; j < gl; j++) {
      scales[n * ng + g0 + j] = sc[n * gl + j]!;
      zps[n * ng + g0 + j] = zp ? zp[n * gl + j]! : 0;
    }
  };
  // Group g's parameters from its columns of the walk-order working weights
  // (the walk reaches the group's first column).
  const groupParams = function* (g: number): Jobs<void> {
    const k0 = g * G, len = Math.min(K, k0 + G) - k0;
    const slice = new Float32Array(N * len);
    for (let n = 0; n < N; n++) for (let i = 0; i < len; i++) slice[n * len + i] = Wp[n * K + k0 + i]!;
    yield* sliceParams(slice, len, 1, g, k0);
  };
  if (actOrder && K > 0) {
    // static groups: every group at once from W in storage order (dead columns as 0), before any update
    const live = new Float32Array(N * K);
    yield* chunkedRows(N, K, (n0, n1) => {
      for (let i = n0 * K; i < n1 * K; i++) live[i] = dead[i % K] ? 0 : W0[i]!;
    });
    yield* sliceParams(live, K, ng, 0, 0);
  }

  const walk: GptqWalkState = { w: Wp, N, K, u: U, col: Int32Array.from(perm), scales, zps, G, qmin, qmax, codes };
  for (let b0 = 0; b0 < K; b0 += B) {
    const b1 = Math.min(K, b0 + B);
    const nb = b1 - b0;
    const E = new Float32Array(N * nb);
    // natively, in stretches that end where a group's parameters must be
    // chosen (without activation order, at a group's first column)
    for (let p0 = b0; p0 < b1; ) {
      if (!actOrder && perm[p0]! % G === 0) yield* groupParams(perm[p0]! / G);
      let p1 = p0 + 1;
      while (p1 < b1 && (actOrder || perm[p1]! % G !== 0)) p1++;
      yield* gptqWalkJob(walk, E, b0, p0, p1, b1);
      p0 = p1;
    }
    // W[:, b1:] -= E [N, nb] · U[b0:b1, b1:]   (one native f32 GEMM)
    yield* gptqLazyUpdateJob(walk, E, b0, b1);
  }

  // Storage: codes as quantize() lays them out.
  const zeroPoints = asym ? (bits === 8 ? hugeArray(Int8Array, zps.length) : hugeArray(Uint8Array, zps.length)) : null;
  zeroPoints?.set(zps);
  const data = bits === 8 ? codes : packInt4(asym ? Uint8Array.from(codes) : codes, [N, K], { signed: !asym });
  return new QuantizedTensor({
    bits,
    scheme,
    granularity: options.groupSize === undefined ? 'channel' : 'group',
    groupSize: options.groupSize,
    shape: [N, K],
    data,
    scales,
    zeroPoints,
    name: options.name ?? w.name,
  });
}
