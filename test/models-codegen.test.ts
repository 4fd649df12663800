/**
 * CodeGen against a float64 reference written here from the Hugging Face
 * modeling code's definition (sharing no code with lib/): the 4-shard
 * [q | v | k] qkv_proj, rotate-every-two rotary embeddings on the first
 * rotary_dim dimensions of each head (rotary_dim < head_dim here), one
 * LayerNorm feeding attention and MLP in parallel, gelu_new, an untied
 * lm_head with a bias. Also: KV-cache decoding equals the full forward,
 * quantizeModel replaces every Linear but lm_head, config errors, and a
 * CodeGen-style tokenizer.json (GPT-2 BPE plus added whitespace-run tokens)
 * that decodes code indentation exactly.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { QuantkitError } from '../lib/errors.js';
import { saveQuantized } from '../lib/io/quantized-checkpoint.js';
import { CodegenForCausalLM } from '../lib/models/codegen.js';
import { parseModelConfig } from '../lib/models/registry.js';
import { loadModel } from '../lib/models/load.js';
import { Linear, QLinear } from '../lib/nn/linear.js';
import { quantizeModel } from '../lib/nn/quantize-model.js';
import { HfTokenizer, gpt2TokenizerJson } from '../lib/tokenizers/hf.js';
import { fixture, requireFixtures } from './fixtures.js';
import { type F64, type Weights, Maker, add, expectIncrementalMatches, fullLogits, geluTanhRef, layerNormRef, linRef, mhaRef, relErr, WEIGHT_FORMATS } from './ref-models.js';
import { runCli, runCliJson } from './cli-run.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qk-codegen-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

interface Cfg {
  D: number;
  L: number;
  H: number;
  R: number; // rotary_dim
  F: number; // n_inner
  V: number;
  P: number;
  eps: number;
}
// head_dim 8 with rotary_dim 4; 8 heads, so each of the 4 qkv shards holds 2 heads
const C: Cfg = { D: 64, L: 2, H: 8, R: 4, F: 96, V: 48, P: 64, eps: 1e-5 };

const configJson = (c: Cfg) => ({
  architectures: ['CodeGenForCausalLM'],
  model_type: 'codegen',
  n_embd: c.D,
  n_layer: c.L,
  n_head: c.H,
  rotary_dim: c.R,
  n_inner: c.F,
  n_positions: c.P,
  n_ctx: c.P,
  vocab_size: c.V,
  layer_norm_epsilon: c.eps,
  activation_function: 'gelu_new',
  tie_word_embeddings: false,
  bos_token_id: 1,
  eos_token_id: 2,
});

function makeCodegen(seed: number, c: Cfg): Maker {
  const m = new Maker(seed, false);
  const { D, F } = c;
  m.add('transformer.wte.weight', [c.V, D], 0.5);
  for (let l = 0; l < c.L; l++) {
    const p = `transformer.h.${l}`;
    m.add(`${p}.ln_1.weight`, [D], 0.2, 1);
    m.add(`${p}.ln_1.bias`, [D], 0.1);
    m.add(`${p}.attn.qkv_proj.weight`, [3 * D, D], 0.3);
    m.add(`${p}.attn.out_proj.weight`, [D, D], 0.2);
    m.add(`${p}.mlp.fc_in.weight`, [F, D], 0.3);
    m.add(`${p}.mlp.fc_in.bias`, [F], 0.1);
    m.add(`${p}.mlp.fc_out.weight`, [D, F], 0.15);
    m.add(`${p}.mlp.fc_out.bias`, [D], 0.1);
  }
  m.add('transformer.ln_f.weight', [D], 0.2, 1);
  m.add('transformer.ln_f.bias', [D], 0.1);
  m.add('lm_head.weight', [c.V, D], 0.3);
  m.add('lm_head.bias', [c.V], 0.1);
  return m;
}

/** The same model with every tensor stored in bf16 (the reference keeps the stored values). */
function makeCodegenBf16(seed: number, c: Cfg): Maker {
  const m = new Maker(seed, true);
  const src = makeCodegen(seed, c);
  for (const [name, { shape }] of src.ref) m.add(name, shape, name.includes('ln_') ? 0.2 : 0.3, name.endsWith('ln_1.weight') || name.endsWith('ln_f.weight') ? 1 : 0);
  return m;
}

/**
 * HF's qkv split: the row viewed as [mp_num = 4, 3D/4], each shard split into
 * (query, value, key) of D/4; a shard's D/4 values are nH/4 heads of hd each,
 * and the shards concatenate head-wise.
 */
function splitRef(row: F64, D: number): { q: F64; k: F64; v: F64 } {
  const local = D / 4;
  const q = new Float64Array(D);
  const k = new Float64Array(D);
  const v = new Float64Array(D);
  for (let shard = 0; shard < 4; shard++) {
    const base = shard * 3 * local;
    for (let i = 0; i < local; i++) {
      q[shard * local + i] = row[base + i]!;
      v[shard * local + i] = row[base + local + i]!;
      k[shard * local + i] = row[base + 2 * local + i]!;
    }
  }
  return { q, k, v };
}

