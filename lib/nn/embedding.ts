/**
 * Embedding: a lookup table weight [V, D] (f32, f16 or bf16); forward(ids)
 * gathers rows into f32 [T, D]. Half-precision tables are decoded row by row
 * at lookup instead of being widened at load, so a tied lm_head can share the
 * very same tensor (no copy) whatever its dtype.
 */
import { rangeError, typeError } from '../errors.js';
import { Tensor } from '../tensor.js';
import { lineArray } from '../ops/huge-pages.js';
import { Module } from './module.js';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE half bits -> number. */
export function f16ToNumber(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24; // subnormal
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** bfloat16 bits -> number (the top half of an f32). */
export function bf16ToNumber(h: number): number {
  u32[0] = h << 16;
  return f32[0]!;
}

export class Embedding extends Module {
  readonly weight: Tensor;
  readonly numEmbeddings: number;
  readonly dim: number;

  /** weight: [numEmbeddings, dim], f32/f16/bf16. */
  constructor(weight: Tensor) {
    super();
    if (!(weight instanceof Tensor)) throw typeError('Embedding', 'weight', 'must be a Tensor');
    if (weight.dtype !== 'f32' && weight.dtype !== 'f16' && weight.dtype !== 'bf16') {
      throw typeError('Embedding', 'weight', `must have dtype f32, f16 or bf16, got ${weight.dtype}`);
    }
    if (weight.shape.length !== 2) throw rangeError('Embedding', 'weight', `must be 2-D [V, D], got [${weight.shape.join(', ')}]`);
    this.weight = weight;
    this.numEmbeddings = weight.shape[0]!;
    this.dim = weight.shape[1]!;
  }

  /** Rows `ids` as f32 [ids.length, dim]; into `outArg` (ids.length * dim floats) when given. */
  forward(ids: readonly number[], outArg?: Float32Array): Tensor<'f32'> {
    const D = this.dim;
    if (outArg !== undefined && (!(outArg instanceof Float32Array) || outArg.length !== ids.length * D)) {
      throw rangeError('Embedding.forward', 'out', `must be a Float32Array of ids.length x dim = ${ids.length * D} values`);
    }
    const out = outArg ?? lineArray(Float32Array, ids.length * D);
    for (let t = 0; t < ids.length; t++) {
      const id = ids[t]!;
      if (!Number.isSafeInteger(id) || id < 0 || id >= this.numEmbeddings) {
        throw rangeError('Embedding.forward', 'ids', `must hold integers in [0, ${this.numEmbeddings}), got ${String(id)} at index ${t}`);
      }
      this.readRow(id, out, t * D);
    }
    return new Tensor('f32', [ids.length, D], out);
  }

  /** Decode row `id` into out[offset .. offset + dim). */
  readRow(id: number, out: Float32Array, offset: number): void {
    const D = this.dim;
    const base = id * D;
    if (this.weight.dtype === 'f32') {
      out.set((this.weight.data as Float32Array).subarray(base, base + D), offset);
      return;
    }
    const src = this.weight.data as Uint16Array;
    const dec = this.weight.dtype === 'bf16' ? bf16ToNumber : f16ToNumber;
    for (let i = 0; i < D; i++) out[offset + i] = dec(src[base + i]!);
  }

  override ownTensors(): Iterable<[string, Tensor]> {
    return [['weight', this.weight]];
  }
}
