import { hugeArray } from '../ops/huge-pages.js';

/**
 * Reusable f32 buffers of one forward stream, by slot name: a decoder's KV
 * cache owns one (a cache serves one forward at a time), so after the first
 * forward of a given size the activations between a block's GEMMs land in
 * the same memory every time: no allocation, no zero-filling, no garbage
 * for the collector in the decode loop.
 *
 * A slot's buffer grows to the largest request seen and stays (prompt
 * activations of a cache are kept until the cache is dropped); f32(slot, n)
 * returns its first n floats. A value in a slot lives until the next
 * request for that slot: model code names slots so that no live value is
 * overwritten (see LlamaDecoderLayer).
 *
 * Buffers start on a 64-byte line (hugeArray): a plain Float32Array starts
 * mid-line, so every 16-float load of an activation row touched two lines.
 * The f32 GEMV tiles of a batched decode step load 8 rows of X per 2 weight
 * vectors: an f32 Linear of 32000 x 768 at 8 rows, weights from memory,
 * 7.3 -> 5.0 ms with X on lines (AMD EPYC Zen 5, one thread).
 */
export class Scratch {
  #bufs = new Map<string, Float32Array>();
  /** The last view handed out per slot: a decode step asks for the same n every time. */
  #views = new Map<string, Float32Array>();

  /** The first n floats of slot `name` (contents undefined: the caller writes them all). */
  f32(name: string, n: number): Float32Array {
    const v = this.#views.get(name);
    if (v !== undefined && v.length === n) return v;
    let b = this.#bufs.get(name);
    if (b === undefined || b.length < n) {
      b = hugeArray(Float32Array, n);
      this.#bufs.set(name, b);
    }
    const view = b.length === n ? b : b.subarray(0, n);
    this.#views.set(name, view);
    return view;
  }

  /** Whether `a` lies in slot `name`'s buffer. */
  holds(name: string, a: Float32Array): boolean {
    const b = this.#bufs.get(name);
    return b !== undefined && a.buffer === b.buffer;
  }

  /**
   * A buffer for `layer`'s output on x [..., K] in slot `name` (rows x
   * outFeatures floats), or undefined when the layer does not say its width
   * (a replacement LinearLike then allocates its own).
   */
  outputFor(name: string, layer: { readonly outFeatures?: number }, x: { readonly size: number; readonly shape: readonly number[] }): Float32Array | undefined {
    const N = layer.outFeatures;
    const K = x.shape[x.shape.length - 1];
    if (N === undefined || !K) return undefined;
    return this.f32(name, (x.size / K) * N);
  }

  /**
   * The residual-stream slots of a block whose input x may lie in 'resA' or
   * 'resB': [the slot x is not in, the other one]. A block writes its first
   * residual sum to the first (x is still needed then) and may write to the
   * second once x is dead.
   */
  residualSlots(x: Float32Array): [string, string] {
    return this.holds('resA', x) ? ['resB', 'resA'] : ['resA', 'resB'];
  }

  /** Bytes held by all slots. */
  get bytes(): number {
    let n = 0;
    for (const b of this.#bufs.values()) n += b.byteLength;
    return n;
  }
}
