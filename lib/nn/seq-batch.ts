/**
 * The sequences of one decoder forward. A plain forward is one sequence (one
 * segment); a batched step (lib/serve/scheduler.ts) runs several, each with
 * its own KV cache and positions, through the same GEMMs:
 *
 *   x      f32 [rows, hidden]: segment i's T_i rows follow segment i - 1's
 *   segment { cache, pos0, row0, T }: rows row0 .. row0 + T - 1 are that
 *          sequence's tokens at positions pos0 .. pos0 + T - 1
 *
 * Everything per row (norms, GEMMs, activations) runs on all rows at once;
 * what depends on the sequence (positions, RoPE, the cache write, attention)
 * goes segment by segment through the helpers here. Attention of several
 * segments is one native call that gives each row the bits it gets alone.
 */
import { type AttentionShape, type DecoderKVCache, causalAttentionSteps } from './attention.js';
import type { Scratch } from './scratch.js';
import { type ForwardSteps, batchAttentionStep } from './steps.js';

export interface Segment {
  readonly cache: DecoderKVCache;
  /** Position of the segment's first token. */
  readonly pos0: number;
  /** Its first row in the batch's activations. */
  readonly row0: number;
  readonly T: number;
}

export class SeqBatch {
  readonly segments: readonly Segment[];
  /** Rows of the activations: the sum of the segments' T. */
  readonly rows: number;
  /** Activation buffers of this forward (a cache's own for one sequence). */
  readonly scratch: Scratch;

  constructor(segments: readonly { cache: DecoderKVCache; pos0: number; T: number }[], scratch: Scratch) {
    let row0 = 0;
    this.segments = segments.map((s) => {
      const seg = { cache: s.cache, pos0: s.pos0, row0, T: s.T };
      row0 += s.T;
      return seg;
    });
    this.rows = row0;
    this.scratch = scratch;
  }

  /** One sequence: T tokens at pos0 .. on `cache`, in the cache's scratch. */
  static single(cache: DecoderKVCache, pos0: number, T: number): SeqBatch {
    return new SeqBatch([{ cache, pos0, T }], cache.scratch);
  }

  /** Absolute position (+ offset) of every row. */
  positions(offset = 0): number[] {
    const out = new Array<number>(this.rows);
    for (const s of this.segments) for (let t = 0; t < s.T; t++) out[s.row0 + t] = s.pos0 + t + offset;
    return out;
  }

  /** f(segment's rows of x [rows, width], segment) for every segment. */
  forEachSegment(x: Float32Array, width: number, f: (rows: Float32Array, s: Segment) => void): void {
    for (const s of this.segments) f(x.subarray(s.row0 * width, (s.row0 + s.T) * width), s);
  }

  /** Store k, v [rows, kvDim] of `layer`: each segment's rows into its own cache at its positions. */
  writeKV(layer: number, k: Float32Array, v: Float32Array, kvDim: number): void {
    for (const s of this.segments) {
      const a = s.row0 * kvDim, b = (s.row0 + s.T) * kvDim;
      s.cache.write(layer, s.pos0, k.subarray(a, b), v.subarray(a, b));
    }
  }

  /**
   * Causal attention of q [rows, nHeads * headDim] over each segment's
   * cache (keys/values of `layer` already written), into `out`.
   */
  *attentionSteps(q: Float32Array, layer: number, shape: AttentionShape, out: Float32Array): ForwardSteps<Float32Array> {
    if (this.segments.length === 1) {
      const s = this.segments[0]!;
      return yield* causalAttentionSteps(q, s.T, s.pos0, s.cache, layer, shape, out);
    }
    const segments = this.segments.map((s) => ({ keys: s.cache.keys(layer), values: s.cache.values(layer), pos0: s.pos0, T: s.T }));
    const o = yield* batchAttentionStep({ q, segments, nHeads: shape.nHeads, nKvHeads: shape.nKvHeads, headDim: shape.headDim, scale: shape.scale }, out);
    return o.data;
  }
}
