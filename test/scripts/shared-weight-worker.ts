/**
 * Worker side of the shared-memory test: wraps the SharedArrayBuffers it is
 * given (one copy of an int4 weight and of the input, shared by every
 * worker) as quantkit tensors, runs matmul and matmulAsync, and posts the
 * results back.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { QuantizedTensor, Tensor, matmul, matmulAsync } from '../../lib/index.js';

const { x, codes, scales, shape, wInit } = workerData as {
  x: SharedArrayBuffer;
  codes: SharedArrayBuffer;
  scales: SharedArrayBuffer;
  shape: [number, number, number];
  wInit: Record<string, unknown>;
};
const [M, K, N] = shape;
const xt = Tensor.fromBuffer('f32', [M, K], x);
const w = new QuantizedTensor({ ...(wInit as object), data: new Uint8Array(codes), scales: new Float32Array(scales) } as never);
const y1 = matmul(xt, w);
const y2 = await matmulAsync(xt, w);
parentPort!.postMessage({ sync: y1.data, async: y2.data, N });
