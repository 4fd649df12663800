/**
 * GPT-2 (HF GPT2LMHeadModel): token + learned position embeddings, N
 * pre-LayerNorm blocks (fused qkv attention, GELU-tanh MLP), ln_f, tied
 * lm_head.
 *
 * HF stores GPT-2's projections as Conv1D weights [in, out]; they are
 * transposed at load into ordinary Linear weights [out, in] (c_attn
 * [3 * n_embd, n_embd], attn.c_proj [n_embd, n_embd], c_fc [n_inner, n_embd],
 * mlp.c_proj [n_embd, n_inner]) so they quantize like any Linear.
 * Shapes for T tokens: hidden f32 [T, n_embd]; qkv [T, 3 * n_embd]; logits [T, vocab].
 * Module names: transformer.{wte,wpe,ln_f}, transformer.h.{i}.{ln_1,ln_2},
 * transformer.h.{i}.attn.{c_attn,c_proj}, transformer.h.{i}.mlp.{c_fc,c_proj}, lm_head.
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
import { hugeArray } from '../ops/huge-pages.js';
import { noteCopy } from '../provenance.js';
import { Tensor } from '../tensor.js';
import type { Scratch } from '../nn/scratch.js';
import { DecoderLM, type ForwardSteps, linearStep, runSync } from './causal-lm.js';
import type { ModelConfigBase } from './causal-lm.js';
import { type ArchSpec, Fields, type Json, type WeightReader, type WeightSpec, divisible } from './config.js';

export interface Gpt2Config extends ModelConfigBase {
  readonly arch: 'gpt2';
  readonly nEmbd: number;
  readonly nLayer: number;
  readonly nHead: number;
  /** MLP width (n_inner, default 4 * n_embd). */
  readonly nInner: number;
  readonly layerNormEps: number;
  readonly activation: string;
  readonly scaleAttnWeights: boolean;
  readonly scaleAttnByInverseLayerIdx: boolean;
  readonly tieWordEmbeddings: boolean;
}

export function parseGpt2Config(json: Json, file = 'config.json'): Gpt2Config {
  const f = new Fields(json, file, 'gpt2');
  const nEmbd = f.int('n_embd');
  const nHead = f.int('n_head');
  divisible(file, ['n_embd', nEmbd], ['n_head', nHead]);
  return {
    arch: 'gpt2',
    nEmbd,
    nLayer: f.int('n_layer'),
    nHead,
    nInner: f.int('n_inner', 4 * nEmbd),
    vocabSize: f.int('vocab_size'),
    maxPositions: f.int('n_positions'),
    layerNormEps: f.num('layer_norm_epsilon', 1e-5),
    activation: f.activation('activation_function', 'gelu_new'),
    scaleAttnWeights: f.bool('scale_attn_weights', true),
    scaleAttnByInverseLayerIdx: f.bool('scale_attn_by_inverse_layer_idx', false),
    tieWordEmbeddings: f.bool('tie_word_embeddings', true),
    bosId: f.tokenId('bos_token_id'),
    eosId: f.tokenId('eos_token_id'),
  };
}

export class Gpt2Attention extends Module {
  readonly shape: AttentionShape;

  constructor(cAttn: Linear, cProj: Linear, shape: AttentionShape) {
    super();
    this.addModule('c_attn', cAttn);
    this.addModule('c_proj', cProj);
    this.shape = shape;
  }

  forward(x: Tensor<'f32'>, cache: DecoderKVCache, layer: number, pos0: number): Tensor<'f32'> {
    return runSync(this.forwardSteps(x, SeqBatch.single(cache, pos0, x.shape[0]!), layer));
  }

