/**
 * NaN/Inf in a file's float weights or quantization scales is refused at load
 * (ERR_NONFINITE naming the file, the tensor and the flat index) instead of
 * loading silently and producing NaN logits. Covers f32/f16/bf16
 * safetensors, quantkit checkpoints (scales) and llama2.c checkpoints.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { QuantkitError } from '../lib/errors.js';
import { parseLlama2c } from '../lib/io/llama2c.js';
import { loadQuantizedWeights, saveQuantized } from '../lib/io/quantized-checkpoint.js';
import { readSafetensors, writeSafetensorsSync } from '../lib/io/safetensors.js';
import { firstHuge, firstNonFinite } from '../lib/io/finite.js';
import { quantizeModel } from '../lib/nn/quantize-model.js';
import { Tensor } from '../lib/tensor.js';
import { TinyLM } from './tiny-lm.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qk-nonfinite-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function expectNonFinite(f: () => unknown, ...parts: string[]): void {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(QuantkitError);
  expect((err as QuantkitError).code).toBe('ERR_NONFINITE');
  for (const p of parts) expect((err as Error).message).toContain(p);
}

/** Offset in the file of tensor `name`'s first byte (header parsed by hand). */
function dataOffset(file: string, name: string): number {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  return 8 + n + header[name].data_offsets[0];
}

describe('non-finite values are refused at load', () => {
  it('firstNonFinite finds NaN, +-Inf in f32, f16 and bf16 bit patterns, and passes finite extremes', () => {
    expect(firstNonFinite(Tensor.fromArray([1, -3.4e38, 3.4e38, 1e-45]))).toBe(-1);
    expect(firstNonFinite(Tensor.fromArray([1, 2, NaN]))).toBe(2);
    expect(firstNonFinite(Tensor.fromArray([-Infinity, 0]))).toBe(0);
    // f16: 0x7bff is the largest finite, 0x7c00 +Inf, 0xfe00 a NaN
    expect(firstNonFinite(new Tensor('f16', [3], Uint16Array.from([0x7bff, 0xfbff, 0x0001])))).toBe(-1);
    expect(firstNonFinite(new Tensor('f16', [3], Uint16Array.from([0x3c00, 0x7c00, 0])))).toBe(1);
    expect(firstNonFinite(new Tensor('f16', [2], Uint16Array.from([0, 0xfe00])))).toBe(1);
    // bf16: 0x7f7f largest finite, 0xff80 -Inf, 0x7fc1 NaN
    expect(firstNonFinite(new Tensor('bf16', [2], Uint16Array.from([0x7f7f, 0xff7f])))).toBe(-1);
    expect(firstNonFinite(new Tensor('bf16', [3], Uint16Array.from([0, 0x3f80, 0xff80])))).toBe(2);
    expect(firstNonFinite(new Tensor('bf16', [1], Uint16Array.from([0x7fc1])))).toBe(0);
    expect(firstNonFinite(new Tensor('i8', [2], Int8Array.from([127, -128])))).toBe(-1);
  });

  it('safetensors: a NaN/Inf weight in f32, f16 or bf16 names the tensor and index', () => {
    const cases: [string, Tensor, string][] = [
      ['f32', Tensor.fromArray([0, 1, 2, NaN, 4], [5]), 'NaN at flat index 3'],
      ['f16', new Tensor('f16', [2, 2], Uint16Array.from([0x3c00, 0, 0, 0xfc00])), '-Infinity at flat index 3'],
      ['bf16', new Tensor('bf16', [3], Uint16Array.from([0x7f80, 0, 0])), 'Infinity at flat index 0'],
    ];
    for (const [dt, t, msg] of cases) {
      const file = path.join(tmp, `${dt}.safetensors`);
      writeSafetensorsSync(file, { ok: Tensor.fromArray([1, 2]), [`layer.${dt}.weight`]: t });
      const st = readSafetensors(file);
      expect(Array.from(st.get('ok').data as Float32Array)).toEqual([1, 2]);
      expectNonFinite(() => st.get(`layer.${dt}.weight`), file, `layer.${dt}.weight`, msg);
    }
  });

  it('quantkit checkpoint: a NaN scale is refused when the checkpoint loads', async () => {
    const m = new TinyLM({});
    const summary = quantizeModel(m, { weights: 'int8' });
    const dir = path.join(tmp, 'ckpt');
    await saveQuantized(m, summary, [], dir, { model_type: 'tiny', hidden_size: 64 });
    const file = path.join(dir, 'model.safetensors');
    const name = Object.keys(JSON.parse(fs.readFileSync(file).subarray(8, 8 + Number(fs.readFileSync(file).readBigUInt64LE(0))).toString()))
      .find((k) => k.endsWith('.scales'))!;
    expect(loadQuantizedWeights(dir)).toBeTruthy();
    const bytes = fs.readFileSync(file);
    bytes.writeFloatLE(NaN, dataOffset(file, name) + 4 * 2);
    fs.writeFileSync(file, bytes);
    expectNonFinite(() => loadQuantizedWeights(dir), name, 'NaN at flat index 2');
  });

  it('huge finite values (|v| >= 2^32) are refused too, in f32 and bf16; f16 cannot hold one', () => {
    expect(firstHuge(Tensor.fromArray([1e4, -4294967000, 1e-30]))).toBe(-1);
    expect(firstHuge(Tensor.fromArray([0, 2 ** 32]))).toBe(1);
    expect(firstHuge(Tensor.fromArray([-3e38, 0]))).toBe(0);
    // bf16 0x4f80 = 2^32, 0x4f7f just below; 0xdf80 = -2^64
    expect(firstHuge(new Tensor('bf16', [2], Uint16Array.from([0x4f7f, 0xcf7f])))).toBe(-1);
    expect(firstHuge(new Tensor('bf16', [3], Uint16Array.from([0, 0x4f80, 0])))).toBe(1);
    expect(firstHuge(new Tensor('f16', [1], Uint16Array.from([0x7bff])))).toBe(-1);
    const file = path.join(tmp, 'huge.safetensors');
    writeSafetensorsSync(file, {
      'a.weight': Tensor.fromArray([0, 0, 1e30], [3]),
      'b.weight': new Tensor('bf16', [2], Uint16Array.from([0x3f80, 0xdf80])),
    });
    const st = readSafetensors(file);
    expectNonFinite(() => st.get('a.weight'), file, "'a.weight'", '1.000e+30 at flat index 2', 'below 2^32');
    expectNonFinite(() => st.get('b.weight'), "'b.weight'", '-1.845e+19 at flat index 1');
  });

  it('llama2.c checkpoint: an Inf weight is refused by the parser', () => {
    // dim 8, hidden 12, 1 layer, 2 heads, 2 kv heads, vocab 10, seq 4 (tied)
    const hdr = [8, 12, 1, 2, 2, 10, 4];
    const floats = 10 * 8 + (2 * 8 + 4 * 8 * 8 + 3 * 12 * 8) + 8 + 4 * 4;
    const head = Buffer.alloc(28);
    hdr.forEach((v, i) => head.writeInt32LE(v, 4 * i));
    const body = new Float32Array(floats).fill(0.5);
    body[10 * 8 + 3] = Infinity; // first layer's first tensor (rms_att_weight), index 3
    const buf = Buffer.concat([head, Buffer.from(body.buffer)]);
    expectNonFinite(() => parseLlama2c(buf, 'inf.bin'), 'inf.bin', 'Infinity at flat index 3');
  });
});
