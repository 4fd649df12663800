/**
 * GPT-2 and OPT: tiny random-weight models written in HF layout (config.json +
 * model.safetensors), loaded with loadModel and compared with float64
 * reference forwards written here from the HF modeling code's semantics
 * (sharing no code with lib/): full-sequence logits, KV-cache incremental
 * decoding, bf16 weights, and the config/weight errors.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { QuantkitError } from '../lib/errors.js';
import { QLinear } from '../lib/nn/linear.js';
import { Linear } from '../lib/nn/linear.js';
import { type ModelConfig, detectArch, parseModelConfig } from '../lib/models/registry.js';
import { buildModel, loadModel } from '../lib/models/load.js';
import { Tensor } from '../lib/tensor.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qk-models-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

import { type F64, type Weights, Maker, add, conv1dRef, expectIncrementalMatches, fullLogits, geluTanhRef, layerNormRef, linRef, mhaRef, relErr, reluRef } from './ref-models.js';


interface Gpt2Cfg {
  D: number;
  L: number;
  H: number;
  V: number;
  P: number;
  eps: number;
}
function gpt2Ref(W: Weights, c: Gpt2Cfg, tokens: number[]): F64[] {
  const g = (n: string) => W.get(n)!.v;
  const { D, H, V } = c;
  const F = 4 * D;
  let h: F64[] = tokens.map((tok, t) => add(g('transformer.wte.weight').subarray(tok * D, tok * D + D), g('transformer.wpe.weight').subarray(t * D, t * D + D)));
  for (let l = 0; l < c.L; l++) {
    const p = `transformer.h.${l}`;
    const a = h.map((x) => layerNormRef(x, g(`${p}.ln_1.weight`), g(`${p}.ln_1.bias`), c.eps));
    const qkv = a.map((x) => conv1dRef(x, g(`${p}.attn.c_attn.weight`), g(`${p}.attn.c_attn.bias`), D, 3 * D));
    const o = mhaRef(
      qkv.map((r) => r.slice(0, D)),
      qkv.map((r) => r.slice(D, 2 * D)),
      qkv.map((r) => r.slice(2 * D)),
      H,
      1 / Math.sqrt(D / H),
    );
    h = h.map((x, t) => add(x, conv1dRef(o[t]!, g(`${p}.attn.c_proj.weight`), g(`${p}.attn.c_proj.bias`), D, D)));
    const m = h.map((x) => layerNormRef(x, g(`${p}.ln_2.weight`), g(`${p}.ln_2.bias`), c.eps));
    const f = m.map((x) => conv1dRef(x, g(`${p}.mlp.c_fc.weight`), g(`${p}.mlp.c_fc.bias`), D, F).map(geluTanhRef));
    h = h.map((x, t) => add(x, conv1dRef(f[t]!, g(`${p}.mlp.c_proj.weight`), g(`${p}.mlp.c_proj.bias`), F, D)));
  }
  return h.map((x) => linRef(layerNormRef(x, g('transformer.ln_f.weight'), g('transformer.ln_f.bias'), c.eps), g('transformer.wte.weight'), null, V, D));
}

function makeGpt2(seed: number, bf16: boolean, c: Gpt2Cfg): Maker {
  const m = new Maker(seed, bf16);
  const { D } = c;
  m.add('transformer.wte.weight', [c.V, D], 0.5);
  m.add('transformer.wpe.weight', [c.P, D], 0.2);
  for (let l = 0; l < c.L; l++) {
    const p = `transformer.h.${l}`;
    m.add(`${p}.ln_1.weight`, [D], 0.2, 1);
    m.add(`${p}.ln_1.bias`, [D], 0.1);
    m.add(`${p}.attn.c_attn.weight`, [D, 3 * D], 0.3);
    m.add(`${p}.attn.c_attn.bias`, [3 * D], 0.1);
    m.add(`${p}.attn.c_proj.weight`, [D, D], 0.2);
    m.add(`${p}.attn.c_proj.bias`, [D], 0.1);
    m.add(`${p}.ln_2.weight`, [D], 0.2, 1);
    m.add(`${p}.ln_2.bias`, [D], 0.1);
    m.add(`${p}.mlp.c_fc.weight`, [D, 4 * D], 0.3);
    m.add(`${p}.mlp.c_fc.bias`, [4 * D], 0.1);
    m.add(`${p}.mlp.c_proj.weight`, [4 * D, D], 0.15);
    m.add(`${p}.mlp.c_proj.bias`, [D], 0.1);
  }
  m.add('transformer.ln_f.weight', [D], 0.2, 1);
  m.add('transformer.ln_f.bias', [D], 0.1);
  return m;
}
const gpt2Json = (c: Gpt2Cfg) => ({
  architectures: ['GPT2LMHeadModel'],
  model_type: 'gpt2',
  n_embd: c.D,
  n_layer: c.L,
  n_head: c.H,
  n_positions: c.P,
  vocab_size: c.V,
  layer_norm_epsilon: c.eps,
  activation_function: 'gelu_new',
});

interface OptCfg {
  D: number;
  L: number;
  H: number;
  F: number;
  V: number;
  P: number;
  E: number;
  pre: boolean;
}
function optRef(W: Weights, c: OptCfg, tokens: number[]): F64[] {
  const g = (n: string) => W.get(n)!.v;
  const { D, E, H, F, V } = c;
  const pd = 'model.decoder';
  const ln = (x: F64, n: string) => layerNormRef(x, g(`${n}.weight`), g(`${n}.bias`), 1e-5);
  let h: F64[] = tokens.map((tok, t) => {
    let e: F64 = g(`${pd}.embed_tokens.weight`).slice(tok * E, tok * E + E);
    if (E !== D) e = linRef(e, g(`${pd}.project_in.weight`), null, D, E);
    return add(e, g(`${pd}.embed_positions.weight`).subarray((t + 2) * D, (t + 3) * D)); // positions offset by 2
  });
  for (let l = 0; l < c.L; l++) {
    const p = `${pd}.layers.${l}`;
    const lin = (x: F64, n: string, N: number, K: number) => linRef(x, g(`${p}.${n}.weight`), g(`${p}.${n}.bias`), N, K);
    const attnIn = c.pre ? h.map((x) => ln(x, `${p}.self_attn_layer_norm`)) : h;
    const s = (D / H) ** -0.5;
    const q = attnIn.map((x) => lin(x, 'self_attn.q_proj', D, D).map((v) => v * s));
    const k = attnIn.map((x) => lin(x, 'self_attn.k_proj', D, D));
    const v = attnIn.map((x) => lin(x, 'self_attn.v_proj', D, D));
    const o = mhaRef(q, k, v, H, 1).map((x) => lin(x, 'self_attn.out_proj', D, D));
    h = h.map((x, t) => add(x, o[t]!));
    if (!c.pre) h = h.map((x) => ln(x, `${p}.self_attn_layer_norm`));
    const ffIn = c.pre ? h.map((x) => ln(x, `${p}.final_layer_norm`)) : h;
    const f = ffIn.map((x) => lin(lin(x, 'fc1', F, D).map(reluRef), 'fc2', D, F));
    h = h.map((x, t) => add(x, f[t]!));
    if (!c.pre) h = h.map((x) => ln(x, `${p}.final_layer_norm`));
  }
  if (c.pre) h = h.map((x) => ln(x, `${pd}.final_layer_norm`));
  if (E !== D) h = h.map((x) => linRef(x, g(`${pd}.project_out.weight`), null, E, D));
  return h.map((x) => linRef(x, g(`${pd}.embed_tokens.weight`), null, V, E));
}

function makeOpt(seed: number, bf16: boolean, c: OptCfg): Maker {
  const m = new Maker(seed, bf16);
  const { D, E, F } = c;
  const pd = 'model.decoder';
  m.add(`${pd}.embed_tokens.weight`, [c.V, E], 0.5);
  m.add(`${pd}.embed_positions.weight`, [c.P + 2, D], 0.2);
  if (E !== D) {
    m.add(`${pd}.project_in.weight`, [D, E], 0.3);
    m.add(`${pd}.project_out.weight`, [E, D], 0.3);
  }
  for (let l = 0; l < c.L; l++) {
    const p = `${pd}.layers.${l}`;
    for (const n of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) {
      m.add(`${p}.self_attn.${n}.weight`, [D, D], 0.3);
      m.add(`${p}.self_attn.${n}.bias`, [D], 0.1);
    }
    for (const n of ['self_attn_layer_norm', 'final_layer_norm']) {
      m.add(`${p}.${n}.weight`, [D], 0.2, 1);
      m.add(`${p}.${n}.bias`, [D], 0.1);
    }
    m.add(`${p}.fc1.weight`, [F, D], 0.3);
    m.add(`${p}.fc1.bias`, [F], 0.1);
    m.add(`${p}.fc2.weight`, [D, F], 0.2);
    m.add(`${p}.fc2.bias`, [D], 0.1);
  }
  if (c.pre) {
    m.add(`${pd}.final_layer_norm.weight`, [D], 0.2, 1);
    m.add(`${pd}.final_layer_norm.bias`, [D], 0.1);
  }
  return m;
}
const optJson = (c: OptCfg) => ({
  architectures: ['OPTForCausalLM'],
  model_type: 'opt',
  hidden_size: c.D,
  num_hidden_layers: c.L,
  num_attention_heads: c.H,
  ffn_dim: c.F,
  max_position_embeddings: c.P,
  vocab_size: c.V,
  word_embed_proj_dim: c.E,
  do_layer_norm_before: c.pre,
  activation_function: 'relu',
  enable_bias: true,
  tie_word_embeddings: true,
});

// ------------------------------------------------------------ comparisons

const TOKENS = [5, 17, 3, 60, 42, 42, 0, 31, 8, 63];

const G: Gpt2Cfg = { D: 32, L: 2, H: 4, V: 64, P: 64, eps: 1e-5 };

describe('GPT-2', () => {
  it('matches the float64 reference (f32 weights, bare h.* names) and decodes incrementally', async () => {
    const m = makeGpt2(1, false, G);
    const dir = m.write(path.join(tmp, 'gpt2-f32'), gpt2Json(G), (n) => n.replace(/^transformer\./, ''));
    const { model, source } = await loadModel(dir);
    expect(source).toBe('hf');
    const y = fullLogits(model, TOKENS);
    const err = relErr(y, gpt2Ref(m.ref, G, TOKENS));
    expect(err).toBeLessThan(1e-4);
    expectIncrementalMatches(model, TOKENS, y);
  });

  it('bf16 weights stay bf16 and match the reference on the bf16 values', async () => {
    const m = makeGpt2(2, true, G);
    const dir = m.write(path.join(tmp, 'gpt2-bf16'), gpt2Json(G));
    const { model } = await loadModel(dir);
    const cAttn = model.child('transformer')!.child('h')!.child('0')!.child('attn')!.child('c_attn') as Linear;
    expect(cAttn.weight.dtype).toBe('bf16');
    expect(cAttn.weight.shape).toEqual([3 * G.D, G.D]); // Conv1D transposed to [out, in]
    const ref = gpt2Ref(m.ref, G, TOKENS);
    const y = fullLogits(model, TOKENS);
    expect(relErr(y, ref)).toBeLessThan(1e-4);
    expectIncrementalMatches(model, TOKENS, y);
    // dtype 'f32' widens the Linear weights: same numbers
    const { model: m32 } = await loadModel(dir, { dtype: 'f32' });
    expect((m32.child('transformer')!.child('h')!.child('0')!.child('attn')!.child('c_attn') as Linear).weight.dtype).toBe('f32');
    expect(relErr(fullLogits(m32, TOKENS), ref)).toBeLessThan(1e-4);
  });

  it('has HF module names and a tied lm_head sharing the embedding tensor', async () => {
    const { model } = await loadModel(path.join(tmp, 'gpt2-f32'));
    const names = [...model.namedModules()].map(([n]) => n);
    for (const n of ['transformer.wte', 'transformer.wpe', 'transformer.h.1.ln_1', 'transformer.h.1.attn.c_attn', 'transformer.h.1.attn.c_proj', 'transformer.h.0.ln_2', 'transformer.h.0.mlp.c_fc', 'transformer.h.0.mlp.c_proj', 'transformer.ln_f', 'lm_head']) {
      expect(names).toContain(n);
    }
    const wte = [...model.namedTensors()].find(([n]) => n === 'transformer.wte.weight')![1];
    expect((model.child('lm_head') as Linear).weight).toBe(wte);
  });

  it("rebuilds from its own module tensors with layout 'linear' (as a quantkit checkpoint stores them)", async () => {
    const { model } = await loadModel(path.join(tmp, 'gpt2-f32'));
    const tensors = new Map([...model.namedTensors()] as [string, Tensor][]);
    expect(tensors.get('transformer.h.0.mlp.c_fc.weight')!.shape).toEqual([4 * G.D, G.D]);
    const again = buildModel(model.config as ModelConfig, { has: (n) => tensors.has(n), get: (n) => tensors.get(n)! }, 'memory', { layout: 'linear' });
    expect(Array.from(fullLogits(again, TOKENS))).toEqual(Array.from(fullLogits(model, TOKENS)));
  });

  it('positions beyond n_positions and out-of-vocab tokens are RangeErrors', async () => {
    const { model } = await loadModel(path.join(tmp, 'gpt2-f32'));
    expect(() => model.forward([64], model.createCache())).toThrow(RangeError);
    const cache = model.createCache(100);
    expect(() => model.forward(new Array(65).fill(1), cache)).toThrow(/learned positions/);
    expect(cache.length).toBe(0);
    // bad forward options name the argument and leave the cache alone
    expect(() => model.forward([1, 2], cache, { logits: 'first' as 'last' })).toThrow(/options\.logits.*'all' or 'last'/);
    expect(() => model.forward([1, 2], cache, 7 as unknown as { logits: 'last' })).toThrow(TypeError);
    expect(cache.length).toBe(0);
  });
});

const OPT_CASES: [string, OptCfg, boolean, (n: string) => string][] = [
  ['pre-LayerNorm, f32, decoder.* names', { D: 32, L: 2, H: 4, F: 64, V: 64, P: 64, E: 32, pre: true }, false, (n) => n.replace(/^model\./, '')],
  ['post-LayerNorm with project_in/project_out (opt-350m shape)', { D: 48, L: 2, H: 4, F: 96, V: 64, P: 64, E: 32, pre: false }, false, (n) => n],
  ['pre-LayerNorm with project_in/out, bf16', { D: 32, L: 2, H: 2, F: 64, V: 64, P: 64, E: 24, pre: true }, true, (n) => n],
];

describe('OPT', () => {
  OPT_CASES.forEach(([label, c, bf16, rename], i) => {
    it(`${label}: matches the float64 reference and decodes incrementally`, async () => {
      const m = makeOpt(10 + i, bf16, c);
      const dir = m.write(path.join(tmp, `opt-${i}`), optJson(c), rename);
      const { model } = await loadModel(dir);
      const names = [...model.namedModules()].map(([n]) => n);
      for (const n of ['model.decoder.embed_tokens', 'model.decoder.embed_positions', 'model.decoder.layers.1.self_attn.out_proj', 'model.decoder.layers.0.fc1', 'model.decoder.layers.0.self_attn_layer_norm', 'lm_head']) {
        expect(names).toContain(n);
      }
      expect(names.includes('model.decoder.project_in')).toBe(c.E !== c.D);
      expect(names.includes('model.decoder.final_layer_norm')).toBe(c.pre);
      if (bf16) expect((model.child('lm_head') as Linear).weight.dtype).toBe('bf16');
      const y = fullLogits(model, TOKENS);
      expect(relErr(y, optRef(m.ref, c, TOKENS))).toBeLessThan(1e-4);
      expectIncrementalMatches(model, TOKENS, y);
    });
  });

  it('replacing Linear children by QLinear (as quantizeModel does) takes effect', async () => {
    const { model } = await loadModel(path.join(tmp, 'opt-0'));
    const before = fullLogits(model, TOKENS);
    const linears = [...model.namedModules()].filter(([, m]) => m instanceof Linear);
    expect(linears.length).toBe(2 * 6 + 1);
    for (const [name, lin] of linears) {
      const dot = name.lastIndexOf('.');
      const parent = dot < 0 ? model : [...model.namedModules()].find(([n]) => n === name.slice(0, dot))![1];
      parent.replaceChild(name.slice(dot + 1), QLinear.fromLinear(lin as Linear));
    }
    expect([...model.namedModules()].filter(([, m]) => m instanceof QLinear).length).toBe(13);
    const after = fullLogits(model, TOKENS);
    let diff = 0;
    for (let i = 0; i < after.length; i++) diff = Math.max(diff, Math.abs(after[i]! - before[i]!));
    expect(diff).toBeGreaterThan(0); // the int8 weights are really used
    expect(diff).toBeLessThan(0.1 * Math.max(...before.map(Math.abs)));
    // the embedding stays float even though the tied lm_head is now quantized
    expect((model.child('model')!.child('decoder')!.child('embed_tokens') as unknown as { weight: Tensor }).weight.dtype).toBe('f32');
  });
});

describe('bad input', () => {
  const writeGpt2 = (name: string, edit: (cfg: Record<string, unknown>) => void, dropWeight?: string) => {
    const m = makeGpt2(3, false, G);
    if (dropWeight) m.file.delete(dropWeight);
    const cfg: Record<string, unknown> = gpt2Json(G);
    edit(cfg);
    return m.write(path.join(tmp, name), cfg);
  };
  async function codeOf(p: Promise<unknown>): Promise<QuantkitError> {
    try {
      await p;
    } catch (err) {
      expect(err).toBeInstanceOf(QuantkitError);
      return err as QuantkitError;
    }
    throw new Error('expected a QuantkitError');
  }

  it('a config missing a required field is ERR_BAD_CONFIG naming the file and field', async () => {
    const dir = writeGpt2('bad-missing', (c) => delete c.n_embd);
    const err = await codeOf(loadModel(dir));
    expect(err.code).toBe('ERR_BAD_CONFIG');
    expect(err.message).toContain(path.join(dir, 'config.json'));
    expect(err.message).toContain("'n_embd'");
    const opt = optJson(OPT_CASES[0]![1]) as Record<string, unknown>;
    delete opt.ffn_dim;
    fs.mkdirSync(path.join(tmp, 'bad-opt'));
    fs.writeFileSync(path.join(tmp, 'bad-opt', 'config.json'), JSON.stringify(opt));
    const e2 = await codeOf(loadModel(path.join(tmp, 'bad-opt')));
    expect(e2.code).toBe('ERR_BAD_CONFIG');
    expect(e2.message).toContain("'ffn_dim'");
  });

  it('a wrongly typed field is ERR_BAD_CONFIG', async () => {
    const err = await codeOf(loadModel(writeGpt2('bad-type', (c) => (c.n_head = 'four'))));
    expect(err.code).toBe('ERR_BAD_CONFIG');
    expect(err.message).toContain("'n_head'");
  });

  it('an unknown architecture is ERR_BAD_CONFIG naming it', async () => {
    const err = await codeOf(loadModel(writeGpt2('bad-arch', (c) => ((c.model_type = 'falcon'), (c.architectures = ['FalconForCausalLM'])))));
    expect(err.code).toBe('ERR_BAD_CONFIG');
    expect(err.message).toContain("'falcon'");
    const e2 = await codeOf(loadModel(writeGpt2('bad-arch2', (c) => ((c.model_type = undefined), (c.architectures = ['MambaForCausalLM'])))));
    expect(e2.code).toBe('ERR_BAD_CONFIG');
    expect(e2.message).toContain('MambaForCausalLM');
  });

  it('a missing weight is ERR_NOT_FOUND naming the tensor and the file', async () => {
    const dir = writeGpt2('bad-weight', () => {}, 'transformer.h.1.mlp.c_fc.bias');
    const err = await codeOf(loadModel(dir));
    expect(err.code).toBe('ERR_NOT_FOUND');
    expect(err.message).toContain('transformer.h.1.mlp.c_fc.bias');
    expect(err.message).toContain(path.join(dir, 'model.safetensors'));
  });

  it('a weight of the wrong shape is ERR_BAD_FILE', async () => {
    const dir = writeGpt2('bad-shape', (c) => (c.n_positions = 32));
    const err = await codeOf(loadModel(dir));
    expect(err.code).toBe('ERR_BAD_FILE');
    expect(err.message).toContain('wpe.weight');
  });

  it('missing paths, missing config.json and invalid JSON have codes', async () => {
    expect((await codeOf(loadModel(path.join(tmp, 'nope')))).code).toBe('ERR_NOT_FOUND');
    fs.mkdirSync(path.join(tmp, 'empty'));
    expect((await codeOf(loadModel(path.join(tmp, 'empty')))).code).toBe('ERR_NOT_FOUND');
    fs.writeFileSync(path.join(tmp, 'empty', 'config.json'), '{"model_type": "gpt2",');
    expect((await codeOf(loadModel(path.join(tmp, 'empty')))).code).toBe('ERR_BAD_CONFIG');
    fs.writeFileSync(path.join(tmp, 'junk.bin'), Buffer.alloc(10));
    expect((await codeOf(loadModel(path.join(tmp, 'junk.bin')))).code).toBe('ERR_BAD_FILE');
  });

  it('an unsupported activation is ERR_UNSUPPORTED', async () => {
    const err = await codeOf(loadModel(writeGpt2('bad-act', (c) => (c.activation_function = 'mish'))));
    expect(err.code).toBe('ERR_UNSUPPORTED');
    expect(err.message).toContain('mish');
  });
});

describe('config parsing', () => {
  const llama = { model_type: 'llama', hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, vocab_size: 100 };

  it('fills HF defaults and detects the architecture from model_type or architectures', () => {
    const c = parseModelConfig(llama, 'x/config.json');
    expect(c).toMatchObject({ arch: 'llama', numKvHeads: 4, headDim: 16, rmsNormEps: 1e-6, ropeTheta: 10000, tieWordEmbeddings: false, maxPositions: 2048, ropeScaling: null });
    expect(detectArch({ architectures: ['OPTForCausalLM'] })).toBe('opt');
    expect(detectArch({ architectures: ['GPT2LMHeadModel'] })).toBe('gpt2');
    const g = parseModelConfig({ model_type: 'gpt2', n_embd: 32, n_layer: 1, n_head: 4, n_positions: 16, vocab_size: 10, n_inner: null });
    expect(g).toMatchObject({ nInner: 128, layerNormEps: 1e-5, activation: 'gelu_new', tieWordEmbeddings: true });
    const o = parseModelConfig({ model_type: 'opt', hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 4, ffn_dim: 64, vocab_size: 10, max_position_embeddings: 16, do_layer_norm_before: false });
    expect(o).toMatchObject({ wordEmbedProjDim: 32, doLayerNormBefore: false, hasFinalLayerNorm: false, activation: 'relu', enableBias: true });
  });

  it('reads rope_scaling (linear, llama3) and refuses other kinds', () => {
    expect(parseModelConfig({ ...llama, rope_scaling: { type: 'linear', factor: 2 } })).toMatchObject({ ropeScaling: { type: 'linear', factor: 2 } });
    const l3 = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };
    expect(parseModelConfig({ ...llama, rope_scaling: l3 })).toMatchObject({ ropeScaling: { type: 'llama3', factor: 8, originalMaxPositions: 8192 } });
    expect(() => parseModelConfig({ ...llama, rope_scaling: { rope_type: 'yarn', factor: 4 } })).toThrow(expect.objectContaining({ code: 'ERR_UNSUPPORTED' }));
    expect(() => parseModelConfig({ ...llama, rope_scaling: { rope_type: 'llama3', factor: 8 } }, 'c.json')).toThrow(/c\.json.*'low_freq_factor'/);
  });

  it('rejects inconsistent or malformed configs with ERR_BAD_CONFIG', () => {
    const bad = (cfg: unknown, re: RegExp) => expect(() => parseModelConfig(cfg, 'm/config.json')).toThrow(expect.objectContaining({ code: 'ERR_BAD_CONFIG', message: expect.stringMatching(re) }));
    bad({ ...llama, num_key_value_heads: 3 }, /num_attention_heads/);
    bad({ ...llama, hidden_size: 66 }, /hidden_size/);
    bad({ ...llama, vocab_size: -1 }, /'vocab_size'/);
    bad({ ...llama, tie_word_embeddings: 'yes' }, /'tie_word_embeddings'/);
    bad({}, /neither 'model_type' nor 'architectures'/);
    bad([], /JSON object/);
    bad({ model_type: 7 }, /unknown architecture/);
  });
});
