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
import { hugeArray, hugeBytes } from '../lib/ops/huge-pages.js';
import { readFileUnpooled } from '../lib/io/safetensors.js';
import { quantize } from '../lib/quant/quantize.js';
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
        if (a.byteLength >= 1024) expect(addon.lineOffset(a)).toBe(0);
      }
    }
    // what quantize() returns: int8 codes and packed int4 codes
    const w = new Tensor('f32', [64, 96], new Float32Array(64 * 96).map((_, i) => Math.cos(i)));
    expect(addon.lineOffset(quantize(w, { bits: 8 }).data)).toBe(0);
    expect(addon.lineOffset(quantize(w, { bits: 4, groupSize: 32 }).data)).toBe(0);
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

  it('hugeBytes is a zeroed array at byteOffset 0; a file read whole lands in one, byte for byte', () => {
    const a = hugeBytes(5 * MiB + 3);
    expect(a.byteOffset).toBe(0);
    expect(a.length).toBe(5 * MiB + 3);
    expect(a.every((v) => v === 0)).toBe(true);
    const file = path.join(tmp, 'read.bin');
    const bytes = Buffer.alloc(4 * MiB + 17);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 31 + (i >> 12)) & 255;
    fs.writeFileSync(file, bytes);
    const got = readFileUnpooled(file, 'test file');
    expect(got.byteOffset).toBe(0);
    expect(got.equals(bytes)).toBe(true);
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
