/**
 * Continuous batching benchmark (library level, no HTTP): N concurrent
 * generation streams through one BatchScheduler on the synthetic Llama of
 * bench/e2e.ts (12 layers, hidden 768, vocab 32000, random weights), per
 * weight format, against one stream and against the same N requests run
 * one after another.
 *
 * Each stream: a distinct 32-token prompt, then 32 greedy tokens (EOS off).
 * Figures per (format, N):
 *   decode tok/s   aggregate decode tokens per second over the steps that
 *                  only decoded (every sequence past its prompt; steps that
 *                  also prefilled are left out of this column); median of
 *                  the repeats
 *   vs 1 stream    that rate over the 1-stream rate of the same format and
 *                  repeat, median of the repeats (the stream counts
 *                  alternate inside each repeat; the issue's targets: >= 5x
 *                  at 8 streams, >= 8x at 16)
 *   TTFT p50/p99   submit -> first token, per stream (ms), all repeats
 *   ITL p50/p99    gap between consecutive tokens of a stream (ms), all repeats
 *   wall / serial  wall time of the N concurrent streams over the same N
 *                  requests run one after another (each alone in the
 *                  scheduler), < 1 when batching wins; first repeat
 *
 * Engine: 'worker' (default; what `quantkit serve` runs: the model in a
 * worker thread, each step one synchronous batched forward) or 'local' (the
 * model in the main thread, every native call an async hop to a libuv
 * worker); --engine both prints both.
 *
 *   node --import tsx bench/batch.ts [--streams 1,4,8,16] [--configs int8,w8a8,int4-g32,w4a8]
 *        [--engine worker|local|both] [--layers 12] [--dim 768] [--prompt 32] [--tokens 32]
 *        [--threads 1] [--repeats 3] [--no-serial] [--temperature 0] [--top-p 1] [--top-k 0]
 *
 * --temperature > 0 samples each stream (seeded) instead of taking the
 * argmax: the sampling runs on the main thread between steps, once per
 * stream, so it shows in the step time at many streams.
 */
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { isa, setThreads } from '../lib/index.js';
import { BatchScheduler } from '../lib/serve/scheduler.js';
import type { BatchEngine } from '../lib/serve/engine.js';
import { WorkerEngine } from '../lib/serve/worker-engine.js';
import { cliOptions, median, percentile, printTable } from './common.js';
import { makePrompt, makeVariantModel } from './synthetic-llama.js';

const { flag, opt, intOpt } = cliOptions(import.meta.url, {
  flags: ['--no-serial'],
  values: ['--streams', '--configs', '--layers', '--dim', '--prompt', '--tokens', '--threads', '--temperature', '--top-p', '--top-k', '--engine', '--repeats'],
});
const STREAMS = (opt('--streams') ?? '1,4,8,16').split(',').map(Number);
const CONFIGS = (opt('--configs') ?? 'int8,w8a8,int4-g32,w4a8').split(',');
const LAYERS = intOpt('--layers', 12);
const DIM = intOpt('--dim', 768);
const PROMPT = intOpt('--prompt', 32);
const TOKENS = intOpt('--tokens', 32);
const REPEATS = intOpt('--repeats', 3);
const THREADS = intOpt('--threads', 1);
const SAMPLING = { temperature: Number(opt('--temperature') ?? 0), topP: Number(opt('--top-p') ?? 1), topK: intOpt('--top-k', 0) };
if (!(SAMPLING.temperature >= 0) || !(SAMPLING.topP > 0 && SAMPLING.topP <= 1)) throw new Error('--temperature must be >= 0 and --top-p in (0, 1]');
const SERIAL = !flag('--no-serial');
const ENGINES = (opt('--engine') ?? 'worker') === 'both' ? ['worker', 'local'] : [opt('--engine') ?? 'worker'];
for (const e of ENGINES) if (e !== 'worker' && e !== 'local') throw new Error(`--engine must be worker, local or both, got ${e}`);


/** A distinct prompt per stream (the shared generator, rotated). */
const promptFor = (i: number) => {
  const base = makePrompt(PROMPT + 64);
  return base.slice(i % 64, (i % 64) + PROMPT);
};

interface RunResult {
  decodeTokS: number;
  ttft: number[];
  itl: number[];
  wallMs: number;
}

