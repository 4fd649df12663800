/**
 * Child process of the async-ownership test: transfers the ArrayBuffers of a
 * call's input, weight and output away (structuredClone with `transfer`)
 * while matmulAsync / quantizeAsync / W8A8 forwardAsync run on them. Before
 * the fix this read freed memory (SIGSEGV with a 64 MiB weight). Prints one
 * JSON line per case: whether the result equals the undisturbed one.
 */
import { Linear, QLinear, Tensor, matmul, matmulAsync, quantize, quantizeAsync } from '../../lib/index.js';

const N = 4096, K = 4096, M = 4; // 64 MiB f32 weight
function fill(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; a[i] = (s >>> 8) / 2 ** 23 - 1; }
  return a;
}
const wData = fill(N * K, 1), xData = fill(M * K, 2);
const ref = matmul(new Tensor('f32', [M, K], xData.slice()), new Tensor('f32', [N, K], wData.slice())).data;

function steal(...bufs: ArrayBufferLike[]): number {
  let copied = 0;
  for (const b of bufs) {
    const c = structuredClone(b, { transfer: [b as ArrayBuffer] }) as ArrayBuffer;
    if (b.byteLength !== 0) copied++; // still attached: the transfer made a copy
    void c;
  }
  return copied;
}

const results: Record<string, unknown> = {};
{
  const x = new Tensor('f32', [M, K], xData.slice());
  const w = new Tensor('f32', [N, K], wData.slice());
  const p = matmulAsync(x, w);
  const kept = steal(x.data.buffer, w.data.buffer);
  const y = await p;
  results.matmulAsync = { kept, equal: y.data.every((v, i) => v === ref[i]) };
}
{
  const w = new Tensor('f32', [N, K], wData.slice());
  const want = quantize(new Tensor('f32', [N, K], wData.slice()), { bits: 4, groupSize: 32 });
  const p = quantizeAsync(w, { bits: 4, groupSize: 32 });
  const kept = steal(w.data.buffer);
  const q = await p;
  results.quantizeAsync = { kept, equal: q.data.every((v, i) => v === want.data[i]) && q.scales.every((v, i) => v === want.scales[i]) };
}
{
  const lin = QLinear.fromLinear(new Linear(new Tensor('f32', [N, K], wData.slice())), { bits: 8, activations: 'int8' });
  const x = new Tensor('f32', [M, K], xData.slice());
  const want = lin.forward(new Tensor('f32', [M, K], xData.slice())).data;
  const p = lin.forwardAsync(x);
  const kept = steal(x.data.buffer);
  const y = await p;
  results.w8a8ForwardAsync = { kept, equal: y.data.every((v, i) => v === want[i]) };
}
console.log(JSON.stringify(results));
