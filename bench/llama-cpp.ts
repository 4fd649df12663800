/**
 * quantkit vs llama.cpp (node-llama-cpp, its prebuilt CPU binaries) on the
 * same synthetic Llama, in one process, interleaved: prefill and decode
 * tokens/s per weight-format pair, 1 and 2 threads, and their ratios.
 *
 * The model is bench/synthetic-llama.ts's (12 layers, hidden 768, 12 / 4
 * heads, intermediate 2048, vocab 32000, seeded random weights). For each
 * llama.cpp format this writes those same f32 weights as a GGUF file
 * (bench/gguf.ts: F32, or Q8_0 / Q4_0 quantized from them, q/k rows in
 * llama.cpp's RoPE order) into a temporary folder, deleted at the end.
 *
 * Pairs (quantkit config / llama.cpp type of the layer weights):
 *   fp32 / F32, W8A8 / Q8_0, int8 / Q8_0, W4A8 / Q4_0, int4 g32 / Q4_0 (lm_head
 *   f32 on both sides), and W4A8 / Q4_0 and int4 g32 / Q4_0 with the lm_head
 *   quantized on both sides (quantkit int4 g32, llama.cpp Q4_0).
 * Work, on both sides: prefill = the 128-token prompt on an empty cache up to
 * the first sampled token (logits of the last position, greedy); the cache
 * is emptied, not reallocated, between repeats (one context sequence per
 * GGUF, one reset KVCache per quantkit model); decode =
 * 32 more tokens one at a time, each fed back (greedy). llama.cpp is driven
 * the way a Node user drives it: a context sequence's evaluate() generator.
 * Each figure is the median over the repeats; every repeat runs every pair,
 * quantkit then llama.cpp, so machine noise spreads over both.
 *
 * Weights, on both sides, come from a file mapped into memory (default,
 * --weights-from file): llama.cpp maps its GGUF; quantkit writes each config
 * as a user serving it would keep it (fp32: a Hugging Face folder; quantized:
 * a quantkit checkpoint of the model quantized in memory) into the same
 * temporary folder and loads it mapped. Where the kernel keeps file pages in
 * large folios (Linux 6.18 on ext4 here), both sides then read most of their
 * weights through 2 MiB mappings. --weights-from memory runs quantkit on the
 * arrays built in this process instead (on huge pages from 2 MiB, as the
 * library's file reader and quantize() allocate them: lib/ops/huge-pages.ts).
 *
 *   npm run bench:setup && npm run bench:llama-cpp
 *   options: --threads 1,2  --repeats 3  --prompt 128  --steps 32  --layers N  --dim D  --weights-from file|memory
 *            --pairs fp32,w8a8,int8,w4a8,int4-g32,w4a8+head,int4-g32+head,w4a8-f16s,int4-g32-f16s,w4a8+head-f16s,int4-g32+head-f16s,
 *                    int4-g32-pf8,int4-g32+head-pf8,int8-pf8
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir, cpus } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { isa, setThreads } from '../lib/index.js';
import type { LlamaForCausalLM } from '../lib/models/llama.js';
import { cliOptions, median, printTable } from './common.js';
import { type GgufPlan, writeLlamaGguf } from './gguf.js';
import { ALL_VARIANTS, argmaxLast, build, buildFromFile, makeConfig, makePrompt, makeWeights, runOnce } from './synthetic-llama.js';

// node-llama-cpp lives in bench/package.json only; loaded at run time and
// typed by the members used here, so the library's type check needs none of it.
interface Sequence {
  evaluate(tokens: number[], o: { temperature: number; yieldEogToken: boolean }): AsyncGenerator<number, void, void>;
  clearHistory(): Promise<void>;
}
interface Context {
  getSequence(): Sequence;
  dispose(): Promise<void>;
}
interface Model {
  createContext(o: { contextSize: number; batchSize: number; threads: { ideal: number; min: number }; sequences: number }): Promise<Context>;
  dispose(): Promise<void>;
}
interface Llama {
  loadModel(o: { modelPath: string; gpuLayers: number }): Promise<Model>;
  dispose(): Promise<void>;
  readonly buildType: string;
  readonly gpu: string | false;
}
interface NodeLlamaCpp {
  getLlama(o: { gpu: false; build: 'never'; logLevel: string; maxThreads: number }): Promise<Llama>;
}

// ------------------------------------------------------------------ options

const { opt, intOpt } = cliOptions(import.meta.url, { values: ['--threads', '--repeats', '--prompt', '--steps', '--layers', '--dim', '--pairs', '--weights-from'] });
const THREADS = (opt('--threads') ?? '1,2').split(',').map(Number);
if (THREADS.some((t) => !Number.isInteger(t) || t < 1)) throw new Error('--threads must be a comma-separated list of positive integers');
const REPEATS = intOpt('--repeats', 3);
const PROMPT = intOpt('--prompt', 128);
const STEPS = intOpt('--steps', 32);
const LAYERS = intOpt('--layers', 12);
const DIM = intOpt('--dim', 768);
const WEIGHTS_FROM = opt('--weights-from') ?? 'file';
if (WEIGHTS_FROM !== 'file' && WEIGHTS_FROM !== 'memory') throw new Error(`--weights-from must be 'file' or 'memory', got '${WEIGHTS_FROM}'`);

const F32: GgufPlan = { layers: 'F32', head: 'F32' };
const Q8: GgufPlan = { layers: 'Q8_0', head: 'F32' };
const Q4: GgufPlan = { layers: 'Q4_0', head: 'F32' };
const Q4H: GgufPlan = { layers: 'Q4_0', head: 'Q4_0' };
const ALL_PAIRS = [
  { name: 'fp32 / F32', qk: 'fp32', gguf: F32 },
  { name: 'W8A8 / Q8_0', qk: 'w8a8', gguf: Q8 },
  { name: 'int8 W8A16 / Q8_0', qk: 'int8', gguf: Q8 },
  { name: 'W4A8 / Q4_0', qk: 'w4a8', gguf: Q4 },
  { name: 'int4 g32 / Q4_0', qk: 'int4-g32', gguf: Q4 },
  { name: 'W4A8 / Q4_0, lm_head quantized', qk: 'w4a8+head', gguf: Q4H },
  { name: 'int4 g32 / Q4_0, lm_head quantized', qk: 'int4-g32+head', gguf: Q4H },
  // f16 scales: the bytes per weight of Q4_0
  { name: 'W4A8 f16 scales / Q4_0', qk: 'w4a8-f16s', gguf: Q4 },
  { name: 'int4 g32 f16 scales / Q4_0', qk: 'int4-g32-f16s', gguf: Q4 },
  { name: 'W4A8 f16 scales / Q4_0, lm_head quantized', qk: 'w4a8+head-f16s', gguf: Q4H },
  { name: 'int4 g32 f16 scales / Q4_0, lm_head quantized', qk: 'int4-g32+head-f16s', gguf: Q4H },
  // int8 activations for prompts only (activations 'int8-prefill'): as
  // llama.cpp, which quantizes the activations of every token to Q8
  { name: 'int4 g32, int8 prompts / Q4_0', qk: 'int4-g32-pf8', gguf: Q4 },
  { name: 'int4 g32, int8 prompts / Q4_0, lm_head quantized', qk: 'int4-g32+head-pf8', gguf: Q4H },
  { name: 'int8, int8 prompts / Q8_0', qk: 'int8-pf8', gguf: Q8 },
];
const ONLY = (opt('--pairs') ?? '').split(',').filter((s) => s !== '');
const PAIRS = ONLY.length ? ALL_PAIRS.filter((p) => ONLY.includes(p.qk)) : ALL_PAIRS;
if (PAIRS.length === 0) throw new Error(`--pairs matched none of ${ALL_PAIRS.map((p) => p.qk).join(', ')}`);

const log = (m: string) => process.stderr.write(m + '\n');

async function loadNodeLlamaCpp(): Promise<NodeLlamaCpp> {
  const spec = 'node-llama-cpp'; // (a variable: resolved at run time from bench/node_modules)
  try {
    return (await import(spec)) as NodeLlamaCpp;
  } catch (e) {
    throw new Error(`node-llama-cpp is not installed: run 'npm run bench:setup' first (${(e as Error).message})`);
  }
}

/** llama.cpp's prefill (up to the first sampled token) and decode of `steps` tokens; ms. */
async function runLlama(seq: Sequence, prompt: number[], steps: number): Promise<{ prefillMs: number; decodeMs: number; decoded: number; first: number }> {
  await seq.clearHistory();
  const opts = { temperature: 0, yieldEogToken: true };
  let t0 = performance.now();
  const it = seq.evaluate(prompt, opts);
  const first = await it.next();
  await it.return();
  const prefillMs = performance.now() - t0;
  if (first.done) throw new Error('llama.cpp produced no token after the prompt');
  let decoded = 0;
  t0 = performance.now();
  for await (const _tok of seq.evaluate([first.value], opts)) if (++decoded >= steps) break;
  return { prefillMs, decodeMs: performance.now() - t0, decoded, first: first.value };
}

