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
import { type PreparedWeight, linearOutput, prepareWeight } from './matmul.js';
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
