/**
 * Bidirectional (encoder) self-attention over one sequence, every position
 * attending to every position: out = softmax(q k^T * scale) v per head, for
 * q, k, v f32 [T, nHeads * headDim] (head after head in each row). The two
 * products per head run as native GEMM steps, the softmax here in float64.
 * Sequences of a batch are attended one by one, so padding never enters a
 * softmax (an encoder's "attention mask" is the sequence length itself).
 */
import { Tensor } from '../tensor.js';
import { type ForwardSteps, matmulStep } from './steps.js';

/** Columns h*hd .. (h+1)*hd of x [T, nHeads * hd] as a contiguous [T, hd] tensor. */
function headSlice(x: Float32Array, T: number, width: number, h: number, hd: number): Float32Array {
  const out = new Float32Array(T * hd);
  for (let t = 0; t < T; t++) out.set(x.subarray(t * width + h * hd, t * width + (h + 1) * hd), t * hd);
  return out;
}

export function* bidirectionalAttentionSteps(q: Float32Array, k: Float32Array, v: Float32Array, T: number, nHeads: number, headDim: number, scale: number): ForwardSteps<Float32Array> {
  const width = nHeads * headDim;
  const out = new Float32Array(T * width);
  for (let h = 0; h < nHeads; h++) {
    const qh = new Tensor('f32', [T, headDim], headSlice(q, T, width, h, headDim));
    const kh = new Tensor('f32', [T, headDim], headSlice(k, T, width, h, headDim));
    const s = (yield* matmulStep(qh, kh)).data; // [T, T]: s[i, j] = q_i . k_j
    for (let i = 0; i < T; i++) {
      const row = s.subarray(i * T, (i + 1) * T);
      let m = -Infinity;
      for (let j = 0; j < T; j++) m = Math.max(m, row[j]! * scale);
      let z = 0;
      for (let j = 0; j < T; j++) z += Math.exp(row[j]! * scale - m);
      for (let j = 0; j < T; j++) row[j] = Math.exp(row[j]! * scale - m) / z;
    }
    // v_h^T [hd, T], so that P [T, T] . (v_h^T)^T = P v_h
    const vt = new Float32Array(headDim * T);
    for (let t = 0; t < T; t++) for (let d = 0; d < headDim; d++) vt[d * T + t] = v[t * width + h * headDim + d]!;
    const o = (yield* matmulStep(new Tensor('f32', [T, T], s), new Tensor('f32', [headDim, T], vt))).data; // [T, hd]
    for (let t = 0; t < T; t++) out.set(o.subarray(t * headDim, (t + 1) * headDim), t * width + h * headDim);
  }
  return out;
}
