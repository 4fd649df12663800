/**
 * CodeGen (HF CodeGenForCausalLM, Salesforce/codegen-*): token embedding, N
 * blocks in which ONE LayerNorm feeds attention and MLP in parallel
 * (h = x + attn(ln(x)) + mlp(ln(x))), final LayerNorm, an untied lm_head
 * with a bias. No position table: rotary embeddings on the first rotaryDim
 * dimensions of each head, pairs (2i, 2i + 1) (GPT-J's rotate-every-two).
 *
 * The fused qkv_proj [3 * D, D] was trained sharded over 4 devices: its
 * output row holds 4 blocks, block b = [q | v | k] for heads
 * b * nH/4 .. (b + 1) * nH/4 - 1, each part D/4 wide (head after head). The
 * weight stays as stored (a saved checkpoint is a normal HF one); the split
 * happens on the activations.
 *
 * Shapes for T tokens: hidden f32 [T, D]; qkv [T, 3D]; q, k, v [T, D]
 * (head after head, headDim each); MLP [T, nInner]; logits [T, vocab].
 * Module names mirror HF: transformer.{wte,ln_f}, transformer.h.{i}.ln_1,
 * transformer.h.{i}.attn.{qkv_proj,out_proj}, transformer.h.{i}.mlp.{fc_in,fc_out}, lm_head.
 */
import { type ActivationFn, activationByName, addInPlace } from '../nn/activations.js';
import { type AttentionShape, type DecoderKVCache, ModuleList, linearChild } from '../nn/attention.js';
import { SeqBatch } from '../nn/seq-batch.js';
import { Embedding } from '../nn/embedding.js';
import { Linear } from '../nn/linear.js';
import { Module } from '../nn/module.js';
import type { ScaleGroup } from '../nn/scale-fold.js';
import { LayerNorm } from '../nn/norm.js';
import { Rope } from '../nn/rope.js';
import { Tensor } from '../tensor.js';
import type { Scratch } from '../nn/scratch.js';
import { DecoderLM, type ForwardSteps, linearStep, runSync } from './causal-lm.js';
import type { ModelConfigBase } from './causal-lm.js';
import { type ArchSpec, Fields, type Json, type WeightReader, type WeightSpec, badConfig, divisible } from './config.js';

export interface CodegenConfig extends ModelConfigBase {
  readonly arch: 'codegen';
  readonly nEmbd: number;
  readonly nLayer: number;
  readonly nHead: number;
  readonly headDim: number;
  /** Leading dimensions of each head that rotate (the rest pass through). */
  readonly rotaryDim: number;
  /** MLP width (n_inner, default 4 * n_embd). */
  readonly nInner: number;
  readonly layerNormEps: number;
  readonly activation: string;
  readonly tieWordEmbeddings: boolean;
}

/**
 * The number of tensor-parallel shards CodeGen's fused qkv_proj was trained
 * with: its output rows are 4 blocks of [q | v | k] for a quarter of the heads
 * each (HF hard-codes it too), so the head count must divide by it.
 */
export const CODEGEN_MP_NUM = 4;

export function parseCodegenConfig(json: Json, file = 'config.json'): CodegenConfig {
  const f = new Fields(json, file, 'codegen');
  const nEmbd = f.int('n_embd');
  const nHead = f.int('n_head');
  divisible(file, ['n_embd', nEmbd], ['n_head', nHead]);
  if (nHead % CODEGEN_MP_NUM !== 0) throw badConfig(file, `'n_head' (${nHead}) must be divisible by ${CODEGEN_MP_NUM}: CodeGen's fused qkv_proj holds ${CODEGEN_MP_NUM} blocks of heads`);
  const headDim = nEmbd / nHead;
  // HF rotates the whole head when rotary_dim is null
  const rotaryDim = f.int('rotary_dim', headDim);
  if (rotaryDim > headDim || rotaryDim % 2 !== 0) throw badConfig(file, `'rotary_dim' (${rotaryDim}) must be even and at most the head size ${headDim}`);
  return {
    arch: 'codegen',
    nEmbd,
    nLayer: f.int('n_layer'),
    nHead,
    headDim,
    rotaryDim,
    nInner: f.int('n_inner', 4 * nEmbd),
    vocabSize: f.int('vocab_size'),
    maxPositions: f.int('n_positions', 2048),
    layerNormEps: f.num('layer_norm_epsilon', 1e-5),
    activation: f.activation('activation_function', 'gelu_new'),
    tieWordEmbeddings: f.bool('tie_word_embeddings', false),
    bosId: f.tokenId('bos_token_id', 50256),
    eosId: f.tokenId('eos_token_id', 50256),
  };
}

