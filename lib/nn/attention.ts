/**
 * Causal self-attention shared by the decoder models, and its KV cache.
 *
 *   q: f32 [T, nHeads * headDim] for positions pos0 .. pos0 + T - 1
 *   cache of one layer: keys in the native op's blocked layout (keyIndex in
 *   ops/attention.ts), values f32 [positions, nKvHeads * headDim]
 *   out: f32 [T, nHeads * headDim]
 *
 * GQA: query head h reads kv head floor(h / (nHeads / nKvHeads)). Prompts
 * and decode steps go through the one native op (online softmax over
 * blocks of 64 keys, reading the cache in place), so a token attends to the
 * same numbers whether it came in a prompt, in a chunk or in a decode step.
 *
 * Concurrency: a DecoderKVCache serves one stream at a time. A model forward
 * holds it (holdCache) from its argument checks to its end, and any other
 * forward or reset() on it meanwhile throws QuantkitError 'ERR_BUSY'.
 */
import { QuantkitError, rangeError, typeError } from '../errors.js';
import { type ForwardSteps, type KVCache, type LinearLike, attentionStep, runSync } from './steps.js';
import { keyFloats, writeKeysValues } from '../ops/attention.js';
import { hugeArray } from '../ops/huge-pages.js';
import { Scratch } from './scratch.js';
import { Module } from './module.js';

/** Keys/values of every layer of one sequence, grown on demand up to `capacity`. */
export class DecoderKVCache implements KVCache {
  readonly capacity: number;
  readonly nLayers: number;
  /** nKvHeads * headDim */
  readonly kvDim: number;
  #length = 0;
  #allocated = 0;
  #keys: Float32Array[];
  #values: Float32Array[];
  /** Name of the forward holding the cache, or null. */
  #holder: string | null = null;
  /** Activation buffers of the forwards on this cache (lib/nn/scratch.ts). */
  readonly scratch = new Scratch();

  constructor(nLayers: number, kvDim: number, capacity: number) {
    for (const [k, v] of Object.entries({ nLayers, kvDim, capacity })) {
      if (!Number.isSafeInteger(v) || v <= 0) throw rangeError('DecoderKVCache', k, `must be a positive integer, got ${String(v)}`);
    }
    this.nLayers = nLayers;
    this.kvDim = kvDim;
    this.capacity = capacity;
    // memory grows with use: a 4k-context cache of a big model would otherwise cost GBs up front
    this.#keys = Array.from({ length: nLayers }, () => new Float32Array(0));
    this.#values = Array.from({ length: nLayers }, () => new Float32Array(0));
  }

  get length(): number {
    return this.#length;
  }

  /** Whether a forward is running on this cache (an async one may be awaiting its GEMMs). */
  get busy(): boolean {
    return this.#holder !== null;
  }

  reset(): void {
    this.assertIdle('DecoderKVCache.reset');
    this.#length = 0;
  }

