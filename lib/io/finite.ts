/**
 * Finiteness check for float tensors read from files. A NaN or Inf weight
 * (or quantization scale) loads without complaint and turns every logit into
 * NaN far from its cause, so loaders call this once per tensor, on memory
 * they have just read, and name the tensor and the flat index.
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

/** Throws ERR_NONFINITE naming `file`, the tensor and the index when `t` holds NaN/Inf. */
export function assertFinite(t: Tensor, file: string, name: string): void {
  const i = firstNonFinite(t);
  if (i < 0) return;
  const what = describeBad(t, i);
  throw new QuantkitError('ERR_NONFINITE', `${file}: tensor '${name}' holds ${what} at flat index ${i}; weights must be finite`);
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
