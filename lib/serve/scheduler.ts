/**
 * Continuous batching: many generation streams through one model (a
 * BatchEngine: in this thread, or in a worker thread). Each step
 * gathers the next token of every decoding sequence plus chunks of pending
 * prompts (chunked prefill: a long prompt takes at most `prefillChunk`
 * tokens of a step, so it never stalls the others), runs them as one
 * batched forward (the engine's step: DecoderLM.forwardBatch, whose GEMMs
 * read the weights once for all rows), then samples each sequence with its
 * own parameters and seed. Sequences join and leave between steps.
 *
 * Batch invariance: forwardBatch is row-invariant, so a sequence's logits,
 * and with its seed its tokens, are the same whatever else is running.
 *
 * Memory: each sequence's KV cache is sized for prompt + maxTokens positions
 * (rounded up to a multiple of 64, the key block, so caches of similar
 * requests are interchangeable) and counted against `kvBudgetBytes` while
 * it lives. A finished sequence's cache stays with the engine, idle, for
 * the next request of the same capacity (no new allocation, no page
 * faults); idle caches count against the budget too, and are released
 * when a request needs their room. A request that fits the budget but not
 * now waits in the queue (up to `maxQueue`, beyond it ERR_OVERLOADED); one
 * that could never fit is refused (ERR_TOO_LARGE).
 * Aborting a request's signal drops it from the queue, or ends its stream
 * after the step in flight and frees its cache.
 */
import { QuantkitError, describe, rangeError, typeError } from '../errors.js';
import type { DecoderLM } from '../models/causal-lm.js';
import { keyFloats } from '../ops/attention.js';
import { mulberry32, sampleToken } from '../eval/sampling.js';
import { type BatchEngine, type EngineInfo, LocalEngine } from './engine.js';

export interface SequenceRequest {
  /** Prompt token ids (at least one). */
  readonly prompt: readonly number[];
  /** New tokens at most (>= 1). */
  readonly maxTokens: number;
  /** 0 = greedy (default). */
  readonly temperature?: number;
  /** 0 = off (default). */
  readonly topK?: number;
  /** 1 = off (default). */
  readonly topP?: number;
  /** PRNG seed (default 0). */
  readonly seed?: number;
  /** Token that ends the stream (default: the model's EOS; null: none). */
  readonly eosId?: number | null;
  /** Aborting it cancels the sequence. */
  readonly signal?: AbortSignal;
}

export type SequenceFinish = 'eos' | 'length' | 'cancelled' | 'error';

/** A running request: an async stream of token ids, then `finish`. */
export interface SequenceHandle extends AsyncIterable<number> {
  readonly id: number;
  /** How the stream ended (never rejects: 'error' when a step failed, see BatchScheduler.lastError). */
  readonly finish: Promise<SequenceFinish>;
}

export interface SchedulerOptions {
  /** Sequences in one step at most (default 16). */
  readonly maxSequences?: number;
  /** Prompt tokens per step over all sequences (default 64). */
  readonly prefillChunk?: number;
  /** Bytes of KV cache all live sequences may reserve (default 1 GiB). */
  readonly kvBudgetBytes?: number;
  /** Requests waiting for a slot at most (default 256). */
  readonly maxQueue?: number;
}

/** What one step did, for metrics. */
export interface StepInfo {
  /** Sequences in the step. */
  readonly sequences: number;
  /** Rows of the forward (prompt chunk tokens + decode tokens). */
  readonly rows: number;
  /** Decode tokens (sequences past their prompt). */
  readonly decodeRows: number;
  readonly ms: number;
}

interface Seq {
  readonly id: number;
  readonly req: SequenceRequest;
  readonly eosId: number | null;
  readonly bytes: number;
  /** Positions the sequence may fill (prompt + maxTokens, at most the context). */
  readonly capacity: number;
  /** Positions of its cache: capacity rounded up to the key block (CACHE_BLOCK). */
  readonly cacheCapacity: number;
  readonly rand: () => number;
  fed: number;
  generated: number;
  next: number;
  cancelled: boolean;
  // stream state
  readonly buffered: number[];
  waiter: (() => void) | null;
  done: SequenceFinish | null;
  resolveFinish: (f: SequenceFinish) => void;
  onAbort: (() => void) | null;
}

/** Cache capacities are multiples of this (the attention's key block), so caches of similar requests can be reused. */
const CACHE_BLOCK = 64;

function positiveInt(fn: string, name: string, v: unknown, dflt: number): number {
  const x = v ?? dflt;
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 1) throw rangeError(fn, name, `must be a positive integer, got ${describe(v)}`);
  return x;
}

