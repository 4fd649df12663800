/**
 * LayerNorm and RMSNorm over the last dimension of an f32 tensor [..., D].
 * Weights (and LayerNorm's bias) are f32 [D]: norms are tiny, so the loaders
 * convert f16/bf16 norm weights to f32 once. Sums are accumulated in
 * float64 (JS numbers), which is at least as accurate as torch's f32.
 */
import { rangeError, typeError } from '../errors.js';
import { rmsNorm } from '../ops/elementwise.js';
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

  forward(x: Tensor): Tensor<'f32'> {
    const D = this.dim;
    const rows = checkInput('LayerNorm.forward', x, D);
    const src = x.data as Float32Array;
    const out = new Float32Array(src.length);
    const w = this.weight?.data;
    const b = this.bias?.data;
    for (let r = 0; r < rows; r++) {
      const o = r * D;
      let mean = 0;
      for (let i = 0; i < D; i++) mean += src[o + i]!;
      mean /= D;
      let v = 0;
      for (let i = 0; i < D; i++) {
        const d = src[o + i]! - mean;
        v += d * d;
      }
      const inv = 1 / Math.sqrt(v / D + this.eps); // biased variance, as torch
      for (let i = 0; i < D; i++) {
        let y = (src[o + i]! - mean) * inv;
        if (w) y *= w[i]!;
        if (b) y += b[i]!;
        out[o + i] = y;
      }
    }
    return new Tensor('f32', x.shape, out);
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

  forward(x: Tensor): Tensor<'f32'> {
    checkInput('RMSNorm.forward', x, this.dim);
    // native, in float64 like the loop it replaced (lib/ops/elementwise.ts)
    return new Tensor('f32', x.shape, rmsNorm(x.data as Float32Array, this.#weight.data, this.dim, this.eps));
  }

  override ownTensors(): Iterable<[string, Tensor]> {
    return [['weight', this.weight]];
  }
}
