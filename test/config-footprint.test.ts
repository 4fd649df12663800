/**
 * Footprints from config.json alone (no weights): the WeightSpec list of
 * every architecture is checked against the model its builder actually
 * builds from those very tensors (a missing or misshapen spec fails the
 * build, an extra one the byte count), in f32 and bf16, as loaded and after
 * quantizeModel; then the four seed models' published configs against hand
 * arithmetic and the Hugging Face figures the issue quotes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { configFootprint, footprintFromSpecs, parameterCount } from '../lib/eval/config-footprint.js';
import { footprint } from '../lib/eval/footprint.js';
import { type WeightSpec, WeightReader } from '../lib/models/config.js';
import { buildDistilBert, distilbertWeightSpecs, parseDistilBertConfig } from '../lib/models/distilbert.js';
import { archSpec, buildModel, parseModelConfig } from '../lib/models/registry.js';
import type { Module } from '../lib/nn/module.js';
import { type QuantizeModelOptions, quantizeModel } from '../lib/nn/quantize-model.js';
import { Tensor } from '../lib/tensor.js';
import { rng, toBf16Bits } from './helpers.js';
import { runCli, runCliJson } from './cli-run.js';

const SEEDS = path.resolve(__dirname, 'data', 'seed-configs');

/** Random tensors for every (untied) spec: Linear weights and embeddings in `dtype`, the rest f32. */
function tensorsFor(specs: readonly WeightSpec[], dtype: 'f32' | 'bf16'): Map<string, Tensor> {
  const r = rng(5);
  const m = new Map<string, Tensor>();
  for (const s of specs) {
    if (s.tiedTo !== undefined) continue;
    const n = s.shape.reduce((a, d) => a * d, 1);
    const vals = Float32Array.from({ length: n }, () => (r() - 0.5) * 0.2);
    m.set(s.name, s.kind !== 'f32' && dtype === 'bf16' ? new Tensor('bf16', [...s.shape], Uint16Array.from(vals, (v) => toBf16Bits(v))) : new Tensor('f32', [...s.shape], vals));
  }
  return m;
}

const lookup = (m: Map<string, Tensor>) => ({ has: (n: string) => m.has(n), get: (n: string) => m.get(n)! });

const TINY: Record<string, Record<string, unknown>> = {
  'llama GQA untied': { model_type: 'llama', hidden_size: 64, intermediate_size: 96, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 48, max_position_embeddings: 64, tie_word_embeddings: false, attention_bias: true },
  'llama tied': { model_type: 'llama', hidden_size: 64, intermediate_size: 100, num_hidden_layers: 1, num_attention_heads: 4, vocab_size: 48, tie_word_embeddings: true },
  gpt2: { model_type: 'gpt2', n_embd: 64, n_layer: 2, n_head: 4, n_positions: 32, vocab_size: 48 },
  'opt pre-LN': { model_type: 'opt', hidden_size: 64, ffn_dim: 128, num_hidden_layers: 2, num_attention_heads: 4, vocab_size: 48, max_position_embeddings: 32 },
  'opt 350m-style (post-LN, projections)': { model_type: 'opt', hidden_size: 64, ffn_dim: 128, num_hidden_layers: 2, num_attention_heads: 4, vocab_size: 48, max_position_embeddings: 32, do_layer_norm_before: false, word_embed_proj_dim: 32 },
  codegen: { model_type: 'codegen', n_embd: 64, n_layer: 2, n_head: 8, rotary_dim: 4, n_positions: 32, vocab_size: 48 },
};

const QUANT: (QuantizeModelOptions | undefined)[] = [undefined, { weights: 'int8' }, { weights: 'int4', scheme: 'asymmetric', exclude: [] }, { weights: 'int4', groupSize: 64 }];

function check(specs: WeightSpec[], build: (t: Map<string, Tensor>) => Module): void {
  for (const dtype of ['f32', 'bf16'] as const) {
    for (const q of QUANT) {
      const tensors = tensorsFor(specs, dtype);
      const model = build(tensors);
      if (q === undefined) {
        let params = 0;
        const seen = new Set<ArrayBufferView>();
        for (const [, t] of model.namedTensors()) if (!seen.has(t.data)) (seen.add(t.data), (params += t.size));
        expect(parameterCount(specs)).toBe(params);
      } else quantizeModel(model, q);
      expect(footprintFromSpecs(specs, { dtype, ...(q ? { quantize: q } : {}) }), `${dtype} ${JSON.stringify(q)}`).toBe(footprint(model).bytes);
    }
  }
}

