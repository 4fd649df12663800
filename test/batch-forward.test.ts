/**
 * Batched forwards (DecoderLM.forwardBatch): several sequences, each over its
 * own cache, in one forward. The guarantee under test is batch invariance: a
 * sequence's logits have the same bits alone and inside any batch (other
 * sequences of other lengths joining and leaving, its prompt cut into
 * chunks), for every decoder architecture and weight format, sync and async.
 */
import { describe, expect, it } from 'vitest';
import { quantizeModel, type QuantizeModelOptions } from '../lib/nn/quantize-model.js';
import type { DecoderLM } from '../lib/models/causal-lm.js';
import type { KVCache } from '../lib/nn/steps.js';
import { Scratch } from '../lib/nn/scratch.js';
import { DECODER_FORMATS as FORMATS, codegenModel, gpt2Model, llamaModel, optModel } from './tiny-models.js';


const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
const argmax = (a: Float32Array) => a.reduce((best, v, i) => (v > a[best]! ? i : best), 0);

interface Seq {
  prompt: number[];
  /** Step at which it joins the batch. */
  join: number;
  /** Decode steps after the prompt. */
  steps: number;
  cache?: KVCache;
  fed?: number;
  next?: number;
  done?: number;
  logits?: string[];
}

/**
 * Run the sequences through batched forwards: each step, every joined
 * sequence gives its next prompt chunk (up to `chunk` tokens) or its last
 * greedy token. Returns each sequence's logits (bits) after its prompt and
 * after each decode step.
 */
async function runBatched(model: DecoderLM, seqs: Seq[], chunk: number, useAsync: boolean, capacity: number): Promise<string[][]> {
  const scratch = new Scratch();
  for (const s of seqs) Object.assign(s, { cache: model.createCache(capacity), fed: 0, done: 0, logits: [] });
  for (let step = 0; seqs.some((s) => s.done! <= s.steps); step++) {
    const active = seqs.filter((s) => s.join <= step && s.done! <= s.steps);
    if (active.length === 0) continue;
    const items = active.map((s) => {
      const prompt = s.fed! < s.prompt.length;
      const tokens = prompt ? s.prompt.slice(s.fed!, s.fed! + chunk) : [s.next!];
      return { tokens, cache: s.cache!, prompt, seq: s };
    });
    const out = useAsync ? await model.forwardBatchAsync(items, { logits: 'last', scratch }) : model.forwardBatch(items, { logits: 'last', scratch });
    items.forEach(({ tokens, seq }, i) => {
      const wasPrompt = seq.fed! < seq.prompt.length;
      if (wasPrompt) seq.fed! += tokens.length;
      if (wasPrompt && seq.fed! < seq.prompt.length) return; // mid-prompt chunk: no logits yet
      const l = out[i]!.data;
      expect(out[i]!.shape).toEqual([1, model.config.vocabSize]);
      seq.logits!.push(bits(l));
      seq.next = argmax(l);
      seq.done!++;
    });
  }
  return seqs.map((s) => s.logits!);
}

function tokens(n: number, seed: number, V: number): number[] {
  return Array.from({ length: n }, (_, i) => (i * 31 + seed * 17 + 3) % V);
}

/** A request alone (whole prompt, then decode) against the same request in mixed batches of up to 16. */
async function expectBatchInvariant(model: DecoderLM, V: number, capacity: number, promptLen: number): Promise<void> {
  const alone = (await runBatched(model, [{ prompt: tokens(promptLen, 0, V), join: 0, steps: 5 }], 1 << 30, false, capacity))[0]!;
  expect(alone).toHaveLength(6);
  for (const [size, chunk, useAsync] of [[1, 4, false], [2, 64, true], [5, 3, false], [16, 7, true]] as const) {
    const seqs: Seq[] = [{ prompt: tokens(promptLen, 0, V), join: size > 2 ? 2 : 0, steps: 5 }];
    for (let j = 1; j < size; j++) seqs.push({ prompt: tokens(1 + ((j * 7) % 23), j, V), join: j % 4, steps: 1 + (j % 6) });
    const got = (await runBatched(model, seqs, chunk, useAsync, capacity))[0]!;
    expect(got, `batch of ${size}, prompt chunks of ${chunk}, ${useAsync ? 'async' : 'sync'}`).toEqual(alone);
  }
}

describe('forwardBatch: a sequence gets the same logits alone and in any batch', () => {
  for (const [name, q] of Object.entries(FORMATS)) {
    it(`Llama (GQA) ${name}`, async () => {
      const model = llamaModel({ D: 64, F: 160, L: 2, nH: 4, nKv: 2, V: 96, P: 128, seed: 7 }) as DecoderLM;
      if (q) quantizeModel(model, q);
      await expectBatchInvariant(model, 96, 100, 21);
    });
  }
  const ARCHS: Record<string, () => DecoderLM> = {
    'GPT-2': () => gpt2Model(3) as DecoderLM,
    'OPT pre-LN': () => optModel(4, true) as DecoderLM,
    'OPT post-LN': () => optModel(5, false) as DecoderLM,
    CodeGen: () => codegenModel(6) as DecoderLM,
  };
  for (const [name, make] of Object.entries(ARCHS)) {
    for (const q of [null, { weights: 'int4', groupSize: 32 } as QuantizeModelOptions, { weights: 'int8', activations: 'int8' } as QuantizeModelOptions]) {
      it(`${name} ${q ? `${q.weights}${q.activations ? ' W8A8' : ''}` : 'fp32'}`, async () => {
        const model = make();
        if (q) quantizeModel(model, { ...q, exclude: [] });
        await expectBatchInvariant(model, 40, 60, 17);
      });
    }
  }
});

describe('forwardBatch: arguments', () => {
  const model = llamaModel({ D: 32, F: 64, L: 1, nH: 2, nKv: 2, V: 50, P: 64, seed: 1 }) as DecoderLM;
  it('returns per-item logits, all rows or the last, and advances each cache', () => {
    const a = model.createCache(), b = model.createCache();
    const out = model.forwardBatch([{ tokens: [1, 2, 3], cache: a }, { tokens: [4], cache: b }]);
    expect(out.map((t) => t.shape)).toEqual([[3, 50], [1, 50]]);
    expect([a.length, b.length]).toEqual([3, 1]);
    expect(model.forwardBatch([])).toEqual([]);
  });
  it('rejects a cache given twice, empty tokens, bad ids and a busy cache, naming the item', async () => {
    const a = model.createCache(), b = model.createCache();
    expect(() => model.forwardBatch([{ tokens: [1], cache: a }, { tokens: [2], cache: a }])).toThrow(/items\[1\]\.cache.*twice/);
    expect(() => model.forwardBatch([{ tokens: [], cache: a }])).toThrow(RangeError);
    expect(() => model.forwardBatch([{ tokens: [1], cache: a }, { tokens: [99], cache: b }])).toThrow(/items\[1\]/);
    expect(() => model.forwardBatch([{ tokens: [1], cache: {} as KVCache }])).toThrow(TypeError);
    expect(() => model.forwardBatch({} as never)).toThrow(TypeError);
    const p = model.forwardBatchAsync([{ tokens: [1], cache: a }]);
    expect(() => model.forwardBatch([{ tokens: [1], cache: b }, { tokens: [1], cache: a }])).toThrow(expect.objectContaining({ code: 'ERR_BUSY' }));
    await p;
    // the failed call held nothing: both caches are free again
    expect(model.forwardBatch([{ tokens: [1], cache: b }, { tokens: [1], cache: a }])).toHaveLength(2);
  });
});
