/**
 * LayerNorm and RMSNorm over the last dimension of an f32 tensor [..., D].
 * Weights (and LayerNorm's bias) are f32 [D]: norms are tiny, so the loaders
 * convert f16/bf16 norm weights to f32 once. Both run natively (normRows in
 * lib/ops/elementwise.ts): sums and products in float64, at least as
 * accurate as torch's f32. forwardAdd(x, residual) fuses the residual add
 * of a block with the norm that follows it.
 */
import { rangeError, typeError } from '../errors.js';
import { normRows } from '../ops/elementwise.js';
import { Tensor } from '../tensor.js';
import { Module } from './module.js';

function checkParam(fn: string, arg: string, t: Tensor | null | undefined, D: number | undefined): Tensor<'f32'> | null {
  if (t === null || t === undefined) return null;
  if (!(t instanceof Tensor) || t.dtype !== 'f32') throw typeError(fn, arg, 'must be an f32 Tensor');
  if (t.shape.length !== 1 || (D !== undefined && t.shape[0] !== D)) {
    throw rangeError(fn, arg, `must have shape [${D ?? 'D'}], got [${t.shape.join(', ')}]`);
  }
  return t as Tensor<'f32'>;
}

function checkInput(fn: string, x: Tensor, D: number): number {
  if (!(x instanceof Tensor) || x.dtype !== 'f32') throw typeError(fn, 'x', 'must be an f32 Tensor');
  if (x.shape.length === 0 || x.shape[x.shape.length - 1] !== D) {
    throw rangeError(fn, 'x', `must have last dimension ${D}, got shape [${x.shape.join(', ')}]`);
  }
  return x.size / D;
}

function checkResidual(fn: string, x: Tensor, r: Tensor): Float32Array {
  if (!(r instanceof Tensor) || r.dtype !== 'f32') throw typeError(fn, 'residual', 'must be an f32 Tensor');
  if (r.size !== x.size) throw rangeError(fn, 'residual', `must have the shape of x [${x.shape.join(', ')}], got [${r.shape.join(', ')}]`);
  return r.data as Float32Array;
}

/** A new [D] tensor t / s (a fold never writes into a tensor the caller may share). */
function dividedBy(t: Tensor<'f32'>, s: Float32Array): Tensor<'f32'> {
  return new Tensor('f32', t.shape, Float32Array.from(t.data, (v, i) => v / s[i]!), t.name);
}

/** y = (x - mean) / sqrt(var + eps) * weight + bias (weight/bias optional: elementwise_affine false). */
export class LayerNorm extends Module {
  readonly dim: number;
  readonly eps: number;
  #weight: Tensor<'f32'> | null;
  #bias: Tensor<'f32'> | null;

  constructor(dim: number, eps: number, weight: Tensor | null, bias: Tensor | null) {
    super();
    if (!Number.isSafeInteger(dim) || dim <= 0) throw rangeError('LayerNorm', 'dim', `must be a positive integer, got ${dim}`);
    this.dim = dim;
    this.eps = eps;
    this.#weight = checkParam('LayerNorm', 'weight', weight, dim);
    this.#bias = checkParam('LayerNorm', 'bias', bias, dim);
  }

  get weight(): Tensor<'f32'> | null {
    return this.#weight;
  }
  get bias(): Tensor<'f32'> | null {
    return this.#bias;
  }

  /**
   * y -> y / s per channel (s [D], positive): the output the next layers
   * see when their weight columns were multiplied by s (activation-aware
   * scaling, lib/nn/scale-fold.ts). Needs a weight (elementwise_affine);
   * returns false without one. New tensors: the old ones may be shared.
   */
  divideChannels(s: Float32Array): boolean {
    if (!this.#weight || s.length !== this.dim) return false;
    this.#weight = dividedBy(this.#weight, s);
    if (this.#bias) this.#bias = dividedBy(this.#bias, s);
    return true;
  }

  /** The norm of each row of x [..., D]; into `out` (x's length) when given. */
  forward(x: Tensor, out?: Float32Array): Tensor<'f32'> {
    checkInput('LayerNorm.forward', x, this.dim);
    return new Tensor('f32', x.shape, normRows(x.data as Float32Array, this.dim, { kind: 'layer', weight: this.#weight?.data ?? null, bias: this.#bias?.data ?? null, eps: this.eps }, out));
  }

  /** x = x + residual in place (the block's residual sum, kept in x), then forward(x, out). */
  forwardAdd(x: Tensor<'f32'>, residual: Tensor<'f32'>, out?: Float32Array): Tensor<'f32'> {
    checkInput('LayerNorm.forwardAdd', x, this.dim);
    const r = checkResidual('LayerNorm.forwardAdd', x, residual);
    return new Tensor('f32', x.shape, normRows(x.data, this.dim, { kind: 'layer', weight: this.#weight?.data ?? null, bias: this.#bias?.data ?? null, eps: this.eps, residual: r }, out));
  }

  override ownTensors(): Iterable<[string, Tensor]> {
    const out: [string, Tensor][] = [];
    if (this.weight) out.push(['weight', this.weight]);
    if (this.bias) out.push(['bias', this.bias]);
    return out;
  }
}

/** y = x / sqrt(mean(x^2) + eps) * weight (Llama). */
export class RMSNorm extends Module {
  readonly dim: number;
  readonly eps: number;
  #weight: Tensor<'f32'>;

  constructor(weight: Tensor, eps: number) {
    super();
    const w = checkParam('RMSNorm', 'weight', weight, undefined);
    if (w === null) throw typeError('RMSNorm', 'weight', 'must be an f32 Tensor');
    if (typeof eps !== 'number' || !Number.isFinite(eps) || eps < 0) throw rangeError('RMSNorm', 'eps', `must be a finite number >= 0, got ${eps}`);
    this.#weight = w;
    this.dim = w.shape[0]!;
    this.eps = eps;
  }

  get weight(): Tensor<'f32'> {
    return this.#weight;
  }

  /** y -> y / s per channel (s [D], positive); see LayerNorm.divideChannels. */
  divideChannels(s: Float32Array): boolean {
    if (s.length !== this.dim) return false;
    this.#weight = dividedBy(this.#weight, s);
    return true;
  }

  /** The norm of each row of x [..., D]; into `out` (x's length) when given. */
  forward(x: Tensor, out?: Float32Array): Tensor<'f32'> {
    checkInput('RMSNorm.forward', x, this.dim);
    return new Tensor('f32', x.shape, normRows(x.data as Float32Array, this.dim, { kind: 'rms', weight: this.#weight.data, eps: this.eps }, out));
  }

  /** x = x + residual in place (the block's residual sum, kept in x), then forward(x, out). */
  forwardAdd(x: Tensor<'f32'>, residual: Tensor<'f32'>, out?: Float32Array): Tensor<'f32'> {
    checkInput('RMSNorm.forwardAdd', x, this.dim);
    const r = checkResidual('RMSNorm.forwardAdd', x, residual);
    return new Tensor('f32', x.shape, normRows(x.data, this.dim, { kind: 'rms', weight: this.#weight.data, eps: this.eps, residual: r }, out));
  }

  override ownTensors(): Iterable<[string, Tensor]> {
    return [['weight', this.weight]];
  }
}
