/**
 * Linear and QLinear: y = x · W^T + b for x [..., K], W [N, K].
 * Linear keeps an f32/f16/bf16 weight; QLinear an int8/int4 QuantizedTensor
 * that stays packed (its forward is one native call).
 */
import { describe, rangeError, typeError } from '../errors.js';
import { type PreparedWeight, type RowInvariance, checkBias, matmulPrepared, matmulPreparedAsync, prepareWeight } from '../ops/matmul.js';
import { matmulW4A8, matmulW4A8Async, matmulW4A8Multi, matmulW4A8MultiAsync, prepareW4A8 } from '../ops/w4a8.js';
import { type W8A8Weight, matmulW8A8, matmulW8A8Async, matmulW8A8Multi, matmulW8A8MultiAsync, prepareW8A8 } from '../ops/w8a8.js';
import { QuantizedTensor } from '../quant/qtensor.js';
import { quantize, quantizeAsync } from '../quant/quantize.js';
import { type QuantizeOptions, schemeOf } from '../quant/qtypes.js';
import { Tensor } from '../tensor.js';
import { Module } from './module.js';
import type { LinearCallOptions } from './steps.js';

/** options.rowInvariant, checked (see LinearCallOptions), as the product's RowInvariance. */
function rowInvariant(fn: string, options: LinearCallOptions | undefined): RowInvariance {
  if (options === undefined) return 'off';
  if (options === null || typeof options !== 'object') throw typeError(fn, 'options', `must be an object, got ${describe(options)}`);
  const v = options.rowInvariant ?? false;
  if (v === 'prefill') return 'prefill';
  if (typeof v !== 'boolean') throw typeError(fn, 'options.rowInvariant', `must be a boolean or 'prefill', got ${describe(v)}`);
  return v ? 'decode' : 'off';
}

