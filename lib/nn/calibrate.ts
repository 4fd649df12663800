/**
 * Calibration statistics for quantizeModel: the Hessian H = X^T X of each
 * Linear's inputs X [T, K] over calibration text, collected by running the
 * model on it with probes in place of the layers.
 *
 * Memory stays bounded by one block: layers are grouped into stages (the
 * Linears of one numbered block, "model.layers.3.*"; any other layer on its
 * own), and each stage gets its own pass over the calibration windows, with
 * the earlier stages already quantized, so a layer is calibrated on the
 * inputs the quantized model will really give it (GPTQ's sequential order).
 * Layers of a stage that read the same input tensor (q, k and v) share one
 * X^T X product. Products run natively (matmul of X^T with itself).
 *
 * A decoder block's pass runs that block alone (BlockInputs): the hidden
 * states between blocks are kept for every window ([T, width] floats each),
 * so calibrating B blocks runs B block passes, not B forwards from the
 * embedding (O(B) instead of O(B^2)). Any other stage (an lm_head, OPT's
 * project_in/out) runs whole forwards, which stop once the stage's last
 * layer (in call order) has seen its input.
 *
 * Each pass is written as jobs (ops/jobs.ts), one per window and block run:
 * quantizeModel drives them blocking, quantizeModelAsync with the forwards'
 * async forms (GEMMs and attention on worker threads, the probes' X^T X
 * too).
 */
import { QuantkitError, describe, rangeError, typeError } from '../errors.js';
import { type Jobs, chunkedRows, job, runJobs, runJobsAsync } from '../ops/jobs.js';
import { matmul, matmulAsync } from '../ops/matmul.js';
import { Tensor } from '../tensor.js';
import type { Linear } from './linear.js';
import { Module } from './module.js';
import type { KVCache } from './steps.js';

/** What calibration needs of a model: a causal LM's forward over a fresh cache (and, to run one block at a time, DecoderLM's block runners). */
export interface CalibratableModel extends Module {
  createCache(capacity?: number): KVCache;
  forward(tokens: readonly number[], cache: KVCache): Tensor<'f32'>;
  /** forward() off the main thread (used by the async drivers when present). */
  forwardAsync?(tokens: readonly number[], cache: KVCache): Promise<Tensor<'f32'>>;
  readonly config?: { maxPositions?: number };
  readonly blocks?: number;
  blockName?(i: number): string;
  embedForCalibration?(tokens: readonly number[], cache: KVCache): Tensor<'f32'>;
  blockForCalibration?(i: number, x: Tensor<'f32'>, cache: KVCache): Tensor<'f32'>;
  embedForCalibrationAsync?(tokens: readonly number[], cache: KVCache): Promise<Tensor<'f32'>>;
  blockForCalibrationAsync?(i: number, x: Tensor<'f32'>, cache: KVCache): Promise<Tensor<'f32'>>;
}

export interface CalibrationData {
  /** Token ids of the calibration text (keep it disjoint from any evaluation text). */
  tokens: readonly number[];
  /** Tokens per window, each run from an empty cache (default: min(256, the model's context)). */
  context?: number;
}

export function checkCalibratable(fn: string, model: Module): asserts model is CalibratableModel {
  const m = model as Partial<CalibratableModel>;
  if (typeof m.createCache !== 'function' || typeof m.forward !== 'function') {
    throw new QuantkitError('ERR_UNSUPPORTED', `${fn}: calibration runs causal language models (Llama, GPT-2, OPT, CodeGen); this model has no createCache()/forward(tokens, cache)`);
  }
}

