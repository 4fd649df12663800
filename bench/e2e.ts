/**
 * quantkit end-to-end benchmark: prefill and decode tokens/s of a whole
 * Llama-shaped model, per weight format, with 1 and 2 threads, as ratios to
 * fp32 from the same run. Where bench/run.ts times single GEMMs, this times
 * everything a token goes through: the GEMMs plus the TypeScript glue
 * (embedding, RMSNorm, RoPE, attention over the KV cache, SwiGLU, residuals).
 *
 * Model: a synthetic Llama with random weights, built in memory (no file):
 *   12 layers, hidden 768, 12 heads x 64, 4 KV heads (GQA), intermediate 2048,
 *   vocab 32000, untied lm_head (~125M parameters, ~500 MB in f32).
 *   Weights ~N(0, 0.02) from a seeded generator, norm weights 1.
 * Work: prefill = one forward of a 128-token prompt on an empty KV cache (logits of its last token only, as generate() asks);
 * each config keeps one cache, reset before every repeat (runOnce), as llama.cpp keeps its context and
 * `quantkit serve` its pooled caches: a fresh cache's first prompt would also allocate and first-touch its buffers;
 * decode = 32 forwards of 1 token after that prompt (greedy argmax feedback).
 * Each figure is the median of 5 repeats (3 with --quick) after a warm-up;
 * repeats go round-robin over the configs and the thread counts (see main)
 * to spread machine noise; "x thr1" is the speed-up over the first thread
 * count, the median of each repeat's own ratio.
 *
 * Configs (each rebuilt from the same float tensors, since quantizeModel
 * swaps layers in place): fp32; int8 (sym, per channel, f32 activations);
 * int4 g32 sym and asym; W8A8 (int8 weights + dynamic int8 activations);
 * W4A8 (int4 g32 sym weights + int8 activations per 32 values);
 * LLM.int8 (threshold 6). The lm_head stays f32 in these (quantizeModel's
 * default exclude ['lm_head']); the '+head' rows quantize it too.
 * Footprint is footprint(model) in MB (10^6 bytes), embedding included.
 *
 *   node --import tsx bench/e2e.ts                  # full table (~3-5 min on 2 vCPUs)
 *   node --import tsx bench/e2e.ts --quick          # 2 layers, fewer steps (< 1 min)
 *   node --import tsx bench/e2e.ts --json           # one JSON object per row on stdout
 *   node --import tsx bench/e2e.ts --breakdown      # also: where the time goes (GEMM vs glue)
 *   options: --layers N  --dim D  --prompt T  --steps S  --repeats R  --threads 1,2  --spin US (pool spin, default 300; 0: no spin)
 *            --configs fp32,int4-g32,...  --outlier-dims N (N hidden dims with norm weight 10, see makeWeights)
 *
 * --dim D keeps head size 64: heads D/64, KV heads a third of them (or all
 * when 3 does not divide), intermediate 8D/3 rounded up to a multiple of 256.
 * --breakdown wraps the forward methods of the model's modules with timers
 * (exclusive time per category); its totals run ~1-2% slower than the
 * untimed table.
 */
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { Linear, QLinear, footprint, isa, setSpin, setThreads } from '../lib/index.js';
import type { TensorLookup } from '../lib/models/config.js';
import type { LlamaConfig } from '../lib/models/llama.js';
import { Embedding } from '../lib/nn/embedding.js';
import { RMSNorm } from '../lib/nn/norm.js';
import { Rope } from '../lib/nn/rope.js';
import { LlamaAttention, LlamaDecoderLayer, LlamaForCausalLM, LlamaMLP } from '../lib/models/llama.js';
import type { Module } from '../lib/nn/module.js';
import { addon } from '../lib/binding.js';
import { cliOptions, median, printTable } from './common.js';
import { ALL_VARIANTS, argmaxLast, build, makeConfig, makePrompt, makeWeights, runOnce } from './synthetic-llama.js';

// ------------------------------------------------------------------ options

const { flag, opt, intOpt } = cliOptions(import.meta.url, {
  flags: ['--json', '--quick', '--breakdown'],
  values: ['--layers', '--dim', '--prompt', '--steps', '--repeats', '--threads', '--spin', '--configs', '--outlier-dims'],
});