describe('weight specs match what the builders build', () => {
  for (const [name, json] of Object.entries(TINY)) {
    it(name, () => {
      const c = parseModelConfig(json);
      // shapes as quantkit holds them: GPT-2's Conv1D weights already [out, in] ('linear' layout)
      check(archSpec(c.arch).weightSpecs(c), (t) => buildModel(c, lookup(t), 'memory', { layout: 'linear' }));
    });
  }
  for (const mlm of [false, true]) {
    it(`distilbert${mlm ? ' masked LM' : ''}`, () => {
      const c = parseDistilBertConfig({ model_type: 'distilbert', dim: 64, n_heads: 4, hidden_dim: 96, n_layers: 2, vocab_size: 48, max_position_embeddings: 16 });
      const specs = distilbertWeightSpecs(c, mlm);
      check(specs, (t) => buildDistilBert(c, new WeightReader(lookup(t), 'memory', { prefix: 'distilbert.', prefixVariants: ['distilbert.', ''] }), mlm));
    });
  }
});

describe('the seed models from their configs alone', () => {
  const fp = (m: string) => configFootprint(JSON.parse(fs.readFileSync(path.join(SEEDS, m, 'config.json'), 'utf8')));
  const row = (r: ReturnType<typeof fp>, label: string) => r.rows.find((x) => x.label === label)!;

  it('gpt2: 124,439,808 parameters = 497,759,232 B in f32', () => {
    const r = fp('gpt2');
    // wte 50257x768 + wpe 1024x768 + 12 x (2 LN x 2x768 + c_attn 768x2304+2304 + c_proj 768x768+768 + c_fc 768x3072+3072 + proj 3072x768+768) + ln_f 2x768
    const perLayer = 4 * 768 + (768 * 2304 + 2304) + (768 * 768 + 768) + (768 * 3072 + 3072) + (3072 * 768 + 768);
    expect(r.parameters).toBe(50257 * 768 + 1024 * 768 + 12 * perLayer + 2 * 768);
    expect(r.parameters).toBe(124_439_808);
    expect(row(r, 'f32').bytes).toBe(497_759_232);
  });

  it('codegen-350M-mono: bf16 and W8A16 (lm_head float) explained against Hugging Face figures', () => {
    const r = fp('codegen-350M-mono');
    expect(r.parameters).toBe(356_712_448);
    // HF get_memory_footprint in bf16: 797,310,976 B, of which 20 causal masks of 2048x2048 bytes;
    // quantkit keeps norms and biases (196,608 values) in f32: 2 more bytes each
    const masks = 20 * 2048 * 2048;
    const normsAndBiases = 20 * (2 * 1024 + 4096 + 1024) + 2 * 1024 + 51200;
    expect(normsAndBiases).toBe(196_608);
    expect(row(r, 'bf16').bytes).toBe(797_310_976 - masks + 2 * normsAndBiases);
    // HF after W8A16, lm_head excluded: 546,021,376 B (masks included); quantkit also holds the
    // per-channel scales (9,216 per layer) in f32 rather than bf16
    const scales = 20 * (3 * 1024 + 1024 + 4096 + 1024);
    expect(row(r, 'int8 per-channel (bf16 rest)').bytes).toBe(546_021_376 - masks + 2 * normsAndBiases + 2 * scales);
  });

  it('opt-350m: about 662 MB in bf16 before, about 365 MB after W8A16 (lm_head float)', () => {
    const r = fp('opt-350m');
    expect(r.parameters).toBe(331_196_416); // HF: 662,392,832 B in bf16 = 2 bytes each
    expect(row(r, 'bf16').bytes).toBeGreaterThan(662e6);
    expect(row(r, 'bf16').bytes).toBeLessThan(668e6);
    expect(row(r, 'int8 per-channel (bf16 rest)').bytes).toBeLessThan(366e6);
  });

  it('distilbert-base-uncased (masked LM): 66,985,530 parameters', () => {
    const r = fp('distilbert-base-uncased');
    expect(r.kind).toBe('masked-lm');
    expect(r.head).toBe('vocab_projector');
    expect(r.parameters).toBe(66_985_530);
    expect(row(r, 'f32').bytes).toBe(4 * 66_985_530);
  });
});

describe('quantkit inspect on a folder holding only config.json', () => {
  it('prints parameters and footprints without weights', async () => {
    const j = await runCliJson<{ parameters: number; rows: { label: string; bytes: number }[]; source: string }>(['inspect', path.join(SEEDS, 'gpt2')]);
    expect(j.source).toMatch(/config only/);
    expect(j.parameters).toBe(124_439_808);
    expect(j.rows.find((r) => r.label === 'f32')!.bytes).toBe(497_759_232);
    const r = await runCli(['inspect', path.join(SEEDS, 'distilbert-base-uncased')]);
    expect(r.code, r.err).toBe(0);
    const out = r.out;
    expect(out).toMatch(/parameters: +66,985,530/);
    expect(out).toMatch(/vocab_projector float/);
  });
});
