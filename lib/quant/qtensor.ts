/**
 * QuantizedTensor: integer codes plus the scales (and zero points) that map
 * them back to real values, x ~= (q - zp) * scale.
 *
 * Layout for a tensor seen as rows x K (K = last dimension):
 *   data        8 bits: Int8Array [rows, K]
 *               4 bits: Uint8Array [rows, ceil(K/2)], two codes per byte, even
 *                       element in the low nibble; symmetric codes as
 *                       two's-complement nibbles (-8..7), asymmetric as 0..15
 *               2 bits: Uint8Array [rows, ceil(K/4)], element 4i+j in bits 2j..2j+1
 *   scales      [1] (tensor), [rows] (channel), [rows, ceil(K/G)] (group):
 *               Float32Array, or f16 bits in a Uint16Array (scaleDtype 'f16':
 *               half the bytes, read as such by the GEMM kernels)
 *   zeroPoints  asymmetric only, same shape as scales: Int8Array (8 bits) or
 *               Uint8Array (4/2 bits, values 0..15 / 0..3); null when symmetric
 */
import { SrcType, addon } from '../binding.js';
import { f32ToF16Bits } from './half.js';
import { hugeArray } from '../ops/huge-pages.js';
import { QuantkitError, describe, rangeError, typeError } from '../errors.js';
import { Tensor, shapeSize } from '../tensor.js';
import { GRAN_CODE, codeRange, packedRowBytes, rowsK, scaleCount, type Bits, type Granularity, type Scheme } from './qtypes.js';

export interface QuantizedTensorInit {
  bits: Bits;
  scheme: Scheme;
  granularity: Granularity;
  /** Required for 'group'. */
  groupSize?: number;
  shape: readonly number[];
  data: Int8Array | Uint8Array;
  /** f32 scales, or f16 bits (a Uint16Array: scaleDtype 'f16'). */
  scales: Float32Array | Uint16Array;
  zeroPoints?: Int8Array | Uint8Array | null;
  name?: string;
}

export type ScaleDtype = 'f32' | 'f16';

export class QuantizedTensor {
  readonly bits: Bits;
  readonly scheme: Scheme;
  readonly granularity: Granularity;
  /** Values per scale along the last dimension: G, K (channel) or rows*K (tensor). */
  readonly groupSize: number;
  readonly shape: readonly number[];
  readonly data: Int8Array | Uint8Array;
  /** The stored scales: a Float32Array, or f16 bits in a Uint16Array. */
  readonly scaleData: Float32Array | Uint16Array;
  readonly scaleDtype: ScaleDtype;
  readonly zeroPoints: Int8Array | Uint8Array | null;
  name: string | undefined;