  /** x [rows, D] of the batch's sequences; c_proj into `out` when given; the rest in the batch's scratch slots. */
  *forwardSteps(x: Tensor<'f32'>, batch: SeqBatch, layer: number, out?: Float32Array): ForwardSteps<Tensor<'f32'>> {
    const T = x.shape[0]!;
    const D = this.shape.nHeads * this.shape.headDim;
    const sc = batch.scratch;
    const cAttn = linearChild(this, 'c_attn');
    const qkv = (yield* linearStep(cAttn, x, sc.outputFor('qkv', cAttn, x))).data; // [T, 3D]: q | k | v per row
    const q = sc.f32('q', T * D);
    const k = sc.f32('k', T * D);
    const v = sc.f32('v', T * D);
    for (let t = 0; t < T; t++) {
      const o = t * 3 * D;
      q.set(qkv.subarray(o, o + D), t * D);
      k.set(qkv.subarray(o + D, o + 2 * D), t * D);
      v.set(qkv.subarray(o + 2 * D, o + 3 * D), t * D);
    }
    batch.writeKV(layer, k, v, D);
    const a = yield* batch.attentionSteps(q, layer, this.shape, sc.f32('attn', T * D));
    return yield* linearStep(linearChild(this, 'c_proj'), new Tensor('f32', [T, D], a), out);
  }
}

export class Gpt2MLP extends Module {
  readonly #act: ActivationFn;

  constructor(cFc: Linear, cProj: Linear, act: ActivationFn) {
    super();
    this.addModule('c_fc', cFc);
    this.addModule('c_proj', cProj);
    this.#act = act;
  }

  forward(x: Tensor<'f32'>): Tensor<'f32'> {
    return runSync(this.forwardSteps(x));
  }

  /** c_fc's output in `scratch` slot 'fc' when given; c_proj into `out` when given. */
  *forwardSteps(x: Tensor<'f32'>, scratch?: Scratch, out?: Float32Array): ForwardSteps<Tensor<'f32'>> {
    const fc = linearChild(this, 'c_fc');
    const h = yield* linearStep(fc, x, scratch?.outputFor('fc', fc, x));
    this.#act(h.data);
    return yield* linearStep(linearChild(this, 'c_proj'), h, out);
  }
}

export class Gpt2Block extends Module {
  readonly ln_1: LayerNorm;
  readonly attn: Gpt2Attention;
  readonly ln_2: LayerNorm;
  readonly mlp: Gpt2MLP;

  constructor(ln1: LayerNorm, attn: Gpt2Attention, ln2: LayerNorm, mlp: Gpt2MLP) {
    super();
    this.ln_1 = this.addModule('ln_1', ln1);
    this.attn = this.addModule('attn', attn);
    this.ln_2 = this.addModule('ln_2', ln2);
    this.mlp = this.addModule('mlp', mlp);
  }

  forward(x: Tensor<'f32'>, cache: DecoderKVCache, layer: number, pos0: number): Tensor<'f32'> {
    return runSync(this.forwardSteps(x, SeqBatch.single(cache, pos0, x.shape[0]!), layer));
  }

  *forwardSteps(x: Tensor<'f32'>, batch: SeqBatch, layer: number): ForwardSteps<Tensor<'f32'>> {
    // activations in the batch's scratch; the residual stream as in LlamaDecoderLayer
    const sc = batch.scratch;
    const n = x.size;
    const [aSlot, mSlot] = sc.residualSlots(x.data);
    const a = yield* this.attn.forwardSteps(this.ln_1.forward(x, sc.f32('norm', n)), batch, layer, sc.f32(aSlot, n));
    const m = yield* this.mlp.forwardSteps(this.ln_2.forwardAdd(a, x, sc.f32('norm', n)), sc, sc.f32(mSlot, n)); // a = x + attn, then ln_2(a)
    addInPlace(m.data, a.data);
    return m;
  }
}

/** HF GPT2Model, named 'transformer'. */
export class Gpt2Model extends Module {
  readonly wte: Embedding;
  readonly wpe: Embedding;
  readonly h: ModuleList<Gpt2Block>;
  readonly ln_f: LayerNorm;

