/**
 * DistilBERT (HF DistilBertModel / DistilBertForMaskedLM), an encoder:
 * word + learned position embeddings, LayerNorm; N post-LayerNorm blocks
 * (bidirectional self-attention, then a GELU MLP, each followed by
 * LayerNorm(sublayer(x) + x)); for masked LM: vocab_transform, GELU,
 * vocab_layer_norm, vocab_projector (weight tied to the word embeddings).
 * LayerNorm eps is 1e-12 everywhere, as HF hard-codes it.
 *
 * A batch is a list of token sequences of any lengths. All per-token work
 * (embeddings, every Linear, LayerNorm, GELU) runs on the rows of every
 * sequence at once, packed one after another without padding, so the GEMMs
 * see the whole batch; attention runs per sequence, so no padded position
 * ever exists and a sequence's vectors do not depend on the rest of its batch.
 *
 * Shapes: packed hidden f32 [sum T_i, dim]; q, k, v the same; MLP [sum T_i,
 * hidden_dim]; outputs per sequence: hidden [T_i, dim], logits [T_i, vocab].
 * Module names mirror HF: distilbert.embeddings.{word_embeddings,
 * position_embeddings, LayerNorm}, distilbert.transformer.layer.{i}.attention.
 * {q_lin,k_lin,v_lin,out_lin}, ....sa_layer_norm, ....ffn.{lin1,lin2},
 * ....output_layer_norm; vocab_transform, vocab_layer_norm, vocab_projector.
 */
import { describe, typeError } from '../errors.js';
import { type ActivationFn, activationByName, addInPlace } from '../nn/activations.js';
import { ModuleList, linearChild } from '../nn/attention.js';
import { bidirectionalAttentionSteps } from '../nn/bidirectional-attention.js';
import { Embedding } from '../nn/embedding.js';
import { Linear } from '../nn/linear.js';
import { Module } from '../nn/module.js';
import { LayerNorm } from '../nn/norm.js';
import { type ForwardSteps, linearStep, linearsStep, runAsync, runSync } from '../nn/steps.js';
import { lineArray } from '../ops/huge-pages.js';
import { Tensor } from '../tensor.js';
import { Fields, type Json, type WeightReader, type WeightSpec, divisible } from './config.js';

/** DistilBERT (an encoder: loaded with loadEncoder, not a CausalLM). */
export interface DistilBertConfig {
  readonly arch: 'distilbert';
  readonly vocabSize: number;
  readonly maxPositions: number;
  readonly dim: number;
  readonly nLayers: number;
  readonly nHeads: number;
  readonly hiddenDim: number;
  readonly activation: string;
  readonly padId: number | undefined;
}

export function parseDistilBertConfig(json: Json, file = 'config.json'): DistilBertConfig {
  const f = new Fields(json, file, 'distilbert');
  const dim = f.int('dim');
  const nHeads = f.int('n_heads');
  divisible(file, ['dim', dim], ['n_heads', nHeads]);
  return {
    arch: 'distilbert',
    vocabSize: f.int('vocab_size'),
    maxPositions: f.int('max_position_embeddings', 512),
    dim,
    nLayers: f.int('n_layers'),
    nHeads,
    hiddenDim: f.int('hidden_dim'),
    activation: f.activation('activation', 'gelu'),
    padId: f.tokenId('pad_token_id', 0),
  };
}

/** DistilBERT's LayerNorm epsilon (fixed in the HF code, not in config.json). */
export const DISTILBERT_LN_EPS = 1e-12;

/** Row offsets of each sequence in the packed batch, and the total. */
function packing(lengths: readonly number[]): { starts: number[]; total: number } {
  const starts: number[] = [];
  let total = 0;
  for (const n of lengths) {
    starts.push(total);
    total += n;
  }
  return { starts, total };
}

export class DistilBertAttention extends Module {
  constructor(
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    readonly nHeads: number,
    readonly headDim: number,
  ) {
    super();
    this.addModule('q_lin', q);
    this.addModule('k_lin', k);
    this.addModule('v_lin', v);
    this.addModule('out_lin', out);
  }

