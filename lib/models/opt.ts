/**
 * OPT (HF OPTForCausalLM): token embedding (width word_embed_proj_dim),
 * optional project_in to hidden_size, learned positions (table row = position
 * + 2: OPT reserves the first two rows), N decoder layers, optional final
 * LayerNorm, optional project_out, tied lm_head.
 *
 * Layers are pre-LayerNorm (do_layer_norm_before, most sizes) or
 * post-LayerNorm (opt-350m). q is scaled by head_dim^-0.5 after q_proj (as HF
 * does), so the attention core runs with scale 1.
 * Shapes for T tokens: embeddings [T, word_embed_proj_dim]; hidden f32
 * [T, hidden]; fc1 [T, ffn_dim]; logits [T, vocab].
 * Module names: model.decoder.{embed_tokens,embed_positions,project_in,
 * project_out,final_layer_norm}, model.decoder.layers.{i}.self_attn.
 * {q,k,v,out}_proj, .self_attn_layer_norm, .fc1, .fc2, .final_layer_norm, lm_head.
 *
 * Each block's math is written once, as steps (forwardSteps: see
 * ForwardSteps in causal-lm.ts); forward() runs them synchronously, the
 * model's forwardAsync() with the GEMMs on worker threads.
 */
import { type ActivationFn, activationByName, addInPlace } from '../nn/activations.js';
import { type AttentionShape, type DecoderKVCache, ModuleList, linearChild } from '../nn/attention.js';
import { SeqBatch } from '../nn/seq-batch.js';
import { Embedding } from '../nn/embedding.js';
import { Linear } from '../nn/linear.js';
import { Module } from '../nn/module.js';
import type { ScaleGroup } from '../nn/scale-fold.js';
import { LayerNorm } from '../nn/norm.js';
import { Tensor } from '../tensor.js';
import type { Scratch } from '../nn/scratch.js';
import { DecoderLM, type ForwardSteps, linearStep, linearsStep, runSync } from './causal-lm.js';
import type { ModelConfigBase } from './causal-lm.js';
import { type ArchSpec, Fields, type Json, type WeightReader, type WeightSpec, divisible } from './config.js';

export interface OptConfig extends ModelConfigBase {
  readonly arch: 'opt';
  readonly hiddenSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly ffnDim: number;
  /** Width of the token embedding; != hiddenSize means project_in/project_out exist (opt-350m). */
  readonly wordEmbedProjDim: number;
  /** true: pre-LayerNorm blocks; false: post-LayerNorm (opt-350m). */
  readonly doLayerNormBefore: boolean;
  readonly activation: string;
  readonly enableBias: boolean;
  readonly layerNormElementwiseAffine: boolean;
  /** The decoder's final_layer_norm exists (do_layer_norm_before and not _remove_final_layer_norm). */
  readonly hasFinalLayerNorm: boolean;
  readonly tieWordEmbeddings: boolean;
}


export function parseOptConfig(json: Json, file = 'config.json'): OptConfig {
  const f = new Fields(json, file, 'opt');
  const hiddenSize = f.int('hidden_size');
  const numHeads = f.int('num_attention_heads');
  divisible(file, ['hidden_size', hiddenSize], ['num_attention_heads', numHeads]);
  const doLayerNormBefore = f.bool('do_layer_norm_before', true);
  return {
    arch: 'opt',
    hiddenSize,
    numLayers: f.int('num_hidden_layers'),
    numHeads,
    ffnDim: f.int('ffn_dim'),
    vocabSize: f.int('vocab_size'),
    maxPositions: f.int('max_position_embeddings'),
    wordEmbedProjDim: f.int('word_embed_proj_dim', hiddenSize),
    doLayerNormBefore,
    activation: f.activation('activation_function', 'relu'),
    enableBias: f.bool('enable_bias', true),
    layerNormElementwiseAffine: f.bool('layer_norm_elementwise_affine', true),
    hasFinalLayerNorm: doLayerNormBefore && !f.bool('_remove_final_layer_norm', false),
    tieWordEmbeddings: f.bool('tie_word_embeddings', true),
    bosId: f.tokenId('bos_token_id', 2),
    eosId: f.tokenId('eos_token_id', 2),
  };
}

