/**
 * Activation-aware channel scales (AWQ, Lin et al. 2023): before quantizing
 * the layers that read one input x [T, K], multiply each input channel's
 * weights by s_k and divide the input by s_k (folded into the op that makes
 * x, see lib/nn/scale-fold.ts), so the channels that carry large
 * activations get finer steps in their groups:
 *
 *   y = x · W^T = (x / s) · (W diag(s))^T       (exact in float)
 *
 * s = mean|x_k|^alpha (normalized so that max(s) * min(s) = 1), and alpha is
 * searched on a grid for the least output error of the quantized layers on
 * the calibration inputs. That error needs no second pass over the data:
 * for ΔW = dequant(quant(W diag(s))) diag(1/s) - W [N, K],
 *
 *   sum over the T calibration rows of |x ΔW^T|^2 = tr(ΔW H ΔW^T),  H = X^T X [K, K],
 *
 * one native GEMM ΔW · H per layer and candidate. alpha = 0 is s = 1, plain
 * round to nearest, so the search never does worse than it on that error.
 */
import { rangeError } from '../errors.js';
import { type Jobs, chunkedRows, job, runJobs } from '../ops/jobs.js';
import { matmul, matmulAsync } from '../ops/matmul.js';
import { Tensor } from '../tensor.js';
import type { QuantizeOptions } from './qtypes.js';
import { quantizeJob } from './quantize.js';

export interface ScaleSearchLayer {
  /** The layer's float weight [N, K], row-major. */
  weight: Float32Array;
  N: number;
  /** How the layer will be quantized. */
  options: QuantizeOptions;
}

/**
 * The quantizer the scales are searched for: weight [N, K] and the input
 * statistics it sees (H of x / s) -> the dequantized weight, as jobs
 * (ops/jobs.ts). Default: round to nearest (quantize()).
 */
export type SearchQuantizer = (w: Tensor<'f32'>, h: Float64Array, options: QuantizeOptions) => Jobs<Float32Array>;

const roundToNearest: SearchQuantizer = function* (w, _h, options) {
  return (yield* quantizeJob(w, options)).dequantize().data;
};

export interface ScaleSearchResult {
  /** s [K]: multiply the layers' weight columns by it, divide their input by it. */
  scales: Float32Array;
  alpha: number;
  /** tr(ΔW H ΔW^T) summed over the layers, at alpha = 0 (s = 1) and at the chosen alpha. */
  errorBefore: number;
  errorAfter: number;
}

/** w [N, K] -> w diag(s), in place (the weights of layers whose input becomes x / s). */
export function scaleColumns(w: Float32Array, N: number, K: number, s: Float32Array): Float32Array {
  return runJobs(scaleColumnsJobs(w, N, K, s));
}

/** scaleColumns in chunks of rows (ops/jobs.ts chunkedRows). */
export function* scaleColumnsJobs(w: Float32Array, N: number, K: number, s: Float32Array): Jobs<Float32Array> {
  yield* chunkedRows(N, K, (n0, n1) => {
    for (let n = n0; n < n1; n++) for (let k = 0; k < K; k++) w[n * K + k] = w[n * K + k]! * s[k]!;
  });
  return w;
}

/** h [K, K] -> diag(1/s) h diag(1/s), in place: X^T X of the input x / s (in chunks of rows). */
export function* scaleHessianJobs(h: Float64Array, K: number, s: Float32Array): Jobs<Float64Array> {
  yield* chunkedRows(K, K, (j0, j1) => {
    for (let j = j0; j < j1; j++) for (let k = 0; k < K; k++) h[j * K + k] = h[j * K + k]! / (s[j]! * s[k]!);
  });
  return h;
}

/** Candidate exponents: 0, 1/n, ..., (n-1)/n (AWQ's grid of 20). */
const GRID = 20;