  /** x: packed [sum T_i, dim]; lengths: T_i. */
  *forwardSteps(x: Tensor<'f32'>, lengths: readonly number[]): ForwardSteps<Tensor<'f32'>> {
    const D = this.nHeads * this.headDim;
    const proj = (['q_lin', 'k_lin', 'v_lin'] as const).map((n) => linearChild(this, n));
    const [q, k, v] = (yield* linearsStep(proj, x, [undefined, undefined, undefined])).map((t) => t.data) as [Float32Array, Float32Array, Float32Array];
    const ctx = lineArray(Float32Array, q.length); // read by out_lin: rows on lines
    const { starts } = packing(lengths);
    for (let s = 0; s < lengths.length; s++) {
      const T = lengths[s]!;
      const o = starts[s]! * D;
      const part = (a: Float32Array) => a.subarray(o, o + T * D);
      ctx.set(yield* bidirectionalAttentionSteps(part(q), part(k), part(v), T, this.nHeads, this.headDim, 1 / Math.sqrt(this.headDim)), o);
    }
    return yield* linearStep(linearChild(this, 'out_lin'), new Tensor('f32', x.shape, ctx));
  }
}

export class DistilBertFFN extends Module {
  readonly #act: ActivationFn;
  constructor(lin1: Linear, lin2: Linear, act: ActivationFn) {
    super();
    this.addModule('lin1', lin1);
    this.addModule('lin2', lin2);
    this.#act = act;
  }
  *forwardSteps(x: Tensor<'f32'>): ForwardSteps<Tensor<'f32'>> {
    const h = yield* linearStep(linearChild(this, 'lin1'), x);
    this.#act(h.data);
    return yield* linearStep(linearChild(this, 'lin2'), h);
  }
}

export class DistilBertBlock extends Module {
  readonly attention: DistilBertAttention;
  readonly sa_layer_norm: LayerNorm;
  readonly ffn: DistilBertFFN;
  readonly output_layer_norm: LayerNorm;

  constructor(attention: DistilBertAttention, saNorm: LayerNorm, ffn: DistilBertFFN, outNorm: LayerNorm) {
    super();
    this.attention = this.addModule('attention', attention);
    this.sa_layer_norm = this.addModule('sa_layer_norm', saNorm);
    this.ffn = this.addModule('ffn', ffn);
    this.output_layer_norm = this.addModule('output_layer_norm', outNorm);
  }

  *forwardSteps(x: Tensor<'f32'>, lengths: readonly number[]): ForwardSteps<Tensor<'f32'>> {
    const a = yield* this.attention.forwardSteps(x, lengths);
    const h = this.sa_layer_norm.forwardAdd(a, x);
    const f = yield* this.ffn.forwardSteps(h);
    return this.output_layer_norm.forwardAdd(f, h);
  }
}

export class DistilBertEmbeddings extends Module {
  readonly word_embeddings: Embedding;
  readonly position_embeddings: Embedding;
  readonly LayerNorm: LayerNorm;
  constructor(word: Embedding, position: Embedding, norm: LayerNorm) {
    super();
    this.word_embeddings = this.addModule('word_embeddings', word);
    this.position_embeddings = this.addModule('position_embeddings', position);
    this.LayerNorm = this.addModule('LayerNorm', norm);
  }
  /** Packed [sum T_i, dim]: each sequence's positions start at 0. */
  forward(batch: readonly (readonly number[])[]): Tensor<'f32'> {
    const x = this.word_embeddings.forward(batch.flat());
    addInPlace(x.data, this.position_embeddings.forward(batch.flatMap((s) => s.map((_, t) => t))).data);
    return this.LayerNorm.forward(x);
  }
}

/** HF's Transformer: the blocks, as transformer.layer.{i}. */
export class DistilBertTransformer extends Module {
  readonly layer: ModuleList<DistilBertBlock>;
  constructor(layers: DistilBertBlock[]) {
    super();
    this.layer = this.addModule('layer', new ModuleList(layers));
  }
}

