/**
 * matmul(x, w, bias?) = x · w^T (+ bias): the linear-layer product.
 *   x: f32 [..., K]   w: [N, K] (Tensor f32/f16/bf16, or QuantizedTensor int8/int4)
 *   -> f32 [..., N]
 * Quantized weights stay packed; the kernels dequantize them in registers.
 */
import { WFormat, addon } from '../binding.js';
import { QuantkitError, describe, rangeError, typeError } from '../errors.js';
import { QuantizedTensor } from '../quant/qtensor.js';
import { Tensor } from '../tensor.js';
import { lineArray } from './huge-pages.js';

/** A weight in the form the native gemm takes; built once per layer and reused. */
export interface PreparedWeight {
  readonly N: number;
  readonly K: number;
  readonly format: WFormat;
  readonly data: Float32Array | Uint16Array | Int8Array | Uint8Array;
  readonly groupSize: number;
  /** f32 scales, or f16 bits (the kernels take either). */
  readonly scales: Float32Array | Uint16Array | null;
  readonly zeroPoints: Int8Array | Uint8Array | null;
}

const FLOAT_FORMAT = { f32: WFormat.f32, f16: WFormat.f16, bf16: WFormat.bf16 } as const;

/**
 * Check a weight and describe it for the native gemm. Per-tensor scales are
 * broadcast to one per row here, once, so the kernels only know per-group
 * (per-channel = one group of K).
 */
export function prepareWeight(fn: string, arg: string, w: Tensor | QuantizedTensor): PreparedWeight {
  if (w instanceof QuantizedTensor) {
    if (w.shape.length !== 2) throw rangeError(fn, arg, `must be 2-D [N, K], got shape [${w.shape.join(', ')}]`);
    const [N, K] = w.shape as [number, number];
    if (w.bits === 2) throw new QuantkitError('ERR_UNSUPPORTED', `${fn}: '${arg}' is 2-bit; there is no int2 matrix multiplication yet (dequantize() it first)`);
    if (w.bits === 4 && K % 2 !== 0) throw new QuantkitError('ERR_UNSUPPORTED', `${fn}: '${arg}' is int4 with an odd K = ${K}; int4 matmul needs an even K`);
    let scales: Float32Array | Uint16Array = w.scaleData;
    let zps = w.zeroPoints;
    let G = w.groupSize;
    if (w.granularity === 'tensor') {
      scales = new Float32Array(N).fill(w.scales[0] ?? 1);
      if (zps) zps = zps instanceof Int8Array ? new Int8Array(N).fill(zps[0] ?? 0) : new Uint8Array(N).fill(zps[0] ?? 0);
      G = K;
    }
    return { N, K, format: w.bits === 8 ? WFormat.i8 : WFormat.i4, data: w.data, groupSize: G, scales, zeroPoints: zps };
  }
  if (!(w instanceof Tensor)) throw typeError(fn, arg, `must be a Tensor or QuantizedTensor, got ${describe(w)}`);
  if (w.dtype !== 'f32' && w.dtype !== 'f16' && w.dtype !== 'bf16') {
    throw typeError(fn, arg, `must have dtype f32, f16 or bf16 (or be a QuantizedTensor), got ${w.dtype}`);
  }
  if (w.shape.length !== 2) throw rangeError(fn, arg, `must be 2-D [N, K], got shape [${w.shape.join(', ')}]`);
  const [N, K] = w.shape as [number, number];
  return { N, K, format: FLOAT_FORMAT[w.dtype], data: w.data as Float32Array | Uint16Array, groupSize: K, scales: null, zeroPoints: null };
}

export function checkBias(fn: string, bias: Tensor | null | undefined, N: number): Float32Array | null {
  if (bias === undefined || bias === null) return null;
  if (!(bias instanceof Tensor) || bias.dtype !== 'f32') throw typeError(fn, 'bias', `must be an f32 Tensor, got ${describe(bias)}`);
  if (bias.size !== N || bias.shape.length !== 1) throw rangeError(fn, 'bias', `must have shape [${N}], got [${bias.shape.join(', ')}]`);
  return bias.data as Float32Array;
}

/**
 * Check an activation x f32 [..., K] against a weight [N, K] and give the
 * output [..., N]: over `out` when given (rows * N floats, every one written
 * by the product: a caller's reusable buffer), else a new array; rows = the
 * product of x's leading dimensions.
 */
export function linearOutput(fn: string, x: Tensor, N: number, K: number, out?: Float32Array): { rows: number; y: Tensor<'f32'> } {
  if (!(x instanceof Tensor)) throw typeError(fn, 'x', `must be a Tensor, got ${describe(x)}`);
  if (x.dtype !== 'f32') throw typeError(fn, 'x', `must have dtype f32, got ${x.dtype}`);
  if (x.shape.length === 0) throw rangeError(fn, 'x', 'must have at least one dimension [..., K]');
  const xK = x.shape[x.shape.length - 1]!;
  if (xK !== K) throw rangeError(fn, 'x', `has last dimension ${xK}, but the weight has K = ${K}`);
  let rows = 1;
  for (let i = 0; i < x.shape.length - 1; i++) rows *= x.shape[i]!;
  if (out !== undefined) {
    if (!(out instanceof Float32Array)) throw typeError(fn, 'out', `must be a Float32Array, got ${describe(out)}`);
    if (out.length !== rows * N) throw rangeError(fn, 'out', `has ${out.length} values, the output has ${rows} x ${N}`);
    if (out.buffer === x.data.buffer) throw rangeError(fn, 'out', "must not share memory with 'x'");
  }
  return { rows, y: new Tensor('f32', outputShape(x.shape, N), out ?? lineArray(Float32Array, rows * N)) };
}

