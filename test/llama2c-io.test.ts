/**
 * llama2.c checkpoint reader: header validation on synthetic files, the
 * untied-classifier layout, and stories260K.bin against the same weights as a
 * Hugging Face safetensors file (identical except q/k rows, which HF stores
 * in rotate-half order).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { addon } from '../lib/binding.js';
import { QuantkitError } from '../lib/errors.js';
import { llama2cToHfRoPERows, parseLlama2c, readLlama2c } from '../lib/io/llama2c.js';
import { readSafetensors } from '../lib/io/safetensors.js';
import { fixture, requireFixtures } from './fixtures.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'quantkit-l2c-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

type Hdr = [dim: number, hidden: number, layers: number, heads: number, kvHeads: number, vocab: number, seq: number];

/** Floats a v0 checkpoint holds after the header, computed independently of lib/. */
function floatCount([dim, hid, L, nh, nkv, vocab, seq]: Hdr): number {
  const kv = (dim * nkv) / nh;
  const hs = dim / nh;
  const V = Math.abs(vocab);
  return V * dim + L * (2 * dim + 2 * dim * dim + 2 * kv * dim + 3 * hid * dim) + dim + seq * hs + (vocab < 0 ? V * dim : 0);
}

/** A checkpoint whose float i holds the value i (so positions are checkable). */
function synth(h: Hdr, floats = floatCount(h)): Buffer {
  const head = Buffer.alloc(28);
  h.forEach((v, i) => head.writeInt32LE(v, 4 * i));
  return Buffer.concat([head, Buffer.from(Float32Array.from({ length: floats }, (_, i) => i).buffer)]);
}

