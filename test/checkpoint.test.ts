/**
 * Quantized checkpoints: tensor names and dtypes on disk, config.json,
 * bit-identical reload without the original weights, atomic writes, and the
 * real stories260K model through lib/models' builder.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { footprint } from '../lib/eval/footprint.js';
import { loadQuantizedWeights, saveQuantized } from '../lib/io/quantized-checkpoint.js';
import { readSafetensors } from '../lib/io/safetensors.js';
import { QLinear } from '../lib/nn/linear.js';
import { quantizeModel, type QuantizeModelOptions } from '../lib/nn/quantize-model.js';
import { fixture } from './fixtures.js';
import { TinyLM } from './tiny-lm.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qk-ckpt-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const FIX = fixture('stories260K');
const haveFixture = fs.existsSync(path.join(FIX, 'model.safetensors'));
if (!haveFixture && process.env.CI) throw new Error(`fixture missing: ${FIX}`);
if (!haveFixture) console.warn(`skipping stories260K checkpoint tests: ${FIX} not found`);

const SRC_CONFIG = { model_type: 'tiny', hidden_size: 64 };

/** A "builder" for the tiny model: a fresh TinyLM whose Linear weights come from the lookup. */
function rebuildTiny(q: ReturnType<typeof loadQuantizedWeights>, opts: ConstructorParameters<typeof TinyLM>[0]): TinyLM {
  const m = new TinyLM({ ...opts, seed: 999 }); // different random weights: everything must come from the file
  // embed / float linears / biases from the lookup, as a real builder would do
  for (const [name, t] of m.namedTensors()) {
    if (!q.lookup.has(name)) continue;
    const src = q.lookup.get(name);
    (t as { data: Float32Array }).data.set(src.data as Float32Array);
  }
  q.applyTo(m);
  return m;
}