export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor<'f32'> | null;
  readonly #w: PreparedWeight;
  readonly #b: Float32Array | null;

  /** weight: [out_features, in_features] f32/f16/bf16; bias: f32 [out_features]. */
  constructor(weight: Tensor, bias?: Tensor<'f32'> | null) {
    super();
    if (!(weight instanceof Tensor)) throw typeError('Linear', 'weight', `must be a Tensor, got ${describe(weight)}`);
    this.#w = prepareWeight('Linear', 'weight', weight);
    this.#b = checkBias('Linear', bias, this.#w.N);
    this.weight = weight;
    this.bias = bias ?? null;
  }

  get inFeatures(): number {
    return this.#w.K;
  }
  get outFeatures(): number {
    return this.#w.N;
  }

  /** x [..., K] -> [..., N]; into `out` (rows * N floats, not sharing x's memory) when given. */
  forward(x: Tensor, out?: Float32Array, options?: LinearCallOptions): Tensor<'f32'> {
    return matmulPrepared('Linear.forward', x, this.#w, this.#b, out, rowInvariant('Linear.forward', options));
  }

  /** forward() on a worker thread. */
  forwardAsync(x: Tensor, out?: Float32Array, options?: LinearCallOptions): Promise<Tensor<'f32'>> {
    return matmulPreparedAsync('Linear.forwardAsync', x, this.#w, this.#b, out, rowInvariant('Linear.forwardAsync', options));
  }

  override ownTensors(): Iterable<[string, Tensor]> {
    const out: [string, Tensor][] = [['weight', this.weight]];
    if (this.bias) out.push(['bias', this.bias]);
    return out;
  }
}

/** How a QLinear treats its input: float (weight-only quantization), int8, or int8 for prompt rows only. */
export type ActivationMode = 'none' | 'int8' | 'int8-prefill' | 'llm.int8';

/** Every ActivationMode, in the order the errors list them. */
export const ACTIVATION_MODES: readonly ActivationMode[] = ['none', 'int8', 'int8-prefill', 'llm.int8'];

/** Whether v is one of ACTIVATION_MODES (options and checkpoint files are checked with it). */
export function isActivationMode(v: unknown): v is ActivationMode {
  return (ACTIVATION_MODES as readonly unknown[]).includes(v);
}

/** The RangeError message part for a value that is not an ActivationMode. */
export function activationModeError(v: unknown): string {
  const names = ACTIVATION_MODES.map((m) => `'${m}'`);
  return `must be ${names.slice(0, -1).join(', ')} or ${names[names.length - 1]}, got ${describe(v)}`;
}

export interface QLinearRuntimeOptions {
  /**
   * 'none' (default): x stays f32, the int8/int4 weight is dequantized in
   * registers. 'int8': x is quantized to int8 on every call, products
   * accumulate in int32: with an int8 weight (symmetric per channel),
   * dynamic W8A8 with one scale per row of x; with an int4 weight (any
   * scheme and granularity), W4A8 with one scale per 32 values of x.
   * 'int8-prefill': 'int8' for prompt rows, 'none' for decode rows, on the
   * same stored weight (no second copy): a call of more than one row
   * (without options.rowInvariant) or of rows marked 'prefill' is a prompt;
   * a single row, or rows marked rowInvariant true (a batched decode step),
   * keep f32 activations. Prompts then run the integer kernels (as llama.cpp
   * does for every token) while each generated token keeps weight-only
   * accuracy. Same weight requirements as 'int8'.
   * 'llm.int8': LLM.int8() decomposition (int8 symmetric per-channel weight).
   */
  activations?: ActivationMode;
  /** LLM.int8() outlier threshold on |x| (default 6.0; 0 disables the decomposition). */
  threshold?: number;
}

export type QLinearOptions = QuantizeOptions & { bits?: 8 | 4 } & QLinearRuntimeOptions;

function runtimeOptions(fn: string, o: QLinearRuntimeOptions | undefined): { activations: ActivationMode; threshold: number } {
  const activations = o?.activations ?? 'none';
  if (!isActivationMode(activations)) throw rangeError(fn, 'options.activations', activationModeError(activations));
  const threshold = o?.threshold ?? 6.0;
  if (typeof threshold !== 'number' || !Number.isFinite(threshold) || threshold < 0) {
    throw rangeError(fn, 'options.threshold', `must be a finite number >= 0, got ${describe(threshold)}`);
  }
  if (o?.threshold !== undefined && activations !== 'llm.int8') throw rangeError(fn, 'options.threshold', `only applies with activations 'llm.int8'`);
  return { activations, threshold };
}

export class QLinear extends Module {
  readonly qweight: QuantizedTensor;
  readonly bias: Tensor<'f32'> | null;
  readonly activations: ActivationMode;
  /** LLM.int8() outlier threshold (only used with activations 'llm.int8'). */
  readonly threshold: number;
  /** Outlier input columns found by the last LLM.int8() forward. */
  lastOutlierColumns = 0;
  readonly #w: PreparedWeight | null;
  readonly #w4: PreparedWeight | null;
  readonly #w8: W8A8Weight | null;
  readonly #b: Float32Array | null;

  /** qweight: int8 or int4 QuantizedTensor [N, K]; bias: f32 [N]. */
  constructor(qweight: QuantizedTensor, bias?: Tensor<'f32'> | null, options?: QLinearRuntimeOptions) {
    super();
    if (!(qweight instanceof QuantizedTensor)) throw typeError('QLinear', 'qweight', `must be a QuantizedTensor, got ${describe(qweight)}`);
    if (qweight.bits !== 8 && qweight.bits !== 4) throw rangeError('QLinear', 'qweight', `must be int8 or int4, got ${qweight.bits} bits`);
    const rt = runtimeOptions('QLinear', options);
    this.activations = rt.activations;
    this.threshold = rt.threshold;
    this.#w = null;
    this.#w4 = null;
    this.#w8 = null;
    const prefill = rt.activations === 'int8-prefill';
    // 'int8-prefill' keeps both paths over the same codes: with int4 the
    // W4A8 kernels read the very weight the f32-activation ones do; #w8 adds
    // only the row sums (4 N bytes)
    if (rt.activations === 'none' || prefill) this.#w = prepareWeight('QLinear', 'qweight', qweight);
    if (prefill && qweight.bits === 4) this.#w4 = this.#w;
    else if (rt.activations === 'int8' && qweight.bits === 4) this.#w4 = prepareW4A8('QLinear', 'qweight', qweight);
    else if (rt.activations !== 'none') this.#w8 = prepareW8A8('QLinear', 'qweight', qweight);
    this.#b = checkBias('QLinear', bias, qweight.shape[0] ?? 0);
    this.qweight = qweight;
    this.bias = bias ?? null;
  }

  /**
   * Quantize a Linear's weight (default: int8 symmetric per channel). With
   * activations 'llm.int8', or 'int8' and 8 bits, the weight is int8
   * symmetric per channel; 'int8' with 4 bits takes any int4 weight (W4A8).
   */
  static fromLinear(linear: Linear, options?: QLinearOptions): QLinear {
    const { qopts, runtime } = fromLinearOptions('QLinear.fromLinear', linear, options);
    return new QLinear(quantize(linear.weight, qopts), linear.bias, runtime);
  }

  /** fromLinear with the quantization on a worker thread: the same layer. */
  static async fromLinearAsync(linear: Linear, options?: QLinearOptions): Promise<QLinear> {
    const { qopts, runtime } = fromLinearOptions('QLinear.fromLinearAsync', linear, options);
    return new QLinear(await quantizeAsync(linear.weight, qopts), linear.bias, runtime);
  }

  get inFeatures(): number {
    return this.qweight.shape[1] ?? 0;
  }
  get outFeatures(): number {
    return this.qweight.shape[0] ?? 0;
  }

  /**
   * x [..., K] -> [..., N]; into `out` (rows * N floats, not sharing x's
   * memory) when given. With options.rowInvariant, LLM.int8() picks each
   * row's outlier columns from that row alone (over all rows otherwise,
   * which would make a row's result depend on the others), still one int8
   * product for all rows.
   */
  forward(x: Tensor, out?: Float32Array, options?: LinearCallOptions): Tensor<'f32'> {
    const fn = 'QLinear.forward';
    const inv = rowInvariant(fn, options);
    if (this.#w && !this.#int8Rows(x, inv)) return matmulPrepared(fn, x, this.#w, this.#b, out, inv);
    if (this.#w4) return matmulW4A8(fn, x, this.#w4, this.#b, out);
    const r = matmulW8A8(fn, x, this.#w8!, this.#b, this.activations === 'llm.int8' ? this.threshold : -1, out, inv !== 'off');
    this.lastOutlierColumns = r.outliers;
    return r.y;
  }

  /** forward() on a worker thread. */
  async forwardAsync(x: Tensor, out?: Float32Array, options?: LinearCallOptions): Promise<Tensor<'f32'>> {
    const fn = 'QLinear.forwardAsync';
    const inv = rowInvariant(fn, options);
    if (this.#w && !this.#int8Rows(x, inv)) return matmulPreparedAsync(fn, x, this.#w, this.#b, out, inv);
    if (this.#w4) return matmulW4A8Async(fn, x, this.#w4, this.#b, out);
    const r = await matmulW8A8Async(fn, x, this.#w8!, this.#b, this.activations === 'llm.int8' ? this.threshold : -1, out, inv !== 'off');
    this.lastOutlierColumns = r.outliers;
    return r.y;
  }

  /**
   * Several layers that read the same x (a block's q/k/v, or gate/up) as
   * one native call that quantizes x once: when every layer is a QLinear
   * taking the same int8-activation path for these rows (all W4A8, or all
   * W8A8; not LLM.int8()), 2 to 4 of them. Returns each layer's forward(x,
   * outs[i], options), bit for bit, or null when the layers do not qualify
   * (the caller then runs them one by one).
   */
  static forwardShared(layers: readonly unknown[], x: Tensor, outs: readonly (Float32Array | undefined)[], options?: LinearCallOptions): Tensor<'f32'>[] | null {
    const fn = 'QLinear.forwardShared';
    const s = QLinear.#shared(fn, layers, x, outs, options);
    if (s === null) return null;
    return s.w4 ? matmulW4A8Multi(fn, x, s.w4, s.biases, outs) : matmulW8A8Multi(fn, x, s.w8!, s.biases, outs);
  }

  /** forwardShared on a worker thread (null, synchronously, when the layers do not qualify). */
  static forwardSharedAsync(layers: readonly unknown[], x: Tensor, outs: readonly (Float32Array | undefined)[], options?: LinearCallOptions): Promise<Tensor<'f32'>[]> | null {
    const fn = 'QLinear.forwardSharedAsync';
    const s = QLinear.#shared(fn, layers, x, outs, options);
    if (s === null) return null;
    return s.w4 ? matmulW4A8MultiAsync(fn, x, s.w4, s.biases, outs) : matmulW8A8MultiAsync(fn, x, s.w8!, s.biases, outs);
  }

  static #shared(fn: string, layers: readonly unknown[], x: Tensor, outs: readonly unknown[], options: LinearCallOptions | undefined): { w4?: PreparedWeight[]; w8?: W8A8Weight[]; biases: (Float32Array | null)[] } | null {
    if (!Array.isArray(layers)) throw typeError(fn, 'layers', `must be an array of layers, got ${describe(layers)}`);
    if (!Array.isArray(outs) || outs.length !== layers.length) {
      throw rangeError(fn, 'outs', `must be an array of ${layers.length} Float32Array or undefined entries (one per layer), got ${describe(outs)}`);
    }
    if (layers.length < 2 || layers.length > 4) return null;
    const inv = rowInvariant(fn, options);
    const w4: PreparedWeight[] = [], w8: W8A8Weight[] = [], biases: (Float32Array | null)[] = [];
    for (const l of layers) {
      if (!(l instanceof QLinear) || (l.#w && !l.#int8Rows(x, inv))) return null;
      if (l.#w4) w4.push(l.#w4);
      else if (l.activations !== 'llm.int8' && l.#w8) w8.push(l.#w8);
      else return null;
      biases.push(l.#b);
    }
    if (w4.length === layers.length) return { w4, biases };
    if (w8.length === layers.length) return { w8, biases };
    return null;
  }

  /**
   * With 'int8-prefill', whether x's rows are prompt rows, which take the
   * int8-activation path (rows marked 'prefill', or more than one row
   * outside row-invariant mode); false in every other mode that has a
   * weight-only path. A malformed x takes the weight-only path, whose
   * checks name the problem.
   */
  #int8Rows(x: Tensor, inv: RowInvariance): boolean {
    if (this.activations !== 'int8-prefill') return false;
    if (inv === 'prefill') return true;
    if (inv === 'decode' || !(x instanceof Tensor) || x.shape.length === 0) return false;
    const K = x.shape[x.shape.length - 1]!;
    return K > 0 && x.size > K;
  }

  override ownTensors(): Iterable<[string, Tensor | QuantizedTensor]> {
    const out: [string, Tensor | QuantizedTensor][] = [['weight', this.qweight]];
    if (this.bias) out.push(['bias', this.bias]);
    return out;
  }
}

/** fromLinear's checks: the quantize options and the runtime ones, apart. */
function fromLinearOptions(fn: string, linear: Linear, options: QLinearOptions | undefined): { qopts: QuantizeOptions; runtime: QLinearRuntimeOptions } {
  if (!(linear instanceof Linear)) throw typeError(fn, 'linear', `must be a Linear, got ${describe(linear)}`);
  if (options?.bits !== undefined && options.bits !== 8 && options.bits !== 4) {
    throw rangeError(fn, 'options.bits', `must be 8 or 4, got ${describe(options.bits)}`);
  }
  const { activations, threshold, ...qopts } = options ?? {};
  const rt = runtimeOptions(fn, { activations, threshold });
  if (rt.activations === 'llm.int8' || ((rt.activations === 'int8' || rt.activations === 'int8-prefill') && (qopts.bits ?? 8) === 8)) {
    if ((qopts.bits ?? 8) !== 8) throw rangeError(fn, 'options.bits', `must be 8 with activations '${rt.activations}'`);
    if (schemeOf(fn, qopts.scheme ?? 'symmetric') !== 'symmetric') throw rangeError(fn, 'options.scheme', `must be 'symmetric' with activations '${rt.activations}'`);
    if ((qopts.granularity ?? 'channel') === 'group') throw rangeError(fn, 'options.granularity', `must be 'channel' or 'tensor' with activations '${rt.activations}'`);
  }
  return { qopts, runtime: { activations, threshold } };
}