/**
 * De-interleave CodeGen's fused qkv rows [T, 3D] into q, k, v [T, D] each
 * (head-major), undoing the 4-shard [q | v | k] layout described above.
 */
export function splitCodegenQkv(qkv: Float32Array, T: number, D: number, scratch?: Scratch): { q: Float32Array; k: Float32Array; v: Float32Array } {
  const local = D / CODEGEN_MP_NUM; // one shard's width of q (= of k = of v)
  // every element is written below, so reused scratch buffers need no clearing
  const q = scratch ? scratch.f32('q', T * D) : new Float32Array(T * D);
  const k = scratch ? scratch.f32('k', T * D) : new Float32Array(T * D);
  const v = scratch ? scratch.f32('v', T * D) : new Float32Array(T * D);
  for (let t = 0; t < T; t++) {
    for (let b = 0; b < CODEGEN_MP_NUM; b++) {
      const src = t * 3 * D + b * 3 * local;
      const dst = t * D + b * local; // shard b holds heads b*nH/4 .. : a contiguous run of the D outputs
      q.set(qkv.subarray(src, src + local), dst);
      v.set(qkv.subarray(src + local, src + 2 * local), dst);
      k.set(qkv.subarray(src + 2 * local, src + 3 * local), dst);
    }
  }
  return { q, k, v };
}

export class CodegenAttention extends Module {
  readonly shape: AttentionShape;

  constructor(qkvProj: Linear, outProj: Linear, shape: AttentionShape) {
    super();
    this.addModule('qkv_proj', qkvProj);
    this.addModule('out_proj', outProj);
    this.shape = shape;
  }

  forward(x: Tensor<'f32'>, cache: DecoderKVCache, layer: number, pos0: number, rope: Rope): Tensor<'f32'> {
    return runSync(this.forwardSteps(x, SeqBatch.single(cache, pos0, x.shape[0]!), layer, rope));
  }

  /** x [rows, D] of the batch's sequences; out_proj into `out` when given; qkv_proj's output and the attention's in the batch's scratch. */
  *forwardSteps(x: Tensor<'f32'>, batch: SeqBatch, layer: number, rope: Rope, out?: Float32Array): ForwardSteps<Tensor<'f32'>> {
    const T = x.shape[0]!;
    const { nHeads, headDim } = this.shape;
    const D = nHeads * headDim;
    const sc = batch.scratch;
    const qkvProj = linearChild(this, 'qkv_proj');
    const { q, k, v } = splitCodegenQkv((yield* linearStep(qkvProj, x, sc.outputFor('qkv', qkvProj, x))).data, T, D, sc);
    batch.forEachSegment(q, D, (r, s) => rope.applyInterleaved(r, s.T, nHeads, s.pos0, headDim));
    batch.forEachSegment(k, D, (r, s) => rope.applyInterleaved(r, s.T, nHeads, s.pos0, headDim));
    batch.writeKV(layer, k, v, D);
    const a = yield* batch.attentionSteps(q, layer, this.shape, sc.f32('attn', T * D));
    return yield* linearStep(linearChild(this, 'out_proj'), new Tensor('f32', [T, D], a), out);
  }
}

export class CodegenMLP extends Module {
  readonly #act: ActivationFn;

  constructor(fcIn: Linear, fcOut: Linear, act: ActivationFn) {
    super();
    this.addModule('fc_in', fcIn);
    this.addModule('fc_out', fcOut);
    this.#act = act;
  }

  forward(x: Tensor<'f32'>): Tensor<'f32'> {
    return runSync(this.forwardSteps(x));
  }

