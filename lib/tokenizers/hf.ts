/**
 * Hugging Face tokenizers behind quantkit's Tokenizer interface, via the pure
 * JS @huggingface/tokenizers: a folder's tokenizer.json (+ tokenizer_config.json),
 * or a GPT-2 style vocab.json + merges.txt pair, for which the equivalent
 * tokenizer.json (byte-level BPE, as Hugging Face ships for gpt2) is built in
 * memory.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tokenizer as HfCore } from '@huggingface/tokenizers';
import { QuantkitError, describe } from '../errors.js';
import { validateTokenizerJson } from './hf-validate.js';
import type { EncodeOptions, StreamDecoder, Tokenizer } from './types.js';

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function readText(file: string, what: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new QuantkitError('ERR_NOT_FOUND', `${what} not found: ${file}`, { cause: err });
    throw new QuantkitError('ERR_BAD_FILE', `${file}: cannot read ${what} (${(err as Error).message})`, { cause: err });
  }
}

function readJsonObject(file: string, what: string): Json {
  let v: unknown;
  try {
    v = JSON.parse(readText(file, what));
  } catch (err) {
    if (err instanceof QuantkitError) throw err;
    throw new QuantkitError('ERR_BAD_FILE', `${file}: ${what} is not valid JSON (${(err as Error).message})`, { cause: err });
  }
  if (!isObject(v)) throw new QuantkitError('ERR_BAD_FILE', `${file}: ${what} must be a JSON object, got ${describe(v)}`);
  return v;
}

/** A special-token entry of tokenizer_config.json: a string or {content: string}. */
function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (isObject(v) && typeof v.content === 'string') return v.content;
  return undefined;
}

/**
 * The part of @huggingface/tokenizers' Tokenizer that quantkit uses and
 * exposes as HfTokenizer.core (declared here, so quantkit's published types
 * do not pull in that package's, which do not check under every module
 * resolution).
 */
export interface HfTokenizerCore {
  encode(text: string, options?: { add_special_tokens?: boolean }): { ids: number[] };
  decode(ids: number[], options?: { skip_special_tokens?: boolean; clean_up_tokenization_spaces?: boolean }): string;
  id_to_token(id: number): string | undefined;
  token_to_id(token: string): number | undefined;
  get_vocab(withAddedTokens?: boolean): Map<string, number>;
}

export class HfTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number | undefined;
  readonly eosId: number | undefined;
  /** The underlying @huggingface/tokenizers object, for anything not wrapped here. */
  readonly core: HfTokenizerCore;
  private readonly cleanUpSpaces: boolean;
  private readonly source: string;

  /**
   * `tokenizerJson` is the parsed tokenizer.json, `config` the parsed
   * tokenizer_config.json ({} if none). `source` names the origin in errors.
   */
  constructor(tokenizerJson: Json, config: Json = {}, source = '<memory>') {
    if (!isObject(tokenizerJson)) throw new QuantkitError('ERR_BAD_FILE', `${source}: tokenizer.json must hold a JSON object, got ${describe(tokenizerJson)}`);
    if (!isObject(config)) throw new QuantkitError('ERR_BAD_FILE', `${source}: tokenizer_config.json must hold a JSON object, got ${describe(config)}`);
    validateTokenizerJson(tokenizerJson, source);
    this.source = source;
    try {
      this.core = new HfCore(tokenizerJson, config) as unknown as HfTokenizerCore;
    } catch (err) {
      throw new QuantkitError('ERR_BAD_FILE', `${source}: cannot build the tokenizer (${(err as Error).message})`, { cause: err });
    }
    let max = -1;
    for (const id of this.core.get_vocab(true).values()) if (id > max) max = id;
    this.vocabSize = max + 1;
    const idOf = (v: unknown) => {
      const s = tokenContent(v);
      return s === undefined ? undefined : this.core.token_to_id(s);
    };
    this.bosId = idOf(config.bos_token);
    this.eosId = idOf(config.eos_token);
    // The library defaults to "cleaning up" spaces before punctuation, which
    // is lossy ("a ." -> "a."); only do it when the config asks explicitly.
    this.cleanUpSpaces = config.clean_up_tokenization_spaces === true;
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') throw new TypeError(`HfTokenizer.encode: 'text' must be a string, got ${describe(text)}`);
    // special tokens come only from opts, so all tokenizers behave alike
    const ids = text.length === 0 ? [] : this.#lib('encode', () => this.core.encode(text, { add_special_tokens: false }).ids);
    if (opts.bos && this.bosId !== undefined) ids.unshift(this.bosId);
    if (opts.eos && this.eosId !== undefined) ids.push(this.eosId);
    return ids;
  }

  decode(ids: readonly number[]): string {
    const kept = ids.filter((id) => id !== this.bosId && id !== this.eosId);
    for (const id of kept) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) throw new RangeError(`HfTokenizer.decode: id ${id} is outside [0, ${this.vocabSize})`);
    }
    if (kept.length === 0) return ''; // the library throws on an empty list
    return this.#lib('decode', () => this.core.decode(kept, { skip_special_tokens: false, clean_up_tokenization_spaces: this.cleanUpSpaces }));
  }

  /**
   * A call into @huggingface/tokenizers: whatever it throws on a tokenizer
   * that passed validation but still does not work is the file's fault,
   * reported as ERR_BAD_FILE naming it (not a stray Error from inside).
   */
  #lib<T>(what: string, f: () => T): T {
    try {
      return f();
    } catch (err) {
      if (err instanceof QuantkitError) throw err;
      throw new QuantkitError('ERR_BAD_FILE', `${this.source}: the tokenizer failed to ${what} (${(err as Error)?.message ?? String(err)})`, { cause: err });
    }
  }

  /**
   * Streaming by difference, as the Rust tokenizers' DecodeStream does:
   * decode a short window of ids with and without the new one and emit the
   * extra text, holding back while it ends in an incomplete character.
   */
  decodeStream(context: readonly number[] = []): StreamDecoder {
    // The window starts inside the context, so each new piece is decoded after
    // real text (a decoder that strips the first token's leading space, as
    // SentencePiece-style ones do, then keeps it) and only the difference is
    // emitted.
    const ids: number[] = context.slice(-STREAM_CONTEXT);
    let prefixOffset = 0; // start of the window
    let readOffset = ids.length; // ids before this are emitted
    const step = (final: boolean): string => {
      const prefix = this.decode(ids.slice(prefixOffset, readOffset));
      const full = this.decode(ids.slice(prefixOffset));
      if (full.length <= prefix.length || (!final && full.endsWith('\uFFFD'))) return '';
      prefixOffset = readOffset;
      readOffset = ids.length;
      return full.slice(prefix.length);
    };
    return {
      push: (id) => {
        ids.push(id);
        return step(false);
      },
      flush: () => step(true),
    };
  }

  idToToken(id: number): string | undefined {
    return this.core.id_to_token(id);
  }

  tokenToId(token: string): number | undefined {
    return this.core.token_to_id(token);
  }
}

