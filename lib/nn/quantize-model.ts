/**
 * quantizeModel: swap every Linear of a module tree for a QLinear.
 *
 * It is modality-agnostic: it only walks Module.namedModules() and knows
 * Linear, so it works on any model built from lib/nn. Each replaced layer's
 * float weight is dropped with its Linear (parent.replaceChild; the model
 * keeps no other reference), except where another module shares the tensor
 * (a tied embedding keeps it alive, as it must).
 *
 * Exclude patterns (option `exclude`, default ['lm_head']) are matched
 * against dotted module names ("model.layers.0.mlp.up_proj"):
 *   - a pattern is a dotted name whose segments may use `*` (any characters
 *     within one segment) and `**` (any number of whole segments, including none);
 *   - it matches a layer when it matches a run of whole segments of the
 *     layer's name: the full name, a suffix ('lm_head' matches 'lm_head' and
 *     'model.lm_head'; 'q_proj' matches every q_proj) or an ancestor
 *     ('layers.0' excludes every Linear of layer 0);
 *   - examples: 'lm_head', 'layers.*.mlp.down_proj', 'layers.0.**', '**.v_proj'.
 * These are the semantics of HF's modules_to_not_convert (a name is skipped
 * when it contains the key), made segment-aligned so 'proj' does not match
 * 'q_proj'.
 */
import { describe, rangeError, typeError } from '../errors.js';
import { type Jobs, checkSignal, job, runJobs, runJobsAsync } from '../ops/jobs.js';
import { GptqFactorCache, gptqJobs } from '../quant/gptq.js';
import { type Granularity, type QuantizeOptions, type Scheme, type SchemeName, schemeOf } from '../quant/qtypes.js';
import { rowsK } from '../quant/qtypes.js';
import { toFloat32 } from '../quant/quantize.js';
import { type SearchQuantizer, scaleColumnsJobs, scaleHessianJobs, searchChannelScalesJobs } from '../quant/awq.js';
import { quantizeJob } from '../quant/quantize.js';
import { Tensor } from '../tensor.js';
import { BlockInputs, type CalibratableModel, type CalibrationData, type LayerInputStats, calibrationWindows, checkCalibratable, collectHessiansJobs, stageOf } from './calibrate.js';
import { type ChannelDivisible, type ScaleGroup, divideRows, isChannelDivisible, scaleGroupsOf } from './scale-fold.js';
import { type ActivationMode, Linear, QLinear, activationModeError, isActivationMode } from './linear.js';
import type { Module } from './module.js';

export type WeightsFormat = 'int8' | 'int4';
export type GroupFallback = 'tail' | 'divisor' | 'channel' | 'keep' | 'error';

