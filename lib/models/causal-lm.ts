/**
 * CausalLM: what generation, perplexity and the CLI need from a model.
 * A model is a Module tree (so quantizeModel can swap its Linear layers)
 * with a token-level forward over a KV cache.
 *
 * Its forward is written once as steps (lib/nn/steps.ts) and run by a
 * sync or an async driver: forward() and forwardAsync().
 */
import { describe, rangeError, typeError } from '../errors.js';
import { Module } from '../nn/module.js';
import { DecoderKVCache, beginForward, holdCache, holdCaches, linearChild } from '../nn/attention.js';
import { Scratch } from '../nn/scratch.js';
import { SeqBatch } from '../nn/seq-batch.js';
import { type ForwardSteps, type KVCache, linearStep, runAsync, runSync } from '../nn/steps.js';
import { Tensor } from '../tensor.js';
import { lineArray } from '../ops/huge-pages.js';

// Model code imports the step helpers from here, next to CausalLM.
export { type ForwardOp, type ForwardSteps, type KVCache, type LinearLike, linearStep, linearsStep, matmulStep, runAsync, runSync } from '../nn/steps.js';
import type { ForwardOp } from '../nn/steps.js';

export interface ModelConfigBase {
  /** 'llama' | 'gpt2' | 'opt' | ... */
  readonly arch: string;
  readonly vocabSize: number;
  /** Longest sequence the position scheme supports. */
  readonly maxPositions: number;
  readonly bosId?: number;
  readonly eosId?: number;
}

export interface ForwardOptions {
  /**
   * 'all' (default): logits for every token, [T, vocabSize] (perplexity).
   * 'last': only the last token's, [1, vocabSize] (a prompt's prefill before
   * sampling: the lm_head GEMM runs on one row instead of T). The keys and
   * values of every token are cached either way.
   */
  readonly logits?: 'all' | 'last';
  /**
   * Where the logits go (DecoderLM.forward): exactly rows x vocabSize floats
   * (rows = 1 with { logits: 'last' }, else tokens.length). A decode loop
   * that passes the same buffer every step allocates no array per token.
   * The returned tensor is a view of it.
   */
  readonly out?: Float32Array;
}

/** Check `options` of a forward; true when only the last token's logits are wanted. */
export function lastLogitsOnly(fn: string, options: ForwardOptions | undefined): boolean {
  if (options === undefined) return false;
  if (options === null || typeof options !== 'object') throw typeError(fn, 'options', `must be an object, got ${options === null ? 'null' : typeof options}`);
  const v = options.logits;
  if (v === undefined || v === 'all') return false;
  if (v === 'last') return true;
  throw rangeError(fn, 'options.logits', `must be 'all' or 'last', got ${typeof v === 'string' ? `'${v}'` : typeof v}`);
}

/** The last row of hidden states x [T, D] as a [1, D] view (T >= 1). */
export function lastRow(x: Tensor<'f32'>): Tensor<'f32'> {
  const [T, D] = x.shape as [number, number];
  return T === 1 ? x : new Tensor('f32', [1, D], x.data.subarray((T - 1) * D, T * D));
}

export abstract class CausalLM extends Module {
  abstract readonly config: ModelConfigBase;

  /** A cache for up to `capacity` positions (default: config.maxPositions). */
  abstract createCache(capacity?: number): KVCache;

  /**
   * Run `tokens` at positions cache.length .. cache.length + tokens.length - 1,
   * append their keys/values to the cache, and return logits f32
   * [tokens.length, vocabSize], or [1, vocabSize] with { logits: 'last' }
   * (a model may ignore the option and return every row, so callers read
   * the last row as shape[0] - 1). The built-in models implement it as
   * runSync(this.forwardSteps(...)). (It stays abstract so that a model
   * written only as a plain forward(), like the test TinyLM, still compiles
   * under noImplicitOverride.)
   */
  abstract forward(tokens: readonly number[], cache: KVCache, options?: ForwardOptions): Tensor<'f32'>;

  /**
   * The forward as a coroutine (see the header). The built-in models
   * override this; the default runs forward() as one synchronous step
   * (correct, but it does not free the event loop). Drive it to the end
   * (runSync/runAsync): an abandoned generator keeps the cache locked.
   */
  *forwardSteps(tokens: readonly number[], cache: KVCache, options?: ForwardOptions): ForwardSteps<Tensor<'f32'>> {
    return this.forward(tokens, cache, options);
  }