function expectBad(bytes: Buffer, pattern: RegExp) {
  const file = path.join(dir, `bad-${Math.random().toString(36).slice(2)}.bin`);
  fs.writeFileSync(file, bytes);
  let err: unknown;
  try {
    readLlama2c(file);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(QuantkitError);
  expect((err as QuantkitError).code).toBe('ERR_BAD_FILE');
  expect((err as QuantkitError).message).toContain(file);
  expect((err as QuantkitError).message).toMatch(pattern);
}

describe('llama2.c checkpoint: synthetic files', () => {
  const tied: Hdr = [8, 12, 2, 2, 1, 10, 4];

  it('reads the weights after the 28-byte header onto 64-byte lines (mapped: where the file puts them)', () => {
    const h: Hdr = [16, 32, 1, 2, 2, 40, 8]; // every tensor a whole number of lines
    const file = path.join(dir, 'lines.bin');
    fs.writeFileSync(file, synth(h));
    const read = readLlama2c(file);
    for (const name of read.names) expect(addon.lineOffset(read.get(name).data), name).toBe(0);
    expect(read.get('model.embed_tokens.weight').data[0]).toBe(0);
    expect(addon.lineOffset(readLlama2c(file, { mmap: true }).get('model.embed_tokens.weight').data)).toBe(36);
  });

  it('lays out a tied checkpoint in run.c order and names it like HF', () => {
    const ck = parseLlama2c(synth(tied), 'tied.bin');
    expect(ck.config).toEqual({ dim: 8, hiddenDim: 12, nLayers: 2, nHeads: 2, nKvHeads: 1, vocabSize: 10, seqLen: 4, sharedClassifier: true, headSize: 4, kvDim: 4 });
    expect(ck.format).toBe('llama2c');
    expect(ck.has('lm_head.weight')).toBe(false);
    expect(ck.names.length).toBe(1 + 9 * 2 + 1);
    // first float of each tensor = its float offset
    const at = (name: string) => ck.get(name).data[0];
    let o = 0;
    expect(at('model.embed_tokens.weight')).toBe(o);
    o += 80;
    expect(at('model.layers.0.input_layernorm.weight')).toBe(o);
    expect(at('model.layers.1.input_layernorm.weight')).toBe(o + 8);
    o += 16;
    expect(at('model.layers.0.self_attn.q_proj.weight')).toBe(o);
    o += 128;
    expect(ck.get('model.layers.0.self_attn.k_proj.weight').shape).toEqual([4, 8]);
    expect(at('model.layers.0.self_attn.k_proj.weight')).toBe(o);
    o += 64;
    expect(at('model.layers.0.self_attn.v_proj.weight')).toBe(o);
    o += 64;
    expect(at('model.layers.0.self_attn.o_proj.weight')).toBe(o);
    o += 128;
    expect(at('model.layers.0.post_attention_layernorm.weight')).toBe(o);
    o += 16;
    expect(at('model.layers.0.mlp.gate_proj.weight')).toBe(o);
    o += 192;
    expect(ck.get('model.layers.1.mlp.down_proj.weight').shape).toEqual([8, 12]);
    expect(at('model.layers.0.mlp.down_proj.weight')).toBe(o);
    o += 192;
    expect(at('model.layers.0.mlp.up_proj.weight')).toBe(o);
    o += 192;
    expect(at('model.norm.weight')).toBe(o);
    const norm = ck.get('model.norm.weight').data;
    expect(norm[7]).toBe(o + 7);
    expect(norm.byteOffset % 4).toBe(0);
    expect(() => ck.get('lm_head.weight')).toThrow(/no tensor named 'lm_head.weight'.*tied\.bin|tied\.bin.*lm_head/);
  });

  it('reads an untied classifier after the skipped RoPE tables', () => {
    const untied: Hdr = [8, 12, 2, 2, 1, -10, 4];
    const file = path.join(dir, 'untied.bin');
    fs.writeFileSync(file, synth(untied));
    const ck = readLlama2c(file);
    expect(ck.config.sharedClassifier).toBe(false);
    expect(ck.config.vocabSize).toBe(10);
    const lm = ck.get('lm_head.weight');
    expect(lm.shape).toEqual([10, 8]);
    // lm_head starts after everything else, including seq * head_size RoPE floats
    expect(lm.data[0]).toBe(floatCount(untied) - 80);
    expect(ck.get('model.norm.weight').data[0]).toBe(floatCount(untied) - 80 - 16 - 8);
    expect(lm.data.buffer).toBe(ck.buffer.buffer); // zero-copy
  });

  it('rejects bad headers and sizes with clear errors', () => {
    expectBad(Buffer.alloc(10), /truncated/);
    expectBad(synth([0, 12, 2, 2, 1, 10, 4], 0), /dim = 0 must be positive/);
    expectBad(synth([8, 12, -1, 2, 1, 10, 4], 0), /n_layers = -1/);
    expectBad(synth([8, 12, 2, 3, 1, 10, 4], 0), /dim 8 is not divisible by n_heads 3/);
    expectBad(synth([8, 12, 2, 2, 3, 10, 4], 0), /n_kv_heads 3/);
    expectBad(synth([8, 12, 2, 4, 4, 0, 4], 0), /vocab_size = 0/);
    expectBad(synth([6, 12, 2, 2, 1, 10, 4], 0), /head size 3/);
    expectBad(synth(tied, floatCount(tied) - 1), /implies exactly .*truncated/);
    expectBad(synth(tied, floatCount(tied) + 1), /implies exactly/);
    expectBad(synth([0x40000000, 0x7fffffff, 0x7fffffff, 1, 1, 0x7fffffff, 0x7fffffff], 0), /absurd/);
  });

  it('a missing file is ERR_NOT_FOUND naming it', () => {
    const file = path.join(dir, 'nope.bin');
    expect(() => readLlama2c(file)).toThrow(expect.objectContaining({ code: 'ERR_NOT_FOUND', message: expect.stringContaining(file) }));
  });
});

const present = requireFixtures('stories260K/stories260K.bin', 'stories260K/model.safetensors');
describe.skipIf(!present)('stories260K.bin vs model.safetensors', () => {
  it('has the documented config and exact size', () => {
    const file = fixture('stories260K', 'stories260K.bin');
    expect(fs.statSync(file).size).toBe(1056540);
    const ck = readLlama2c(file);
    expect(ck.config).toMatchObject({ dim: 64, hiddenDim: 172, nLayers: 5, nHeads: 8, nKvHeads: 4, vocabSize: 512, seqLen: 512, sharedClassifier: true, headSize: 8, kvDim: 32 });
    for (const n of ck.names) expect(ck.get(n).data.buffer).toBe(ck.buffer.buffer);
  });

  it('holds the same weights; q/k rows differ exactly by the interleaved -> rotate-half permutation', () => {
    const ck = readLlama2c(fixture('stories260K', 'stories260K.bin'));
    const hf = readSafetensors(fixture('stories260K', 'model.safetensors'));
    expect([...hf.names].sort()).toEqual([...ck.names].sort());
    const { headSize: hs, nHeads, nKvHeads } = ck.config;
    for (const name of ck.names) {
      const a = ck.get(name);
      const b = hf.get(name);
      expect(b.shape, name).toEqual(a.shape);
      const isQ = name.endsWith('q_proj.weight');
      const isK = name.endsWith('k_proj.weight');
      if (!isQ && !isK) {
        expect(Buffer.compare(Buffer.from(a.data.buffer, a.data.byteOffset, a.nbytes), Buffer.from(b.data.buffer, b.data.byteOffset, b.nbytes)), name).toBe(0);
        continue;
      }
      // raw layouts must differ (the reader does not permute) ...
      expect(Array.from(a.data)).not.toEqual(Array.from(b.data));
      // ... and discovering, row by row, where each HF row comes from gives
      // HF[h*hs + i] = L2C[h*hs + 2i], HF[h*hs + hs/2 + i] = L2C[h*hs + 2i + 1]
      const cols = a.shape[1]!;
      const rows = a.shape[0]!;
      const row = (t: Float32Array, r: number) => t.subarray(r * cols, (r + 1) * cols).join(',');
      const l2cRows = new Map<string, number>();
      for (let r = 0; r < rows; r++) l2cRows.set(row(a.data as Float32Array, r), r);
      expect(l2cRows.size).toBe(rows); // rows are distinct, so the mapping is unambiguous
      const found = Array.from({ length: rows }, (_, r) => l2cRows.get(row(b.data as Float32Array, r)));
      const expected: number[] = [];
      for (let h = 0; h < rows / hs; h++) {
        for (let i = 0; i < hs / 2; i++) expected.push(h * hs + 2 * i);
        for (let i = 0; i < hs / 2; i++) expected.push(h * hs + 2 * i + 1);
      }
      expect(found, name).toEqual(expected);
      // and the helper reproduces the HF tensor bit for bit
      const p = llama2cToHfRoPERows(a as never, isQ ? nHeads : nKvHeads);
      expect(Buffer.from(p.data.buffer, p.data.byteOffset, p.nbytes).equals(Buffer.from(b.data.buffer, b.data.byteOffset, b.nbytes)), name).toBe(true);
    }
  });
});