export interface QuantizeModelOptions {
  weights: WeightsFormat;
  /**
   * Default 'symmetric' for int8 and 'asymmetric' for int4, the best
   * data-free int4 rule measured (README, "Which int4 rule"); 'sym'/'asym' work too.
   */
  scheme?: SchemeName;
  /** Default 'channel' for int8, 'group' for int4. */
  granularity?: Granularity;
  /** Values per scale along K for 'group' (default 32). */
  groupSize?: number;
  /** Module-name patterns left in float (default ['lm_head']); see the header. */
  exclude?: readonly string[];
  /**
   * A layer whose K the group size does not divide (e.g. K = 172 with
   * groups of 32): 'tail' (default) keeps the group size and makes each
   * row's last group shorter (172 = 5 x 32 + 12), with its own scale, in
   * every kernel and in checkpoints; 'divisor' uses the largest even divisor
   * of K below the group size instead (172 -> groups of 4: ~2.5x the scale
   * bytes); 'channel' quantizes it per channel (smaller, less accurate);
   * 'keep' leaves it in float; 'error' throws a RangeError.
   */
  groupFallback?: GroupFallback;
  /**
   * How the quantized layers treat their inputs (see QLinear): 'none'
   * (default, weight-only), 'int8' or 'llm.int8'. With weights 'int8' both
   * need scheme 'symmetric' and granularity 'channel' ('int8' is then
   * dynamic W8A8); with weights 'int4', 'int8' is W4A8 (any int4 scheme
   * and granularity, activations quantized per 32 values). 'int8-prefill':
   * 'int8' for prompts, weight-only for generated tokens (same weight
   * requirements as 'int8'; see QLinear).
   */
  activations?: ActivationMode;
  /** LLM.int8() outlier threshold (default 6.0). */
  threshold?: number;
  /**
   * How the layers store their scales: 'f32' (default) or 'f16' (half the
   * scale bytes: int4 g32 reads 0.5625 bytes per weight instead of 0.625,
   * as ggml's Q4_0; the codes are chosen with the f32 scales, then each
   * scale is rounded to f16: QuantizedTensor.withScaleDtype).
   */
  scaleDtype?: 'f32' | 'f16';
  /**
   * Calibration text as token ids (keep it disjoint from any text you
   * evaluate on): the layers are then quantized with GPTQ against the
   * statistics of their inputs on it (lib/quant/gptq.ts, lib/nn/calibrate.ts).
   * Causal LMs only.
   */
  calibration?: CalibrationData;
  /** See QuantMethod: 'rtn' is the default without calibration, DEFAULT_CALIBRATED with it. */
  method?: QuantMethod;
  /** GPTQ settings: activation order (default true), dampening (default 0.01 of mean diag H), block size (default 128), fit of each group's range and scale to the layer's output (default true; README, "Calibrated 4-bit"), sequential statistics within a block (default false; true: each input's layers are calibrated on the outputs of the block's layers already quantized, one more pass per input, about 4x the calibration time of a Llama block). */
  gptq?: { actOrder?: boolean; damp?: number; blockSize?: number; clip?: boolean; sequential?: boolean };
  /**
   * Per-layer formats by exact dotted layer name, over the options above:
   * 'float' keeps the layer in float; an object gives its weights (and
   * optionally scheme, granularity, groupSize; the same defaults apply).
   * quantizeToBudget() (lib/eval/budget.ts) writes these. The layers' activation
   * mode and method stay global.
   */
  overrides?: Readonly<Record<string, LayerOverride>>;
  /** Called after each layer is quantized (done counts from 1): for progress bars. */
  onProgress?: (done: number, total: number, layer: string) => void;
  /**
   * Stops the work before its next native call once aborted: the call
   * throws (quantizeModelAsync rejects with) the signal's reason. The stages
   * finished by then stay quantized and the others float (calibration probes
   * removed): a model to discard, or to quantize again from a fresh load.
   */
  signal?: AbortSignal;
}

export type LayerOverride = 'float' | { weights: WeightsFormat; scheme?: SchemeName; granularity?: Granularity; groupSize?: number };

/** The validated, defaulted options (what a checkpoint records). */
export interface ResolvedQuantConfig {
  weights: WeightsFormat;
  bits: 8 | 4;
  scheme: Scheme;
  granularity: Granularity;
  /** Set for 'group' only. */
  groupSize: number | undefined;
  exclude: string[];
  groupFallback: GroupFallback;
  activations: ActivationMode;
  /** Set for 'llm.int8' only. */
  threshold: number | undefined;
  method: QuantMethod;
  scaleDtype: 'f32' | 'f16';
}

/**
 * 'rtn': round to nearest; 'gptq': GPTQ error feedback; 'awq': activation-
 * aware channel scales folded into the op before each group of layers, then
 * round to nearest; 'awq+gptq': the scales, then GPTQ. All but 'rtn' need
 * calibration data.
 */
export type QuantMethod = 'rtn' | 'gptq' | 'awq' | 'awq+gptq';

/** The method used when calibration data is given and no method is (measured best: README, "Calibrated 4-bit"). */
export const DEFAULT_CALIBRATED: QuantMethod = 'gptq';
const METHODS: readonly QuantMethod[] = ['rtn', 'gptq', 'awq', 'awq+gptq'];

/** One group of layers that got activation-aware scales. */
export interface ScaleGroupResult {
  prev: string;
  layers: string[];
  /** The searched exponent (s = mean|x|^alpha, normalized). */
  alpha: number;
  /** Output error tr(ΔW H ΔW^T) of round to nearest without and with the scales (calibration inputs). */
  errorBefore: number;
  errorAfter: number;
  /** The scales s [K]: the layers now hold W diag(s), and prev's output channels (rows [rowOffset, rowOffset + K) of a Linear prev) are divided by s. */
  scales: Float32Array;
  rowOffset: number;
}

