/**
 * Linear and QLinear: y = x · W^T + b for x [..., K], W [N, K].
 * Linear keeps an f32/f16/bf16 weight; QLinear an int8/int4 QuantizedTensor
 * that stays packed (its forward is one native call).
 */
import { describe, rangeError, typeError } from '../errors.js';
import { type PreparedWeight, checkBias, matmulPrepared, matmulPreparedAsync, prepareWeight } from '../ops/matmul.js';
import { QuantizedTensor } from '../quant/qtensor.js';
import { quantize } from '../quant/quantize.js';
import type { QuantizeOptions } from '../quant/qtypes.js';
import { Tensor } from '../tensor.js';
import { Module } from './module.js';

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

  forward(x: Tensor): Tensor<'f32'> {
    return matmulPrepared('Linear.forward', x, this.#w, this.#b);
  }

  /** forward() on a worker thread. */
  forwardAsync(x: Tensor): Promise<Tensor<'f32'>> {
    return matmulPreparedAsync('Linear.forwardAsync', x, this.#w, this.#b);
  }

  override ownTensors(): Iterable<[string, Tensor]> {
    const out: [string, Tensor][] = [['weight', this.weight]];
    if (this.bias) out.push(['bias', this.bias]);
    return out;
  }
}

export type QLinearOptions = QuantizeOptions & { bits?: 8 | 4 };

export class QLinear extends Module {
  readonly qweight: QuantizedTensor;
  readonly bias: Tensor<'f32'> | null;
  readonly #w: PreparedWeight;
  readonly #b: Float32Array | null;

  /** qweight: int8 or int4 QuantizedTensor [N, K]; bias: f32 [N]. */
  constructor(qweight: QuantizedTensor, bias?: Tensor<'f32'> | null) {
    super();
    if (!(qweight instanceof QuantizedTensor)) throw typeError('QLinear', 'qweight', `must be a QuantizedTensor, got ${describe(qweight)}`);
    if (qweight.bits !== 8 && qweight.bits !== 4) throw rangeError('QLinear', 'qweight', `must be int8 or int4, got ${qweight.bits} bits`);
    this.#w = prepareWeight('QLinear', 'qweight', qweight);
    this.#b = checkBias('QLinear', bias, this.#w.N);
    this.qweight = qweight;
    this.bias = bias ?? null;
  }

  /** Quantize a Linear's weight (default: int8 symmetric per channel). */
  static fromLinear(linear: Linear, options?: QLinearOptions): QLinear {
    if (!(linear instanceof Linear)) throw typeError('QLinear.fromLinear', 'linear', `must be a Linear, got ${describe(linear)}`);
    if (options?.bits !== undefined && options.bits !== 8 && options.bits !== 4) {
      throw rangeError('QLinear.fromLinear', 'options.bits', `must be 8 or 4, got ${describe(options.bits)}`);
    }
    return new QLinear(quantize(linear.weight, options), linear.bias);
  }

  get inFeatures(): number {
    return this.#w.K;
  }
  get outFeatures(): number {
    return this.#w.N;
  }

  forward(x: Tensor): Tensor<'f32'> {
    return matmulPrepared('QLinear.forward', x, this.#w, this.#b);
  }

  /** forward() on a worker thread. */
  forwardAsync(x: Tensor): Promise<Tensor<'f32'>> {
    return matmulPreparedAsync('QLinear.forwardAsync', x, this.#w, this.#b);
  }

  override ownTensors(): Iterable<[string, Tensor | QuantizedTensor]> {
    const out: [string, Tensor | QuantizedTensor][] = [['weight', this.qweight]];
    if (this.bias) out.push(['bias', this.bias]);
    return out;
  }
}