  /**
   * forward() with its GEMMs on worker threads: the same logits, bit for
   * bit, while the event loop stays responsive. One cache serves one stream
   * at a time: a forward on a cache whose previous forward has not finished
   * throws QuantkitError 'ERR_BUSY' (the returned Promise rejects) instead
   * of interleaving; calls on different caches may run concurrently.
   */
  forwardAsync(tokens: readonly number[], cache: KVCache, options?: ForwardOptions): Promise<Tensor<'f32'>> {
    // the generator's first steps (argument checks, the cache lock) run now, synchronously
    return runAsync(this.forwardSteps(tokens, cache, options));
  }
}

/** A calibration runner's result in its own array (the steps may return scratch). */
const copied = (x: Tensor<'f32'>) => new Tensor('f32', x.shape, Float32Array.from(x.data));

/**
 * The forward every decoder-only model shares, written once: option and
 * token checks, the cache lock, the model's body over its layers, the cache
 * advance, and lm_head on every row or only the last. A model supplies its
 * cache shape, its body (embeddings and layers, writing each layer's keys and
 * values into the cache) and what lies between the body and lm_head (a final
 * norm, a projection).
 */
export abstract class DecoderLM extends CausalLM {
  /** Layers and key/value width per position; maxPositions when positions come from a table (RoPE models have none). */
  protected abstract cacheShape(): { nLayers: number; kvDim: number; maxPositions?: number };

  /**
   * Hidden states [rows, width] entering the first decoder block, for the
   * batch's tokens (its segments' tokens one after another), each segment at
   * its own positions.
   */
  protected abstract embedSteps(tokens: readonly number[], batch: SeqBatch): ForwardSteps<Tensor<'f32'>>;

  /** Decoder block i (0 <= i < blocks) on hidden states x [rows, width]; it reads and writes layer i of the caches. */
  protected abstract blockSteps(i: number, x: Tensor<'f32'>, batch: SeqBatch): ForwardSteps<Tensor<'f32'>>;

  /** Module path of decoder block i, as namedModules() gives it ('model.layers.3'). */
  abstract blockName(i: number): string;

  /** Number of decoder blocks. */
  get blocks(): number {
    return this.cacheShape().nLayers;
  }

  /**
   * Hidden states [rows, width] after the blocks, of the batch's tokens; the
   * embedding, then every block in order (a model may add its own end).
   */
  protected *bodySteps(tokens: readonly number[], batch: SeqBatch): ForwardSteps<Tensor<'f32'>> {
    let x = yield* this.embedSteps(tokens, batch);
    for (let i = 0; i < this.blocks; i++) x = yield* this.blockSteps(i, x, batch);
    return x;
  }