export interface QuantizedLayerFormat {
  name: string;
  bits: 8 | 4;
  scheme: Scheme;
  /** K, the weight's input dimension. */
  K: number;
  granularity: Granularity;
  /** Set for 'group' only. */
  groupSize?: number;
  /** Set for 'group' when groupSize does not divide K: the length of each row's shorter last group (K % groupSize). */
  lastGroup?: number;
}

export interface QuantizeModelSummary {
  config: ResolvedQuantConfig;
  /** Dotted names of the Linear layers now QLinear. */
  replaced: string[];
  /** Linear layers left in float (excluded, or kept by groupFallback 'keep'). */
  kept: string[];
  /** Layers quantized with another granularity or group size because the group size does not divide K (groupFallback other than 'tail'). */
  fallbacks: string[];
  /** What each replaced layer got, in `replaced` order (a fallback layer shows its own group size or 'channel'). */
  layers: QuantizedLayerFormat[];
  /** Bytes of the replaced layers' float weights (biases excluded: they stay f32). */
  bytesBefore: number;
  /** Bytes of their quantized weights: codes + scales + zero points. */
  bytesAfter: number;
  /** Groups given activation-aware scales (methods 'awq', 'awq+gptq'). */
  scaled: ScaleGroupResult[];
}

const FN = 'quantizeModel';

export function resolveQuantConfig(options: QuantizeModelOptions, fn = FN): ResolvedQuantConfig {
  if (options === null || typeof options !== 'object') throw typeError(fn, 'options', `must be an object, got ${describe(options)}`);
  const { weights } = options;
  if (weights !== 'int8' && weights !== 'int4') throw rangeError(fn, 'options.weights', `must be 'int8' or 'int4', got ${describe(weights)}`);
  const bits = weights === 'int8' ? 8 : 4;
  const scheme = options.scheme === undefined ? (bits === 4 ? 'asymmetric' : 'symmetric') : schemeOf(fn, options.scheme);
  const granularity = options.granularity ?? (bits === 8 ? 'channel' : 'group');
  if (granularity !== 'channel' && granularity !== 'group' && granularity !== 'tensor') {
    throw rangeError(fn, 'options.granularity', `must be 'channel', 'group' or 'tensor', got ${describe(granularity)}`);
  }
  let groupSize: number | undefined;
  if (granularity === 'group') {
    const g = options.groupSize ?? 32;
    if (typeof g !== 'number') throw typeError(fn, 'options.groupSize', `must be a number, got ${describe(g)}`);
    if (!Number.isInteger(g) || g < 2 || g % 2 !== 0) throw rangeError(fn, 'options.groupSize', `must be an even integer >= 2, got ${g}`);
    groupSize = g;
  } else if (options.groupSize !== undefined) {
    throw rangeError(fn, 'options.groupSize', `is only valid with granularity 'group' (granularity is '${granularity}')`);
  }
  const exclude = options.exclude ?? ['lm_head'];
  if (!Array.isArray(exclude)) throw typeError(fn, 'options.exclude', `must be an array of strings, got ${describe(exclude)}`);
  for (const p of exclude) {
    if (typeof p !== 'string') throw typeError(fn, 'options.exclude', `must hold strings, got ${describe(p)}`);
    if (p === '' || p.startsWith('.') || p.endsWith('.') || p.includes('..')) {
      throw rangeError(fn, 'options.exclude', `holds '${p}', which is not a dotted name pattern`);
    }
  }
  const groupFallback = options.groupFallback ?? 'tail';
  if (groupFallback !== 'tail' && groupFallback !== 'divisor' && groupFallback !== 'channel' && groupFallback !== 'keep' && groupFallback !== 'error') {
    throw rangeError(fn, 'options.groupFallback', `must be 'tail', 'divisor', 'channel', 'keep' or 'error', got ${describe(groupFallback)}`);
  }
  const activations = options.activations ?? 'none';
  if (!isActivationMode(activations)) throw rangeError(fn, 'options.activations', activationModeError(activations));
  // int8 activations over int4 weights (W4A8) take any int4 scheme and granularity.
  if (activations === 'llm.int8' || ((activations === 'int8' || activations === 'int8-prefill') && bits === 8)) {
    if (bits !== 8) throw rangeError(fn, 'options.weights', `must be 'int8' with activations '${activations}'`);
    if (scheme !== 'symmetric') throw rangeError(fn, 'options.scheme', `must be 'symmetric' with activations '${activations}'`);
    if (granularity !== 'channel') throw rangeError(fn, 'options.granularity', `must be 'channel' with activations '${activations}'`);
  }
  let threshold: number | undefined;
  if (options.threshold !== undefined && activations !== 'llm.int8') throw rangeError(fn, 'options.threshold', `only applies with activations 'llm.int8'`);
  if (activations === 'llm.int8') {
    threshold = options.threshold ?? 6.0;
    if (typeof threshold !== 'number' || !Number.isFinite(threshold) || threshold < 0) {
      throw rangeError(fn, 'options.threshold', `must be a finite number >= 0, got ${describe(threshold)}`);
    }
  }
  const method = options.method ?? (options.calibration !== undefined ? DEFAULT_CALIBRATED : 'rtn');
  if (!METHODS.includes(method)) throw rangeError(fn, 'options.method', `must be ${METHODS.map((m) => `'${m}'`).join(', ')}, got ${describe(method)}`);
  if (method !== 'rtn' && options.calibration === undefined) throw rangeError(fn, 'options.method', `'${method}' needs calibration data ('options.calibration')`);
  if (method !== 'rtn' && granularity === 'tensor') throw rangeError(fn, 'options.granularity', `'tensor' is not supported with method '${method}' (use 'channel' or 'group')`);
  const scaleDtype = options.scaleDtype ?? 'f32';
  if (scaleDtype !== 'f32' && scaleDtype !== 'f16') throw rangeError(fn, 'options.scaleDtype', `must be 'f32' or 'f16', got ${describe(scaleDtype)}`);
  return { weights, bits, scheme, granularity, groupSize, exclude: [...exclude], groupFallback, activations, threshold, method, scaleDtype };
}

