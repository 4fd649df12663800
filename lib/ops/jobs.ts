/**
 * Long computations written once for a blocking and an async caller.
 *
 * A computation that makes many native calls (GPTQ, calibrated
 * quantization) is a generator that yields each call as a Job: the call
 * both ways, blocking and as a Promise. runJobs() drives it with the
 * blocking calls; runJobsAsync() awaits each call's Promise, so the native
 * work runs on a libuv worker thread and the event loop serves other work
 * between and during calls. Both drivers feed the generator the same
 * values, so both give the same bits. The JavaScript between two jobs runs
 * on the caller's thread: keep it short (what the async form's event-loop
 * delay is made of).
 */

/** One native call, both ways. */
export interface Job<T> {
  sync(): T;
  async(): Promise<T>;
  /** Rough size of the work (multiply-adds or elements); below INLINE_COST the async driver makes the blocking call (see runJobsAsync). */
  cost?: number;
}

/**
 * A hop to a worker thread and back costs tens of microseconds, more than a
 * small call's work: the async driver runs calls below this cost blocking,
 * and yields to the event loop once SLICE_MS have passed without a hop.
 */
const INLINE_COST = 1 << 18;
const SLICE_MS = 4;

/** A computation yielding jobs and returning R. */
export type Jobs<R> = Generator<Job<unknown>, R, unknown>;

/** Yield one job; its result. `cost`: see Job.cost (omitted: always a hop). */
export function* job<T>(sync: () => T, async: () => Promise<T>, cost?: number): Jobs<T> {
  return (yield cost === undefined ? { sync, async } : { sync, async, cost }) as T;
}

/**
 * Drive `g` to its end with blocking calls. A call that throws is thrown
 * into the generator (its finally blocks run). `signal`: checked before
 * each call; once aborted, its reason is thrown into the generator.
 */
export function runJobs<R>(g: Jobs<R>, signal?: AbortSignal): R {
  let r = g.next();
  while (!r.done) {
    let v: unknown;
    try {
      signal?.throwIfAborted();
      v = r.value.sync();
    } catch (e) {
      r = g.throw(e);
      continue;
    }
    r = g.next(v);
  }
  return r.value;
}

/**
 * Drive `g` to its end, awaiting each call's Promise (small calls: see
 * INLINE_COST). `signal` as for runJobs: an abort takes effect before the
 * next call (a call already running finishes first).
 */
export async function runJobsAsync<R>(g: Jobs<R>, signal?: AbortSignal): Promise<R> {
  let r = g.next();
  let hop = performance.now();
  while (!r.done) {
    const j = r.value;
    let v: unknown;
    try {
      signal?.throwIfAborted();
      if (j.cost !== undefined && j.cost < INLINE_COST) {
        v = j.sync();
        if (performance.now() - hop > SLICE_MS) {
          await nextTurn();
          hop = performance.now();
        }
      } else {
        v = await j.async();
        hop = performance.now();
      }
    } catch (e) {
      r = g.throw(e);
      continue;
    }
    r = g.next(v);
  }
  return r.value;
}

/**
 * A point where the async driver lets the event loop run (a no-op for
 * runJobs): long JavaScript loops between native calls yield one every few
 * million elements, so no single stretch holds the event loop for long.
 */
export function breathe(): Jobs<unknown> {
  return job<unknown>(noop, nextTurn);
}

const noop = () => undefined;
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Rows [0, rows) in chunks of about `budget` elements (row length `width`), with a breathing point between chunks. */
export function* chunkedRows(rows: number, width: number, body: (r0: number, r1: number) => void, budget = 1 << 20): Jobs<void> {
  const step = Math.max(1, Math.floor(budget / Math.max(1, width)));
  for (let r0 = 0; r0 < rows; r0 += step) {
    if (r0 > 0) yield* breathe();
    body(r0, Math.min(rows, r0 + step));
  }
}

/** A TypeError unless `signal` is undefined or an AbortSignal. */
export function checkSignal(fn: string, signal: unknown): AbortSignal | undefined {
  if (signal === undefined || signal instanceof AbortSignal) return signal;
  throw new TypeError(`${fn}: 'options.signal' must be an AbortSignal, got ${signal === null ? 'null' : typeof signal}`);
}