/**
 * The outputs of several products of one x [..., K] (a multi-product call:
 * q/k/v, or gate/up): each as linearOutput gives it (which also checks that
 * every weight's K is x's), the row count, and the indices of the products
 * that have outputs (N > 0 and rows > 0: the ones the native call runs).
 * Given output buffers must not overlap, since the products run at once.
 */
export function multiOutputs(fn: string, x: Tensor, ws: readonly { N: number; K: number }[], outs: readonly (Float32Array | undefined)[]): { rows: number; live: number[]; ys: Tensor<'f32'>[] } {
  checkDisjoint(fn, outs);
  const live: number[] = [];
  let rows = 0;
  const ys = ws.map((w, i) => {
    const o = linearOutput(fn, x, w.N, w.K, outs[i]);
    rows = o.rows;
    if (o.y.size > 0) live.push(i);
    return o.y;
  });
  return { rows, live, ys };
}

function checkDisjoint(fn: string, outs: readonly (Float32Array | undefined)[]): void {
  for (let i = 0; i < outs.length; i++) {
    const a = outs[i];
    if (a === undefined) continue;
    for (let j = 0; j < i; j++) {
      const b = outs[j];
      if (b === undefined || b.buffer !== a.buffer) continue;
      if (a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength) {
        throw rangeError(fn, `outs[${i}]`, `overlaps outs[${j}]`);
      }
    }
  }
}

/**
 * x's shape with its last dimension replaced by N. For x [rows, K], one
 * frozen [rows, N] per N, kept while rows stays the same: a decode step
 * asks for the same few shapes every layer (Tensor keeps a frozen shape
 * without copying it).
 */
const shapesByN = new Map<number, readonly number[]>();
function outputShape(xs: readonly number[], N: number): readonly number[] {
  if (xs.length === 2) {
    let s = shapesByN.get(N);
    if (s === undefined || s[0] !== xs[0]) {
      if (shapesByN.size >= 64) shapesByN.clear();
      s = Object.freeze([xs[0]!, N]);
      shapesByN.set(N, s);
    }
    return s;
  }
  const s = xs.slice();
  s[s.length - 1] = N;
  return s;
}

type GemmArgs = Parameters<typeof addon.gemm>;

/**
 * How a product's rows are computed: 'off' (fastest path for its M), or so
 * that a row's bits do not depend on M: 'decode' runs the small-M kernel at
 * every M, 'prefill' the large-M kernel with M-independent blocking (each
 * gives its own bits; a caller keeps a row in one of them).
 */
export type RowInvariance = 'off' | 'decode' | 'prefill';
const ROW_MODE = { off: 0, decode: 1, prefill: 2 } as const;

function prepareCall(fn: string, x: Tensor, w: PreparedWeight, bias: Float32Array | null, out: Float32Array | undefined, rows: RowInvariance): { args: GemmArgs | null; y: Tensor<'f32'> } {
  const { rows: M, y } = linearOutput(fn, x, w.N, w.K, out);
  if (y.size === 0) return { args: null, y };
  // int8 weights keep the small-M kernel for prompt rows too: at 32-64 rows
  // it was as fast as the panel path (768- and 4096-wide layers, AMD Zen 4,
  // one thread; first tokens of bench:batch 65 vs 86 ms), which pays off for
  // int4 only (its gemv decodes each weight once per 4 rows)
  const mode = rows === 'prefill' && w.format === WFormat.i8 ? ROW_MODE.decode : ROW_MODE[rows];
  return { args: [x.data as Float32Array, M, w.K, w.format, w.data, w.N, w.groupSize, w.scales, w.zeroPoints, bias, y.data, mode], y };
}

/** Run a prepared weight on x [..., K] (into `out` when given, see linearOutput; rows: see RowInvariance). */
export function matmulPrepared(fn: string, x: Tensor, w: PreparedWeight, bias: Float32Array | null, out?: Float32Array, rows: RowInvariance = 'off'): Tensor<'f32'> {
  const c = prepareCall(fn, x, w, bias, out, rows);
  if (c.args) addon.gemm(...c.args);
  return c.y;
}

/** matmulPrepared on a worker thread. */
export async function matmulPreparedAsync(fn: string, x: Tensor, w: PreparedWeight, bias: Float32Array | null, out?: Float32Array, rows: RowInvariance = 'off'): Promise<Tensor<'f32'>> {
  const c = prepareCall(fn, x, w, bias, out, rows);
  if (c.args) await addon.gemmAsync(...c.args);
  return c.y;
}

/** x · w^T (+ bias): x f32 [..., K], w [N, K] -> f32 [..., N]. */
export function matmul(x: Tensor, w: Tensor | QuantizedTensor, bias?: Tensor | null): Tensor<'f32'> {
  const pw = prepareWeight('matmul', 'w', w);
  return matmulPrepared('matmul', x, pw, checkBias('matmul', bias, pw.N));
}

/** matmul() on a worker thread: the event loop stays free; the result is identical. */
export async function matmulAsync(x: Tensor, w: Tensor | QuantizedTensor, bias?: Tensor | null): Promise<Tensor<'f32'>> {
  const pw = prepareWeight('matmulAsync', 'w', w);
  return matmulPreparedAsync('matmulAsync', x, pw, checkBias('matmulAsync', bias, pw.N));
}