/** OPT's learned positions start at table row 2. */
export const OPT_POSITION_OFFSET = 2;

export class OptAttention extends Module {
  readonly shape: AttentionShape;
  readonly scaling: number;

  constructor(q: Linear, k: Linear, v: Linear, out: Linear, nHeads: number, headDim: number) {
    super();
    this.addModule('q_proj', q);
    this.addModule('k_proj', k);
    this.addModule('v_proj', v);
    this.addModule('out_proj', out);
    this.scaling = headDim ** -0.5;
    this.shape = { nHeads, nKvHeads: nHeads, headDim, scale: 1 };
  }

  forward(x: Tensor<'f32'>, cache: DecoderKVCache, layer: number, pos0: number): Tensor<'f32'> {
    return runSync(this.forwardSteps(x, SeqBatch.single(cache, pos0, x.shape[0]!), layer));
  }

  /** x [rows, D] of the batch's sequences; out_proj into `out` when given; the rest in the batch's scratch slots. */
  *forwardSteps(x: Tensor<'f32'>, batch: SeqBatch, layer: number, out?: Float32Array): ForwardSteps<Tensor<'f32'>> {
    const T = x.shape[0]!;
    const sc = batch.scratch;
    const [qp, kp, vp] = (['q_proj', 'k_proj', 'v_proj'] as const).map((n) => linearChild(this, n));
    const [q, k, v] = (yield* linearsStep([qp!, kp!, vp!], x, [sc.outputFor('q', qp!, x), sc.outputFor('k', kp!, x), sc.outputFor('v', vp!, x)])).map((t) => t.data) as [Float32Array, Float32Array, Float32Array];
    for (let i = 0; i < q.length; i++) q[i]! *= this.scaling;
    const D = this.shape.nHeads * this.shape.headDim;
    batch.writeKV(layer, k, v, D);
    const a = yield* batch.attentionSteps(q, layer, this.shape, sc.f32('attn', T * D));
    return yield* linearStep(linearChild(this, 'out_proj'), new Tensor('f32', [T, D], a), out);
  }
}

export class OptDecoderLayer extends Module {
  readonly self_attn: OptAttention;
  readonly self_attn_layer_norm: LayerNorm;
  readonly final_layer_norm: LayerNorm;
  readonly preNorm: boolean;
  readonly #act: ActivationFn;

  constructor(attn: OptAttention, attnNorm: LayerNorm, fc1: Linear, fc2: Linear, finalNorm: LayerNorm, preNorm: boolean, act: ActivationFn) {
    super();
    this.self_attn = this.addModule('self_attn', attn);
    this.self_attn_layer_norm = this.addModule('self_attn_layer_norm', attnNorm);
    this.addModule('fc1', fc1);
    this.addModule('fc2', fc2);
    this.final_layer_norm = this.addModule('final_layer_norm', finalNorm);
    this.preNorm = preNorm;
    this.#act = act;
  }

