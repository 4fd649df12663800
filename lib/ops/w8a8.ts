/**
 * Dynamic int8 activations over an int8 weight (W8A8), and LLM.int8().
 *   x f32 [..., K] is quantized per row (per token, symmetric absmax, codes
 *   in [-127, 127]) on every call; w is int8 symmetric per channel [N, K];
 *   the products accumulate exactly in int32 and are rescaled:
 *   y = ((float)acc * sx[m]) * sw[n] + bias[n].
 * LLM.int8() (threshold >= 0): input columns with any |x| >= threshold are
 * multiplied in float against the weight columns dequantized from the stored
 * int8 (as bitsandbytes does), the rest as above; threshold 0 disables it.
 */
import { addon } from '../binding.js';
import { QuantkitError, describe, rangeError, typeError } from '../errors.js';
import { QuantizedTensor } from '../quant/qtensor.js';
import { linearOutput, multiOutputs } from './matmul.js';
import { Tensor } from '../tensor.js';

export interface W8A8Weight {
  readonly N: number;
  readonly K: number;
  readonly q: Int8Array;
  readonly scale: Float32Array;
  readonly rowsum: Int32Array;
}

/** Check that w is int8 symmetric per channel (or per tensor) and precompute its row sums. */
export function prepareW8A8(fn: string, arg: string, w: QuantizedTensor): W8A8Weight {
  if (!(w instanceof QuantizedTensor)) throw typeError(fn, arg, `must be a QuantizedTensor, got ${describe(w)}`);
  if (w.shape.length !== 2) throw rangeError(fn, arg, `must be 2-D [N, K], got shape [${w.shape.join(', ')}]`);
  if (w.bits !== 8 || w.scheme !== 'symmetric' || w.granularity === 'group') {
    throw new QuantkitError(
      'ERR_UNSUPPORTED',
      `${fn}: int8 activations need an int8 symmetric per-channel (or per-tensor) weight; '${arg}' is ${w.bits}-bit ${w.scheme} per ${w.granularity}`,
    );
  }
  const [N, K] = w.shape as [number, number];
  const scale = w.granularity === 'tensor' ? new Float32Array(N).fill(w.scales[0] ?? 1) : w.scales;
  const rowsum = new Int32Array(N);
  if (N * K > 0) addon.w8a8Rowsums(w.data as Int8Array, N, K, rowsum);
  return { N, K, q: w.data as Int8Array, scale, rowsum };
}

type Call = { args: Parameters<typeof addon.gemmW8A8> | null; y: Tensor<'f32'> };

function prepareCall(fn: string, x: Tensor, w: W8A8Weight, bias: Float32Array | null, threshold: number, out: Float32Array | undefined, perRow: boolean): Call {
  const { rows, y } = linearOutput(fn, x, w.N, w.K, out);
  if (y.size === 0) return { args: null, y };
  return { args: [x.data as Float32Array, rows, w.K, w.q, w.N, w.scale, w.rowsum, threshold, bias, y.data, perRow], y };
}

function finish(fn: string, x: Tensor, r: [number, number]): number {
  if (r[0] >= 0) {
    const v = (x.data as Float32Array)[r[0]]!;
    throw new QuantkitError('ERR_NONFINITE', `${fn}: 'x' holds ${Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity'} at index ${r[0]}; int8 activations need finite inputs`);
  }
  return r[1];
}

/**
 * y = x · w^T + bias with int8 activations; threshold < 0: W8A8, >= 0:
 * LLM.int8(), its outlier columns chosen over all rows, or with `perRow`
 * per row (a row's result then depends on that row alone). Returns y and
 * the outlier column count (perRow: the most of any row).
 */
export function matmulW8A8(fn: string, x: Tensor, w: W8A8Weight, bias: Float32Array | null, threshold: number, out?: Float32Array, perRow = false): { y: Tensor<'f32'>; outliers: number } {
  const c = prepareCall(fn, x, w, bias, threshold, out, perRow);
  const outliers = c.args ? finish(fn, x, addon.gemmW8A8(...c.args)) : 0;
  return { y: c.y, outliers };
}

export async function matmulW8A8Async(fn: string, x: Tensor, w: W8A8Weight, bias: Float32Array | null, threshold: number, out?: Float32Array, perRow = false): Promise<{ y: Tensor<'f32'>; outliers: number }> {
  const c = prepareCall(fn, x, w, bias, threshold, out, perRow);
  const outliers = c.args ? finish(fn, x, await addon.gemmW8A8Async(...c.args)) : 0;
  return { y: c.y, outliers };
}

type MultiCall = { args: Parameters<typeof addon.gemmW8A8Multi> | null; ys: Tensor<'f32'>[] };

function prepareMulti(fn: string, x: Tensor, ws: readonly W8A8Weight[], biases: readonly (Float32Array | null)[], outs: readonly (Float32Array | undefined)[]): MultiCall {
  const { rows, live, ys } = multiOutputs(fn, x, ws, outs);
  if (live.length === 0) return { args: null, ys };
  const pick = <T>(f: (i: number) => T) => live.map(f);
  return {
    args: [x.data as Float32Array, rows, ws[0]!.K, pick((i) => ws[i]!.q), pick((i) => ws[i]!.N), pick((i) => ws[i]!.scale), pick((i) => ws[i]!.rowsum), pick((i) => biases[i] ?? null), pick((i) => ys[i]!.data)],
    ys,
  };
}

function checkMulti(fn: string, x: Tensor, bad: number): void {
  finish(fn, x, [bad, 0]);
}

/**
 * Several W8A8 products of one x (a layer's q/k/v, or gate/up), each as
 * matmulW8A8 (threshold < 0) gives it, bit for bit, with x quantized once
 * and one native call.
 */
export function matmulW8A8Multi(fn: string, x: Tensor, ws: readonly W8A8Weight[], biases: readonly (Float32Array | null)[], outs: readonly (Float32Array | undefined)[]): Tensor<'f32'>[] {
  const c = prepareMulti(fn, x, ws, biases, outs);
  if (c.args) checkMulti(fn, x, addon.gemmW8A8Multi(...c.args));
  return c.ys;
}

/** matmulW8A8Multi on a worker thread. */
export async function matmulW8A8MultiAsync(fn: string, x: Tensor, ws: readonly W8A8Weight[], biases: readonly (Float32Array | null)[], outs: readonly (Float32Array | undefined)[]): Promise<Tensor<'f32'>[]> {
  const c = prepareMulti(fn, x, ws, biases, outs);
  if (c.args) checkMulti(fn, x, await addon.gemmW8A8MultiAsync(...c.args));
  return c.ys;
}