/**
 * apply_rotary_pos_emb of GPT-J/CodeGen on x[:rot] of every head at position
 * `pos`: x * cos + rotate_every_two(x) * sin, with sin/cos of
 * pos * 10000^(-2i/rot) repeated twice (interleaved).
 */
function rotaryRef(x: F64, nH: number, hd: number, rot: number, pos: number): F64 {
  const out = Float64Array.from(x);
  for (let h = 0; h < nH; h++) {
    const o = h * hd;
    for (let d = 0; d < rot; d++) {
      const i = d >> 1;
      const angle = pos * 10000 ** (-(2 * i) / rot);
      // rotate_every_two: [-x1, x0, -x3, x2, ...]
      const rotated = d % 2 === 0 ? -x[o + d + 1]! : x[o + d - 1]!;
      out[o + d] = x[o + d]! * Math.cos(angle) + rotated * Math.sin(angle);
    }
  }
  return out;
}

function codegenRef(W: Weights, c: Cfg, tokens: number[]): F64[] {
  const g = (n: string) => W.get(n)!.v;
  const { D, H, V, F } = c;
  const hd = D / H;
  let h: F64[] = tokens.map((tok) => Float64Array.from(g('transformer.wte.weight').subarray(tok * D, tok * D + D)));
  for (let l = 0; l < c.L; l++) {
    const p = `transformer.h.${l}`;
    const a = h.map((x) => layerNormRef(x, g(`${p}.ln_1.weight`), g(`${p}.ln_1.bias`), c.eps));
    const parts = a.map((x) => splitRef(linRef(x, g(`${p}.attn.qkv_proj.weight`), null, 3 * D, D), D));
    const q = parts.map((s, t) => rotaryRef(s.q, H, hd, c.R, t));
    const k = parts.map((s, t) => rotaryRef(s.k, H, hd, c.R, t));
    const o = mhaRef(q, k, parts.map((s) => s.v), H, 1 / Math.sqrt(hd));
    const attn = o.map((x) => linRef(x, g(`${p}.attn.out_proj.weight`), null, D, D));
    const mlp = a.map((x) => linRef(linRef(x, g(`${p}.mlp.fc_in.weight`), g(`${p}.mlp.fc_in.bias`), F, D).map(geluTanhRef), g(`${p}.mlp.fc_out.weight`), g(`${p}.mlp.fc_out.bias`), D, F));
    h = h.map((x, t) => add(add(attn[t]!, mlp[t]!), x));
  }
  return h.map((x) => linRef(layerNormRef(x, g('transformer.ln_f.weight'), g('transformer.ln_f.bias'), c.eps), g('lm_head.weight'), g('lm_head.bias'), V, D));
}

const TOKENS = [5, 17, 3, 40, 42, 42, 0, 31, 8, 47];

