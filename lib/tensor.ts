/**
 * Tensor: a dtype, a shape and one contiguous typed array (row-major).
 *
 * f16 and bf16 values are held as their raw 16-bit patterns in a Uint16Array.
 * Tensors built over a Buffer/ArrayBuffer are views of the same memory (a
 * checkpoint read into memory is never copied tensor by tensor); only a
 * byte offset that the element type cannot be aligned on forces a copy.
 */
import { describe, rangeError, typeError } from './errors.js';
import { noteCopy } from './provenance.js';

export type DType = 'f32' | 'f16' | 'bf16' | 'i8' | 'u8' | 'i32';

export interface DataTypes {
  f32: Float32Array;
  f16: Uint16Array;
  bf16: Uint16Array;
  i8: Int8Array;
  u8: Uint8Array;
  i32: Int32Array;
}
export type TypedData = DataTypes[DType];

const CTORS = {
  f32: Float32Array,
  f16: Uint16Array,
  bf16: Uint16Array,
  i8: Int8Array,
  u8: Uint8Array,
  i32: Int32Array,
} as const;

export const DTYPE_BYTES: Record<DType, number> = { f32: 4, f16: 2, bf16: 2, i8: 1, u8: 1, i32: 4 };

export function isDType(v: unknown): v is DType {
  return typeof v === 'string' && Object.prototype.hasOwnProperty.call(CTORS, v);
}

/** Validate a shape (non-negative safe integers) and return its element count. */
export function shapeSize(shape: readonly number[], fn = 'Tensor', arg = 'shape'): number {
  if (!Array.isArray(shape)) throw typeError(fn, arg, `must be an array of integers, got ${describe(shape)}`);
  let n = 1;
  for (let i = 0; i < shape.length; i++) {
    const d = shape[i];
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw rangeError(fn, arg, `must hold non-negative integers, got ${String(d)} at index ${i}`);
    }
    n *= d;
  }
  if (!Number.isSafeInteger(n)) throw rangeError(fn, arg, `has too many elements (${shape.join('x')})`);
  return n;
}

function dataMatches(dtype: DType, data: unknown): boolean {
  return data instanceof CTORS[dtype];
}

export class Tensor<D extends DType = DType> {
  readonly dtype: D;
  readonly shape: readonly number[];
  readonly data: DataTypes[D];
  /** Optional name, used in error messages (e.g. the checkpoint key). */
  name: string | undefined;

  constructor(dtype: D, shape: readonly number[], data: DataTypes[D], name?: string) {
    if (!isDType(dtype)) throw typeError('Tensor', 'dtype', `must be one of f32, f16, bf16, i8, u8, i32, got ${describe(dtype)}`);
    const n = shapeSize(shape);
    if (!dataMatches(dtype, data)) {
      throw typeError('Tensor', 'data', `must be a ${CTORS[dtype].name} for dtype ${dtype}, got ${describe(data)}`);
    }
    if (data.length !== n) {
      throw rangeError('Tensor', 'data', `has ${data.length} elements but shape [${shape.join(', ')}] needs ${n}`);
    }
    this.dtype = dtype;
    // a frozen array is kept as is (nothing can change it): model code
    // passes the same output shapes every decode step
    this.shape = Object.isFrozen(shape) ? shape : Object.freeze([...shape]);
    this.data = data;
    this.name = name;
  }

  /** A zero-filled tensor. */
  static zeros<D extends DType>(dtype: D, shape: readonly number[]): Tensor<D> {
    const n = shapeSize(shape, 'Tensor.zeros');
    if (!isDType(dtype)) throw typeError('Tensor.zeros', 'dtype', `must be a dtype, got ${describe(dtype)}`);
    return new Tensor(dtype, shape, new CTORS[dtype](n) as DataTypes[D]);
  }

  /** An f32 tensor copied from numbers. */
  static fromArray(values: ArrayLike<number>, shape?: readonly number[]): Tensor<'f32'> {
    const data = Float32Array.from(values);
    return new Tensor('f32', shape ?? [data.length], data);
  }

  /**
   * A tensor viewing `byteLength(shape, dtype)` bytes of `buffer` starting at
   * `byteOffset` (relative to the view, for a Buffer/typed array). Zero-copy
   * when the address is aligned for the dtype; copied otherwise. A
   * SharedArrayBuffer stays shared (worker threads can use one copy).
   */
  static fromBuffer<D extends DType>(
    dtype: D,
    shape: readonly number[],
    buffer: ArrayBufferLike | ArrayBufferView,
    byteOffset = 0,
    name?: string,
  ): Tensor<D> {
    const fn = 'Tensor.fromBuffer';
    if (!isDType(dtype)) throw typeError(fn, 'dtype', `must be one of f32, f16, bf16, i8, u8, i32, got ${describe(dtype)}`);
    const n = shapeSize(shape, fn);
    let ab: ArrayBufferLike;
    let base = 0;
    let avail: number;
    if (buffer instanceof ArrayBuffer || (typeof SharedArrayBuffer !== 'undefined' && buffer instanceof SharedArrayBuffer)) {
      ab = buffer;
      avail = buffer.byteLength;
    } else if (ArrayBuffer.isView(buffer)) {
      ab = buffer.buffer;
      base = buffer.byteOffset;
      avail = buffer.byteLength;
    } else {
      throw typeError(fn, 'buffer', `must be an ArrayBuffer or a Buffer/typed array, got ${describe(buffer)}`);
    }
    if (!Number.isSafeInteger(byteOffset) || byteOffset < 0) throw rangeError(fn, 'byteOffset', `must be a non-negative integer, got ${byteOffset}`);
    const size = DTYPE_BYTES[dtype];
    const nbytes = n * size;
    if (byteOffset + nbytes > avail) {
      throw rangeError(fn, 'buffer', `holds ${avail} bytes; ${nbytes} bytes at offset ${byteOffset} do not fit`);
    }
    const Ctor = CTORS[dtype];
    const start = base + byteOffset;
    let data: TypedData;
    if (start % size === 0) {
      data = new Ctor(ab as ArrayBuffer, start, n);
    } else {
      const copy = new Uint8Array(nbytes);
      copy.set(new Uint8Array(ab, start, nbytes));
      noteCopy(copy, `copied: offset ${start} is not a multiple of ${size} bytes`);
      data = new Ctor(copy.buffer, 0, n);
    }
    return new Tensor(dtype, shape, data as DataTypes[D], name);
  }

  get size(): number {
    return this.data.length;
  }
  get ndim(): number {
    return this.shape.length;
  }
  /** Bytes held by the data. */
  get nbytes(): number {
    return this.data.byteLength;
  }

  /** A view with another shape of the same element count (-1 infers one dimension). */
  reshape(shape: readonly number[]): Tensor<D> {
    const s = [...shape];
    const infer = s.indexOf(-1);
    if (infer >= 0) {
      const rest = s.reduce((a, d, i) => (i === infer ? a : a * d), 1);
      if (rest === 0 || this.size % rest !== 0) throw rangeError('Tensor.reshape', 'shape', `[${shape.join(', ')}] does not fit ${this.size} elements`);
      s[infer] = this.size / rest;
    }
    if (shapeSize(s, 'Tensor.reshape') !== this.size) {
      throw rangeError('Tensor.reshape', 'shape', `[${shape.join(', ')}] does not fit ${this.size} elements of shape [${this.shape.join(', ')}]`);
    }
    return new Tensor(this.dtype, s, this.data, this.name);
  }
}
