/**
 * Finiteness check for float tensors read from files. A NaN or Inf weight
 * (or quantization scale), or one so large it overflows a layer later, loads
 * without complaint and turns every logit into NaN far from its cause, so
 * loaders call this once per tensor, on memory they have just read, and name
 * the tensor and the flat index.
 */
import { QuantkitError } from '../errors.js';
import type { Tensor } from '../tensor.js';

/** Flat index of the first NaN/Inf in a f32/f16/bf16 tensor, or -1 (other dtypes: -1). */
export function firstNonFinite(t: Tensor): number {
  const d = t.data;
  switch (t.dtype) {
    case 'f32': {
      const a = d as Float32Array;
      // v - v is 0 for every finite v and NaN for NaN and +-Inf.
      for (let i = 0; i < a.length; i++) if (a[i]! - a[i]! !== 0) return i;
      return -1;
    }
    case 'f16': {
      const a = d as Uint16Array;
      for (let i = 0; i < a.length; i++) if ((a[i]! & 0x7c00) === 0x7c00) return i; // exponent all ones
      return -1;
    }
    case 'bf16': {
      const a = d as Uint16Array;
      for (let i = 0; i < a.length; i++) if ((a[i]! & 0x7f80) === 0x7f80) return i;
      return -1;
    }
    default:
      return -1;
  }
}

/**
 * Largest magnitude a loaded weight or scale may have. No trained network's
 * parameters come near it (they sit below 1e4); a value this large is a
 * corrupt file, and it overflows float32 a layer or two later (a dot product
 * over K = 4096 inputs, then RMSNorm's sum of squares), so NaN logits again.
 */
export const MAX_WEIGHT_MAGNITUDE = 2 ** 32;

/** Flat index of the first value with |v| >= MAX_WEIGHT_MAGNITUDE in a f32/bf16 tensor, or -1 (f16 cannot hold one). */
export function firstHuge(t: Tensor): number {
  if (t.dtype === 'f32') {
    const a = t.data as Float32Array;
    for (let i = 0; i < a.length; i++) if (Math.abs(a[i]!) >= MAX_WEIGHT_MAGNITUDE) return i;
  } else if (t.dtype === 'bf16') {
    // biased exponent 127 + 32: every bf16 from 2^32 up (Inf/NaN are found first)
    const a = t.data as Uint16Array;
    for (let i = 0; i < a.length; i++) if ((a[i]! & 0x7f80) >= 159 << 7) return i;
  }
  return -1;
}

/**
 * Throws ERR_NONFINITE naming `file`, the tensor and the index when `t`
 * holds NaN/Inf, or a value of magnitude MAX_WEIGHT_MAGNITUDE or more.
 */
export function assertFinite(t: Tensor, file: string, name: string): void {
  const i = firstNonFinite(t);
  if (i >= 0) {
    throw new QuantkitError('ERR_NONFINITE', `${file}: tensor '${name}' holds ${describeBad(t, i)} at flat index ${i}; weights must be finite`);
  }
  const j = firstHuge(t);
  if (j >= 0) {
    const v = t.dtype === 'f32' ? (t.data as Float32Array)[j]! : new Float32Array(new Uint32Array([(t.data as Uint16Array)[j]! << 16]).buffer)[0]!;
    throw new QuantkitError(
      'ERR_NONFINITE',
      `${file}: tensor '${name}' holds ${v.toPrecision(4)} at flat index ${j}; weights must be finite and below 2^32 in magnitude (larger ones overflow float32 a layer later)`,
    );
  }
}

function describeBad(t: Tensor, i: number): string {
  let v: number;
  if (t.dtype === 'f32') v = (t.data as Float32Array)[i]!;
  else {
    const u = (t.data as Uint16Array)[i]!;
    const mant = t.dtype === 'f16' ? u & 0x03ff : u & 0x007f;
    v = mant !== 0 ? NaN : u & 0x8000 ? -Infinity : Infinity;
  }
  return Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity';
}
