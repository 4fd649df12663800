/**
 * What every architecture file uses to read its config and weights: Fields
 * (typed config.json fields with defaults, every problem naming the file and
 * the field), the ArchSpec an architecture registers (lib/models/registry.ts),
 * and WeightReader, which finds a model's tensors under the name variants
 * checkpoints use ('model.layers.0...' or 'layers.0...', 'transformer.h.0...'
 * or 'h.0...', 'model.decoder.*' or 'decoder.*') and checks their shapes.
 * Each architecture's config type and parser live in its own file.
 *
 * Errors: a bad or missing config field is ERR_BAD_CONFIG naming the file and
 * the field; a missing tensor is ERR_NOT_FOUND naming the tensor and the file.
 */
import { QuantkitError, describe } from '../errors.js';
import { activationByName } from '../nn/activations.js';
import { toFloat32 } from '../quant/quantize.js';
import { Tensor } from '../tensor.js';
import type { ModelConfigBase } from './causal-lm.js';

export type Json = Record<string, unknown>;

export function badConfig(file: string, what: string): QuantkitError {
  return new QuantkitError('ERR_BAD_CONFIG', `${file}: ${what}`);
}

/** Typed field access with defaults; every problem names the file and the field. */
export class Fields {
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

export function divisible(file: string, a: [string, number], b: [string, number]): void {
  if (a[1] % b[1] !== 0) throw badConfig(file, `'${a[0]}' (${a[1]}) must be divisible by '${b[0]}' (${b[1]})`);
}

/** Encoder model types: not causal LMs, so loadModel points to loadEncoder. */
export const ENCODER_MODEL_TYPES: readonly string[] = ['distilbert'];

// ------------------------------------------------------------------ architectures

export interface BuildModelOptions {
  /** 'f32' widens f16/bf16 Linear weights to f32; 'auto' (default) keeps them as stored. */
  dtype?: 'auto' | 'f32';
  /**
   * 'hf' (default): weights as Hugging Face stores them. 'linear': every
   * Linear weight already in quantkit's [out, in] layout, as a quantkit
   * checkpoint stores module tensors (matters for GPT-2's Conv1D only).
   */
  layout?: 'hf' | 'linear';
}

/**
 * What an architecture file registers (lib/models/registry.ts lists them):
 * the config.json it reads, how its checkpoints name their weights, and how
 * it is built.
 */
export interface ArchSpec<C extends ModelConfigBase = ModelConfigBase, M = unknown> {
  readonly arch: C['arch'];
  /** config.json model_type values, and HF class names for configs without one. */
  readonly modelTypes: readonly string[];
  readonly hfClasses: readonly string[];
  parseConfig(json: Json, file: string): C;
  /** Canonical prefix of the weight names and the variants checkpoints use instead. */
  readonly prefix: string;
  readonly prefixVariants: readonly string[];
  build(config: C, w: WeightReader, options: BuildModelOptions): M;
  /** Every tensor build() reads, with its shape and how it is stored (for footprints without the weights). */
  weightSpecs(config: C): WeightSpec[];
}

/**
 * A tensor a model holds, with the shape quantkit holds it in (GPT-2's
 * Conv1D weights as [out, in]): 'linear' a Linear weight
 * (file dtype; quantizeModel may replace it), 'matrix' an embedding table
 * (file dtype), 'f32' norms, biases and position tables (always widened to
 * f32). A tied lm_head names the tensor it shares.
 */
export interface WeightSpec {
  name: string;
  shape: readonly number[];
  kind: 'linear' | 'matrix' | 'f32';
  tiedTo?: string;
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