/** Compile one exclude pattern to a regex over whole dotted names (see the header). */
export function excludePatternRegex(pattern: string): RegExp {
  // Matched against '.' + name: every segment carries its leading dot, so a
  // '**' (zero or more whole segments) needs no special dot handling.
  const body = pattern
    .split('.')
    .map((s) => (s === '**' ? '(?:\\.[^.]+)*' : `\\.${s.split('*').map((lit) => lit.replace(/[\\^$+?()[\]{}|.]/g, '\\$&')).join('[^.]*')}`))
    .join('');
  // leading/trailing runs of segments: the pattern may match a suffix of an ancestor's name
  return new RegExp(`^(?:\\.[^.]+)*${body}(?:\\.[^.]+)*$`);
}

/** A predicate telling whether a dotted module name is excluded by any pattern. */
export function makeExcludeMatcher(patterns: readonly string[]): (name: string) => boolean {
  const res = patterns.map(excludePatternRegex);
  return (name) => res.some((r) => r.test(`.${name}`));
}

/** The quantize() options for one layer, or null to keep it in float. */
export function layerQuantizeOptions(cfg: ResolvedQuantConfig, name: string, weightShape: readonly number[]): (QuantizeOptions & { bits: 8 | 4 }) | null {
  const o = layerFormat(cfg, name, weightShape);
  return o && cfg.scaleDtype === 'f16' ? { ...o, scaleDtype: 'f16' } : o;
}

function layerFormat(cfg: ResolvedQuantConfig, name: string, weightShape: readonly number[]): (QuantizeOptions & { bits: 8 | 4 }) | null {
  const [, K] = rowsK(weightShape);
  if (cfg.granularity === 'group' && K % cfg.groupSize! !== 0 && cfg.groupFallback !== 'tail') {
    if (cfg.groupFallback === 'keep') return null;
    if (cfg.groupFallback === 'error') {
      throw rangeError(FN, 'options.groupSize', `${cfg.groupSize} does not divide K = ${K} of layer '${name}' (set 'options.groupFallback' to tail, divisor, channel or keep)`);
    }
    if (cfg.groupFallback === 'divisor') {
      for (let g = cfg.groupSize! - 2; g >= 2; g -= 2) if (K % g === 0) return { bits: cfg.bits, scheme: cfg.scheme, granularity: 'group', groupSize: g };
    }
    // 'channel', or no even divisor (odd K)
    return { bits: cfg.bits, scheme: cfg.scheme, granularity: 'channel' };
  }
  return {
    bits: cfg.bits,
    scheme: cfg.scheme,
    granularity: cfg.granularity,
    ...(cfg.granularity === 'group' ? { groupSize: cfg.groupSize } : {}),
  };
}

