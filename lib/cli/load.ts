/**
 * What every CLI command starts with: resolve <model> (a Hugging Face folder,
 * a quantkit checkpoint folder, or a llama2.c .bin with --tokenizer) into a
 * model, its tokenizer, the config.json to carry into a quantized checkpoint,
 * and the tokenizer files to copy; and turn a text file into token ids.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { QuantkitError } from '../errors.js';
import { interruptedSaveHint } from '../io/atomic.js';
import { withReadProgress } from '../io/read-progress.js';
import { type CliIO, type Progress, progressBar } from './io.js';
import { isQuantizedCheckpoint, loadQuantizedModel } from '../io/quantized-checkpoint.js';
import type { CausalLM } from '../models/causal-lm.js';
import type { LlamaConfig } from '../models/llama.js';
import { readModelConfig } from '../models/registry.js';
import { buildModel, loadModelSync, loadTokenizerAt } from '../models/load.js';
import { loadHfTokenizer } from '../tokenizers/hf.js';
import { loadLlama2cTokenizer } from '../tokenizers/llama2c.js';
import type { Tokenizer } from '../tokenizers/types.js';

export interface CliModel {
  model: CausalLM;
  tokenizer: Tokenizer | undefined;
  source: 'hf' | 'llama2c' | 'quantkit';
  /** config.json as an object (synthesised for a llama2.c .bin). */
  sourceConfig: Record<string, unknown>;
  /** Tokenizer files to copy into a quantized checkpoint. */
  tokenizerFiles: string[];
}

const HF_TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'vocab.json', 'merges.txt', 'tokenizer.model', 'tokenizer.bin'];

/** The HF config.json of a Llama built from a llama2.c header. */
export function llamaConfigToHf(c: LlamaConfig): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    head_dim: c.headDim,
    vocab_size: c.vocabSize,
    max_position_embeddings: c.maxPositions,
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.ropeTheta,
    hidden_act: c.hiddenAct,
    tie_word_embeddings: c.tieWordEmbeddings,
    bos_token_id: c.bosId,
    eos_token_id: c.eosId,
    attention_bias: c.attentionBias,
    mlp_bias: c.mlpBias,
    torch_dtype: 'float32',
  };
}

function tokenizerFilesIn(dir: string, vocabSize: number): string[] {
  return [...HF_TOKENIZER_FILES, `tok${vocabSize}.bin`].map((f) => path.join(dir, f)).filter((f) => fs.existsSync(f));
}

/** Tokenizer discovery for a quantkit checkpoint folder (same rules as loadModel's). */
function folderTokenizer(folder: string, vocabSize: number, tokenizerPath: string | undefined): Tokenizer | undefined {
  if (tokenizerPath !== undefined) return loadTokenizerAt(tokenizerPath, vocabSize);
  if (fs.existsSync(path.join(folder, 'tokenizer.json')) || fs.existsSync(path.join(folder, 'vocab.json'))) return loadHfTokenizer(folder);
  for (const f of ['tokenizer.bin', `tok${vocabSize}.bin`]) {
    if (fs.existsSync(path.join(folder, f))) return loadLlama2cTokenizer(path.join(folder, f), vocabSize);
  }
  return undefined;
}

/**
 * The tokenizer loadCliModel would find for <model> (with --tokenizer, or in
 * the model's folder / next to its file), without loading the weights: for
 * `serve`, whose model loads in a worker thread.
 */
export function cliTokenizer(modelPath: string, tokenizerPath: string | undefined, vocabSize: number): Tokenizer | undefined {
  const dir = fs.statSync(modelPath).isDirectory() ? modelPath : path.dirname(modelPath);
  return folderTokenizer(dir, vocabSize, tokenizerPath);
}

/** Load <model> for the CLI, with a progress bar of the bytes read on a terminal. */
/** `mmap`: map the weight files instead of reading them (quantkit serve, inspect). */
export function loadCliModel(modelPath: string, tokenizerPath?: string, io?: CliIO, options: { mmap?: boolean } = {}): CliModel {
  const mmap = options.mmap === true;
  if (io === undefined) return loadCliModelQuiet(modelPath, tokenizerPath, mmap);
  let bar: Progress | undefined;
  try {
    return withReadProgress(
      (done, total, file) => {
        bar ??= progressBar(io, 'load', total);
        bar.update(done, total, path.basename(file));
      },
      () => loadCliModelQuiet(modelPath, tokenizerPath, mmap),
    );
  } finally {
    bar?.stop();
  }
}

