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
 */
export class Scratch {
  #bufs = new Map<string, Float32Array>();

  /** The first n floats of slot `name` (contents undefined: the caller writes them all). */
  f32(name: string, n: number): Float32Array {
    let b = this.#bufs.get(name);
    if (b === undefined || b.length < n) {
      b = new Float32Array(n);
      this.#bufs.set(name, b);
    }
    return b.length === n ? b : b.subarray(0, n);
  }

  /** Whether `a` lies in slot `name`'s buffer. */
  holds(name: string, a: Float32Array): boolean {
    const b = this.#bufs.get(name);
    return b !== undefined && a.buffer === b.buffer;
  }

  /** Bytes held by all slots. */
  get bytes(): number {
    let n = 0;
    for (const b of this.#bufs.values()) n += b.byteLength;
    return n;
  }
}
