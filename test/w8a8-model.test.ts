/**
 * W8A8 and LLM.int8() on the real stories260K model: perplexity within 1 %
 * of fp32 on TinyStories text (acceptance); W4A8 within 1 % of the same
 * int4 weights with float activations; quantizeModel's activations option,
 * and its validation.
 */
import * as fs from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { QLinear, loadLlama2cTokenizer, loadModelSync, perplexity, quantizeModel } from '../lib/index.js';
import { fixture, requireFixtures } from './fixtures.js';

const present = requireFixtures('stories260K/model.safetensors', 'stories260K/tok512.bin', 'text/tinystories-head.txt');

describe.skipIf(!present)('stories260K with int8 activations', () => {
  let tokens: number[] = [];
  beforeAll(() => {
    const tok = loadLlama2cTokenizer(fixture('stories260K/tok512.bin'), 512);
    const text = fs.readFileSync(fixture('text/tinystories-head.txt'), 'utf8');
    for (const story of text.split(/\n\s*\n/)) {
      if (story.trim() === '') continue;
      tokens.push(...tok.encode(story.trim(), { bos: true }));
      if (tokens.length >= 8192) break;
    }
    tokens = tokens.slice(0, 8192);
  });

  it('W8A8 and LLM.int8 perplexity are within 1 % of fp32', () => {
    const ppl = (activations?: 'int8' | 'llm.int8') => {
      const { model } = loadModelSync(fixture('stories260K'));
      if (activations) {
        const s = quantizeModel(model, { weights: 'int8', activations });
        expect(s.config.activations).toBe(activations);
        expect(s.replaced.length).toBe(35); // 5 layers x 7 linears; the tied lm_head stays float
        for (const [, m] of model.namedModules()) if (m instanceof QLinear) expect(m.activations).toBe(activations);
      }
      return perplexity(model, tokens, { context: 256 }).ppl;
    };
    const fp32 = ppl();
    const w8a8 = ppl('int8');
    const llm = ppl('llm.int8');
    console.log(`stories260K perplexity (8160 tokens): fp32 ${fp32.toFixed(4)}, W8A8 ${w8a8.toFixed(4)} (${(((w8a8 - fp32) / fp32) * 100).toFixed(2)} %), LLM.int8 ${llm.toFixed(4)} (${(((llm - fp32) / fp32) * 100).toFixed(2)} %)`);
    expect(Math.abs(w8a8 - fp32) / fp32).toBeLessThan(0.01);
    expect(Math.abs(llm - fp32) / fp32).toBeLessThan(0.01);
  });

  it('W4A8 (int4 g32 weights, int8 activations per 32 values) perplexity is within 1 % of int4 weight-only', () => {
    const ppl = (scheme: 'symmetric' | 'asymmetric', activations: 'none' | 'int8') => {
      const { model } = loadModelSync(fixture('stories260K'));
      const s = quantizeModel(model, { weights: 'int4', scheme, groupSize: 32, activations });
      expect(s.replaced.length).toBe(35);
      for (const [, m] of model.namedModules()) if (m instanceof QLinear) expect(m.activations).toBe(activations);
      return perplexity(model, tokens, { context: 256 }).ppl;
    };
    for (const scheme of ['symmetric', 'asymmetric'] as const) {
      const w4 = ppl(scheme, 'none');
      const w4a8 = ppl(scheme, 'int8');
      console.log(`stories260K perplexity (8160 tokens), int4 ${scheme} g32: weight-only ${w4.toFixed(4)}, W4A8 ${w4a8.toFixed(4)} (${(((w4a8 - w4) / w4) * 100).toFixed(2)} %)`);
      expect(Math.abs(w4a8 - w4) / w4).toBeLessThan(0.01);
    }
  });

  it('validates the activations option', () => {
    const { model } = loadModelSync(fixture('stories260K'));
    expect(() => quantizeModel(model, { weights: 'int4', activations: 'llm.int8' })).toThrow(/options.weights/);
    expect(() => quantizeModel(model, { weights: 'int8', scheme: 'asymmetric', activations: 'int8' })).toThrow(/options.scheme/);
    expect(() => quantizeModel(model, { weights: 'int8', activations: 'int8', threshold: 3 })).toThrow(/options.threshold/);
    expect(() => quantizeModel(model, { weights: 'int8', activations: 'fp8' as 'int8' })).toThrow(/options.activations/);
  });
});
