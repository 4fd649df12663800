/**
 * Forward steps: how model code hands its heavy native products to a driver.
 * One code path, two drivers: a model writes its forward once, as a
 * generator (forwardSteps) that yields every heavy native product as a
 * ForwardOp and receives its f32 result. runSync() answers the ops with the
 * blocking calls (forward()/matmul()); runAsync() awaits their Promise forms
 * (forwardAsync()/matmulAsync(), N-API async work on libuv worker threads),
 * so the event loop is free while the GEMMs run. Both drivers hand the very
 * same inputs to the same kernels in the same order, so forward() and
 * forwardAsync() give bit-identical logits.
 *
 * Ops:  linear     x f32 [..., K] through a LinearLike layer -> f32 [..., N]
 *       linears    one x through several layers (q/k/v, gate/up) -> one f32 [..., N_i] each
 *       matmul     x f32 [M, K] · w^T, w f32 [N, K]        -> f32 [M, N]
 *       attention  causal attention over a KV cache        -> f32 [T, nHeads * headDim]
 *       attentionBatch  the same for several sequences, each over its own cache
 */
import { type AttentionInputs, type BatchAttentionInputs, batchAttentionOp, batchAttentionOpAsync, causalAttentionOp, causalAttentionOpAsync } from '../ops/attention.js';
import { matmul, matmulAsync } from '../ops/matmul.js';
import { Tensor } from '../tensor.js';
import { QLinear } from './linear.js';
import type { Module } from './module.js';

/** How a forward asks its layers to compute (the drivers pass it to every linear op). */
export interface LinearCallOptions {
  /**
   * Every row of the output gets the same bits whatever the number of rows
   * in the call: what batched decoding needs, so a sequence's logits do not
   * depend on what else is in its batch. Linear and QLinear honour it: the
   * f32-activation GEMM runs its small-M kernel at every M (true: decode
   * rows) or its large-M kernel with fixed blocking ('prefill': prompt
   * rows; the two give different bits, so a row must always take the same
   * one); the int8-activation paths are row-invariant anyway; LLM.int8()
   * takes each row's outlier columns from that row alone (not over all rows).
   */
  readonly rowInvariant?: boolean | 'prefill';
}

/**
 * Anything that maps f32 [..., K] -> f32 [..., N]: Linear, QLinear, or a
 * replacement. `out` is a buffer the model offers for the result (rows * N
 * floats, reused by later forwards): a layer may write its result there or
 * ignore it and return its own array; callers use the returned tensor. A
 * replacement that ignores `options` is not row-invariant.
 */
export interface LinearLike extends Module {
  /** Output width N when known (Linear, QLinear); lets the model offer a buffer. */
  readonly outFeatures?: number;
  forward(x: Tensor, out?: Float32Array, options?: LinearCallOptions): Tensor<'f32'>;
  /** forward() off the main thread, same result; used by forwardAsync when present. */
  forwardAsync?(x: Tensor, out?: Float32Array, options?: LinearCallOptions): Promise<Tensor<'f32'>>;
}

/** Options of the drivers (runSync, runAsync). */
export interface RunOptions {
  /** Pass rowInvariant to every linear op that does not set its own (see LinearCallOptions). */
  readonly rowInvariant?: boolean;
}

/** Keys/values of the positions seen so far; one per generation stream. */
export interface KVCache {
  /** Number of positions already stored. */
  readonly length: number;
  /** Capacity in positions. */
  readonly capacity: number;
  /** Forget every position (reuse the memory). */
  reset(): void;
}

/** A heavy native operation a forward generator asks its driver to run. */
export type ForwardOp =
  | { readonly kind: 'linear'; readonly layer: LinearLike; readonly x: Tensor<'f32'>; readonly out?: Float32Array; readonly rowInvariant?: true | 'prefill' }
  | {
      readonly kind: 'linears';
      readonly layers: readonly LinearLike[];
      readonly x: Tensor<'f32'>;
      readonly outs: readonly (Float32Array | undefined)[];
      readonly rowInvariant?: true | 'prefill';
      /** Filled by the driver: layer i's output (the op's own result is results[0]). */
      readonly results: Tensor<'f32'>[];
    }
  | { readonly kind: 'matmul'; readonly x: Tensor<'f32'>; readonly w: Tensor<'f32'> }
  | { readonly kind: 'attention'; readonly a: AttentionInputs; readonly out?: Float32Array }
  | { readonly kind: 'attentionBatch'; readonly a: BatchAttentionInputs; readonly out: Float32Array };

/** A forward written as a coroutine: yields ops, receives their results, returns R. */
export type ForwardSteps<R> = Generator<ForwardOp, R, Tensor<'f32'>>;

/** layer.forward(x, out) as a step: `const y = yield* linearStep(layer, x)`. */
export function* linearStep(layer: LinearLike, x: Tensor<'f32'>, out?: Float32Array): ForwardSteps<Tensor<'f32'>> {
  return yield out === undefined ? { kind: 'linear', layer, x } : { kind: 'linear', layer, x, out };
}

/**
 * Several layers that read the same x as one step: `const [q, k, v] = yield*
 * linearsStep([qProj, kProj, vProj], x, [qOut, kOut, vOut])`. The same
 * results as a linearStep per layer, in order; the driver runs them as one
 * native call when the layers can share x's int8 quantization (W4A8, W8A8:
 * QLinear.forwardShared), else one by one.
 */
export function* linearsStep(layers: readonly LinearLike[], x: Tensor<'f32'>, outs: readonly (Float32Array | undefined)[]): ForwardSteps<Tensor<'f32'>[]> {
  const op = { kind: 'linears', layers, x, outs, results: [] } as const satisfies ForwardOp;
  yield op;
  return op.results;
}