  *#mlp(x: Tensor<'f32'>, sc: Scratch, out: Float32Array): ForwardSteps<Tensor<'f32'>> {
    const fc1 = linearChild(this, 'fc1');
    const h = yield* linearStep(fc1, x, sc.outputFor('fc', fc1, x));
    this.#act(h.data);
    return yield* linearStep(linearChild(this, 'fc2'), h, out);
  }

  forward(x: Tensor<'f32'>, cache: DecoderKVCache, layer: number, pos0: number): Tensor<'f32'> {
    return runSync(this.forwardSteps(x, SeqBatch.single(cache, pos0, x.shape[0]!), layer));
  }

  *forwardSteps(x: Tensor<'f32'>, batch: SeqBatch, layer: number): ForwardSteps<Tensor<'f32'>> {
    // activations in the batch's scratch; the residual stream as in LlamaDecoderLayer
    const sc = batch.scratch;
    const n = x.size;
    const [aSlot, mSlot] = sc.residualSlots(x.data);
    if (this.preNorm) {
      const a = yield* this.self_attn.forwardSteps(this.self_attn_layer_norm.forward(x, sc.f32('norm', n)), batch, layer, sc.f32(aSlot, n));
      const m = yield* this.#mlp(this.final_layer_norm.forwardAdd(a, x, sc.f32('norm', n)), sc, sc.f32(mSlot, n)); // a = x + attn, then its norm
      addInPlace(m.data, a.data);
      return m;
    }
    // post-LayerNorm: norm after each residual sum. an (the MLP's input and
    // residual) stays in 'norm'; m takes x's slot (x is dead once added into
    // a), the block's output a's (a is dead once normed into an).
    const a = yield* this.self_attn.forwardSteps(x, batch, layer, sc.f32(aSlot, n));
    const an = this.self_attn_layer_norm.forwardAdd(a, x, sc.f32('norm', n));
    const m = yield* this.#mlp(an, sc, sc.f32(mSlot, n));
    return this.final_layer_norm.forwardAdd(m, an, sc.f32(aSlot, n));
  }
}

/** HF OPTDecoder, named 'model.decoder'. */
export class OptDecoder extends Module {
  readonly embed_tokens: Embedding;
  readonly embed_positions: Embedding;
  readonly layers: ModuleList<OptDecoderLayer>;
  readonly final_layer_norm: LayerNorm | null;

  constructor(embed: Embedding, positions: Embedding, layers: OptDecoderLayer[], finalNorm: LayerNorm | null, projectIn: Linear | null, projectOut: Linear | null) {
    super();
    this.embed_tokens = this.addModule('embed_tokens', embed);
    this.embed_positions = this.addModule('embed_positions', positions);
    if (projectIn) this.addModule('project_in', projectIn);
    if (projectOut) this.addModule('project_out', projectOut);
    this.layers = this.addModule('layers', new ModuleList(layers));
    this.final_layer_norm = finalNorm ? this.addModule('final_layer_norm', finalNorm) : null;
  }

  /** Hidden states [T, hidden] -> output [T, word_embed_proj_dim] (what lm_head reads). */
  forward(tokens: readonly number[], cache: DecoderKVCache, pos0: number): Tensor<'f32'> {
    return runSync(this.forwardSteps(tokens, SeqBatch.single(cache, pos0, tokens.length)));
  }

  /** tokens of the batch's sequences, one after another. */
  *forwardSteps(tokens: readonly number[], batch: SeqBatch): ForwardSteps<Tensor<'f32'>> {
    let x = yield* this.embedSteps(tokens, batch);
    for (let i = 0; i < this.layers.length; i++) x = yield* this.layers.at(i).forwardSteps(x, batch, i);
    return yield* this.endSteps(x, batch);
  }

  /** Token embedding (and project_in) plus positions: what the first layer reads. */
  *embedSteps(tokens: readonly number[], batch: SeqBatch): ForwardSteps<Tensor<'f32'>> {
    // every activation in the batch's scratch (as the blocks'), none allocated per step
    const sc = batch.scratch;
    const T = tokens.length;
    let x = this.embed_tokens.forward(tokens, sc.f32('embed', T * this.embed_tokens.dim));
    if (this.child('project_in')) {
      const pin = linearChild(this, 'project_in');
      x = yield* linearStep(pin, x, sc.outputFor('projectIn', pin, x));
    }
    // without padding, HF's position ids are simply past_length + t; the table is offset by 2
    addInPlace(x.data, this.embed_positions.forward(batch.positions(OPT_POSITION_OFFSET), sc.f32('pos', x.size)).data);
    return x;
  }

