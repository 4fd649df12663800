/**
 * Promise forms of the model forward, generate and perplexity: forwardAsync
 * equals forward bit for bit (GPT-2, OPT pre/post-LN, Llama GQA, quantized
 * int8/int4/W8A8 layers, stories260K), many concurrent streams on separate
 * caches equal serial runs, one cache refuses a second concurrent forward
 * with ERR_BUSY (and is released however a forward ends), and a timer keeps
 * firing while a long prefill runs.
 *
 * Models are tiny random-weight HF-layout checkpoints built in memory (a Map
 * is a TensorLookup) through buildModel, the loader's own path.
 */
import { describe, expect, it } from 'vitest';
import { QuantkitError } from '../lib/errors.js';
import { generate, generateText } from '../lib/eval/generate.js';
import { perplexity, perplexityAsync } from '../lib/eval/perplexity.js';
import type { CausalLM, KVCache } from '../lib/models/causal-lm.js';
import { loadModel } from '../lib/models/load.js';
import { Module } from '../lib/nn/module.js';
import { quantizeModel } from '../lib/nn/quantize-model.js';
import { Tensor } from '../lib/tensor.js';
import type { Tokenizer } from '../lib/tokenizers/types.js';
import { fixture, requireFixtures } from './fixtures.js';
import { rng } from './helpers.js';
import { gpt2Model, llamaModel, optModel } from './tiny-models.js';

const tinyLlama = (seed: number) => llamaModel({ D: 32, F: 48, L: 2, nH: 4, nKv: 2, V: 50, P: 64, seed });

function randomIds(n: number, vocab: number, seed: number): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => Math.floor(r() * vocab));
}

/** Logits of a 20-token prefill (GEMM attention path) then 5 one-token steps (loop path). */
function runSync(model: CausalLM, ids: number[]): Float32Array[] {
  const cache = model.createCache(ids.length);
  const out = [model.forward(ids.slice(0, 20), cache).data];
  for (let t = 20; t < ids.length; t++) out.push(model.forward([ids[t]!], cache).data);
  return out;
}

async function runAsync(model: CausalLM, ids: number[]): Promise<Float32Array[]> {
  const cache = model.createCache(ids.length);
  const out = [(await model.forwardAsync(ids.slice(0, 20), cache)).data];
  for (let t = 20; t < ids.length; t++) out.push((await model.forwardAsync([ids[t]!], cache)).data);
  return out;
}

/** Bit-for-bit equality (Float32Array toEqual compares values; NaN-free here). */
function expectSame(a: Float32Array[], b: Float32Array[]): void {
  expect(a.length).toBe(b.length);
  a.forEach((x, i) => expect(Buffer.from(x.buffer, x.byteOffset, x.byteLength).equals(Buffer.from(b[i]!.buffer, b[i]!.byteOffset, b[i]!.byteLength))).toBe(true));
}

const MODELS: [string, () => CausalLM][] = [
  ['gpt2', () => gpt2Model(1)],
  ['opt pre-LN', () => optModel(2, true)],
  ['opt post-LN', () => optModel(3, false)],
  ['llama GQA', () => tinyLlama(4)],
];

describe('forwardAsync', () => {
  for (const [name, make] of MODELS) {
    it(`equals forward bit for bit: ${name} (prefill + decode)`, async () => {
      const model = make();
      const ids = randomIds(25, model.config.vocabSize, 7);
      expectSame(await runAsync(model, ids), runSync(model, ids));
    });
  }

  it('equals forward bit for bit with quantized layers (int8, int4 groups, W8A8, W4A8, LLM.int8)', async () => {
    const opts = [
      { weights: 'int8' },
      { weights: 'int4', groupSize: 16 },
      { weights: 'int8', activations: 'int8' },
      { weights: 'int4', groupSize: 32, activations: 'int8' },
      { weights: 'int8', activations: 'llm.int8', threshold: 0.5 },
    ] as const;
    for (const o of opts) {
      const model = tinyLlama(5);
      quantizeModel(model, o);
      const ids = randomIds(25, 50, 8);
      expectSame(await runAsync(model, ids), runSync(model, ids));
    }
  });

  it('many concurrent streams on separate caches equal serial runs', async () => {
    for (const make of [() => tinyLlama(6), () => gpt2Model(9)]) {
      const model = make();
      const prompts = Array.from({ length: 8 }, (_, i) => randomIds(20 + i, 50, 100 + i));
      const serial = prompts.map((ids) => runSync(model, ids.slice(0, 25)));
      const parallel = await Promise.all(prompts.map((ids) => runAsync(model, ids.slice(0, 25))));
      parallel.forEach((p, i) => expectSame(p, serial[i]!));
    }
  });

  it('rejects a second concurrent forward on the same cache with ERR_BUSY, then serves it normally', async () => {
    const model = tinyLlama(10);
    const ids = randomIds(12, 50, 11);
    const ref = model.forward(ids, model.createCache()).data;
    const cache = model.createCache();
    const first = model.forwardAsync(ids, cache);
    const busy = (e: unknown) => e instanceof QuantkitError && e.code === 'ERR_BUSY' && /one cache serves one stream/.test(e.message);
    await expect(model.forwardAsync([1], cache)).rejects.toSatisfy(busy);
    expect(() => model.forward([1], cache)).toThrow(expect.objectContaining({ code: 'ERR_BUSY' }));
    expect(() => cache.reset()).toThrow(expect.objectContaining({ code: 'ERR_BUSY' }));
    // the refused calls left the running forward intact
    expectSame([(await first).data], [ref]);
    expect(cache.length).toBe(ids.length);
    await model.forwardAsync([3], cache);
    expect(cache.length).toBe(ids.length + 1);
    cache.reset();
    expect(cache.length).toBe(0);
  });

  it('releases the cache however a forward ends (a failing layer, sync or async)', async () => {
    class Failing extends Module {
      forward(): Tensor<'f32'> {
        throw new Error('boom');
      }
      forwardAsync(): Promise<Tensor<'f32'>> {
        return Promise.reject(new Error('boom async'));
      }
    }
    const model = tinyLlama(12);
    const cache = model.createCache() as KVCache & { busy: boolean };
    model.replaceChild('lm_head', new Failing());
    await expect(model.forwardAsync([1, 2, 3], cache)).rejects.toThrow('boom async');
    expect(cache.busy).toBe(false);
    expect(() => model.forward([1, 2, 3], cache)).toThrow('boom');
    expect(cache.busy).toBe(false);
    // bad arguments reject without taking the cache
    await expect(model.forwardAsync([999], cache)).rejects.toThrow(RangeError);
    expect(cache.busy).toBe(false);
  });
});

