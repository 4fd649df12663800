/**
 * Layers that read the same input (a block's q/k/v, gate/up) as one native
 * call that quantizes the input to int8 once (QLinear.forwardShared,
 * gemmW4A8Multi / gemmW8A8Multi): every output bit for bit what the layer's
 * own forward gives, at every ISA and thread count, for every weight layout
 * the int8-activation paths take (group sizes that differ, a shorter last
 * group, f16 scales, zero points, biases, rows for both W4A8 kernels); the
 * cases that do not qualify run one by one; models give the same logits
 * with and without the sharing (sync, async, batched with prompt and decode
 * rows); bad input.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Linear, QLinear, QuantkitError, Tensor, availableIsas, quantizeModel, selectIsa, setThreads } from '../lib/index.js';
import { addon } from '../lib/binding.js';
import type { QLinearOptions } from '../lib/nn/linear.js';
import type { DecoderLM } from '../lib/models/causal-lm.js';
import { randomF32, restoreRuntimeAfterAll } from './helpers.js';
import { DECODER_FORMATS, llamaModel, optModel } from './tiny-models.js';

restoreRuntimeAfterAll();
afterEach(() => vi.restoreAllMocks());

function layer(N: number, K: number, seed: number, o: QLinearOptions, bias = false): QLinear {
  const w = new Tensor('f32', [N, K], randomF32(N * K, seed));
  const b = bias ? new Tensor('f32', [N], randomF32(N, seed + 1)) : null;
  return QLinear.fromLinear(new Linear(w, b), o);
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length), y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

const W4 = (groupSize: number, extra: Partial<QLinearOptions> = {}): QLinearOptions => ({ bits: 4, groupSize, activations: 'int8', ...extra });
const W8: QLinearOptions = { bits: 8, activations: 'int8' };
const PER_CHANNEL: QLinearOptions = { bits: 4, granularity: 'channel', activations: 'int8' };

// [name, K, layers' options, Ns]
const CASES: [string, number, QLinearOptions[], number[]][] = [
  ['W4A8 g32, q/k/v widths', 96, [W4(32), W4(32), W4(32)], [40, 16, 16]],
  ['W4A8 g32 asymmetric, f16 scales', 128, [W4(32, { scheme: 'asymmetric', scaleDtype: 'f16' }), W4(32, { scheme: 'asymmetric', scaleDtype: 'f16' })], [33, 50]],
  ['W4A8 g64 with a shorter last group (K = 160)', 160, [W4(64), W4(64)], [24, 17]],
  ['W4A8 g16 (not a multiple of 32)', 48, [W4(16), W4(16), W4(16)], [8, 8, 20]],
  ['W4A8, group sizes that differ (one by one)', 128, [W4(32), W4(128)], [16, 24]],
  ['W4A8 per channel', 70, [PER_CHANNEL, PER_CHANNEL], [12, 31]],
  ['W8A8', 100, [W8, W8, W8], [37, 9, 9]],
  ['W8A8 per tensor', 64, [{ ...W8, granularity: 'tensor' }, W8], [16, 21]],
];

describe('QLinear.forwardShared: one quantization of x, the same bits as each layer alone', () => {
  for (const isa of availableIsas()) {
    it(`${isa}: every case, M = 1, 3, 7, 40, threads 1 and 2, sync and async`, async () => {
      selectIsa(isa);
      for (const [name, K, opts, Ns] of CASES) {
        const layers = opts.map((o, i) => layer(Ns[i]!, K, 100 * i + K, o, i % 2 === 0));
        for (const threads of [1, 2]) {
          setThreads(threads);
          for (const M of [1, 3, 7, 40]) {
            const x = new Tensor('f32', [M, K], randomF32(M * K, M + K, -3, 3));
            const want = layers.map((l) => l.forward(x).data);
            const outs = layers.map((l) => new Float32Array(M * l.outFeatures));
            const got = QLinear.forwardShared(layers, x, outs)!;
            expect(got, name).not.toBeNull();
            got.forEach((y, i) => {
              expect(y.data, `${name} M=${M} threads=${threads}: layer ${i} writes its out`).toBe(outs[i]);
              expect(y.shape).toEqual([M, layers[i]!.outFeatures]);
              expect(sameBits(y.data, want[i]!), `${name} M=${M} threads=${threads}: layer ${i}`).toBe(true);
            });
            const asyncGot = await QLinear.forwardSharedAsync(layers, x, layers.map(() => undefined))!;
            asyncGot.forEach((y, i) => expect(sameBits(y.data, want[i]!), `${name} async M=${M}: layer ${i}`).toBe(true));
          }
        }
      }
    });
  }

  it('layers that cannot share are left to the caller (null)', () => {
    const K = 64;
    const x = new Tensor('f32', [4, K], randomF32(4 * K, 1));
    const w4 = layer(8, K, 1, W4(32)), w8 = layer(8, K, 2, W8);
    const f32act = layer(8, K, 3, { bits: 4, groupSize: 32 });
    const llm = layer(8, K, 4, { bits: 8, activations: 'llm.int8' });
    const plain = new Linear(new Tensor('f32', [8, K], randomF32(8 * K, 5)));
    const none = [undefined, undefined];
    expect(QLinear.forwardShared([w4], x, [undefined])).toBeNull(); // one layer: nothing to share
    expect(QLinear.forwardShared([w4, w4, w4, w4, w4], x, [...none, ...none, undefined])).toBeNull(); // more than 4
    expect(QLinear.forwardShared([w4, w8], x, none)).toBeNull(); // W4A8 with W8A8
    expect(QLinear.forwardShared([w4, f32act], x, none)).toBeNull(); // f32 activations
    expect(QLinear.forwardShared([w8, llm], x, none)).toBeNull(); // LLM.int8()
    expect(QLinear.forwardShared([w8, plain], x, none)).toBeNull(); // a float Linear
    expect(QLinear.forwardSharedAsync([w4, plain], x, none)).toBeNull();
    // 'int8-prefill': prompt rows share, a decode row keeps f32 activations
    const p1 = layer(8, K, 6, { bits: 4, groupSize: 32, activations: 'int8-prefill' });
    const p2 = layer(12, K, 7, { bits: 4, groupSize: 32, activations: 'int8-prefill' });
    const shared = QLinear.forwardShared([p1, p2], x, none)!;
    expect(sameBits(shared[1]!.data, p2.forward(x).data)).toBe(true);
    expect(QLinear.forwardShared([p1, p2], new Tensor('f32', [1, K], x.data.subarray(0, K)), none)).toBeNull();
    expect(QLinear.forwardShared([p1, p2], x, none, { rowInvariant: true })).toBeNull();
    expect(QLinear.forwardShared([p1, p2], x, none, { rowInvariant: 'prefill' })).not.toBeNull();
  });

  it('bad input: not arrays, NaN in x, a wrong width, outs that overlap or are too short', () => {
    const l2 = [layer(8, 64, 1, W4(32)), layer(8, 64, 2, W4(32))];
    const x0 = new Tensor('f32', [2, 64], randomF32(128, 3));
    expect(() => QLinear.forwardShared('ab' as never, x0, [undefined, undefined])).toThrow(/QLinear.forwardShared: 'layers' must be an array/);
    expect(() => QLinear.forwardShared(l2, x0, [undefined])).toThrow(/'outs' must be an array of 2/);
    expect(() => QLinear.forwardSharedAsync(l2, x0, null as never)).toThrow(RangeError);
    const K = 64;
    const layers = [layer(8, K, 1, W4(32)), layer(8, K, 2, W4(32))];
    const w8 = [layer(8, K, 3, W8), layer(8, K, 4, W8)];
    const bad = randomF32(2 * K, 9);
    bad[K + 5] = NaN;
    for (const ls of [layers, w8]) {
      const x = new Tensor('f32', [2, K], bad);
      const e = (() => { try { QLinear.forwardShared(ls, x, [undefined, undefined]); } catch (err) { return err; } })();
      expect(e).toBeInstanceOf(QuantkitError);
      expect(e).toMatchObject({ code: 'ERR_NONFINITE', message: expect.stringMatching(/'x' holds NaN at index 69/) });
      const x2 = new Tensor('f32', [2, K], randomF32(2 * K, 3));
      expect(() => QLinear.forwardShared(ls, new Tensor('f32', [2, 32], randomF32(64, 1)), [undefined, undefined])).toThrow(/last dimension 32, but the weight has K = 64/);
      const buf = new Float32Array(40);
      expect(() => QLinear.forwardShared(ls, x2, [buf.subarray(0, 16), buf.subarray(8, 24)])).toThrow(/'outs\[1\]' overlaps outs\[0\]/);
      expect(() => QLinear.forwardShared(ls, x2, [new Float32Array(15), undefined])).toThrow(/'out' has 15 values/);
    }
  });

  it('the raw entry points check their arguments (no crash)', () => {
    const K = 64, N = 8, M = 2;
    const l = layer(N, K, 1, W4(32));
    const q = l.qweight;
    const x = randomF32(M * K, 1), y = new Float32Array(M * N);
    const w = q.data as Uint8Array, s = q.scales;
    expect(() => addon.gemmW4A8Multi(x, M, K, [], [], [], [], [], [], [])).toThrow(/'ws' must hold 1 to 4 weights/);
    expect(() => addon.gemmW4A8Multi(x, M, K, [w, w, w, w, w], [N, N, N, N, N], [32, 32, 32, 32, 32], [s, s, s, s, s], [null, null, null, null, null], [null, null, null, null, null], [y, y, y, y, y])).toThrow(RangeError);
    expect(() => addon.gemmW4A8Multi(x, M, K, [w], [N, N], [32], [s], [null], [null], [y])).toThrow(/'Ns' has 2 elements, expected 1/);
    expect(() => addon.gemmW4A8Multi(x, M, K, [w], [N + 1], [32], [s], [null], [null], [y])).toThrow(/'ws\[0\]' has/);
    expect(() => addon.gemmW4A8Multi(x, M, K, [w], [N], [32], [new Float64Array(16) as never], [null], [null], [y])).toThrow(TypeError);
    expect(() => addon.gemmW4A8Multi(x, M, K, [w], [N], [31], [s], [null], [null], [y])).toThrow(/'groupSizes\[0\]' must be even/);
    expect(() => addon.gemmW4A8Multi(x, M, K, [w], [N], [32], [s], [null], [null], [new Float32Array(3)])).toThrow(/'ys\[0\]'/);
    expect(() => addon.gemmW4A8Multi(x, M, K, 'w' as never, [N], [32], [s], [null], [null], [y])).toThrow(/'ws' must be an array/);
    expect(addon.gemmW4A8Multi(x, M, K, [w], [N], [32], [s], [null], [null], [y])).toBe(-1);
    const l8 = layer(N, K, 2, W8);
    const q8 = l8.qweight.data as Int8Array, s8 = l8.qweight.scales, rs = new Int32Array(N);
    addon.w8a8Rowsums(q8, N, K, rs);
    expect(() => addon.gemmW8A8Multi(x, M, K, [], [], [], [], [], [])).toThrow(/'qs' must hold 1 to 4 weights/);
    expect(() => addon.gemmW8A8Multi(x, M, K, [q8], [N], [s8], [new Int32Array(3)], [null], [y])).toThrow(/'rowsums\[0\]'/);
    expect(() => addon.gemmW8A8Multi(x, M, K + 1, [q8], [N], [s8], [rs], [null], [y])).toThrow(/'x'/);
    expect(addon.gemmW8A8Multi(x, M, K, [q8], [N], [s8], [rs], [null], [y])).toBe(-1);
  });
});

describe('models: sharing q/k/v and gate/up changes no bit', () => {
  const models = {
    'Llama (GQA)': () => llamaModel({ D: 64, F: 96, L: 2, nH: 4, nKv: 2, V: 50, P: 64, seed: 3 }),
    OPT: () => optModel(4, true),
  };
  const formats = { W8A8: DECODER_FORMATS.W8A8!, 'W4A8 g32': DECODER_FORMATS['W4A8 g32']!, 'int4 int8-prefill': { weights: 'int4', groupSize: 32, activations: 'int8-prefill' } as const };
  for (const [mname, make] of Object.entries(models)) {
    for (const [fname, q] of Object.entries(formats)) {
      it(`${mname} ${fname}: forward, forwardAsync and a batch of prompt + decode rows`, async () => {
        const model = make() as DecoderLM;
        quantizeModel(model, q);
        const prompt = [1, 5, 9, 2, 7, 3, 11];
        const run = async () => {
          const c = model.createCache(16);
          const a = model.forward(prompt, c, { logits: 'all' }).data.slice();
          const b = model.forward([4], c).data.slice();
          const c2 = model.createCache(16);
          const d = (await model.forwardAsync(prompt, c2, { logits: 'all' })).data.slice();
          // one sequence decoding while another's prompt arrives
          const e = model.forwardBatch([{ tokens: [6], cache: c2 }, { tokens: [8, 2, 5], cache: model.createCache(16) }], { logits: 'last' }).map((t) => t.data.slice());
          return [a, b, d, ...e];
        };
        const spy = vi.spyOn(QLinear, 'forwardShared');
        const shared = await run();
        expect(spy.mock.results.some((r) => r.value !== null), 'the shared path ran').toBe(true);
        spy.mockReturnValue(null);
        vi.spyOn(QLinear, 'forwardSharedAsync').mockReturnValue(null);
        const alone = await run();
        shared.forEach((v, i) => expect(sameBits(v, alone[i]!), `output ${i}`).toBe(true));
      });
    }
  }
});
