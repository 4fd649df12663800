/**
 * Bounded checks of a tokenizer.json before @huggingface/tokenizers sees it.
 * The library trusts its input: a single token id of 1e9 (one flipped value
 * in a 1 MB file) makes it walk a billion-slot vocabulary (the load never
 * ends), and malformed merges or added tokens surface as errors from deep
 * inside it, or as none. Every check here is one pass over the JSON already
 * parsed, and every failure is ERR_BAD_FILE naming the file and the entry.
 */
import { QuantkitError, describe } from '../errors.js';

type Json = Record<string, unknown>;

/** More entries than any released tokenizer has (the largest are ~1M), so a count beyond it is corruption. */
export const MAX_VOCAB_ENTRIES = 1 << 22;
/** Longest token string accepted (real ones are under a few hundred characters; CodeGen's whitespace runs are 31). */
export const MAX_TOKEN_CHARS = 4096;

function bad(file: string, what: string): QuantkitError {
  return new QuantkitError('ERR_BAD_FILE', `${file}: bad tokenizer: ${what}`);
}

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

function checkToken(file: string, where: string, s: unknown): void {
  if (typeof s !== 'string') throw bad(file, `${where} must be a string, got ${describe(s)}`);
  if (s.length > MAX_TOKEN_CHARS) throw bad(file, `${where} is ${s.length} characters long (at most ${MAX_TOKEN_CHARS})`);
}

function checkId(file: string, where: string, id: unknown): number {
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) throw bad(file, `${where} must be a non-negative integer id, got ${describe(id)}`);
  return id;
}

/**
 * Validate `json` (a parsed tokenizer.json); returns the largest token id.
 * Ids may leave gaps, but not so many that the id space dwarfs the
 * vocabulary: max id < 2 * entries + 1024.
 */
export function validateTokenizerJson(json: Json, file: string): number {
  const model = json.model;
  if (!isObject(model)) throw bad(file, `'model' must be an object, got ${describe(model)}`);
  if (model.type !== undefined && typeof model.type !== 'string') throw bad(file, `'model.type' must be a string, got ${describe(model.type)}`);
  let entries = 0;
  let maxId = -1;
  const vocab = model.vocab;
  if (Array.isArray(vocab)) {
    // Unigram: [[piece, score], ...], the id is the index
    if (vocab.length > MAX_VOCAB_ENTRIES) throw bad(file, `'model.vocab' has ${vocab.length} entries (at most ${MAX_VOCAB_ENTRIES})`);
    vocab.forEach((e, i) => {
      if (!Array.isArray(e) || e.length !== 2) throw bad(file, `model.vocab[${i}] must be [piece, score], got ${describe(e)}`);
      checkToken(file, `model.vocab[${i}][0]`, e[0]);
      if (typeof e[1] !== 'number' || !Number.isFinite(e[1])) throw bad(file, `model.vocab[${i}][1] (the score) must be a finite number, got ${describe(e[1])}`);
    });
    entries = vocab.length;
    maxId = vocab.length - 1;
  } else if (isObject(vocab)) {
    const keys = Object.keys(vocab);
    if (keys.length > MAX_VOCAB_ENTRIES) throw bad(file, `'model.vocab' has ${keys.length} entries (at most ${MAX_VOCAB_ENTRIES})`);
    for (const k of keys) {
      checkToken(file, `a model.vocab token`, k);
      maxId = Math.max(maxId, checkId(file, `model.vocab[${JSON.stringify(k.slice(0, 40))}]`, vocab[k]));
    }
    entries = keys.length;
  } else if (vocab !== undefined) {
    throw bad(file, `'model.vocab' must be an object or an array, got ${describe(vocab)}`);
  }
  const merges = model.merges;
  if (merges !== undefined && merges !== null) {
    if (!Array.isArray(merges)) throw bad(file, `'model.merges' must be an array, got ${describe(merges)}`);
    if (merges.length > MAX_VOCAB_ENTRIES) throw bad(file, `'model.merges' has ${merges.length} entries (at most ${MAX_VOCAB_ENTRIES})`);
    merges.forEach((m, i) => {
      if (typeof m === 'string') {
        const parts = m.split(' ');
        if (parts.length !== 2 || parts[0] === '' || parts[1] === '') throw bad(file, `model.merges[${i}] must be "left right", got ${JSON.stringify(m.slice(0, 80))}`);
        checkToken(file, `model.merges[${i}]`, m);
      } else if (Array.isArray(m) && m.length === 2) {
        checkToken(file, `model.merges[${i}][0]`, m[0]);
        checkToken(file, `model.merges[${i}][1]`, m[1]);
        if (m[0] === '' || m[1] === '') throw bad(file, `model.merges[${i}] has an empty side`);
      } else {
        throw bad(file, `model.merges[${i}] must be "left right" or [left, right], got ${describe(m)}`);
      }
    });
  }
  const added = json.added_tokens;
  if (added !== undefined && added !== null) {
    if (!Array.isArray(added)) throw bad(file, `'added_tokens' must be an array, got ${describe(added)}`);
    if (added.length > MAX_VOCAB_ENTRIES) throw bad(file, `'added_tokens' has ${added.length} entries (at most ${MAX_VOCAB_ENTRIES})`);
    added.forEach((t, i) => {
      if (!isObject(t)) throw bad(file, `added_tokens[${i}] must be an object, got ${describe(t)}`);
      maxId = Math.max(maxId, checkId(file, `added_tokens[${i}].id`, t.id));
      checkToken(file, `added_tokens[${i}].content`, t.content);
      if (t.content === '') throw bad(file, `added_tokens[${i}].content is empty`);
    });
    entries += added.length;
  }
  if (maxId >= 2 * entries + 1024) {
    throw bad(file, `token id ${maxId} is far beyond the ${entries} tokens defined (ids must stay below ${2 * entries + 1024})`);
  }
  return maxId;
}