/** Every Linear of the tree in namedModules() (depth-first) order, with its dotted name, parent and local name. */
export function findLinears(model: Module): { name: string; parent: Module; local: string; layer: Linear }[] {
  const out: { name: string; parent: Module; local: string; layer: Linear }[] = [];
  const byName = new Map<string, Module>();
  for (const [name, m] of model.namedModules()) {
    byName.set(name, m); // a parent always comes before its children
    if (!(m instanceof Linear) || name === '') continue;
    const cut = name.lastIndexOf('.');
    out.push({ name, parent: byName.get(cut < 0 ? '' : name.slice(0, cut))!, local: name.slice(cut + 1), layer: m });
  }
  return out;
}

/** Replace the model's Linear layers by QLinear in place; see the header for `exclude`. */
export function quantizeModel(model: Module, options: QuantizeModelOptions): QuantizeModelSummary {
  return runJobs(quantizeModelJobs(model, options, FN), checkSignal(FN, options?.signal));
}

/**
 * quantizeModel with every native call on a worker thread (the
 * calibration forwards, X^T X, GPTQ, the AWQ search, round to nearest): the
 * same layers bit for bit, while the event loop stays free. Between native
 * calls it runs short stretches of JavaScript on the caller's thread (the
 * README gives the longest measured). Options are checked before it
 * starts: a bad one rejects and leaves the model untouched. Do not use the
 * model until the Promise settles: its layers are swapped one stage at a
 * time, and calibration replaces them by probes while it runs.
 */
export async function quantizeModelAsync(model: Module, options: QuantizeModelOptions): Promise<QuantizeModelSummary> {
  return runJobsAsync(quantizeModelJobs(model, options, 'quantizeModelAsync'), checkSignal('quantizeModelAsync', options?.signal));
}

