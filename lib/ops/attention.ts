/**
 * Causal attention of T queries over a KV cache (prompt and decode alike),
 * in native code:
 *   q      f32 [T, nHeads * headDim]   queries at positions pos0 .. pos0 + T - 1
 *   keys   f32, blocked (keyIndex below): whole blocks of KEY_BLOCK positions
 *          covering pos0 + T (a cache's buffer may be longer)
 *   values f32 [>= pos0 + T, nKvHeads * headDim]
 *   -> f32 [T, nHeads * headDim]
 * Query head h reads kv head floor(h / (nHeads / nKvHeads)). Online softmax
 * in f32 over blocks of 64 keys, the same bits on every ISA; a query's
 * result depends only on its own position and the cache, not on T, pos0
 * or the thread count (native/kernels/kernels.h, AttnRowsArgs, has the
 * exact formula).
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
  /** false: every query sees all pos0 + T positions (an encoder); default true. */
  readonly causal?: boolean;
}

type RawArgs = Parameters<typeof addon.attention>;

/** Positions per block of the key layout (native kAttnBlock). */
export const KEY_BLOCK = 64;

/**
 * Index in a blocked key buffer of dimension c (0 .. kvDim - 1, kv head
 * c / headDim) of the key at position p: each block holds KEY_BLOCK
 * positions as [kvDim][KEY_BLOCK], so one dimension of 64 keys is
 * contiguous (the lanes of the kernel's score vectors).
 */
export function keyIndex(p: number, c: number, kvDim: number): number {
  return ((p >> 6) * kvDim + c) * KEY_BLOCK + (p & (KEY_BLOCK - 1));
}

/**
 * Store keys and values k, v f32 [T, kvDim] at positions pos0 .. of a cache
 * buffer pair: keys into the blocked layout (keyIndex), values as rows.
 */
export function writeKeysValues(keys: Float32Array, values: Float32Array, k: Float32Array, v: Float32Array, pos0: number, kvDim: number): void {
  addon.attentionCacheWrite(keys, values, k, v, pos0, kvDim);
}

/** Floats of a blocked key buffer holding `positions` positions. */
export function keyFloats(positions: number, kvDim: number): number {
  return Math.ceil(positions / KEY_BLOCK) * KEY_BLOCK * kvDim;
}

function prepare(fn: string, a: AttentionInputs, outArg?: Float32Array): { args: RawArgs; out: Float32Array } {
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
  if (a.causal !== undefined && typeof a.causal !== 'boolean') throw typeError(fn, 'causal', `must be a boolean, got ${describe(a.causal)}`);
  const qLen = a.T * a.nHeads * a.headDim;
  if (a.q.length !== qLen) throw rangeError(fn, 'q', `has ${a.q.length} floats, expected T * nHeads * headDim = ${qLen}`);
  const kvDim = a.nKvHeads * a.headDim;
  const kLen = keyFloats(a.pos0 + a.T, kvDim);
  if (a.keys.length < kLen) throw rangeError(fn, 'keys', `has ${a.keys.length} floats, needs whole blocks of ${KEY_BLOCK} positions covering pos0 + T: ${kLen}`);
  const vLen = (a.pos0 + a.T) * kvDim;
  if (a.values.length < vLen) throw rangeError(fn, 'values', `has ${a.values.length} floats, needs (pos0 + T) * nKvHeads * headDim = ${vLen}`);
  if (outArg !== undefined) {
    if (!(outArg instanceof Float32Array)) throw typeError(fn, 'out', `must be a Float32Array, got ${describe(outArg)}`);
    if (outArg.length !== qLen) throw rangeError(fn, 'out', `has ${outArg.length} floats, expected T * nHeads * headDim = ${qLen}`);
    if (outArg.buffer === a.q.buffer) throw rangeError(fn, 'out', "must not share memory with 'q'");
  }
  const out = outArg ?? new Float32Array(qLen);
  return { args: [a.q, a.T, a.pos0, a.keys, a.values, a.nHeads, a.nKvHeads, a.headDim, a.scale, out, a.causal ?? true], out };
}

/** Causal attention (see the header), into `out` (T * nHeads * headDim floats) when given. */
export function causalAttentionOp(a: AttentionInputs, outArg?: Float32Array): Float32Array {
  const { args, out } = prepare('causalAttentionOp', a, outArg);
  if (out.length > 0) addon.attention(...args);
  return out;
}

/** causalAttentionOp on a worker thread: the same numbers, the event loop stays free. */
export async function causalAttentionOpAsync(a: AttentionInputs, outArg?: Float32Array): Promise<Float32Array> {
  const { args, out } = prepare('causalAttentionOpAsync', a, outArg);
  if (out.length > 0) await addon.attentionAsync(...args);
  return out;
}
