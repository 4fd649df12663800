/**
 * Causal self-attention math shared by the decoder models, and its KV cache.
 *
 *   q: f32 [T, nHeads * headDim] for positions pos0 .. pos0 + T - 1
 *   cache keys/values of one layer: f32 [positions, nKvHeads * headDim]
 *   out: f32 [T, nHeads * headDim]
 *
 * GQA: query head h reads kv head floor(h / (nHeads / nKvHeads)). Scores and
 * weighted values are activation x activation products: a few queries
 * (decoding) go to the native decode-attention op, which reads the cache in
 * place; a prompt of many queries runs through the native f32 GEMM per kv
 * head (gathers, then two GEMMs).
 *
 * The GEMM path is written as steps (see ForwardSteps in causal-lm.ts) so the
 * async forward runs its products off the main thread; every scratch buffer
 * is local to one call, so concurrent forwards (on different caches) share
 * nothing mutable.
 *
 * Concurrency: a DecoderKVCache serves one stream at a time. A model forward
 * holds it (holdCache) from its argument checks to its end, and any other
 * forward or reset() on it meanwhile throws QuantkitError 'ERR_BUSY'.
 */
import { QuantkitError, rangeError, typeError } from '../errors.js';
import { type ForwardSteps, type KVCache, type LinearLike, attentionStep, matmulStep, runSync } from './steps.js';
import { Tensor } from '../tensor.js';
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
    const grow = (a: Float32Array) => {
      const b = new Float32Array(n * this.kvDim);
      b.set(a.subarray(0, this.#length * this.kvDim));
      return b;
    };
    this.#keys = this.#keys.map(grow);
    this.#values = this.#values.map(grow);
    this.#allocated = n;
  }

  /** Store k, v rows [T, kvDim] of `layer` at positions pos0 ..; call reserve() first. */
  write(layer: number, pos0: number, k: Float32Array, v: Float32Array): void {
    this.#keys[layer]!.set(k, pos0 * this.kvDim);
    this.#values[layer]!.set(v, pos0 * this.kvDim);
  }

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

/** causalAttention as steps: the GEMM path yields its two products per block. */
export function* causalAttentionSteps(q: Float32Array, T: number, pos0: number, cache: DecoderKVCache, layer: number, s: AttentionShape): ForwardSteps<Float32Array> {
  if (T >= GEMM_MIN_QUERIES) return yield* attentionGemmSteps(q, T, pos0, cache, layer, s);
  return yield* attentionDecodeSteps(q, T, pos0, cache, layer, s);
}

/** From this many queries on, prompts take the GEMM path (gathers, then two GEMMs per kv head); fewer take the decode op. */
export const GEMM_MIN_QUERIES = 8;
/** Bound on the f32 score block [queries, positions] of the GEMM path (16 MB). */
const SCORE_BLOCK = 1 << 22;

/**
 * Decode form: the native op (lib/ops/attention.ts) reading the cache in
 * place, no copies; scores in f32, softmax and the value sum in float64.
 */
export function attentionDecode(q: Float32Array, T: number, pos0: number, cache: DecoderKVCache, layer: number, s: AttentionShape): Float32Array {
  return runSync(attentionDecodeSteps(q, T, pos0, cache, layer, s));
}

/** attentionDecode as one step (its native call runs on a worker thread under runAsync). */
export function* attentionDecodeSteps(q: Float32Array, T: number, pos0: number, cache: DecoderKVCache, layer: number, s: AttentionShape): ForwardSteps<Float32Array> {
  const o = yield* attentionStep({ q, T, pos0, keys: cache.keys(layer), values: cache.values(layer), nHeads: s.nHeads, nKvHeads: s.nKvHeads, headDim: s.headDim, scale: s.scale });
  return o.data;
}

/**
 * GEMM form, per kv head g: gather K_g [n, hd] and V_g^T [hd, n] once, and
 * the queries of g's heads Q [rows, hd]; S = Q K_g^T [rows, n]; masked
 * softmax on S; O = S V_g = S (V_g^T)^T [rows, hd]. Queries go in blocks so
 * the score matrix stays under SCORE_BLOCK floats.
 */
export function attentionGemm(q: Float32Array, T: number, pos0: number, cache: DecoderKVCache, layer: number, s: AttentionShape): Float32Array {
  return runSync(attentionGemmSteps(q, T, pos0, cache, layer, s));
}

/**
 * attentionGemm as steps. Kg, Vt and Q are reused across heads/blocks only
 * after the product reading them has returned, so an async driver never
 * overwrites a buffer a worker thread is still reading.
 */
export function* attentionGemmSteps(q: Float32Array, T: number, pos0: number, cache: DecoderKVCache, layer: number, s: AttentionShape): ForwardSteps<Float32Array> {
  const { nHeads, nKvHeads, headDim: hd, scale } = s;
  const qDim = nHeads * hd;
  const kvDim = nKvHeads * hd;
  const group = nHeads / nKvHeads;
  const n = pos0 + T;
  const K = cache.keys(layer);
  const V = cache.values(layer);
  const out = new Float32Array(T * qDim);
  const Kg = new Float32Array(n * hd);
  const Vt = new Float32Array(hd * n);
  const tb = Math.max(1, Math.min(T, Math.floor(SCORE_BLOCK / (group * n)))); // queries per block
  const Q = new Float32Array(group * tb * hd);
  for (let g = 0; g < nKvHeads; g++) {
    for (let j = 0; j < n; j++) {
      const src = j * kvDim + g * hd;
      Kg.set(K.subarray(src, src + hd), j * hd);
      for (let i = 0; i < hd; i++) Vt[i * n + j] = V[src + i]!;
    }
    const kT = new Tensor('f32', [n, hd], Kg);
    const vT = new Tensor('f32', [hd, n], Vt);
    for (let t0 = 0; t0 < T; t0 += tb) {
      const tn = Math.min(tb, T - t0);
      const rows = group * tn;
      // row r * tn + t holds query t0 + t of head g * group + r
      for (let r = 0; r < group; r++) {
        for (let t = 0; t < tn; t++) {
          const src = (t0 + t) * qDim + (g * group + r) * hd;
          Q.set(q.subarray(src, src + hd), (r * tn + t) * hd);
        }
      }
      const S = (yield* matmulStep(new Tensor('f32', [rows, hd], Q.subarray(0, rows * hd)), kT)).data;
      for (let r = 0; r < group; r++) {
        for (let t = 0; t < tn; t++) {
          const o = (r * tn + t) * n;
          const lim = pos0 + t0 + t + 1; // causal: positions < lim
          let max = -Infinity;
          for (let j = 0; j < lim; j++) {
            const v = S[o + j]! * scale;
            if (v > max) max = v;
          }
          let sum = 0;
          for (let j = 0; j < lim; j++) {
            const e = Math.exp(S[o + j]! * scale - max);
            S[o + j] = e;
            sum += e;
          }
          const inv = 1 / sum;
          for (let j = 0; j < lim; j++) S[o + j]! *= inv;
          S.fill(0, o + lim, o + n);
        }
      }
      const O = (yield* matmulStep(new Tensor('f32', [rows, n], S), vT)).data;
      for (let r = 0; r < group; r++) {
        for (let t = 0; t < tn; t++) {
          out.set(O.subarray((r * tn + t) * hd, (r * tn + t + 1) * hd), (t0 + t) * qDim + (g * group + r) * hd);
        }
      }
    }
  }
  return out;
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
