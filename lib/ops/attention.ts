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

/** Check one call's inputs (q's length is checked by the caller). */
function checkInputs(fn: string, a: AttentionInputs): void {
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
  const kvDim = a.nKvHeads * a.headDim;
  const kLen = keyFloats(a.pos0 + a.T, kvDim);
  if (a.keys.length < kLen) throw rangeError(fn, 'keys', `has ${a.keys.length} floats, needs whole blocks of ${KEY_BLOCK} positions covering pos0 + T: ${kLen}`);
  const vLen = (a.pos0 + a.T) * kvDim;
  if (a.values.length < vLen) throw rangeError(fn, 'values', `has ${a.values.length} floats, needs (pos0 + T) * nKvHeads * headDim = ${vLen}`);
}

/** The output buffer: `outArg` checked (qLen floats, not q's memory), or a new one. */
function checkOut(fn: string, q: Float32Array, qLen: number, outArg: Float32Array | undefined): Float32Array {
  if (outArg !== undefined) {
    if (!(outArg instanceof Float32Array)) throw typeError(fn, 'out', `must be a Float32Array, got ${describe(outArg)}`);
    if (outArg.length !== qLen) throw rangeError(fn, 'out', `has ${outArg.length} floats, expected ${qLen} (query rows * nHeads * headDim)`);
    if (outArg.buffer === q.buffer) throw rangeError(fn, 'out', "must not share memory with 'q'");
  }
  return outArg ?? new Float32Array(qLen);
}

function prepare(fn: string, a: AttentionInputs, outArg?: Float32Array): { args: RawArgs; out: Float32Array } {
  if (a === null || typeof a !== 'object') throw typeError(fn, 'inputs', `must be an object, got ${describe(a)}`);
  checkInputs(fn, a);
  const qLen = a.T * a.nHeads * a.headDim;
  if (a.q.length !== qLen) throw rangeError(fn, 'q', `has ${a.q.length} floats, expected T * nHeads * headDim = ${qLen}`);
  const out = checkOut(fn, a.q, qLen, outArg);
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

/** One sequence's share of a batched attention call: its T query rows over its own cache. */
export interface AttentionSegment {
  readonly keys: Float32Array;
  readonly values: Float32Array;
  /** Position of the segment's first query. */
  readonly pos0: number;
  readonly T: number;
}

/**
 * Causal attention of several sequences in one native call (a batched
 * decoder step): q holds the segments' rows one after another, f32
 * [sum of T, nHeads * headDim]; each segment reads its own cache.
 */
export interface BatchAttentionInputs {
  readonly q: Float32Array;
  readonly segments: readonly AttentionSegment[];
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  readonly scale: number;
}

type RawBatchArgs = Parameters<typeof addon.attentionBatch>;

function prepareBatch(fn: string, a: BatchAttentionInputs, outArg?: Float32Array): { args: RawBatchArgs; out: Float32Array } {
  if (a === null || typeof a !== 'object') throw typeError(fn, 'inputs', `must be an object, got ${describe(a)}`);
  if (!Array.isArray(a.segments)) throw typeError(fn, 'segments', `must be an array, got ${describe(a.segments)}`);
  const keys: Float32Array[] = [], values: Float32Array[] = [], pos0: number[] = [], T: number[] = [];
  let rows = 0;
  // each segment is checked as the single-call op checks its inputs
  for (const [i, s] of a.segments.entries()) {
    if (s === null || typeof s !== 'object') throw typeError(fn, `segments[${i}]`, `must be an object, got ${describe(s)}`);
    const one = { q: a.q, T: s.T, pos0: s.pos0, keys: s.keys, values: s.values, nHeads: a.nHeads, nKvHeads: a.nKvHeads, headDim: a.headDim, scale: a.scale };
    checkInputs(`${fn} (segments[${i}])`, one);
    keys.push(s.keys);
    values.push(s.values);
    pos0.push(s.pos0);
    T.push(s.T);
    rows += s.T;
  }
  const qLen = rows * a.nHeads * a.headDim;
  if (a.q.length !== qLen) throw rangeError(fn, 'q', `has ${a.q.length} floats, expected (sum of T) * nHeads * headDim = ${qLen}`);
  const out = checkOut(fn, a.q, qLen, outArg);
  return { args: [a.q, out, a.nHeads, a.nKvHeads, a.headDim, a.scale, keys, values, pos0, T], out };
}

/** Batched causal attention (see BatchAttentionInputs), into `out` when given. */
export function batchAttentionOp(a: BatchAttentionInputs, outArg?: Float32Array): Float32Array {
  const { args, out } = prepareBatch('batchAttentionOp', a, outArg);
  if (out.length > 0) addon.attentionBatch(...args);
  return out;
}

/** batchAttentionOp on a worker thread. */
export async function batchAttentionOpAsync(a: BatchAttentionInputs, outArg?: Float32Array): Promise<Float32Array> {
  const { args, out } = prepareBatch('batchAttentionOpAsync', a, outArg);
  if (out.length > 0) await addon.attentionBatchAsync(...args);
  return out;
}