const JSON_OUT = flag('--json');
const QUICK = flag('--quick');
const BREAKDOWN = flag('--breakdown');
const LAYERS = intOpt('--layers', QUICK ? 2 : 12);
const DIM = intOpt('--dim', 768);
const PROMPT = intOpt('--prompt', 128);
const STEPS = intOpt('--steps', QUICK ? 8 : 32);
const REPEATS = intOpt('--repeats', QUICK ? 3 : 5);
const THREADS = (opt('--threads') ?? '1,2').split(',').map(Number);
// the pool's spin before sleeping (us): 300 is the library default, 0 frees the cores at once
const SPIN_US = opt('--spin') === undefined ? 300 : Number(opt('--spin'));
if (!Number.isSafeInteger(SPIN_US) || SPIN_US < 0) throw new Error(`--spin must be a non-negative integer (microseconds), got ${opt('--spin')}`);
setSpin(SPIN_US);
if (THREADS.some((t) => !Number.isInteger(t) || t < 1)) throw new Error(`--threads must be a comma-separated list of positive integers`);
const ONLY = opt('--configs')?.split(',');
const OUTLIER_DIMS = opt('--outlier-dims') === undefined ? 0 : intOpt('--outlier-dims', 0);

function log(msg: string) {
  if (!JSON_OUT) process.stderr.write(msg + '\n');
}

const VARIANTS = ONLY ? ALL_VARIANTS.filter((v) => ONLY.includes(v.name)) : ALL_VARIANTS;
if (VARIANTS.length === 0) throw new Error(`--configs matched none of ${ALL_VARIANTS.map((v) => v.name).join(', ')}`);

interface Row {
  config: string;
  lmHead: 'f32' | 'quantized';
  threads: number;
  layers: number;
  dim: number;
  prompt: number;
  steps: number;
  footprintMB: number;
  quantizeMs: number;
  prefillMs: number;
  prefillTokS: number;
  decodeMsPerTok: number;
  decodeTokS: number;
  prefillX: number | null;
  decodeX: number | null;
  /** Speed-up over the first --threads count: the median over repeats of that repeat's time ratio (1 for the first count). */
  prefillScaling: number;
  decodeScaling: number;
  /** LLM.int8 only: mean outlier input columns per quantized layer in the last prefill. */
  outlierCols?: number;
}

function outlierColumns(model: Module): number | undefined {
  const qs = [...model.namedModules()].map(([, m]) => m).filter((m): m is QLinear => m instanceof QLinear && m.activations === 'llm.int8');
  return qs.length ? qs.reduce((a, q) => a + q.lastOutlierColumns, 0) / qs.length : undefined;
}

// ------------------------------------------------------------------ breakdown (--breakdown)

type AnyFn = (...a: unknown[]) => unknown;

/**
 * Exclusive wall time per category, from timers wrapped around methods of the
 * model's classes (prototype patches, undone afterwards: the model code is
 * untouched). A timed call is charged its own time minus that of timed calls
 * nested in it, so 'attention core' is the attention block minus its q/k/v/o
 * GEMMs and RoPE: the KV-cache write, scores, softmax, gathers.
 *
 * Blocks written as generators (forwardSteps, yielding their GEMMs to a
 * driver) are timed per resumption: each next() of the generator is one
 * timed segment, so the GEMMs the driver runs between resumptions are not
 * charged to the block. A block is timed through forwardSteps when its class
 * has one, else through forward, so this works with either form of the model.
 * The native f32 GEMM entry (addon.gemm) is timed when no Linear is on the
 * stack (attention's QK^T and SV products, in checkouts whose prefill
 * attention ran through GEMMs); the native attention op (addon.attention),
 * which the driver runs between resumptions, is charged to 'attention core'.
 */
class Breakdown {
  readonly acc = new Map<string, number>();
  readonly lmHeads = new WeakSet<object>();
  #stack: number[] = [];
  #restore: (() => void)[] = [];
  #linearDepth = 0;

  /** Time fn() under `cat` (exclusive of nested timed calls). */
  #timed<R>(cat: string, fn: () => R): R {
    const t0 = performance.now();
    this.#stack.push(0);
    try {
      return fn();
    } finally {
      const dt = performance.now() - t0;
      const nested = this.#stack.pop()!;
      this.acc.set(cat, (this.acc.get(cat) ?? 0) + dt - nested);
      if (this.#stack.length) this.#stack[this.#stack.length - 1]! += dt;
    }
  }

