/**
 * What BatchScheduler runs its steps on: KV caches by sequence id, and one
 * batched forward that returns each sequence's next-token logits. Two
 * implementations:
 *   LocalEngine   the model in this thread, its native calls on libuv
 *                 workers (forwardBatchAsync: one worker hop per op)
 *   WorkerEngine  the model in a worker thread running whole steps
 *                 synchronously (lib/serve/worker-engine.ts): no per-op hop,
 *                 and this thread's event loop only ever waits for messages
 * Both run forwardBatch's row-invariant ops, so tokens do not depend on the
 * engine or the batch.
 */
import type { DecoderLM } from '../models/causal-lm.js';
import type { KVCache } from '../nn/steps.js';
import { Scratch } from '../nn/scratch.js';
import { lineArray } from '../ops/huge-pages.js';

/** The model facts a scheduler needs. */
export interface EngineInfo {
  readonly vocabSize: number;
  readonly maxPositions: number;
  readonly eosId: number | undefined;
  readonly bosId: number | undefined;
  /** nLayers * kvDim: floats of keys (and of values) per cached position. */
  readonly kvFloatsPerPosition: number;
}

export interface EngineItem {
  readonly id: number;
  readonly tokens: readonly number[];
  /** Prompt tokens (true) or a generated one (false): see BatchItem.prompt. */
  readonly prompt: boolean;
}

export interface BatchEngine {
  readonly info: EngineInfo;
  /**
   * Give sequence `id` a KV cache for up to `capacity` positions: an idle
   * one of exactly that capacity (see close) when there is one, emptied,
   * else a new one.
   */
  open(id: number, capacity: number): void;
  /**
   * Take sequence `id`'s cache (no step of it may be in flight): dropped,
   * or with `keep` kept idle for a later open of the same capacity.
   */
  close(id: number, keep?: boolean): void;
  /** Drop one idle cache of `capacity` (an engine without it keeps none: close's `keep` is ignored). */
  release?(capacity: number): void;
  /**
   * One batched forward over the items (each id open, at most once):
   * logits of each item's last token, f32 [items, vocabSize] row by row.
   * The array is the caller's until its next step() call: the engine may
   * reuse its memory for a later step's logits then (a step's logits are
   * a megabyte at 8 sequences of a 32,000 vocabulary; allocating them
   * afresh every step cost more than their sampling).
   */
  step(items: readonly EngineItem[]): Promise<Float32Array>;
  /** Release the engine (stop its thread). */
  dispose(): Promise<void>;
  /** Why the engine can no longer step (its thread died, or it was disposed), else null. */
  readonly failure?: Error | null;
}

/** The facts of a decoder model. */
export function engineInfo(model: DecoderLM): EngineInfo {
  const probe = model.createCache(1) as KVCache & { nLayers: number; kvDim: number };
  const c = model.config;
  return { vocabSize: c.vocabSize, maxPositions: c.maxPositions, eosId: c.eosId, bosId: c.bosId, kvFloatsPerPosition: probe.nLayers * probe.kvDim };
}

/**
 * The KV caches of an engine: those of live sequences by id, and idle ones
 * by capacity. Reusing an idle cache saves allocating and first touching
 * its memory (tens of MB per long sequence) for every request; the
 * scheduler counts idle caches against its byte budget and has the engine
 * release them when a request needs the room.
 */
export class CachePool {
  readonly #live = new Map<number, { cache: KVCache; capacity: number }>();
  readonly #idle = new Map<number, KVCache[]>();
  readonly #create: (capacity: number) => KVCache;

  constructor(create: (capacity: number) => KVCache) {
    this.#create = create;
  }

  open(id: number, capacity: number): void {
    const list = this.#idle.get(capacity);
    let cache = list?.pop();
    if (list?.length === 0) this.#idle.delete(capacity);
    if (cache) cache.reset(); // positions past its length are never read
    else cache = this.#create(capacity);
    this.#live.set(id, { cache, capacity });
  }

