/**
 * BatchScheduler (lib/serve/scheduler.ts): continuous batching of many
 * generation streams. A request's tokens must not depend on what else runs
 * (batch invariance, greedy and seeded sampling); sequences join and leave;
 * an abort or a consumer that stops reading frees the slot; budgets refuse
 * with typed errors; idle caches are reused without changing a bit and
 * stay within the budget.
 */
import { describe, expect, it } from 'vitest';
import { BatchScheduler, type SequenceRequest } from '../lib/serve/scheduler.js';
import { quantizeModel, type QuantizeModelOptions } from '../lib/nn/quantize-model.js';
import type { DecoderLM } from '../lib/models/causal-lm.js';
import { llamaModel } from './tiny-models.js';
import { WorkerEngine } from '../lib/serve/worker-engine.js';
import { LocalEngine } from '../lib/serve/engine.js';

const V = 96;
const makeModel = (q: QuantizeModelOptions | null) => {
  const m = llamaModel({ D: 64, F: 160, L: 2, nH: 4, nKv: 2, V, P: 128, seed: 9 }) as DecoderLM;
  if (q) quantizeModel(m, q);
  return m;
};
const prompt = (n: number, seed: number) => Array.from({ length: n }, (_, i) => (i * 29 + seed * 13 + 1) % V);

async function collect(h: AsyncIterable<number>): Promise<number[]> {
  const out: number[] = [];
  for await (const t of h) out.push(t);
  return out;
}