  #patch(obj: object, method: string, make: (orig: AnyFn) => AnyFn): void {
    const o = obj as Record<string, unknown>;
    const orig = o[method] as AnyFn;
    if (typeof orig !== 'function') throw new Error(`breakdown: no method ${method} to wrap`);
    o[method] = make(orig);
    this.#restore.push(() => (o[method] = orig));
  }

  /** Wrap a method; a returned generator has each of its resumptions timed too. */
  wrap(obj: object, method: string, category: string | ((self: object) => string)): void {
    const bd = this;
    this.#patch(obj, method, (orig) =>
      function (this: object, ...a: unknown[]) {
        const cat = typeof category === 'string' ? category : category(this);
        const r = bd.#timed(cat, () => orig.apply(this, a));
        if (r === null || typeof r !== 'object' || typeof (r as Iterator<unknown>).next !== 'function' || !(Symbol.iterator in r)) return r;
        const it = r as Generator<unknown, unknown, unknown>;
        // yield* drives the inner generator through next/throw/return: time all three
        const timedIt: Generator<unknown, unknown, unknown> = {
          next: (v?: unknown) => bd.#timed(cat, () => it.next(v)),
          throw: (e?: unknown) => bd.#timed(cat, () => it.throw(e)),
          return: (v?: unknown) => bd.#timed(cat, () => it.return(v)),
          [Symbol.iterator]() {
            return this;
          },
        } as Generator<unknown, unknown, unknown>;
        return timedIt;
      },
    );
  }

  /** The block method a model of this checkout runs: the generator form if it exists. */
  wrapBlock(proto: object, category: string): void {
    this.wrap(proto, typeof (proto as Record<string, unknown>).forwardSteps === 'function' ? 'forwardSteps' : 'forward', category);
  }

  install(): void {
    const bd = this;
    const gemm = (self: object) => (this.lmHeads.has(self) ? 'GEMM lm_head' : 'GEMM layers (q,k,v,o,gate,up,down)');
    for (const proto of [Linear.prototype, QLinear.prototype]) {
      this.wrap(proto, 'forward', gemm);
      this.#patch(proto, 'forward', (orig) =>
        function (this: object, ...a: unknown[]) {
          bd.#linearDepth++;
          try {
            return orig.apply(this, a);
          } finally {
            bd.#linearDepth--;
          }
        },
      );
    }
    this.#patch(addon, 'gemm', (orig) =>
      function (this: object, ...a: unknown[]) {
        return bd.#linearDepth > 0 ? orig.apply(this, a) : bd.#timed('attention GEMMs (QK^T, SV)', () => orig.apply(this, a));
      },
    );
    // q/k/v and gate/up as one native call (QLinear.forwardShared), outside Linear.forward
    for (const fn of ['gemmW4A8Multi', 'gemmW8A8Multi'] as const) {
      this.#patch(addon, fn, (orig) =>
        function (this: object, ...a: unknown[]) {
          return bd.#timed('GEMM layers (q,k,v,o,gate,up,down)', () => orig.apply(this, a));
        },
      );
    }
    this.#patch(addon, 'attention', (orig) =>
      function (this: object, ...a: unknown[]) {
        return bd.#timed('attention core + KV write', () => orig.apply(this, a));
      },
    );
    this.wrap(LlamaForCausalLM.prototype, 'forward', 'other (checks, cache, driver)');
    this.wrapBlock(LlamaDecoderLayer.prototype, 'residual adds');
    this.wrapBlock(LlamaAttention.prototype, 'attention core + KV write');
    this.wrapBlock(LlamaMLP.prototype, 'SiLU * up');
    this.wrap(RMSNorm.prototype, 'forward', 'RMSNorm');
    this.wrap(Rope.prototype, 'applyRotateHalf', 'RoPE');
    this.wrap(Embedding.prototype, 'forward', 'embedding');
  }

  uninstall(): void {
    for (const r of this.#restore.splice(0).reverse()) r();
  }

  reset(): void {
    this.acc.clear();
  }
}

interface BreakdownRow {
  kind: 'breakdown';
  config: string;
  threads: number;
  phase: 'prefill' | 'decode';
  category: string;
  /** ms per forward (prefill) or per token (decode). */
  ms: number;
  share: number;
}