  close(id: number, keep = false): void {
    const e = this.#live.get(id);
    if (!e) return;
    this.#live.delete(id);
    if (!keep) return;
    const list = this.#idle.get(e.capacity);
    if (list) list.push(e.cache);
    else this.#idle.set(e.capacity, [e.cache]);
  }

  release(capacity: number): void {
    const list = this.#idle.get(capacity);
    list?.pop();
    if (list?.length === 0) this.#idle.delete(capacity);
  }

  get(id: number): KVCache {
    return this.#live.get(id)!.cache;
  }

  /** Idle caches held, by capacity. */
  get idle(): ReadonlyMap<number, number> {
    return new Map([...this.#idle].map(([c, l]) => [c, l.length]));
  }

  clear(): void {
    this.#live.clear();
    this.#idle.clear();
  }
}

/** The model in this thread; steps through forwardBatchAsync (the event loop stays free). */
export class LocalEngine implements BatchEngine {
  readonly info: EngineInfo;
  readonly #model: DecoderLM;
  readonly #caches: CachePool;
  readonly #scratch = new Scratch();
  readonly #logits = new LogitsBuffer();

  constructor(model: DecoderLM) {
    this.#model = model;
    this.info = engineInfo(model);
    this.#caches = new CachePool((capacity) => model.createCache(capacity));
  }

  open(id: number, capacity: number): void {
    this.#caches.open(id, capacity);
  }

  close(id: number, keep = false): void {
    this.#caches.close(id, keep);
  }

  release(capacity: number): void {
    this.#caches.release(capacity);
  }

  /** Idle caches held, by capacity. */
  get idle(): ReadonlyMap<number, number> {
    return this.#caches.idle;
  }

  async step(items: readonly EngineItem[]): Promise<Float32Array> {
    const out = await this.#model.forwardBatchAsync(
      items.map((it) => ({ tokens: it.tokens, cache: this.#caches.get(it.id), prompt: it.prompt })),
      { logits: 'last', scratch: this.#scratch, out: this.#logits.take(items.length * this.info.vocabSize) },
    );
    return joinRows(out.map((t) => t.data));
  }

  async dispose(): Promise<void> {
    this.#caches.clear();
  }
}

/**
 * The logits buffer an engine hands to forwardBatch: the one it kept, when
 * a step wants as many floats, else a new one (on 64-byte lines, as the
 * GEMMs' outputs are). One buffer: a batch's size changes only when
 * sequences join or leave.
 */
export class LogitsBuffer {
  #buf: Float32Array | null = null;

  /** A buffer of n floats (its contents are overwritten by the step). */
  take(n: number): Float32Array {
    if (this.#buf === null || this.#buf.length !== n || this.#buf.buffer.byteLength === 0) this.#buf = lineArray(Float32Array, n);
    return this.#buf;
  }

  /** Keep `b` (the caller is done with it) for a later take(). */
  give(b: Float32Array): void {
    if (b.buffer.byteLength > 0) this.#buf = b;
  }

  /** Hand the buffer out for good (transferred): the next take() allocates. */
  drop(): void {
    this.#buf = null;
  }
}

/** Rows that forwardBatch returned as consecutive views of one buffer, as that one array (a copy otherwise). */
export function joinRows(rows: readonly Float32Array[]): Float32Array {
  if (rows.length === 0) return new Float32Array(0);
  const first = rows[0]!;
  const n = rows.reduce((a, r) => a + r.length, 0);
  let contiguous = true;
  let off = first.byteOffset;
  for (const r of rows) {
    if (r.buffer !== first.buffer || r.byteOffset !== off) contiguous = false;
    off += r.byteLength;
  }
  if (contiguous) return new Float32Array(first.buffer, first.byteOffset, n);
  const out = new Float32Array(n);
  let o = 0;
  for (const r of rows) {
    out.set(r, o);
    o += r.length;
  }
  return out;
}
