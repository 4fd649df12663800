/**
 * Calibration one block at a time (BlockInputs, lib/nn/calibrate.ts): each
 * block's statistics from the stored hidden states between blocks equal,
 * bit for bit, those of whole forwards from the embedding, for every
 * decoder architecture; quantizeModel runs each block a bounded number of
 * times per window (O(blocks), not O(blocks^2)); and the block runners
 * refuse bad arguments.
 */
import { describe, expect, it } from 'vitest';
import { type CausalLM, type DecoderLM, Linear, type Module, QLinear, Tensor, quantizeModel } from '../lib/index.js';
import { BlockInputs, type CalibratableModel, type StageLayer, collectHessians, stageOf } from '../lib/nn/calibrate.js';
import { codegenModel, gpt2Model, llamaModel, optModel } from './tiny-models.js';

const MODELS: [string, () => CausalLM][] = [
  ['llama (GQA)', () => llamaModel({ D: 32, F: 48, L: 3, nH: 4, nKv: 2, V: 50, P: 64, seed: 3 })],
  ['gpt2', () => gpt2Model(4)],
  ['opt (pre-LN)', () => optModel(5, true)],
  ['opt (post-LN)', () => optModel(6, false)],
  ['codegen', () => codegenModel(7)],
];

/** The Linears of each numbered block, as quantizeModel groups them. */
function blockStages(model: Module): Map<string, StageLayer[]> {
  const mods = new Map(model.namedModules());
  const out = new Map<string, StageLayer[]>();
  for (const [name, m] of mods) {
    if (!(m instanceof Linear) || stageOf(name) === name) continue;
    const dot = name.lastIndexOf('.');
    const key = stageOf(name);
    if (!out.has(key)) out.set(key, []);
    out.get(key)!.push({ name, parent: mods.get(name.slice(0, dot))!, local: name.slice(dot + 1), layer: m });
  }
  return out;
}

const windows = [Array.from({ length: 23 }, (_, i) => (i * 7 + 3) % 40), Array.from({ length: 40 }, (_, i) => (i * 11 + 5) % 40), [9, 4]];

describe('BlockInputs', () => {
  for (const [label, make] of MODELS) {
    it(`${label}: every block's statistics equal those of whole forwards, bit for bit`, () => {
      const model = make() as CalibratableModel;
      const inputs = BlockInputs.of(model, windows)!;
      expect(inputs).not.toBeNull();
      const stages = blockStages(model);
      expect(stages.size).toBe((model as DecoderLM).blocks);
      for (const [key, layers] of stages) {
        const b = inputs.blockOf(key);
        expect(b, key).toBeGreaterThanOrEqual(0);
        const viaBlocks = inputs.collect(b, layers);
        const viaForwards = collectHessians(model, layers, windows);
        viaBlocks.forEach((s, i) => {
          expect(s.tokens, layers[i]!.name).toBe(65);
          expect(s.h, layers[i]!.name).toEqual(viaForwards[i]!.h);
          expect(s.absMean, layers[i]!.name).toEqual(viaForwards[i]!.absMean);
          expect(s.inputGroup, layers[i]!.name).toBe(viaForwards[i]!.inputGroup);
        });
      }
      expect(inputs.blockOf('lm_head')).toBe(-1);
    });
  }

  it('quantizeModel runs each block (2 * blocks - 1) times per window, and gives what whole forwards give', () => {
    const make = () => llamaModel({ D: 32, F: 48, L: 4, nH: 4, nKv: 4, V: 50, P: 64, seed: 9 });
    const model = make() as DecoderLM;
    let calls = 0;
    const run = model.blockForCalibration.bind(model);
    model.blockForCalibration = (i, x, cache) => (calls++, run(i, x, cache));
    const tokens = windows.flat();
    const opts = { weights: 'int4', groupSize: 16, calibration: { tokens, context: 32 } } as const;
    quantizeModel(model, opts);
    // 3 windows of 32, 32, 1 tokens -> 2 windows (a last window of one token is dropped)
    expect(calls).toBe(2 * (2 * 4 - 1));
    // the same model without block runners calibrates through whole forwards: the same weights
    const plain = make() as CalibratableModel;
    plain.blockForCalibration = undefined;
    quantizeModel(plain, opts);
    const a = new Map(model.namedModules()), b = new Map(plain.namedModules());
    for (const [n, m] of a) if (m instanceof QLinear) expect(m.qweight.data, n).toEqual((b.get(n) as QLinear).qweight.data);
  });

  it('the block runners refuse bad arguments', () => {
    const model = llamaModel({ D: 32, F: 48, L: 2, nH: 4, nKv: 4, V: 50, P: 64, seed: 1 }) as DecoderLM;
    const cache = model.createCache(8);
    const x = model.embedForCalibration([1, 2, 3], cache);
    expect(x.shape).toEqual([3, 32]);
    expect(model.blockForCalibration(1, model.blockForCalibration(0, x, cache), cache).shape).toEqual([3, 32]);
    expect(() => model.blockForCalibration(2, x, cache)).toThrow(/'i' must be a block index in \[0, 2\)/);
    expect(() => model.blockForCalibration(-1, x, cache)).toThrow(RangeError);
    expect(() => model.blockForCalibration(0, x.data as never, cache)).toThrow(TypeError);
    expect(() => model.blockForCalibration(0, x, {} as never)).toThrow(/'cache' must be a cache of this model/);
    expect(() => model.blockForCalibration(0, x, llamaModel({ D: 32, F: 48, L: 3, nH: 4, nKv: 4, V: 50, P: 64, seed: 1 }).createCache(8))).toThrow(TypeError);
    expect(() => model.embedForCalibration(Array.from({ length: 9 }, () => 1), cache)).toThrow(/holds 8 positions, the sequence has 9/);
    expect(() => model.blockForCalibration(0, new Tensor('f32', [9, 32], new Float32Array(288)), cache)).toThrow(RangeError);
  });
});
