/**
 * The leak test (npm run test:leak; needs --expose-gc, which the script
 * passes): repeats what a long-running server does and checks that memory
 * stays flat.
 *   1. 10,000 iterations: make a tensor, quantize it (int8 per channel, int4
 *      g32), multiply (sync and async), dequantize.
 *   2. 10,000 iterations: Linear and QLinear (f32, int8, int4, W8A8,
 *      LLM.int8, W4A8) forward and forwardAsync (W8A8 and W4A8 also two at
 *      once, QLinear.forwardShared), plus calls that throw and
 *      async calls that reject (bad arguments).
 *   3. 200 cycles: load stories260K (HF folder and llama2.c file in turn),
 *      quantize it (every 4th cycle with GPTQ calibration: probes, X^T X
 *      products, the native Cholesky factor), one forward and one
 *      forwardAsync, drop it; every 20th
 *      cycle also saves a quantized checkpoint and loads it back.
 * After a warm-up, memory is sampled after forced GCs at regular points:
 * rss (everything, native allocations included), external + arrayBuffers
 * (what V8 tracks outside its heap: tensor storage) and the V8 heap in use
 * (JavaScript objects kept alive). The
 * least-squares slope over the samples (bytes per iteration) and the growth
 * from the first to the last sample must stay under bounds that a leak of
 * a few hundred bytes per iteration would cross. Exit code 1 on failure.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { addon } from '../../lib/binding.js';
import { Linear, QLinear, Tensor, dequantize, loadModelSync, matmul, matmulAsync, quantize, quantizeModel, saveQuantized } from '../../lib/index.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) {
  console.error('leak test: run with node --expose-gc (npm run test:leak does)');
  process.exit(2);
}
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const FIX = process.env.QUANTKIT_FIXTURES ? path.resolve(process.env.QUANTKIT_FIXTURES) : path.resolve(repo, '..', 'shared', 'fixtures');
const STORIES = path.join(FIX, 'stories260K');
const haveFixture = fs.existsSync(path.join(STORIES, 'model.safetensors')) && fs.existsSync(path.join(STORIES, 'stories260K.bin'));
if (!haveFixture) {
  if (process.env.CI) {
    console.error(`leak test: fixture missing under ${STORIES} (required when CI is set)`);
    process.exit(1);
  }
  console.warn(`leak test: skipping the model phase, fixture not found under ${STORIES}`);
}

interface Sample {
  iter: number;
  rss: number;
  ext: number;
  heap: number;
  /** C heap bytes in use (glibc), -1 where unknown */
  malloc: number;
}

async function sample(iter: number): Promise<Sample> {
  // A dropped model's buffers leave external memory and the C heap only
  // when their finalizers have run, which can take more than one GC and
  // tick: one round after a stories260K cycle left 10.7 MB external and
  // 10.3 MB of C heap in use, the next 4.8 and 7.2 (then flat). A sample
  // taken one round early reads ~6 MB that is on its way out (a CI run
  // flagged exactly that as growth). So GC until both stop moving: at
  // least 3 rounds, at most 20.
  let prev = -1;
  for (let i = 0; i < 20; i++) {
    gc!();
    await new Promise(setImmediate);
    const m = process.memoryUsage();
    const now = m.external + m.arrayBuffers + Math.max(0, addon.mallocInUse());
    if (i >= 2 && now === prev) break;
    prev = now;
  }
  const m = process.memoryUsage();
  // rss less V8's heap reservation, which grows in steps under promise churn
  // (JavaScript objects that stay alive show in heapUsed instead)
  return { iter, rss: m.rss - m.heapTotal, ext: m.external + m.arrayBuffers, heap: m.heapUsed, malloc: addon.mallocInUse() };
}

/** Least-squares slope of y over x. */
function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

interface Bounds {
  /** bytes per iteration: rss, external + arrayBuffers, V8 heap used */
  rssSlope: number;
  extSlope: number;
  heapSlope: number;
  mallocSlope: number;
  /** bytes, first to last sample */
  rssGrowth: number;
  extGrowth: number;
}