async function runStreams(sched: BatchScheduler, n: number): Promise<RunResult> {
  let decodeRows = 0, decodeMs = 0;
  sched.onStep = (s) => {
    if (s.decodeRows === s.rows) {
      decodeRows += s.decodeRows;
      decodeMs += s.ms;
    }
  };
  const ttft: number[] = [], itl: number[] = [];
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const start = performance.now();
      let last = -1;
      for await (const _tok of sched.submit({ prompt: promptFor(i), maxTokens: TOKENS, eosId: null, ...SAMPLING, seed: i })) {
        const now = performance.now();
        if (last < 0) ttft.push(now - start);
        else itl.push(now - last);
        last = now;
      }
    }),
  );
  sched.onStep = null;
  return { decodeTokS: (decodeRows / decodeMs) * 1000, ttft, itl, wallMs: performance.now() - t0 };
}

async function main(): Promise<void> {
  setThreads(THREADS);
  console.log(`# continuous batching: ${LAYERS} layers, hidden ${DIM}, vocab 32000; prompt ${PROMPT}, ${TOKENS} tokens per stream; ${THREADS} thread(s), ISA ${isa()}`);
  console.log(`# load average before: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  console.log(`# sampling: ${SAMPLING.temperature === 0 ? 'greedy' : `temperature ${SAMPLING.temperature}, top-p ${SAMPLING.topP}, top-k ${SAMPLING.topK}`}`);
  const header = ['format', 'engine', 'streams', 'decode tok/s', 'vs 1 stream', 'TTFT p50', 'TTFT p99', 'ITL p50', 'ITL p99', 'wall / serial'];
  const rows: string[][] = [];
  for (const name of CONFIGS) for (const engineName of ENGINES) {
    const args = { layers: LAYERS, dim: DIM, variant: name };
    const engine: BatchEngine | null = engineName === 'worker' ? await WorkerEngine.start({ module: new URL('./synthetic-llama.ts', import.meta.url).href, export: 'makeVariantModel', args }) : null;
    const sched = new BatchScheduler(engine ?? makeVariantModel(args), { maxSequences: Math.max(...STREAMS), prefillChunk: 64 });
    await runStreams(sched, 1); // warm-up: scratch buffers, page faults
    // The stream counts alternate inside each repeat, so that "vs 1 stream"
    // (the median of each repeat's own ratio) compares runs seconds apart,
    // not phases of the run between which the host's speed moved.
    const runs = new Map<number, RunResult[]>(STREAMS.map((n) => [n, []]));
    const serial = new Map<number, number>();
    for (let rep = 0; rep < REPEATS; rep++) {
      for (const n of STREAMS) {
        const r = await runStreams(sched, n);
        runs.get(n)!.push(r);
        console.error(`  ${name} ${engineName} x${n}${REPEATS > 1 ? ` (repeat ${rep + 1}/${REPEATS})` : ''}: ${r.decodeTokS.toFixed(1)} tok/s`);
        if (SERIAL && n > 1 && rep === 0) {
          const t0 = performance.now();
          for (let i = 0; i < n; i++) for await (const _ of sched.submit({ prompt: promptFor(i), maxTokens: TOKENS, eosId: null, ...SAMPLING, seed: i }));
          serial.set(n, performance.now() - t0);
        }
      }
    }
    const ones = STREAMS.includes(1) ? runs.get(1)!.map((r) => r.decodeTokS) : null;
    for (const n of STREAMS) {
      const rs = runs.get(n)!;
      const ttft = rs.flatMap((r) => r.ttft), itl = rs.flatMap((r) => r.itl);
      rows.push([
        name,
        engineName,
        String(n),
        median(rs.map((r) => r.decodeTokS)).toFixed(1),
        ones ? `${median(rs.map((r, i) => r.decodeTokS / ones[i]!)).toFixed(2)}x` : '-',
        percentile(ttft, 50).toFixed(0),
        percentile(ttft, 99).toFixed(0),
        median(itl).toFixed(1),
        percentile(itl, 99).toFixed(1),
        serial.has(n) ? (rs[0]!.wallMs / serial.get(n)!).toFixed(2) : '-',
      ]);
    }
    await sched.close();
    await engine?.dispose();
  }
  printTable(header, rows);
  console.log(`# load average after: ${loadavg().map((l) => l.toFixed(2)).join(' ')}; errors: 0 (any failure throws)`);
}

await main();
