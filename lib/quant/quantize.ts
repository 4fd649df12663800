/**
 * quantize / dequantize and sub-byte packing, over the native kernels.
 * Formulas (README, "Quantization formulas"): symmetric scale = absmax/qmax,
 * asymmetric scale = (max - min)/(qmax - qmin) over a range widened to
 * include 0, zp = clamp(rne(qmin - min/scale)), q = clamp(rne(x/scale) + zp).
 */
import { SrcType, addon } from '../binding.js';
import { describe, rangeError, typeError } from '../errors.js';
import { hugeArray } from '../ops/huge-pages.js';
import { type Jobs, job } from '../ops/jobs.js';
import { noteCopy } from '../provenance.js';
import { Tensor, shapeSize } from '../tensor.js';
import { QuantizedTensor, assertQuantized, nonFiniteError } from './qtensor.js';
import { GRAN_CODE, packedRowBytes, resolveOptions, rowsK, scaleCount, type QuantizeOptions } from './qtypes.js';

const SRC_CODE = { f32: SrcType.f32, f16: SrcType.f16, bf16: SrcType.bf16 } as const;

type QuantizeArgs = Parameters<typeof addon.quantize>;

/** Validate, allocate the outputs and describe the native call. */
function prepareQuantize(fn: string, t: Tensor, options: QuantizeOptions | undefined) {
  if (!(t instanceof Tensor)) throw typeError(fn, 't', `must be a Tensor, got ${describe(t)}`);
  if (t.dtype !== 'f32' && t.dtype !== 'f16' && t.dtype !== 'bf16') {
    throw typeError(fn, 't', `must have dtype f32, f16 or bf16, got ${t.dtype}`);
  }
  const spec = resolveOptions(fn, t.shape, options);
  const [rows, K] = rowsK(t.shape);
  const asym = spec.scheme === 'asymmetric';
  const nScales = scaleCount(spec.granularity, rows, K, spec.groupSize);
  // the layer's weights from now on: on huge pages when large (ops/huge-pages.ts)
  const data = spec.bits === 8 ? hugeArray(Int8Array, rows * K) : hugeArray(Uint8Array, rows * packedRowBytes(spec.bits, K));
  const scales = hugeArray(Float32Array, nScales).fill(1);
  const zeroPoints = asym ? (spec.bits === 8 ? hugeArray(Int8Array, nScales).fill(-128) : hugeArray(Uint8Array, nScales)) : null;
  const args: QuantizeArgs = [
    t.data as Float32Array | Uint16Array,
    SRC_CODE[t.dtype],
    rows,
    K,
    spec.bits,
    asym,
    GRAN_CODE[spec.granularity],
    spec.granularity === 'group' ? spec.groupSize : 0,
    data,
    scales,
    zeroPoints,
  ];
  const finish = (bad: number): QuantizedTensor => {
    if (bad >= 0) throw nonFiniteError(fn, t, bad);
    const q = new QuantizedTensor({
      bits: spec.bits,
      scheme: spec.scheme,
      granularity: spec.granularity,
      groupSize: spec.granularity === 'group' ? spec.groupSize : undefined,
      shape: t.shape,
      data,
      scales,
      zeroPoints,
      name: t.name,
    });
    return q.withScaleDtype(spec.scaleDtype);
  };
  return { args, empty: rows * K === 0, finish };
}

/** Quantize an f32/f16/bf16 tensor; K (groups, channels) runs along the last dimension. */
export function quantize(t: Tensor, options?: QuantizeOptions): QuantizedTensor {
  const p = prepareQuantize('quantize', t, options);
  return p.finish(p.empty ? -1 : addon.quantize(...p.args));
}

/** quantize() of t as a job (ops/jobs.ts): blocking or on a worker thread, as the driver runs it. */
export function quantizeJob(t: Tensor, options: QuantizeOptions): Jobs<QuantizedTensor> {
  return job(() => quantize(t, options), () => quantizeAsync(t, options), t.size);
}

/** quantize() on a worker thread: the event loop stays free while it runs. */
export async function quantizeAsync(t: Tensor, options?: QuantizeOptions): Promise<QuantizedTensor> {
  const p = prepareQuantize('quantizeAsync', t, options);
  return p.finish(p.empty ? -1 : await addon.quantizeAsync(...p.args));
}