/** The encoder stack (HF DistilBertModel): last hidden states per sequence. */
export class DistilBertModel extends Module {
  readonly config: DistilBertConfig;
  readonly embeddings: DistilBertEmbeddings;
  readonly transformer: DistilBertTransformer;

  constructor(config: DistilBertConfig, embeddings: DistilBertEmbeddings, layers: DistilBertBlock[]) {
    super();
    this.config = config;
    this.embeddings = this.addModule('embeddings', embeddings);
    this.transformer = this.addModule('transformer', new DistilBertTransformer(layers));
  }

  /** Check a batch: a non-empty list of non-empty sequences of ids within the vocabulary and the position table. */
  checkBatch(fn: string, batch: unknown): readonly (readonly number[])[] {
    if (!Array.isArray(batch) || batch.length === 0) throw typeError(fn, 'batch', `must be a non-empty array of token id arrays, got ${describe(batch)}`);
    const { vocabSize, maxPositions } = this.config;
    batch.forEach((s, i) => {
      if (!Array.isArray(s) || s.length === 0) throw typeError(fn, `batch[${i}]`, `must be a non-empty array of token ids, got ${describe(s)}`);
      if (s.length > maxPositions) throw new RangeError(`${fn}: 'batch[${i}]' has ${s.length} tokens; the model takes at most ${maxPositions}`);
      for (const id of s) if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw new RangeError(`${fn}: 'batch[${i}]' holds token id ${id}, outside [0, ${vocabSize})`);
    });
    return batch as readonly (readonly number[])[];
  }

  /** Packed last hidden states [sum T_i, dim] (the steps; see forward). `each` receives every block's output. */
  *hiddenSteps(batch: readonly (readonly number[])[], each?: (layer: number, x: Tensor<'f32'>) => void): ForwardSteps<Tensor<'f32'>> {
    const lengths = batch.map((s) => s.length);
    let x = this.embeddings.forward(batch);
    const layers = this.transformer.layer;
    for (let i = 0; i < layers.length; i++) {
      x = yield* layers.at(i).forwardSteps(x, lengths);
      each?.(i, x);
    }
    return x;
  }

  /** The packed output of every block [sum T_i, dim], first to last (for per-layer error reports). */
  layerOutputs(batch: readonly (readonly number[])[]): Tensor<'f32'>[] {
    const b = this.checkBatch('DistilBertModel.layerOutputs', batch);
    const out: Tensor<'f32'>[] = [];
    runSync(this.hiddenSteps(b, (_i, x) => out.push(x)));
    return out;
  }

  /** Last hidden states of each sequence: f32 [T_i, dim]. */
  forward(batch: readonly (readonly number[])[]): Tensor<'f32'>[] {
    const b = this.checkBatch('DistilBertModel.forward', batch);
    return unpack(runSync(this.hiddenSteps(b)), b);
  }

  /** forward() with the GEMMs on worker threads; the same result, bit for bit. */
  async forwardAsync(batch: readonly (readonly number[])[]): Promise<Tensor<'f32'>[]> {
    const b = this.checkBatch('DistilBertModel.forwardAsync', batch);
    return unpack(await runAsync(this.hiddenSteps(b)), b);
  }
}

/** DistilBertModel plus the masked-LM head: logits per sequence [T_i, vocab]. */
export class DistilBertForMaskedLM extends Module {
  readonly config: DistilBertConfig;
  readonly distilbert: DistilBertModel;
  readonly vocab_layer_norm: LayerNorm;
  readonly #act: ActivationFn;

  constructor(model: DistilBertModel, transform: Linear, norm: LayerNorm, projector: Linear) {
    super();
    this.config = model.config;
    this.distilbert = this.addModule('distilbert', model);
    this.addModule('vocab_transform', transform);
    this.vocab_layer_norm = this.addModule('vocab_layer_norm', norm);
    this.addModule('vocab_projector', projector);
    this.#act = activationByName(model.config.activation);
  }

