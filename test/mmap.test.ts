/**
 * Mapped weights (ReadOptions.mmap, LoadModelOptions.mmap): a mapped file
 * gives the same tensors and logits as a read one, its tensors are views of
 * the mapping (no copy), writing into one never reaches the file (private
 * copy-on-write), and missing or empty files fail with typed errors.
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
import { fixture, requireFixtures } from './fixtures.js';

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