/** Output error tr(ΔW H ΔW^T) of one layer's weights quantized after scaling by s. */
function* outputError(layer: ScaleSearchLayer, K: number, s: Float32Array | null, h: Float64Array, h32: Tensor<'f32'>, quant: SearchQuantizer): Jobs<number> {
  const { weight: w, N } = layer;
  let src = w;
  let hs = h;
  if (s) {
    src = yield* scaleColumnsJobs(w.slice(), N, K, s);
    if (quant !== roundToNearest) hs = yield* scaleHessianJobs(h.slice(), K, s);
  }
  const dq = yield* quant(new Tensor('f32', [N, K], src), hs, layer.options);
  const dw = new Float32Array(N * K);
  yield* chunkedRows(N, K, (n0, n1) => {
    for (let n = n0; n < n1; n++) for (let k = 0; k < K; k++) dw[n * K + k] = (s ? dq[n * K + k]! / s[k]! : dq[n * K + k]!) - w[n * K + k]!;
  });
  const d = new Tensor('f32', [N, K], dw);
  const e = (yield* job(() => matmul(d, h32), () => matmulAsync(d, h32), N * K * K)).data; // ΔW · H^T = ΔW · H  [N, K]
  let sum = 0;
  yield* chunkedRows(N, K, (n0, n1) => {
    for (let i = n0 * K; i < n1 * K; i++) sum += dw[i]! * e[i]!;
  });
  return sum;
}

/**
 * Search the channel scales of the layers that share one input with
 * statistics h = X^T X (float64 [K, K]) and absMean = mean |x_k| [K].
 */
export function searchChannelScales(layers: readonly ScaleSearchLayer[], K: number, h: Float64Array, absMean: Float64Array, quant: SearchQuantizer = roundToNearest): ScaleSearchResult {
  return runJobs(searchChannelScalesJobs(layers, K, h, absMean, quant));
}

/** searchChannelScales as jobs. */
export function* searchChannelScalesJobs(layers: readonly ScaleSearchLayer[], K: number, h: Float64Array, absMean: Float64Array, quant: SearchQuantizer = roundToNearest): Jobs<ScaleSearchResult> {
  if (h.length !== K * K || absMean.length !== K) throw rangeError('searchChannelScales', 'h', `must hold K * K = ${K * K} values with absMean of K = ${K}`);
  // H in f32 for the GEMM, normalized: only the ratios of the errors matter.
  let hmax = 0;
  yield* chunkedRows(K, K, (j0, j1) => {
    for (let i = j0 * K; i < j1 * K; i++) hmax = Math.max(hmax, Math.abs(h[i]!));
  });
  const h32data = new Float32Array(K * K);
  yield* chunkedRows(K, K, (j0, j1) => {
    for (let i = j0 * K; i < j1 * K; i++) h32data[i] = hmax > 0 ? h[i]! / hmax : h[i]!;
  });
  const h32 = new Tensor('f32', [K, K], h32data);
  let amax = 0;
  for (let k = 0; k < K; k++) amax = Math.max(amax, absMean[k]!);
  // a channel whose input is (almost) always zero gets no scale of its own
  const floor = amax > 0 ? amax * 1e-5 : 1;
  const total = function* (s: Float32Array | null): Jobs<number> {
    let acc = 0;
    for (const l of layers) acc += yield* outputError(l, K, s, h, h32, quant);
    return acc;
  };
  const errorBefore = yield* total(null);
  let best = { alpha: 0, s: null as Float32Array | null, err: errorBefore };
  for (let i = 1; i < GRID; i++) {
    const alpha = i / GRID;
    const s = new Float32Array(K);
    let lo = Infinity, hi = 0;
    for (let k = 0; k < K; k++) {
      s[k] = Math.max(absMean[k]!, floor) ** alpha;
      lo = Math.min(lo, s[k]!);
      hi = Math.max(hi, s[k]!);
    }
    const norm = 1 / Math.sqrt(lo * hi);
    for (let k = 0; k < K; k++) s[k] = s[k]! * norm;
    const err = yield* total(s);
    if (err < best.err) best = { alpha, s, err };
  }
  return { scales: best.s ?? new Float32Array(K).fill(1), alpha: best.alpha, errorBefore, errorAfter: best.err };
}
