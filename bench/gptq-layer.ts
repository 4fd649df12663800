/**
 * GPTQ on one layer at a real shape (synthetic weights, a correlated
 * Hessian): the Cholesky factor of H^-1, gptqQuantize (blocking) and
 * gptqQuantizeAsync (the same bits, checked), with the event loop's longest
 * stall while the async form runs, measured by a 1 ms timer.
 *
 *   npm run bench:gptq [-- --shape 4096x4096 --group 128 --threads 2]
 *   npm run bench:gptq -- --block [--calib-tokens 512]
 *
 * --shape NxK (N output rows, K inputs); the Hessian is K x K float64.
 * --block instead quantizes one whole Llama-7B-shaped block (hidden 4096,
 * intermediate 11008, synthetic weights) with quantizeModel, calibration
 * included: 7 layers, q/k/v and gate/up each sharing one factor (~3.5 GB).
 */
import { loadavg } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Tensor, buildModel, cholInverseUpper, gptqQuantize, gptqQuantizeAsync, isa, quantizeModel, setThreads } from '../lib/index.js';
import { cliOptions, printTable } from './common.js';
import { makeConfig, makeWeights } from './synthetic-llama.js';

const cli = cliOptions(import.meta.url, { flags: ['--block'], values: ['--shape', '--group', '--threads', '--calib-tokens'] });
const opt = (name: string, dflt: string) => cli.opt(name) ?? dflt;
const [N, K] = opt('--shape', '4096x4096').split('x').map(Number) as [number, number];
const G = Number(opt('--group', '128'));
const threads = Number(opt('--threads', '2'));
if (!(N > 0 && K > 0 && G > 0 && threads > 0)) throw new Error('--shape NxK, --group and --threads must be positive');
setThreads(threads);

if (cli.flag('--block')) {
  const nCal = Number(opt('--calib-tokens', '512'));
  const c = makeConfig(1, 4096);
  const model = buildModel(c, makeWeights(c, 0), 'synthetic');
  const tokens = Array.from({ length: nCal }, (_, i) => (i * 7919 + 13) % c.vocabSize);
  const load0 = loadavg();
  const t0 = performance.now();
  const s = quantizeModel(model, { weights: 'int4', scheme: 'asymmetric', groupSize: G, calibration: { tokens, context: 256 } });
  const sec = (performance.now() - t0) / 1000;
  console.log(`\none Llama-7B-shaped block (hidden 4096, intermediate 11008; ${s.replaced.length} layers), GPTQ int4 asym g${G}, ${nCal} calibration tokens; isa ${isa()}, ${threads} thread(s); load average ${load0.map((v) => v.toFixed(2)).join(' ')} -> ${loadavg().map((v) => v.toFixed(2)).join(' ')}`);
  console.log(`quantizeModel: ${sec.toFixed(1)} s; x 32 blocks: ${((32 * sec) / 60).toFixed(0)} min`);
  process.exit(0);
}

// H = A^T A + diag(d): inputs correlated through 16 shared directions, as real activations are
let seed = 1;
const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) - 0.5;
const h = new Float64Array(K * K);
{
  const r = 16;
  const A = Float64Array.from({ length: r * K }, rnd);
  const d = Float64Array.from({ length: K }, () => 0.1 + Math.abs(rnd()));
  for (let i = 0; i < K; i++) {
    for (let j = 0; j <= i; j++) {
      let s = i === j ? d[i]! : 0;
      for (let t = 0; t < r; t++) s += A[t * K + i]! * A[t * K + j]!;
      h[i * K + j] = s;
      h[j * K + i] = s;
    }
  }
}
const w = new Tensor('f32', [N, K], Float32Array.from({ length: N * K }, rnd));
const options = { bits: 4, scheme: 'asymmetric', groupSize: G } as const;
const load0 = loadavg();

let t0 = performance.now();
cholInverseUpper(h, K);
const factorS = (performance.now() - t0) / 1000;
t0 = performance.now();
const a = gptqQuantize(w, h, options);
const syncS = (performance.now() - t0) / 1000;

const delay = monitorEventLoopDelay({ resolution: 1 });
let ticks = 0;
const timer = setInterval(() => ticks++, 1);
delay.enable();
t0 = performance.now();
const b = await gptqQuantizeAsync(w, h, options);
const asyncS = (performance.now() - t0) / 1000;
delay.disable();
clearInterval(timer);
const same = Buffer.compare(Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength), Buffer.from(b.data.buffer, b.data.byteOffset, b.data.byteLength)) === 0 && a.scales.every((v, i) => Object.is(v, b.scales[i]));
if (!same) throw new Error('gptqQuantizeAsync gave other codes or scales than gptqQuantize');

console.log(`\nGPTQ of one [${N}, ${K}] layer, int4 asym g${G}, clipping search on; isa ${isa()}, ${threads} thread(s); load average ${load0.map((v) => v.toFixed(2)).join(' ')} -> ${loadavg().map((v) => v.toFixed(2)).join(' ')}\n`);
printTable(
  ['step', 'seconds', 'event loop'],
  [
    ['factor (Cholesky of H^-1)', factorS.toFixed(2), 'blocked'],
    ['gptqQuantize', syncS.toFixed(2), 'blocked'],
    ['gptqQuantizeAsync (same bits)', asyncS.toFixed(2), `longest stall ${(delay.max / 1e6).toFixed(0)} ms, p99 ${(delay.percentile(99) / 1e6).toFixed(0)} ms, ${ticks} timer ticks`],
  ],
);
console.log(`\nasync / blocking time: ${(asyncS / syncS).toFixed(2)}`);
