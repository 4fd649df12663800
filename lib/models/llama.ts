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
import { type AttentionShape, type DecoderKVCache, ModuleList, causalAttentionSteps, linearChild } from '../nn/attention.js';
import { Embedding } from '../nn/embedding.js';
import { Linear } from '../nn/linear.js';
import { Module } from '../nn/module.js';
import { RMSNorm } from '../nn/norm.js';
import { Rope } from '../nn/rope.js';
import { Tensor } from '../tensor.js';
import { DecoderLM, type ForwardSteps, linearStep, runSync } from './causal-lm.js';
import type { LlamaConfig, WeightReader } from './config.js';

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
    return runSync(this.forwardSteps(x, cache, layer, pos0, rope));
  }

  *forwardSteps(x: Tensor<'f32'>, cache: DecoderKVCache, layer: number, pos0: number, rope: Rope): ForwardSteps<Tensor<'f32'>> {
    const T = x.shape[0]!;
    const { nHeads, nKvHeads, headDim } = this.shape;
    const q = (yield* linearStep(linearChild(this, 'q_proj'), x)).data;
    const k = (yield* linearStep(linearChild(this, 'k_proj'), x)).data;
    const v = (yield* linearStep(linearChild(this, 'v_proj'), x)).data;
    rope.applyRotateHalf(q, T, nHeads, pos0);
    rope.applyRotateHalf(k, T, nKvHeads, pos0);
    cache.write(layer, pos0, k, v);
    const o = yield* causalAttentionSteps(q, T, pos0, cache, layer, this.shape);
    return yield* linearStep(linearChild(this, 'o_proj'), new Tensor('f32', [T, nHeads * headDim], o));
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

  *forwardSteps(x: Tensor<'f32'>): ForwardSteps<Tensor<'f32'>> {
    const g = yield* linearStep(linearChild(this, 'gate_proj'), x);
    const u = yield* linearStep(linearChild(this, 'up_proj'), x);
    gateInPlace(this.#act, g.data, u.data);
    return yield* linearStep(linearChild(this, 'down_proj'), g);
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
    return runSync(this.forwardSteps(x, cache, layer, pos0, rope));
  }

  *forwardSteps(x: Tensor<'f32'>, cache: DecoderKVCache, layer: number, pos0: number, rope: Rope): ForwardSteps<Tensor<'f32'>> {
    const a = yield* this.self_attn.forwardSteps(this.input_layernorm.forward(x), cache, layer, pos0, rope);
    addInPlace(a.data, x.data); // a = x + attn(norm(x))
    const m = yield* this.mlp.forwardSteps(this.post_attention_layernorm.forward(a));
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

  // RoPE has no position table: positions are bounded by the cache capacity only
  protected cacheShape() {
    return { nLayers: this.config.numLayers, kvDim: this.config.numKvHeads * this.config.headDim };
  }

  protected *bodySteps(tokens: readonly number[], cache: DecoderKVCache, pos0: number): ForwardSteps<Tensor<'f32'>> {
    let x = this.model.embed_tokens.forward(tokens);
    for (let i = 0; i < this.model.layers.length; i++) x = yield* this.model.layers.at(i).forwardSteps(x, cache, i, pos0, this.rope);
    return x;
  }

  protected override *headInputSteps(x: Tensor<'f32'>): ForwardSteps<Tensor<'f32'>> {
    return this.model.norm.forward(x);
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