  /** The final norm and project_out after the last layer. */
  *endSteps(x: Tensor<'f32'>, batch: SeqBatch): ForwardSteps<Tensor<'f32'>> {
    const sc = batch.scratch;
    if (this.final_layer_norm) x = this.final_layer_norm.forward(x, sc.f32('decoderNorm', x.size));
    if (this.child('project_out')) {
      const pout = linearChild(this, 'project_out');
      x = yield* linearStep(pout, x, sc.outputFor('projectOut', pout, x));
    }
    return x;
  }
}

/** HF OPTModel: just holds the decoder (gives the 'model.decoder' names). */
export class OptModel extends Module {
  readonly decoder: OptDecoder;
  constructor(decoder: OptDecoder) {
    super();
    this.decoder = this.addModule('decoder', decoder);
  }
}

export class OptForCausalLM extends DecoderLM {
  readonly config: OptConfig;
  readonly model: OptModel;

  constructor(config: OptConfig, model: OptModel, lmHead: Linear) {
    super();
    this.config = config;
    this.model = this.addModule('model', model);
    this.addModule('lm_head', lmHead);
  }

  /**
   * Activation-aware scale folds (lib/nn/scale-fold.ts): the pre-norms
   * (post-norm sizes have none before the layers), v_proj -> out_proj, and
   * fc1 -> fc2 when the activation is ReLU (relu(u / s) = relu(u) / s for s > 0).
   */
  scaleGroups(): ScaleGroup[] {
    const c = this.config;
    const out: ScaleGroup[] = [];
    for (let i = 0; i < c.numLayers; i++) {
      const p = `model.decoder.layers.${i}`;
      if (c.doLayerNormBefore) out.push({ prev: `${p}.self_attn_layer_norm`, layers: ['q_proj', 'k_proj', 'v_proj'].map((n) => `${p}.self_attn.${n}`) });
      out.push({ prev: `${p}.self_attn.v_proj`, layers: [`${p}.self_attn.out_proj`] });
      if (c.doLayerNormBefore) out.push({ prev: `${p}.final_layer_norm`, layers: [`${p}.fc1`] });
      if (c.activation === 'relu') out.push({ prev: `${p}.fc1`, layers: [`${p}.fc2`] });
    }
    return out;
  }

  protected cacheShape() {
    return { nLayers: this.config.numLayers, kvDim: this.config.hiddenSize, maxPositions: this.config.maxPositions };
  }

  /** The decoder's output already has its final norm and project_out (what lm_head reads). */
  protected override *bodySteps(tokens: readonly number[], batch: SeqBatch): ForwardSteps<Tensor<'f32'>> {
    return yield* this.model.decoder.forwardSteps(tokens, batch);
  }

  protected *embedSteps(tokens: readonly number[], batch: SeqBatch): ForwardSteps<Tensor<'f32'>> {
    return yield* this.model.decoder.embedSteps(tokens, batch);
  }

  protected *blockSteps(i: number, x: Tensor<'f32'>, batch: SeqBatch): ForwardSteps<Tensor<'f32'>> {
    return yield* this.model.decoder.layers.at(i).forwardSteps(x, batch, i);
  }

  blockName(i: number): string {
    return `model.decoder.layers.${i}`;
  }
}

