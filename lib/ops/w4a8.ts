/**
 * W4A8: an int4 weight (per group or per channel, symmetric or with zero
 * points) times activations quantized to int8 on every call, per block of
 * 32 consecutive values of a row (symmetric absmax, codes in [-127, 127]):
 * the arithmetic of ONNX Runtime's MatMulNBits with accuracy_level 4.
 * Each (weight group x activation block) segment is an exact int32 dot
 * product, rescaled by s_w * s_x and summed in float.
 */
import { addon, WFormat } from '../binding.js';
import { QuantkitError } from '../errors.js';
import type { QuantizedTensor } from '../quant/qtensor.js';
import { type PreparedWeight, linearOutput, multiOutputs, prepareWeight } from './matmul.js';
import type { Tensor } from '../tensor.js';

/** Check that w is an int4 weight [N, K] and describe it for the W4A8 kernels. */
export function prepareW4A8(fn: string, arg: string, w: QuantizedTensor): PreparedWeight {
  const pw = prepareWeight(fn, arg, w);
  if (pw.format !== WFormat.i4) {
    throw new QuantkitError('ERR_UNSUPPORTED', `${fn}: W4A8 needs an int4 weight; '${arg}' is ${w.bits}-bit`);
  }
  return pw;
}

type Call = { args: Parameters<typeof addon.gemmW4A8> | null; y: Tensor<'f32'> };

function prepareCall(fn: string, x: Tensor, w: PreparedWeight, bias: Float32Array | null, out?: Float32Array): Call {
  const { rows, y } = linearOutput(fn, x, w.N, w.K, out);
  if (y.size === 0) return { args: null, y };
  return {
    args: [x.data as Float32Array, rows, w.K, w.data as Uint8Array, w.N, w.groupSize, w.scales!, w.zeroPoints as Uint8Array | null, bias, y.data],
    y,
  };
}

function check(fn: string, x: Tensor, bad: number): void {
  if (bad < 0) return;
  const v = (x.data as Float32Array)[bad]!;
  throw new QuantkitError('ERR_NONFINITE', `${fn}: 'x' holds ${Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity'} at index ${bad}; int8 activations need finite inputs`);
}

/** y = x · w^T + bias with x quantized to int8 per block of 32 (W4A8). */
export function matmulW4A8(fn: string, x: Tensor, w: PreparedWeight, bias: Float32Array | null, out?: Float32Array): Tensor<'f32'> {
  const c = prepareCall(fn, x, w, bias, out);
  if (c.args) check(fn, x, addon.gemmW4A8(...c.args));
  return c.y;
}

/** matmulW4A8 on a worker thread. */
export async function matmulW4A8Async(fn: string, x: Tensor, w: PreparedWeight, bias: Float32Array | null, out?: Float32Array): Promise<Tensor<'f32'>> {
  const c = prepareCall(fn, x, w, bias, out);
  if (c.args) check(fn, x, await addon.gemmW4A8Async(...c.args));
  return c.y;
}

type MultiCall = { args: Parameters<typeof addon.gemmW4A8Multi> | null; ys: Tensor<'f32'>[] };

function prepareMulti(fn: string, x: Tensor, ws: readonly PreparedWeight[], biases: readonly (Float32Array | null)[], outs: readonly (Float32Array | undefined)[]): MultiCall {
  const { rows, live, ys } = multiOutputs(fn, x, ws, outs);
  if (live.length === 0) return { args: null, ys };
  const pick = <T>(f: (w: PreparedWeight, i: number) => T) => live.map((i) => f(ws[i]!, i));
  return {
    args: [
      x.data as Float32Array, rows, ws[0]!.K,
      pick((w) => w.data as Uint8Array), pick((w) => w.N), pick((w) => w.groupSize), pick((w) => w.scales!),
      pick((w) => w.zeroPoints as Uint8Array | null), pick((_, i) => biases[i] ?? null), pick((_, i) => ys[i]!.data),
    ],
    ys,
  };
}

/**
 * Several W4A8 products of one x (a layer's q/k/v, or gate/up), each as
 * matmulW4A8 gives it, bit for bit: x is quantized once when the weights'
 * group sizes agree, and the products run in one native call.
 */
export function matmulW4A8Multi(fn: string, x: Tensor, ws: readonly PreparedWeight[], biases: readonly (Float32Array | null)[], outs: readonly (Float32Array | undefined)[]): Tensor<'f32'>[] {
  const c = prepareMulti(fn, x, ws, biases, outs);
  if (c.args) check(fn, x, addon.gemmW4A8Multi(...c.args));
  return c.ys;
}

/** matmulW4A8Multi on a worker thread. */
export async function matmulW4A8MultiAsync(fn: string, x: Tensor, ws: readonly PreparedWeight[], biases: readonly (Float32Array | null)[], outs: readonly (Float32Array | undefined)[]): Promise<Tensor<'f32'>[]> {
  const c = prepareMulti(fn, x, ws, biases, outs);
  if (c.args) check(fn, x, await addon.gemmW4A8MultiAsync(...c.args));
  return c.ys;
}