/** Validated calibration windows. */
export function calibrationWindows(fn: string, model: Module, data: CalibrationData): number[][] {
  if (data === null || typeof data !== 'object') throw typeError(fn, 'options.calibration', `must be an object { tokens, context? }, got ${describe(data)}`);
  const { tokens } = data;
  if (!Array.isArray(tokens) || tokens.length < 2) throw rangeError(fn, 'options.calibration.tokens', `must be an array of at least 2 token ids, got ${describe(tokens)}`);
  const maxPos = (model as Partial<CalibratableModel>).config?.maxPositions ?? 256;
  const context = data.context ?? Math.min(256, maxPos);
  if (!Number.isInteger(context) || context < 2 || context > maxPos) {
    throw rangeError(fn, 'options.calibration.context', `must be an integer in [2, ${maxPos}] (the model's context), got ${describe(data.context)}`);
  }
  const out: number[][] = [];
  for (let i = 0; i < tokens.length; i += context) {
    const w = tokens.slice(i, i + context) as number[];
    if (w.length >= 2 || out.length === 0) out.push(w);
  }
  return out;
}

/** Stage key of a dotted layer name: its numbered block ("model.layers.3"), else the name itself. */
export function stageOf(name: string): string {
  const m = /^(.*?\.\d+)\./.exec(name);
  return m ? m[1]! : name;
}

/** X^T X and the column sums of |x| of the last input seen, computed once for the probes that get the very same tensor. */
class SharedProduct {
  /** Probe calls so far (their first-call order). */
  calls = 0;
  /** Distinct input tensors seen so far (the id of the current one is inputs - 1). */
  inputs = 0;
  #x: Tensor | null = null;
  #stats: { xtx: Float32Array; absSum: Float64Array } | null = null;
  stats(x: Tensor<'f32'>, K: number): { xtx: Float32Array; absSum: Float64Array } {
    if (x === this.#x && this.#stats) return this.#stats;
    const { X, absSum } = this.#transposed(x, K);
    return this.#keep(x, matmul(X, X).data, absSum); // X^T · (X^T)^T = X^T X  [K, K]
  }
  /** stats() with the product on a worker thread. */
  async statsAsync(x: Tensor<'f32'>, K: number): Promise<{ xtx: Float32Array; absSum: Float64Array }> {
    if (x === this.#x && this.#stats) return this.#stats;
    const { X, absSum } = this.#transposed(x, K);
    return this.#keep(x, (await matmulAsync(X, X)).data, absSum);
  }
  #transposed(x: Tensor<'f32'>, K: number): { X: Tensor<'f32'>; absSum: Float64Array } {
    this.inputs++;
    const T = x.size / K;
    const xt = new Float32Array(K * T); // X^T [K, T]
    const absSum = new Float64Array(K);
    const d = x.data;
    for (let t = 0; t < T; t++) {
      for (let k = 0; k < K; k++) {
        const v = d[t * K + k]!;
        xt[k * T + t] = v;
        absSum[k] += Math.abs(v);
      }
    }
    return { X: new Tensor('f32', [K, T], xt), absSum };
  }
  #keep(x: Tensor, xtx: Float32Array, absSum: Float64Array): { xtx: Float32Array; absSum: Float64Array } {
    this.#stats = { xtx, absSum };
    this.#x = x;
    return this.#stats;
  }
}

/** Thrown by the stage's last probe to end a forward early (caught by the pass). */
class StopForward extends Error {}