/** matmul(x, w) = x · w^T as a step. */
export function* matmulStep(x: Tensor<'f32'>, w: Tensor<'f32'>): ForwardSteps<Tensor<'f32'>> {
  return yield { kind: 'matmul', x, w };
}

/** causalAttentionOp(a) as a step; its result as f32 [T, nHeads * headDim]. */
export function* attentionStep(a: AttentionInputs, out?: Float32Array): ForwardSteps<Tensor<'f32'>> {
  return yield out === undefined ? { kind: 'attention', a } : { kind: 'attention', a, out };
}

/** The options handed to linear ops, or undefined for the defaults (the plain calls). */
function linearOptions(o: RunOptions | undefined): LinearCallOptions | undefined {
  return o?.rowInvariant === true ? { rowInvariant: true } : undefined;
}

/** A linear op's own rowInvariant, else the driver's options. */
function opOptions(op: { readonly rowInvariant?: true | 'prefill' }, lo: LinearCallOptions | undefined): LinearCallOptions | undefined {
  return op.rowInvariant !== undefined ? { rowInvariant: op.rowInvariant } : lo;
}

/** batchAttentionOp(a) into `out` as a step; f32 [rows, nHeads * headDim]. */
export function* batchAttentionStep(a: BatchAttentionInputs, out: Float32Array): ForwardSteps<Tensor<'f32'>> {
  return yield { kind: 'attentionBatch', a, out };
}

const attentionTensor = (a: AttentionInputs, out: Float32Array) => new Tensor('f32', [a.T, a.nHeads * a.headDim], out);
const batchTensor = (a: BatchAttentionInputs, out: Float32Array) => new Tensor('f32', [out.length / (a.nHeads * a.headDim), a.nHeads * a.headDim], out);

/** layer.forward(x[, out][, o]), passing only the arguments given (a replacement layer may not take them). */
function forwardOne(layer: LinearLike, x: Tensor<'f32'>, out: Float32Array | undefined, o: LinearCallOptions | undefined): Tensor<'f32'> {
  return o ? layer.forward(x, out, o) : out === undefined ? layer.forward(x) : layer.forward(x, out);
}

/** forwardOne through forwardAsync when the layer has it. */
async function forwardOneAsync(layer: LinearLike, x: Tensor<'f32'>, out: Float32Array | undefined, o: LinearCallOptions | undefined): Promise<Tensor<'f32'>> {
  if (!layer.forwardAsync) return forwardOne(layer, x, out, o);
  return o ? layer.forwardAsync(x, out, o) : out === undefined ? layer.forwardAsync(x) : layer.forwardAsync(x, out);
}

/**
 * Drive `steps` to its end with blocking calls. An op that throws is thrown
 * into the generator, so its finally blocks (the cache lock) run.
 */
export function runSync<R>(steps: ForwardSteps<R>, options?: RunOptions): R {
  const lo = linearOptions(options);
  let r = steps.next();
  while (!r.done) {
    const op = r.value;
    let y: Tensor<'f32'>;
    try {
      if (op.kind === 'linear') y = forwardOne(op.layer, op.x, op.out, opOptions(op, lo));
      else if (op.kind === 'linears') {
        const o = opOptions(op, lo);
        const ys = QLinear.forwardShared(op.layers, op.x, op.outs, o) ?? op.layers.map((l, i) => forwardOne(l, op.x, op.outs[i], o));
        op.results.length = 0;
        op.results.push(...ys);
        y = ys[0]!;
      }
      else if (op.kind === 'matmul') y = matmul(op.x, op.w);
      else if (op.kind === 'attentionBatch') y = batchTensor(op.a, batchAttentionOp(op.a, op.out));
      else y = attentionTensor(op.a, causalAttentionOp(op.a, op.out));
    } catch (e) {
      r = steps.throw(e);
      continue;
    }
    r = steps.next(y);
  }
  return r.value;
}

/**
 * Drive `steps` with the Promise forms: each op runs on a worker thread
 * while the event loop serves other work. The op's input tensors are held
 * by the suspended generator (and by the native async work) until the op
 * completes, so they stay alive. A LinearLike without forwardAsync (a
 * custom replacement layer) runs synchronously.
 */
export async function runAsync<R>(steps: ForwardSteps<R>, options?: RunOptions): Promise<R> {
  const lo = linearOptions(options);
  let r = steps.next();
  while (!r.done) {
    const op = r.value;
    let y: Tensor<'f32'>;
    try {
      if (op.kind === 'matmul') y = await matmulAsync(op.x, op.w);
      else if (op.kind === 'attention') y = attentionTensor(op.a, await causalAttentionOpAsync(op.a, op.out));
      else if (op.kind === 'attentionBatch') y = batchTensor(op.a, await batchAttentionOpAsync(op.a, op.out));
      else if (op.kind === 'linears') {
        const o = opOptions(op, lo);
        const shared = QLinear.forwardSharedAsync(op.layers, op.x, op.outs, o);
        const ys: Tensor<'f32'>[] = [];
        if (shared) ys.push(...(await shared));
        else for (let i = 0; i < op.layers.length; i++) ys.push(await forwardOneAsync(op.layers[i]!, op.x, op.outs[i], o));
        op.results.length = 0;
        op.results.push(...ys);
        y = ys[0]!;
      }
      else y = await forwardOneAsync(op.layer, op.x, op.out, opOptions(op, lo));
    } catch (e) {
      r = steps.throw(e);
      continue;
    }
    r = steps.next(y);
  }
  return r.value;
}

