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
 *   scales      Float32Array: [1] (tensor), [rows] (channel), [rows, K/G] (group)
 *   zeroPoints  asymmetric only, same shape as scales: Int8Array (8 bits) or
 *               Uint8Array (4/2 bits, values 0..15 / 0..3); null when symmetric
 */
import { addon } from '../binding.js';
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
  scales: Float32Array;
  zeroPoints?: Int8Array | Uint8Array | null;
  name?: string;
}

export class QuantizedTensor {
  readonly bits: Bits;
  readonly scheme: Scheme;
  readonly granularity: Granularity;
  /** Values per scale along the last dimension: G, K (channel) or rows*K (tensor). */
  readonly groupSize: number;
  readonly shape: readonly number[];
  readonly data: Int8Array | Uint8Array;
  readonly scales: Float32Array;
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
    if (!(init.scales instanceof Float32Array)) throw typeError(fn, 'scales', `must be a Float32Array, got ${describe(init.scales)}`);
    if (init.scales.length !== nScales) throw rangeError(fn, 'scales', `has ${init.scales.length} values, expected ${nScales}`);
    for (let i = 0; i < init.scales.length; i++) {
      const s = init.scales[i]!;
      if (!(s > 0) || !Number.isFinite(s)) throw rangeError(fn, 'scales', `must be finite and > 0; index ${i} holds ${s}`);
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
    this.scales = init.scales;
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
    return this.data.byteLength + this.scales.byteLength + (this.zeroPoints?.byteLength ?? 0);
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