export class BatchScheduler {
  readonly engine: BatchEngine;
  readonly info: EngineInfo;
  readonly maxSequences: number;
  readonly prefillChunk: number;
  readonly kvBudgetBytes: number;
  readonly maxQueue: number;
  /** Called after every step (metrics). */
  onStep: ((s: StepInfo) => void) | null = null;
  readonly #queue: Seq[] = [];
  readonly #active: Seq[] = [];
  #reserved = 0;
  /** Idle caches the engine keeps (capacity -> count) and their bytes. */
  readonly #idle = new Map<number, number>();
  #idleBytes = 0;
  #nextId = 1;
  #running: Promise<void> | null = null;
  #closed = false;

  /**
   * `model`: a decoder model (run in this thread through a LocalEngine) or
   * an engine (a WorkerEngine runs the model in a worker thread). The
   * scheduler does not dispose the engine.
   */
  constructor(model: DecoderLM | BatchEngine, options: SchedulerOptions = {}) {
    const fn = 'BatchScheduler';
    const isEngine = (m: unknown): m is BatchEngine => typeof (m as BatchEngine)?.step === 'function' && typeof (m as BatchEngine)?.open === 'function';
    if (model === null || typeof model !== 'object' || (!isEngine(model) && typeof (model as DecoderLM).forwardBatchAsync !== 'function')) {
      throw typeError(fn, 'model', 'must be a decoder model with forwardBatchAsync (Llama, GPT-2, OPT, CodeGen) or a BatchEngine');
    }
    if (options === null || typeof options !== 'object') throw typeError(fn, 'options', `must be an object, got ${describe(options)}`);
    this.engine = isEngine(model) ? model : new LocalEngine(model);
    this.info = this.engine.info;
    this.maxSequences = positiveInt(fn, 'options.maxSequences', options.maxSequences, 16);
    this.prefillChunk = positiveInt(fn, 'options.prefillChunk', options.prefillChunk, 64);
    this.kvBudgetBytes = positiveInt(fn, 'options.kvBudgetBytes', options.kvBudgetBytes, 2 ** 30);
    this.maxQueue = positiveInt(fn, 'options.maxQueue', options.maxQueue, 256);
  }

  /** Sequences in the running batch / waiting for a slot. */
  get active(): number {
    return this.#active.length;
  }
  get queued(): number {
    return this.#queue.length;
  }
  /** KV bytes reserved by the live sequences. */
  get reservedBytes(): number {
    return this.#reserved;
  }
  /** KV bytes of idle caches kept for reuse (within the budget, with reservedBytes). */
  get idleBytes(): number {
    return this.#idleBytes;
  }

  /** KV bytes a sequence of `positions` reserves: keys in whole blocks of 64, values per position. */
  bytesFor(positions: number): number {
    const kv = this.info.kvFloatsPerPosition;
    return (keyFloats(positions, kv) + positions * kv) * 4;
  }