  /** Wraps existing arrays (no copy) after checking that they are consistent. */
  constructor(init: QuantizedTensorInit) {
    const fn = 'QuantizedTensor';
    if (init === null || typeof init !== 'object') throw typeError(fn, 'init', `must be an object, got ${describe(init)}`);
    const { bits, scheme, granularity } = init;
    if (bits !== 8 && bits !== 4 && bits !== 2) throw rangeError(fn, 'bits', `must be 8, 4 or 2, got ${describe(bits)}`);
    if (scheme !== 'symmetric' && scheme !== 'asymmetric') throw rangeError(fn, 'scheme', `must be 'symmetric' or 'asymmetric'`);
    if (bits === 2 && scheme !== 'asymmetric') throw rangeError(fn, 'scheme', `must be 'asymmetric' for 2 bits`);
    if (granularity !== 'tensor' && granularity !== 'channel' && granularity !== 'group') {
      throw rangeError(fn, 'granularity', `must be 'tensor', 'channel' or 'group'`);
    }
    shapeSize(init.shape, fn);
    const [rows, K] = rowsK(init.shape);
    let G: number;
    if (granularity === 'group') {
      G = init.groupSize ?? NaN;
      if (!Number.isInteger(G) || G < 2 || G % 2 !== 0) {
        throw rangeError(fn, 'groupSize', `must be an even integer >= 2, got ${describe(init.groupSize)}`);
      }
    } else {
      G = granularity === 'channel' ? K : rows * K;
    }
    const wantData = rows * packedRowBytes(bits, K);
    const DataCtor = bits === 8 ? Int8Array : Uint8Array;
    if (!(init.data instanceof DataCtor)) throw typeError(fn, 'data', `must be a ${DataCtor.name} for ${bits} bits, got ${describe(init.data)}`);
    if (init.data.length !== wantData) throw rangeError(fn, 'data', `has ${init.data.length} bytes, expected ${wantData}`);
    const nScales = scaleCount(granularity, rows, K, G);
    if (!(init.scales instanceof Float32Array) && !(init.scales instanceof Uint16Array)) {
      throw typeError(fn, 'scales', `must be a Float32Array (or a Uint16Array of f16 bits), got ${describe(init.scales)}`);
    }
    if (init.scales.length !== nScales) throw rangeError(fn, 'scales', `has ${init.scales.length} values, expected ${nScales}`);
    if (init.scales instanceof Float32Array) {
      for (let i = 0; i < init.scales.length; i++) {
        const s = init.scales[i]!;
        if (!(s > 0) || !Number.isFinite(s)) throw rangeError(fn, 'scales', `must be finite and > 0; index ${i} holds ${s}`);
      }
    } else {
      for (let i = 0; i < init.scales.length; i++) {
        const h = init.scales[i]!;
        // sign clear, not zero, exponent not all ones (Infinity, NaN)
        if (h === 0 || h & 0x8000 || (h & 0x7c00) === 0x7c00) throw rangeError(fn, 'scales', `must be finite and > 0; index ${i} holds the f16 bits 0x${h.toString(16)}`);
      }
    }
    let zp: Int8Array | Uint8Array | null = null;
    if (scheme === 'asymmetric') {
      const ZpCtor = bits === 8 ? Int8Array : Uint8Array;
      if (!(init.zeroPoints instanceof ZpCtor)) throw typeError(fn, 'zeroPoints', `must be a ${ZpCtor.name} for asymmetric ${bits}-bit, got ${describe(init.zeroPoints)}`);
      if (init.zeroPoints.length !== nScales) throw rangeError(fn, 'zeroPoints', `has ${init.zeroPoints.length} values, expected ${nScales}`);
      const [lo, hi] = codeRange(bits, scheme);
      for (let i = 0; i < init.zeroPoints.length; i++) {
        const z = init.zeroPoints[i]!;
        if (z < lo || z > hi) throw rangeError(fn, 'zeroPoints', `must be in [${lo}, ${hi}]; index ${i} holds ${z}`);
      }
      zp = init.zeroPoints;
    } else if (init.zeroPoints != null) {
      throw rangeError(fn, 'zeroPoints', 'must be null for a symmetric scheme');
    }
    this.bits = bits;
    this.scheme = scheme;
    this.granularity = granularity;
    this.groupSize = G;
    this.shape = Object.freeze([...init.shape]);
    this.data = init.data;
    this.scaleData = init.scales;
    this.scaleDtype = init.scales instanceof Uint16Array ? 'f16' : 'f32';
    this.zeroPoints = zp;
    this.name = init.name;
  }

  /** Rows (product of all but the last dimension) and K (the last dimension). */
  get rows(): number {
    return rowsK(this.shape)[0];
  }
  get K(): number {
    return rowsK(this.shape)[1];
  }
  get size(): number {
    return this.shape.reduce((a, d) => a * d, 1);
  }

  /** Bytes held: packed codes + scales + zero points. */
  get nbytes(): number {
    return this.data.byteLength + this.scaleData.byteLength + (this.zeroPoints?.byteLength ?? 0);
  }

  /** The scales as f32: the stored array, or a new array widened from f16 (hot paths pass scaleData to the kernels instead). */
  get scales(): Float32Array {
    if (this.scaleData instanceof Float32Array) return this.scaleData;
    const out = new Float32Array(this.scaleData.length);
    if (out.length > 0) addon.toF32(SrcType.f16, this.scaleData, out);
    return out;
  }