function runBreakdown(config: LlamaConfig, lookup: TensorLookup, prompt: number[]): BreakdownRow[] {
  const rows: BreakdownRow[] = [];
  const bd = new Breakdown();
  bd.install();
  try {
    // every config named by --configs; by default the five base formats
    const broken = ONLY ? VARIANTS : VARIANTS.filter((x) => ['fp32', 'int8', 'int4-g32', 'w8a8', 'w4a8'].includes(x.name));
    for (const v of broken) {
      const { model } = build(config, lookup, v);
      bd.lmHeads.add(model.child('lm_head')!);
      for (const threads of THREADS) {
        setThreads(threads);
        const cache = model.createCache(prompt.length + STEPS);
        runOnce(model, prompt, 2, cache); // warm-up, as in the main table
        const sums = { prefill: new Map<string, number>(), decode: new Map<string, number>() };
        for (let r = 0; r < REPEATS; r++) {
          cache.reset();
          bd.reset();
          let tok = argmaxLast(model.forward(prompt, cache, { logits: 'last' }));
          for (const [k, ms] of bd.acc) sums.prefill.set(k, (sums.prefill.get(k) ?? 0) + ms / REPEATS);
          bd.reset();
          for (let s = 0; s < STEPS; s++) tok = argmaxLast(model.forward([tok], cache));
          for (const [k, ms] of bd.acc) sums.decode.set(k, (sums.decode.get(k) ?? 0) + ms / REPEATS / STEPS);
        }
        for (const phase of ['prefill', 'decode'] as const) {
          const total = [...sums[phase].values()].reduce((a, b) => a + b, 0);
          const sorted = [...sums[phase]].sort((a, b) => b[1] - a[1]);
          for (const [category, ms] of sorted) rows.push({ kind: 'breakdown', config: v.name, threads, phase, category, ms, share: ms / total });
          rows.push({ kind: 'breakdown', config: v.name, threads, phase, category: 'total', ms: total, share: 1 });
        }
      }
    }
  } finally {
    bd.uninstall();
  }
  return rows;
}

// ------------------------------------------------------------------ main