describe('saveQuantized / loadQuantizedWeights', () => {
  const cases: [string, QuantizeModelOptions, { tied?: boolean; bias?: boolean; hidden?: number }][] = [
    ['int8 sym channel', { weights: 'int8' }, { bias: true }],
    ['int4 asym g32, tied lm_head excluded', { weights: 'int4', scheme: 'asymmetric' }, { tied: true }],
    ['int4 sym g32 with a g20 fallback, lm_head quantized', { weights: 'int4', exclude: [] }, { hidden: 100, bias: true }],
    ['int8 asym tensor', { weights: 'int8', scheme: 'asymmetric', granularity: 'tensor' }, {}],
    ['int4 sym g32 W4A8', { weights: 'int4', activations: 'int8' }, { bias: true }],
    ['int4 asym g32, int8 prompts', { weights: 'int4', scheme: 'asymmetric', activations: 'int8-prefill' }, {}],
    ['int8 sym channel, int8 prompts', { weights: 'int8', activations: 'int8-prefill' }, { bias: true }],
  ];
  for (const [label, qopts, mopts] of cases) {
    it(`round-trips bit-identically: ${label}`, async () => {
      const m = new TinyLM(mopts);
      const summary = quantizeModel(m, qopts);
      const dir = path.join(tmp, label.replace(/\W+/g, '-'));
      const tokFile = path.join(tmp, 'tok.bin');
      fs.writeFileSync(tokFile, 'tokenizer bytes');
      await saveQuantized(m, summary, [tokFile], dir, SRC_CONFIG);

      expect(fs.readFileSync(path.join(dir, 'tok.bin'), 'utf8')).toBe('tokenizer bytes');
      const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
      expect(cfg.model_type).toBe('tiny');
      expect(cfg.quantization_config).toMatchObject({
        quant_method: 'quantkit',
        format_version: 1,
        bits: summary.config.bits,
        scheme: summary.config.scheme,
        granularity: summary.config.granularity,
        group_size: summary.config.groupSize ?? null,
        modules_to_not_convert: summary.kept,
      });
      const st = readSafetensors(path.join(dir, 'model.safetensors'));
      for (const name of summary.replaced) {
        const layer = [...m.namedModules()].find(([n]) => n === name)![1] as QLinear;
        const q = layer.qweight;
        const qw = st.info(`${name}.qweight`);
        expect(qw.dtype).toBe(q.bits === 8 ? 'I8' : 'U8');
        expect(qw.shape).toEqual(q.bits === 8 ? [q.shape[0], q.shape[1]] : [q.shape[0], q.shape[1]! / 2]);
        expect(st.info(`${name}.scales`).dtype).toBe('F32');
        expect(st.has(`${name}.zeros`)).toBe(q.scheme === 'asymmetric');
        if (q.scheme === 'asymmetric') expect(st.info(`${name}.zeros`).dtype).toBe(q.bits === 8 ? 'I8' : 'U8');
        expect(st.has(`${name}.bias`)).toBe(layer.bias !== null);
        expect(st.has(`${name}.weight`)).toBe(false);
      }
      for (const name of summary.kept) expect(st.has(`${name}.weight`) || (mopts.tied && name === 'lm_head')).toBe(true);
      if (mopts.tied) expect(st.has('lm_head.weight')).toBe(false); // the shared tensor is stored once
      if (summary.fallbacks.length) {
        expect(cfg.quantization_config.module_overrides['layers.0.fc2']).toEqual({ granularity: 'group', group_size: 20 });
      }

      const loaded = loadQuantizedWeights(dir);
      expect([...loaded.qlinears.keys()]).toEqual(summary.replaced);
      for (const l of loaded.qlinears.values()) expect(l.activations).toBe(summary.config.activations);
      const r = rebuildTiny(loaded, mopts);
      const toks = [0, 3, 7, 11, 2, 19, 5];
      expect(r.forward(toks, r.createCache()).data).toEqual(m.forward(toks, m.createCache()).data);
      expect(footprint(r).bytes).toBe(footprint(m).bytes);
    });
  }

  it('writes atomically: a failure leaves no folder and no temp, and keeps an existing one', async () => {
    const m = new TinyLM();
    const s = quantizeModel(m, { weights: 'int8' });
    const dir = path.join(tmp, 'atomic');
    await expect(saveQuantized(m, s, [path.join(tmp, 'missing.json')], dir, SRC_CONFIG)).rejects.toThrow(/tokenizer file not found/);
    expect(fs.existsSync(dir)).toBe(false);
    await saveQuantized(m, s, [], dir, SRC_CONFIG);
    const before = fs.readFileSync(path.join(dir, 'model.safetensors'));
    // a failure while filling the folder (config with a BigInt cannot be serialised)
    await expect(saveQuantized(m, s, [], dir, { bad: 1n } as never)).rejects.toThrow();
    expect(fs.readFileSync(path.join(dir, 'model.safetensors'))).toEqual(before);
    expect(fs.readdirSync(tmp).filter((f) => f.startsWith('.atomic'))).toEqual([]);
  });

  it('refuses a float model and bad folders with clear errors', async () => {
    const m = new TinyLM();
    await expect(saveQuantized(m, { weights: 'int8' } as never, [], path.join(tmp, 'x'), SRC_CONFIG)).rejects.toThrow();
    await expect(saveQuantized(m, quantizeModel(new TinyLM(), { weights: 'int8' }), [], path.join(tmp, 'y'), SRC_CONFIG)).rejects.toThrow(/no QLinear/);
    expect(() => loadQuantizedWeights(path.join(tmp, 'nope'))).toThrow(/not found/);
    const d = path.join(tmp, 'notq');
    fs.mkdirSync(d);
    fs.writeFileSync(path.join(d, 'config.json'), JSON.stringify({ model_type: 'llama' }));
    expect(() => loadQuantizedWeights(d)).toThrow(/quant_method/);
  });
});

