/**
 * CausalLM: what generation, perplexity and the CLI need from a model.
 * A model is a Module tree (so quantizeModel can swap its Linear layers)
 * with a token-level forward over a KV cache.
 *
 * Its forward is written once as steps (lib/nn/steps.ts) and run by a
 * sync or an async driver: forward() and forwardAsync().
 */
import { rangeError, typeError } from '../errors.js';
import { Module } from '../nn/module.js';
import { DecoderKVCache, beginForward, holdCache, linearChild } from '../nn/attention.js';
import type { Scratch } from '../nn/scratch.js';
import { type ForwardSteps, type KVCache, linearStep, runAsync, runSync } from '../nn/steps.js';
import { Tensor } from '../tensor.js';

// Model code imports the step helpers from here, next to CausalLM.
export { type ForwardOp, type ForwardSteps, type KVCache, type LinearLike, linearStep, matmulStep, runAsync, runSync } from '../nn/steps.js';

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

  /** Hidden states [T, width] of tokens at positions pos0 .. pos0 + T - 1. */
  protected abstract bodySteps(tokens: readonly number[], cache: DecoderKVCache, pos0: number): ForwardSteps<Tensor<'f32'>>;

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
    const [cache, pos0] = beginForward(fn, tokens, cacheArg, { nLayers, kvDim, vocabSize: V, ...(maxPositions !== undefined ? { maxPositions } : {}) });
    if (tokens.length === 0) return new Tensor('f32', [0, V], new Float32Array(0));
    return yield* holdCache(fn, cache, this.#steps(tokens, cache, pos0, last));
  }

  *#steps(tokens: readonly number[], cache: DecoderKVCache, pos0: number, last: boolean): ForwardSteps<Tensor<'f32'>> {
    const x = yield* this.bodySteps(tokens, cache, pos0);
    cache.advance(tokens.length);
    // norms and projections are per row: only the rows whose logits are wanted go on
    const h = yield* this.headInputSteps(last ? lastRow(x) : x, cache.scratch);
    return yield* linearStep(linearChild(this, 'lm_head'), h);
  }
}
