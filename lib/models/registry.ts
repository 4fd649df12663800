/**
 * The causal-LM architectures quantkit runs: one line each in ARCHS. Each
 * architecture file exports its ArchSpec (config parsing, weight names,
 * construction); everything that turns a config.json into a model goes
 * through here, so adding an architecture is its file, its test and a line.
 */
import * as fs from 'node:fs';
import { QuantkitError, describe } from '../errors.js';
import type { CausalLM } from './causal-lm.js';
import { codegenArch } from './codegen.js';
import { type ArchSpec, type BuildModelOptions, ENCODER_MODEL_TYPES, type Json, type TensorLookup, WeightReader, badConfig } from './config.js';
import { gpt2Arch } from './gpt2.js';
import { llamaArch } from './llama.js';
import { optArch } from './opt.js';

export const ARCHS = [llamaArch, gpt2Arch, optArch, codegenArch] as const;

/** The config of any registered architecture. */
export type ModelConfig = ReturnType<(typeof ARCHS)[number]['parseConfig']>;
export type Arch = ModelConfig['arch'];

export const SUPPORTED_MODEL_TYPES: readonly string[] = ARCHS.flatMap((a) => a.modelTypes);

/** The registered ArchSpec of `arch`. */
export function archSpec(arch: string): ArchSpec<ModelConfig, CausalLM> {
  return ARCHS.find((a) => a.arch === arch)! as unknown as ArchSpec<ModelConfig, CausalLM>;
}

/** Which architecture a config.json describes (model_type, else architectures[]). */
export function detectArch(json: Json, file = 'config.json'): Arch {
  const mt = json.model_type;
  if (mt !== undefined && mt !== null) {
    const hit = typeof mt === 'string' ? ARCHS.find((a) => a.modelTypes.includes(mt)) : undefined;
    if (hit) return hit.arch;
    if (typeof mt === 'string' && ENCODER_MODEL_TYPES.includes(mt)) {
      throw new QuantkitError('ERR_UNSUPPORTED', `${file}: model_type '${mt}' is an encoder, not a causal language model: load it with loadEncoder()`);
    }
    throw badConfig(file, `unknown architecture: model_type ${typeof mt === 'string' ? `'${mt}'` : describe(mt)} (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`);
  }
  const classes = json.architectures;
  if (Array.isArray(classes)) {
    for (const c of classes) {
      const hit = typeof c === 'string' ? ARCHS.find((a) => a.hfClasses.includes(c)) : undefined;
      if (hit) return hit.arch;
    }
    throw badConfig(file, `unknown architecture: architectures ${JSON.stringify(classes)} (supported: ${ARCHS.flatMap((a) => a.hfClasses).join(', ')})`);
  }
  throw badConfig(file, "config has neither 'model_type' nor 'architectures': cannot tell the architecture");
}

/** Parse a config.json object (already read) into the config of its architecture. */
export function parseModelConfig(json: unknown, file = 'config.json'): ModelConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw badConfig(file, `must hold a JSON object, got ${describe(json)}`);
  return archSpec(detectArch(json as Json, file)).parseConfig(json as Json, file);
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

/** Build a model of `config` from HF-named tensors (`file` names the checkpoint in errors). */
export function buildModel(config: ModelConfig, tensors: TensorLookup, file: string, options: BuildModelOptions = {}): CausalLM {
  const spec = archSpec(config.arch);
  return spec.build(config, new WeightReader(tensors, file, { dtype: options.dtype, prefix: spec.prefix, prefixVariants: spec.prefixVariants }), options);
}
