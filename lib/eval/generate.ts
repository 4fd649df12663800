/**
 * Text generation over a CausalLM's KV cache: the prompt is prefilled in one
 * forward, then one token per step. Streaming: generate() is an async
 * iterator of { token, text }. Every forward (prefill and decode) is
 * model.forwardAsync, whose GEMMs run on worker threads, so a server or a
 * progress display stays responsive even during a long prefill; the logits
 * are bit-identical to forward(), so outputs do not change.
 *
 * Stopping: at EOS (yielded as the last item, text = whatever text was still
 * held back), at a stop string (the text before it is yielded, the stop
 * string itself never is), after maxNewTokens, or when the context is full.
 * Text that might be the start of a stop string is held back until it is
 * known not to be, so a consumer never prints a stop string it then has to
 * take back.
 */
import { describe, rangeError, typeError } from '../errors.js';
import type { CausalLM } from '../models/causal-lm.js';
import type { Tokenizer } from '../tokenizers/types.js';
import { mulberry32, sampleToken } from './sampling.js';

export interface GenerateOptions {
  /** Default 50. */
  maxNewTokens?: number;
  /** 0 = greedy (default). */
  temperature?: number;
  /** 0 = off (default). */
  topK?: number;
  /** 1 = off (default). */
  topP?: number;
  /** PRNG seed for sampling (default 0: runs are reproducible unless asked otherwise). */
  seed?: number;
  /** Stop strings. */
  stop?: readonly string[];
  /** Prepend BOS to a non-empty prompt (default: true for a string prompt, false for token ids). An empty prompt always starts from BOS. */
  bos?: boolean;
}

export interface GeneratedToken {
  token: number;
  /** Text this token made printable (may be ''; see the header for held-back text). */
  text: string;
}

export type FinishReason = 'eos' | 'stop' | 'length';

function checkNumber(name: string, v: unknown, lo: number, hi: number, integer: boolean): void {
  if (typeof v !== 'number') throw typeError('generate', `options.${name}`, `must be a number, got ${describe(v)}`);
  if (!(v >= lo && v <= hi) || (integer && !Number.isInteger(v))) {
    throw rangeError('generate', `options.${name}`, `must be ${integer ? 'an integer' : 'a number'} in [${lo}, ${hi}], got ${v}`);
  }
}

/** Longest suffix of `s` that is a proper prefix of some stop string. */
export function heldBackLength(s: string, stops: readonly string[]): number {
  let best = 0;
  for (const stop of stops) {
    for (let n = Math.min(stop.length - 1, s.length); n > best; n--) {
      if (s.endsWith(stop.slice(0, n))) {
        best = n;
        break;
      }
    }
  }
  return best;
}

/** The prompt's token ids, with BOS as the options and tokenizer say. */
export function promptIds(model: { readonly config: { readonly bosId?: number | undefined } }, tokenizer: Tokenizer, prompt: string | readonly number[], bos = true): number[] {
  const bosId = model.config.bosId ?? tokenizer.bosId;
  const ids = typeof prompt === 'string' ? (prompt === '' ? [] : tokenizer.encode(prompt)) : [...prompt];
  if ((ids.length === 0 || bos) && bosId !== undefined) ids.unshift(bosId);
  if (ids.length === 0) throw rangeError('generate', 'prompt', 'is empty and neither the model nor the tokenizer has a BOS token to start from');
  return ids;
}