/** quantizeModel as jobs (ops/jobs.ts); `fn` names the caller in errors. */
export function* quantizeModelJobs(model: Module, options: QuantizeModelOptions, fn: string): Jobs<QuantizeModelSummary> {
  if (model === null || typeof model !== 'object' || typeof (model as Module).namedModules !== 'function') {
    throw typeError(fn, 'model', `must be a Module, got ${describe(model)}`);
  }
  const config = resolveQuantConfig(options, fn);
  const excluded = makeExcludeMatcher(config.exclude);
  const summary: QuantizeModelSummary = { config, replaced: [], kept: [], fallbacks: [], layers: [], bytesBefore: 0, bytesAfter: 0, scaled: [] };
  // collect first: replacing while iterating namedModules() would walk the new children
  const linears = findLinears(model);
  // A pattern the caller wrote that matches nothing is a typo ('layerz.*'),
  // which would otherwise quantize the layers it meant to keep. Checked before
  // any layer changes. The default ['lm_head'] may match nothing (tied heads).
  if (options.exclude !== undefined) {
    for (const p of config.exclude) {
      const matches = makeExcludeMatcher([p]);
      if (!linears.some((l) => matches(l.name))) {
        const names = linears.map((l) => l.name);
        const shown = names.slice(0, 6).join(', ') + (names.length > 6 ? `, ... (${names.length} in all)` : '');
        throw rangeError(fn, 'options.exclude', `pattern '${p}' matches no Linear layer of this model; its Linear layers are ${shown || 'none'}`);
      }
    }
  }
  // Every layer's format first (groupFallback 'error' throws here), so a
  // refusal leaves the model untouched.
  const overrides = resolveOverrides(options, linears.map((l) => l.name));
  const plan = linears.map((l) => {
    const o = overrides.get(l.name);
    if (o === null) return { ...l, opts: null };
    return { ...l, opts: o ? layerQuantizeOptions(o, l.name, l.layer.weight.shape) : excluded(l.name) ? null : layerQuantizeOptions(config, l.name, l.layer.weight.shape) };
  });
  const isFallback = (o: QuantizeOptions) => config.granularity === 'group' && (o.granularity !== 'group' || o.groupSize !== config.groupSize);
  const overridden = (name: string) => overrides.has(name);
  const quantized = plan.filter((p) => p.opts !== null);
  const candidates = plan.filter((p) => !excluded(p.name));
  // An explicit group size that divides no layer's K would be quantized as
  // something else everywhere (a fallback other than 'tail'), and one larger
  // than every K would make each row a single group: say so instead of
  // printing a format no layer has.
  if (options.groupSize !== undefined && config.granularity === 'group' && candidates.length > 0) {
    const ks = [...new Set(candidates.map((p) => rowsK(p.layer.weight.shape)[1]))].sort((a, b) => a - b);
    if (quantized.length > 0 && quantized.every((p) => isFallback(p.opts!))) {
      throw rangeError(fn, 'options.groupSize', `${config.groupSize} divides the K of no layer (K = ${ks.join(', ')}); choose a group size that divides K, or groupFallback 'tail'`);
    }
    if (ks.every((k) => config.groupSize! >= k)) {
      throw rangeError(fn, 'options.groupSize', `${config.groupSize} is not smaller than the K of any layer (K = ${ks.join(', ')}): every row would be one group; use granularity 'channel' for that`);
    }
  }
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') throw typeError(fn, 'options.onProgress', `must be a function, got ${describe(options.onProgress)}`);
  const toQuantize = plan.filter((p) => p.opts !== null).length;
  // Calibration checked before any layer changes.
  let windows: number[][] | null = null;
  if (config.method !== 'rtn') {
    checkCalibratable(fn, model);
    windows = calibrationWindows(fn, model, options.calibration!);
  }
  const g = options.gptq ?? {};
  if (g === null || typeof g !== 'object') throw typeError(fn, 'options.gptq', `must be an object, got ${describe(g)}`);
  let done = 0;
  const runtime = { activations: config.activations, ...(config.threshold !== undefined ? { threshold: config.threshold } : {}) };
  const finish = (p: (typeof plan)[number], q: QLinear) => {
    const { name, parent, local, layer, opts } = p;
    q.qweight.name = `${name}.weight`;
    parent.replaceChild(local, q);
    if (!overridden(name) && isFallback(opts!)) summary.fallbacks.push(name);
    summary.replaced.push(name);
    const K = rowsK(layer.weight.shape)[1];
    const tail = opts!.granularity === 'group' ? K % opts!.groupSize! : 0;
    summary.layers.push({ name, bits: opts!.bits, scheme: q.qweight.scheme, K, granularity: opts!.granularity ?? 'channel', ...(opts!.granularity === 'group' ? { groupSize: opts!.groupSize! } : {}), ...(tail ? { lastGroup: tail } : {}) });
    summary.bytesBefore += layer.weight.nbytes;
    summary.bytesAfter += q.qweight.nbytes;
    options.onProgress?.(++done, toQuantize, name);
  };
  for (const p of plan) if (p.opts === null) summary.kept.push(p.name);
  if (windows === null) {
    for (const p of plan) {
      if (p.opts === null) continue;
      const o = { ...p.opts, ...runtime };
      finish(p, yield* job(() => QLinear.fromLinear(p.layer, o), () => QLinear.fromLinearAsync(p.layer, o), p.layer.weight.size));
    }
  } else {
    // Calibrated: one stage (block) at a time, each calibrated on the
    // outputs of the stages already quantized (see calibrate.ts).
    const stages = new Map<string, typeof plan>();
    for (const p of plan) {
      if (p.opts === null) continue;
      const k = stageOf(p.name);
      if (!stages.has(k)) stages.set(k, []);
      stages.get(k)!.push(p);
    }
    const useAwq = config.method === 'awq' || config.method === 'awq+gptq';
    const useGptq = config.method === 'gptq' || config.method === 'awq+gptq';
    const sequential = g.sequential ?? false;
    const groups = useAwq ? scaleGroupsOf(model) : [];
    const modules = new Map(model.namedModules());
    const optsOf = new Map(plan.map((p) => [p.name, p.opts!]));
    // opts come from layerQuantizeOptions: bits is always set
    const gptqOf = (opts: QuantizeOptions) => ({
      bits: opts.bits as 8 | 4,
      scheme: schemeOf(fn, opts.scheme),
      groupSize: opts.granularity === 'group' ? opts.groupSize : undefined,
      ...(g.actOrder !== undefined ? { actOrder: g.actOrder } : {}),
      ...(g.damp !== undefined ? { damp: g.damp } : {}),
      ...(g.blockSize !== undefined ? { blockSize: g.blockSize } : {}),
      ...(g.clip !== undefined ? { clip: g.clip } : {}),
    });
    // Layers that read one input (q, k, v; gate, up) have equal Hessians:
    // GPTQ's factor is made once for them (a cache per scale search and per
    // stage, while those Hessians stay unchanged; equal values, checked).
    const newFactors = () => new GptqFactorCache(g.damp ?? 0.01, g.actOrder ?? true);
    const gptqQuant = function* (w: Tensor<'f32'>, h: Float64Array, opts: QuantizeOptions, factors: GptqFactorCache) {
      const go = gptqOf(opts);
      return yield* gptqJobs(w, h, go, fn, yield* factors.get(h, w.shape[1]!, fn));
    };
    const searchQuant = (): SearchQuantizer | undefined => {
      if (!useGptq) return undefined;
      const factors = newFactors();
      return function* (w, h, opts) {
        return (yield* gptqQuant(w, h, opts, factors)).dequantize().data;
      };
    };
    const inputs = BlockInputs.of(model as CalibratableModel, windows);
    for (const [key, stage] of stages) {
      const b = inputs?.blockOf(key) ?? -1;
      const collect = (layers: typeof plan) => (b >= 0 ? inputs!.collectJobs(b, layers) : collectHessiansJobs(model as CalibratableModel, layers, windows));
      const stats = yield* collect(stage);
      // float working copies the scales change before quantization
      const work = new Map(
        stage.map((p, i) => {
          const wt = toFloat32(p.layer.weight);
          return [p.name, { shape: wt.shape, w: Float32Array.from(wt.data), bias: p.layer.bias ? Float32Array.from(p.layer.bias.data) : null, st: stats[i]! }];
        }),
      );
      for (const grp of groups) {
        const scaled = yield* applyScaleGroup(grp, work, modules, (n) => optsOf.get(n)!, searchQuant());
        if (scaled) summary.scaled.push(scaled);
      }
      // With gptq.sequential, GPTQ runs sequentially within the stage (the
      // original's "true sequential"): the layers that read one input (q, k,
      // v) are quantized, then the next input's layers get statistics from a
      // fresh pass through the quantized ones (o_proj sees the quantized q, k, v).
      // The first pass's statistics (with the scales folded in) serve the
      // first input; later passes already see the folded model.
      let remaining = stage.slice();
      const factors = newFactors();
      for (let first = true; remaining.length > 0; first = false) {
        if (!first) {
          const fresh = yield* collect(remaining);
          remaining.forEach((p, i) => (work.get(p.name)!.st = fresh[i]!));
        }
        const called = remaining.filter((p) => work.get(p.name)!.st.inputGroup >= 0);
        const g0 = called.length > 0 ? Math.min(...called.map((p) => work.get(p.name)!.st.inputGroup)) : -1;
        const sub = useGptq && sequential && g0 >= 0 ? remaining.filter((p) => work.get(p.name)!.st.inputGroup === g0) : remaining;
        for (const p of sub) {
          const { shape, w, bias, st } = work.get(p.name)!;
          const wt = new Tensor('f32', shape, w, p.layer.weight.name);
          // GPTQ chooses codes against f32 scales; the layer's scales are stored as configured
          const qt = useGptq ? (yield* gptqQuant(wt, st.h, p.opts!, factors)).withScaleDtype(config.scaleDtype) : yield* quantizeJob(wt, p.opts!);
          finish(p, new QLinear(qt, bias ? new Tensor('f32', [bias.length], bias, p.layer.bias!.name) : null, runtime));
        }
        remaining = remaining.filter((p) => !sub.includes(p));
      }
      // a layer outside the blocks (OPT's project_in) may feed them
      if (b < 0) inputs?.invalidate();
    }
  }
  return summary;
}