/** Build OPT from HF names ('model.decoder.*', 'decoder.*' or bare). */
export function buildOpt(config: OptConfig, w: WeightReader): OptForCausalLM {
  const { hiddenSize: D, ffnDim: F, numHeads: nH, vocabSize: V, maxPositions: P, wordEmbedProjDim: E } = config;
  const b = config.enableBias;
  const linear = (name: string, out: number, inp: number, bias: boolean) => new Linear(w.matrix(`${name}.weight`, [out, inp]), bias ? w.f32(`${name}.bias`, [out]) : null);
  const ln = (name: string) =>
    config.layerNormElementwiseAffine ? new LayerNorm(D, 1e-5, w.f32(`${name}.weight`, [D]), w.f32(`${name}.bias`, [D])) : new LayerNorm(D, 1e-5, null, null); // HF OPT uses nn.LayerNorm's default eps
  const act = activationByName(config.activation);
  const hd = D / nH;
  const layers: OptDecoderLayer[] = [];
  for (let i = 0; i < config.numLayers; i++) {
    const p = `model.decoder.layers.${i}`;
    const attn = new OptAttention(
      linear(`${p}.self_attn.q_proj`, D, D, b),
      linear(`${p}.self_attn.k_proj`, D, D, b),
      linear(`${p}.self_attn.v_proj`, D, D, b),
      linear(`${p}.self_attn.out_proj`, D, D, b),
      nH,
      hd,
    );
    layers.push(new OptDecoderLayer(attn, ln(`${p}.self_attn_layer_norm`), linear(`${p}.fc1`, F, D, b), linear(`${p}.fc2`, D, F, b), ln(`${p}.final_layer_norm`), config.doLayerNormBefore, act));
  }
  const proj = E !== D;
  const embed = new Embedding(w.matrix('model.decoder.embed_tokens.weight', [V, E]));
  const positions = new Embedding(w.f32('model.decoder.embed_positions.weight', [P + OPT_POSITION_OFFSET, D]));
  const decoder = new OptDecoder(
    embed,
    positions,
    layers,
    config.hasFinalLayerNorm ? ln('model.decoder.final_layer_norm') : null,
    proj ? linear('model.decoder.project_in', D, E, false) : null,
    proj ? linear('model.decoder.project_out', E, D, false) : null,
  );
  const lmHead = config.tieWordEmbeddings ? new Linear(embed.weight) : linear('lm_head', V, E, false);
  return new OptForCausalLM(config, new OptModel(decoder), lmHead);
}

export const optArch: ArchSpec<OptConfig, OptForCausalLM> = {
  arch: 'opt',
  modelTypes: ['opt'],
  hfClasses: ['OPTForCausalLM'],
  parseConfig: parseOptConfig,
  prefix: 'model.decoder.',
  prefixVariants: ['model.decoder.', 'decoder.', ''],
  build: (c, w) => buildOpt(c, w),
  weightSpecs: optWeightSpecs,
};

/** The tensors buildOpt reads (see WeightSpec). */
export function optWeightSpecs(c: OptConfig): WeightSpec[] {
  const { hiddenSize: D, ffnDim: F, vocabSize: V, maxPositions: P, wordEmbedProjDim: E } = c;
  const p0 = 'model.decoder';
  const out: WeightSpec[] = [
    { name: `${p0}.embed_tokens.weight`, shape: [V, E], kind: 'matrix' },
    { name: `${p0}.embed_positions.weight`, shape: [P + OPT_POSITION_OFFSET, D], kind: 'f32' },
  ];
  const lin = (name: string, o: number, i: number, bias: boolean) => {
    out.push({ name: `${name}.weight`, shape: [o, i], kind: 'linear' });
    if (bias) out.push({ name: `${name}.bias`, shape: [o], kind: 'f32' });
  };
  const ln = (name: string) => {
    if (c.layerNormElementwiseAffine) out.push({ name: `${name}.weight`, shape: [D], kind: 'f32' }, { name: `${name}.bias`, shape: [D], kind: 'f32' });
  };
  for (let l = 0; l < c.numLayers; l++) {
    const p = `${p0}.layers.${l}`;
    for (const n of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) lin(`${p}.self_attn.${n}`, D, D, c.enableBias);
    ln(`${p}.self_attn_layer_norm`);
    lin(`${p}.fc1`, F, D, c.enableBias);
    lin(`${p}.fc2`, D, F, c.enableBias);
    ln(`${p}.final_layer_norm`);
  }
  if (c.hasFinalLayerNorm) ln(`${p0}.final_layer_norm`);
  if (E !== D) {
    lin(`${p0}.project_in`, D, E, false);
    lin(`${p0}.project_out`, E, D, false);
  }
  out.push({ name: 'lm_head.weight', shape: [V, E], kind: 'linear', ...(c.tieWordEmbeddings ? { tiedTo: `${p0}.embed_tokens.weight` } : {}) });
  return out;
}