describe('CodeGen', () => {
  it('matches the float64 reference and decodes incrementally', async () => {
    const m = makeCodegen(3, C);
    const dir = m.write(path.join(tmp, 'codegen'), configJson(C));
    const { model, source } = await loadModel(dir);
    expect(source).toBe('hf');
    expect(model).toBeInstanceOf(CodegenForCausalLM);
    const y = fullLogits(model, TOKENS);
    expect(relErr(y, codegenRef(m.ref, C, TOKENS))).toBeLessThan(1e-5);
    expectIncrementalMatches(model, TOKENS, y);
    // the async forward gives the same logits, bit for bit
    expect((await model.forwardAsync(TOKENS, model.createCache())).data).toEqual(y);
  });

  it('rotary_dim null rotates whole heads; bare h.* names load too', async () => {
    const c = { ...C, R: C.D / C.H };
    const m = makeCodegen(4, c);
    const json = { ...configJson(c), rotary_dim: null };
    const dir = m.write(path.join(tmp, 'codegen-full-rot'), json, (n) => n.replace(/^transformer\./, ''));
    const { model } = await loadModel(dir);
    expect(relErr(fullLogits(model, TOKENS), codegenRef(m.ref, c, TOKENS))).toBeLessThan(1e-5);
  });

  it('quantizeModel replaces every Linear but lm_head, and int8 stays close', async () => {
    const m = makeCodegen(5, C);
    const { model } = await loadModel(m.write(path.join(tmp, 'codegen-q'), configJson(C)));
    const ref = codegenRef(m.ref, C, TOKENS);
    const s = quantizeModel(model, { weights: 'int8' });
    const want = [];
    for (let l = 0; l < C.L; l++) want.push(...['attn.qkv_proj', 'attn.out_proj', 'mlp.fc_in', 'mlp.fc_out'].map((n) => `transformer.h.${l}.${n}`));
    expect(s.replaced).toEqual(want);
    expect(s.kept).toEqual(['lm_head']);
    expect(model.child('lm_head')).toBeInstanceOf(Linear);
    expect(model.child('transformer')!.child('h')!.child('0')!.child('attn')!.child('qkv_proj')).toBeInstanceOf(QLinear);
    const yq = fullLogits(model, TOKENS);
    expect(relErr(yq, ref)).toBeLessThan(0.05);
    // a saved checkpoint reloads bit-identically, without the float weights
    const out = path.join(tmp, 'codegen-int8');
    await saveQuantized(model, s, [], out, configJson(C));
    const re = await loadModel(out);
    expect(re.source).toBe('quantkit');
    expect(fullLogits(re.model, TOKENS)).toEqual(yq);
  });

  it('bf16 weights in sharded safetensors; every weight format, sync and async', async () => {
    const m = makeCodegenBf16(6, C);
    const dir = m.writeSharded(path.join(tmp, 'codegen-bf16'), configJson(C));
    const ref = codegenRef(m.ref, C, TOKENS);
    for (const [name, q, tol] of WEIGHT_FORMATS) {
      const { model } = await loadModel(dir);
      if (q) quantizeModel(model, q);
      const y = fullLogits(model, TOKENS);
      expect(relErr(y, ref), name).toBeLessThan(tol);
      expect((await model.forwardAsync(TOKENS, model.createCache())).data, name).toEqual(y);
    }
  });

  it('through the CLI: inspect and quantize a CodeGen folder', async () => {
    const m = makeCodegen(7, C);
    const dir = m.write(path.join(tmp, 'codegen-cli'), configJson(C));
    const r = await runCli(['inspect', dir, '--weights', 'int4']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain('(0-1): 2 x CodegenBlock(');
    expect(r.out).toContain('(qkv_proj): QLinear(in=64, out=192, int4 asym g32)');
    const q = path.join(tmp, 'codegen-cli-int4');
    await runCliJson(['quantize', dir, '--out', q, '--weights', 'int4']);
    const { model: re, source } = await loadModel(q);
    expect(source).toBe('quantkit');
    const { model } = await loadModel(dir);
    quantizeModel(model, { weights: 'int4' });
    expect(fullLogits(re, TOKENS)).toEqual(fullLogits(model, TOKENS));
  });

  it('refuses configs it cannot run, naming the field', () => {
    const bad = (patch: object) => () => parseModelConfig({ ...configJson(C), ...patch });
    expect(bad({ n_head: 6, n_embd: 48 })).toThrow(/'n_head' \(6\) must be divisible by 4/);
    expect(bad({ rotary_dim: 16 })).toThrow(/'rotary_dim' \(16\) must be even and at most the head size 8/);
    expect(bad({ rotary_dim: 3 })).toThrow(QuantkitError);
    expect(bad({ n_embd: 60 })).toThrow(/'n_embd' \(60\) must be divisible by 'n_head' \(8\)/);
  });
});

const haveTok = requireFixtures('gpt2-tokenizer/vocab.json', 'gpt2-tokenizer/merges.txt');
describe.skipIf(!haveTok)('CodeGen tokenizer.json (GPT-2 BPE + whitespace-run tokens)', () => {
  it('encodes indentation runs as single tokens and decodes code exactly', () => {
    const vocab = JSON.parse(fs.readFileSync(fixture('gpt2-tokenizer', 'vocab.json'), 'utf8')) as Record<string, number>;
    const merges = fs
      .readFileSync(fixture('gpt2-tokenizer', 'merges.txt'), 'utf8')
      .split('\n')
      .filter((l) => l && !l.startsWith('#version'))
      .map((l) => l.split(' ') as [string, string]);
    const json = gpt2TokenizerJson(vocab, merges) as { added_tokens: object[] };
    // CodeGen appends runs of spaces (and tabs) after <|endoftext|> as added, non-special tokens
    let id = 50257;
    const runs: string[] = [];
    for (let n = 31; n >= 2; n--) runs.push(' '.repeat(n));
    for (let n = 9; n >= 2; n--) runs.push('\t'.repeat(n));
    for (const content of runs) json.added_tokens.push({ id: id++, content, single_word: false, lstrip: false, rstrip: false, normalized: true, special: false });
    const tok = new HfTokenizer(json as never, { bos_token: '<|endoftext|>', eos_token: '<|endoftext|>' });
    const code = 'def hello_world():\n    print("Hello, world!")\n\n\tif x:\n\t\t\treturn  1 \n        pass\n';
    const ids = tok.encode(code);
    expect(tok.decode(ids)).toBe(code);
    expect(ids.some((i) => i >= 50257)).toBe(true); // the indentation used an added token
    // streamed, too
    const s = tok.decodeStream();
    expect(ids.map((i) => s.push(i)).join('') + s.flush()).toBe(code);
  });
});