  /**
   * Calibration runs one block at a time over stored hidden states
   * (lib/nn/calibrate.ts): the hidden states [T, width] entering block 0 for
   * one sequence at positions 0..T-1, in a new array.
   */
  embedForCalibration(tokens: readonly number[], cache: KVCache): Tensor<'f32'> {
    return copied(runSync(this.#embedCalibration('embedForCalibration', tokens, cache)));
  }

  /** embedForCalibration with its native calls on worker threads; the same bits. */
  async embedForCalibrationAsync(tokens: readonly number[], cache: KVCache): Promise<Tensor<'f32'>> {
    return copied(await runAsync(this.#embedCalibration('embedForCalibrationAsync', tokens, cache)));
  }

  /**
   * Block i on the hidden states x [T, width] of one sequence at positions
   * 0..T-1 (writing layer i of `cache`), in a new array: with the outputs of
   * block i - 1 (or embedForCalibration for block 0), the hidden states a
   * whole forward would give.
   */
  blockForCalibration(i: number, x: Tensor<'f32'>, cache: KVCache): Tensor<'f32'> {
    return copied(runSync(this.#blockCalibration('blockForCalibration', i, x, cache)));
  }

  /** blockForCalibration with its native calls on worker threads; the same bits. */
  async blockForCalibrationAsync(i: number, x: Tensor<'f32'>, cache: KVCache): Promise<Tensor<'f32'>> {
    return copied(await runAsync(this.#blockCalibration('blockForCalibrationAsync', i, x, cache)));
  }

  // the arguments are checked when the steps are made, before any runs
  #embedCalibration(fn: string, tokens: readonly number[], cache: KVCache): ForwardSteps<Tensor<'f32'>> {
    const c = this.#calibrationCache(fn, cache, tokens.length);
    return this.embedSteps(tokens, SeqBatch.single(c, 0, tokens.length));
  }

  #blockCalibration(fn: string, i: number, x: Tensor<'f32'>, cache: KVCache): ForwardSteps<Tensor<'f32'>> {
    if (!Number.isInteger(i) || i < 0 || i >= this.blocks) throw rangeError(fn, 'i', `must be a block index in [0, ${this.blocks}), got ${i}`);
    if (!(x instanceof Tensor) || x.dtype !== 'f32' || x.shape.length !== 2) throw typeError(fn, 'x', 'must be an f32 Tensor [T, width]');
    const c = this.#calibrationCache(fn, cache, x.shape[0]!);
    return this.blockSteps(i, x, SeqBatch.single(c, 0, x.shape[0]!));
  }

  #calibrationCache(fn: string, cache: KVCache, T: number): DecoderKVCache {
    const { nLayers, kvDim } = this.cacheShape();
    if (!(cache instanceof DecoderKVCache) || cache.nLayers !== nLayers || cache.kvDim !== kvDim) throw typeError(fn, 'cache', `must be a cache of this model (createCache())`);
    if (T > cache.capacity) throw rangeError(fn, 'cache', `holds ${cache.capacity} positions, the sequence has ${T}`);
    cache.reserve(T);
    return cache;
  }

  /** Rows of hidden states -> lm_head's input (default: as they are); `scratch` may hold its result. */
  protected *headInputSteps(x: Tensor<'f32'>, _scratch: Scratch): ForwardSteps<Tensor<'f32'>> {
    return x;
  }

  createCache(capacity = this.config.maxPositions): KVCache {
    const s = this.cacheShape();
    return new DecoderKVCache(s.nLayers, s.kvDim, capacity);
  }

  forward(tokens: readonly number[], cache: KVCache, options?: ForwardOptions): Tensor<'f32'> {
    return runSync(this.forwardSteps(tokens, cache, options));
  }

  override *forwardSteps(tokens: readonly number[], cacheArg: KVCache, options?: ForwardOptions): ForwardSteps<Tensor<'f32'>> {
    const fn = `${this.constructor.name}.forward`;
    const last = lastLogitsOnly(fn, options);
    const { nLayers, kvDim, maxPositions } = this.cacheShape();
    const V = this.config.vocabSize;
    const out = options?.out;
    if (out !== undefined) {
      if (!(out instanceof Float32Array)) throw typeError(fn, 'options.out', `must be a Float32Array, got ${out === null ? 'null' : typeof out}`);
      const rows = last && tokens.length > 0 ? 1 : Array.isArray(tokens) ? tokens.length : 0;
      if (out.length !== rows * V) throw rangeError(fn, 'options.out', `has ${out.length} floats, the logits are ${rows} x ${V}`);
    }
    const [cache, pos0] = beginForward(fn, tokens, cacheArg, { nLayers, kvDim, vocabSize: V, ...(maxPositions !== undefined ? { maxPositions } : {}) });
    if (tokens.length === 0) return new Tensor('f32', [0, V], out ?? new Float32Array(0));
    return yield* holdCache(fn, cache, this.#steps(tokens, cache, pos0, last, out));
  }

  *#steps(tokens: readonly number[], cache: DecoderKVCache, pos0: number, last: boolean, out: Float32Array | undefined): ForwardSteps<Tensor<'f32'>> {
    const x = yield* this.bodySteps(tokens, SeqBatch.single(cache, pos0, tokens.length));
    cache.advance(tokens.length);
    // norms and projections are per row: only the rows whose logits are wanted go on
    const h = yield* this.headInputSteps(last ? lastRow(x) : x, cache.scratch);
    const y = yield* linearStep(linearChild(this, 'lm_head'), h, out);
    if (out === undefined || y.data === out) return y;
    out.set(y.data); // a replacement lm_head that returned its own array
    return new Tensor('f32', y.shape, out);
  }

  /**
   * Several sequences in one forward (a batched decoding step): item i's
   * tokens run at its cache's next positions and are appended to it, and
   * its logits come back as result i: [1, vocabSize] with { logits: 'last' },
   * else [tokens.length, vocabSize] (views of one buffer). The GEMMs read
   * the weights once for all rows, and every op is row-invariant (see
   * LinearCallOptions), so an item's logits have the same bits whatever
   * else is in the batch, alone included. They can differ in the last bits
   * from forward()'s, whose prompt GEMMs take a faster, M-dependent path.
   * Each item needs its own cache and at least one token; every cache is
   * held (ERR_BUSY to other forwards) until the call ends. `scratch` holds
   * the activations (default: new buffers per call; a caller that steps
   * many batches passes one to reuse). `out` (optional) takes the logits:
   * exactly rows x vocabSize floats (rows = items.length with { logits:
   * 'last' }, else the items' tokens in all), prompt items' rows first,
   * then the others, each group in item order; the results are views of it.
   */
  forwardBatch(items: readonly BatchItem[], options?: BatchForwardOptions): Tensor<'f32'>[] {
    return runSync(this.forwardBatchSteps(items, options), { rowInvariant: true });
  }

  /** forwardBatch() with its native calls on worker threads: the same logits, bit for bit. */
  forwardBatchAsync(items: readonly BatchItem[], options?: BatchForwardOptions): Promise<Tensor<'f32'>[]> {
    return runAsync(this.forwardBatchSteps(items, options), { rowInvariant: true });
  }

  /** forwardBatch() as steps; drive it with { rowInvariant: true } for its guarantee. */
  *forwardBatchSteps(items: readonly BatchItem[], options?: BatchForwardOptions): ForwardSteps<Tensor<'f32'>[]> {
    const fn = `${this.constructor.name}.forwardBatch`;
    const last = lastLogitsOnly(fn, options);
    const scratch = options?.scratch ?? new Scratch();
    if (!(scratch instanceof Scratch)) throw typeError(fn, 'options.scratch', 'must be a Scratch');
    if (!Array.isArray(items)) throw typeError(fn, 'items', 'must be an array of { tokens, cache }');
    const { nLayers, kvDim, maxPositions } = this.cacheShape();
    const V = this.config.vocabSize;
    const segs: { cache: DecoderKVCache; pos0: number; T: number; prompt: boolean; index: number; tokens: readonly number[] }[] = [];
    const seen = new Set<KVCache>();
    for (const [i, it] of items.entries()) {
      if (it === null || typeof it !== 'object') throw typeError(fn, `items[${i}]`, 'must be an object { tokens, cache }');
      if (seen.has(it.cache)) throw rangeError(fn, `items[${i}].cache`, 'appears twice in the batch; each sequence needs its own cache');
      seen.add(it.cache);
      if (Array.isArray(it.tokens) && it.tokens.length === 0) throw rangeError(fn, `items[${i}].tokens`, 'must hold at least one token');
      if (it.prompt !== undefined && typeof it.prompt !== 'boolean') throw typeError(fn, `items[${i}].prompt`, `must be a boolean, got ${typeof it.prompt}`);
      const [cache, pos0] = beginForward(`${fn} (items[${i}])`, it.tokens, it.cache, { nLayers, kvDim, vocabSize: V, ...(maxPositions !== undefined ? { maxPositions } : {}) });
      segs.push({ cache, pos0, T: it.tokens.length, prompt: it.prompt ?? it.tokens.length > 1, index: i, tokens: it.tokens });
    }
    if (segs.length === 0) return [];
    const outArg = options?.out;
    if (outArg !== undefined) {
      if (!(outArg instanceof Float32Array)) throw typeError(fn, 'options.out', `must be a Float32Array, got ${describe(outArg)}`);
      const rows = last ? segs.length : segs.reduce((a, s) => a + s.T, 0);
      if (outArg.length !== rows * V) throw rangeError(fn, 'options.out', `has ${outArg.length} floats, the logits are ${rows} x ${V}`);
    }
    // prompt rows first: each linear product then runs them and the decode
    // rows as two row-invariant products (see promptRowsSplit)
    const order = [...segs.filter((s) => s.prompt), ...segs.filter((s) => !s.prompt)];
    const tokens = order.flatMap((s) => s.tokens);
    const promptSegs = order.filter((s) => s.prompt);
    const split = { rows: promptSegs.reduce((a, s) => a + s.T, 0), items: promptSegs.length };
    const out = yield* holdCaches(fn, order.map((s) => s.cache), this.#batchSteps(tokens, new SeqBatch(order, scratch), last, split, outArg));
    const back = new Array<Tensor<'f32'>>(out.length);
    order.forEach((s, j) => (back[s.index] = out[j]!));
    return back;
  }

  *#batchSteps(tokens: readonly number[], batch: SeqBatch, last: boolean, split: { rows: number; items: number }, out?: Float32Array): ForwardSteps<Tensor<'f32'>[]> {
    const x = yield* promptRowsSplit(this.bodySteps(tokens, batch), split.rows);
    for (const s of batch.segments) s.cache.advance(s.T);
    const D = x.shape[1]!;
    let rows = x;
    if (last) {
      // only each sequence's last row goes on to the head
      const n = batch.segments.length;
      const r = batch.scratch.f32('lastRows', n * D);
      batch.segments.forEach((s, i) => r.set(x.data.subarray((s.row0 + s.T - 1) * D, (s.row0 + s.T) * D), i * D));
      rows = new Tensor('f32', [n, D], r);
    }
    const headPrompt = last ? split.items : split.rows;
    const h = yield* promptRowsSplit(this.headInputSteps(rows, batch.scratch), headPrompt);
    let logits = (yield* promptRowsSplit(linearStep(linearChild(this, 'lm_head'), h, out), headPrompt)).data;
    if (out !== undefined && logits !== out) logits = (out.set(logits), out); // a replacement lm_head that returned its own array
    const V = this.config.vocabSize;
    let r0 = 0;
    return batch.segments.map((s) => {
      const T = last ? 1 : s.T;
      const t = new Tensor('f32', [T, V], logits.subarray(r0 * V, (r0 + T) * V));
      r0 += T;
      return t;
    });
  }
}

/** One sequence of a batched forward: its next tokens and its cache. */
export interface BatchItem {
  readonly tokens: readonly number[];
  readonly cache: KVCache;
  /**
   * Whether the tokens are (a chunk of) the prompt rather than a generated
   * token (default: more than one token). Prompt and generated rows take
   * different row-invariant kernels, so a caller that feeds a prompt's
   * last chunk of one token says so to keep the bits of a whole prompt.
   */
  readonly prompt?: boolean;
}

/**
 * Run `steps` (a batched forward's, rows ordered prompt rows first) with
 * every linear product split in two row-invariant products: its first
 * `promptRows` rows with the large-M kernel ('prefill'), the others with
 * the small-M one (decode). Each row so always takes the same kernel for
 * the same role, whatever the batch, and prompts keep the speed of the
 * large-M kernel.
 */
function* promptRowsSplit<R>(steps: ForwardSteps<R>, promptRows: number): ForwardSteps<R> {
  let r = steps.next();
  while (!r.done) {
    const op = r.value;
    let y: Tensor<'f32'>;
    try {
      y = op.kind === 'linear' ? yield* splitLinear(op, promptRows) : op.kind === 'linears' ? yield* splitLinears(op, promptRows) : yield op;
    } catch (e) {
      r = steps.throw(e);
      continue;
    }
    r = steps.next(y);
  }
  return r.value;
}

function* splitLinear(op: Extract<ForwardOp, { kind: 'linear' }>, P: number): ForwardSteps<Tensor<'f32'>> {
  const x = op.x;
  const K = x.shape[x.shape.length - 1] ?? 0;
  const rows = K > 0 ? x.size / K : 0;
  const N = op.layer.outFeatures;
  if (P >= rows) return yield { ...op, rowInvariant: 'prefill' };
  // a layer that does not say its width cannot be split: all rows take the decode kernel
  if (P <= 0 || N === undefined) return yield { ...op, rowInvariant: true };
  const out = op.out ?? lineArray(Float32Array, rows * N);
  const part = (r0: number, r1: number, mode: true | 'prefill'): ForwardOp => ({
    kind: 'linear',
    layer: op.layer,
    x: new Tensor('f32', [r1 - r0, K], x.data.subarray(r0 * K, r1 * K)),
    out: out.subarray(r0 * N, r1 * N),
    rowInvariant: mode,
  });
  const a = yield part(0, P, 'prefill');
  const b = yield part(P, rows, true);
  // a layer may return its own array instead of writing `out`
  if (a.data.buffer !== out.buffer || a.data.byteOffset !== out.byteOffset) out.set(a.data, 0);
  if (b.data.buffer !== out.buffer || b.data.byteOffset !== out.byteOffset + P * N * 4) out.set(b.data, P * N);
  return new Tensor('f32', [...x.shape.slice(0, -1), N], out);
}

/** splitLinear for a linears op: shared as a whole when its rows are all of one kind, else layer by layer. */
function* splitLinears(op: Extract<ForwardOp, { kind: 'linears' }>, P: number): ForwardSteps<Tensor<'f32'>> {
  const x = op.x;
  const K = x.shape[x.shape.length - 1] ?? 0;
  const rows = K > 0 ? x.size / K : 0;
  if (P >= rows) return yield { ...op, rowInvariant: 'prefill' };
  if (P <= 0) return yield { ...op, rowInvariant: true };
  const ys: Tensor<'f32'>[] = [];
  for (let i = 0; i < op.layers.length; i++) {
    const out = op.outs[i];
    const one = { kind: 'linear', layer: op.layers[i]!, x } as const;
    ys.push(yield* splitLinear(out === undefined ? one : { ...one, out }, P));
  }
  op.results.length = 0;
  op.results.push(...ys);
  return ys[0]!;
}

export interface BatchForwardOptions extends ForwardOptions {
  /** Activation buffers to reuse across batched forwards (default: new ones per call). */
  readonly scratch?: Scratch;
}
