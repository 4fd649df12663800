/**
 * A decoder cache keeps the activations between a block's GEMMs in reusable
 * buffers (lib/nn/scratch.ts). These tests check that reuse never leaks a
 * value from one forward into another: a cache that served a longer prompt,
 * then decode steps, then was reset, gives the bits of a fresh cache, for
 * every weight format, sync and async; and the `out` arguments are checked.
 */
import { describe, expect, it } from 'vitest';
import { quantizeModel, type QuantizeModelOptions } from '../lib/nn/quantize-model.js';
import { Embedding } from '../lib/nn/embedding.js';
import { Linear } from '../lib/nn/linear.js';
import { normRows } from '../lib/ops/elementwise.js';
import { causalAttentionOp } from '../lib/ops/attention.js';
import { Tensor } from '../lib/tensor.js';
import { Scratch } from '../lib/nn/scratch.js';
import type { CausalLM, DecoderLM, KVCache } from '../lib/models/causal-lm.js';
import { DECODER_FORMATS as FORMATS, codegenModel, gpt2Model, llamaModel, optModel } from './tiny-models.js';


const same = (a: Float32Array, b: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

/**
 * Run `long`, then decode steps, then reset and run `short` on one cache:
 * the logits must be a fresh cache's bits, for the prompt, for the decode
 * steps after it, and through forwardAsync.
 */
async function expectReuseMatchesFresh(model: CausalLM, long: number[], short: number[], steps: number[], capacity: number): Promise<void> {
  const wantShort = model.forward(short, model.createCache(capacity)).data;
  const reused = model.createCache(capacity);
  model.forward(long, reused);
  for (let s = 0; s < 3; s++) model.forward([s + 1], reused);
  reused.reset();
  expect(same(model.forward(short, reused).data, wantShort)).toBe(true);
  // decode on the reused cache == decode on a fresh one
  const f = model.createCache(capacity);
  model.forward(short, f);
  for (const t of steps) expect(same(model.forward([t], reused).data, model.forward([t], f).data)).toBe(true);
  reused.reset();
  expect(same((await model.forwardAsync(short, reused)).data, wantShort)).toBe(true);
}

describe('scratch reuse across forwards on one cache', () => {
  for (const [name, q] of Object.entries(FORMATS)) {
    it(`${name}: a reused cache gives a fresh cache's logits (prompt, decode, reset, shorter prompt), sync and async`, async () => {
      const model = llamaModel({ D: 64, F: 160, L: 2, nH: 4, nKv: 2, V: 96, P: 128, seed: 7 });
      if (q) quantizeModel(model, q);
      const long = Array.from({ length: 70 }, (_, i) => (i * 37 + 5) % 96);
      const short = Array.from({ length: 9 }, (_, i) => (i * 11 + 3) % 96);
      await expectReuseMatchesFresh(model, long, short, [4, 50, 17], 100);
    });
  }
});

// Every decoder architecture (each places its activations in the scratch
// its own way): positions up to 60 (the learned-position models have 64).
const ARCHS: Record<string, () => CausalLM> = {
  'GPT-2': () => gpt2Model(3),
  'OPT pre-LN': () => optModel(4, true),
  'OPT post-LN': () => optModel(5, false),
  CodeGen: () => codegenModel(6),
};

describe('scratch reuse, every decoder architecture', () => {
  for (const [name, make] of Object.entries(ARCHS)) {
    for (const q of [null, { weights: 'int8', activations: 'int8' } as QuantizeModelOptions]) {
      it(`${name}${q ? ' W8A8' : ''}: a reused cache gives a fresh cache's logits`, async () => {
        const model = make();
        if (q) quantizeModel(model, { ...q, exclude: [] });
        const long = Array.from({ length: 50 }, (_, i) => (i * 7 + 5) % 40);
        const short = Array.from({ length: 6 }, (_, i) => (i * 11 + 3) % 40);
        await expectReuseMatchesFresh(model, long, short, [4, 30, 17], 60);
      });
    }
  }
});

describe('out arguments', () => {
  it('Linear.forward writes into out, and checks it', () => {
    const w = new Tensor('f32', [3, 2], Float32Array.of(1, 2, 3, 4, 5, 6));
    const lin = new Linear(w);
    const x = new Tensor('f32', [2, 2], Float32Array.of(1, 0, 0, 1));
    const out = new Float32Array(6).fill(NaN);
    const y = lin.forward(x, out);
    expect(y.data).toBe(out);
    expect(Array.from(out)).toEqual([1, 3, 5, 2, 4, 6]);
    expect(() => lin.forward(x, new Float32Array(5))).toThrow(/'out' has 5 values, the output has 2 x 3/);
    expect(() => lin.forward(x, [1] as unknown as Float32Array)).toThrow(TypeError);
    const buf = new Float32Array(10);
    expect(() => lin.forward(new Tensor('f32', [2, 2], buf.subarray(0, 4)), buf.subarray(4, 10))).toThrow(/must not share memory with 'x'/);
  });

  it('forward writes the logits into options.out (one buffer for every decode step), and checks it', async () => {
    const model = llamaModel({ D: 64, F: 160, L: 2, nH: 4, nKv: 2, V: 96, P: 128, seed: 7 });
    const prompt = [5, 9, 17, 3];
    const a = model.createCache(), b = model.createCache();
    const wantPrompt = model.forward(prompt, a, { logits: 'last' }).data;
    const outPrompt = new Float32Array(96);
    expect(model.forward(prompt, b, { logits: 'last', out: outPrompt }).data).toBe(outPrompt);
    expect(same(outPrompt, wantPrompt)).toBe(true);
    const buf = new Float32Array(96);
    for (const t of [4, 50, 17]) {
      const want = model.forward([t], a).data;
      const got = (await model.forwardAsync([t], b, { out: buf })).data;
      expect(got).toBe(buf);
      expect(same(got, want)).toBe(true);
    }
    expect(() => model.forward([1, 2], model.createCache(), { out: new Float32Array(96) })).toThrow(/'options.out' has 96 floats, the logits are 2 x 96/);
    expect(() => model.forward([1], model.createCache(), { out: [] as unknown as Float32Array })).toThrow(TypeError);
  });

  it('forwardBatch writes the logits into options.out (prompt rows first), the same bits as without, and checks it', () => {
    const model = llamaModel({ D: 64, F: 160, L: 2, nH: 4, nKv: 2, V: 96, P: 128, seed: 7 }) as unknown as DecoderLM;
    const V = 96;
    const caches = () => [model.createCache(), model.createCache(), model.createCache()];
    const a = caches(), b = caches();
    // item 1 is a prompt chunk: its row comes first in out, then items 0 and 2
    const items = (c: KVCache[], step: number) => [
      { tokens: [3 + step], cache: c[0]!, prompt: false },
      { tokens: [7, 8 + step, 9], cache: c[1]!, prompt: true },
      { tokens: [11 + step], cache: c[2]!, prompt: false },
    ];
    const out = new Float32Array(3 * V).fill(NaN);
    for (let step = 0; step < 3; step++) {
      const want = model.forwardBatch(items(a, step), { logits: 'last' });
      const got = model.forwardBatch(items(b, step), { logits: 'last', out });
      got.forEach((t, i) => {
        expect(t.data.buffer).toBe(out.buffer);
        expect(same(t.data, want[i]!.data), `step ${step} item ${i}`).toBe(true);
      });
      expect(got[1]!.data.byteOffset).toBe(out.byteOffset);
      expect(got[0]!.data.byteOffset).toBe(out.byteOffset + 4 * V);
    }
    const all = new Float32Array(5 * V);
    const rows = model.forwardBatch(items(caches(), 0), { out: all });
    expect(rows.map((t) => t.shape)).toEqual([[1, V], [3, V], [1, V]]);
    expect(() => model.forwardBatch(items(caches(), 0), { logits: 'last', out: all })).toThrow(/'options.out' has 480 floats, the logits are 3 x 96/);
    expect(() => model.forwardBatch(items(caches(), 0), { out: [] as unknown as Float32Array })).toThrow(TypeError);
  });

  it('Embedding.forward writes into out, and checks it', () => {
    const emb = new Embedding(new Tensor('f32', [3, 2], Float32Array.of(1, 2, 3, 4, 5, 6)));
    const out = new Float32Array(4).fill(NaN);
    expect(emb.forward([2, 0], out).data).toBe(out);
    expect(Array.from(out)).toEqual([5, 6, 1, 2]);
    expect(() => emb.forward([2, 0], new Float32Array(3))).toThrow(/'out' must be a Float32Array of ids.length x dim = 4 values/);
  });

  it('normRows and the attention op check theirs', () => {
    const w = Float32Array.of(1, 1);
    expect(() => normRows(new Float32Array(4), 2, { kind: 'rms', weight: w, eps: 1e-5 }, new Float32Array(3))).toThrow(/'out' has 3 values/);
    const q = new Float32Array(4);
    const a = { q, T: 1, pos0: 0, keys: new Float32Array(64 * 4), values: new Float32Array(4), nHeads: 1, nKvHeads: 1, headDim: 4, scale: 1 };
    expect(() => causalAttentionOp(a, new Float32Array(3))).toThrow(/'out' has 3 floats/);
    expect(() => causalAttentionOp(a, q)).toThrow(/must not share memory with 'q'/);
    const o = new Float32Array(4).fill(NaN);
    expect(causalAttentionOp(a, o)).toBe(o);
    expect(Array.from(o)).toEqual([0, 0, 0, 0]);
  });
});

describe('Scratch slots', () => {
  it('hand out the same view for the same size, and views of the grown buffer after a larger request', () => {
    const sc = new Scratch();
    const a = sc.f32('q', 64);
    expect(sc.f32('q', 64)).toBe(a); // a decode step asks again: no new view
    const small = sc.f32('q', 16);
    expect(small.buffer).toBe(a.buffer);
    expect(small.length).toBe(16);
    const big = sc.f32('q', 256); // grows the slot
    expect(big.buffer).not.toBe(a.buffer);
    const again = sc.f32('q', 16);
    expect(again.buffer).toBe(big.buffer); // never the old buffer
    expect(sc.holds('q', again)).toBe(true);
    expect(sc.f32('k', 16).buffer).not.toBe(again.buffer);
  });
});
