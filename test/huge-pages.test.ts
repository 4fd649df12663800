/**
 * Weight arrays on 64-byte lines and advised onto huge pages (lib/ops/huge-pages.ts): the advice
 * covers whole 2 MiB pages inside the array only, never memory mapped from a
 * file, and never changes a byte; quantize() gives the same codes either way.
 * (Whether the kernel grants huge pages depends on the machine: THP may be
 * off, so these tests check the bounds, not that pages moved.)
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { addon } from '../lib/binding.js';
import { readFileUnpooled, readSafetensors, readSafetensorsAsync, writeSafetensorsSync } from '../lib/io/safetensors.js';
import { hugeArray, lineArray } from '../lib/ops/huge-pages.js';
import { Linear } from '../lib/nn/linear.js';
import { Scratch } from '../lib/nn/scratch.js';
import { quantize, toFloat32 } from '../lib/quant/quantize.js';
import { gptqQuantize } from '../lib/quant/gptq.js';
import { transpose2d } from '../lib/models/gpt2.js';
import { llama2cToHfRoPERows } from '../lib/io/llama2c.js';
import { Tensor } from '../lib/tensor.js';

const MiB = 1 << 20;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qk-huge-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('weight arrays on cache lines', () => {
  it('lineOffset gives the bytes to the next 64-byte line', () => {
    const buf = new Uint8Array(4096);
    const o = addon.lineOffset(buf);
    expect(o).toBeGreaterThanOrEqual(0);
    expect(o).toBeLessThan(64);
    for (const d of [0, 1, 15, 16, 63, 64, 100]) expect(addon.lineOffset(buf.subarray(d))).toBe((o - d + 6400) % 64);
    expect(() => addon.lineOffset({} as unknown as Uint8Array)).toThrow(TypeError);
    expect(() => addon.lineOffset(new ArrayBuffer(8) as unknown as Uint8Array)).toThrow(/view/);
  });

  it('hugeArray starts arrays of 1 KiB and more on a line, for every element type', () => {
    const make = [Int8Array, Uint8Array, Uint16Array, Int32Array, Float32Array].map((C) => (n: number) => hugeArray(C as Float32ArrayConstructor, n) as ArrayBufferView & { length: number });
    for (const alloc of make) {
      for (const n of [1024, 4097, 3 * MiB]) {
        const a = alloc(n);
        expect(a.length).toBe(n);
        expect(addon.lineOffset(a)).toBe(0);
      }
    }
    // what quantize() returns: int8 codes and packed int4 codes
    const w = new Tensor('f32', [64, 96], new Float32Array(64 * 96).map((_, i) => Math.cos(i)));
    expect(addon.lineOffset(quantize(w, { bits: 8 }).data)).toBe(0);
    expect(addon.lineOffset(quantize(w, { bits: 4, groupSize: 32 }).data)).toBe(0);
    // and the scales, f32 or rounded to f16 (large enough to be placed: 1 KiB and more)
    const wide = new Tensor('f32', [64, 1024], new Float32Array(64 * 1024).map((_, i) => Math.sin(i)));
    expect(addon.lineOffset(quantize(wide, { bits: 4, groupSize: 32 }).scaleData)).toBe(0);
    expect(addon.lineOffset(quantize(wide, { bits: 4, groupSize: 32, scaleDtype: 'f16' }).scaleData)).toBe(0);
  });

  it('lineArray does the same without the advice, and activations land on lines', () => {
    for (const n of [256, 4097, 3 * MiB]) {
      const a = lineArray(Float32Array, n);
      expect(a.length).toBe(n);
      expect(a.every((v) => v === 0)).toBe(true);
      expect(addon.lineOffset(a)).toBe(0);
    }
    // a scratch slot (a block's activations) and a Linear's own output
    expect(addon.lineOffset(new Scratch().f32('x', 3 * 768))).toBe(0);
    const lin = new Linear(new Tensor('f32', [300, 8], new Float32Array(2400).fill(0.5)));
    expect(addon.lineOffset(lin.forward(new Tensor('f32', [2, 8], new Float32Array(16).fill(1))).data)).toBe(0);
  });
});

describe('weights the loaders and quantizers make start on lines', () => {
  it("GPT-2's transposed Conv1D weights, llama2.c's permuted q/k rows, f16/bf16 widened to f32, GPTQ's scales and zero points", () => {
    const w = new Tensor('f32', [48, 64], new Float32Array(48 * 64).map((_, i) => Math.sin(i)));
    const t = transpose2d(w);
    expect(addon.lineOffset(t.data)).toBe(0);
    expect(t.data[5 * 48 + 7]).toBe(w.data[7 * 64 + 5]);
    const h16 = transpose2d(new Tensor('f16', [16, 64], new Uint16Array(16 * 64).map((_, i) => i)));
    expect(addon.lineOffset(h16.data)).toBe(0);
    expect(h16.data[3 * 16 + 2]).toBe(2 * 64 + 3);
    expect(addon.lineOffset(llama2cToHfRoPERows(w, 4).data)).toBe(0);
    const wide = toFloat32(new Tensor('bf16', [32, 64], new Uint16Array(32 * 64).fill(0x3f80)));
    expect(addon.lineOffset(wide.data)).toBe(0);
    expect(wide.data[100]).toBe(1);
    const K = 512, N = 32; // 1024 groups: arrays of 1 KiB and more are placed
    const x = new Float32Array(N * K).map((_, i) => Math.cos(i * 0.7));
    const h = new Float64Array(K * K);
    for (let j = 0; j < K; j++) h[j * K + j] = 1 + (j % 5);
    const q = gptqQuantize(new Tensor('f32', [N, K], x), h, { bits: 4, scheme: 'asymmetric', groupSize: 16 });
    expect(addon.lineOffset(q.scaleData)).toBe(0);
    expect(addon.lineOffset(q.zeroPoints!)).toBe(0);
  });
});

describe('huge pages for weight arrays', () => {
  it('advise whole 2 MiB pages inside the array, and nothing for small ones', () => {
    expect(addon.adviseHugePages(new Uint8Array(64))).toBe(0);
    const big = new Uint8Array(9 * MiB + 123);
    const n = addon.adviseHugePages(big);
    expect(n % (2 * MiB)).toBe(0);
    expect(n).toBeLessThanOrEqual(big.byteLength);
    // a view advises only its own bytes
    expect(addon.adviseHugePages(big.subarray(0, MiB))).toBe(0);
    // 9 MiB hold at least 3 aligned pages (on a Linux built with THP)
    if (fs.existsSync('/sys/kernel/mm/transparent_hugepage/enabled')) expect(n).toBeGreaterThanOrEqual(6 * MiB);
  });

  it('a file read whole lands on a line, byte for byte; a written safetensors file puts whole-line tensors on lines', async () => {
    const file = path.join(tmp, 'read.bin');
    const bytes = Buffer.alloc(4 * MiB + 17);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 31 + (i >> 12)) & 255;
    fs.writeFileSync(file, bytes);
    const got = readFileUnpooled(file, 'test file');
    expect(addon.lineOffset(got)).toBe(0);
    expect(got.equals(bytes)).toBe(true);
    // odd-sized tensors first in the map: the line-sized ones still start on lines, the rest on their element size
    const st = path.join(tmp, 'lines.safetensors');
    const ts = new Map<string, Tensor>([
      ['odd_u8', new Tensor('u8', [3], Uint8Array.of(1, 2, 3))],
      ['odd_f32', new Tensor('f32', [5], Float32Array.of(1, 2, 3, 4, 5))],
      ['w_i8', new Tensor('i8', [64, 96], new Int8Array(64 * 96).map((_, i) => i % 251))],
      ['odd_f16', new Tensor('f16', [3], Uint16Array.of(1, 2, 3))],
      ['w_f32', new Tensor('f32', [16, 48], new Float32Array(16 * 48).map((_, i) => i / 7))],
    ]);
    writeSafetensorsSync(st, ts);
    for (const mmap of [false, true]) {
      const f = readSafetensors(st, { mmap });
      for (const [name, t] of ts) {
        const r = f.get(name);
        expect(Array.from(r.data as ArrayLike<number>), name).toEqual(Array.from(t.data as ArrayLike<number>));
        expect(r.data.byteOffset % r.data.BYTES_PER_ELEMENT).toBe(0);
        if (name.startsWith('w_')) expect(addon.lineOffset(r.data), name).toBe(0);
      }
      // the header keeps the order the tensors were given in
      expect([...f.names]).toEqual([...ts.keys()]);
    }
    const fa = await readSafetensorsAsync(st);
    expect(addon.lineOffset(fa.get('w_i8').data)).toBe(0);
    expect(Array.from(fa.get('odd_f32').data as Float32Array)).toEqual([1, 2, 3, 4, 5]);
  });

  it("a safetensors file whose data section starts mid-line (Hugging Face pads its header to 8 bytes) is read with the tensors on lines", async () => {
    // data section at 8 mod 64, tensors of whole lines after it, and one odd tensor last
    const w = new Float32Array(32 * 48).map((_, i) => Math.sin(i) * 3);
    const b = new Float32Array(5).map((_, i) => i - 2.5);
    const header = { w: { dtype: 'F32', shape: [32, 48], data_offsets: [0, w.byteLength] }, b: { dtype: 'F32', shape: [5], data_offsets: [w.byteLength, w.byteLength + b.byteLength] } };
    let json = JSON.stringify(header);
    while ((8 + json.length) % 64 !== 8) json += ' ';
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    const file = path.join(tmp, 'hf-style.safetensors');
    fs.writeFileSync(file, Buffer.concat([len, Buffer.from(json), Buffer.from(w.buffer), Buffer.from(b.buffer)]));
    for (const f of [readSafetensors(file), await readSafetensorsAsync(file)]) {
      expect(addon.lineOffset(f.get('w').data)).toBe(0);
      expect(Array.from(f.get('w').data as Float32Array)).toEqual(Array.from(w));
      expect(Array.from(f.get('b').data as Float32Array)).toEqual(Array.from(b));
    }
    // mapped, the pages are the file's: the tensor stays where the file puts it, zero-copy
    const mapped = readSafetensors(file, { mmap: true }).get('w');
    expect(addon.lineOffset(mapped.data)).toBe(56);
    expect(Array.from(mapped.data as Float32Array)).toEqual(Array.from(w));
    // a file too short for a header length still reads (and fails in the parser, naming the file)
    const short = path.join(tmp, 'short.safetensors');
    fs.writeFileSync(short, Buffer.from([1, 2, 3]));
    expect(() => readSafetensors(short)).toThrow(/short\.safetensors.*truncated/);
    await expect(readSafetensorsAsync(short)).rejects.toThrow(/truncated/);
  });

  it('leave memory mapped from a file alone', () => {
    const file = path.join(tmp, 'w.bin');
    fs.writeFileSync(file, Buffer.alloc(8 * MiB, 7));
    const mapped = new Uint8Array(addon.mapFile(file));
    expect(addon.adviseHugePages(mapped)).toBe(0);
    expect(mapped[0]).toBe(7);
  });

  it('refuse what is not a typed array', () => {
    expect(() => addon.adviseHugePages({} as unknown as Uint8Array)).toThrow(TypeError);
    expect(() => addon.adviseHugePages(new ArrayBuffer(8) as unknown as Uint8Array)).toThrow(/view/);
  });

  it('keep every byte: hugeArray is a zeroed array, and quantize() codes do not depend on the advice', () => {
    const a = hugeArray(Float32Array, 3 * MiB);
    expect(a.length).toBe(3 * MiB);
    expect(a.every((v) => v === 0)).toBe(true);
    const K = 1024, N = 4096; // int8 codes 4 MiB: advised
    const w = new Float32Array(N * K);
    for (let i = 0; i < w.length; i++) w[i] = Math.sin(i * 0.013) * (1 + (i % 7));
    const q = quantize(new Tensor('f32', [N, K], w), { bits: 8 });
    const plain = new Int8Array(q.data.length);
    plain.set(q.data as Int8Array);
    addon.adviseHugePages(plain); // advising written memory changes nothing either
    expect(Buffer.from(plain.buffer).equals(Buffer.from((q.data as Int8Array).buffer, (q.data as Int8Array).byteOffset, q.data.byteLength))).toBe(true);
    // the same codes as quantizing a copy of the rows one by one
    const row = quantize(new Tensor('f32', [1, K], w.subarray(5 * K, 6 * K)), { bits: 8 });
    expect(Array.from(row.data as Int8Array)).toEqual(Array.from((q.data as Int8Array).subarray(5 * K, 6 * K)));
  });
});
