/**
 * Llama (HF LlamaForCausalLM): token embedding, N pre-RMSNorm decoder layers
 * (GQA self-attention with rotate-half RoPE, SwiGLU MLP), final RMSNorm,
 * lm_head (tied to the embedding or not).
 *
 * Shapes for T tokens: hidden f32 [T, hidden]; q [T, nHeads * headDim];
 * k, v [T, nKvHeads * headDim]; MLP [T, intermediate]; logits [T, vocab].
 * Module names mirror HF: model.embed_tokens, model.layers.{i}.self_attn.
 * {q,k,v,o}_proj, model.layers.{i}.mlp.{gate,up,down}_proj,
 * model.layers.{i}.{input,post_attention}_layernorm, model.norm, lm_head.
 *
 * Each block's math is written once, as steps (forwardSteps: see
 * ForwardSteps in causal-lm.ts); forward() runs them synchronously, the
 * model's forwardAsync() with the GEMMs on worker threads.
 */
import { llama2cToHfRoPERows } from '../io/llama2c.js';
import { activationByName, addInPlace, gateInPlace } from '../nn/activations.js';
import { type AttentionShape, type DecoderKVCache, ModuleList, linearChild } from '../nn/attention.js';
import { Embedding } from '../nn/embedding.js';
import { Linear } from '../nn/linear.js';
import { Module } from '../nn/module.js';
import { RMSNorm } from '../nn/norm.js';
import type { ScaleGroup } from '../nn/scale-fold.js';
import { Rope } from '../nn/rope.js';
import type { Scratch } from '../nn/scratch.js';
import { SeqBatch } from '../nn/seq-batch.js';
import { Tensor } from '../tensor.js';
import { DecoderLM, type ForwardSteps, linearStep, linearsStep, runSync } from './causal-lm.js';
import { QuantkitError, describe } from '../errors.js';
import type { RopeScaling } from '../nn/rope.js';
import type { ModelConfigBase } from './causal-lm.js';
import { type ArchSpec, Fields, type Json, type WeightReader, type WeightSpec, badConfig, divisible } from './config.js';

export interface LlamaConfig extends ModelConfigBase {
  readonly arch: 'llama';
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly rmsNormEps: number;
  readonly ropeTheta: number;
  readonly ropeScaling: RopeScaling | null;
  readonly hiddenAct: string;
  readonly tieWordEmbeddings: boolean;
  readonly attentionBias: boolean;
  readonly mlpBias: boolean;
}

function parseRopeScaling(f: Fields): RopeScaling | null {
  const v = f.json.rope_scaling;
  if (v === undefined || v === null) return null;
  if (typeof v !== 'object' || Array.isArray(v)) throw badConfig(f.file, `field 'rope_scaling' must be an object or null, got ${describe(v)}`);
  const sub = new Fields(v as Json, f.file, `${f.arch} rope_scaling`);
  const type = sub.str('rope_type', typeof (v as Json).type === 'string' ? ((v as Json).type as string) : 'default');
  if (type === 'default') return null;
  if (type === 'linear') return { type, factor: sub.num('factor') };
  if (type === 'llama3') {
    const r = {
      type,
      factor: sub.num('factor'),
      lowFreqFactor: sub.num('low_freq_factor'),
      highFreqFactor: sub.num('high_freq_factor'),
      originalMaxPositions: sub.int('original_max_position_embeddings'),
    } as const;
    // The smoothing between the two wavelength bands divides by their difference.
    if (!(r.highFreqFactor > r.lowFreqFactor)) {
      throw badConfig(f.file, `rope_scaling: 'high_freq_factor' (${r.highFreqFactor}) must be greater than 'low_freq_factor' (${r.lowFreqFactor})`);
    }
    return r;
  }
  throw new QuantkitError('ERR_UNSUPPORTED', `${f.file}: rope_scaling type '${type}' is not supported (supported: linear, llama3)`);
}

