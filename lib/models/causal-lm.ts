/**
 * CausalLM: what generation, perplexity and the CLI need from a model.
 * A model is a Module tree (so quantizeModel can swap its Linear layers)
 * with a token-level forward over a KV cache.
 *
 * Its forward is written once as steps (lib/nn/steps.ts) and run by a
 * sync or an async driver: forward() and forwardAsync().
 */
import { Module } from '../nn/module.js';
import { type ForwardSteps, type KVCache, runAsync } from '../nn/steps.js';
import type { Tensor } from '../tensor.js';

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

export abstract class CausalLM extends Module {
  abstract readonly config: ModelConfigBase;

  /** A cache for up to `capacity` positions (default: config.maxPositions). */
  abstract createCache(capacity?: number): KVCache;

  /**
   * Run `tokens` at positions cache.length .. cache.length + tokens.length - 1,
   * append their keys/values to the cache, and return logits f32
   * [tokens.length, vocabSize]. The built-in models implement it as
   * runSync(this.forwardSteps(...)). (It stays abstract so that a model
   * written only as a plain forward(), like the test TinyLM, still compiles
   * under noImplicitOverride.)
   */
  abstract forward(tokens: readonly number[], cache: KVCache): Tensor<'f32'>;

  /**
   * The forward as a coroutine (see the header). The built-in models
   * override this; the default runs forward() as one synchronous step
   * (correct, but it does not free the event loop). Drive it to the end
   * (runSync/runAsync): an abandoned generator keeps the cache locked.
   */
  *forwardSteps(tokens: readonly number[], cache: KVCache): ForwardSteps<Tensor<'f32'>> {
    return this.forward(tokens, cache);
  }

  /**
   * forward() with its GEMMs on worker threads: the same logits, bit for
   * bit, while the event loop stays responsive. One cache serves one stream
   * at a time: a forward on a cache whose previous forward has not finished
   * throws QuantkitError 'ERR_BUSY' (the returned Promise rejects) instead
   * of interleaving; calls on different caches may run concurrently.
   */
  forwardAsync(tokens: readonly number[], cache: KVCache): Promise<Tensor<'f32'>> {
    // the generator's first steps (argument checks, the cache lock) run now, synchronously
    return runAsync(this.forwardSteps(tokens, cache));
  }
}
