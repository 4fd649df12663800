/**
 * Async calls own the buffers they read and write. Transferring one away
 * while the call runs used to be a use-after-free (SIGSEGV, or silently wrong
 * numbers with small buffers); now the buffers are marked untransferable for
 * the call (a transfer copies instead), and resizable ArrayBuffers, which
 * could shrink under the call, are refused up front with a TypeError.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Linear, QLinear, Tensor, matmul, matmulAsync, quantize, quantizeAsync } from '../lib/index.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** A [rows, K] f32 tensor over a resizable ArrayBuffer. */
function resizable(rows: number, K: number): Tensor<'f32'> {
  // (ES2024 constructor form; the project's TS lib predates it)
  const Resizable = ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => ArrayBuffer;
  const ab = new Resizable(rows * K * 4, { maxByteLength: rows * K * 8 });
  const t = Tensor.fromBuffer('f32', [rows, K], ab);
  (t.data as Float32Array).forEach((_, i, a) => (a[i] = Math.sin(i)));
  return t;
}

describe('async calls own their buffers', () => {
  it('transferring input, weight and output away during the call: no crash, same numbers', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'test/scripts/transfer-during-async.ts')], {
      cwd: ROOT, encoding: 'utf8', timeout: 120_000,
    });
    expect(r.signal, r.stderr).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(out).toEqual({
      matmulAsync: { kept: 2, equal: true },
      quantizeAsync: { kept: 1, equal: true },
      w8a8ForwardAsync: { kept: 1, equal: true },
    });
  }, 150_000);

  it('resizable ArrayBuffers: refused by async calls with a TypeError naming the argument, fine in sync calls', async () => {
    const x = resizable(2, 16), w = resizable(3, 16);
    const fixedX = new Tensor('f32', [2, 16], (x.data as Float32Array).slice());
    const fixedW = new Tensor('f32', [3, 16], (w.data as Float32Array).slice());
    expect(matmul(x, w).data).toEqual(matmul(fixedX, fixedW).data);
    await expect(matmulAsync(x, fixedW)).rejects.toThrow(TypeError);
    await expect(matmulAsync(x, fixedW)).rejects.toThrow(/'x' is backed by a resizable ArrayBuffer/);
    await expect(matmulAsync(fixedX, w)).rejects.toThrow(/'w' is backed by a resizable ArrayBuffer/);
    await expect(quantizeAsync(w, { bits: 8 })).rejects.toThrow(/'src' is backed by a resizable ArrayBuffer/);
    expect(quantize(w, { bits: 8 }).data).toEqual(quantize(fixedW, { bits: 8 }).data);
    const lin = QLinear.fromLinear(new Linear(fixedW), { bits: 8, activations: 'int8' });
    await expect(lin.forwardAsync(x)).rejects.toThrow(/'x' is backed by a resizable ArrayBuffer/);
  });

  it('after an async call the buffers stay usable and a later transfer copies', async () => {
    const x = new Tensor('f32', [1, 4], Float32Array.from([1, 2, 3, 4]));
    const w = new Tensor('f32', [1, 4], Float32Array.from([1, 1, 1, 1]));
    expect((await matmulAsync(x, w)).data[0]).toBe(10);
    const c = structuredClone(x.data.buffer, { transfer: [x.data.buffer as ArrayBuffer] });
    expect(x.data.byteLength).toBe(16);
    expect(new Float32Array(c as ArrayBuffer)).toEqual(Float32Array.from([1, 2, 3, 4]));
  });
});