describe('BatchScheduler', () => {
  for (const [name, q] of Object.entries({ fp32: null, int8: { weights: 'int8' }, 'W4A8 g32': { weights: 'int4', groupSize: 32, activations: 'int8' } } as Record<string, QuantizeModelOptions | null>)) {
    it(`${name}: a request's tokens are the same alone and among 15 others (greedy and seeded sampling)`, async () => {
      const model = makeModel(q);
      const reqs: SequenceRequest[] = [
        { prompt: prompt(19, 0), maxTokens: 12, eosId: null },
        { prompt: prompt(7, 1), maxTokens: 10, eosId: null, temperature: 0.9, topK: 20, topP: 0.95, seed: 1234 },
      ];
      const alone: number[][] = [];
      for (const r of reqs) alone.push(await collect(new BatchScheduler(model).submit(r)));
      expect(alone[0]).toHaveLength(12);
      const sched = new BatchScheduler(model, { maxSequences: 16, prefillChunk: 9 });
      const others = Array.from({ length: 14 }, (_, j) => sched.submit({ prompt: prompt(1 + ((j * 5) % 30), j + 2), maxTokens: 1 + (j % 9), eosId: null, temperature: j % 2 ? 0.7 : 0, seed: j }));
      const mine = reqs.map((r) => collect(sched.submit(r)));
      const got = await Promise.all(mine);
      await Promise.all(others.map(collect));
      expect(got).toEqual(alone);
    });
  }

  it('runs more requests than slots (they join as others leave) and ends each with its reason', async () => {
    const model = makeModel(null);
    const sched = new BatchScheduler(model, { maxSequences: 2 });
    const steps: number[] = [];
    sched.onStep = (s) => steps.push(s.sequences);
    const hs = Array.from({ length: 5 }, (_, j) => sched.submit({ prompt: prompt(3 + j, j), maxTokens: 3 + j, eosId: null }));
    const toks = await Promise.all(hs.map(collect));
    expect(toks.map((t) => t.length)).toEqual([3, 4, 5, 6, 7]);
    expect(await Promise.all(hs.map((h) => h.finish))).toEqual(['length', 'length', 'length', 'length', 'length']);
    expect(Math.max(...steps)).toBe(2);
    expect([sched.active, sched.queued, sched.reservedBytes]).toEqual([0, 0, 0]);
  });

  it('stops at EOS', async () => {
    const model = makeModel(null);
    const sched = new BatchScheduler(model);
    const free = await collect(sched.submit({ prompt: prompt(5, 3), maxTokens: 8, eosId: null }));
    const h = sched.submit({ prompt: prompt(5, 3), maxTokens: 8, eosId: free[2]! });
    const toks = await collect(h);
    expect(toks).toEqual(free.slice(0, free.indexOf(free[2]!) + 1));
    expect(await h.finish).toBe('eos');
  });

  it('an abort or a consumer that stops reading cancels the sequence and frees its slot', async () => {
    const model = makeModel(null);
    const sched = new BatchScheduler(model, { maxSequences: 1 });
    const ac = new AbortController();
    const h1 = sched.submit({ prompt: prompt(4, 1), maxTokens: 1000 - 4 - 1, eosId: null, signal: ac.signal });
    const queued = new AbortController();
    const h2 = sched.submit({ prompt: prompt(4, 2), maxTokens: 5, eosId: null, signal: queued.signal });
    queued.abort(); // still waiting for the slot: dropped from the queue
    expect(await h2.finish).toBe('cancelled');
    const first: number[] = [];
    for await (const t of h1) {
      first.push(t);
      if (first.length === 3) ac.abort();
    }
    expect(await h1.finish).toBe('cancelled');
    expect(first.length).toBeLessThan(10);
    const h3 = sched.submit({ prompt: prompt(4, 3), maxTokens: 50, eosId: null });
    for await (const _ of h3) break; // return() cancels
    expect(await h3.finish).toBe('cancelled');
    const h4 = sched.submit({ prompt: prompt(4, 3), maxTokens: 2, eosId: null, signal: AbortSignal.abort() });
    expect(await h4.finish).toBe('cancelled');
    await sched.close();
    expect([sched.active, sched.queued, sched.reservedBytes]).toEqual([0, 0, 0]);
  });

  it('refuses what cannot fit (typed errors) and checks every field', async () => {
    const model = makeModel(null);
    const small = new BatchScheduler(model, { kvBudgetBytes: 40_000, maxSequences: 1, maxQueue: 1 });
    expect(() => small.submit({ prompt: prompt(4, 1), maxTokens: 120 })).toThrow(expect.objectContaining({ code: 'ERR_TOO_LARGE' }));
    const a = small.submit({ prompt: prompt(4, 1), maxTokens: 20, eosId: null });
    const b = small.submit({ prompt: prompt(4, 2), maxTokens: 20, eosId: null });
    expect(() => small.submit({ prompt: prompt(4, 3), maxTokens: 20 })).toThrow(expect.objectContaining({ code: 'ERR_OVERLOADED' }));
    await Promise.all([collect(a), collect(b)]);
    expect(() => small.submit({ prompt: prompt(200, 1), maxTokens: 1 })).toThrow(expect.objectContaining({ code: 'ERR_TOO_LARGE' }));
    for (const bad of [{ prompt: [], maxTokens: 1 }, { prompt: [V], maxTokens: 1 }, { prompt: [1], maxTokens: 0 }, { prompt: [1], maxTokens: 1, topP: 0 }, { prompt: [1], maxTokens: 1, temperature: -1 }, { prompt: [1], maxTokens: 1, seed: 1.5 }]) {
      expect(() => small.submit(bad as SequenceRequest)).toThrow(RangeError);
    }
    expect(() => small.submit({ prompt: [1], maxTokens: 1, signal: {} as AbortSignal })).toThrow(TypeError);
    expect(() => new BatchScheduler({} as DecoderLM)).toThrow(TypeError);
    expect(() => new BatchScheduler(model, { maxSequences: 0 })).toThrow(/maxSequences/);
    await small.close();
    expect(() => small.submit({ prompt: [1], maxTokens: 1 })).toThrow(expect.objectContaining({ code: 'ERR_CLOSED' }));
  });

  it('a WorkerEngine (the model in a worker thread) gives the in-thread engine tokens; a failing load rejects', async () => {
    const module = new URL('./scripts/engine-model.ts', import.meta.url).href;
    const q: QuantizeModelOptions = { weights: 'int4', groupSize: 32, activations: 'int8' };
    const reqs = Array.from({ length: 6 }, (_, j) => ({ prompt: prompt(3 + 4 * j, j), maxTokens: 4 + j, eosId: null, temperature: j % 2 ? 0.8 : 0, seed: j }));
    const local = new BatchScheduler(makeModel(q), { prefillChunk: 8 });
    const want = await Promise.all(reqs.map((r) => collect(local.submit(r))));
    const engine = await WorkerEngine.start({ module, export: 'makeModel', args: { q } });
    try {
      expect(engine.info).toEqual(local.info);
      // two slots: later requests run on the caches of earlier ones
      const remote = new BatchScheduler(engine, { prefillChunk: 8, maxSequences: 2 });
      expect(await Promise.all(reqs.map((r) => collect(remote.submit(r))))).toEqual(want);
      await remote.close();
      expect(engine.failure).toBe(null);
      // a step's logits are the caller's until the next step, which hands their buffer back to the thread
      const inThread = new LocalEngine(makeModel(q));
      for (const e of [engine, inThread]) (e.open(7, 32), e.open(8, 32));
      const steps = [[{ id: 7, tokens: prompt(5, 1), prompt: true }, { id: 8, tokens: prompt(3, 2), prompt: true }], [7, 8].map((id) => ({ id, tokens: [id], prompt: false })), [7, 8].map((id) => ({ id, tokens: [id + 1], prompt: false }))];
      let prev: Float32Array | null = null;
      for (const items of steps) {
        const got = await engine.step(items);
        if (prev) expect(prev.buffer.byteLength).toBe(0);
        expect(Array.from(got)).toEqual(Array.from(await inThread.step(items)));
        prev = got;
      }
      for (const e of [engine, inThread]) (e.close(7), e.close(8));
    } finally {
      await engine.dispose();
    }
    // a dead engine ends what runs on it with 'error' and says why
    expect(engine.failure?.message).toMatch(/disposed/);
    const dead = new BatchScheduler(engine);
    const h = dead.submit({ prompt: prompt(3, 1), maxTokens: 2 });
    expect(await h.finish).toBe('error');
    expect(String(dead.lastError)).toMatch(/disposed/);
    await expect(WorkerEngine.start({ module, export: 'makeModel', args: { q: null, fail: true } })).rejects.toThrow(/on purpose/);
    await expect(WorkerEngine.start({ module, export: 'nothing' })).rejects.toThrow(/no function export/);
  });

  it("a finished sequence's cache serves the next request of its size, with the logits of a new cache", async () => {
    for (const q of [null, { weights: 'int4', groupSize: 32, activations: 'int8' } as const]) {
      const model = makeModel(q);
      const used = new LocalEngine(model), fresh = new LocalEngine(model);
      // a long sequence fills the cache's key blocks, then leaves it idle
      used.open(1, 128);
      for (let i = 0; i < 3; i++) await used.step([{ id: 1, tokens: prompt(40, 7 + i), prompt: true }]);
      used.close(1, true);
      expect(used.idle).toEqual(new Map([[128, 1]]));
      used.open(2, 128);
      fresh.open(2, 128);
      expect(used.idle).toEqual(new Map());
      const steps = [{ id: 2, tokens: prompt(5, 3), prompt: true }, ...[4, 17, 60].map((t) => ({ id: 2, tokens: [t], prompt: false }))];
      for (const it of steps) expect(await used.step([it])).toEqual(await fresh.step([it]));
    }
  });

  it('keeps finished caches idle within the budget and releases them when a request needs the room', async () => {
    const model = makeModel(null);
    const probe = new BatchScheduler(model);
    const b64 = probe.bytesFor(64), b128 = probe.bytesFor(128);
    const sched = new BatchScheduler(model, { kvBudgetBytes: b128 + b64, maxSequences: 4 });
    const engine = sched.engine as LocalEngine;
    let over = false;
    sched.onStep = () => (over ||= sched.reservedBytes + sched.idleBytes > sched.kvBudgetBytes);
    const want = await collect(new BatchScheduler(model).submit({ prompt: prompt(6, 2), maxTokens: 8, eosId: null }));
    await Promise.all([collect(sched.submit({ prompt: prompt(10, 1), maxTokens: 20, eosId: null })), collect(sched.submit({ prompt: prompt(9, 4), maxTokens: 3, eosId: null }))]);
    expect([sched.reservedBytes, sched.idleBytes]).toEqual([0, 2 * b64]);
    expect(engine.idle).toEqual(new Map([[64, 2]]));
    // 6 + 8 positions: a cache of 64, taken from the idle ones; the tokens of a new cache
    expect(await collect(sched.submit({ prompt: prompt(6, 2), maxTokens: 8, eosId: null }))).toEqual(want);
    expect(engine.idle).toEqual(new Map([[64, 2]]));
    // 30 + 70 positions: a cache of 128, which needs the room of one idle cache
    expect(await collect(sched.submit({ prompt: prompt(30, 5), maxTokens: 70, eosId: null }))).toHaveLength(70);
    expect(engine.idle).toEqual(new Map([[64, 1], [128, 1]]));
    expect(sched.idleBytes).toBe(b64 + b128);
    expect(over).toBe(false);
    await sched.close();
    expect([sched.idleBytes, engine.idle.size]).toEqual([0, 0]);
  });

  it('keeps the event loop turning while it decodes', async () => {
    const model = makeModel({ weights: 'int8' });
    const sched = new BatchScheduler(model);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    await Promise.all(Array.from({ length: 4 }, (_, j) => collect(sched.submit({ prompt: prompt(10, j), maxTokens: 30, eosId: null }))));
    clearInterval(timer);
    expect(ticks).toBeGreaterThan(5);
  });
});