  /**
   * The same codes with scales stored as `dtype`: f16 rounds each scale to
   * the nearest f16 (the codes keep the ones chosen with the f32 scale, as
   * ggml's Q4_0 does; the change is at most 2^-11 of a scale). A scale
   * beyond f16's range (65504) throws; one below its smallest subnormal
   * (6e-8, a group of weights all within 4e-7 of 0) becomes that subnormal.
   */
  withScaleDtype(dtype: ScaleDtype): QuantizedTensor {
    const fn = 'QuantizedTensor.withScaleDtype';
    if (dtype !== 'f32' && dtype !== 'f16') throw rangeError(fn, 'dtype', `must be 'f32' or 'f16', got ${describe(dtype)}`);
    if (dtype === this.scaleDtype) return this;
    let scales: Float32Array | Uint16Array;
    if (dtype === 'f32') {
      scales = this.scales;
    } else {
      const src = this.scaleData as Float32Array;
      // on lines, as quantize()'s f32 scales are (the int4 gemv measured the
      // same speed 48 bytes past a line: it widens 64 groups at a time)
      scales = hugeArray(Uint16Array, src.length);
      for (let i = 0; i < src.length; i++) {
        const h = f32ToF16Bits(src[i]!);
        if (h === 0x7c00) throw rangeError(fn, 'dtype', `f16 cannot hold the scale ${src[i]} at index ${i}${this.name ? ` of '${this.name}'` : ''} (largest 65504); keep f32 scales`);
        scales[i] = h === 0 ? 1 : h;
      }
    }
    return new QuantizedTensor({ bits: this.bits, scheme: this.scheme, granularity: this.granularity, groupSize: this.granularity === 'group' ? this.groupSize : undefined, shape: this.shape, data: this.data, scales, zeroPoints: this.zeroPoints, name: this.name });
  }

  /** The f32 values the codes stand for: (q - zp) * scale. */
  dequantize(): Tensor<'f32'> {
    const [rows, K] = rowsK(this.shape);
    const out = new Float32Array(rows * K);
    if (out.length > 0) {
      addon.dequantize(
        this.data,
        rows,
        K,
        this.bits,
        this.scheme === 'asymmetric',
        GRAN_CODE[this.granularity],
        this.granularity === 'group' ? this.groupSize : 0,
        this.scales,
        this.zeroPoints,
        out,
      );
    }
    return new Tensor('f32', this.shape, out, this.name);
  }

  /** The integer codes unpacked to one Int8 per value, shape as the tensor. */
  codes(): Int8Array {
    const [rows, K] = rowsK(this.shape);
    if (this.bits === 8) return (this.data as Int8Array).slice();
    const out = new Int8Array(rows * K);
    if (out.length > 0) addon.unpackRows(this.bits, this.scheme === 'symmetric', this.data as Uint8Array, rows, K, out);
    return out;
  }
}

export function assertQuantized(fn: string, arg: string, v: unknown): asserts v is QuantizedTensor {
  if (!(v instanceof QuantizedTensor)) throw typeError(fn, arg, `must be a QuantizedTensor, got ${describe(v)}`);
}

export function nonFiniteError(fn: string, t: Tensor, index: number): QuantkitError {
  const f = toFloat32Value(t, index);
  const what = Number.isNaN(f) ? 'NaN' : f > 0 ? 'Infinity' : '-Infinity';
  return new QuantkitError('ERR_NONFINITE', `${fn}: tensor '${t.name ?? 'input'}' contains ${what} at index ${index}; only finite values can be quantized`);
}

function toFloat32Value(t: Tensor, i: number): number {
  const v = t.data[i]!;
  if (t.dtype === 'f32') return v;
  if (t.dtype === 'bf16') return new Float32Array(new Uint32Array([v << 16]).buffer)[0]!;
  // f16: exponent all ones means inf (mantissa 0) or nan.
  return (v & 0x3ff) === 0 ? (v & 0x8000 ? -Infinity : Infinity) : NaN;
}
