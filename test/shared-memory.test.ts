/**
 * SharedArrayBuffer-backed tensors: how worker threads share one copy of the
 * weights. Every native call used to reject them with a bare
 * Error("Invalid argument") (the addon read the backing store through the
 * ArrayBuffer-only N-API call); they now work like ordinary buffers, sync and
 * async, from several threads at once.
 */
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { QLinear, Linear, QuantizedTensor, Tensor, matmul, matmulAsync, quantize, quantizeAsync, dequantize } from '../lib/index.js';

function rand(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    v[i] = s / 2 ** 31 - 1;
  }
  return v;
}

/** The same values in a SharedArrayBuffer. */
function shared<T extends Float32Array | Uint8Array | Int8Array>(a: T): T {
  const sab = new SharedArrayBuffer(a.byteLength);
  const c = new (a.constructor as new (b: SharedArrayBuffer) => T)(sab);
  c.set(a as never);
  return c;
}

const M = 3, K = 64, N = 17;
const xv = rand(M * K, 1), wv = rand(N * K, 2);

describe('SharedArrayBuffer-backed tensors', () => {
  it('matmul, quantize, dequantize and QLinear give the same numbers as ordinary buffers', async () => {
    const x = Tensor.fromArray(xv, [M, K]);
    const w = Tensor.fromArray(wv, [N, K]);
    const xs = Tensor.fromBuffer('f32', [M, K], shared(xv).buffer);
    const ws = Tensor.fromBuffer('f32', [N, K], shared(wv).buffer);
    expect(xs.data.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(matmul(xs, ws).data).toEqual(matmul(x, w).data);
    expect((await matmulAsync(xs, ws)).data).toEqual(matmul(x, w).data);
    for (const opts of [{ bits: 8 as const }, { bits: 4 as const, groupSize: 32 }]) {
      const q = quantize(w, opts);
      const qs = quantize(ws, opts);
      expect(qs.data).toEqual(q.data);
      expect((await quantizeAsync(ws, opts)).scales).toEqual(q.scales);
      expect(dequantize(qs).data).toEqual(dequantize(q).data);
      expect(matmul(xs, qs).data).toEqual(matmul(x, q).data);
    }
    for (const opts of [{ bits: 8 as const, activations: 'int8' as const }, { bits: 4 as const, groupSize: 32, activations: 'int8' as const }]) {
      const ref = QLinear.fromLinear(new Linear(w), opts).forward(x).data;
      const ql = QLinear.fromLinear(new Linear(ws), opts);
      expect(ql.forward(xs).data).toEqual(ref);
      expect((await ql.forwardAsync(xs)).data).toEqual(ref);
    }
  });

  it('three worker threads share one int4 weight and input, each result equals the main thread', async () => {
    const q = quantize(Tensor.fromArray(wv, [N, K]), { bits: 4, groupSize: 32 });
    const x = Tensor.fromArray(xv, [M, K]);
    const ref = matmul(x, q).data;
    const codes = shared(q.data as Uint8Array);
    const scales = shared(q.scales);
    const xs = shared(xv);
    const init = { bits: q.bits, scheme: q.scheme, granularity: q.granularity, groupSize: q.groupSize, shape: q.shape };
    const results = await Promise.all(
      [0, 1, 2].map(
        () =>
          new Promise<{ sync: Float32Array; async: Float32Array }>((resolve, reject) => {
            const worker = new Worker(new URL('./scripts/ts-worker.mjs', import.meta.url), {
              workerData: {
                script: new URL('./scripts/shared-weight-worker.ts', import.meta.url).href,
                x: xs.buffer, codes: codes.buffer, scales: scales.buffer, shape: [M, K, N], wInit: init,
              },
            });
            worker.once('message', (m) => { resolve(m); void worker.terminate(); });
            worker.once('error', reject);
          }),
      ),
    );
    for (const r of results) {
      expect(r.sync).toEqual(ref);
      expect(r.async).toEqual(ref);
    }
  }, 60_000);

  it('QuantizedTensor over shared memory keeps it shared (no copy)', () => {
    const q = quantize(Tensor.fromArray(wv, [N, K]), { bits: 8 });
    const qs = new QuantizedTensor({ bits: 8, scheme: q.scheme, granularity: q.granularity, shape: q.shape, data: shared(q.data as Int8Array), scales: shared(q.scales) });
    expect(qs.data.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(matmul(Tensor.fromArray(xv, [M, K]), qs).data).toEqual(matmul(Tensor.fromArray(xv, [M, K]), q).data);
  });
});
