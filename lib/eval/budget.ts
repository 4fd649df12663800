/**
 * quantizeToBudget: the smallest mix of per-layer formats whose perplexity
 * on the calibration text stays within a ratio of the float model's.
 *
 * 1. Sensitivity: each Linear alone is quantized to each candidate format
 *    (int4 g128, int4 g32, int8 per channel; round to nearest) and the mean
 *    KL divergence of the model's next-token distribution from the float
 *    model's is measured over the sensitivity tokens. KL is never negative
 *    and far less noisy than a perplexity difference (a lucky rounding can
 *    lower perplexity by chance; it cannot lower KL below 0), which is why
 *    llama.cpp reports it for quantization quality too.
 * 2. Order: start every layer at its smallest format; repeatedly take the
 *    upgrade (a layer to a larger format, or float) with the most KL saved
 *    per byte added, treating the layers' KL as additive (the usual model of
 *    mixed-precision search). This gives a sequence of plans from smallest
 *    to all-float.
 * 3. Check: binary search along that sequence for the first plan whose
 *    measured perplexity ratio on the check tokens (all the calibration
 *    tokens) is within the budget: each probe quantizes the model to the
 *    plan and measures it, so the answer rests on measurements, not on the
 *    additive estimate.
 *
 * The result is quantizeModel's summary (per-layer overrides, which
 * saveQuantized records as module_overrides) and the plan with every
 * measurement, for a table. Cost: layers x 3 forwards over the sensitivity
 * tokens, plus about log2(layers x 3) quantize-and-measure checks.
 */
import { QuantkitError, describe, rangeError, typeError } from '../errors.js';
import type { CausalLM } from '../models/causal-lm.js';
import { type CalibrationData, calibrationWindows, checkCalibratable } from '../nn/calibrate.js';
import { QLinear } from '../nn/linear.js';
import type { Module } from '../nn/module.js';
import { type LayerOverride, type QuantMethod, type QuantizeModelSummary, findLinears, layerQuantizeOptions, makeExcludeMatcher, quantizeModelJobs, resolveQuantConfig } from '../nn/quantize-model.js';
import { type Jobs, checkSignal, chunkedRows, job, runJobs, runJobsAsync } from '../ops/jobs.js';
import { logSumExp, perplexity, perplexityAsync } from './perplexity.js';

/** Candidate formats, from the fewest bytes to float. */
export type BudgetFormat = 'int4 g128' | 'int4 g32' | 'int8' | 'float';
const FORMATS: readonly BudgetFormat[] = ['int4 g128', 'int4 g32', 'int8', 'float'];

const OVERRIDE: Record<Exclude<BudgetFormat, 'float'>, Exclude<LayerOverride, 'float'>> = {
  'int4 g128': { weights: 'int4', granularity: 'group', groupSize: 128 },
  'int4 g32': { weights: 'int4', granularity: 'group', groupSize: 32 },
  int8: { weights: 'int8' },
};

export interface BudgetOptions {
  /** Largest allowed perplexity ratio to the float model on the calibration text (> 1, e.g. 1.01). */
  budget: number;
  /** Token ids the sensitivities and the checks are measured on (keep them disjoint from evaluation text). */
  calibration: CalibrationData;
  /** Calibration tokens the sensitivities use (default 4096, from the start; fewer when 256 MiB cannot hold their float log-probabilities: 2,097 for a 32,000 vocabulary); the checks use all of them. */
  sensitivityTokens?: number;
  /** Layers left in float (default ['lm_head']); see quantizeModel. */
  exclude?: readonly string[];
  /**
   * How each checked plan is quantized (default 'gptq', on the same
   * calibration data; 'rtn' is faster). Sensitivities are always measured
   * with round to nearest, which errs on the safe side for GPTQ.
   */
  method?: QuantMethod;
  /** Called as measurements finish: (done, total, what); total grows by the checks. */
  onProgress?: (done: number, total: number, what: string) => void;
  /** Stops the work before its next native call once aborted (see QuantizeModelOptions.signal): the model is left in some intermediate state, to discard. */
  signal?: AbortSignal;
}

export interface BudgetLayer {
  name: string;
  format: BudgetFormat;
  /** Bytes of the weight in each candidate format. */
  bytes: Record<BudgetFormat, number>;
  /** Mean KL (nats per token) with only this layer in that format (0 for float). */
  kl: Record<BudgetFormat, number>;
}

export interface BudgetCheck {
  /** Upgrades applied (0: every layer in its smallest format). */
  step: number;
  bytes: number;
  ratio: number;
}

export interface BudgetResult {
  summary: QuantizeModelSummary;
  budget: number;
  /** Float perplexity on the check tokens. */
  floatPpl: number;
  /** Measured ratio of the quantized model on the check tokens. */
  achievedRatio: number;
  layers: BudgetLayer[];
  /** Weight bytes of the plan, and if every candidate layer were int8. */
  bytes: number;
  bytesAllInt8: number;
  sensitivityTokens: number;
  checkTokens: number;
  /** The plans measured, in order. */
  checks: BudgetCheck[];
}