  /** fc_in's output in `scratch` slot 'fc' when given; fc_out into `out` when given. */
  *forwardSteps(x: Tensor<'f32'>, scratch?: Scratch, out?: Float32Array): ForwardSteps<Tensor<'f32'>> {
    const fcIn = linearChild(this, 'fc_in');
    const h = yield* linearStep(fcIn, x, scratch?.outputFor('fc', fcIn, x));
    this.#act(h.data);
    return yield* linearStep(linearChild(this, 'fc_out'), h, out);
  }
}

export class CodegenBlock extends Module {
  readonly ln_1: LayerNorm;
  readonly attn: CodegenAttention;
  readonly mlp: CodegenMLP;

  constructor(ln1: LayerNorm, attn: CodegenAttention, mlp: CodegenMLP) {
    super();
    this.ln_1 = this.addModule('ln_1', ln1);
    this.attn = this.addModule('attn', attn);
    this.mlp = this.addModule('mlp', mlp);
  }

  forward(x: Tensor<'f32'>, cache: DecoderKVCache, layer: number, pos0: number, rope: Rope): Tensor<'f32'> {
    return runSync(this.forwardSteps(x, SeqBatch.single(cache, pos0, x.shape[0]!), layer, rope));
  }

  *forwardSteps(x: Tensor<'f32'>, batch: SeqBatch, layer: number, rope: Rope): ForwardSteps<Tensor<'f32'>> {
    // activations in the batch's scratch: a in the residual slot x is not in,
    // m in its own ('mlp'): x is read again at the end
    const sc = batch.scratch;
    const n = x.size;
    const [aSlot] = sc.residualSlots(x.data);
    const h = this.ln_1.forward(x, sc.f32('norm', n));
    const a = yield* this.attn.forwardSteps(h, batch, layer, rope, sc.f32(aSlot, n));
    const m = yield* this.mlp.forwardSteps(h, sc, sc.f32('mlp', n));
    // HF sums attn + mlp + residual in that order
    addInPlace(a.data, m.data);
    addInPlace(a.data, x.data);
    return a;
  }
}

/** HF CodeGenModel, named 'transformer'. */
export class CodegenModel extends Module {
  readonly wte: Embedding;
  readonly h: ModuleList<CodegenBlock>;
  readonly ln_f: LayerNorm;

  constructor(wte: Embedding, blocks: CodegenBlock[], lnF: LayerNorm) {
    super();
    this.wte = this.addModule('wte', wte);
    this.h = this.addModule('h', new ModuleList(blocks));
    this.ln_f = this.addModule('ln_f', lnF);
  }
}

export class CodegenForCausalLM extends DecoderLM {
  readonly config: CodegenConfig;
  readonly transformer: CodegenModel;
  readonly rope: Rope;

  constructor(config: CodegenConfig, transformer: CodegenModel, lmHead: Linear) {
    super();
    this.config = config;
    this.transformer = this.addModule('transformer', transformer);
    this.addModule('lm_head', lmHead);
    // CodeGen's sinusoids: theta 10000 over the rotary dimensions only
    this.rope = new Rope(config.rotaryDim, 10000);
  }

  // HF precomputes sinusoids for n_positions: positions stop there
  /** Activation-aware scale folds (lib/nn/scale-fold.ts): ln_1 feeds qkv_proj and fc_in in parallel. */
  scaleGroups(): ScaleGroup[] {
    const out: ScaleGroup[] = [];
    for (let i = 0; i < this.config.nLayer; i++) {
      const p = `transformer.h.${i}`;
      out.push({ prev: `${p}.ln_1`, layers: [`${p}.attn.qkv_proj`, `${p}.mlp.fc_in`] });
    }
    return out;
  }

  protected cacheShape() {
    return { nLayers: this.config.nLayer, kvDim: this.config.nEmbd, maxPositions: this.config.maxPositions };
  }

  protected *embedSteps(tokens: readonly number[], batch: SeqBatch): ForwardSteps<Tensor<'f32'>> {
    return this.transformer.wte.forward(tokens, batch.scratch.f32('embed', tokens.length * this.config.nEmbd));
  }

  protected *blockSteps(i: number, x: Tensor<'f32'>, batch: SeqBatch): ForwardSteps<Tensor<'f32'>> {
    return yield* this.transformer.h.at(i).forwardSteps(x, batch, i, this.rope);
  }

