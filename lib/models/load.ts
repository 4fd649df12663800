/**
 * loadModel(path, options): a Hugging Face model folder (config.json +
 * model.safetensors or a sharded index) or a llama2.c .bin checkpoint ->
 * { model: CausalLM, tokenizer?, source }.
 *
 * Architectures are looked up in a registry by config.model_type (or
 * config.architectures). Tokenizers: options.tokenizerPath if given, else the
 * folder's tokenizer.json / vocab.json + merges.txt, else (llama family) a
 * llama2.c tokenizer .bin next to the model (tokenizer.bin, tok<vocab>.bin).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { QuantkitError, describe, typeError } from '../errors.js';
import { interruptedSaveHint } from '../io/atomic.js';
import { type Llama2cCheckpoint, readLlama2c } from '../io/llama2c.js';
import { loadSafetensorsFolder } from '../io/safetensors.js';
import { loadGpt2Tokenizer, loadHfTokenizer } from '../tokenizers/hf.js';
import { loadLlama2cTokenizer } from '../tokenizers/llama2c.js';
import type { Tokenizer } from '../tokenizers/types.js';
import type { CausalLM } from './causal-lm.js';
import { WeightReader } from './config.js';
import { buildModel, readModelConfig } from './registry.js';
import { isQuantizedCheckpoint, loadQuantizedModel } from '../io/quantized-checkpoint.js';
import { type LlamaConfig, buildLlama } from './llama.js';

export interface LoadModelOptions {
  /** 'f32' widens f16/bf16 Linear weights to f32; 'auto' (default) keeps them as stored. */
  dtype?: 'auto' | 'f32';
  /** Map the weight files (safetensors, a quantkit checkpoint, a llama2.c .bin) instead of reading them (see ReadOptions.mmap in io/safetensors). Default false. */
  mmap?: boolean;
  /** A tokenizer file (.bin llama2.c, tokenizer.json, vocab.json) or folder; overrides discovery. */
  tokenizerPath?: string;
}

export interface LoadedModel {
  model: CausalLM;
  /** undefined when no tokenizer was found (and none was asked for). */
  tokenizer: Tokenizer | undefined;
  /** 'quantkit': a folder saved by saveQuantized (quantized layers restored as QLinear). */
  source: 'hf' | 'llama2c' | 'quantkit';
}

export { buildModel } from './registry.js';
export type { BuildModelOptions } from './config.js';

/** The Llama config a llama2.c header implies (run.c's constants: eps 1e-5, theta 10000, BOS 1, EOS 2). */
export function llama2cLlamaConfig(ck: Llama2cCheckpoint): LlamaConfig {
  const c = ck.config;
  return {
    arch: 'llama',
    hiddenSize: c.dim,
    intermediateSize: c.hiddenDim,
    numLayers: c.nLayers,
    numHeads: c.nHeads,
    numKvHeads: c.nKvHeads,
    headDim: c.headSize,
    vocabSize: c.vocabSize,
    maxPositions: c.seqLen,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    ropeScaling: null,
    hiddenAct: 'silu',
    tieWordEmbeddings: c.sharedClassifier,
    attentionBias: false,
    mlpBias: false,
    bosId: 1,
    eosId: 2,
  };
}

function checkOptions(options: unknown): LoadModelOptions {
  if (options === undefined) return {};
  if (typeof options !== 'object' || options === null) throw typeError('loadModel', 'options', `must be an object, got ${describe(options)}`);
  const o = options as LoadModelOptions;
  if (o.dtype !== undefined && o.dtype !== 'auto' && o.dtype !== 'f32') throw typeError('loadModel', 'options.dtype', `must be 'auto' or 'f32', got ${describe(o.dtype)}`);
  if (o.tokenizerPath !== undefined && typeof o.tokenizerPath !== 'string') throw typeError('loadModel', 'options.tokenizerPath', `must be a string, got ${describe(o.tokenizerPath)}`);
  if (o.mmap !== undefined && typeof o.mmap !== 'boolean') throw typeError('loadModel', 'options.mmap', `must be a boolean, got ${describe(o.mmap)}`);
  return o;
}