  constructor(wte: Embedding, wpe: Embedding, blocks: Gpt2Block[], lnF: LayerNorm) {
    super();
    this.wte = this.addModule('wte', wte);
    this.wpe = this.addModule('wpe', wpe);
    this.h = this.addModule('h', new ModuleList(blocks));
    this.ln_f = this.addModule('ln_f', lnF);
  }
}

export class Gpt2LMHeadModel extends DecoderLM {
  readonly config: Gpt2Config;
  readonly transformer: Gpt2Model;

  constructor(config: Gpt2Config, transformer: Gpt2Model, lmHead: Linear) {
    super();
    this.config = config;
    this.transformer = this.addModule('transformer', transformer);
    this.addModule('lm_head', lmHead);
  }

  /** Activation-aware scale folds (lib/nn/scale-fold.ts): the norms, and v (c_attn rows [2D, 3D)) -> attn.c_proj; GELU blocks c_fc -> mlp.c_proj. */
  scaleGroups(): ScaleGroup[] {
    const D = this.config.nEmbd;
    const out: ScaleGroup[] = [];
    for (let i = 0; i < this.config.nLayer; i++) {
      const p = `transformer.h.${i}`;
      out.push({ prev: `${p}.ln_1`, layers: [`${p}.attn.c_attn`] });
      out.push({ prev: `${p}.attn.c_attn`, rowOffset: 2 * D, layers: [`${p}.attn.c_proj`] });
      out.push({ prev: `${p}.ln_2`, layers: [`${p}.mlp.c_fc`] });
    }
    return out;
  }

  protected cacheShape() {
    return { nLayers: this.config.nLayer, kvDim: this.config.nEmbd, maxPositions: this.config.maxPositions };
  }

  protected *embedSteps(tokens: readonly number[], batch: SeqBatch): ForwardSteps<Tensor<'f32'>> {
    const tr = this.transformer;
    const n = tokens.length * this.config.nEmbd;
    const x = tr.wte.forward(tokens, batch.scratch.f32('embed', n));
    addInPlace(x.data, tr.wpe.forward(batch.positions(), batch.scratch.f32('pos', n)).data);
    return x;
  }

  protected *blockSteps(i: number, x: Tensor<'f32'>, batch: SeqBatch): ForwardSteps<Tensor<'f32'>> {
    return yield* this.transformer.h.at(i).forwardSteps(x, batch, i);
  }

  blockName(i: number): string {
    return `transformer.h.${i}`;
  }

  protected override *headInputSteps(x: Tensor<'f32'>, scratch: Scratch): ForwardSteps<Tensor<'f32'>> {
    return this.transformer.ln_f.forward(x, scratch.f32('final', x.size));
  }
}

/** [rows, cols] -> [cols, rows], same dtype (a copy). */
export function transpose2d(t: Tensor): Tensor {
  const [r, c] = t.shape as [number, number];
  const src = t.data;
  // a weight the kernels read: on a 64-byte line, as files read whole put theirs
  const dst = hugeArray(src.constructor as Float32ArrayConstructor, src.length) as unknown as typeof src;
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) dst[j * r + i] = src[i * c + j]!;
  noteCopy(dst, `transposed: Conv1D [${r}, ${c}] -> [${c}, ${r}]`);
  return new Tensor(t.dtype, [c, r], dst, t.name);
}

export interface BuildGpt2Options {
  /**
   * 'conv1d' (default): projection weights in HF's Conv1D layout [in, out].
   * 'linear': already [out, in], as quantkit stores a model's Linear tensors
   * (a quantized checkpoint, whose placeholders are [N, K] too).
   */
  projectionLayout?: 'conv1d' | 'linear';
}