const results: { phase: string; iters: number; rssSlope: number; extSlope: number; heapSlope: number; mallocSlope: number; rssGrowth: number; extGrowth: number; ok: boolean; seconds: number }[] = [];

async function phase(name: string, iters: number, warmup: number, samples: number, bounds: Bounds, body: (i: number) => Promise<void> | void): Promise<void> {
  const t0 = Date.now();
  for (let i = 0; i < warmup; i++) await body(i);
  const s: Sample[] = [await sample(0)];
  const every = Math.ceil(iters / samples);
  for (let i = 0; i < iters; i++) {
    await body(warmup + i);
    if ((i + 1) % every === 0 || i === iters - 1) s.push(await sample(i + 1));
  }
  const xs = s.map((p) => p.iter);
  const rssSlope = slope(xs, s.map((p) => p.rss));
  const extSlope = slope(xs, s.map((p) => p.ext));
  const heapSlope = slope(xs, s.map((p) => p.heap));
  const mallocSlope = s[0]!.malloc < 0 ? 0 : slope(xs, s.map((p) => p.malloc));
  const rssGrowth = s[s.length - 1]!.rss - s[0]!.rss;
  const extGrowth = s[s.length - 1]!.ext - s[0]!.ext;
  const ok = rssSlope < bounds.rssSlope && extSlope < bounds.extSlope && heapSlope < bounds.heapSlope && mallocSlope < bounds.mallocSlope && rssGrowth < bounds.rssGrowth && extGrowth < bounds.extGrowth;
  results.push({ phase: name, iters, rssSlope, extSlope, heapSlope, mallocSlope, rssGrowth, extGrowth, ok, seconds: (Date.now() - t0) / 1000 });
}

function rand(n: number, seed: number): Float32Array {
  let a = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    return a / 2 ** 32 - 0.5;
  });
}

const MiB = 1 << 20;
// The C heap in use (mallinfo2) is the precise signal for native leaks: a
// leak of 128 B per call crosses its bound (V8 itself moves it by +-500 KiB;
// an injected 256 B leak per GEMM call failed all three phases). RSS moves in
// steps of megabytes when glibc arenas grow (measured: +8 MiB once, then
// flat, over 60,000 calls), so its bound only catches gross leaks;
// external/heap catch JavaScript that keeps tensors alive.
const small: Bounds = { rssSlope: 1024, extSlope: 64, heapSlope: 64, mallocSlope: 128, rssGrowth: 8 * MiB, extGrowth: 1 * MiB };

// 1. tensors, quantize, matmul
const K = 256;
const N = 32;
// (a long warm-up: V8 grows its heap reservation under promise churn for the
// first few thousand async calls, which is RSS but not a leak)
await phase('tensor/quantize/matmul', 10_000, 3000, 20, small, async (i) => {
  const w = new Tensor('f32', [N, K], rand(N * K, i));
  const x = new Tensor('f32', [2, K], rand(2 * K, i + 1));
  const q8 = quantize(w, { bits: 8 });
  const q4 = quantize(w, { bits: 4, scheme: 'asymmetric' });
  matmul(x, q8);
  await matmulAsync(x, q4);
  dequantize(q4);
});

// 2. layers: every weight format, sync and async, and the error paths
const W = new Tensor('f32', [N, K], rand(N * K, 7));
const B = new Tensor('f32', [N], rand(N, 8));
const layers = [
  new Linear(W, B),
  QLinear.fromLinear(new Linear(W, B), { bits: 8 }),
  QLinear.fromLinear(new Linear(W, B), { bits: 4 }),
  QLinear.fromLinear(new Linear(W, B), { bits: 8, activations: 'int8' }),
  QLinear.fromLinear(new Linear(W, B), { bits: 8, activations: 'llm.int8' }),
  QLinear.fromLinear(new Linear(W, B), { bits: 4, activations: 'int8' }),
];
const wrong = new Tensor('f32', [1, K + 1], new Float32Array(K + 1));
await phase('Linear/QLinear forward(Async)', 10_000, 3000, 20, small, async (i) => {
  const x = new Tensor('f32', [3, K], rand(3 * K, i));
  const l = layers[i % layers.length]!;
  l.forward(x);
  await l.forwardAsync(x);
  try {
    l.forward(wrong);
  } catch {
    // expected: the shape is wrong
  }
  await l.forwardAsync(wrong).catch(() => undefined);
  // W8A8 and W4A8: two layers sharing one quantization of x (q/k/v, gate/up)
  if (l instanceof QLinear && l.activations === 'int8') {
    QLinear.forwardShared([l, l], x, [undefined, undefined]);
    await QLinear.forwardSharedAsync([l, l], x, [undefined, undefined]);
    try {
      QLinear.forwardShared([l, l], wrong, [undefined, undefined]);
    } catch {
      // expected: the shape is wrong
    }
  }
});

