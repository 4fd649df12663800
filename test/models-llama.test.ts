/**
 * Llama on the real stories260K checkpoint, in both layouts (llama2.c .bin and
 * the HF folder). The reference is an independent float64 port of llama2.c's
 * run.c transformer() written here (own .bin parser, interleaved RoPE, GQA,
 * SwiGLU, tied classifier; nothing shared with lib/): greedy decoding from BOS
 * must agree token for token, and the two loaders' logits within 1e-5.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QuantkitError } from '../lib/errors.js';
import { readSafetensors, writeSafetensorsSync } from '../lib/io/safetensors.js';
import type { CausalLM } from '../lib/models/causal-lm.js';
import { loadModel } from '../lib/models/load.js';
import { Linear, QLinear } from '../lib/nn/linear.js';
import type { Module } from '../lib/nn/module.js';
import type { Tokenizer } from '../lib/tokenizers/types.js';
import { fixture, requireFixtures } from './fixtures.js';
import { f16BitsToNumber, rng, toF16Bits } from './helpers.js';
import { Tensor } from '../lib/tensor.js';

const FILES = ['stories260K/stories260K.bin', 'stories260K/tok512.bin', 'stories260K/config.json', 'stories260K/model.safetensors'];
const present = requireFixtures(...FILES);
const GREEDY_STEPS = 256;
const EXPECTED_TEXT = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park.';

// ---------------------------------------------------------------- float64 run.c port

interface RefModel {
  dim: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  vocab: number;
  seqLen: number;
  emb: Float64Array;
  rmsAtt: Float64Array;
  wq: Float64Array;
  wk: Float64Array;
  wv: Float64Array;
  wo: Float64Array;
  rmsFfn: Float64Array;
  w1: Float64Array;
  w2: Float64Array;
  w3: Float64Array;
  rmsFinal: Float64Array;
  wcls: Float64Array;
}

/** run.c's checkpoint layout: 7 int32 header, then fp32 arrays in a fixed order. */
function readRef(file: string): RefModel {
  const buf = fs.readFileSync(file);
  const [dim, hidden, layers, heads, kvHeads, vocabRaw, seqLen] = [0, 1, 2, 3, 4, 5, 6].map((i) => buf.readInt32LE(4 * i)) as number[];
  const f = new Float32Array(buf.buffer.slice(buf.byteOffset + 28, buf.byteOffset + buf.length));
  const vocab = Math.abs(vocabRaw!);
  const hs = dim! / heads!;
  const kvDim = (dim! * kvHeads!) / heads!;
  let off = 0;
  const take = (n: number) => {
    const a = Float64Array.from(f.subarray(off, off + n));
    off += n;
    return a;
  };
  const L = layers!;
  const m: Partial<RefModel> = { dim, hidden, layers, heads, kvHeads, vocab, seqLen };
  m.emb = take(vocab * dim!);
  m.rmsAtt = take(L * dim!);
  m.wq = take(L * dim! * dim!);
  m.wk = take(L * dim! * kvDim);
  m.wv = take(L * dim! * kvDim);
  m.wo = take(L * dim! * dim!);
  m.rmsFfn = take(L * dim!);
  m.w1 = take(L * dim! * hidden!);
  m.w2 = take(L * hidden! * dim!);
  m.w3 = take(L * dim! * hidden!);
  m.rmsFinal = take(dim!);
  off += seqLen! * hs; // freq_cis_real + freq_cis_imag (seq_len * head_size / 2 each)
  m.wcls = vocabRaw! > 0 ? m.emb : take(vocab * dim!);
  return m as RefModel;
}

class RefRunner {
  readonly kc: Float64Array;
  readonly vc: Float64Array;
  constructor(
    readonly m: RefModel,
    readonly theta = 10000,
  ) {
    const kvDim = (m.dim * m.kvHeads) / m.heads;
    this.kc = new Float64Array(m.layers * m.seqLen * kvDim);
    this.vc = new Float64Array(m.layers * m.seqLen * kvDim);
  }