/** Build GPT-2 from HF names ('transformer.*' or bare 'h.*', 'wte.*', ...). */
export function buildGpt2(config: Gpt2Config, w: WeightReader, options: BuildGpt2Options = {}): Gpt2LMHeadModel {
  const { nEmbd: D, nInner: F, nHead: nH, vocabSize: V, maxPositions: P } = config;
  // Conv1D: stored [in, out]; a Linear wants [out, in]
  const conv1d = (name: string, inp: number, out: number) =>
    new Linear(
      options.projectionLayout === 'linear' ? w.matrix(`${name}.weight`, [out, inp]) : transpose2d(w.matrix(`${name}.weight`, [inp, out])),
      w.f32(`${name}.bias`, [out]),
    );
  const ln = (name: string) => new LayerNorm(D, config.layerNormEps, w.f32(`${name}.weight`, [D]), w.f32(`${name}.bias`, [D]));
  const act = activationByName(config.activation);
  const hd = D / nH;
  const blocks: Gpt2Block[] = [];
  for (let i = 0; i < config.nLayer; i++) {
    const p = `transformer.h.${i}`;
    let scale = config.scaleAttnWeights ? 1 / Math.sqrt(hd) : 1;
    if (config.scaleAttnByInverseLayerIdx) scale /= i + 1;
    const attn = new Gpt2Attention(conv1d(`${p}.attn.c_attn`, D, 3 * D), conv1d(`${p}.attn.c_proj`, D, D), { nHeads: nH, nKvHeads: nH, headDim: hd, scale });
    const mlp = new Gpt2MLP(conv1d(`${p}.mlp.c_fc`, D, F), conv1d(`${p}.mlp.c_proj`, F, D), act);
    blocks.push(new Gpt2Block(ln(`${p}.ln_1`), attn, ln(`${p}.ln_2`), mlp));
  }
  const wte = new Embedding(w.matrix('transformer.wte.weight', [V, D]));
  const wpe = new Embedding(w.f32('transformer.wpe.weight', [P, D]));
  const lmHead = config.tieWordEmbeddings ? new Linear(wte.weight) : new Linear(w.matrix('lm_head.weight', [V, D]));
  return new Gpt2LMHeadModel(config, new Gpt2Model(wte, wpe, blocks, ln('transformer.ln_f')), lmHead);
}

export const gpt2Arch: ArchSpec<Gpt2Config, Gpt2LMHeadModel> = {
  arch: 'gpt2',
  modelTypes: ['gpt2'],
  hfClasses: ['GPT2LMHeadModel'],
  parseConfig: parseGpt2Config,
  prefix: 'transformer.',
  prefixVariants: ['transformer.', ''],
  build: (c, w, o) => buildGpt2(c, w, { projectionLayout: o.layout === 'linear' ? 'linear' : 'conv1d' }),
  weightSpecs: gpt2WeightSpecs,
};

/** The tensors buildGpt2 reads (see WeightSpec). */
export function gpt2WeightSpecs(c: Gpt2Config): WeightSpec[] {
  const { nEmbd: D, nInner: F, vocabSize: V, maxPositions: P } = c;
  const out: WeightSpec[] = [
    { name: 'transformer.wte.weight', shape: [V, D], kind: 'matrix' },
    { name: 'transformer.wpe.weight', shape: [P, D], kind: 'f32' },
  ];
  const lin = (name: string, o: number, i: number) => out.push({ name: `${name}.weight`, shape: [o, i], kind: 'linear' }, { name: `${name}.bias`, shape: [o], kind: 'f32' });
  const ln = (name: string) => out.push({ name: `${name}.weight`, shape: [D], kind: 'f32' }, { name: `${name}.bias`, shape: [D], kind: 'f32' });
  for (let l = 0; l < c.nLayer; l++) {
    const p = `transformer.h.${l}`;
    ln(`${p}.ln_1`);
    lin(`${p}.attn.c_attn`, 3 * D, D);
    lin(`${p}.attn.c_proj`, D, D);
    ln(`${p}.ln_2`);
    lin(`${p}.mlp.c_fc`, F, D);
    lin(`${p}.mlp.c_proj`, D, F);
  }
  ln('transformer.ln_f');
  out.push({ name: 'lm_head.weight', shape: [V, D], kind: 'linear', ...(c.tieWordEmbeddings ? { tiedTo: 'transformer.wte.weight' } : {}) });
  return out;
}