/** The f32 tensor a QuantizedTensor stands for. */
export function dequantize(q: QuantizedTensor): Tensor<'f32'> {
  assertQuantized('dequantize', 'q', q);
  return q.dequantize();
}

function checkCodes(fn: string, values: Int8Array | Uint8Array, lo: number, hi: number): void {
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (v < lo || v > hi) throw rangeError(fn, 'values', `must hold integers in [${lo}, ${hi}]; index ${i} holds ${v}`);
  }
}

function packImpl(fn: string, bits: 4 | 2, values: Int8Array | Uint8Array, shape: readonly number[] | undefined, lo: number, hi: number): Uint8Array {
  if (!(values instanceof Int8Array) && !(values instanceof Uint8Array)) {
    throw typeError(fn, 'values', `must be an Int8Array or Uint8Array, got ${describe(values)}`);
  }
  const s = shape ?? [values.length];
  if (shapeSize(s, fn, 'shape') !== values.length) throw rangeError(fn, 'shape', `[${s.join(', ')}] does not match ${values.length} values`);
  checkCodes(fn, values, lo, hi);
  const [rows, K] = rowsK(s);
  const out = hugeArray(Uint8Array, rows * packedRowBytes(bits, K)); // packed weights: on lines like quantize()'s
  const v8 = values instanceof Int8Array ? values : new Int8Array(values.buffer, values.byteOffset, values.length);
  if (values.length > 0) addon.packRows(bits, v8, rows, K, out);
  return out;
}

function unpackImpl(fn: string, bits: 4 | 2, packed: Uint8Array, shape: readonly number[], signed: boolean): Int8Array {
  if (!(packed instanceof Uint8Array)) throw typeError(fn, 'packed', `must be a Uint8Array, got ${describe(packed)}`);
  const n = shapeSize(shape, fn, 'shape');
  const [rows, K] = rowsK(shape);
  const want = rows * packedRowBytes(bits, K);
  if (packed.length !== want) throw rangeError(fn, 'packed', `has ${packed.length} bytes; shape [${shape.join(', ')}] needs ${want}`);
  const out = new Int8Array(n);
  if (n > 0) addon.unpackRows(bits, signed, packed, rows, K, out);
  return out;
}

/**
 * Pack int4 codes two per byte along the last dimension of `shape` (default:
 * one row). Even element in the low nibble; signed values (-8..7) are stored
 * as two's-complement nibbles, unsigned ones (0..15) as is.
 */
export function packInt4(values: Int8Array | Uint8Array, shape?: readonly number[], options?: { signed?: boolean }): Uint8Array {
  const signed = options?.signed ?? values instanceof Int8Array;
  return packImpl('packInt4', 4, values, shape, signed ? -8 : 0, signed ? 7 : 15);
}

/** Inverse of packInt4; `signed` sign-extends each nibble (default true). */
export function unpackInt4(packed: Uint8Array, shape: readonly number[], options?: { signed?: boolean }): Int8Array {
  return unpackImpl('unpackInt4', 4, packed, shape, options?.signed ?? true);
}

/** Pack int2 codes (0..3) four per byte: element 4i+j in bits 2j..2j+1. */
export function packInt2(values: Int8Array | Uint8Array, shape?: readonly number[]): Uint8Array {
  return packImpl('packInt2', 2, values, shape, 0, 3);
}

export function unpackInt2(packed: Uint8Array, shape: readonly number[]): Int8Array {
  return unpackImpl('unpackInt2', 2, packed, shape, false);
}

/** An f32 copy of an f32/f16/bf16 tensor (f32 input is returned as is). */
export function toFloat32(t: Tensor): Tensor<'f32'> {
  if (!(t instanceof Tensor)) throw typeError('toFloat32', 't', `must be a Tensor, got ${describe(t)}`);
  if (t.dtype === 'f32') return t as Tensor<'f32'>;
  if (t.dtype === 'f16' || t.dtype === 'bf16') {
    const out = hugeArray(Float32Array, t.size); // widened weights: on a 64-byte line like quantize()'s
    if (t.size > 0) addon.toF32(SRC_CODE[t.dtype], t.data as Uint16Array, out);
    noteCopy(out, `${t.dtype} -> f32`);
    return new Tensor('f32', t.shape, out, t.name);
  }
  return new Tensor('f32', t.shape, Float32Array.from(t.data as ArrayLike<number>), t.name);
}
