/**
 * Bidirectional (encoder) self-attention over one sequence, every position
 * attending to every position: out = softmax(q k^T * scale) v per head, for
 * q, k, v f32 [T, nHeads * headDim] (head after head in each row). One
 * native step: the attention op (lib/ops/attention.ts) with causal = false,
 * over the sequence's keys written into its blocked layout and v's rows in
 * place. Sequences of a batch are attended one by one, so padding never
 * enters a softmax (an encoder's "attention mask" is the sequence length
 * itself).
 */
import { keyFloats, writeKeysValues } from '../ops/attention.js';
import { lineArray } from '../ops/huge-pages.js';
import { type ForwardSteps, attentionStep } from './steps.js';

export function* bidirectionalAttentionSteps(q: Float32Array, k: Float32Array, v: Float32Array, T: number, nHeads: number, headDim: number, scale: number): ForwardSteps<Float32Array> {
  const width = nHeads * headDim;
  if (T === 0) return new Float32Array(0);
  // on lines, as a decoder's cache: the kernel reads 64-float key and value rows
  const keys = lineArray(Float32Array, keyFloats(T, width));
  const values = lineArray(Float32Array, T * width);
  writeKeysValues(keys, values, k, v, 0, width);
  const o = yield* attentionStep({ q, T, pos0: 0, keys, values, nHeads, nKvHeads: nHeads, headDim, scale, causal: false });
  return o.data;
}
