/**
 * Rotary position embedding (RoPE) applied in place to q or k rows
 * x [T, nHeads * headDim] at positions pos0 .. pos0 + T - 1.
 *
 * Two pairings of a head's dimensions exist in the wild:
 *   rotate-half (Hugging Face Llama): pairs (x[i], x[i + hd/2])
 *   interleaved (llama2.c, Meta's original): pairs (x[2i], x[2i + 1])
 * Both rotate pair i by angle pos * invFreq[i], invFreq[i] = theta^(-2i/hd).
 * Angles, cos and sin are computed in float64 and cached per position.
 */
import { rangeError } from '../errors.js';
import { ropeInPlace } from '../ops/elementwise.js';

/** From this many values on, rotations run natively (below, the JS loop beats the call). */
const NATIVE_MIN = 2048;

export type RopeScaling =
  | { readonly type: 'linear'; readonly factor: number }
  | {
      readonly type: 'llama3';
      readonly factor: number;
      readonly lowFreqFactor: number;
      readonly highFreqFactor: number;
      readonly originalMaxPositions: number;
    };

/** invFreq[i] = theta^(-2i / headDim), i < headDim / 2, adjusted for `scaling`. */
export function ropeInvFreq(headDim: number, theta: number, scaling?: RopeScaling | null): Float64Array {
  if (!Number.isSafeInteger(headDim) || headDim <= 0 || headDim % 2 !== 0) throw rangeError('ropeInvFreq', 'headDim', `must be a positive even integer, got ${headDim}`);
  if (typeof theta !== 'number' || !Number.isFinite(theta) || theta <= 0) throw rangeError('ropeInvFreq', 'theta', `must be a positive finite number, got ${theta}`);
  const half = headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / theta ** ((2 * i) / headDim);
  if (scaling && !(Number.isFinite(scaling.factor) && scaling.factor > 0)) throw rangeError('ropeInvFreq', 'scaling.factor', `must be a positive finite number, got ${scaling.factor}`);
  if (scaling?.type === 'llama3' && !(scaling.highFreqFactor > scaling.lowFreqFactor && scaling.lowFreqFactor > 0)) {
    throw rangeError('ropeInvFreq', 'scaling', `needs 0 < lowFreqFactor < highFreqFactor, got ${scaling.lowFreqFactor} and ${scaling.highFreqFactor}`);
  }
  if (scaling?.type === 'linear') {
    for (let i = 0; i < half; i++) inv[i]! /= scaling.factor; // same as dividing positions by factor
  } else if (scaling?.type === 'llama3') {
    // Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, a smooth blend between
    const { factor, lowFreqFactor: lo, highFreqFactor: hi, originalMaxPositions: old } = scaling;
    const lowWavelen = old / lo;
    const highWavelen = old / hi;
    for (let i = 0; i < half; i++) {
      const f = inv[i]!;
      const wavelen = (2 * Math.PI) / f;
      if (wavelen < highWavelen) continue;
      if (wavelen > lowWavelen) inv[i] = f / factor;
      else {
        const smooth = (old / wavelen - lo) / (hi - lo);
        inv[i] = (1 - smooth) * (f / factor) + smooth * f;
      }
    }
  }
  return inv;
}

export class Rope {
  readonly headDim: number;
  readonly invFreq: Float64Array;
  /** cos/sin per position: [positions, headDim / 2], grown on demand. */
  #cos = new Float64Array(0);
  #sin = new Float64Array(0);
  #positions = 0;

  constructor(headDim: number, theta: number, scaling?: RopeScaling | null) {
    this.invFreq = ropeInvFreq(headDim, theta, scaling);
    this.headDim = headDim;
  }

  #ensure(positions: number): void {
    if (positions <= this.#positions) return;
    const n = Math.max(positions, 2 * this.#positions, 64);
    const half = this.headDim / 2;
    const cos = new Float64Array(n * half);
    const sin = new Float64Array(n * half);
    for (let p = 0; p < n; p++) {
      for (let i = 0; i < half; i++) {
        const a = p * this.invFreq[i]!;
        cos[p * half + i] = Math.cos(a);
        sin[p * half + i] = Math.sin(a);
      }
    }
    this.#cos = cos;
    this.#sin = sin;
    this.#positions = n;
  }

  /** HF rotate-half pairing, in place on x [T, nHeads * headDim]. */
  applyRotateHalf(x: Float32Array, T: number, nHeads: number, pos0: number): void {
    this.#apply(x, T, nHeads, pos0, false);
  }

  /**
   * Interleaved pairing (llama2.c; GPT-J and CodeGen's rotate-every-two), in
   * place on x [T, nHeads * headStride]: the first `headDim` dimensions of
   * each head rotate, the rest pass (partial rotary: headStride > headDim).
   */
  applyInterleaved(x: Float32Array, T: number, nHeads: number, pos0: number, headStride = this.headDim): void {
    this.#apply(x, T, nHeads, pos0, true, headStride);
  }

  #apply(x: Float32Array, T: number, nHeads: number, pos0: number, interleaved: boolean, stride = this.headDim): void {
    const hd = this.headDim;
    const half = hd / 2;
    if (!Number.isSafeInteger(stride) || stride < hd) throw rangeError('Rope.apply', 'headStride', `must be an integer >= headDim ${hd}, got ${stride}`);
    if (x.length !== T * nHeads * stride) throw rangeError('Rope.apply', 'x', `has ${x.length} elements, expected ${T} x ${nHeads} x ${stride}`);
    if (!Number.isSafeInteger(pos0) || pos0 < 0) throw rangeError('Rope.apply', 'pos0', `must be a non-negative integer, got ${pos0}`);
    this.#ensure(pos0 + T);
    // natively (the same double arithmetic as the loop below; bit for bit)
    if (x.length >= NATIVE_MIN) {
      ropeInPlace(x, T, nHeads, stride, half, pos0, this.#cos, this.#sin, interleaved);
      return;
    }
    const cos = this.#cos;
    const sin = this.#sin;
    for (let t = 0; t < T; t++) {
      const pc = (pos0 + t) * half;
      for (let h = 0; h < nHeads; h++) {
        const o = (t * nHeads + h) * stride;
        for (let i = 0; i < half; i++) {
          const a = interleaved ? o + 2 * i : o + i;
          const b = interleaved ? a + 1 : a + half;
          const x0 = x[a]!;
          const x1 = x[b]!;
          const c = cos[pc + i]!;
          const s = sin[pc + i]!;
          x[a] = x0 * c - x1 * s;
          x[b] = x0 * s + x1 * c;
        }
      }
    }
  }
}
