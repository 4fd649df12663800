/**
 * Mapped weights (ReadOptions.mmap, LoadModelOptions.mmap): a mapped file
 * gives the same tensors and logits as a read one, its tensors are views of
 * the mapping (no copy), writing into one never reaches the file (private
 * copy-on-write), missing or empty files fail with typed errors, and the
 * tensors a mapped load had to convert are the ones `inspect` lists.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readSafetensors } from '../lib/io/safetensors.js';
import { loadModelSync } from '../lib/models/load.js';
import { loadCliModel } from '../lib/cli/load.js';
import { quantizeModel } from '../lib/nn/quantize-model.js';
import { saveQuantized } from '../lib/io/quantized-checkpoint.js';
import { mappedLoad } from '../lib/cli/inspect.js';
import { readLlama2c } from '../lib/io/llama2c.js';
import { writeSafetensorsSync } from '../lib/io/safetensors.js';
import { Tensor } from '../lib/tensor.js';
import { fixture, requireFixtures } from './fixtures.js';
import { toBf16Bits } from './half-floats.js';
import { gpt2Parts } from './tiny-models.js';

const present = requireFixtures('stories260K/model.safetensors', 'stories260K/config.json', 'stories260K/tok512.bin');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qk-mmap-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe.skipIf(!present)('mapped safetensors', () => {
  const file = fixture('stories260K/model.safetensors');

  it('gives the read tensors, as views of one mapping', () => {
    const read = readSafetensors(file);
    const mapped = readSafetensors(file, { mmap: true });
    expect(mapped.names).toEqual(read.names);
    const size = fs.statSync(file).size;
    for (const n of read.names) {
      const a = read.get(n), b = mapped.get(n);
      expect(b.shape).toEqual(a.shape);
      expect(Buffer.from(b.data.buffer, b.data.byteOffset, b.data.byteLength).equals(Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength))).toBe(true);
      expect(b.data.buffer.byteLength).toBe(size); // a view, not a copy
    }
  });

  it('writes into a mapped tensor stay in this process (copy-on-write)', () => {
    const copy = path.join(tmp, 'copy.safetensors');
    fs.copyFileSync(file, copy);
    const before = fs.readFileSync(copy);
    const t = readSafetensors(copy, { mmap: true }).get('model.norm.weight');
    (t.data as Float32Array)[0] = 12345;
    expect((t.data as Float32Array)[0]).toBe(12345);
    expect(fs.readFileSync(copy).equals(before)).toBe(true);
  });

  it('a mapped model (HF folder and quantkit checkpoint) gives the logits of a read one', async () => {
    const tokens = [1, 403, 407, 261, 378];
    for (const q of [false, true]) {
      let dir = fixture('stories260K');
      if (q) {
        const m = loadModelSync(dir, { tokenizerPath: fixture('stories260K/tok512.bin') }).model;
        const summary = quantizeModel(m, { weights: 'int4', groupSize: 32 });
        dir = path.join(tmp, 'ckpt');
        await saveQuantized(m, summary, [fixture('stories260K/tok512.bin')], dir, JSON.parse(fs.readFileSync(fixture('stories260K/config.json'), 'utf8')) as Record<string, unknown>);
      }
      const a = loadCliModel(dir, fixture('stories260K/tok512.bin')).model;
      const b = loadCliModel(dir, fixture('stories260K/tok512.bin'), undefined, { mmap: true }).model;
      expect(b.forward(tokens, b.createCache()).data).toEqual(a.forward(tokens, a.createCache()).data);
    }
  });

  it('fails with typed errors on a missing or empty file, and checks the option', () => {
    expect(() => readSafetensors(path.join(tmp, 'nope.safetensors'), { mmap: true })).toThrow(expect.objectContaining({ code: 'ERR_NOT_FOUND' }));
    const empty = path.join(tmp, 'empty.safetensors');
    fs.writeFileSync(empty, '');
    expect(() => readSafetensors(empty, { mmap: true })).toThrow(expect.objectContaining({ code: 'ERR_BAD_FILE' }));
    expect(() => readSafetensors(tmp, { mmap: true })).toThrow(expect.objectContaining({ code: 'ERR_BAD_FILE' }));
    expect(() => loadModelSync(fixture('stories260K'), { mmap: 'yes' as unknown as boolean })).toThrow(/options\.mmap/);
  });
});

describe('what a mapped load converts (quantkit inspect)', () => {
  it('lists the transposed Conv1D weights and the widened bf16 norms of a GPT-2 folder, nothing else', () => {
    const { config, tensors } = gpt2Parts(5);
    const dir = path.join(tmp, 'gpt2-bf16');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
    const map = new Map<string, Tensor>();
    for (const n of tensors.names) {
      const t = tensors.get(n);
      // the LayerNorm gains in bf16: loaded as f32 (TS loops read them), so converted
      map.set(n, /ln_\w+\.weight$/.test(n) ? new Tensor('bf16', t.shape, Uint16Array.from(t.data as Float32Array, toBf16Bits)) : t);
    }
    writeSafetensorsSync(path.join(dir, 'model.safetensors'), map);
    const r = mappedLoad(loadModelSync(dir, { mmap: true }).model);
    const reasons = new Map(r.converted.map((c) => [c.name, c.reason]));
    const expected = new Map<string, string>();
    for (let i = 0; i < 2; i++) {
      const p = `transformer.h.${i}`;
      expect(reasons.get(`${p}.attn.c_attn.weight`)).toBe('transposed: Conv1D [32, 96] -> [96, 32]');
      for (const n of ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj']) expected.set(`${p}.${n}.weight`, 'transposed');
      for (const n of ['ln_1', 'ln_2']) expected.set(`${p}.${n}.weight`, 'bf16 -> f32');
    }
    expected.set('transformer.ln_f.weight', 'bf16 -> f32');
    expect(new Map([...reasons].map(([n, why]) => [n, why.split(':')[0]!]))).toEqual(expected);
    // everything else (embeddings, biases) is a view of the mapping
    expect(r.mappedTensors).toBe(tensors.names.length - expected.size);
    // read, not mapped: every tensor is a copy
    expect(mappedLoad(loadModelSync(dir).model).mappedTensors).toBe(0);
  });

  it.skipIf(!present)('an HF folder in f32 and a quantkit checkpoint map whole; a llama2.c .bin maps but for its RoPE-permuted q/k', () => {
    expect(mappedLoad(loadModelSync(fixture('stories260K'), { mmap: true }).model).converted).toEqual([]);
    expect(mappedLoad(loadCliModel(path.join(tmp, 'ckpt'), fixture('stories260K/tok512.bin'), undefined, { mmap: true }).model).converted).toEqual([]);
    const bin = fixture('stories260K/stories260K.bin');
    const mapped = loadModelSync(bin, { mmap: true }).model;
    const r = mappedLoad(mapped);
    expect(r.converted.map((c) => c.name)).toEqual(Array.from({ length: 5 }, (_, i) => ['q', 'k'].map((x) => `model.layers.${i}.self_attn.${x}_proj.weight`)).flat());
    expect(new Set(r.converted.map((c) => c.reason))).toEqual(new Set(['permuted: llama2.c RoPE rows -> rotate-half order']));
    // the same logits as a read load
    const read = loadModelSync(bin).model;
    const tokens = [1, 403, 407, 261, 378];
    expect(mapped.forward(tokens, mapped.createCache()).data).toEqual(read.forward(tokens, read.createCache()).data);
    // the reader maps as safetensors does: every tensor a view of one mapping of the file
    const ck = readLlama2c(bin, { mmap: true });
    for (const n of ck.names) expect(ck.get(n).data.buffer.byteLength).toBe(fs.statSync(bin).size);
  });
});