/** A tokenizer from an explicit path: a folder, tokenizer.json, vocab.json (+ merges.txt), or a llama2.c .bin. */
export function loadTokenizerAt(p: string, vocabSize?: number): Tokenizer {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch (err) {
    throw new QuantkitError('ERR_NOT_FOUND', `tokenizer not found: ${p}`, { cause: err });
  }
  if (st.isDirectory()) return loadHfTokenizer(p);
  const base = path.basename(p);
  if (base === 'tokenizer.json' || base === 'tokenizer_config.json') return loadHfTokenizer(path.dirname(p));
  if (base.endsWith('.json')) return loadGpt2Tokenizer(p, path.join(path.dirname(p), 'merges.txt'));
  return loadLlama2cTokenizer(p, vocabSize);
}

/** llama2.c tokenizer files next to a model: tokenizer.bin, or tok<vocab>.bin as llama2.c names them. */
function findLlama2cTokenizer(dir: string, vocabSize: number): Tokenizer | undefined {
  for (const name of ['tokenizer.bin', `tok${vocabSize}.bin`]) {
    const f = path.join(dir, name);
    if (fs.existsSync(f)) return loadLlama2cTokenizer(f, vocabSize);
  }
  return undefined;
}

function hasHfTokenizer(dir: string): boolean {
  return fs.existsSync(path.join(dir, 'tokenizer.json')) || (fs.existsSync(path.join(dir, 'vocab.json')) && fs.existsSync(path.join(dir, 'merges.txt')));
}

/** Synchronous loadModel. */
export function loadModelSync(modelPath: string, options?: LoadModelOptions): LoadedModel {
  if (typeof modelPath !== 'string' || modelPath === '') throw typeError('loadModel', 'path', `must be a non-empty string, got ${describe(modelPath)}`);
  const opts = checkOptions(options);
  let st: fs.Stats;
  try {
    st = fs.statSync(modelPath);
  } catch (err) {
    throw new QuantkitError('ERR_NOT_FOUND', `model not found: ${modelPath}${interruptedSaveHint(modelPath)}`, { cause: err });
  }

  // a .safetensors file or the config.json stands for its folder
  const folder = st.isDirectory() ? modelPath : modelPath.endsWith('.safetensors') || path.basename(modelPath) === 'config.json' ? path.dirname(modelPath) : null;
  if (folder !== null) {
    const config = readModelConfig(path.join(folder, 'config.json'));
    let model: CausalLM;
    let source: LoadedModel['source'] = 'hf';
    if (isQuantizedCheckpoint(folder)) {
      // A quantkit checkpoint: module tensors are stored in quantkit's
      // [out, in] layout; the quantized layers come back packed, as saved.
      model = loadQuantizedModel(folder, (_json, lookup, file) => buildModel(config, lookup, file, { dtype: opts.dtype, layout: 'linear' }), { mmap: opts.mmap === true }).model;
      source = 'quantkit';
    } else {
      const tensors = loadSafetensorsFolder(folder, { mmap: opts.mmap === true });
      const file = tensors.files.length === 1 ? tensors.files[0]!.file : folder;
      model = buildModel(config, tensors, file, { dtype: opts.dtype });
    }
    let tokenizer: Tokenizer | undefined;
    if (opts.tokenizerPath !== undefined) tokenizer = loadTokenizerAt(opts.tokenizerPath, config.vocabSize);
    else if (hasHfTokenizer(folder)) tokenizer = loadHfTokenizer(folder);
    else if (config.arch === 'llama') tokenizer = findLlama2cTokenizer(folder, config.vocabSize);
    return { model, tokenizer, source };
  }

  // anything else is taken for a llama2.c checkpoint (its reader checks the header and size)
  const ck = readLlama2c(modelPath, { mmap: opts.mmap === true });
  const config = llama2cLlamaConfig(ck);
  const w = new WeightReader(ck, ck.file, { dtype: opts.dtype, prefix: 'model.', prefixVariants: ['model.'] });
  const model = buildLlama(config, w, { llama2cRoPE: true });
  const tokenizer = opts.tokenizerPath !== undefined ? loadTokenizerAt(opts.tokenizerPath, config.vocabSize) : findLlama2cTokenizer(path.dirname(modelPath), config.vocabSize);
  return { model, tokenizer, source: 'llama2c' };
}

/**
 * Load a model: an HF folder (or its model.safetensors), a quantkit
 * checkpoint folder (see lib/io/quantized-checkpoint.ts) or a llama2.c .bin.
 * Errors: ERR_NOT_FOUND (path, config.json, weights, a tensor), ERR_BAD_CONFIG
 * (a config field, an unknown architecture), ERR_BAD_FILE (corrupt files).
 */
export async function loadModel(modelPath: string, options?: LoadModelOptions): Promise<LoadedModel> {
  return loadModelSync(modelPath, options);
}
