/**
 * DistilBERT against a float64 reference written here from the Hugging Face
 * modeling code's definition (sharing no code with lib/): embeddings +
 * LayerNorm (eps 1e-12), post-LN blocks with bidirectional attention and an
 * exact-erf GELU MLP, the masked-LM head with the projector tied to the word
 * embeddings. Also: a batch of sequences of different lengths gives each
 * sequence the vectors it gets alone, forwardAsync = forward, the bare
 * encoder checkpoint (no 'distilbert.' prefix, no head), mean pooling,
 * quantizeModel, a WordPiece tokenizer.json with [CLS]/[SEP], and loadModel
 * pointing an encoder to loadEncoder.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { footprint } from '../lib/eval/footprint.js';
import { saveQuantized } from '../lib/io/quantized-checkpoint.js';
import { loadEncoderSync } from '../lib/models/load-encoder.js';
import { DistilBertForMaskedLM, DistilBertModel, meanPool, unpad } from '../lib/models/distilbert.js';
import { loadModelSync } from '../lib/models/load.js';
import { Linear, QLinear } from '../lib/nn/linear.js';
import { quantizeDynamic, quantizeModel } from '../lib/nn/quantize-model.js';
import type { Tensor } from '../lib/tensor.js';
import { type F64, type Weights, Maker, add, layerNormRef, linRef, WEIGHT_FORMATS } from './ref-models.js';
import { CLI_ENTRY, ROOT, runCliInto } from './cli-run.js';
import { spawn } from 'node:child_process';
import OpenAI from 'openai';
import { QuantkitServer } from '../lib/serve/server.js';
import { encoderEmbedder } from '../lib/serve/embedder.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qk-distilbert-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const C = { D: 32, H: 4, F: 48, L: 2, V: 40, P: 16 };
const EPS = 1e-12;
const configJson = { architectures: ['DistilBertForMaskedLM'], model_type: 'distilbert', dim: C.D, n_heads: C.H, hidden_dim: C.F, n_layers: C.L, vocab_size: C.V, max_position_embeddings: C.P, activation: 'gelu', pad_token_id: 0, sinusoidal_pos_embds: false };

/** erf by its Maclaurin series (float64-exact for the |x| < 5 seen here), 1 beyond. */
function erfRef(x: number): number {
  if (Math.abs(x) > 5) return Math.sign(x);
  let sum = 0;
  let term = x; // x^(2n+1) (-1)^n / n!
  for (let n = 0; n < 120; n++) {
    sum += term / (2 * n + 1);
    term *= (-x * x) / (n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}
const geluRef = (x: number) => 0.5 * x * (1 + erfRef(x / Math.SQRT2));

function make(seed: number, head: boolean, prefix: string): Maker {
  const m = new Maker(seed, false);
  const { D, F } = C;
  m.add(`${prefix}embeddings.word_embeddings.weight`, [C.V, D], 0.5);
  m.add(`${prefix}embeddings.position_embeddings.weight`, [C.P, D], 0.3);
  m.add(`${prefix}embeddings.LayerNorm.weight`, [D], 0.2, 1);
  m.add(`${prefix}embeddings.LayerNorm.bias`, [D], 0.1);
  for (let l = 0; l < C.L; l++) {
    const p = `${prefix}transformer.layer.${l}`;
    for (const n of ['q_lin', 'k_lin', 'v_lin', 'out_lin']) {
      m.add(`${p}.attention.${n}.weight`, [D, D], 0.3);
      m.add(`${p}.attention.${n}.bias`, [D], 0.1);
    }
    m.add(`${p}.sa_layer_norm.weight`, [D], 0.2, 1);
    m.add(`${p}.sa_layer_norm.bias`, [D], 0.1);
    m.add(`${p}.ffn.lin1.weight`, [F, D], 0.3);
    m.add(`${p}.ffn.lin1.bias`, [F], 0.1);
    m.add(`${p}.ffn.lin2.weight`, [D, F], 0.2);
    m.add(`${p}.ffn.lin2.bias`, [D], 0.1);
    m.add(`${p}.output_layer_norm.weight`, [D], 0.2, 1);
    m.add(`${p}.output_layer_norm.bias`, [D], 0.1);
  }
  if (head) {
    m.add('vocab_transform.weight', [D, D], 0.3);
    m.add('vocab_transform.bias', [D], 0.1);
    m.add('vocab_layer_norm.weight', [D], 0.2, 1);
    m.add('vocab_layer_norm.bias', [D], 0.1);
    m.add('vocab_projector.bias', [C.V], 0.1);
  }
  return m;
}

/** HF DistilBertModel on one sequence (no padding): last hidden states [T][D]. */
function encoderRef(W: Weights, ids: number[], prefix: string): F64[] {
  const g = (n: string) => W.get(prefix + n)!.v;
  const { D, H } = C;
  const dh = D / H;
  let x: F64[] = ids.map((id, t) => layerNormRef(add(g('embeddings.word_embeddings.weight').subarray(id * D, id * D + D), g('embeddings.position_embeddings.weight').subarray(t * D, t * D + D)), g('embeddings.LayerNorm.weight'), g('embeddings.LayerNorm.bias'), EPS));
  for (let l = 0; l < C.L; l++) {
    const p = `transformer.layer.${l}`;
    const lin = (v: F64, n: string, out: number, inp: number) => linRef(v, g(`${p}.${n}.weight`), g(`${p}.${n}.bias`), out, inp);
    const q = x.map((v) => lin(v, 'attention.q_lin', D, D).map((e) => e / Math.sqrt(dh)));
    const k = x.map((v) => lin(v, 'attention.k_lin', D, D));
    const vv = x.map((v) => lin(v, 'attention.v_lin', D, D));
    const ctx = x.map(() => new Float64Array(D));
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < x.length; i++) {
        const s = k.map((kj) => {
          let d = 0;
          for (let e = 0; e < dh; e++) d += q[i]![h * dh + e]! * kj[h * dh + e]!;
          return d;
        });
        const m = Math.max(...s);
        const z = s.reduce((a, v) => a + Math.exp(v - m), 0);
        s.forEach((v, j) => {
          for (let e = 0; e < dh; e++) ctx[i]![h * dh + e]! += (Math.exp(v - m) / z) * vv[j]![h * dh + e]!;
        });
      }
    }
    const sa = x.map((v, t) => layerNormRef(add(lin(ctx[t]!, 'attention.out_lin', D, D), v), g(`${p}.sa_layer_norm.weight`), g(`${p}.sa_layer_norm.bias`), EPS));
    x = sa.map((v) => layerNormRef(add(lin(lin(v, 'ffn.lin1', C.F, D).map(geluRef), 'ffn.lin2', D, C.F), v), g(`${p}.output_layer_norm.weight`), g(`${p}.output_layer_norm.bias`), EPS));
  }
  return x;
}