const FN = 'quantizeToBudget';
/** Memory for the float model's log-probabilities over the sensitivity tokens (4096 tokens of a 32,000 vocabulary would be 500 MiB). */
const REF_BYTES = 256 * 1024 * 1024;

/** Row-wise log-softmax of logits [T, V], in place, float64 sums (rows in chunks: see ops/jobs.ts). */
function* logSoftmaxInPlace(x: Float32Array, V: number): Jobs<Float32Array> {
  yield* chunkedRows(x.length / V, V, (r0, r1) => {
    for (let o = r0 * V; o < r1 * V; o += V) {
      const lse = logSumExp(x, o, V);
      for (let i = 0; i < V; i++) x[o + i] = x[o + i]! - lse;
    }
  });
  return x;
}

/** Quantize `model` in place to the smallest per-layer mix within `budget` (see the header). */
export function quantizeToBudget(model: Module, options: BudgetOptions): BudgetResult {
  return runJobs(budgetJobs(model, options, FN), checkSignal(FN, options?.signal));
}

/**
 * quantizeToBudget with its native calls on worker threads (forwards,
 * quantization, GPTQ): the same plan and layers, bit for bit, while the
 * event loop stays free. Leave the model alone until the Promise settles.
 */
export async function quantizeToBudgetAsync(model: Module, options: BudgetOptions): Promise<BudgetResult> {
  return runJobsAsync(budgetJobs(model, options, 'quantizeToBudgetAsync'), checkSignal('quantizeToBudgetAsync', options?.signal));
}

