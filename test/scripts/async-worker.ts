/**
 * Runs inside a worker thread (tests spawn it): loops one async entry point
 * forever so the parent can terminate() the worker, or this worker calls
 * process.exit(), while native work is in flight.
 * workerData: { op: 'matmul' | 'quantize' | 'w8a8' | 'w4a8' | 'w8a8-shared' | 'w4a8-shared' | 'attention' | 'gptq', exit: boolean }
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Tensor, quantize, quantizeAsync, matmulAsync, QLinear, Linear, gptqQuantizeAsync } from '../../lib/index.js';
import { causalAttentionOpAsync } from '../../lib/ops/attention.js';

const { op, exit } = workerData as { op: string; exit: boolean };
const K = 512, N = 512, M = 8;
function rand(shape: number[], seed: number): Tensor<'f32'> {
  let s = seed;
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) { s = (s * 1103515245 + 12345) >>> 0; v[i] = s / 2 ** 31 - 1; }
  return Tensor.fromArray(v, shape);
}
const w = rand([N, K], 1);
const x = rand([M, K], 2);
const lin = new Linear(w);
const q8 = quantize(w, { bits: 8 });
const w8a8 = QLinear.fromLinear(lin, { bits: 8, activations: 'int8' });
const w4a8 = QLinear.fromLinear(lin, { bits: 4, groupSize: 32, activations: 'int8' });
// a Hessian for GPTQ (its factor, walk, updates and clipping search run async)
const h = new Float64Array(K * K);
for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) h[i * K + j] = (i === j ? 2 : 0) + 1 / (1 + Math.abs(i - j));

async function once(): Promise<unknown> {
  switch (op) {
    case 'matmul': return matmulAsync(x, q8);
    case 'quantize': return quantizeAsync(w, { bits: 4, groupSize: 32 });
    case 'w8a8': return w8a8.forwardAsync(x);
    case 'w4a8': return w4a8.forwardAsync(x);
    case 'w8a8-shared': return QLinear.forwardSharedAsync([w8a8, w8a8], x, [undefined, undefined]);
    case 'w4a8-shared': return QLinear.forwardSharedAsync([w4a8, w4a8, w4a8], x, [undefined, undefined, undefined]);
    case 'attention': {
      const T = 64, H = 8, D = 64;
      return causalAttentionOpAsync({
        q: new Float32Array(H * D), T: 1, pos0: T - 1, scale: 0.125, keys: new Float32Array(T * H * D), values: new Float32Array(T * H * D),
        nHeads: H, nKvHeads: H, headDim: D,
      });
    }
    case 'gptq': return gptqQuantizeAsync(w, h, { bits: 4, scheme: 'asymmetric', groupSize: 32 });
    default: throw new Error(`unknown op ${op}`);
  }
}

let n = 0;
parentPort!.postMessage('ready');
for (;;) {
  // Several calls in flight at once, so termination finds work queued and running.
  const inflight = [once(), once(), once()];
  if (exit && ++n === 3) process.exit(0);
  await Promise.all(inflight);
}
