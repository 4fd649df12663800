/**
 * CausalLM: what generation, perplexity and the CLI need from a model.
 * A model is a Module tree (so quantizeModel can swap its Linear layers)
 * with a token-level forward over a KV cache.
 */
import { Module } from '../nn/module.js';
import type { Tensor } from '../tensor.js';

/** Keys/values of the positions seen so far; one per generation stream. */
export interface KVCache {
  /** Number of positions already stored. */
  readonly length: number;
  /** Capacity in positions. */
  readonly capacity: number;
  /** Forget every position (reuse the memory). */
  reset(): void;
}

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
   * [tokens.length, vocabSize].
   */
  abstract forward(tokens: readonly number[], cache: KVCache): Tensor<'f32'>;
}