function main() {
  const config = makeConfig(LAYERS, DIM);
  const la = loadavg();
  log(
    `quantkit e2e: isa ${isa()}, Llama ${config.numLayers}L d${config.hiddenSize} h${config.numHeads}/kv${config.numKvHeads} ` +
      `ff${config.intermediateSize} vocab ${config.vocabSize}${OUTLIER_DIMS ? `, ${OUTLIER_DIMS} outlier dims` : ''}; prompt ${PROMPT}, decode ${STEPS} steps, median of ${REPEATS}; ` +
      `load average ${la.map((x) => x.toFixed(2)).join(' ')}`,
  );
  let t0 = performance.now();
  const weights = makeWeights(config, OUTLIER_DIMS);
  log(`  random weights: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const prompt = makePrompt(PROMPT);

  // Every config is built up front (~2.5 GB for the full set) and the repeats
  // go round-robin over configs: on a shared machine a burst of load then
  // spreads over all configs instead of skewing the one that ran during it.
  const built = VARIANTS.map((v) => {
    const t = performance.now();
    const b = build(config, weights, v);
    log(`  built ${v.name}: ${((performance.now() - t) / 1000).toFixed(1)} s (quantize ${(b.quantMs / 1000).toFixed(1)} s)`);
    // one cache per model, reset before each run (see runOnce)
    return { v, ...b, fp: footprint(b.model), cache: b.model.createCache(PROMPT + STEPS), pre: new Map<number, number[]>(), dec: new Map<number, number[]>() };
  });
  // Thread counts alternate inside each repeat too, so that a ratio between
  // them (the scaling columns) compares runs minutes apart at most, not a
  // whole phase of the run against another after the host's speed moved.
  for (const threads of THREADS) {
    setThreads(threads);
    for (const b of built) runOnce(b.model, prompt, 2, b.cache); // warm-up: JIT, RoPE tables, the cache's buffers at the prompt's size
  }
  for (let r = 0; r < REPEATS; r++) {
    for (const threads of THREADS) {
      setThreads(threads);
      for (const b of built) {
        const m = runOnce(b.model, prompt, STEPS, b.cache);
        b.pre.set(threads, [...(b.pre.get(threads) ?? []), m.prefillMs]);
        b.dec.set(threads, [...(b.dec.get(threads) ?? []), m.decodeMs / STEPS]);
      }
    }
    log(`  repeat ${r + 1}/${REPEATS} done (threads ${THREADS.join(', ')})`);
  }
  const rows: Row[] = [];
  for (const b of built) {
    const v = b.v;
    let outlierCols: number | undefined;
    if (v.q?.activations === 'llm.int8') {
      b.model.forward(prompt, b.model.createCache(PROMPT)); // outlier counts of a prefill, not of the last decode step
      outlierCols = outlierColumns(b.model);
    }
    // per-repeat speed-up over the first thread count, then the median
    const t1 = THREADS[0]!;
    const speedup = (times: Map<number, number[]>, threads: number) => median(times.get(threads)!.map((ms, i) => times.get(t1)![i]! / ms));
    for (const threads of THREADS) {
      const prefillMs = median(b.pre.get(threads)!);
      const decodeMs = median(b.dec.get(threads)!);
      rows.push({
        config: v.name,
        lmHead: v.q && v.q.exclude?.length === 0 ? 'quantized' : 'f32',
        threads, layers: config.numLayers, dim: config.hiddenSize, prompt: PROMPT, steps: STEPS,
        footprintMB: b.fp.bytes / 1e6,
        quantizeMs: b.quantMs,
        prefillMs, prefillTokS: PROMPT / (prefillMs / 1000),
        decodeMsPerTok: decodeMs, decodeTokS: 1000 / decodeMs,
        prefillX: null, decodeX: null,
        prefillScaling: speedup(b.pre, threads), decodeScaling: speedup(b.dec, threads),
        ...(outlierCols !== undefined ? { outlierCols } : {}),
      });
    }
  }
  built.length = 0; // let the models go before the breakdown builds its own
  for (const r of rows) {
    const f = rows.find((o) => o.config === 'fp32' && o.threads === r.threads);
    if (f) {
      r.prefillX = r.prefillTokS / f.prefillTokS;
      r.decodeX = r.decodeTokS / f.decodeTokS;
    }
  }
  const bdRows = BREAKDOWN ? runBreakdown(config, weights, prompt) : [];
  const la2 = loadavg();

  if (JSON_OUT) {
    for (const r of rows) process.stdout.write(JSON.stringify(r) + '\n');
    for (const r of bdRows) process.stdout.write(JSON.stringify(r) + '\n');
    return;
  }
  const fmt = (v: number | null | undefined, d = 2) => (v === null || v === undefined ? '' : v.toFixed(d));
  console.log(
    `\nisa ${isa()}; synthetic Llama ${config.numLayers} layers, hidden ${config.hiddenSize}, ${config.numHeads} heads / ${config.numKvHeads} KV, ` +
      `intermediate ${config.intermediateSize}, vocab ${config.vocabSize}, untied lm_head${OUTLIER_DIMS ? `, ${OUTLIER_DIMS} outlier dims` : ''}; prompt ${PROMPT} tokens, decode ${STEPS} steps; median of ${REPEATS}`,
  );
  console.log(`lm_head stays f32 unless the config says +head; footprint = footprint(model) in MB (1e6 B), embedding included; each config's KV cache reset and reused between repeats`);
  console.log(`thread pool spin ${SPIN_US} us (--spin); load average at start ${la.map((x) => x.toFixed(2)).join(' ')}, at end ${la2.map((x) => x.toFixed(2)).join(' ')} (2 vCPUs: above ~0.5 the machine is shared; distrust the numbers)\n`);
  const scaling = THREADS.length > 1;
  if (scaling) console.log(`x thr${THREADS[0]}: speed-up over ${THREADS[0]} thread(s), the median of the repeats' own ratios (the thread counts alternate inside each repeat)\n`);
  const header = ['config', 'thr', 'MB', 'prefill tok/s', 'x fp32', ...(scaling ? [`x thr${THREADS[0]}`] : []), 'decode tok/s', 'ms/tok', 'x fp32', ...(scaling ? [`x thr${THREADS[0]}`] : []), 'quantize s'];
  printTable(
    header,
    rows.map((r) =>
      [
        r.config + (r.outlierCols !== undefined ? ` (${r.outlierCols.toFixed(1)} outlier cols)` : ''),
        r.threads, fmt(r.footprintMB, 0), fmt(r.prefillTokS, 1), fmt(r.prefillX), ...(scaling ? [fmt(r.prefillScaling)] : []),
        fmt(r.decodeTokS, 2), fmt(r.decodeMsPerTok, 1), fmt(r.decodeX), ...(scaling ? [fmt(r.decodeScaling)] : []), fmt(r.quantizeMs / 1000, 1),
      ].map(String),
    ),
  );
  if (bdRows.length) {
    console.log('\nwhere the time goes (exclusive ms per prefill forward / per decoded token, timers on module forwards):\n');
    printTable(
      ['config', 'thr', 'phase', 'category', 'ms', 'share'],
      bdRows.map((r) => [r.config, String(r.threads), r.phase, r.category, fmt(r.ms, r.phase === 'prefill' ? 1 : 2), `${(100 * r.share).toFixed(1)}%`]),
    );
  }
}

main();