  blockName(i: number): string {
    return `transformer.h.${i}`;
  }

  protected override *headInputSteps(x: Tensor<'f32'>, scratch: Scratch): ForwardSteps<Tensor<'f32'>> {
    return this.transformer.ln_f.forward(x, scratch.f32('final', x.size));
  }
}

/** Build CodeGen from HF names ('transformer.*' or bare 'h.*', 'wte.*', and 'lm_head.*'). */
export function buildCodegen(config: CodegenConfig, w: WeightReader): CodegenForCausalLM {
  const { nEmbd: D, nInner: F, nHead: nH, headDim: hd, vocabSize: V } = config;
  const linear = (name: string, out: number, inp: number, bias: boolean) => new Linear(w.matrix(`${name}.weight`, [out, inp]), bias ? w.f32(`${name}.bias`, [out]) : null);
  const ln = (name: string) => new LayerNorm(D, config.layerNormEps, w.f32(`${name}.weight`, [D]), w.f32(`${name}.bias`, [D]));
  const act = activationByName(config.activation);
  const shape: AttentionShape = { nHeads: nH, nKvHeads: nH, headDim: hd, scale: 1 / Math.sqrt(hd) };
  const blocks: CodegenBlock[] = [];
  for (let i = 0; i < config.nLayer; i++) {
    const p = `transformer.h.${i}`;
    const attn = new CodegenAttention(linear(`${p}.attn.qkv_proj`, 3 * D, D, false), linear(`${p}.attn.out_proj`, D, D, false), shape);
    const mlp = new CodegenMLP(linear(`${p}.mlp.fc_in`, F, D, true), linear(`${p}.mlp.fc_out`, D, F, true), act);
    blocks.push(new CodegenBlock(ln(`${p}.ln_1`), attn, mlp));
  }
  const wte = new Embedding(w.matrix('transformer.wte.weight', [V, D]));
  const lmHead = config.tieWordEmbeddings ? new Linear(wte.weight) : linear('lm_head', V, D, true);
  return new CodegenForCausalLM(config, new CodegenModel(wte, blocks, ln('transformer.ln_f')), lmHead);
}

export const codegenArch: ArchSpec<CodegenConfig, CodegenForCausalLM> = {
  arch: 'codegen',
  modelTypes: ['codegen'],
  hfClasses: ['CodeGenForCausalLM'],
  parseConfig: parseCodegenConfig,
  prefix: 'transformer.',
  prefixVariants: ['transformer.', ''],
  build: (c, w) => buildCodegen(c, w),
  weightSpecs: codegenWeightSpecs,
};

/** The tensors buildCodegen reads (see WeightSpec). */
export function codegenWeightSpecs(c: CodegenConfig): WeightSpec[] {
  const { nEmbd: D, nInner: F, vocabSize: V } = c;
  const out: WeightSpec[] = [{ name: 'transformer.wte.weight', shape: [V, D], kind: 'matrix' }];
  const lin = (name: string, o: number, i: number, bias: boolean) => {
    out.push({ name: `${name}.weight`, shape: [o, i], kind: 'linear' });
    if (bias) out.push({ name: `${name}.bias`, shape: [o], kind: 'f32' });
  };
  const ln = (name: string) => out.push({ name: `${name}.weight`, shape: [D], kind: 'f32' }, { name: `${name}.bias`, shape: [D], kind: 'f32' });
  for (let l = 0; l < c.nLayer; l++) {
    const p = `transformer.h.${l}`;
    ln(`${p}.ln_1`);
    lin(`${p}.attn.qkv_proj`, 3 * D, D, false);
    lin(`${p}.attn.out_proj`, D, D, false);
    lin(`${p}.mlp.fc_in`, F, D, true);
    lin(`${p}.mlp.fc_out`, D, F, true);
  }
  ln('transformer.ln_f');
  if (c.tieWordEmbeddings) out.push({ name: 'lm_head.weight', shape: [V, D], kind: 'linear', tiedTo: 'transformer.wte.weight' });
  else lin('lm_head', V, D, true);
  return out;
}