  static rmsnorm(x: Float64Array, w: Float64Array): Float64Array {
    let ss = 0;
    for (const v of x) ss += v * v;
    const s = 1 / Math.sqrt(ss / x.length + 1e-5);
    return x.map((v, i) => w[i]! * (s * v));
  }
  /** xout (d) = W (d, n) @ x (n), W a slice of `w` starting at `off`. */
  static matmul(x: Float64Array, w: Float64Array, off: number, n: number, d: number): Float64Array {
    const out = new Float64Array(d);
    for (let i = 0; i < d; i++) {
      let v = 0;
      for (let j = 0; j < n; j++) v += w[off + i * n + j]! * x[j]!;
      out[i] = v;
    }
    return out;
  }

  /** run.c transformer(token, pos): logits for one position. */
  step(token: number, pos: number): Float64Array {
    const { dim, hidden, heads, kvHeads, seqLen } = this.m;
    const hs = dim / heads;
    const kvDim = (dim * kvHeads) / heads;
    const kvMul = heads / kvHeads;
    const mm = RefRunner.matmul;
    let x: Float64Array<ArrayBufferLike> = this.m.emb.slice(token * dim, (token + 1) * dim);
    for (let l = 0; l < this.m.layers; l++) {
      const xb = RefRunner.rmsnorm(x, this.m.rmsAtt.subarray(l * dim, (l + 1) * dim));
      const q = mm(xb, this.m.wq, l * dim * dim, dim, dim);
      const k = mm(xb, this.m.wk, l * dim * kvDim, dim, kvDim);
      const v = mm(xb, this.m.wv, l * dim * kvDim, dim, kvDim);
      // RoPE on interleaved pairs (i, i + 1), as run.c does
      for (let i = 0; i < dim; i += 2) {
        const headDim = i % hs;
        const freq = 1 / this.theta ** (headDim / hs);
        const val = pos * freq;
        const fcr = Math.cos(val);
        const fci = Math.sin(val);
        for (const vec of i < kvDim ? [q, k] : [q]) {
          const v0 = vec[i]!;
          const v1 = vec[i + 1]!;
          vec[i] = v0 * fcr - v1 * fci;
          vec[i + 1] = v0 * fci + v1 * fcr;
        }
      }
      const loff = l * seqLen * kvDim;
      this.kc.set(k, loff + pos * kvDim);
      this.vc.set(v, loff + pos * kvDim);
      const att = new Float64Array(dim);
      for (let h = 0; h < heads; h++) {
        const scores = new Float64Array(pos + 1);
        const kh = Math.floor(h / kvMul) * hs;
        for (let t = 0; t <= pos; t++) {
          let s = 0;
          for (let i = 0; i < hs; i++) s += q[h * hs + i]! * this.kc[loff + t * kvDim + kh + i]!;
          scores[t] = s / Math.sqrt(hs);
        }
        const max = Math.max(...scores);
        let sum = 0;
        for (let t = 0; t <= pos; t++) sum += scores[t] = Math.exp(scores[t]! - max);
        for (let t = 0; t <= pos; t++) {
          const a = scores[t]! / sum;
          for (let i = 0; i < hs; i++) att[h * hs + i]! += a * this.vc[loff + t * kvDim + kh + i]!;
        }
      }
      const o = mm(att, this.m.wo, l * dim * dim, dim, dim);
      x = x.map((v, i) => v + o[i]!);
      const xb2 = RefRunner.rmsnorm(x, this.m.rmsFfn.subarray(l * dim, (l + 1) * dim));
      const h1 = mm(xb2, this.m.w1, l * dim * hidden, dim, hidden);
      const h3 = mm(xb2, this.m.w3, l * dim * hidden, dim, hidden);
      const hb = h1.map((v, i) => (v / (1 + Math.exp(-v))) * h3[i]!);
      const down = mm(hb, this.m.w2, l * hidden * dim, hidden, dim);
      x = x.map((v, i) => v + down[i]!);
    }
    x = RefRunner.rmsnorm(x, this.m.rmsFinal);
    return mm(x, this.m.wcls, 0, dim, this.m.vocab);
  }
}

function argmax(a: ArrayLike<number>, off = 0, n = a.length): number {
  let best = 0;
  for (let i = 1; i < n; i++) if (a[off + i]! > a[off + best]!) best = i;
  return best;
}

/** Greedy from BOS for `steps` tokens, feeding one token at a time through the KV cache. */
function greedy(model: CausalLM, steps: number): number[] {
  const cache = model.createCache();
  const out: number[] = [];
  let tok = 1;
  for (let pos = 0; pos < steps; pos++) {
    tok = argmax(model.forward([tok], cache).data);
    out.push(tok);
  }
  return out;
}

