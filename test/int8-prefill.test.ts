/**
 * activations 'int8-prefill': prompt rows take the int8-activation kernels
 * (W4A8 for int4 weights, W8A8 for int8), decode rows keep f32 activations,
 * on one stored weight. Each path must give exactly the bits of the layer
 * built for that path alone, in every way a call can be marked, on every
 * ISA; and a model quantized that way prefills like the int8 model and
 * decodes like the weight-only one.
 */
import { describe, expect, it } from 'vitest';
import { Linear, QLinear, QuantkitError, Tensor, availableIsas, quantize, selectIsa } from '../lib/index.js';
import { quantizeModel } from '../lib/nn/quantize-model.js';
import { randomF32, restoreRuntimeAfterAll } from './helpers.js';
import { TinyLM } from './tiny-lm.js';

restoreRuntimeAfterAll();

const N = 29;
const K = 172; // int4 g32: a shorter last group (5 x 32 + 12)

const lin = new Linear(new Tensor('f32', [N, K], randomF32(N * K, 21, -0.5, 0.5)), new Tensor('f32', [N], randomF32(N, 22)));
const x = (rows: number, seed = 23) => new Tensor('f32', [rows, K], randomF32(rows * K, seed, -2, 2));

const formats = [
  { name: 'int4 g32 sym', q: quantize(lin.weight, { bits: 4, groupSize: 32 }) },
  { name: 'int4 g32 asym', q: quantize(lin.weight, { bits: 4, groupSize: 32, scheme: 'asymmetric' }) },
  { name: 'int8 per channel', q: quantize(lin.weight, { bits: 8 }) },
];

describe("QLinear activations 'int8-prefill'", () => {
  for (const isa of availableIsas()) {
    for (const { name, q } of formats) {
      it(`${isa}, ${name}: prompt rows give the int8 layer's bits, decode rows the weight-only layer's`, async () => {
        selectIsa(isa);
        const both = new QLinear(q, lin.bias, { activations: 'int8-prefill' });
        const int8 = new QLinear(q, lin.bias, { activations: 'int8' });
        const wonly = new QLinear(q, lin.bias);
        expect(both.activations).toBe('int8-prefill');
        for (const rows of [1, 2, 5, 16]) {
          const xs = x(rows, 30 + rows);
          // plain calls: more than one row is a prompt
          expect(both.forward(xs).data, `${rows} rows`).toEqual((rows > 1 ? int8 : wonly).forward(xs).data);
          expect((await both.forwardAsync(xs)).data, `${rows} rows, async`).toEqual((rows > 1 ? int8 : wonly).forward(xs).data);
          // batched decode rows (rowInvariant true) stay weight-only at any count
          const dec = both.forward(xs, undefined, { rowInvariant: true }).data;
          expect(dec, `${rows} decode rows`).toEqual(wonly.forward(xs, undefined, { rowInvariant: true }).data);
          // prompt rows of a batch ('prefill') are int8 at any count, one row too
          const pre = both.forward(xs, undefined, { rowInvariant: 'prefill' }).data;
          expect(pre, `${rows} prompt rows`).toEqual(int8.forward(xs, undefined, { rowInvariant: 'prefill' }).data);
          expect((await both.forwardAsync(xs, undefined, { rowInvariant: 'prefill' })).data).toEqual(pre);
        }
        // the two paths really differ (the test would pass vacuously otherwise)
        const xs = x(4);
        expect(int8.forward(xs).data).not.toEqual(wonly.forward(xs).data);
      });
    }
  }

  it('writes into out on both paths and keeps the weight-only error checks', () => {
    const both = new QLinear(formats[0]!.q, null, { activations: 'int8-prefill' });
    for (const rows of [1, 3]) {
      const out = new Float32Array(rows * N);
      const y = both.forward(x(rows), out);
      expect(y.data).toBe(out);
    }
    expect(() => both.forward(new Tensor('f32', [2, K + 2], new Float32Array(2 * (K + 2))))).toThrow(/x/);
    expect(() => both.forward('x' as never)).toThrow(TypeError);
    // prompt rows hold the int8 path's finiteness check
    const bad = new Float32Array(2 * K);
    bad[K + 3] = Number.NaN;
    let err: unknown;
    try {
      both.forward(new Tensor('f32', [2, K], bad));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(QuantkitError);
    expect((err as QuantkitError).code).toBe('ERR_NONFINITE');
  });

  it("needs what 'int8' needs of the weight, and names the option", () => {
    const g8 = quantize(lin.weight, { bits: 8, granularity: 'group', groupSize: 32, scheme: 'asymmetric' });
    expect(() => new QLinear(g8, null, { activations: 'int8-prefill' })).toThrow(QuantkitError);
    expect(() => QLinear.fromLinear(lin, { bits: 8, scheme: 'asymmetric', activations: 'int8-prefill' })).toThrow(/options\.scheme/);
    expect(() => new QLinear(formats[0]!.q, null, { activations: 'int9' as never })).toThrow(RangeError);
    expect(() => new QLinear(formats[0]!.q, null, { activations: 'int9' as never })).toThrow(/int8-prefill/);
    expect(() => new QLinear(formats[0]!.q, null, { activations: 'int8-prefill', threshold: 3 })).toThrow(/threshold/);
  });
});

describe("quantizeModel activations 'int8-prefill'", () => {
  for (const weights of ['int4', 'int8'] as const) {
    it(`${weights}: a prompt's logits are the int8 model's, the next token's the weight-only model's`, () => {
      const build = (activations: 'none' | 'int8' | 'int8-prefill') => {
        const m = new TinyLM({ seed: 5 });
        quantizeModel(m, { weights, activations });
        return m;
      };
      const [both, int8, wonly] = [build('int8-prefill'), build('int8'), build('none')];
      const prompt = [3, 1, 4, 1, 5, 9, 2, 6];
      const c = [both.createCache(), int8.createCache(), wonly.createCache()];
      const p = [both.forward(prompt, c[0]!), int8.forward(prompt, c[1]!), wonly.forward(prompt, c[2]!)];
      expect(p[0]!.data).toEqual(p[1]!.data);
      expect(p[0]!.data).not.toEqual(p[2]!.data);
      const d = [both.forward([7], c[0]!), wonly.forward([7], c[2]!)];
      expect(d[0]!.data).toEqual(d[1]!.data);
    });
  }
  it('rejects it with a grouped int8 weight, as int8', () => {
    expect(() => quantizeModel(new TinyLM(), { weights: 'int8', granularity: 'group', groupSize: 32, activations: 'int8-prefill' })).toThrow(/options\.granularity/);
  });
});