  /** Queue a request; its tokens stream from the returned handle. */
  submit(req: SequenceRequest): SequenceHandle {
    const fn = 'BatchScheduler.submit';
    if (this.#closed) throw new QuantkitError('ERR_CLOSED', `${fn}: the scheduler is closing and takes no new requests`);
    if (req === null || typeof req !== 'object') throw typeError(fn, 'request', `must be an object, got ${describe(req)}`);
    const V = this.info.vocabSize;
    if (!Array.isArray(req.prompt) || req.prompt.length === 0) throw rangeError(fn, 'prompt', 'must be a non-empty array of token ids');
    for (const [i, t] of req.prompt.entries()) {
      if (!Number.isSafeInteger(t) || t < 0 || t >= V) throw rangeError(fn, 'prompt', `must hold integers in [0, ${V}), got ${describe(t)} at index ${i}`);
    }
    const maxTokens = positiveInt(fn, 'maxTokens', req.maxTokens, 0);
    const temperature = req.temperature ?? 0, topK = req.topK ?? 0, topP = req.topP ?? 1, seed = req.seed ?? 0;
    if (typeof temperature !== 'number' || !(temperature >= 0) || !Number.isFinite(temperature)) throw rangeError(fn, 'temperature', `must be a finite number >= 0, got ${describe(req.temperature)}`);
    if (!Number.isSafeInteger(topK) || topK < 0) throw rangeError(fn, 'topK', `must be an integer >= 0, got ${describe(req.topK)}`);
    if (typeof topP !== 'number' || !(topP > 0 && topP <= 1)) throw rangeError(fn, 'topP', `must be a number in (0, 1], got ${describe(req.topP)}`);
    if (!Number.isSafeInteger(seed) || seed < 0 || seed > 2 ** 32 - 1) throw rangeError(fn, 'seed', `must be an integer in [0, 2^32), got ${describe(req.seed)}`);
    const eosId = req.eosId === undefined ? (this.info.eosId ?? null) : req.eosId;
    if (eosId !== null && (!Number.isSafeInteger(eosId) || eosId < 0)) throw rangeError(fn, 'eosId', `must be a token id or null, got ${describe(req.eosId)}`);
    if (req.signal !== undefined && !(req.signal instanceof AbortSignal)) throw typeError(fn, 'signal', `must be an AbortSignal, got ${describe(req.signal)}`);
    const ctx = this.info.maxPositions;
    const capacity = Math.min(req.prompt.length + maxTokens, ctx);
    if (req.prompt.length >= ctx) throw new QuantkitError('ERR_TOO_LARGE', `${fn}: the prompt is ${req.prompt.length} tokens; the model's context is ${ctx}`);
    const cacheCapacity = Math.min(Math.ceil(capacity / CACHE_BLOCK) * CACHE_BLOCK, ctx);
    const bytes = this.bytesFor(cacheCapacity);
    if (bytes > this.kvBudgetBytes) {
      throw new QuantkitError('ERR_TOO_LARGE', `${fn}: ${capacity} positions (a cache of ${cacheCapacity}) need ${bytes} bytes of KV cache, more than the whole budget of ${this.kvBudgetBytes}`);
    }
    if (this.#queue.length >= this.maxQueue && !this.#fitsNow(bytes)) {
      throw new QuantkitError('ERR_OVERLOADED', `${fn}: ${this.#queue.length} requests are already waiting (maxQueue ${this.maxQueue})`);
    }
    let resolveFinish!: (f: SequenceFinish) => void;
    const finish = new Promise<SequenceFinish>((r) => (resolveFinish = r));
    const s: Seq = {
      id: this.#nextId++,
      req: { ...req, temperature, topK, topP, seed, maxTokens },
      eosId,
      bytes,
      capacity,
      cacheCapacity,
      rand: mulberry32(seed),
      fed: 0,
      generated: 0,
      next: -1,
      cancelled: false,
      buffered: [],
      waiter: null,
      done: null,
      resolveFinish,
      onAbort: null,
    };
    if (req.signal) {
      if (req.signal.aborted) {
        this.#end(s, 'cancelled');
        return this.#handle(s, finish);
      }
      s.onAbort = () => this.#cancel(s);
      req.signal.addEventListener('abort', s.onAbort, { once: true });
    }
    this.#queue.push(s);
    this.#kick();
    return this.#handle(s, finish);
  }

  /**
   * Stop taking requests and wait for every queued and running sequence to
   * finish (cancel them first through their signals for a fast stop).
   */
  async close(): Promise<void> {
    this.#closed = true;
    while (this.#running) await this.#running;
    while (this.#idleBytes > 0) this.#releaseIdle();
  }

  #fitsNow(bytes: number): boolean {
    return this.#reserved + bytes <= this.kvBudgetBytes && this.#active.length < this.maxSequences;
  }

  #handle(s: Seq, finish: Promise<SequenceFinish>): SequenceHandle {
    const self = this;
    return {
      id: s.id,
      finish,
      [Symbol.asyncIterator](): AsyncIterator<number> {
        return {
          async next(): Promise<IteratorResult<number>> {
            for (;;) {
              if (s.buffered.length > 0) return { value: s.buffered.shift()!, done: false };
              if (s.done !== null) return { value: undefined, done: true };
              await new Promise<void>((r) => (s.waiter = r));
            }
          },
          // a consumer that stops reading (break, a closed connection) cancels the sequence
          async return(): Promise<IteratorResult<number>> {
            self.#cancel(s);
            return { value: undefined, done: true };
          },
        };
      },
    };
  }

  #wake(s: Seq): void {
    const w = s.waiter;
    s.waiter = null;
    w?.();
  }

