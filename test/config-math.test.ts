/**
 * config.json values that make the model's math undefined are refused at
 * load (ERR_BAD_CONFIG naming the field) instead of loading and producing
 * NaN logits: rope_theta 0, a rope scaling factor 0, eps 0, negative or
 * non-finite values, llama3 scaling with high <= low frequency factors, and
 * dimensions that do not divide.
 */
import { describe, expect, it } from 'vitest';
import { QuantkitError } from '../lib/errors.js';
import { parseModelConfig } from '../lib/models/registry.js';
import { Rope, ropeInvFreq } from '../lib/nn/rope.js';

const LLAMA = {
  model_type: 'llama', hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4,
  num_key_value_heads: 2, vocab_size: 100, max_position_embeddings: 64, rms_norm_eps: 1e-5, rope_theta: 10000,
};
const GPT2 = { model_type: 'gpt2', n_embd: 32, n_layer: 2, n_head: 4, vocab_size: 50, n_positions: 64, layer_norm_epsilon: 1e-5 };
const LLAMA3 = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };

function badConfig(json: object, ...parts: string[]): void {
  let err: unknown;
  try {
    parseModelConfig(json, 'cfg.json');
  } catch (e) {
    err = e;
  }
  expect(err, JSON.stringify(json)).toBeInstanceOf(QuantkitError);
  expect((err as QuantkitError).code).toBe('ERR_BAD_CONFIG');
  for (const p of parts) expect((err as Error).message).toContain(p);
}

describe('configs whose math is undefined are refused', () => {
  it('accepts the valid baselines', () => {
    expect(() => parseModelConfig(LLAMA)).not.toThrow();
    expect(() => parseModelConfig(GPT2)).not.toThrow();
    expect(() => parseModelConfig({ ...LLAMA, rope_scaling: LLAMA3 })).not.toThrow();
    expect(() => parseModelConfig({ ...LLAMA, rope_scaling: { type: 'linear', factor: 2 } })).not.toThrow();
  });

  for (const v of [0, -1, -10000]) {
    it(`rope_theta ${v}`, () => badConfig({ ...LLAMA, rope_theta: v }, 'cfg.json', "'rope_theta'", 'positive'));
    it(`rms_norm_eps ${v}`, () => badConfig({ ...LLAMA, rms_norm_eps: v }, "'rms_norm_eps'"));
    it(`layer_norm_epsilon ${v}`, () => badConfig({ ...GPT2, layer_norm_epsilon: v }, "'layer_norm_epsilon'"));
    it(`linear rope factor ${v}`, () => badConfig({ ...LLAMA, rope_scaling: { type: 'linear', factor: v } }, "'factor'"));
    it(`llama3 low_freq_factor ${v}`, () => badConfig({ ...LLAMA, rope_scaling: { ...LLAMA3, low_freq_factor: v } }, "'low_freq_factor'"));
  }
  it('non-numbers and non-finite values (as JSON can spell them: strings, null, huge)', () => {
    badConfig({ ...LLAMA, rope_theta: 'NaN' }, "'rope_theta'");
    badConfig({ ...LLAMA, rope_theta: 1e400 }, "'rope_theta'"); // JSON.parse gives Infinity
    badConfig({ ...LLAMA, rms_norm_eps: Number.NaN }, "'rms_norm_eps'");
  });
  it('llama3 scaling with high_freq_factor <= low_freq_factor', () => {
    badConfig({ ...LLAMA, rope_scaling: { ...LLAMA3, high_freq_factor: 1 } }, "'high_freq_factor'", "'low_freq_factor'");
    badConfig({ ...LLAMA, rope_scaling: { ...LLAMA3, high_freq_factor: 0.5 } }, "'high_freq_factor'");
  });
  it('head counts and dimensions', () => {
    badConfig({ ...LLAMA, num_attention_heads: 0 }, "'num_attention_heads'");
    badConfig({ ...LLAMA, num_key_value_heads: 3 }, "'num_attention_heads'", "'num_key_value_heads'");
    badConfig({ ...LLAMA, hidden_size: 66 }, "'hidden_size'", 'divisible');
    badConfig({ ...GPT2, n_head: 5 }, "'n_embd'");
  });
  it('the rope code itself refuses a bad theta or scaling with a RangeError', () => {
    expect(() => ropeInvFreq(8, 0)).toThrow(RangeError);
    expect(() => ropeInvFreq(8, NaN)).toThrow(/'theta'/);
    expect(() => new Rope(8, 10000, { type: 'linear', factor: 0 })).toThrow(/'scaling.factor'/);
    expect(() => ropeInvFreq(8, 10000, { type: 'llama3', factor: 8, lowFreqFactor: 4, highFreqFactor: 4, originalMaxPositions: 64 })).toThrow(RangeError);
    expect(Array.from(ropeInvFreq(4, 10000)).every(Number.isFinite)).toBe(true);
  });
});