/** Context tokens a stream decoder keeps in its window (enough for a character split over byte tokens). */
const STREAM_CONTEXT = 8;

/** Parse merges.txt: an optional "#version" line, then one "left right" pair per line. */
function parseMerges(text: string, file: string): [string, string][] {
  const merges: [string, string][] = [];
  const lines = text.split(/\r?\n/);
  lines.forEach((line, i) => {
    if (line === '' || (i === 0 && line.startsWith('#version'))) return;
    const parts = line.split(' ');
    if (parts.length !== 2 || parts[0] === '' || parts[1] === '') {
      throw new QuantkitError('ERR_BAD_FILE', `${file}: line ${i + 1} is not a "left right" merge: ${JSON.stringify(line.slice(0, 80))}`);
    }
    merges.push(parts as [string, string]);
  });
  return merges;
}

/**
 * The tokenizer.json Hugging Face ships for gpt2, built from vocab + merges:
 * ByteLevel pre-tokenizer (no prefix space, GPT-2 regex), BPE, ByteLevel decoder.
 */
export function gpt2TokenizerJson(vocab: Record<string, number>, merges: [string, string][]): Json {
  const eot = '<|endoftext|>';
  const eotId = Object.prototype.hasOwnProperty.call(vocab, eot) ? vocab[eot] : undefined;
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens:
      eotId === undefined ? [] : [{ id: eotId, content: eot, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges,
    },
  };
}

/** GPT-2 byte-level BPE from vocab.json + merges.txt. BOS = EOS = <|endoftext|> when present. */
export function loadGpt2Tokenizer(vocabFile: string, mergesFile: string): HfTokenizer {
  const vocab = readJsonObject(vocabFile, 'vocab.json');
  for (const [tok, id] of Object.entries(vocab)) {
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) {
      throw new QuantkitError('ERR_BAD_FILE', `${vocabFile}: id of token ${JSON.stringify(tok)} must be a non-negative integer, got ${describe(id)}`);
    }
  }
  const merges = parseMerges(readText(mergesFile, 'merges.txt'), mergesFile);
  const json = gpt2TokenizerJson(vocab as Record<string, number>, merges);
  const config = { bos_token: '<|endoftext|>', eos_token: '<|endoftext|>', clean_up_tokenization_spaces: false };
  return new HfTokenizer(json, config, vocabFile);
}

/**
 * The tokenizer of a Hugging Face model folder: tokenizer.json (with
 * tokenizer_config.json if present), else vocab.json + merges.txt (GPT-2).
 * Neither present: ERR_NOT_FOUND naming the tokenizer.json path.
 */
export function loadHfTokenizer(folder: string): HfTokenizer {
  const tj = path.join(folder, 'tokenizer.json');
  if (fs.existsSync(tj)) {
    const cfgPath = path.join(folder, 'tokenizer_config.json');
    const config = fs.existsSync(cfgPath) ? readJsonObject(cfgPath, 'tokenizer_config.json') : {};
    return new HfTokenizer(readJsonObject(tj, 'tokenizer.json'), config, tj);
  }
  const vocab = path.join(folder, 'vocab.json');
  const merges = path.join(folder, 'merges.txt');
  if (fs.existsSync(vocab) && fs.existsSync(merges)) return loadGpt2Tokenizer(vocab, merges);
  throw new QuantkitError('ERR_NOT_FOUND', `tokenizer not found: ${tj} (nor vocab.json + merges.txt in ${folder})`);
}
