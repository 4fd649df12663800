/**
 * Quantization options and their validation. A QuantSpec is the resolved,
 * validated form of the user's QuantizeOptions for one tensor shape.
 */
import { Gran } from '../binding.js';
import { describe, rangeError, typeError } from '../errors.js';

export type Bits = 8 | 4 | 2;
export type Scheme = 'symmetric' | 'asymmetric';
/** What options accept: the full names, or the short ones the CLI and the quantization literature use. */
export type SchemeName = Scheme | 'sym' | 'asym';
export type Granularity = 'tensor' | 'channel' | 'group';

export interface QuantizeOptions {
  /** 8, 4 or 2 (default 8). */
  bits?: Bits;
  /** Default 'symmetric' ('asymmetric' for 2 bits, which has no symmetric form); 'sym'/'asym' work too. */
  scheme?: SchemeName;
  /** Default 'channel' for 8 bits, 'group' for 4 and 2 bits. */
  granularity?: Granularity;
  /**
   * Values per group along the last dimension (default 32); even. When it
   * does not divide K, each row's last group is shorter (K % groupSize
   * values) with its own scale: rows hold ceil(K / groupSize) groups.
   */
  groupSize?: number;
  /**
   * How the scales are stored: 'f32' (default) or 'f16' (half the bytes;
   * int4 g32 then reads 0.5625 bytes per weight instead of 0.625, as ggml's
   * Q4_0; see QuantizedTensor.withScaleDtype).
   */
  scaleDtype?: 'f32' | 'f16';
}

export interface QuantSpec {
  bits: Bits;
  scheme: Scheme;
  granularity: Granularity;
  /** G for 'group'; K for 'channel'; rows*K for 'tensor'. */
  groupSize: number;
  scaleDtype: 'f32' | 'f16';
}

export const GRAN_CODE: Record<Granularity, Gran> = { tensor: Gran.tensor, channel: Gran.channel, group: Gran.group };

/** Integer code range for a bit width and scheme. */
export function codeRange(bits: Bits, scheme: Scheme): [number, number] {
  if (bits === 8) return scheme === 'symmetric' ? [-127, 127] : [-128, 127];
  if (bits === 4) return scheme === 'symmetric' ? [-8, 7] : [0, 15];
  return [0, 3];
}

/** Bytes of one row of K codes. */
export function packedRowBytes(bits: Bits, K: number): number {
  return bits === 8 ? K : bits === 4 ? Math.ceil(K / 2) : Math.ceil(K / 4);
}

/**
 * Scales (and zero points) of a [rows, K] weight: 1 per tensor, 1 per row per
 * channel, ceil(K / G) per row in groups (the last group shorter when G does
 * not divide K).
 */
export function scaleCount(granularity: Granularity, rows: number, K: number, groupSize: number | undefined): number {
  return granularity === 'tensor' ? 1 : granularity === 'channel' ? rows : rows * Math.ceil(K / groupSize!);
}

/** rows x K view of a shape: K is the last dimension (1 for a scalar). */
export function rowsK(shape: readonly number[]): [number, number] {
  if (shape.length === 0) return [1, 1];
  const K = shape[shape.length - 1]!;
  const rows = shape.slice(0, -1).reduce((a, d) => a * d, 1);
  return [rows, K];
}

/** 'symmetric'/'sym' -> 'symmetric', 'asymmetric'/'asym' -> 'asymmetric'; anything else a RangeError. */
export function schemeOf(fn: string, v: unknown, arg = 'options.scheme'): Scheme {
  if (v === 'symmetric' || v === 'sym') return 'symmetric';
  if (v === 'asymmetric' || v === 'asym') return 'asymmetric';
  throw rangeError(fn, arg, `must be 'symmetric' (or 'sym') or 'asymmetric' (or 'asym'), got ${describe(v)}`);
}

export function resolveOptions(fn: string, shape: readonly number[], opts: QuantizeOptions | undefined): QuantSpec {
  if (opts !== undefined && (opts === null || typeof opts !== 'object')) {
    throw typeError(fn, 'options', `must be an object, got ${describe(opts)}`);
  }
  const o = opts ?? {};
  const bits = o.bits ?? 8;
  if (bits !== 8 && bits !== 4 && bits !== 2) throw rangeError(fn, 'options.bits', `must be 8, 4 or 2, got ${describe(bits)}`);
  const scheme = o.scheme === undefined ? (bits === 2 ? 'asymmetric' : 'symmetric') : schemeOf(fn, o.scheme);
  if (bits === 2 && scheme !== 'asymmetric') throw rangeError(fn, 'options.scheme', `must be 'asymmetric' for 2 bits`);
  const granularity = o.granularity ?? (bits === 8 ? 'channel' : 'group');
  if (granularity !== 'tensor' && granularity !== 'channel' && granularity !== 'group') {
    throw rangeError(fn, 'options.granularity', `must be 'tensor', 'channel' or 'group', got ${describe(granularity)}`);
  }
  const [rows, K] = rowsK(shape);
  let groupSize: number;
  if (granularity === 'group') {
    const g = o.groupSize ?? 32;
    if (typeof g !== 'number' || !Number.isInteger(g) || g < 2 || g % 2 !== 0) {
      throw rangeError(fn, 'options.groupSize', `must be an even integer >= 2, got ${describe(g)}`);
    }
    groupSize = g;
  } else {
    if (o.groupSize !== undefined) throw rangeError(fn, 'options.groupSize', `is only valid with granularity 'group'`);
    groupSize = granularity === 'channel' ? K : rows * K;
  }
  const scaleDtype = o.scaleDtype ?? 'f32';
  if (scaleDtype !== 'f32' && scaleDtype !== 'f16') throw rangeError(fn, 'options.scaleDtype', `must be 'f32' or 'f16', got ${describe(scaleDtype)}`);
  return { bits, scheme, granularity, groupSize, scaleDtype };
}