  *#steps(batch: readonly (readonly number[])[]): ForwardSteps<Tensor<'f32'>> {
    const h = yield* this.distilbert.hiddenSteps(batch);
    const t = yield* linearStep(linearChild(this, 'vocab_transform'), h);
    this.#act(t.data);
    return yield* linearStep(linearChild(this, 'vocab_projector'), this.vocab_layer_norm.forward(t));
  }

  forward(batch: readonly (readonly number[])[]): Tensor<'f32'>[] {
    const b = this.distilbert.checkBatch('DistilBertForMaskedLM.forward', batch);
    return unpack(runSync(this.#steps(b)), b);
  }

  async forwardAsync(batch: readonly (readonly number[])[]): Promise<Tensor<'f32'>[]> {
    const b = this.distilbert.checkBatch('DistilBertForMaskedLM.forwardAsync', batch);
    return unpack(await runAsync(this.#steps(b)), b);
  }
}

/** Split packed rows [sum T_i, W] into one [T_i, W] tensor per sequence (copies, so each owns its memory). */
function unpack(x: Tensor<'f32'>, batch: readonly (readonly number[])[]): Tensor<'f32'>[] {
  const W = x.shape[1]!;
  const { starts } = packing(batch.map((s) => s.length));
  return batch.map((s, i) => new Tensor('f32', [s.length, W], x.data.slice(starts[i]! * W, (starts[i]! + s.length) * W)));
}

/**
 * A padded batch as tokenizers hand it out (input_ids and attention_mask,
 * [batch, T]) to the sequences forward() takes: each row keeps the ids its
 * mask marks 1. Padding anywhere in a row (left or right) is dropped, so a
 * padded batch gives the vectors each sequence gets alone.
 */
export function unpad(inputIds: readonly (readonly number[])[], attentionMask: readonly (readonly number[])[]): number[][] {
  if (!Array.isArray(inputIds) || !Array.isArray(attentionMask) || inputIds.length !== attentionMask.length) {
    throw typeError('unpad', 'attentionMask', `must be an array with one row per inputIds row (${Array.isArray(inputIds) ? inputIds.length : describe(inputIds)})`);
  }
  return inputIds.map((row, b) => {
    const m = attentionMask[b]!;
    if (!Array.isArray(row) || !Array.isArray(m) || m.length !== row.length) throw new RangeError(`unpad: 'attentionMask[${b}]' must have the length of 'inputIds[${b}]' (${Array.isArray(row) ? row.length : '?'})`);
    return row.filter((_, t) => {
      if (m[t] !== 0 && m[t] !== 1) throw new RangeError(`unpad: 'attentionMask[${b}][${t}]' must be 0 or 1, got ${describe(m[t])}`);
      return m[t] === 1;
    });
  });
}

/**
 * Sentence embeddings by mean pooling (as sentence-transformers does for
 * DistilBERT models): the average of each sequence's last hidden states,
 * f32 [batch, dim]. Sequences carry no padding here, so every token counts.
 */
export function meanPool(hidden: readonly Tensor<'f32'>[]): Tensor<'f32'> {
  if (!Array.isArray(hidden) || hidden.length === 0) throw typeError('meanPool', 'hidden', 'must be a non-empty array of [T, dim] tensors');
  const D = hidden[0]!.shape[1]!;
  const out = new Float32Array(hidden.length * D);
  hidden.forEach((h, b) => {
    const [T, d] = h.shape as [number, number];
    if (d !== D || T === 0) throw new RangeError(`meanPool: 'hidden[${b}]' has shape [${h.shape.join(', ')}], expected [T >= 1, ${D}]`);
    const acc = new Float64Array(D);
    for (let t = 0; t < T; t++) for (let i = 0; i < D; i++) acc[i]! += h.data[t * D + i]!;
    for (let i = 0; i < D; i++) out[b * D + i] = acc[i]! / T;
  });
  return new Tensor('f32', [hidden.length, D], out);
}

/** Build DistilBertModel (or the masked-LM model when `maskedLM`) from HF-named weights. */
export function buildDistilBert(config: DistilBertConfig, w: WeightReader, maskedLM: boolean): DistilBertModel | DistilBertForMaskedLM {
  const { dim: D, hiddenDim: F, nHeads: H, vocabSize: V, maxPositions: P } = config;
  const linear = (name: string, out: number, inp: number) => new Linear(w.matrix(`${name}.weight`, [out, inp]), w.f32(`${name}.bias`, [out]));
  const ln = (name: string, dim = D) => new LayerNorm(dim, DISTILBERT_LN_EPS, w.f32(`${name}.weight`, [dim]), w.f32(`${name}.bias`, [dim]));
  const act = activationByName(config.activation);
  const p = 'distilbert.';
  const layers: DistilBertBlock[] = [];
  for (let i = 0; i < config.nLayers; i++) {
    const b = `${p}transformer.layer.${i}`;
    const attn = new DistilBertAttention(linear(`${b}.attention.q_lin`, D, D), linear(`${b}.attention.k_lin`, D, D), linear(`${b}.attention.v_lin`, D, D), linear(`${b}.attention.out_lin`, D, D), H, D / H);
    layers.push(new DistilBertBlock(attn, ln(`${b}.sa_layer_norm`), new DistilBertFFN(linear(`${b}.ffn.lin1`, F, D), linear(`${b}.ffn.lin2`, D, F), act), ln(`${b}.output_layer_norm`)));
  }
  const word = new Embedding(w.matrix(`${p}embeddings.word_embeddings.weight`, [V, D]));
  const emb = new DistilBertEmbeddings(word, new Embedding(w.f32(`${p}embeddings.position_embeddings.weight`, [P, D])), ln(`${p}embeddings.LayerNorm`));
  const model = new DistilBertModel(config, emb, layers);
  if (!maskedLM) return model;
  // vocab_projector's weight is the word embedding (tied); a checkpoint may also store a copy
  const projW = w.has('vocab_projector.weight') ? w.matrix('vocab_projector.weight', [V, D]) : word.weight;
  return new DistilBertForMaskedLM(model, linear('vocab_transform', D, D), ln('vocab_layer_norm'), new Linear(projW, w.f32('vocab_projector.bias', [V])));
}

/** Whether a checkpoint holds the masked-LM head. */
export function hasMaskedLMHead(w: WeightReader): boolean {
  return w.has('vocab_transform.weight') && w.has('vocab_projector.bias');
}

/** The tensors buildDistilBert reads (see WeightSpec); the masked-LM head when `maskedLM`. */
export function distilbertWeightSpecs(c: DistilBertConfig, maskedLM: boolean): WeightSpec[] {
  const { dim: D, hiddenDim: F, vocabSize: V, maxPositions: P } = c;
  const p = 'distilbert.';
  const out: WeightSpec[] = [
    { name: `${p}embeddings.word_embeddings.weight`, shape: [V, D], kind: 'matrix' },
    { name: `${p}embeddings.position_embeddings.weight`, shape: [P, D], kind: 'f32' },
  ];
  const lin = (name: string, o: number, i: number) => out.push({ name: `${name}.weight`, shape: [o, i], kind: 'linear' }, { name: `${name}.bias`, shape: [o], kind: 'f32' });
  const ln = (name: string) => out.push({ name: `${name}.weight`, shape: [D], kind: 'f32' }, { name: `${name}.bias`, shape: [D], kind: 'f32' });
  ln(`${p}embeddings.LayerNorm`);
  for (let l = 0; l < c.nLayers; l++) {
    const b = `${p}transformer.layer.${l}`;
    for (const n of ['q_lin', 'k_lin', 'v_lin', 'out_lin']) lin(`${b}.attention.${n}`, D, D);
    ln(`${b}.sa_layer_norm`);
    lin(`${b}.ffn.lin1`, F, D);
    lin(`${b}.ffn.lin2`, D, F);
    ln(`${b}.output_layer_norm`);
  }
  if (maskedLM) {
    lin('vocab_transform', D, D);
    ln('vocab_layer_norm');
    out.push({ name: 'vocab_projector.weight', shape: [V, D], kind: 'linear', tiedTo: `${p}embeddings.word_embeddings.weight` }, { name: 'vocab_projector.bias', shape: [V], kind: 'f32' });
  }
  return out;
}