/**
 * Each override resolved like the global options (with them as defaults
 * for what it leaves out): name -> config, or null for 'float'. A name that
 * is no Linear layer of the model is an error (a typo would otherwise
 * silently quantize the layer).
 */
function resolveOverrides(options: QuantizeModelOptions, names: readonly string[]): Map<string, ResolvedQuantConfig | null> {
  const out = new Map<string, ResolvedQuantConfig | null>();
  const o = options.overrides;
  if (o === undefined) return out;
  if (o === null || typeof o !== 'object' || Array.isArray(o)) throw typeError(FN, 'options.overrides', `must be an object of layer name -> format, got ${describe(o)}`);
  const known = new Set(names);
  for (const [name, v] of Object.entries(o)) {
    if (!known.has(name)) throw rangeError(FN, 'options.overrides', `names '${name}', which is not a Linear layer of this model`);
    if (v === 'float') {
      out.set(name, null);
      continue;
    }
    if (v === null || typeof v !== 'object') throw typeError(FN, `options.overrides['${name}']`, `must be 'float' or { weights, scheme?, granularity?, groupSize? }, got ${describe(v)}`);
    // What the override leaves out: the global scheme and granularity when it
    // keeps the global weights, else the defaults of ITS weights; the global
    // group size whenever it ends up in groups.
    const same = v.weights === options.weights;
    const granularity = v.granularity ?? (same ? options.granularity : undefined) ?? (v.weights === 'int8' ? 'channel' : 'group');
    const groupSize = granularity === 'group' ? (v.groupSize ?? options.groupSize) : v.groupSize;
    const scheme = v.scheme ?? (same ? options.scheme : undefined);
    out.set(name, resolveQuantConfig({ ...options, weights: v.weights, scheme, granularity, groupSize, overrides: undefined }, `${FN}: options.overrides['${name}']`));
  }
  return out;
}