  /** Throw ERR_BUSY if a forward holds the cache. */
  assertIdle(fn: string): void {
    if (this.#holder === null) return;
    throw new QuantkitError(
      'ERR_BUSY',
      `${fn}: this KV cache is in use by a ${this.#holder} that has not finished; one cache serves one stream at a time (await it, or give each concurrent call its own createCache())`,
    );
  }

  /** Mark the cache as held by `fn` (throws ERR_BUSY if it already is). */
  acquire(fn: string): void {
    this.assertIdle(fn);
    this.#holder = fn;
  }

  release(): void {
    this.#holder = null;
  }

  /** Make room for `positions` positions in every layer. */
  reserve(positions: number): void {
    if (positions > this.capacity) throw rangeError('DecoderKVCache', 'positions', `${positions} exceed the cache capacity of ${this.capacity}`);
    if (positions <= this.#allocated) return;
    const n = Math.min(this.capacity, Math.max(positions, 2 * this.#allocated, 64));
    // keys: whole blocks, so the blocks already written copy as one prefix
    const grow = (a: Float32Array, floats: number, keep: number) => {
      const b = hugeArray(Float32Array, floats); // on a line: the kernels read 64-float rows
      b.set(a.subarray(0, keep));
      return b;
    };
    const kv = this.kvDim;
    this.#keys = this.#keys.map((a) => grow(a, keyFloats(n, kv), keyFloats(this.#length, kv)));
    this.#values = this.#values.map((a) => grow(a, n * kv, this.#length * kv));
    this.#allocated = n;
  }

  /** Store k, v rows [T, kvDim] of `layer` at positions pos0 ..; call reserve() first. */
  write(layer: number, pos0: number, k: Float32Array, v: Float32Array): void {
    // natively: keys scatter into their blocks (keyIndex), values are rows
    writeKeysValues(this.#keys[layer]!, this.#values[layer]!, k, v, pos0, this.kvDim);
  }

  /** Keys of `layer` in the blocked layout (keyIndex in ops/attention.ts). */
  keys(layer: number): Float32Array {
    return this.#keys[layer]!;
  }
  values(layer: number): Float32Array {
    return this.#values[layer]!;
  }

  /** Mark T more positions as stored (after every layer has written them). */
  advance(T: number): void {
    this.#length += T;
  }
}

export interface AttentionShape {
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  /** Multiplies q·k (1/sqrt(headDim) usually; 1 when q is pre-scaled, as OPT does). */
  scale: number;
}

/**
 * softmax(q k^T * scale, causal) v for queries at pos0 .. pos0 + T - 1,
 * reading keys/values 0 .. pos0 + T - 1 of `layer` (already written).
 */
export function causalAttention(q: Float32Array, T: number, pos0: number, cache: DecoderKVCache, layer: number, s: AttentionShape): Float32Array {
  return runSync(causalAttentionSteps(q, T, pos0, cache, layer, s));
}

/**
 * causalAttention as one step (its native call runs on a worker thread under
 * runAsync); into `out` (T * nHeads * headDim floats) when given.
 */
export function* causalAttentionSteps(q: Float32Array, T: number, pos0: number, cache: DecoderKVCache, layer: number, s: AttentionShape, out?: Float32Array): ForwardSteps<Float32Array> {
  const o = yield* attentionStep({ q, T, pos0, keys: cache.keys(layer), values: cache.values(layer), nHeads: s.nHeads, nKvHeads: s.nKvHeads, headDim: s.headDim, scale: s.scale }, out);
  return o.data;
}

/**
 * Check forward()'s arguments, reserve cache room and return pos0 (the
 * position of tokens[0]). `maxPositions` bounds learned position tables.
 */
export function beginForward(fn: string, tokens: readonly number[], cache: KVCache, expect: { nLayers: number; kvDim: number; vocabSize: number; maxPositions?: number }): [DecoderKVCache, number] {
  if (!Array.isArray(tokens)) throw typeError(fn, 'tokens', 'must be an array of token ids');
  if (!(cache instanceof DecoderKVCache)) throw typeError(fn, 'cache', "must be a cache from this model's createCache()");
  // before reserve(): growing the cache under a running forward would lose its writes
  cache.assertIdle(fn);
  if (cache.nLayers !== expect.nLayers || cache.kvDim !== expect.kvDim) {
    throw rangeError(fn, 'cache', `was made for ${cache.nLayers} layers x ${cache.kvDim} kv dims, this model has ${expect.nLayers} x ${expect.kvDim}`);
  }
  for (let i = 0; i < tokens.length; i++) {
    const id = tokens[i];
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0 || id >= expect.vocabSize) {
      throw rangeError(fn, 'tokens', `must hold integers in [0, ${expect.vocabSize}), got ${String(id)} at index ${i}`);
    }
  }
  const pos0 = cache.length;
  const end = pos0 + tokens.length;
  if (end > cache.capacity) throw rangeError(fn, 'tokens', `${tokens.length} tokens after ${pos0} cached positions exceed the cache capacity of ${cache.capacity}`);
  if (expect.maxPositions !== undefined && end > expect.maxPositions) {
    throw rangeError(fn, 'tokens', `positions up to ${end} exceed the model's ${expect.maxPositions} learned positions`);
  }
  cache.reserve(end);
  return [cache, pos0];
}

/**
 * Run `body` (a model's forward after beginForward) holding `cache`, so a
 * second forward on it throws ERR_BUSY until this one ends, however it ends.
 * Call right after beginForward, in the same synchronous step.
 */
export function* holdCache<R>(fn: string, cache: DecoderKVCache, body: ForwardSteps<R>): ForwardSteps<R> {
  cache.acquire(fn);
  try {
    return yield* body;
  } finally {
    cache.release();
  }
}

/** holdCache for several caches at once (a batched forward): all held until `body` ends. */
export function* holdCaches<R>(fn: string, caches: readonly DecoderKVCache[], body: ForwardSteps<R>): ForwardSteps<R> {
  let held = 0;
  try {
    for (const c of caches) {
      c.acquire(fn);
      held++;
    }
    return yield* body;
  } finally {
    for (let i = 0; i < held; i++) caches[i]!.release();
  }
}

/** Numbered children ("0", "1", ...), like torch.nn.ModuleList: gives HF's "layers.{i}" names. */
export class ModuleList<T extends Module> extends Module {
  #items: T[] = [];

  constructor(items: readonly T[]) {
    super();
    items.forEach((m, i) => {
      this.addModule(String(i), m);
      this.#items.push(m);
    });
  }

  get length(): number {
    return this.#items.length;
  }

  at(i: number): T {
    return this.#items[i]!;
  }

  protected override onChildReplaced(name: string, m: Module): void {
    this.#items[Number(name)] = m as T;
  }
}


/**
 * The child `name` of `m` as a LinearLike. Looked up at forward time (a Map
 * read) so a Linear swapped for a QLinear by quantizeModel takes effect.
 */
export function linearChild(m: Module, name: string): LinearLike {
  const c = m.child(name) as LinearLike | undefined;
  if (c === undefined || typeof c.forward !== 'function') throw typeError('forward', name, 'is not a linear layer of this module');
  return c;
}