describe.skipIf(!haveFixture)('stories260K quantized checkpoint', () => {
  it('reloads through the model builder with logits bit-identical to the in-memory model', async () => {
    const { loadModelSync, buildModel } = await import('../lib/models/load.js');
    const { readModelConfig } = await import('../lib/models/registry.js');
    for (const qopts of [{ weights: 'int8' }, { weights: 'int4', scheme: 'asymmetric' }] as QuantizeModelOptions[]) {
      const { model } = loadModelSync(FIX);
      const s = quantizeModel(model, qopts);
      const dir = path.join(tmp, `stories-${qopts.weights}`);
      await saveQuantized(model, s, [path.join(FIX, 'tok512.bin')], dir, JSON.parse(fs.readFileSync(path.join(FIX, 'config.json'), 'utf8')));
      const q = loadQuantizedWeights(dir);
      const re = buildModel(readModelConfig(path.join(dir, 'config.json')), q.lookup, dir);
      q.applyTo(re);
      const toks = [1, 403, 407, 261, 378, 29, 266, 1020 % 512];
      expect(re.forward(toks, re.createCache()).data).toEqual(model.forward(toks, model.createCache()).data);
      expect(footprint(re)).toEqual(footprint(model));
      expect(fs.existsSync(path.join(dir, 'tok512.bin'))).toBe(true);
    }
  });
});

describe('quantized checkpoint through loadModel', () => {
  it('reloads a GPT-2 (Conv1D weights transposed at load) bit-identically, needing no original weights', async () => {
    const { loadModelSync } = await import('../lib/models/load.js');
    const { writeSafetensorsSync } = await import('../lib/io/safetensors.js');
    const { Tensor } = await import('../lib/tensor.js');
    const D = 32, L = 2, V = 48, P = 32;
    let seed = 7;
    const rnd = (n: number, s = 0.2) => Float32Array.from({ length: n }, () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32 - 0.5) * s);
    const t = (shape: number[], s?: number) => new Tensor('f32', shape, rnd(shape.reduce((a, b) => a * b, 1), s));
    const w = new Map<string, InstanceType<typeof Tensor>>([['transformer.wte.weight', t([V, D])], ['transformer.wpe.weight', t([P, D])]]);
    for (let i = 0; i < L; i++) {
      const p = `transformer.h.${i}.`;
      w.set(p + 'ln_1.weight', t([D], 0.1)).set(p + 'ln_1.bias', t([D])).set(p + 'ln_2.weight', t([D], 0.1)).set(p + 'ln_2.bias', t([D]));
      w.set(p + 'attn.c_attn.weight', t([D, 3 * D])).set(p + 'attn.c_attn.bias', t([3 * D]));
      w.set(p + 'attn.c_proj.weight', t([D, D])).set(p + 'attn.c_proj.bias', t([D]));
      w.set(p + 'mlp.c_fc.weight', t([D, 4 * D])).set(p + 'mlp.c_fc.bias', t([4 * D]));
      w.set(p + 'mlp.c_proj.weight', t([4 * D, D])).set(p + 'mlp.c_proj.bias', t([D]));
    }
    w.set('transformer.ln_f.weight', t([D], 0.1)).set('transformer.ln_f.bias', t([D]));
    const src = path.join(tmp, 'gpt2-src');
    fs.mkdirSync(src);
    const config = { model_type: 'gpt2', architectures: ['GPT2LMHeadModel'], n_embd: D, n_layer: L, n_head: 4, n_positions: P, vocab_size: V, layer_norm_epsilon: 1e-5, activation_function: 'gelu_new' };
    fs.writeFileSync(path.join(src, 'config.json'), JSON.stringify(config));
    writeSafetensorsSync(path.join(src, 'model.safetensors'), w);

    const { model } = loadModelSync(src);
    const summary = quantizeModel(model, { weights: 'int8' });
    expect(summary.replaced).toContain('transformer.h.0.attn.c_attn');
    const out = path.join(tmp, 'gpt2-int8');
    await saveQuantized(model, summary, [], out, config);
    fs.rmSync(src, { recursive: true }); // the original weights are gone
    const re = loadModelSync(out);
    expect(re.source).toBe('quantkit');
    const toks = [3, 17, 5, 40, 2, 9];
    expect(Array.from(re.model.forward(toks, re.model.createCache()).data)).toEqual(Array.from(model.forward(toks, model.createCache()).data));
    expect(footprint(re.model)).toEqual(footprint(model));
  });
});