function find(model: Module, name: string): Module {
  const hit = [...model.namedModules()].find(([n]) => n === name);
  if (!hit) throw new Error(`no module ${name}`);
  return hit[1];
}

// ---------------------------------------------------------------- tests

describe.skipIf(!present)('stories260K', () => {
  let bin: CausalLM;
  let hf: CausalLM;
  let tokenizer: Tokenizer | undefined;
  let refTokens: number[];

  beforeAll(async () => {
    const a = await loadModel(fixture('stories260K/stories260K.bin'));
    expect(a.source).toBe('llama2c');
    bin = a.model;
    tokenizer = a.tokenizer;
    const b = await loadModel(fixture('stories260K'));
    expect(b.source).toBe('hf');
    hf = b.model;
    const ref = new RefRunner(readRef(fixture('stories260K/stories260K.bin')));
    refTokens = [];
    let tok = 1;
    for (let pos = 0; pos < GREEDY_STEPS; pos++) {
      tok = argmax(ref.step(tok, pos));
      refTokens.push(tok);
    }
  });

  it(`fp32 greedy decoding from BOS matches the float64 run.c port for ${GREEDY_STEPS} tokens (.bin and HF folder)`, () => {
    for (const [label, model] of [['llama2c', bin], ['hf', hf]] as const) {
      const got = greedy(model, GREEDY_STEPS);
      const firstDiff = got.findIndex((t, i) => t !== refTokens[i]);
      expect(firstDiff, `${label}: first differing token`).toBe(-1);
    }
  });

  it('decodes to the documented story opening', () => {
    expect(tokenizer).toBeDefined();
    const text = tokenizer!.decode(refTokens).trimStart();
    expect(text.startsWith(EXPECTED_TEXT)).toBe(true);
    expect(tokenizer!.decode(greedy(bin, 40)).trimStart().startsWith(EXPECTED_TEXT.slice(0, 60))).toBe(true);
  });

  it('HF folder and .bin logits agree within 1e-5 at every position of a 64-token prompt; incremental == full', () => {
    const story = fs.readFileSync(fixture('text/tinystories-head.txt'), 'utf8').slice(0, 2000);
    const prompt = tokenizer ? tokenizer.encode(story, { bos: true }).slice(0, 64) : [1, ...refTokens.slice(0, 63)];
    expect(prompt.length).toBe(64);
    const a = bin.forward(prompt, bin.createCache()).data;
    const b = hf.forward(prompt, hf.createCache()).data;
    let maxDiff = 0;
    for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i]! - b[i]!));
    console.log(`stories260K: max |logit(.bin) - logit(HF)| over 64 positions = ${maxDiff.toExponential(2)}`);
    expect(maxDiff).toBeLessThan(1e-5);
    const cache = hf.createCache();
    let inc = 0;
    for (let t = 0; t < 64; t += 16) {
      const y = hf.forward(prompt.slice(t, t + 16), cache).data;
      for (let i = 0; i < y.length; i++) inc = Math.max(inc, Math.abs(y[i]! - b[t * 512 + i]!));
    }
    expect(inc).toBeLessThan(1e-5);
    // logits: 'last' (generate's prefill): the 64th row only
    const last = hf.forward(prompt, hf.createCache(), { logits: 'last' });
    expect(last.shape).toEqual([1, 512]);
    let lastDiff = 0;
    for (let i = 0; i < 512; i++) lastDiff = Math.max(lastDiff, Math.abs(last.data[i]! - b[63 * 512 + i]!));
    expect(lastDiff).toBeLessThan(1e-5);
  });

  it('has HF module names; the tied lm_head shares the embedding tensor', () => {
    const names = [...bin.namedModules()].map(([n]) => n);
    for (let i = 0; i < 5; i++) {
      for (const p of ['q', 'k', 'v', 'o']) expect(names).toContain(`model.layers.${i}.self_attn.${p}_proj`);
      for (const p of ['gate', 'up', 'down']) expect(names).toContain(`model.layers.${i}.mlp.${p}_proj`);
      expect(names).toContain(`model.layers.${i}.input_layernorm`);
      expect(names).toContain(`model.layers.${i}.post_attention_layernorm`);
    }
    expect(names).toContain('model.embed_tokens');
    expect(names).toContain('model.norm');
    expect(names).toContain('lm_head');
    const lm = find(bin, 'lm_head') as Linear;
    expect(lm).toBeInstanceOf(Linear);
    expect(lm.weight).toBe((find(bin, 'model.embed_tokens') as unknown as { weight: unknown }).weight);
    // the .bin model's q/k weights are the HF folder's (rows permuted at load)
    const st = readSafetensors(fixture('stories260K/model.safetensors'));
    for (const n of ['model.layers.2.self_attn.q_proj', 'model.layers.2.self_attn.k_proj']) {
      expect(Array.from((find(bin, n) as Linear).weight.data)).toEqual(Array.from(st.get(`${n}.weight`).data));
    }
  });

  it('a Linear replaced by a QLinear is used by forward', async () => {
    const { model } = await loadModel(fixture('stories260K'));
    const before = model.forward([1, 400, 300], model.createCache()).data;
    const parent = find(model, 'model.layers.0.mlp');
    parent.replaceChild('down_proj', QLinear.fromLinear(find(model, 'model.layers.0.mlp.down_proj') as Linear, { bits: 4, granularity: 'group', groupSize: 4 }));
    model.replaceChild('lm_head', QLinear.fromLinear(model.child('lm_head') as Linear));
    expect(find(model, 'lm_head')).toBeInstanceOf(QLinear);
    const after = model.forward([1, 400, 300], model.createCache()).data;
    let diff = 0;
    for (let i = 0; i < after.length; i++) diff = Math.max(diff, Math.abs(after[i]! - before[i]!));
    expect(diff).toBeGreaterThan(0);
    expect(diff).toBeLessThan(1);
    expect((find(model, 'model.embed_tokens') as unknown as { weight: { dtype: string } }).weight.dtype).toBe('f32');
  });

  it('cache capacity and token range are checked', () => {
    const cache = bin.createCache(4);
    expect(() => bin.forward([1, 2, 3, 4, 5], cache)).toThrow(RangeError);
    expect(() => bin.forward([512], cache)).toThrow(RangeError);
    expect(() => bin.forward([1], { length: 0, capacity: 9, reset() {} })).toThrow(TypeError); // not from createCache()
    bin.forward([1, 2], cache);
    expect(cache.length).toBe(2);
    cache.reset();
    expect(cache.length).toBe(0);
  });
});