function mlmRef(W: Weights, ids: number[]): F64[] {
  const g = (n: string) => W.get(n)!.v;
  return encoderRef(W, ids, 'distilbert.').map((h) =>
    linRef(layerNormRef(linRef(h, g('vocab_transform.weight'), g('vocab_transform.bias'), C.D, C.D).map(geluRef), g('vocab_layer_norm.weight'), g('vocab_layer_norm.bias'), EPS), g('distilbert.embeddings.word_embeddings.weight'), g('vocab_projector.bias'), C.V, C.D),
  );
}

/** max |a - ref| / max(1, max |ref|) over one sequence's rows. */
function rel(a: Tensor<'f32'>, ref: F64[]): number {
  const flat = ref.flatMap((r) => [...r]);
  const scale = Math.max(1, ...flat.map(Math.abs));
  let m = 0;
  flat.forEach((v, i) => (m = Math.max(m, Math.abs(a.data[i]! - v))));
  return m / scale;
}

const BATCH = [[2, 17, 5, 30, 9, 3], [2, 8, 3], [2, 11, 12, 13, 14, 15, 16, 39, 1, 3]];

describe('DistilBERT', () => {
  const mlm = make(11, true, 'distilbert.');
  const mlmDir = mlm.write(path.join(tmp, 'mlm'), configJson);

  it('masked LM: logits of a batch of different lengths match the float64 reference', async () => {
    const enc = loadEncoderSync(mlmDir);
    expect(enc.kind).toBe('masked-lm');
    const model = enc.model as DistilBertForMaskedLM;
    const out = model.forward(BATCH);
    expect(out.map((t) => t.shape)).toEqual(BATCH.map((s) => [s.length, C.V]));
    for (let b = 0; b < BATCH.length; b++) expect(rel(out[b]!, mlmRef(mlm.ref, BATCH[b]!))).toBeLessThan(1e-5);
    // forwardAsync: the same, bit for bit
    const outA = await model.forwardAsync(BATCH);
    for (let b = 0; b < BATCH.length; b++) expect(outA[b]!.data).toEqual(out[b]!.data);
  });

  it('a batch gives each sequence the vectors it gets alone; a padded batch too (unpad)', () => {
    const model = (loadEncoderSync(mlmDir).model as DistilBertForMaskedLM).distilbert;
    // as a tokenizer pads: right-padded with [PAD] = 0 to the longest row, mask 1 on real tokens
    const T = Math.max(...BATCH.map((s) => s.length));
    const inputIds = BATCH.map((s) => [...s, ...Array(T - s.length).fill(0)]);
    const attentionMask = BATCH.map((s) => [...s.map(() => 1), ...Array(T - s.length).fill(0)]);
    const together = model.forward(unpad(inputIds, attentionMask));
    expect(() => unpad(inputIds, attentionMask.slice(1))).toThrow(/one row per inputIds row/);
    expect(() => unpad([[1, 2]], [[1, 2]])).toThrow(/'attentionMask\[0\]\[1\]' must be 0 or 1/);
    for (let b = 0; b < BATCH.length; b++) {
      const alone = model.forward([BATCH[b]!])[0]!;
      let m = 0;
      alone.data.forEach((v, i) => (m = Math.max(m, Math.abs(v - together[b]!.data[i]!))));
      expect(m).toBeLessThan(1e-6);
    }
  });

  it('a bare DistilBertModel checkpoint (no prefix, no head) is an encoder; mean pooling', () => {
    const m = make(12, false, '');
    const enc = loadEncoderSync(m.write(path.join(tmp, 'bare'), { ...configJson, architectures: ['DistilBertModel'] }));
    expect(enc.kind).toBe('encoder');
    const hidden = (enc.model as DistilBertModel).forward(BATCH);
    const pooled = meanPool(hidden);
    expect(pooled.shape).toEqual([BATCH.length, C.D]);
    for (let b = 0; b < BATCH.length; b++) {
      const ref = encoderRef(m.ref, BATCH[b]!, '');
      expect(rel(hidden[b]!, ref)).toBeLessThan(1e-5);
      for (let i = 0; i < C.D; i++) expect(pooled.data[b * C.D + i]!).toBeCloseTo(ref.reduce((a, r) => a + r[i]!, 0) / ref.length, 5);
    }
  });

  it('quantizeModel replaces every Linear of the encoder and the head; int8 stays close', () => {
    const model = loadEncoderSync(mlmDir).model as DistilBertForMaskedLM;
    const s = quantizeModel(model, { weights: 'int8' });
    expect(s.replaced).toHaveLength(C.L * 6 + 2); // q,k,v,out,lin1,lin2 per layer + vocab_transform + vocab_projector
    expect(s.kept).toEqual([]);
    expect(model.child('vocab_transform')).toBeInstanceOf(QLinear);
    const out = model.forward(BATCH);
    for (let b = 0; b < BATCH.length; b++) expect(rel(out[b]!, mlmRef(mlm.ref, BATCH[b]!))).toBeLessThan(0.05);
    const kept = loadEncoderSync(mlmDir).model;
    expect(quantizeModel(kept, { weights: 'int8', exclude: ['vocab_projector'] }).kept).toEqual(['vocab_projector']);
    expect(kept.child('vocab_projector')).toBeInstanceOf(Linear);
  });

  it('quantizeDynamic: every Linear int8 per channel with int8 activations (W8A8), as torch quantize_dynamic', async () => {
    const model = loadEncoderSync(mlmDir).model as DistilBertForMaskedLM;
    const s = quantizeDynamic(model);
    expect(s.replaced).toHaveLength(C.L * 6 + 2);
    for (const name of s.replaced) {
      const q = [...model.namedModules()].find(([n]) => n === name)![1] as QLinear;
      expect([q.activations, q.qweight.bits, q.qweight.granularity]).toEqual(['int8', 8, 'channel']);
    }
    const shared = vi.spyOn(QLinear, 'forwardSharedAsync');
    const out = await model.forwardAsync(BATCH);
    for (let b = 0; b < BATCH.length; b++) expect(rel(out[b]!, mlmRef(mlm.ref, BATCH[b]!))).toBeLessThan(0.05);
    // q/k/v quantize their input once (one native call); the same bits as one by one
    expect(shared.mock.results.some((r) => r.value !== null)).toBe(true);
    shared.mockReturnValue(null);
    const alone = await model.forwardAsync(BATCH);
    shared.mockRestore();
    for (let b = 0; b < BATCH.length; b++) expect(alone[b]!.data).toEqual(out[b]!.data);
    expect(() => quantizeDynamic(model, null as never)).toThrow(/'options' must be an object/);
  });

  it('saves as a quantkit checkpoint and reloads bit-identically (int8, int4 with the projector kept)', async () => {
    for (const [n, opts] of [['int8', { weights: 'int8' }], ['int4', { weights: 'int4', scheme: 'asymmetric', exclude: ['vocab_projector'] }]] as const) {
      const model = loadEncoderSync(mlmDir).model as DistilBertForMaskedLM;
      const summary = quantizeModel(model, opts);
      const out = path.join(tmp, `ckpt-${n}`);
      await saveQuantized(model, summary, [], out, configJson);
      const re = loadEncoderSync(out);
      expect([re.source, re.kind]).toEqual(['quantkit', 'masked-lm']);
      const a = model.forward(BATCH);
      const b = await (re.model as DistilBertForMaskedLM).forwardAsync(BATCH);
      for (let i = 0; i < BATCH.length; i++) expect(b[i]!.data).toEqual(a[i]!.data);
      expect(footprint(re.model)).toEqual(footprint(model));
    }
  });

  it('bf16 weights in sharded safetensors; every weight format, sync and async', async () => {
    const src = make(21, true, 'distilbert.');
    const m = new Maker(21, true);
    for (const [name, { shape }] of src.ref) m.add(name, shape, 0.3, /LayerNorm\.weight|layer_norm\.weight/.test(name) ? 1 : 0);
    const dir = m.writeSharded(path.join(tmp, 'bf16'), configJson);
    const ref = BATCH.map((ids) => mlmRef(m.ref, ids));
    for (const [name, q, tol] of WEIGHT_FORMATS) {
      const model = loadEncoderSync(dir).model as DistilBertForMaskedLM;
      if (q) quantizeModel(model, q);
      const y = model.forward(BATCH);
      for (let b = 0; b < BATCH.length; b++) expect(rel(y[b]!, ref[b]!), name).toBeLessThan(tol);
      const ya = await model.forwardAsync(BATCH);
      for (let b = 0; b < BATCH.length; b++) expect(ya[b]!.data, name).toEqual(y[b]!.data);
    }
  });

  it('bad batches are refused naming the sequence', () => {
    const model = loadEncoderSync(mlmDir).model as DistilBertForMaskedLM;
    expect(() => model.forward([])).toThrow(/'batch' must be a non-empty array/);
    expect(() => model.forward([[1, 2], []])).toThrow(/'batch\[1\]' must be a non-empty array/);
    expect(() => model.forward([[1, C.V]])).toThrow(/'batch\[0\]' holds token id 40, outside \[0, 40\)/);
    expect(() => model.forward([Array.from({ length: C.P + 1 }, () => 1)])).toThrow(/has 17 tokens; the model takes at most 16/);
  });

  it('quantkit inspect: an encoder with a masked-LM head, its module tree before and after --weights int8', async () => {
    let out = '';
    const io = { out: (s: string) => void (out += s), err: (s: string) => void (out += s) };
    expect(await runCliInto(['inspect', mlmDir, '--weights', 'int8', '--exclude', 'vocab_projector'], io)).toBe(0);
    expect(out).toMatch(/^kind: +encoder with a masked-LM head$/m);
    expect(out).toContain('      (0-1): 2 x DistilBertBlock(');
    expect(out).toContain('(q_lin): Linear(in=32, out=32, f32, bias)');
    expect(out).toContain('(q_lin): QLinear(in=32, out=32, int8 sym per-channel, bias)');
    expect(out).toMatch(/13 Linear layers became QLinear; kept in float: vocab_projector/);
  });

  it('quantkit fill-mask and embed (vocab.txt tokenizer), checked against the float64 reference', async () => {
    const dir = mlm.write(path.join(tmp, 'cli'), configJson);
    // 40 tokens: the BERT specials, some words, then fillers
    const words = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'the', 'capital', 'of', 'france', 'is', 'paris', '.', 'a', 'cat', 'sat'];
    const vocab = [...words, ...Array.from({ length: C.V - words.length }, (_, i) => `w${i}`)];
    fs.writeFileSync(path.join(dir, 'vocab.txt'), vocab.join('\n') + '\n');
    let out = '';
    let err = '';
    const io = { out: (s: string) => void (out += s), err: (s: string) => void (err += s) };
    expect(await runCliInto(['fill-mask', dir, 'The capital of France is [MASK].', '--json', '--top-k', '3'], io), err).toBe(0);
    const r = JSON.parse(out) as { masks: { position: number; predictions: { token: string; id: number; probability: number }[] }[] };
    const ids = [2, 5, 6, 7, 8, 9, 4, 11, 3]; // [CLS] the capital of france is [MASK] . [SEP]
    expect(r.masks.map((m) => m.position)).toEqual([6]);
    const ref = mlmRef(mlm.ref, ids)[6]!;
    const best = [...ref.keys()].sort((a, b) => ref[b]! - ref[a]!);
    expect(r.masks[0]!.predictions.map((p) => p.id)).toEqual(best.slice(0, 3));
    expect(r.masks[0]!.predictions[0]!.token).toBe(vocab[best[0]!]);
    const z = ref.reduce((a, v) => a + Math.exp(v - ref[best[0]!]!), 0);
    expect(r.masks[0]!.predictions[0]!.probability).toBeCloseTo(1 / z, 5);

    const text = path.join(tmp, 'lines.txt');
    fs.writeFileSync(text, 'The cat sat.\n\nParis is the capital of France.\n');
    out = '';
    expect(await runCliInto(['embed', dir, '--text', text], io), err).toBe(0);
    const vecs = out.trim().split('\n').map((l) => JSON.parse(l) as number[]);
    const lineIds = [[2, 5, 13, 14, 11, 3], [2, 10, 9, 5, 6, 7, 8, 11, 3]];
    expect(vecs).toHaveLength(2);
    lineIds.forEach((li, n) => {
      const h = encoderRef(mlm.ref, li, 'distilbert.');
      for (let i = 0; i < C.D; i++) expect(vecs[n]![i]!).toBeCloseTo(h.reduce((a, row) => a + row[i]!, 0) / h.length, 5);
    });
    const bin = path.join(tmp, 'vecs.f32');
    out = '';
    expect(await runCliInto(['embed', dir, '--text', text, '--out', bin], io), err).toBe(0);
    expect(out).toMatch(/wrote 2 x 32 f32/);
    const raw = fs.readFileSync(bin);
    expect(Array.from(new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length)))).toEqual(vecs.flat().map(Math.fround));
    // an encoder without the head cannot fill masks
    err = '';
    const bare = make(13, false, '').write(path.join(tmp, 'bare-cli'), configJson);
    fs.writeFileSync(path.join(bare, 'vocab.txt'), vocab.join('\n') + '\n');
    expect(await runCliInto(['fill-mask', bare, 'a [MASK]'], io)).toBe(1);
    expect(err).toMatch(/has no masked-LM head/);
    err = '';
    expect(await runCliInto(['fill-mask', dir, 'no mask here'], io)).toBe(1);
    expect(err).toMatch(/the text has no \[MASK\] token/);
  });

  it('quantkit serve answers /v1/embeddings with the reference vectors (openai client, float and base64)', async () => {
    const dir = mlm.write(path.join(tmp, 'serve'), configJson);
    const words = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'the', 'capital', 'of', 'france', 'is', 'paris', '.', 'a', 'cat', 'sat'];
    fs.writeFileSync(path.join(dir, 'vocab.txt'), [...words, ...Array.from({ length: C.V - words.length }, (_, i) => `w${i}`)].join('\n') + '\n');
    const server = new QuantkitServer({ embedder: encoderEmbedder(loadEncoderSync(dir)), name: 'enc' });
    const url = await server.listen('127.0.0.1', 0);
    try {
      const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'none', maxRetries: 0 });
      const lineIds = [[2, 5, 13, 14, 11, 3], [2, 10, 9, 5, 6, 7, 8, 11, 3]];
      const want = lineIds.map((li) => {
        const h = encoderRef(mlm.ref, li, 'distilbert.');
        return Array.from({ length: C.D }, (_, i) => h.reduce((a, row) => a + row[i]!, 0) / h.length);
      });
      // undefined: the openai client asks for base64 and decodes it itself
      for (const encoding_format of ['float', 'base64', undefined] as const) {
        const r = await client.embeddings.create({ model: 'enc', input: ['The cat sat.', 'Paris is the capital of France.'], ...(encoding_format ? { encoding_format } : {}) });
        expect(r.usage.prompt_tokens).toBe(15);
        r.data.forEach((d, n) => {
          const raw = typeof d.embedding === 'string' ? Buffer.from(d.embedding, 'base64') : null;
          const v = raw ? Array.from(new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length))) : (d.embedding as number[]);
          expect(d.index).toBe(n);
          v.forEach((x, i) => expect(x).toBeCloseTo(want[n]![i]!, 5));
        });
      }
      const wrong = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'x' }) });
      expect(wrong.status).toBe(400);
      expect(((await wrong.json()) as { error: { message: string } }).error.message).toMatch(/embedding model/);
      const bad = await fetch(`${url}/v1/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ input: [3] }) });
      expect(bad.status).toBe(400);
    } finally {
      await server.shutdown(1000);
    }
    // the command serves an encoder folder the same way (int8 here), and stops on SIGTERM with 0
    const child = spawn(process.execPath, ['--import', 'tsx', CLI_ENTRY, 'serve', dir, '--port', '0', '--weights', 'int8'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    const cliUrl = await new Promise<string>((resolve, reject) => {
      child.stderr.setEncoding('utf8').on('data', (t: string) => {
        log += t;
        const m = / ready on (http:\/\/127\.0\.0\.1:\d+)/.exec(log);
        if (m) resolve(m[1]!);
      });
      child.on('exit', () => reject(new Error(log)));
    });
    const r = await fetch(`${cliUrl}/v1/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ input: 'The cat sat.' }) });
    expect(r.status).toBe(200);
    expect(((await r.json()) as { data: { embedding: number[] }[] }).data[0]!.embedding).toHaveLength(C.D);
    const code = new Promise<number | null>((res) => child.on('exit', (c) => res(c)));
    child.kill('SIGTERM');
    expect(await code).toBe(0);
  });

  it('quantkit report on an encoder: embedding cosine, fill-mask agreement and per-block SQNR against fp32', async () => {
    const dir = path.join(tmp, 'cli'); // written by the fill-mask test above, with its vocab.txt
    const text = path.join(tmp, 'report-lines.txt');
    fs.writeFileSync(text, 'The cat sat.\nParis is the capital of France.\nA cat is a cat.\nThe capital is Paris.\n');
    const out = path.join(tmp, 'enc-report');
    let err = '';
    const io = { out: () => undefined, err: (s: string) => void (err += s) };
    expect(await runCliInto(['report', dir, '--out', out, '--text', text], io), err).toBe(0);
    const rep = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8')) as {
      kind: string;
      sentences: number;
      results: { label: string; cosineMean: number; cosineMin: number; fillMaskTop1Agreement: number; layerSqnrDb: (number | string)[] }[];
    };
    expect([rep.kind, rep.sentences]).toEqual(['masked-lm', 4]);
    expect(rep.results.map((r) => r.label)).toEqual(['fp32', 'int8 sym per-channel', 'int4 asym g32']);
    const [fp, i8, i4] = rep.results as [(typeof rep.results)[0], (typeof rep.results)[0], (typeof rep.results)[0]];
    expect(fp.cosineMean).toBeCloseTo(1, 6);
    expect(fp.fillMaskTop1Agreement).toBe(1);
    expect(fp.layerSqnrDb).toEqual(['Infinity', 'Infinity']);
    expect(i8.cosineMean).toBeGreaterThan(0.99);
    expect(i8.cosineMin).toBeLessThanOrEqual(i8.cosineMean);
    // int8 keeps every block closer to fp32 than int4 does
    i8.layerSqnrDb.forEach((v, l) => expect(v as number).toBeGreaterThan(i4.layerSqnrDb[l] as number));
    expect(fs.readFileSync(path.join(out, 'report.md'), 'utf8')).toMatch(/\| int8 sym per-channel \| [\d,]+ \| 0\.99\d+ \|/);
    expect(await runCliInto(['report', dir, '--out', out, '--text', text], io)).toBe(1);
    expect(err).toMatch(/already exists; pass --force/);
  });

  it('loadModel says an encoder folder is for loadEncoder', () => {
    expect(() => loadModelSync(mlmDir)).toThrow(/model_type 'distilbert' is an encoder.*loadEncoder/);
  });

  it('a WordPiece tokenizer.json: encode() adds [CLS] and [SEP]', () => {
    const vocab: Record<string, number> = {};
    ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'the', 'cat', 'sat', '##s', 'on', 'mat', '.'].forEach((t, i) => (vocab[t] = i));
    const tj = {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'].map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
      normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
      pre_tokenizer: { type: 'BertPreTokenizer' },
      post_processor: null,
      decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
      model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab },
    };
    const dir = mlm.write(path.join(tmp, 'with-tok'), configJson);
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tj));
    const enc = loadEncoderSync(dir);
    const ids = enc.encode('The cats sat on the mat.');
    expect(ids).toEqual([2, 5, 6, 8, 7, 9, 5, 10, 11, 3]);
    const logits = (enc.model as DistilBertForMaskedLM).forward([ids])[0]!;
    expect(logits.shape).toEqual([ids.length, C.V]);
  });
});
