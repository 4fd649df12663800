/**
 * Model configs: parse a Hugging Face config.json per architecture (llama,
 * gpt2, opt, codegen) into typed configs, and WeightReader, which finds a model's
 * tensors under the name variants checkpoints use ('model.layers.0...' or
 * 'layers.0...', 'transformer.h.0...' or 'h.0...', 'model.decoder.*' or
 * 'decoder.*') and checks their shapes.
 *
 * Errors: a bad or missing config field, or an unknown architecture, is
 * ERR_BAD_CONFIG naming the file and the field; a missing tensor is
 * ERR_NOT_FOUND naming the tensor and the file.
 */
import * as fs from 'node:fs';
import { QuantkitError, describe } from '../errors.js';
import { activationByName } from '../nn/activations.js';
import type { RopeScaling } from '../nn/rope.js';
import { toFloat32 } from '../quant/quantize.js';
import { Tensor } from '../tensor.js';
import type { ModelConfigBase } from './causal-lm.js';

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

export type ModelConfig = LlamaConfig | Gpt2Config | OptConfig | CodegenConfig;
export type Arch = ModelConfig['arch'];

type Json = Record<string, unknown>;

function badConfig(file: string, what: string): QuantkitError {
  return new QuantkitError('ERR_BAD_CONFIG', `${file}: ${what}`);
}

/** Typed field access with defaults; every problem names the file and the field. */
class Fields {
  constructor(
    readonly json: Json,
    readonly file: string,
    readonly arch: string,
  ) {}

  #get(name: string, required: boolean): unknown {
    const v = Object.prototype.hasOwnProperty.call(this.json, name) ? this.json[name] : undefined;
    if ((v === undefined || v === null) && required) throw badConfig(this.file, `${this.arch} config is missing the required field '${name}'`);
    return v ?? undefined;
  }

  int(name: string, dflt?: number): number {
    const v = this.#get(name, dflt === undefined);
    if (v === undefined) return dflt!;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw badConfig(this.file, `field '${name}' must be a positive integer, got ${describe(v)}`);
    return v;
  }

  /**
   * A strictly positive finite number. Every float field quantkit reads
   * (norm eps, rope theta, rope scaling factors) divides or takes a logarithm
   * or power somewhere, and 0, a negative value or NaN there loads fine and
   * then turns every logit into NaN.
   */
  num(name: string, dflt?: number): number {
    const v = this.#get(name, dflt === undefined);
    if (v === undefined) return dflt!;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw badConfig(this.file, `field '${name}' must be a positive finite number, got ${describe(v)}`);
    return v;
  }

  bool(name: string, dflt: boolean): boolean {
    const v = this.#get(name, false);
    if (v === undefined) return dflt;
    if (typeof v !== 'boolean') throw badConfig(this.file, `field '${name}' must be true or false, got ${describe(v)}`);
    return v;
  }

  str(name: string, dflt?: string): string {
    const v = this.#get(name, dflt === undefined);
    if (v === undefined) return dflt!;
    if (typeof v !== 'string') throw badConfig(this.file, `field '${name}' must be a string, got ${describe(v)}`);
    return v;
  }

  /** An optional token id (a number; lists, as some configs hold, take their first entry). */
  tokenId(name: string, dflt?: number): number | undefined {
    let v = this.#get(name, false);
    if (Array.isArray(v)) v = v[0];
    if (v === undefined) return dflt;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw badConfig(this.file, `field '${name}' must be a token id, got ${describe(v)}`);
    return v;
  }

  activation(name: string, dflt: string): string {
    const a = this.str(name, dflt);
    activationByName(a, `${this.file}: field '${name}'`); // ERR_UNSUPPORTED for one we do not implement
    return a;
  }
}

function divisible(file: string, a: [string, number], b: [string, number]): void {
  if (a[1] % b[1] !== 0) throw badConfig(file, `'${a[0]}' (${a[1]}) must be divisible by '${b[0]}' (${b[1]})`);
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

/** Encoder model types: not causal LMs, so loadModel points to loadEncoder. */
export const ENCODER_MODEL_TYPES: readonly string[] = ['distilbert'];

/** config.model_type -> arch, and HF class names for configs without model_type. */
const MODEL_TYPES: Readonly<Record<string, Arch>> = { llama: 'llama', gpt2: 'gpt2', opt: 'opt', codegen: 'codegen' };
const ARCHITECTURES: Readonly<Record<string, Arch>> = {
  LlamaForCausalLM: 'llama',
  GPT2LMHeadModel: 'gpt2',
  OPTForCausalLM: 'opt',
  CodeGenForCausalLM: 'codegen',
};

export const SUPPORTED_MODEL_TYPES: readonly string[] = Object.keys(MODEL_TYPES);

/** Which architecture a config.json describes (model_type, else architectures[]). */
export function detectArch(json: Json, file = 'config.json'): Arch {
  const mt = json.model_type;
  if (mt !== undefined && mt !== null) {
    if (typeof mt === 'string' && Object.prototype.hasOwnProperty.call(MODEL_TYPES, mt)) return MODEL_TYPES[mt]!;
    if (typeof mt === 'string' && ENCODER_MODEL_TYPES.includes(mt)) {
      throw new QuantkitError('ERR_UNSUPPORTED', `${file}: model_type '${mt}' is an encoder, not a causal language model: load it with loadEncoder()`);
    }
    throw badConfig(file, `unknown architecture: model_type ${typeof mt === 'string' ? `'${mt}'` : describe(mt)} (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`);
  }
  const archs = json.architectures;
  if (Array.isArray(archs)) {
    for (const a of archs) if (typeof a === 'string' && Object.prototype.hasOwnProperty.call(ARCHITECTURES, a)) return ARCHITECTURES[a]!;
    throw badConfig(file, `unknown architecture: architectures ${JSON.stringify(archs)} (supported: ${Object.keys(ARCHITECTURES).join(', ')})`);
  }
  throw badConfig(file, "config has neither 'model_type' nor 'architectures': cannot tell the architecture");
}

const PARSERS: Readonly<Record<Arch, (json: Json, file: string) => ModelConfig>> = {
  llama: parseLlamaConfig,
  gpt2: parseGpt2Config,
  opt: parseOptConfig,
  codegen: parseCodegenConfig,
};

/** Parse a config.json object (already read) into the config of its architecture. */
export function parseModelConfig(json: unknown, file = 'config.json'): ModelConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw badConfig(file, `must hold a JSON object, got ${describe(json)}`);
  return PARSERS[detectArch(json as Json, file)](json as Json, file);
}