describe.skipIf(!present)('Llama config and weight errors', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qk-llama-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const baseConfig = () => JSON.parse(fs.readFileSync(fixture('stories260K/config.json'), 'utf8')) as Record<string, unknown>;
  const copy = (name: string, cfg: Record<string, unknown>, drop?: string) => {
    const dir = path.join(tmp, name);
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
    const st = readSafetensors(fixture('stories260K/model.safetensors'));
    writeSafetensorsSync(path.join(dir, 'model.safetensors'), new Map(st.names.filter((n) => n !== drop).map((n) => [n, st.get(n)])));
    return dir;
  };
  async function err(p: Promise<unknown>): Promise<QuantkitError> {
    const e = await p.then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(QuantkitError);
    return e as QuantkitError;
  }

  it('missing field, unknown architecture, missing weight', async () => {
    const c1 = baseConfig();
    delete c1.num_attention_heads;
    const e1 = await err(loadModel(copy('nofield', c1)));
    expect(e1.code).toBe('ERR_BAD_CONFIG');
    expect(e1.message).toMatch(/nofield.config\.json.*'num_attention_heads'/);

    const c2 = { ...baseConfig(), model_type: 'mixtral' };
    const e2 = await err(loadModel(copy('arch', c2)));
    expect(e2.code).toBe('ERR_BAD_CONFIG');
    expect(e2.message).toContain("'mixtral'");

    const e3 = await err(loadModel(copy('noweight', baseConfig(), 'model.layers.3.mlp.up_proj.weight')));
    expect(e3.code).toBe('ERR_NOT_FOUND');
    expect(e3.message).toContain("'model.layers.3.mlp.up_proj.weight'");
    expect(e3.message).toContain(path.join(tmp, 'noweight', 'model.safetensors'));

    const c4 = { ...baseConfig(), tie_word_embeddings: false };
    const e4 = await err(loadModel(copy('untied', c4)));
    expect(e4.code).toBe('ERR_NOT_FOUND');
    expect(e4.message).toContain("'lm_head.weight'");

    const c5 = { ...baseConfig(), num_key_value_heads: 3 };
    expect((await err(loadModel(copy('gqa', c5)))).code).toBe('ERR_BAD_CONFIG');
  });

  it('weights without the model. prefix load too', async () => {
    const dir = path.join(tmp, 'bare');
    fs.mkdirSync(dir);
    fs.copyFileSync(fixture('stories260K/config.json'), path.join(dir, 'config.json'));
    const st = readSafetensors(fixture('stories260K/model.safetensors'));
    writeSafetensorsSync(path.join(dir, 'model.safetensors'), new Map(st.names.map((n) => [n.replace(/^model\./, ''), st.get(n)])));
    const { model, tokenizer } = await loadModel(dir);
    expect(tokenizer).toBeUndefined();
    const { model: ref } = await loadModel(fixture('stories260K'));
    expect(Array.from(model.forward([1, 2, 3], model.createCache()).data)).toEqual(Array.from(ref.forward([1, 2, 3], ref.createCache()).data));
  });
});