function loadCliModelQuiet(modelPath: string, tokenizerPath: string | undefined, mmap: boolean): CliModel {
  if (!fs.existsSync(modelPath)) throw new QuantkitError('ERR_NOT_FOUND', `model not found: ${modelPath}${interruptedSaveHint(modelPath)}`);
  if (tokenizerPath !== undefined && !fs.existsSync(tokenizerPath)) throw new QuantkitError('ERR_NOT_FOUND', `tokenizer not found: ${tokenizerPath}`);
  const isDir = fs.statSync(modelPath).isDirectory();
  if (isDir && isQuantizedCheckpoint(modelPath)) {
    // Module tensors of a quantkit checkpoint are in [out, in] layout ('linear').
    const config = readModelConfig(path.join(modelPath, 'config.json'));
    const { model, weights: q } = loadQuantizedModel(modelPath, (_json, lookup, file) => buildModel(config, lookup, file, { layout: 'linear' }), { mmap });
    return {
      model,
      tokenizer: folderTokenizer(modelPath, config.vocabSize, tokenizerPath),
      source: 'quantkit',
      sourceConfig: q.config,
      tokenizerFiles: tokenizerPath ? [tokenizerPath] : tokenizerFilesIn(modelPath, config.vocabSize),
    };
  }
  const loaded = loadModelSync(modelPath, { tokenizerPath, mmap });
  const V = loaded.model.config.vocabSize;
  if (loaded.source === 'hf') {
    const folder = isDir ? modelPath : path.dirname(modelPath);
    const sourceConfig = JSON.parse(fs.readFileSync(path.join(folder, 'config.json'), 'utf8')) as Record<string, unknown>;
    return { ...loaded, sourceConfig, tokenizerFiles: tokenizerPath ? [tokenizerPath] : tokenizerFilesIn(folder, V) };
  }
  const dir = path.dirname(modelPath);
  const tokFiles = tokenizerPath ? [tokenizerPath] : ['tokenizer.bin', `tok${V}.bin`].map((f) => path.join(dir, f)).filter((f) => fs.existsSync(f)).slice(0, 1);
  return { ...loaded, sourceConfig: llamaConfigToHf(loaded.model.config as LlamaConfig), tokenizerFiles: tokFiles };
}

export function requireTokenizer(m: CliModel, modelPath: string): Tokenizer {
  if (m.tokenizer === undefined) {
    throw new QuantkitError('ERR_NOT_FOUND', `no tokenizer found for ${modelPath}; pass --tokenizer <file>`);
  }
  return m.tokenizer;
}

/**
 * Token ids of a text: each blank-line separated paragraph (a story, a
 * document) encoded with BOS, concatenated, cut at `maxTokens`.
 */
export function tokenizeText(tokenizer: Tokenizer, text: string, maxTokens = Infinity): number[] {
  const out: number[] = [];
  for (const para of text.split(/\r?\n\s*\r?\n/)) {
    const p = para.trim();
    if (p === '') continue;
    out.push(...tokenizer.encode(p, { bos: true }));
    if (out.length >= maxTokens) break;
  }
  return out.slice(0, maxTokens);
}

export function readTextFile(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new QuantkitError('ERR_NOT_FOUND', `text file not found: ${file}`, { cause: err });
    throw new QuantkitError('ERR_BAD_FILE', `${file}: cannot read (${(err as Error).message})`, { cause: err });
  }
}

/** Default perplexity window: 256 tokens, or the model's whole context if shorter. */
export const DEFAULT_CONTEXT = 256;

/** --context: the default fits the model; an explicit value beyond the model's context is an error, not a silent clamp. */
export function contextLength(flag: number | undefined, maxPositions: number): number {
  if (flag === undefined) return Math.min(DEFAULT_CONTEXT, maxPositions);
  if (flag > maxPositions) throw new RangeError(`--context ${flag} exceeds the model's context of ${maxPositions} tokens`);
  return flag;
}
