/**
 * The Promise forms run off the main thread: a timer fires while a long call
 * runs, many concurrent calls equal serial ones, and the addon loads and
 * works inside worker_threads.
 */
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { Linear, Tensor, matmul, matmulAsync, quantize, quantizeAsync } from '../lib/index.js';
import { randomF32 } from './helpers.js';

describe('async API', () => {
  it('keeps the event loop responsive during a long matmul', async () => {
    const K = 2048, N = 2048, M = 256; // ~2 GFLOP: long enough for a 5 ms timer to fire many times
    const w = new Tensor('f32', [N, K], randomF32(N * K, 1));
    const x = new Tensor('f32', [M, K], randomF32(M * K, 2));
    // Event-loop turns while the work is in flight, counted with setImmediate
    // (not a timer: the count must not depend on the clock of a busy VM).
    let turns = 0;
    let settled = false;
    const spin = () => {
      if (settled) return;
      turns++;
      setImmediate(spin);
    };
    const p = matmulAsync(x, w).then((y) => {
      settled = true;
      return y;
    });
    // The promise has not settled synchronously: the work is on another thread.
    expect(settled).toBe(false);
    setImmediate(spin);
    const y = await p;
    expect(turns).toBeGreaterThan(1);
    expect(Array.from(y.data.subarray(0, 64))).toEqual(Array.from(matmul(x, w).data.subarray(0, 64)));
  });

  it('gives results identical to serial calls when many run at once', async () => {
    const K = 256, N = 130;
    const w = new Tensor('f32', [N, K], randomF32(N * K, 3));
    const weights = [w, quantize(w), quantize(w, { bits: 4, scheme: 'asymmetric', groupSize: 32 })];
    const xs = Array.from({ length: 12 }, (_, i) => new Tensor('f32', [1 + (i % 5) * 7, K], randomF32((1 + (i % 5) * 7) * K, 10 + i)));
    const jobs = xs.flatMap((x) => weights.map((wt) => ({ x, wt })));
    const serial = jobs.map(({ x, wt }) => Array.from(matmul(x, wt).data));
    const parallel = await Promise.all(jobs.map(({ x, wt }) => matmulAsync(x, wt)));
    parallel.forEach((y, i) => expect(Array.from(y.data)).toEqual(serial[i]));
    const qs = await Promise.all([quantizeAsync(w), quantizeAsync(w, { bits: 4 }), quantizeAsync(w, { bits: 2 })]);
    expect(Array.from(qs[0]!.data)).toEqual(Array.from(quantize(w).data));
    expect(Array.from(qs[1]!.data)).toEqual(Array.from(quantize(w, { bits: 4 }).data));
    const lin = new Linear(w);
    expect(Array.from((await lin.forwardAsync(xs[0]!)).data)).toEqual(Array.from(lin.forward(xs[0]!).data));
  });

  it('rejects bad input with the same errors as the sync forms', async () => {
    const w = new Tensor('f32', [4, 8], randomF32(32, 4));
    await expect(matmulAsync(new Tensor('f32', [1, 7], new Float32Array(7)), w)).rejects.toThrow(/'x' has last dimension 7/);
    const bad = randomF32(32, 5);
    bad[9] = NaN;
    await expect(quantizeAsync(new Tensor('f32', [4, 8], bad, 'w'))).rejects.toMatchObject({ code: 'ERR_NONFINITE' });
  });

  it('works in worker_threads', async () => {
    // Each worker loads the addon itself (a context-aware N-API module with
    // no global JS state) and runs sync and async calls while the main
    // thread does the same.
    const root = new URL('..', import.meta.url).pathname;
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const addon = require('node-gyp-build')(workerData.root);
      const x = Float32Array.from([1, 1, 1, 1]);
      const w = Float32Array.from([1, 2, 3, 4, 0, 1, 0, 1, -1, -1, -1, -1]);
      const y1 = new Float32Array(3), y2 = new Float32Array(3);
      addon.gemm(x, 1, 4, 0, w, 3, 4, null, null, null, y1);
      addon.gemmAsync(x, 1, 4, 0, w, 3, 4, null, null, null, y2)
        .then(() => parentPort.postMessage({ isa: addon.isa(), y1: Array.from(y1), y2: Array.from(y2) }))
        .catch((e) => parentPort.postMessage(String(e)));
    `;
    const results = await Promise.all(
      [0, 1, 2].map(
        () =>
          new Promise<unknown>((resolve, reject) => {
            const wk = new Worker(code, { eval: true, workerData: { root } });
            wk.once('message', (m) => {
              resolve(m);
              void wk.terminate();
            });
            wk.once('error', reject);
          }),
      ),
    );
    const main = await matmulAsync(new Tensor('f32', [1, 4], Float32Array.from([1, 1, 1, 1])), new Tensor('f32', [3, 4], Float32Array.from([1, 2, 3, 4, 0, 1, 0, 1, -1, -1, -1, -1])));
    for (const r of results) {
      expect(typeof r, String(r)).toBe('object');
      const { y1, y2 } = r as { y1: number[]; y2: number[] };
      expect(y1).toEqual([10, 2, -4]);
      expect(y2).toEqual([10, 2, -4]);
    }
    expect(Array.from(main.data)).toEqual([10, 2, -4]);
  });
});