// 3. whole models: load, quantize, run, drop; checkpoints now and then
if (haveFixture) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qk-leak-'));
  const ckpt = path.join(tmp, 'ckpt');
  const config = JSON.parse(fs.readFileSync(path.join(STORIES, 'config.json'), 'utf8'));
  // The model is ~1 MB of weights: a leak of one model per cycle is 1 MB per
  // iteration (200 MB in all). The C heap in use, external memory and the JS
  // heap are the precise signals and stay tight. RSS is not: the calibrated
  // cycles allocate and free many small typed arrays (the GPTQ clipping
  // search), and glibc's arenas grow in steps as they fragment, so RSS moved
  // by 33-125 KB per cycle (7-24 MB in all) over repeated runs of a build
  // without a leak; its bounds sit above that noise and well below one model
  // per cycle.
  const models: Bounds = { rssSlope: 256 * 1024, extSlope: 16 * 1024, heapSlope: 16 * 1024, mallocSlope: 4 * 1024, rssGrowth: 64 * MiB, extGrowth: 4 * MiB };
  await phase('model load/quantize/forward/drop', 200, 10, 10, models, async (i) => {
    const { model } = i % 2 ? loadModelSync(path.join(STORIES, 'stories260K.bin'), { tokenizerPath: path.join(STORIES, 'tok512.bin') }) : loadModelSync(STORIES);
    // every 4th cycle calibrated (GPTQ: probes, X^T X products, the native Cholesky factor)
    const calibration = i % 4 === 3 ? { tokens: Array.from({ length: 64 }, (_, t) => (t * 37 + i) % 512), context: 64 } : undefined;
    const summary = quantizeModel(model, { weights: i % 4 < 2 ? 'int8' : 'int4', ...(calibration ? { calibration } : {}) });
    model.forward([1, 403, 407], model.createCache(8));
    await model.forwardAsync([1, 403], model.createCache(8));
    if (i % 20 === 0) {
      await saveQuantized(model, summary, [], ckpt, config);
      loadModelSync(ckpt).model.forward([1, 5], model.createCache(4));
    }
  });
  fs.rmSync(tmp, { recursive: true, force: true });
}

const kib = (b: number) => `${(b / 1024).toFixed(1)} KiB`;
console.log('\nquantkit leak test (memory sampled after forced GC)');
console.log(`${'phase'.padEnd(34)}${'iters'.padStart(7)}${'rss B/iter'.padStart(12)}${'ext B/iter'.padStart(12)}${'heap B/iter'.padStart(13)}${'malloc B/iter'.padStart(15)}${'rss growth'.padStart(13)}${'ext growth'.padStart(13)}${'s'.padStart(6)}  result`);
for (const r of results) {
  console.log(
    `${r.phase.padEnd(34)}${String(r.iters).padStart(7)}${r.rssSlope.toFixed(1).padStart(12)}${r.extSlope.toFixed(1).padStart(12)}${r.heapSlope.toFixed(1).padStart(13)}${r.mallocSlope.toFixed(1).padStart(15)}${kib(r.rssGrowth).padStart(13)}${kib(r.extGrowth).padStart(13)}${r.seconds.toFixed(0).padStart(6)}  ${r.ok ? 'ok' : 'LEAK'}`,
  );
}
const failed = results.filter((r) => !r.ok);
if (failed.length) {
  console.log(`\n${failed.length} phase(s) over their bounds: ${failed.map((r) => r.phase).join(', ')}`);
  process.exit(1);
}
console.log('\nno growth beyond the bounds');