export async function* generate(
  model: CausalLM,
  tokenizer: Tokenizer,
  prompt: string | readonly number[],
  options: GenerateOptions = {},
): AsyncGenerator<GeneratedToken, FinishReason, undefined> {
  if (typeof prompt !== 'string' && !Array.isArray(prompt)) throw typeError('generate', 'prompt', `must be a string or an array of token ids, got ${describe(prompt)}`);
  if (options === null || typeof options !== 'object') throw typeError('generate', 'options', `must be an object, got ${describe(options)}`);
  const maxNewTokens = options.maxNewTokens ?? 50;
  const temperature = options.temperature ?? 0;
  const topK = options.topK ?? 0;
  const topP = options.topP ?? 1;
  const seed = options.seed ?? 0;
  checkNumber('maxNewTokens', maxNewTokens, 0, Number.MAX_SAFE_INTEGER, true);
  checkNumber('temperature', temperature, 0, Number.MAX_VALUE, false);
  checkNumber('topK', topK, 0, Number.MAX_SAFE_INTEGER, true);
  checkNumber('topP', topP, Number.MIN_VALUE, 1, false);
  checkNumber('seed', seed, 0, 2 ** 32 - 1, true);
  const stops = options.stop ?? [];
  if (!Array.isArray(stops) || stops.some((s) => typeof s !== 'string' || s === '')) {
    throw typeError('generate', 'options.stop', 'must be an array of non-empty strings');
  }

  // token-id prompts are taken as given (they may already start with BOS)
  const ids = promptIds(model, tokenizer, prompt, options.bos ?? typeof prompt === 'string');
  const { vocabSize, maxPositions } = model.config;
  if (ids.length > maxPositions) throw rangeError('generate', 'prompt', `is ${ids.length} tokens; the model's context is ${maxPositions}`);
  const eosId = model.config.eosId ?? tokenizer.eosId;
  const capacity = Math.min(maxPositions, ids.length + maxNewTokens);
  const sampling = { temperature, topK, topP };
  const rand = mulberry32(seed);
  // primed with the prompt: the first generated word keeps its leading space
  const decoder = tokenizer.decodeStream(ids);
  if (maxNewTokens === 0) return 'length';

  const cache = model.createCache(capacity);
  // the prompt's logits are only sampled at its last token
  let logits = await model.forwardAsync(ids, cache, { logits: 'last' });
  let row = logits.shape[0]! - 1;
  let pending = ''; // decoded text not yet yielded (may start a stop string)
  let decodeOut: Float32Array | undefined;
  for (let step = 0; ; step++) {
    const token = sampleToken(logits.data, row * vocabSize, vocabSize, sampling, rand);
    if (token === eosId) {
      yield { token, text: pending + decoder.flush() };
      return 'eos';
    }
    const last = step + 1 >= maxNewTokens || cache.length >= capacity;
    pending += decoder.push(token);
    if (last) pending += decoder.flush();
    let hit = -1;
    for (const s of stops) {
      const i = pending.indexOf(s);
      if (i >= 0 && (hit < 0 || i < hit)) hit = i;
    }
    if (hit >= 0) {
      yield { token, text: pending.slice(0, hit) };
      return 'stop';
    }
    const hold = last ? 0 : heldBackLength(pending, stops);
    yield { token, text: pending.slice(0, pending.length - hold) };
    pending = pending.slice(pending.length - hold);
    if (last) return 'length';
    // a turn for timers/IO between tokens even for a model whose forwardAsync
    // has no async steps (a CausalLM that only implements forward())
    await new Promise(setImmediate);
    // one logits buffer for every decode step: no array allocated per token
    decodeOut ??= new Float32Array(vocabSize);
    logits = await model.forwardAsync([token], cache, { out: decodeOut });
    row = 0;
  }
}

/** Generate and return the whole text (prompt excluded) and why it stopped. */
export async function generateText(
  model: CausalLM,
  tokenizer: Tokenizer,
  prompt: string | readonly number[],
  options?: GenerateOptions,
): Promise<{ text: string; tokens: number[]; finishReason: FinishReason }> {
  const it = generate(model, tokenizer, prompt, options);
  let text = '';
  const tokens: number[] = [];
  for (;;) {
    const r = await it.next();
    if (r.done) return { text, tokens, finishReason: r.value };
    text += r.value.text;
    tokens.push(r.value.token);
  }
}