function* budgetJobs(model: Module, options: BudgetOptions, fn: string): Jobs<BudgetResult> {
  if (model === null || typeof model !== 'object' || typeof (model as Module).namedModules !== 'function') throw typeError(fn, 'model', `must be a Module, got ${describe(model)}`);
  if (options === null || typeof options !== 'object') throw typeError(fn, 'options', `must be an object, got ${describe(options)}`);
  const { budget } = options;
  if (typeof budget !== 'number' || !Number.isFinite(budget) || !(budget > 1)) throw rangeError(fn, 'options.budget', `must be a perplexity ratio > 1 (e.g. 1.01), got ${describe(budget)}`);
  checkCalibratable(fn, model);
  const lm = model as unknown as CausalLM;
  const windows = calibrationWindows(fn, model, options.calibration);
  const checkTokens = options.calibration.tokens as number[];
  const context = windows[0]!.length;
  const nSens = options.sensitivityTokens ?? 4096;
  if (!Number.isInteger(nSens) || nSens < 2) throw rangeError(fn, 'options.sensitivityTokens', `must be an integer >= 2, got ${describe(options.sensitivityTokens)}`);
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') throw typeError(fn, 'options.onProgress', `must be a function, got ${describe(options.onProgress)}`);
  // validated here so a bad value fails before the long measurements
  const method = options.method ?? 'gptq';
  resolveQuantConfig({ weights: 'int4', method, calibration: options.calibration, ...(options.exclude !== undefined ? { exclude: options.exclude } : {}) }, fn);
  const excluded = makeExcludeMatcher(options.exclude ?? ['lm_head']);
  const all = findLinears(model);
  const linears = all.filter((l) => !excluded(l.name));
  if (linears.length === 0) throw new QuantkitError('ERR_UNSUPPORTED', `${fn}: no Linear layer left to quantize after 'exclude'`);
  const V = lm.config.vocabSize;
  // the float model's log-probabilities are kept: at most REF_BYTES of them
  const nSensMax = Math.min(nSens, Math.max(2, Math.floor(REF_BYTES / (4 * V))));
  const sensWindows: number[][] = [];
  for (let n = 0, i = 0; i < windows.length && n < nSensMax; i++) {
    const w = windows[i]!.slice(0, nSensMax - n);
    if (w.length < 1) break;
    sensWindows.push(w);
    n += w.length;
  }
  const sensitivityTokens = sensWindows.reduce((a, w) => a + w.length, 0);
  const logProbs = function* (w: number[]): Jobs<Float32Array> {
    const cache = () => lm.createCache(Math.max(w.length, 1));
    const logits = yield* job(() => lm.forward(w, cache()), () => lm.forwardAsync(w, cache()));
    return yield* logSoftmaxInPlace(Float32Array.from(logits.data), V);
  };
  const ref: Float32Array[] = []; // float model's log-probabilities [T, V] per window
  for (const w of sensWindows) ref.push(yield* logProbs(w));
  const meanKl = function* (): Jobs<number> {
    let sum = 0;
    for (let j = 0; j < sensWindows.length; j++) {
      const q = yield* logProbs(sensWindows[j]!), r = ref[j]!;
      yield* chunkedRows(r.length / V, V, (r0, r1) => {
        for (let i = r0 * V; i < r1 * V; i++) {
          const lp = r[i]!;
          sum += Math.exp(lp) * (lp - q[i]!);
        }
      });
    }
    return Math.max(0, sum / sensitivityTokens);
  };

  let total = linears.length * 3 + 2;
  let done = 0;
  const progress = (what: string) => options.onProgress?.(++done, total, what);
  const ppl = function* (): Jobs<number> {
    const r = yield* job(() => perplexity(lm, checkTokens, { context }), () => perplexityAsync(lm, checkTokens, { context }));
    return r.ppl;
  };
  const floatPpl = yield* ppl();
  progress('float perplexity');

  // 1. sensitivities, one layer at a time (the others float)
  const layers: BudgetLayer[] = [];
  for (const l of linears) {
    const bytes = { float: l.layer.weight.nbytes } as Record<BudgetFormat, number>;
    const kl = { float: 0 } as Record<BudgetFormat, number>;
    for (const f of FORMATS) {
      if (f === 'float') continue;
      const opts = layerQuantizeOptions(resolveQuantConfig({ ...OVERRIDE[f] }, fn), l.name, l.layer.weight.shape)!;
      const q = yield* job(() => QLinear.fromLinear(l.layer, opts), () => QLinear.fromLinearAsync(l.layer, opts), l.layer.weight.size);
      bytes[f] = q.qweight.nbytes;
      l.parent.replaceChild(l.local, q);
      try {
        kl[f] = yield* meanKl();
      } finally {
        l.parent.replaceChild(l.local, l.layer);
      }
      progress(`${l.name} ${f}`);
    }
    layers.push({ name: l.name, format: FORMATS[0]!, bytes, kl });
  }

  // 2. the upgrade sequence: plans[i] = format per layer after i upgrades
  const plans: BudgetFormat[][] = [layers.map(() => FORMATS[0]!)];
  for (;;) {
    const cur = plans[plans.length - 1]!;
    let bestI = -1, bestF: BudgetFormat = 'float', bestKey = -Infinity;
    for (let i = 0; i < layers.length; i++) {
      const l = layers[i]!, from = cur[i]!;
      for (const f of FORMATS.slice(FORMATS.indexOf(from) + 1)) {
        const saved = l.kl[from] - l.kl[f];
        const added = Math.max(1, l.bytes[f] - l.bytes[from]);
        // ties (no KL saved) still move toward float, the cheapest first
        const key = saved > 0 ? saved / added : -added * 1e-30;
        if (key > bestKey) (bestI = i), (bestF = f), (bestKey = key);
      }
    }
    if (bestI < 0) break;
    const next = cur.slice();
    next[bestI] = bestF;
    plans.push(next);
  }

  // 3. binary search for the first plan within the budget (the last one is all float: ratio 1)
  const checks: BudgetCheck[] = [];
  let summary: QuantizeModelSummary | null = null;
  const restore = () => {
    for (const l of all) l.parent.replaceChild(l.local, l.layer);
  };
  const apply = function* (step: number): Jobs<number> {
    restore();
    const overrides: Record<string, LayerOverride> = {};
    for (const l of all) overrides[l.name] = 'float'; // the excluded ones stay so
    plans[step]!.forEach((f, i) => (overrides[layers[i]!.name] = f === 'float' ? 'float' : OVERRIDE[f]));
    summary = yield* quantizeModelJobs(model, { weights: 'int4', exclude: [], overrides, method, ...(method !== 'rtn' ? { calibration: options.calibration } : {}) }, fn);
    const ratio = (yield* ppl()) / floatPpl;
    checks.push({ step, bytes: plans[step]!.reduce((a, f, i) => a + layers[i]!.bytes[f], 0), ratio });
    progress(`check: plan ${step} of ${plans.length - 1}, ratio ${ratio.toFixed(4)}`);
    return ratio;
  };
  total += Math.ceil(Math.log2(plans.length)) + 1;
  let lo = 0, hi = plans.length - 1; // the answer lies in [lo, hi]; hi (all float) fits
  let hiRatio = 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const r = yield* apply(mid);
    if (r <= budget) {
      hi = mid;
      hiRatio = r;
    } else lo = mid + 1;
  }
  if (checks.length === 0 || checks[checks.length - 1]!.step !== hi) hiRatio = yield* apply(hi);
  plans[hi]!.forEach((f, i) => (layers[i]!.format = f));
  const bytes = layers.reduce((a, l) => a + l.bytes[l.format], 0);
  const bytesAllInt8 = layers.reduce((a, l) => a + l.bytes.int8, 0);
  return { summary: summary!, budget, floatPpl, achievedRatio: hiRatio, layers, bytes, bytesAllInt8, sensitivityTokens, checkTokens: checkTokens.length, checks };
}