// ------------------------------------------------------------ generate / perplexity

/** Ids print as "<id>"; no BOS/EOS of its own (the model config has them). */
const idTokenizer: Tokenizer = {
  vocabSize: 512,
  bosId: undefined,
  eosId: undefined,
  encode: () => [],
  decode: (ids) => ids.map((i) => `<${i}>`).join(''),
  decodeStream: () => ({ push: (id) => `<${id}>`, flush: () => '' }),
  idToToken: (id) => `<${id}>`,
};

function greedySync(model: CausalLM, prompt: number[], n: number): number[] {
  const V = model.config.vocabSize;
  const cache = model.createCache(prompt.length + n);
  let logits = model.forward(prompt, cache).data.subarray((prompt.length - 1) * V);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let j = 1; j < V; j++) if (logits[j]! > logits[best]!) best = j;
    out.push(best);
    if (best === model.config.eosId) break;
    if (i + 1 < n) logits = model.forward([best], cache).data;
  }
  return out;
}

describe('generate and perplexityAsync over forwardAsync', () => {
  it('greedy generate gives the tokens of a sync greedy loop', async () => {
    for (const make of MODELS.map(([, m]) => m)) {
      const model = make();
      const prompt = randomIds(12, model.config.vocabSize, 21);
      const { tokens } = await generateText(model, idTokenizer, prompt, { maxNewTokens: 10 });
      expect(tokens).toEqual(greedySync(model, prompt, 10));
    }
  });

  it('perplexityAsync equals perplexity exactly (overlapping windows)', async () => {
    const model = tinyLlama(13);
    const ids = randomIds(60, 50, 22);
    const opts = { context: 24, stride: 10 };
    expect(await perplexityAsync(model, ids, opts)).toEqual(perplexity(model, ids, opts));
  });

  it('keeps the event loop responsive during a long prefill and decode (dim 512, 4 layers, 256-token prompt)', async () => {
    const model = llamaModel({ D: 512, F: 1376, L: 4, nH: 8, nKv: 8, V: 512, P: 512, seed: 14 });
    const prompt = randomIds(256, 512, 23);
    // Event-loop turns, counted with a self-re-arming setImmediate (not a timer,
    // so the counts do not depend on the clock of a busy VM).
    let turns = 0;
    let spinning = false;
    const spin = () => {
      if (!spinning) return;
      turns++;
      setImmediate(spin);
    };
    const countTurns = async <T>(f: () => Promise<T> | T): Promise<{ value: T; turns: number }> => {
      turns = 0;
      spinning = true;
      setImmediate(spin);
      try {
        return { value: await f(), turns };
      } finally {
        spinning = false;
      }
    };
    // sync reference: no turn can happen while forward() blocks the thread
    const sync = await countTurns(() => model.forward(prompt, model.createCache(prompt.length)));
    expect(sync.turns).toBe(0);
    const ref = sync.value;
    const asyncRun = await countTurns(() => model.forwardAsync(prompt, model.createCache(prompt.length)));
    const logits = asyncRun.value;
    // generate's first item comes right after its prefill (no setImmediate turn before it),
    // so turns during it show the prefill itself leaves the loop free
    const it = generate(model, idTokenizer, prompt, { maxNewTokens: 4, bos: false });
    const first = await countTurns(() => it.next());
    const tokens = [(first.value.value as { token: number }).token];
    for (let r = await it.next(); !r.done; r = await it.next()) tokens.push(r.value.token);
    console.log(`long forward: event-loop turns during forward() ${sync.turns}, during forwardAsync ${asyncRun.turns}, during generate's prefill ${first.turns}`);
    expect(asyncRun.turns).toBeGreaterThan(1);
    expect(first.turns).toBeGreaterThan(1);
    expectSame([logits.data], [ref.data]);
    expect(tokens).toEqual(greedySync(model, prompt, 4));
  }, 60_000);
});

// ------------------------------------------------------------ stories260K

const present = requireFixtures('stories260K/config.json', 'stories260K/model.safetensors');

describe.skipIf(!present)('stories260K', () => {
  it('forwardAsync equals forward bit for bit; perplexityAsync equals perplexity', async () => {
    const { model } = await loadModel(fixture('stories260K'));
    const ids = randomIds(40, model.config.vocabSize, 31);
    expectSame(await runAsync(model, ids), runSync(model, ids));
    const streams = await Promise.all([0, 1, 2, 3].map((s) => runAsync(model, randomIds(24, model.config.vocabSize, 40 + s))));
    streams.forEach((p, s) => expectSame(p, runSync(model, randomIds(24, model.config.vocabSize, 40 + s))));
    const text = randomIds(100, model.config.vocabSize, 32);
    expect(await perplexityAsync(model, text, { context: 64, stride: 32 })).toEqual(perplexity(model, text, { context: 64, stride: 32 }));
  });
});