describe('tiny random Llama: f16 weights, untied lm_head, GQA, rope_theta 500', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qk-llama-rand-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const dim = 32;
  const hidden = 48;
  const layers = 2;
  const heads = 4;
  const kvHeads = 2;
  const vocab = 40;
  const seqLen = 32;
  const hs = dim / heads;
  const kvDim = hs * kvHeads;
  const theta = 500;
  const r = rng(77);
  // values are f16-representable so the .bin (f32) and the HF folder (f16) hold the same numbers
  const rand = (n: number, scale: number, center = 0) => {
    const bits = new Uint16Array(n);
    for (let i = 0; i < n; i++) bits[i] = toF16Bits(center + scale * (2 * r() - 1));
    return bits;
  };
  const parts = {
    emb: rand(vocab * dim, 1),
    rmsAtt: rand(layers * dim, 0.2, 1),
    wq: rand(layers * dim * dim, 0.3),
    wk: rand(layers * kvDim * dim, 0.3),
    wv: rand(layers * kvDim * dim, 0.3),
    wo: rand(layers * dim * dim, 0.3),
    rmsFfn: rand(layers * dim, 0.2, 1),
    w1: rand(layers * hidden * dim, 0.3),
    w2: rand(layers * dim * hidden, 0.3),
    w3: rand(layers * hidden * dim, 0.3),
    rmsFinal: rand(dim, 0.2, 1),
    wcls: rand(vocab * dim, 0.5),
  };
  const f64 = (b: Uint16Array) => Float64Array.from(b, f16BitsToNumber);
  const ref: RefModel = { dim, hidden, layers, heads, kvHeads, vocab, seqLen, ...(Object.fromEntries(Object.entries(parts).map(([k, v]) => [k, f64(v)])) as Omit<RefModel, 'dim' | 'hidden' | 'layers' | 'heads' | 'kvHeads' | 'vocab' | 'seqLen'>) };

  /** llama2.c interleaved rows -> HF rotate-half rows, per head (written independently of lib/). */
  function toRotateHalf(bits: Uint16Array, rows: number, cols: number): Uint16Array {
    const out = new Uint16Array(bits.length);
    for (let row = 0; row < rows; row++) {
      const h = Math.floor(row / hs);
      const j = row % hs;
      const src = h * hs + (j < hs / 2 ? 2 * j : 2 * (j - hs / 2) + 1);
      out.set(bits.subarray(src * cols, (src + 1) * cols), row * cols);
    }
    return out;
  }

  function writeHf(dir: string): void {
    fs.mkdirSync(dir);
    const t = new Map<string, Tensor>();
    const put = (name: string, shape: number[], bits: Uint16Array) => t.set(name, new Tensor('f16', shape, bits));
    const layer = (b: Uint16Array, l: number, n: number) => b.slice(l * n, (l + 1) * n);
    put('model.embed_tokens.weight', [vocab, dim], parts.emb);
    for (let l = 0; l < layers; l++) {
      const p = `model.layers.${l}`;
      put(`${p}.input_layernorm.weight`, [dim], layer(parts.rmsAtt, l, dim));
      put(`${p}.self_attn.q_proj.weight`, [dim, dim], toRotateHalf(layer(parts.wq, l, dim * dim), dim, dim));
      put(`${p}.self_attn.k_proj.weight`, [kvDim, dim], toRotateHalf(layer(parts.wk, l, kvDim * dim), kvDim, dim));
      put(`${p}.self_attn.v_proj.weight`, [kvDim, dim], layer(parts.wv, l, kvDim * dim));
      put(`${p}.self_attn.o_proj.weight`, [dim, dim], layer(parts.wo, l, dim * dim));
      put(`${p}.post_attention_layernorm.weight`, [dim], layer(parts.rmsFfn, l, dim));
      put(`${p}.mlp.gate_proj.weight`, [hidden, dim], layer(parts.w1, l, hidden * dim));
      put(`${p}.mlp.down_proj.weight`, [dim, hidden], layer(parts.w2, l, dim * hidden));
      put(`${p}.mlp.up_proj.weight`, [hidden, dim], layer(parts.w3, l, hidden * dim));
    }
    put('model.norm.weight', [dim], parts.rmsFinal);
    put('lm_head.weight', [vocab, dim], parts.wcls);
    writeSafetensorsSync(path.join(dir, 'model.safetensors'), t);
    fs.writeFileSync(
      path.join(dir, 'config.json'),
      JSON.stringify({
        architectures: ['LlamaForCausalLM'],
        hidden_size: dim,
        intermediate_size: hidden,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_key_value_heads: kvHeads,
        vocab_size: vocab,
        max_position_embeddings: seqLen,
        rms_norm_eps: 1e-5,
        rope_theta: theta,
        tie_word_embeddings: false,
      }),
    );
  }

  /** The same model as a llama2.c .bin: negative vocab_size = untied classifier. */
  function writeBin(file: string): void {
    const header = Buffer.alloc(28);
    [dim, hidden, layers, heads, kvHeads, -vocab, seqLen].forEach((v, i) => header.writeInt32LE(v, 4 * i));
    const order = [parts.emb, parts.rmsAtt, parts.wq, parts.wk, parts.wv, parts.wo, parts.rmsFfn, parts.w1, parts.w2, parts.w3, parts.rmsFinal];
    const chunks = order.map((b) => Buffer.from(Float32Array.from(b, f16BitsToNumber).buffer));
    chunks.push(Buffer.alloc(4 * seqLen * hs)); // freq_cis_real/imag (unused)
    chunks.push(Buffer.from(Float32Array.from(parts.wcls, f16BitsToNumber).buffer));
    fs.writeFileSync(file, Buffer.concat([header, ...chunks]));
  }

  it('HF folder (f16) and .bin (f32) both match the float64 reference; incremental == full', async () => {
    writeHf(path.join(tmp, 'hf'));
    writeBin(path.join(tmp, 'model.bin'));
    const tokens = [1, 7, 39, 3, 3, 20, 11, 0, 25, 30, 2, 14];
    // a llama2.c .bin has no rope_theta field: run.c always uses 10000
    for (const [p, th] of [[path.join(tmp, 'hf'), theta], [path.join(tmp, 'model.bin'), 10000]] as const) {
      const runner = new RefRunner(ref, th);
      const want = tokens.flatMap((t, pos) => Array.from(runner.step(t, pos)));
      const scale = Math.max(1, ...want.map(Math.abs));
      const { model } = await loadModel(p);
      if (p.endsWith('hf')) expect((find(model, 'model.layers.0.self_attn.q_proj') as Linear).weight.dtype).toBe('f16');
      expect((find(model, 'lm_head') as Linear).weight).not.toBe((find(model, 'model.embed_tokens') as unknown as { weight: unknown }).weight); // untied
      const got = model.forward(tokens, model.createCache()).data;
      let err = 0;
      for (let i = 0; i < got.length; i++) err = Math.max(err, Math.abs(got[i]! - want[i]!));
      expect(err / scale).toBeLessThan(1e-5);
      const cache = model.createCache();
      let inc = 0;
      tokens.forEach((t, pos) => {
        const y = model.forward([t], cache).data;
        for (let i = 0; i < vocab; i++) inc = Math.max(inc, Math.abs(y[i]! - got[pos * vocab + i]!));
      });
      expect(inc).toBeLessThan(1e-5);
    }
  });
});