export function parseLlamaConfig(json: Json, file = 'config.json'): LlamaConfig {
  const f = new Fields(json, file, 'llama');
  const hiddenSize = f.int('hidden_size');
  const numHeads = f.int('num_attention_heads');
  const numKvHeads = f.int('num_key_value_heads', numHeads);
  divisible(file, ['num_attention_heads', numHeads], ['num_key_value_heads', numKvHeads]);
  if (json.head_dim === undefined || json.head_dim === null) divisible(file, ['hidden_size', hiddenSize], ['num_attention_heads', numHeads]);
  const headDim = f.int('head_dim', hiddenSize / numHeads);
  if (headDim % 2 !== 0) throw badConfig(file, `the head size ${headDim} must be even for RoPE`);
  const vocabSize = f.int('vocab_size');
  return {
    arch: 'llama',
    hiddenSize,
    intermediateSize: f.int('intermediate_size'),
    numLayers: f.int('num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    vocabSize,
    maxPositions: f.int('max_position_embeddings', 2048),
    rmsNormEps: f.num('rms_norm_eps', 1e-6),
    ropeTheta: f.num('rope_theta', 10000),
    ropeScaling: parseRopeScaling(f),
    hiddenAct: f.activation('hidden_act', 'silu'),
    tieWordEmbeddings: f.bool('tie_word_embeddings', false), // HF LlamaConfig's default
    attentionBias: f.bool('attention_bias', false),
    mlpBias: f.bool('mlp_bias', false),
    bosId: f.tokenId('bos_token_id', 1),
    eosId: f.tokenId('eos_token_id', 2),
  };
}

export class LlamaAttention extends Module {
  readonly shape: AttentionShape;

  constructor(q: Linear, k: Linear, v: Linear, o: Linear, shape: AttentionShape) {
    super();
    this.addModule('q_proj', q);
    this.addModule('k_proj', k);
    this.addModule('v_proj', v);
    this.addModule('o_proj', o);
    this.shape = shape;
  }

  /** x [T, hidden] at positions pos0 ..; writes this layer's k/v into the cache. */
  forward(x: Tensor<'f32'>, cache: DecoderKVCache, layer: number, pos0: number, rope: Rope): Tensor<'f32'> {
    return runSync(this.forwardSteps(x, SeqBatch.single(cache, pos0, x.shape[0]!), layer, rope));
  }

  /**
   * x [rows, hidden] of the batch's sequences. With `out` (rows * hidden
   * floats), o_proj writes there; q, k, v and the attention output live in
   * the batch's scratch slots 'q', 'k', 'v', 'attn'.
   */
  *forwardSteps(x: Tensor<'f32'>, batch: SeqBatch, layer: number, rope: Rope, out?: Float32Array): ForwardSteps<Tensor<'f32'>> {
    const T = x.shape[0]!;
    const { nHeads, nKvHeads, headDim } = this.shape;
    const sc = batch.scratch;
    const qDim = nHeads * headDim, kvDim = nKvHeads * headDim;
    const proj = (['q_proj', 'k_proj', 'v_proj'] as const).map((n) => linearChild(this, n));
    const [q, k, v] = (yield* linearsStep(proj, x, [sc.f32('q', T * qDim), sc.f32('k', T * kvDim), sc.f32('v', T * kvDim)])).map((t) => t.data) as [Float32Array, Float32Array, Float32Array];
    batch.forEachSegment(q, qDim, (r, s) => rope.applyRotateHalf(r, s.T, nHeads, s.pos0));
    batch.forEachSegment(k, kvDim, (r, s) => rope.applyRotateHalf(r, s.T, nKvHeads, s.pos0));
    batch.writeKV(layer, k, v, kvDim);
    const o = yield* batch.attentionSteps(q, layer, this.shape, sc.f32('attn', T * qDim));
    return yield* linearStep(linearChild(this, 'o_proj'), new Tensor('f32', [T, qDim], o), out);
  }
}

/** down(act(gate(x)) * up(x)). */
export class LlamaMLP extends Module {
  readonly #act: (x: Float32Array) => Float32Array;

  constructor(gate: Linear, up: Linear, down: Linear, hiddenAct = 'silu') {
    super();
    this.addModule('gate_proj', gate);
    this.addModule('up_proj', up);
    this.addModule('down_proj', down);
    this.#act = activationByName(hiddenAct);
  }

  forward(x: Tensor<'f32'>): Tensor<'f32'> {
    return runSync(this.forwardSteps(x));
  }

  /** gate/up outputs in `scratch` slots 'gate', 'up' when given; down_proj into `out` when given. */
  *forwardSteps(x: Tensor<'f32'>, scratch?: Scratch, out?: Float32Array): ForwardSteps<Tensor<'f32'>> {
    const gate = linearChild(this, 'gate_proj');
    const up = linearChild(this, 'up_proj');
    const [g, u] = (yield* linearsStep([gate, up], x, [scratch?.outputFor('gate', gate, x), scratch?.outputFor('up', up, x)])) as [Tensor<'f32'>, Tensor<'f32'>];
    gateInPlace(this.#act, g.data, u.data);
    return yield* linearStep(linearChild(this, 'down_proj'), g, out);
  }
}

export class LlamaDecoderLayer extends Module {
  readonly self_attn: LlamaAttention;
  readonly mlp: LlamaMLP;
  readonly input_layernorm: RMSNorm;
  readonly post_attention_layernorm: RMSNorm;

  constructor(attn: LlamaAttention, mlp: LlamaMLP, inNorm: RMSNorm, postNorm: RMSNorm) {
    super();
    this.self_attn = this.addModule('self_attn', attn);
    this.mlp = this.addModule('mlp', mlp);
    this.input_layernorm = this.addModule('input_layernorm', inNorm);
    this.post_attention_layernorm = this.addModule('post_attention_layernorm', postNorm);
  }

  forward(x: Tensor<'f32'>, cache: DecoderKVCache, layer: number, pos0: number, rope: Rope): Tensor<'f32'> {
    return runSync(this.forwardSteps(x, SeqBatch.single(cache, pos0, x.shape[0]!), layer, rope));
  }

  /**
   * The block's activations live in the batch's scratch. The residual
   * stream alternates between slots 'resA' and 'resB': a = x + attn goes to
   * the slot x is not in, m = a + mlp to x's own slot (x is dead once
   * added into a), so the next layer's x is never overwritten early.
   */
  *forwardSteps(x: Tensor<'f32'>, batch: SeqBatch, layer: number, rope: Rope): ForwardSteps<Tensor<'f32'>> {
    const sc = batch.scratch;
    const n = x.size;
    const [aSlot, mSlot] = sc.residualSlots(x.data);
    const h = this.input_layernorm.forward(x, sc.f32('norm', n));
    const a = yield* this.self_attn.forwardSteps(h, batch, layer, rope, sc.f32(aSlot, n));
    // a = x + attn(norm(x)), fused with the norm that reads it
    const h2 = this.post_attention_layernorm.forwardAdd(a, x, sc.f32('norm', n));
    const m = yield* this.mlp.forwardSteps(h2, sc, sc.f32(mSlot, n));
    addInPlace(m.data, a.data);
    return m;
  }
}

/** The decoder stack without the head (HF LlamaModel, named 'model'). */
export class LlamaModel extends Module {
  readonly embed_tokens: Embedding;
  readonly layers: ModuleList<LlamaDecoderLayer>;
  readonly norm: RMSNorm;

  constructor(embed: Embedding, layers: LlamaDecoderLayer[], norm: RMSNorm) {
    super();
    this.embed_tokens = this.addModule('embed_tokens', embed);
    this.layers = this.addModule('layers', new ModuleList(layers));
    this.norm = this.addModule('norm', norm);
  }
}

export class LlamaForCausalLM extends DecoderLM {
  readonly config: LlamaConfig;
  readonly model: LlamaModel;
  readonly rope: Rope;

  constructor(config: LlamaConfig, model: LlamaModel, lmHead: Linear) {
    super();
    this.config = config;
    this.model = this.addModule('model', model);
    this.addModule('lm_head', lmHead);
    this.rope = new Rope(config.headDim, config.ropeTheta, config.ropeScaling);
  }

  /** Activation-aware scale folds (lib/nn/scale-fold.ts); v_proj -> o_proj only without GQA (a shared kv head would need one scale for several heads). */
  scaleGroups(): ScaleGroup[] {
    const c = this.config;
    const out: ScaleGroup[] = [];
    for (let i = 0; i < c.numLayers; i++) {
      const p = `model.layers.${i}`;
      out.push({ prev: `${p}.input_layernorm`, layers: ['q_proj', 'k_proj', 'v_proj'].map((n) => `${p}.self_attn.${n}`) });
      if (c.numKvHeads === c.numHeads) out.push({ prev: `${p}.self_attn.v_proj`, layers: [`${p}.self_attn.o_proj`] });
      out.push({ prev: `${p}.post_attention_layernorm`, layers: [`${p}.mlp.gate_proj`, `${p}.mlp.up_proj`] });
      out.push({ prev: `${p}.mlp.up_proj`, layers: [`${p}.mlp.down_proj`] }); // act(gate) * up is linear in up
    }
    return out;
  }

  // RoPE has no position table: positions are bounded by the cache capacity only
  protected cacheShape() {
    return { nLayers: this.config.numLayers, kvDim: this.config.numKvHeads * this.config.headDim };
  }

  protected *embedSteps(tokens: readonly number[], batch: SeqBatch): ForwardSteps<Tensor<'f32'>> {
    return this.model.embed_tokens.forward(tokens, batch.scratch.f32('embed', tokens.length * this.config.hiddenSize));
  }

  protected *blockSteps(i: number, x: Tensor<'f32'>, batch: SeqBatch): ForwardSteps<Tensor<'f32'>> {
    return yield* this.model.layers.at(i).forwardSteps(x, batch, i, this.rope);
  }

  blockName(i: number): string {
    return `model.layers.${i}`;
  }

  protected override *headInputSteps(x: Tensor<'f32'>, scratch: Scratch): ForwardSteps<Tensor<'f32'>> {
    return this.model.norm.forward(x, scratch.f32('final', x.size));
  }
}

export interface BuildLlamaOptions {
  /**
   * q/k rows are in llama2.c's interleaved-pair RoPE order (a llama2.c .bin):
   * permute them at load into HF rotate-half order, so one RoPE serves both
   * layouts and a saved model is a normal HF checkpoint.
   */
  llama2cRoPE?: boolean;
}

/** Build a Llama from HF-named weights ('model.*', 'lm_head.weight'). */
export function buildLlama(config: LlamaConfig, w: WeightReader, options: BuildLlamaOptions = {}): LlamaForCausalLM {
  const { hiddenSize: D, intermediateSize: F, numHeads: nH, numKvHeads: nKv, headDim: hd, vocabSize: V } = config;
  const linear = (name: string, out: number, inp: number, bias: boolean, fix?: (t: Tensor) => Tensor) =>
    new Linear(fix ? fix(w.matrix(`${name}.weight`, [out, inp])) : w.matrix(`${name}.weight`, [out, inp]), bias ? w.f32(`${name}.bias`, [out]) : null);
  const permute = (heads: number) => (t: Tensor) => (options.llama2cRoPE ? llama2cToHfRoPERows(t as Tensor<'f32'>, heads) : t);
  const norm = (name: string) => new RMSNorm(w.f32(`${name}.weight`, [D]), config.rmsNormEps);
  const shape: AttentionShape = { nHeads: nH, nKvHeads: nKv, headDim: hd, scale: 1 / Math.sqrt(hd) };
  const layers: LlamaDecoderLayer[] = [];
  for (let i = 0; i < config.numLayers; i++) {
    const p = `model.layers.${i}`;
    const ab = config.attentionBias;
    const attn = new LlamaAttention(
      linear(`${p}.self_attn.q_proj`, nH * hd, D, ab, permute(nH)),
      linear(`${p}.self_attn.k_proj`, nKv * hd, D, ab, permute(nKv)),
      linear(`${p}.self_attn.v_proj`, nKv * hd, D, ab),
      linear(`${p}.self_attn.o_proj`, D, nH * hd, ab),
      shape,
    );
    const mb = config.mlpBias;
    const mlp = new LlamaMLP(linear(`${p}.mlp.gate_proj`, F, D, mb), linear(`${p}.mlp.up_proj`, F, D, mb), linear(`${p}.mlp.down_proj`, D, F, mb), config.hiddenAct);
    layers.push(new LlamaDecoderLayer(attn, mlp, norm(`${p}.input_layernorm`), norm(`${p}.post_attention_layernorm`)));
  }
  // the embedding keeps the file's dtype (rows are decoded at lookup), so a tied lm_head shares it without a copy
  const embed = new Embedding(w.matrix('model.embed_tokens.weight', [V, D]));
  const lmHead = config.tieWordEmbeddings ? new Linear(embed.weight) : linear('lm_head', V, D, false);
  return new LlamaForCausalLM(config, new LlamaModel(embed, layers, norm('model.norm')), lmHead);
}

export const llamaArch: ArchSpec<LlamaConfig, LlamaForCausalLM> = {
  arch: 'llama',
  modelTypes: ['llama'],
  hfClasses: ['LlamaForCausalLM'],
  parseConfig: parseLlamaConfig,
  prefix: 'model.',
  prefixVariants: ['model.', ''],
  build: (c, w) => buildLlama(c, w),
  weightSpecs: llamaWeightSpecs,
};

/** The tensors buildLlama reads (see WeightSpec). */
export function llamaWeightSpecs(c: LlamaConfig): WeightSpec[] {
  const { hiddenSize: D, intermediateSize: F, numHeads: nH, numKvHeads: nKv, headDim: hd, vocabSize: V } = c;
  const out: WeightSpec[] = [{ name: 'model.embed_tokens.weight', shape: [V, D], kind: 'matrix' }];
  const lin = (name: string, o: number, i: number, bias: boolean) => {
    out.push({ name: `${name}.weight`, shape: [o, i], kind: 'linear' });
    if (bias) out.push({ name: `${name}.bias`, shape: [o], kind: 'f32' });
  };
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}`;
    lin(`${p}.self_attn.q_proj`, nH * hd, D, c.attentionBias);
    lin(`${p}.self_attn.k_proj`, nKv * hd, D, c.attentionBias);
    lin(`${p}.self_attn.v_proj`, nKv * hd, D, c.attentionBias);
    lin(`${p}.self_attn.o_proj`, D, nH * hd, c.attentionBias);
    lin(`${p}.mlp.gate_proj`, F, D, c.mlpBias);
    lin(`${p}.mlp.up_proj`, F, D, c.mlpBias);
    lin(`${p}.mlp.down_proj`, D, F, c.mlpBias);
    out.push({ name: `${p}.input_layernorm.weight`, shape: [D], kind: 'f32' }, { name: `${p}.post_attention_layernorm.weight`, shape: [D], kind: 'f32' });
  }
  out.push({ name: 'model.norm.weight', shape: [D], kind: 'f32' });
  out.push({ name: 'lm_head.weight', shape: [V, D], kind: 'linear', ...(c.tieWordEmbeddings ? { tiedTo: 'model.embed_tokens.weight' } : {}) });
  return out;
}