/** Stands in for a Linear during a calibration pass: accumulates X^T X, then runs the layer. */
class HessianProbe extends Module {
  readonly h: Float64Array;
  /** sum over calibration rows of |x_k| [K] (for activation-aware scales). */
  readonly absSum: Float64Array;
  tokens = 0;
  /** Order of this probe's first call in the pass (-1: not called yet). */
  firstCall = -1;
  /** Which distinct input (in call order) this probe read on its first call: probes with one id read the same tensor (-1: none). */
  inputGroup = -1;
  /** Set on the stage's last probe once the call order is known. */
  stopAfterInput = false;
  constructor(
    readonly layer: Linear,
    private readonly shared: SharedProduct,
  ) {
    super();
    const K = layer.inFeatures;
    this.h = new Float64Array(K * K);
    this.absSum = new Float64Array(K);
  }
  forward(x: Tensor): Tensor<'f32'> {
    const K = this.layer.inFeatures;
    if (this.firstCall < 0) this.firstCall = this.shared.calls++;
    if (x.dtype === 'f32' && K > 0) {
      const st = this.shared.stats(x as Tensor<'f32'>, K);
      this.#addRows(st.xtx, 0, st.xtx.length);
      this.#add(x, K, st.absSum);
    }
    if (this.stopAfterInput) throw new StopForward();
    return this.layer.forward(x);
  }
  async forwardAsync(x: Tensor): Promise<Tensor<'f32'>> {
    const K = this.layer.inFeatures;
    if (this.firstCall < 0) this.firstCall = this.shared.calls++;
    if (x.dtype === 'f32' && K > 0) {
      const st = await this.shared.statsAsync(x as Tensor<'f32'>, K);
      // H += X^T X in chunks of rows, letting the event loop run between them
      await runJobsAsync(chunkedRows(K, K, (r0, r1) => this.#addRows(st.xtx, r0 * K, r1 * K)));
      this.#add(x, K, st.absSum);
    }
    if (this.stopAfterInput) throw new StopForward();
    return this.layer.forwardAsync(x);
  }
  #addRows(xtx: Float32Array, i0: number, i1: number): void {
    for (let i = i0; i < i1; i++) this.h[i] += xtx[i]!;
  }
  #add(x: Tensor, K: number, absSum: Float64Array): void {
    if (this.inputGroup < 0) this.inputGroup = this.shared.inputs - 1;
    for (let k = 0; k < K; k++) this.absSum[k] += absSum[k]!;
    this.tokens += x.size / K;
  }
}

/** What a calibration pass learns of one layer's inputs X [T, K]. */
export interface LayerInputStats {
  /** X^T X, float64 [K, K]. */
  h: Float64Array;
  /** mean over rows of |x_k|, [K]. */
  absMean: Float64Array;
  /** T. */
  tokens: number;
  /** Layers of one pass with the same inputGroup read the very same input tensor (q, k, v); ids rise in call order; -1: never called. */
  inputGroup: number;
}

export interface StageLayer {
  name: string;
  parent: Module;
  local: string;
  layer: Linear;
}

/** Probes in place of `layers` while `run` runs; the layers are back afterwards, also when it throws. */
function* withProbes(layers: readonly StageLayer[], run: (probes: HessianProbe[]) => Jobs<void>): Jobs<LayerInputStats[]> {
  const shared = new SharedProduct();
  const probes = layers.map((l) => new HessianProbe(l.layer, shared));
  layers.forEach((l, i) => l.parent.replaceChild(l.local, probes[i]!));
  try {
    yield* run(probes);
  } finally {
    layers.forEach((l) => l.parent.replaceChild(l.local, l.layer));
  }
  return probes.map((p) => ({ h: p.h, absMean: p.absSum.map((v) => (p.tokens > 0 ? v / p.tokens : 0)), tokens: p.tokens, inputGroup: p.inputGroup }));
}

/**
 * Run the calibration windows with probes on `layers` (one stage) and
 * return each layer's H = X^T X (float64 [K, K]) and mean |x_k| [K] in order. The layers are
 * back in place afterwards, also when a forward throws.
 */
export function collectHessians(model: CalibratableModel, layers: readonly StageLayer[], windows: readonly number[][]): LayerInputStats[] {
  return runJobs(collectHessiansJobs(model, layers, windows));
}

/** collectHessians as jobs: one whole forward per window. */
export function collectHessiansJobs(model: CalibratableModel, layers: readonly StageLayer[], windows: readonly number[][]): Jobs<LayerInputStats[]> {
  const stopped = (e: unknown) => {
    if (!(e instanceof StopForward)) throw e;
  };
  return withProbes(layers, function* (probes) {
    for (let i = 0; i < windows.length; i++) {
      const w = windows[i]!;
      if (i === 1) {
        // the call order is known: the last probe called ends the later passes
        const last = probes.reduce((a, p) => (p.firstCall > a.firstCall ? p : a));
        if (probes.every((p) => p.firstCall >= 0)) last.stopAfterInput = true;
      }
      const cache = () => model.createCache(Math.max(w.length, 1));
      yield* job<unknown>(
        () => {
          try {
            model.forward(w, cache());
          } catch (e) {
            stopped(e);
          }
        },
        async () => {
          try {
            await (model.forwardAsync ? model.forwardAsync(w, cache()) : model.forward(w, cache()));
          } catch (e) {
            stopped(e);
          }
        },
      );
    }
  });
}

