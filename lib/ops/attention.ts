/**
 * Causal attention of a few queries over a KV cache (the decode step), in
 * native code:
 *   q      f32 [T, nHeads * headDim]   queries at positions pos0 .. pos0 + T - 1
 *   keys   f32 [>= pos0 + T, nKvHeads * headDim] (a cache's buffer may be longer)
 *   values f32, the same
 *   -> f32 [T, nHeads * headDim]
 * Query head h reads kv head floor(h / (nHeads / nKvHeads)). Scores are f32
 * dot products (the GEMV kernels); softmax and the weighted sum of values run
 * in float64 (native/ops/attention_ops.h has the exact formula).
 */
import { addon } from '../binding.js';
import { describe, rangeError, typeError } from '../errors.js';

export interface AttentionInputs {
  readonly q: Float32Array;
  readonly T: number;
  readonly pos0: number;
  readonly keys: Float32Array;
  readonly values: Float32Array;
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  /** Multiplies q·k (1/sqrt(headDim) usually). */
  readonly scale: number;
}

type RawArgs = Parameters<typeof addon.attention>;

function prepare(fn: string, a: AttentionInputs): { args: RawArgs; out: Float32Array } {
  if (a === null || typeof a !== 'object') throw typeError(fn, 'inputs', `must be an object, got ${describe(a)}`);
  for (const k of ['q', 'keys', 'values'] as const) {
    if (!(a[k] instanceof Float32Array)) throw typeError(fn, k, `must be a Float32Array, got ${describe(a[k])}`);
  }
  for (const k of ['T', 'pos0', 'nHeads', 'nKvHeads', 'headDim'] as const) {
    const v = a[k];
    if (!Number.isSafeInteger(v) || v < 0 || (k !== 'pos0' && k !== 'T' && v === 0)) {
      throw rangeError(fn, k, `must be a ${k === 'pos0' || k === 'T' ? 'non-negative' : 'positive'} integer, got ${String(v)}`);
    }
  }
  if (a.nHeads % a.nKvHeads !== 0) throw rangeError(fn, 'nKvHeads', `must divide nHeads = ${a.nHeads}, got ${a.nKvHeads}`);
  if (typeof a.scale !== 'number' || !Number.isFinite(a.scale)) throw rangeError(fn, 'scale', `must be a finite number, got ${String(a.scale)}`);
  const qLen = a.T * a.nHeads * a.headDim;
  if (a.q.length !== qLen) throw rangeError(fn, 'q', `has ${a.q.length} floats, expected T * nHeads * headDim = ${qLen}`);
  const kvLen = (a.pos0 + a.T) * a.nKvHeads * a.headDim;
  for (const k of ['keys', 'values'] as const) {
    if (a[k].length < kvLen) throw rangeError(fn, k, `has ${a[k].length} floats, needs (pos0 + T) * nKvHeads * headDim = ${kvLen}`);
  }
  const out = new Float32Array(qLen);
  return { args: [a.q, a.T, a.pos0, a.keys, a.values, a.nHeads, a.nKvHeads, a.headDim, a.scale, out], out };
}

/** Causal decode attention (see the header). */
export function decodeAttention(a: AttentionInputs): Float32Array {
  const { args, out } = prepare('decodeAttention', a);
  if (out.length > 0) addon.attention(...args);
  return out;
}

/** decodeAttention on a worker thread: the same numbers, the event loop stays free. */
export async function decodeAttentionAsync(a: AttentionInputs): Promise<Float32Array> {
  const { args, out } = prepare('decodeAttentionAsync', a);
  if (out.length > 0) await addon.attentionAsync(...args);
  return out;
}