/** Read and parse config.json: ERR_NOT_FOUND when absent, ERR_BAD_CONFIG when not JSON. */
export function readModelConfig(file: string): ModelConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new QuantkitError('ERR_NOT_FOUND', `model config not found: ${file}`, { cause: err });
    throw new QuantkitError('ERR_BAD_FILE', `${file}: cannot read model config (${(err as Error).message})`, { cause: err });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new QuantkitError('ERR_BAD_CONFIG', `${file}: not valid JSON (${(err as Error).message})`, { cause: err });
  }
  return parseModelConfig(json, file);
}

// ------------------------------------------------------------------ weights

/** Name -> tensor lookup (a safetensors checkpoint, a llama2.c file, a Map). */
export interface TensorLookup {
  has(name: string): boolean;
  get(name: string): Tensor;
}

export interface WeightReaderOptions {
  /** 'f32' widens every Linear weight to f32; 'auto' (default) keeps the file's f32/f16/bf16. */
  dtype?: 'auto' | 'f32';
  /** Canonical prefix of the model's names (e.g. 'model.decoder.') and the variants checkpoints use instead. */
  prefix?: string;
  prefixVariants?: readonly string[];
}

/** Finds, checks and converts a model's tensors; `file` names the checkpoint in errors. */
export class WeightReader {
  readonly dtype: 'auto' | 'f32';
  readonly #prefix: string;
  readonly #variants: readonly string[];

  constructor(
    readonly source: TensorLookup,
    readonly file: string,
    options: WeightReaderOptions = {},
  ) {
    this.dtype = options.dtype ?? 'auto';
    this.#prefix = options.prefix ?? '';
    this.#variants = options.prefixVariants ?? [this.#prefix];
  }

  /** Names to try for a canonical name, canonical first. */
  candidates(name: string): string[] {
    if (!this.#prefix || !name.startsWith(this.#prefix)) return [name];
    const rest = name.slice(this.#prefix.length);
    return [...new Set([name, ...this.#variants.map((p) => p + rest)])];
  }

  /** The name under which the checkpoint holds `name`, or undefined. */
  resolve(name: string): string | undefined {
    return this.candidates(name).find((n) => this.source.has(n));
  }

  has(name: string): boolean {
    return this.resolve(name) !== undefined;
  }

  /** The tensor as stored, shape-checked. */
  raw(name: string, shape: readonly number[]): Tensor {
    const found = this.resolve(name);
    if (found === undefined) {
      const tried = this.candidates(name);
      throw new QuantkitError('ERR_NOT_FOUND', `${this.file}: missing weight '${name}'${tried.length > 1 ? ` (also tried ${tried.slice(1).map((n) => `'${n}'`).join(', ')})` : ''}`);
    }
    const t = this.source.get(found);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new QuantkitError('ERR_BAD_FILE', `${this.file}: weight '${found}' has shape [${t.shape.join(', ')}], the config implies [${shape.join(', ')}]`);
    }
    if (t.dtype !== 'f32' && t.dtype !== 'f16' && t.dtype !== 'bf16') {
      throw new QuantkitError('ERR_UNSUPPORTED', `${this.file}: weight '${found}' has dtype ${t.dtype}; model weights must be F32, F16 or BF16`);
    }
    return t;
  }

  /** Widened to f32 (norms, biases, position tables: small, used by TS loops). */
  f32(name: string, shape: readonly number[]): Tensor<'f32'> {
    return toFloat32(this.raw(name, shape));
  }

  /** A Linear/Embedding weight: kept f32/f16/bf16 (the GEMM takes all three) unless dtype 'f32' is asked. */
  matrix(name: string, shape: readonly number[]): Tensor {
    const t = this.raw(name, shape);
    return this.dtype === 'f32' ? toFloat32(t) : t;
  }
}
