/**
 * loadEncoder: a Hugging Face encoder folder (DistilBERT: config.json,
 * safetensors, tokenizer.json) as what it holds: the bare encoder
 * (kind 'encoder', last hidden states) or, when the checkpoint has the head,
 * the masked-LM model (kind 'masked-lm'). encode() adds the model's [CLS] and
 * [SEP] around a text's ids, as BERT-family models were trained.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { QuantkitError, describe, typeError } from '../errors.js';
import { isQuantizedCheckpoint, loadQuantizedModel } from '../io/quantized-checkpoint.js';
import { loadSafetensorsFolder } from '../io/safetensors.js';
import { loadHfTokenizer } from '../tokenizers/hf.js';
import { loadWordPieceTokenizer } from '../tokenizers/wordpiece.js';
import type { Tokenizer } from '../tokenizers/types.js';
import { type TensorLookup, WeightReader } from './config.js';
import { type DistilBertConfig, DistilBertForMaskedLM, DistilBertModel, buildDistilBert, hasMaskedLMHead, parseDistilBertConfig } from './distilbert.js';

export interface LoadEncoderOptions {
  /** 'f32' widens f16/bf16 Linear weights to f32; 'auto' (default) keeps them as stored. */
  dtype?: 'auto' | 'f32';
  /** Map the weight files instead of reading them (see ReadOptions.mmap in io/safetensors). Default false. */
  mmap?: boolean;
}

export type LoadedEncoder = {
  config: DistilBertConfig;
  /** 'quantkit': a folder saved by saveQuantized (quantized layers restored as QLinear). */
  source: 'hf' | 'quantkit';
  /** undefined when the folder has no tokenizer.json (nor vocab.json + merges.txt). */
  tokenizer: Tokenizer | undefined;
  /** A text's ids with [CLS] ... [SEP] around them (needs the tokenizer). */
  encode(text: string): number[];
} & ({ kind: 'encoder'; model: DistilBertModel } | { kind: 'masked-lm'; model: DistilBertForMaskedLM });

/** tokenizer.json, else vocab.txt (WordPiece, with tokenizer_config.json's do_lower_case), else none. */
function encoderTokenizer(folder: string): Tokenizer | undefined {
  if (fs.existsSync(path.join(folder, 'tokenizer.json'))) return loadHfTokenizer(folder);
  const vocab = path.join(folder, 'vocab.txt');
  if (!fs.existsSync(vocab)) return undefined;
  const cfgFile = path.join(folder, 'tokenizer_config.json');
  let config: Record<string, unknown> = {};
  if (fs.existsSync(cfgFile)) {
    try {
      config = JSON.parse(fs.readFileSync(cfgFile, 'utf8')) as Record<string, unknown>;
    } catch (err) {
      throw new QuantkitError('ERR_BAD_FILE', `${cfgFile}: not valid JSON (${(err as Error).message})`, { cause: err });
    }
  }
  return loadWordPieceTokenizer(vocab, config);
}

export function loadEncoderSync(folder: string, options: LoadEncoderOptions = {}): LoadedEncoder {
  const fn = 'loadEncoder';
  if (typeof folder !== 'string' || folder === '') throw typeError(fn, 'folder', `must be a non-empty string, got ${describe(folder)}`);
  if (options === null || typeof options !== 'object') throw typeError(fn, 'options', `must be an object, got ${describe(options)}`);
  if (options.dtype !== undefined && options.dtype !== 'auto' && options.dtype !== 'f32') throw typeError(fn, 'options.dtype', `must be 'auto' or 'f32', got ${describe(options.dtype)}`);
  if (options.mmap !== undefined && typeof options.mmap !== 'boolean') throw typeError(fn, 'options.mmap', `must be a boolean, got ${describe(options.mmap)}`);
  const mmap = options.mmap === true;
  const cfgFile = path.join(folder, 'config.json');
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(cfgFile, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new QuantkitError('ERR_NOT_FOUND', `model config not found: ${cfgFile}`, { cause: err });
    throw new QuantkitError('ERR_BAD_CONFIG', `${cfgFile}: not valid JSON (${(err as Error).message})`, { cause: err });
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new QuantkitError('ERR_BAD_CONFIG', `${cfgFile}: must hold a JSON object, got ${describe(json)}`);
  const mt = (json as Record<string, unknown>).model_type;
  if (mt !== 'distilbert') {
    throw new QuantkitError('ERR_UNSUPPORTED', `${cfgFile}: model_type ${describe(mt)} is not an encoder quantkit runs (supported: distilbert; causal LMs load with loadModel)`);
  }
  const config = parseDistilBertConfig(json as Record<string, unknown>, cfgFile);
  // DistilBertForMaskedLM names its encoder 'distilbert.*'; a bare DistilBertModel checkpoint has no prefix
  const reader = (lookup: TensorLookup, file: string) => new WeightReader(lookup, file, { dtype: options.dtype, prefix: 'distilbert.', prefixVariants: ['distilbert.', ''] });
  let maskedLM = false;
  let model: DistilBertModel | DistilBertForMaskedLM;
  let source: 'hf' | 'quantkit' = 'hf';
  if (isQuantizedCheckpoint(folder)) {
    // a quantkit checkpoint: the quantized layers come back packed, as saved
    model = loadQuantizedModel(folder, (_json, lookup, file) => {
      const w = reader(lookup, file);
      maskedLM = hasMaskedLMHead(w);
      return buildDistilBert(config, w, maskedLM);
    }, { mmap }).model;
    source = 'quantkit';
  } else {
    const tensors = loadSafetensorsFolder(folder, { mmap });
    const w = reader(tensors, tensors.files.length === 1 ? tensors.files[0]!.file : folder);
    maskedLM = hasMaskedLMHead(w);
    model = buildDistilBert(config, w, maskedLM);
  }
  const tokenizer = encoderTokenizer(folder);
  const encode = (text: string): number[] => {
    if (!tokenizer) throw new QuantkitError('ERR_NOT_FOUND', `${folder}: no tokenizer.json or vocab.txt, so text cannot be encoded; pass token ids to forward()`);
    const special = (t: string) => (tokenizer as { tokenToId?: (s: string) => number | undefined }).tokenToId?.(t);
    const cls = special('[CLS]');
    const sep = special('[SEP]');
    return [...(cls !== undefined ? [cls] : []), ...tokenizer.encode(text), ...(sep !== undefined ? [sep] : [])];
  };
  return maskedLM
    ? { kind: 'masked-lm', model: model as DistilBertForMaskedLM, config, tokenizer, encode, source }
    : { kind: 'encoder', model: model as DistilBertModel, config, tokenizer, encode, source };
}

/** Async form of loadEncoderSync (the file reads and parsing are the same). */
export async function loadEncoder(folder: string, options?: LoadEncoderOptions): Promise<LoadedEncoder> {
  return loadEncoderSync(folder, options);
}