  #end(s: Seq, f: SequenceFinish): void {
    if (s.done !== null) return;
    s.done = f;
    if (s.onAbort) s.req.signal?.removeEventListener('abort', s.onAbort);
    s.resolveFinish(f);
    this.#wake(s);
  }

  #cancel(s: Seq): void {
    if (s.done !== null) return;
    const qi = this.#queue.indexOf(s);
    if (qi >= 0) {
      this.#queue.splice(qi, 1);
      this.#end(s, 'cancelled');
      return;
    }
    // running: dropped after the step in flight (its cache is in use until then)
    s.cancelled = true;
    if (!this.#running) this.#retire();
  }

  /** Drop finished and cancelled sequences (their caches kept idle when the engine pools), then admit queued ones. */
  #retire(): void {
    const pools = typeof this.engine.release === 'function' && !this.#closed;
    for (let i = this.#active.length - 1; i >= 0; i--) {
      const s = this.#active[i]!;
      if (s.cancelled) this.#end(s, 'cancelled');
      if (s.done !== null) {
        this.#active.splice(i, 1);
        this.#reserved -= s.bytes;
        // at most maxSequences idle caches: enough for a full batch of the same shape
        const keep = pools && this.#idleCount() < this.maxSequences;
        this.engine.close(s.id, keep);
        if (keep) {
          this.#idle.set(s.cacheCapacity, (this.#idle.get(s.cacheCapacity) ?? 0) + 1);
          this.#idleBytes += s.bytes;
        }
      }
    }
    // first come, first served: a request that does not fit yet blocks those behind it (no starvation)
    while (this.#queue.length > 0 && this.#fitsNow(this.#queue[0]!.bytes)) {
      const s = this.#queue.shift()!;
      const n = this.#idle.get(s.cacheCapacity) ?? 0;
      if (n > 0) {
        // the engine hands this sequence an idle cache of its capacity
        if (n === 1) this.#idle.delete(s.cacheCapacity);
        else this.#idle.set(s.cacheCapacity, n - 1);
        this.#idleBytes -= s.bytes;
      } else {
        while (this.#reserved + this.#idleBytes + s.bytes > this.kvBudgetBytes) this.#releaseIdle();
      }
      this.engine.open(s.id, s.cacheCapacity);
      this.#reserved += s.bytes;
      this.#active.push(s);
    }
  }

  #idleCount(): number {
    let n = 0;
    for (const c of this.#idle.values()) n += c;
    return n;
  }

  /** Have the engine drop one idle cache (the largest: it frees the most). */
  #releaseIdle(): void {
    const cap = Math.max(...this.#idle.keys());
    const n = this.#idle.get(cap)!;
    if (n === 1) this.#idle.delete(cap);
    else this.#idle.set(cap, n - 1);
    this.#idleBytes -= this.bytesFor(cap);
    this.engine.release!(cap);
  }

  #kick(): void {
    if (this.#running) return;
    this.#running = this.#loop().finally(() => {
      this.#running = null;
      // a request may have arrived while the loop was winding down
      if (this.#queue.length > 0 || this.#active.length > 0) this.#kick();
    });
  }

  async #loop(): Promise<void> {
    try {
      for (;;) {
        this.#retire();
        if (this.#active.length === 0) return;
        await this.#step();
        this.#retire(); // finished sequences free their caches now, not after the pause below
        // a turn for I/O (new requests, aborts, socket writes) between steps
        await new Promise(setImmediate);
      }
    } catch (e) {
      // a failing forward ends every running sequence; queued ones get a fresh start
      for (const s of this.#active) this.#end(s, 'error');
      this.#retire();
      this.lastError = e;
    }
  }

  /** The error that ended the sequences of a failed step, if any. */
  lastError: unknown = null;

  async #step(): Promise<void> {
    const t0 = performance.now();
    let budget = this.prefillChunk;
    const items: { id: number; tokens: number[]; prompt: boolean; seq: Seq }[] = [];
    let decodeRows = 0;
    for (const s of this.#active) {
      if (s.fed < s.req.prompt.length) {
        if (budget === 0) continue;
        const n = Math.min(budget, s.req.prompt.length - s.fed);
        budget -= n;
        items.push({ id: s.id, tokens: s.req.prompt.slice(s.fed, s.fed + n), prompt: true, seq: s });
      } else {
        items.push({ id: s.id, tokens: [s.next], prompt: false, seq: s });
        decodeRows++;
      }
    }
    const logits = await this.engine.step(items);
    const V = this.info.vocabSize;
    let rows = 0;
    items.forEach(({ tokens, seq: s }, i) => {
      rows += tokens.length;
      const prompt = s.fed < s.req.prompt.length;
      if (prompt) s.fed += tokens.length;
      if (s.cancelled || (prompt && s.fed < s.req.prompt.length)) return;
      const r = s.req;
      const token = sampleToken(logits, i * V, V, { temperature: r.temperature!, topK: r.topK!, topP: r.topP! }, s.rand);
      s.generated++;
      s.next = token;
      s.buffered.push(token);
      this.#wake(s);
      if (token === s.eosId) this.#end(s, 'eos');
      else if (s.generated >= r.maxTokens || s.fed + s.generated - 1 >= s.capacity) this.#end(s, 'length'); // the cache is full
    });
    this.onStep?.({ sequences: items.length, rows, decodeRows, ms: performance.now() - t0 });
  }
}
