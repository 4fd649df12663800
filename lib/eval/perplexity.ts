/**
 * Perplexity with sliding windows, the Hugging Face method
 * (https://huggingface.co/docs/transformers/perplexity):
 *
 *   for begin = 0, stride, 2*stride, ...:
 *     end = min(begin + context, N); run tokens[begin, end) from an empty cache;
 *     score token i (predicted from the logits at i - 1) for every
 *     i in [max(prevEnd, begin + 1), end), i.e. only the tokens the previous
 *     window did not score; the first window scores all but its first token;
 *     prevEnd = end; stop once end == N.
 *
 * With stride = context (the default) windows do not overlap and the first
 * token of each window has no context to be predicted from, so it is not
 * scored (as in HF); a smaller stride gives every scored token at least
 * context - stride tokens of context and a lower, fairer perplexity.
 * log-softmax is computed in float64. nll is the mean negative log-likelihood
 * in nats per scored token and ppl = exp(nll).
 *
 * The window loop is written once as a coroutine (windowSteps) that yields
 * each window's forward; perplexity() answers with model.forward,
 * perplexityAsync() with model.forwardAsync (GEMMs on worker threads, the
 * event loop stays free) and gets the identical result.
 */
import { describe, rangeError, typeError } from '../errors.js';
import type { CausalLM, KVCache } from '../models/causal-lm.js';
import type { Tensor } from '../tensor.js';

export interface PerplexityOptions {
  /** Window length in tokens (default: min(model.config.maxPositions, 1024)). */
  context?: number;
  /** Window advance (default: context). */
  stride?: number;
  /** Called after each window with (windows done, windows total). */
  onProgress?: (done: number, total: number) => void;
}

export interface PerplexityResult {
  /** Mean negative log-likelihood, nats per scored token. */
  nll: number;
  ppl: number;
  /** Number of tokens scored. */
  tokens: number;
}

/** log sum exp of one row of logits [offset, offset + n), in float64, shifted by the row's max. */
export function logSumExp(logits: ArrayLike<number>, offset: number, n: number): number {
  let max = -Infinity;
  for (let i = 0; i < n; i++) max = Math.max(max, logits[offset + i]!);
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.exp(logits[offset + i]! - max);
  return max + Math.log(sum);
}

/** -log p(target) from one row of logits, in float64. */
export function tokenNll(logits: ArrayLike<number>, offset: number, n: number, target: number): number {
  return logSumExp(logits, offset, n) - logits[offset + target]!;
}

function windowCount(N: number, context: number, stride: number): number {
  let n = 0;
  for (let begin = 0; ; begin += stride) {
    n++;
    if (Math.min(begin + context, N) >= N) return n;
  }
}

/** One window's forward, requested by windowSteps: logits f32 [tokens.length, vocab]. */
interface WindowForward {
  tokens: readonly number[];
  cache: KVCache;
}

export function perplexity(model: CausalLM, tokens: readonly number[], options: PerplexityOptions = {}): PerplexityResult {
  const steps = windowSteps('perplexity', model, tokens, options);
  let r = steps.next();
  while (!r.done) r = steps.next(model.forward(r.value.tokens, r.value.cache));
  return r.value;
}

/** perplexity() with each window's forward off the main thread; the same result. */
export async function perplexityAsync(model: CausalLM, tokens: readonly number[], options: PerplexityOptions = {}): Promise<PerplexityResult> {
  const steps = windowSteps('perplexityAsync', model, tokens, options);
  let r = steps.next();
  while (!r.done) r = steps.next(await model.forwardAsync(r.value.tokens, r.value.cache));
  return r.value;
}

/** Check the arguments, then yield each window's forward and score its logits. */
function* windowSteps(fn: string, model: CausalLM, tokens: readonly number[], options: PerplexityOptions): Generator<WindowForward, PerplexityResult, Tensor<'f32'>> {
  if (!Array.isArray(tokens) && !ArrayBuffer.isView(tokens)) throw typeError(fn, 'tokens', `must be an array of token ids, got ${describe(tokens)}`);
  const N = tokens.length;
  if (N < 2) throw rangeError(fn, 'tokens', `must hold at least 2 tokens, got ${N}`);
  const { vocabSize, maxPositions } = model.config;
  const context = options.context ?? Math.min(maxPositions, 1024);
  if (!Number.isInteger(context) || context < 2 || context > maxPositions) {
    throw rangeError(fn, 'options.context', `must be an integer in [2, ${maxPositions}], got ${describe(context)}`);
  }
  const stride = options.stride ?? context;
  if (!Number.isInteger(stride) || stride < 1 || stride > context) {
    throw rangeError(fn, 'options.stride', `must be an integer in [1, context = ${context}], got ${describe(stride)}`);
  }
  for (let i = 0; i < N; i++) {
    const t = tokens[i]!;
    if (!Number.isInteger(t) || t < 0 || t >= vocabSize) throw rangeError(fn, 'tokens', `must hold ids in [0, ${vocabSize}); index ${i} holds ${t}`);
  }
  const total = windowCount(N, context, stride);
  let nllSum = 0;
  let count = 0;
  let prevEnd = 0;
  let done = 0;
  const cache = model.createCache(context);
  for (let begin = 0; ; begin += stride) {
    const end = Math.min(begin + context, N);
    const first = Math.max(prevEnd, begin + 1);
    if (first < end) {
      cache.reset();
      // logits past end - 1 are never needed, and the ones before first - 1 only as context
      const logits = yield { tokens: tokens.slice(begin, end), cache };
      for (let i = first; i < end; i++) {
        nllSum += tokenNll(logits.data, (i - 1 - begin) * vocabSize, vocabSize, tokens[i]!);
        count++;
      }
    }
    prevEnd = end;
    options.onProgress?.(++done, total);
    if (end >= N) break;
  }
  const nll = nllSum / count;
  return { nll, ppl: Math.exp(nll), tokens: count };
}