async function main(): Promise<void> {
  const nlc = await loadNodeLlamaCpp();
  const config = makeConfig(LAYERS, DIM);
  const la = loadavg();
  log(`quantkit (isa ${isa()}) vs llama.cpp (node-llama-cpp): ${cpus()[0]?.model ?? '?'}, ${cpus().length} CPUs, load average ${la.map((x) => x.toFixed(2)).join(' ')}`);
  const weights = makeWeights(config, 0);
  const prompt = makePrompt(PROMPT);
  const dir = mkdtempSync(path.join(tmpdir(), 'quantkit-gguf-'));
  const llama = await nlc.getLlama({ gpu: false, build: 'never', logLevel: 'error', maxThreads: Math.max(...THREADS) });
  try {
    // one GGUF per distinct plan, one context per thread count
    const ggufs = new Map<GgufPlan, { model: Model; ctx: Map<number, { ctx: Context; seq: Sequence }> }>();
    for (const plan of new Set(PAIRS.map((p) => p.gguf))) {
      const file = path.join(dir, `synthetic-${plan.layers}-head-${plan.head}.gguf`);
      const t = performance.now();
      const bytes = await writeLlamaGguf(file, config, weights, plan);
      const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
      const ctx = new Map<number, { ctx: Context; seq: Sequence }>();
      for (const thr of THREADS) {
        const c = await model.createContext({ contextSize: PROMPT + STEPS + 16, batchSize: PROMPT, threads: { ideal: thr, min: thr }, sequences: 1 });
        ctx.set(thr, { ctx: c, seq: c.getSequence() });
      }
      ggufs.set(plan, { model, ctx });
      log(`  GGUF ${plan.layers} (head ${plan.head}): ${(bytes / 1e6).toFixed(0)} MB, written and loaded in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    }
    const qk: LlamaForCausalLM[] = [];
    for (const p of PAIRS) {
      const v = ALL_VARIANTS.find((x) => x.name === p.qk)!;
      qk.push(WEIGHTS_FROM === 'file' ? await buildFromFile(config, weights, v, dir) : build(config, weights, v).model);
    }
    const qkCaches = qk.map((m) => m.createCache(PROMPT + STEPS));
    log(`  quantkit weights: ${WEIGHTS_FROM === 'file' ? 'written to files and loaded mapped' : 'arrays built in this process'}`);
    // the same model on both sides: fp32 and F32 pick the same first token
    const fp = PAIRS.findIndex((p) => p.qk === 'fp32');
    let agree = '';
    if (fp >= 0) {
      const a = argmaxLast(qk[fp]!.forward(prompt, qk[fp]!.createCache(PROMPT), { logits: 'last' }));
      const b = (await runLlama(ggufs.get(F32)!.ctx.get(THREADS[0]!)!.seq, prompt, 1)).first;
      agree = `fp32 and F32 greedy first token after the prompt: ${a} / ${b} (${a === b ? 'same' : 'DIFFERENT'})`;
      log(`  ${agree}`);
    }
    type Sample = { qkPre: number[]; qkDec: number[]; lcPre: number[]; lcDec: number[] };
    const samples = new Map<string, Sample>();
    for (const thr of THREADS) {
      setThreads(thr);
      // warm-up: JIT, tables, first touch of buffers and mapped weights;
      // each model keeps one cache, reset before every run (see runOnce),
      // as each GGUF keeps its context
      for (let i = 0; i < PAIRS.length; i++) {
        runOnce(qk[i]!, prompt, 2, qkCaches[i]);
        await runLlama(ggufs.get(PAIRS[i]!.gguf)!.ctx.get(thr)!.seq, prompt.slice(0, 16), 2);
      }
      for (let r = 0; r < REPEATS; r++) {
        for (let i = 0; i < PAIRS.length; i++) {
          const p = PAIRS[i]!;
          const key = `${p.name}|${thr}`;
          const s = samples.get(key) ?? { qkPre: [], qkDec: [], lcPre: [], lcDec: [] };
          const a = runOnce(qk[i]!, prompt, STEPS, qkCaches[i]);
          s.qkPre.push(a.prefillMs);
          s.qkDec.push(a.decodeMs / STEPS);
          const b = await runLlama(ggufs.get(p.gguf)!.ctx.get(thr)!.seq, prompt, STEPS);
          if (b.decoded < STEPS) log(`  note: llama.cpp stopped after ${b.decoded} decode tokens (${p.name})`);
          s.lcPre.push(b.prefillMs);
          s.lcDec.push(b.decodeMs / Math.max(1, b.decoded));
          samples.set(key, s);
        }
        log(`  threads ${thr}: repeat ${r + 1}/${REPEATS} done`);
      }
    }
    const la2 = loadavg();
    console.log(
      `\nquantkit (isa ${isa()}) vs llama.cpp through node-llama-cpp (${llama.buildType} build, CPU); ${cpus()[0]?.model ?? '?'}; synthetic Llama ${config.numLayers} layers, hidden ${config.hiddenSize}, ` +
        `${config.numHeads} / ${config.numKvHeads} heads, intermediate ${config.intermediateSize}, vocab ${config.vocabSize}; prompt ${PROMPT}, decode ${STEPS}; median of ${REPEATS}; ` +
        `quantkit weights ${WEIGHTS_FROM === 'file' ? 'mapped from files (as llama.cpp maps its GGUF)' : 'in process memory'}`,
    );
    console.log(`load average at start ${la.map((x) => x.toFixed(2)).join(' ')}, at end ${la2.map((x) => x.toFixed(2)).join(' ')}${agree ? `; ${agree}` : ''}\n`);
    const rows: string[][] = [];
    for (const thr of THREADS) {
      for (const p of PAIRS) {
        const s = samples.get(`${p.name}|${thr}`)!;
        const qp = PROMPT / (median(s.qkPre) / 1000), lp = PROMPT / (median(s.lcPre) / 1000);
        const qd = 1000 / median(s.qkDec), ld = 1000 / median(s.lcDec);
        rows.push([p.name, String(thr), qp.toFixed(0), lp.toFixed(0), (qp / lp).toFixed(2), qd.toFixed(1), ld.toFixed(1), (qd / ld).toFixed(2)]);
      }
    }
    printTable(['pair (quantkit / llama.cpp)', 'thr', 'prefill tok/s qk', 'llama.cpp', 'ratio', 'decode tok/s qk', 'llama.cpp', 'ratio'], rows);
    for (const { model, ctx } of ggufs.values()) {
      for (const c of ctx.values()) await c.ctx.dispose();
      await model.dispose();
    }
  } finally {
    await llama.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