interface WorkLayer {
  shape: readonly number[];
  w: Float32Array;
  bias: Float32Array | null;
  st: LayerInputStats;
}

/**
 * Search one group's activation-aware scales and fold them (see
 * lib/nn/scale-fold.ts): the group's layers must all be quantized in this
 * stage, and its prev op must be a norm that takes the fold or a Linear of
 * this stage (changed in `work`, before it is quantized itself). Each layer's
 * H becomes diag(1/s) H diag(1/s), the statistics of its new input x / s.
 */
function* applyScaleGroup(grp: ScaleGroup, work: Map<string, WorkLayer>, modules: Map<string, Module>, optsOf: (name: string) => QuantizeOptions, quant?: SearchQuantizer): Jobs<ScaleGroupResult | null> {
  if (grp.layers.length === 0 || !grp.layers.every((n) => work.has(n))) return null;
  const layers = grp.layers.map((n) => work.get(n)!);
  const K = layers[0]!.shape[1]!;
  if (!layers.every((l) => l.shape[1] === K)) return null;
  const prevWork = work.get(grp.prev);
  const prevMod = modules.get(grp.prev);
  const off = grp.rowOffset ?? 0;
  if (prevWork ? prevWork.shape[0]! < off + K : !isChannelDivisible(prevMod)) return null;
  const res = yield* searchChannelScalesJobs(
    grp.layers.map((n, i) => ({ weight: layers[i]!.w, N: layers[i]!.shape[0]!, options: optsOf(n) })),
    K,
    layers[0]!.st.h,
    layers[0]!.st.absMean,
    quant,
  );
  if (res.alpha === 0) return null;
  const s = res.scales;
  if (prevWork) {
    divideRows(prevWork.w, prevWork.bias, prevWork.shape[1]!, off, s);
  } else if (!(prevMod as Module & ChannelDivisible).divideChannels(s)) {
    return null;
  }
  for (const l of layers) {
    yield* scaleColumnsJobs(l.w, l.shape[0]!, K, s);
    yield* scaleHessianJobs(l.st.h, K, s);
    for (let k = 0; k < K; k++) l.st.absMean[k] = l.st.absMean[k]! / s[k]!;
  }
  return { prev: grp.prev, layers: [...grp.layers], alpha: res.alpha, errorBefore: res.errorBefore, errorAfter: res.errorAfter, scales: s, rowOffset: off };
}

/**
 * Dynamic int8 quantization in one call, what torch's
 * quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8) does: every Linear
 * gets int8 symmetric per-channel weights and quantizes its input to int8
 * per row at run time (W8A8, int32 accumulation). Like quantizeModel, it
 * leaves lm_head in float unless `exclude` says otherwise (pass [] to
 * quantize every Linear, as torch does).
 */
export function quantizeDynamic(model: Module, options: { exclude?: readonly string[] } = {}): QuantizeModelSummary {
  if (options === null || typeof options !== 'object') throw typeError('quantizeDynamic', 'options', `must be an object, got ${describe(options)}`);
  return quantizeModel(model, { weights: 'int8', scheme: 'symmetric', granularity: 'channel', activations: 'int8', ...(options.exclude !== undefined ? { exclude: options.exclude } : {}) });
}