/**
 * The hidden states entering one decoder block, for every calibration
 * window, as the model is now (blocks already quantized included): a
 * block's statistics come from running that block alone on them, and
 * advance() moves them past it once it is quantized.
 */
type BlockModel = CalibratableModel & Required<Pick<CalibratableModel, 'blocks' | 'blockName' | 'blockForCalibration' | 'embedForCalibration'>>;

export class BlockInputs {
  readonly #model: BlockModel;
  readonly #windows: readonly number[][];
  readonly #cache: KVCache;
  readonly #byName: Map<string, number>;
  /** Hidden states [T, width] per window entering block #next; null: recompute from the embedding. */
  #hidden: Tensor<'f32'>[] | null = null;
  #next = 0;

  private constructor(model: BlockModel, windows: readonly number[][]) {
    this.#model = model;
    this.#windows = windows;
    this.#cache = model.createCache(Math.max(1, ...windows.map((w) => w.length)));
    this.#byName = new Map(Array.from({ length: model.blocks }, (_, i) => [model.blockName(i), i]));
  }

  /** null when the model cannot run one block at a time. */
  static of(model: CalibratableModel, windows: readonly number[][]): BlockInputs | null {
    const m = model;
    if (typeof m.blockForCalibration !== 'function' || typeof m.embedForCalibration !== 'function' || typeof m.blockName !== 'function' || !Number.isInteger(m.blocks)) return null;
    return new BlockInputs(m as BlockModel, windows);
  }

  /** The block a stage key names (stageOf), or -1. */
  blockOf(stage: string): number {
    return this.#byName.get(stage) ?? -1;
  }

  /** Another stage changed weights the stored states came through: start again from the embedding. */
  invalidate(): void {
    this.#hidden = null;
  }

  /** Statistics of `layers` (all in block b) over every window, from block b alone. */
  collect(b: number, layers: readonly StageLayer[]): LayerInputStats[] {
    return runJobs(this.collectJobs(b, layers));
  }

  /** collect() as jobs: one block run per window. */
  *collectJobs(b: number, layers: readonly StageLayer[]): Jobs<LayerInputStats[]> {
    const hidden = yield* this.#seek(b);
    const self = this;
    return yield* withProbes(layers, function* () {
      for (const x of hidden) yield* self.#block(b, x);
    });
  }

  /** The stored states for block b, after running the blocks between (as they are now). */
  *#seek(b: number): Jobs<Tensor<'f32'>[]> {
    if (this.#hidden === null || this.#next > b) {
      const m = this.#model, cache = this.#cache;
      const hidden: Tensor<'f32'>[] = [];
      for (const w of this.#windows) {
        hidden.push(yield* job(() => m.embedForCalibration(w, cache), () => (m.embedForCalibrationAsync ? m.embedForCalibrationAsync(w, cache) : Promise.resolve(m.embedForCalibration(w, cache)))));
      }
      this.#hidden = hidden;
      this.#next = 0;
    }
    for (; this.#next < b; this.#next++) {
      const next: Tensor<'f32'>[] = [];
      for (const x of this.#hidden) next.push(yield* this.#block(this.#next, x));
      this.#hidden = next;
    }
    return this.#hidden;
  }

  /** Block b on one window's states, as a job. */
  #block(b: number, x: Tensor<'f32'>): Jobs<Tensor<'f32'>> {
    const m = this.#model, cache = this.#cache;
    return job(() => m.blockForCalibration(b, x, cache), () => (m.blockForCalibrationAsync ? m.blockForCalibrationAsync(b, x, cache) : Promise.resolve(m.blockForCalibration(b, x, cache))));
  }
}
