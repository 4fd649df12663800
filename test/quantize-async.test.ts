/**
 * The async form of calibrated quantization (quantizeModelAsync,
 * gptqQuantizeAsync, QLinear.fromLinearAsync): the same generators as the
 * blocking forms, driven with the native calls on worker threads, so:
 * - every method gives the blocking form's layers and folded norms, bit for
 *   bit, on every decoder architecture (and on stories260K when present);
 * - the event loop runs while it works (callbacks fire before it settles);
 * - bad options reject before anything changes, and a failure part way
 *   leaves the model's layers in place (no probe left behind).
 */
import { describe, expect, it } from 'vitest';
import {
  type CausalLM,
  Linear,
  type Module,
  QLinear,
  type QuantizeModelOptions,
  QuantizedTensor,
  Tensor,
  gptqQuantize,
  gptqQuantizeAsync,
  loadModelSync,
  quantizeModel,
  quantizeModelAsync,
  quantizeToBudget,
  quantizeToBudgetAsync,
} from '../lib/index.js';
import { readTextFile, tokenizeText } from '../lib/cli/load.js';
import { fixture, requireFixtures } from './fixtures.js';
import { codegenModel, gpt2Model, llamaModel, optModel } from './tiny-models.js';

const MODELS: [string, () => CausalLM][] = [
  ['llama (GQA)', () => llamaModel({ D: 32, F: 48, L: 2, nH: 4, nKv: 2, V: 50, P: 64, seed: 3 })],
  ['llama (MHA)', () => llamaModel({ D: 32, F: 40, L: 2, nH: 4, nKv: 4, V: 50, P: 64, seed: 4 })],
  ['gpt2', () => gpt2Model(4)],
  ['opt (pre-LN)', () => optModel(5, true)],
  ['opt (post-LN)', () => optModel(6, false)],
  ['codegen', () => codegenModel(7)],
];

const tokens = Array.from({ length: 90 }, (_, i) => (i * 7 + 3) % 40);
const calibration = { tokens, context: 32 };
const METHODS: [string, QuantizeModelOptions][] = [
  ['round to nearest, int4 g16', { weights: 'int4', groupSize: 16 }],
  ['gptq int4 g16 asym', { weights: 'int4', scheme: 'asymmetric', groupSize: 16, calibration }],
  ['gptq int4 sym, no act order, f16 scales', { weights: 'int4', scheme: 'symmetric', groupSize: 16, scaleDtype: 'f16', gptq: { actOrder: false }, calibration }],
  ['gptq sequential', { weights: 'int4', groupSize: 16, gptq: { sequential: true }, calibration }],
  ['gptq int8 per channel', { weights: 'int8', calibration }],
  ['awq', { weights: 'int4', groupSize: 16, method: 'awq', calibration }],
  ['awq+gptq', { weights: 'int4', groupSize: 16, method: 'awq+gptq', calibration }],
];

/** Every tensor of the model (quantized codes, scales, zero points, float weights and norms) by name. */
function snapshot(model: Module): Map<string, unknown[]> {
  const out = new Map<string, unknown[]>();
  for (const [name, t] of model.namedTensors()) {
    if (t instanceof QuantizedTensor) out.set(name, [t.data, t.scaleData, t.zeroPoints]);
    else out.set(name, [t.data]);
  }
  return out;
}

describe('quantizeModelAsync', () => {
  for (const [label, make] of MODELS) {
    it(`${label}: every method gives the blocking form's model, bit for bit`, async () => {
      for (const [method, opts] of METHODS) {
        const a = make(), b = make();
        const sa = quantizeModel(a, opts);
        const sb = await quantizeModelAsync(b, opts);
        expect(sb.replaced, method).toEqual(sa.replaced);
        expect(sb.scaled.map((g) => g.alpha), method).toEqual(sa.scaled.map((g) => g.alpha));
        const ta = snapshot(a), tb = snapshot(b);
        expect([...tb.keys()], method).toEqual([...ta.keys()]);
        for (const [n, v] of ta) expect(tb.get(n), `${method}: ${n}`).toEqual(v);
      }
    });
  }

  it('lets the event loop run while it works', async () => {
    const model = llamaModel({ D: 64, F: 96, L: 3, nH: 4, nKv: 2, V: 50, P: 64, seed: 8 });
    let turns = 0;
    let settled = false;
    const tick = () => {
      turns++;
      if (!settled) setImmediate(tick);
    };
    setImmediate(tick);
    await quantizeModelAsync(model, { weights: 'int4', groupSize: 16, method: 'awq+gptq', calibration });
    settled = true;
    // a blocking call would let the first callback run only after it returned
    expect(turns).toBeGreaterThan(10);
  });

  it('rejects bad options before changing anything', async () => {
    const model = llamaModel({ D: 32, F: 48, L: 2, nH: 4, nKv: 2, V: 50, P: 64, seed: 3 });
    const before = snapshot(model);
    await expect(quantizeModelAsync(model, { weights: 'int5' as never })).rejects.toThrow(/quantizeModelAsync: 'options.weights'/);
    await expect(quantizeModelAsync(model, { weights: 'int4', calibration: { tokens: [1] } })).rejects.toThrow(RangeError);
    await expect(quantizeModelAsync(model, { weights: 'int4', calibration: { tokens, context: 1000 } })).rejects.toThrow(/options.calibration.context/);
    await expect(quantizeModelAsync({} as never, { weights: 'int4' })).rejects.toThrow(TypeError);
    expect(snapshot(model)).toEqual(before);
    expect([...model.namedModules()].some(([, m]) => m instanceof QLinear)).toBe(false);
  });

  it('an AbortSignal stops it before its next native call: rejects with the reason, no probe left', async () => {
    const model = llamaModel({ D: 32, F: 48, L: 3, nH: 4, nKv: 2, V: 50, P: 64, seed: 3 });
    const ac = new AbortController();
    const reason = new Error('stop here');
    // abort once the first layer is done (block 0 is being quantized)
    const opts: QuantizeModelOptions = { weights: 'int4', groupSize: 16, calibration, signal: ac.signal, onProgress: () => ac.abort(reason) };
    await expect(quantizeModelAsync(model, opts)).rejects.toBe(reason);
    const kinds = [...model.namedModules()].map(([, m]) => m.constructor.name);
    expect(kinds).not.toContain('HessianProbe');
    expect(kinds.filter((k) => k === 'QLinear').length).toBeGreaterThan(0);
    expect(kinds.filter((k) => k === 'QLinear').length).toBeLessThan(3 * 7);
    // already aborted: nothing changes; the blocking form checks it too; a wrong type is a TypeError
    const fresh = llamaModel({ D: 32, F: 48, L: 2, nH: 4, nKv: 2, V: 50, P: 64, seed: 3 });
    const before = snapshot(fresh);
    await expect(quantizeModelAsync(fresh, { weights: 'int4', calibration, signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    expect(() => quantizeModel(fresh, { weights: 'int4', calibration, signal: AbortSignal.abort(reason) })).toThrow(reason);
    expect(snapshot(fresh)).toEqual(before);
    await expect(quantizeModelAsync(fresh, { weights: 'int4', signal: 'soon' as never })).rejects.toThrow(/quantizeModelAsync: 'options.signal' must be an AbortSignal/);
    await expect(quantizeToBudgetAsync(fresh, { budget: 1.01, calibration, signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
  });

  it('a failure part way rejects and leaves no probe in the model', async () => {
    const model = llamaModel({ D: 32, F: 48, L: 2, nH: 4, nKv: 2, V: 50, P: 64, seed: 3 });
    const mods = new Map(model.namedModules());
    // the second block's o_proj fails when the calibration runs through it
    const victim = mods.get('model.layers.1.self_attn.o_proj') as Linear;
    victim.forwardAsync = () => Promise.reject(new Error('boom'));
    await expect(quantizeModelAsync(model, { weights: 'int4', groupSize: 16, calibration })).rejects.toThrow('boom');
    for (const [name, m] of model.namedModules()) expect(m.constructor.name, name).not.toBe('HessianProbe');
    // block 0 was quantized before the failure; block 1's layers are the float ones
    expect(new Map(model.namedModules()).get('model.layers.1.self_attn.o_proj')).toBe(victim);
    expect(new Map(model.namedModules()).get('model.layers.0.self_attn.q_proj')).toBeInstanceOf(QLinear);
  });
});

describe('quantizeToBudgetAsync', () => {
  it('gives the blocking form\'s plan, checks and layers, bit for bit; rejects bad options', async () => {
    for (const method of ['rtn', 'gptq'] as const) {
      const make = () => llamaModel({ D: 32, F: 48, L: 2, nH: 4, nKv: 2, V: 50, P: 64, seed: 12 });
      const a = make(), b = make();
      const opts = { budget: 1.02, calibration, sensitivityTokens: 64, method };
      const ra = quantizeToBudget(a, opts);
      const rb = await quantizeToBudgetAsync(b, opts);
      expect(rb.layers, method).toEqual(ra.layers);
      expect(rb.checks, method).toEqual(ra.checks);
      expect([rb.floatPpl, rb.achievedRatio, rb.bytes], method).toEqual([ra.floatPpl, ra.achievedRatio, ra.bytes]);
      const ta = snapshot(a), tb = snapshot(b);
      for (const [n, v] of ta) expect(tb.get(n), `${method}: ${n}`).toEqual(v);
    }
    const model = llamaModel({ D: 32, F: 48, L: 2, nH: 4, nKv: 2, V: 50, P: 64, seed: 12 });
    await expect(quantizeToBudgetAsync(model, { budget: 0.9, calibration })).rejects.toThrow(/quantizeToBudgetAsync: 'options.budget'/);
    await expect(quantizeToBudgetAsync(model, { budget: 1.01, calibration: { tokens: [] } })).rejects.toThrow(RangeError);
  });
});

describe('gptqQuantizeAsync and QLinear.fromLinearAsync', () => {
  const N = 40, K = 72;
  let seed = 11;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) - 0.5;
  const w = new Tensor('f32', [N, K], Float32Array.from({ length: N * K }, rnd));
  const X = Float64Array.from({ length: 100 * K }, rnd);
  const h = new Float64Array(K * K);
  for (let t = 0; t < 100; t++) for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) h[i * K + j] += X[t * K + i]! * X[t * K + j]!;
  h[5 * K + 5] = 0; // a dead input

  it('gives gptqQuantize\'s bits and rejects what it refuses', async () => {
    for (const o of [
      { bits: 4, scheme: 'asymmetric', groupSize: 16 },
      { bits: 4, scheme: 'symmetric', groupSize: 24, actOrder: false, blockSize: 20 },
      { bits: 8, scheme: 'symmetric', clip: false },
    ] as const) {
      const a = gptqQuantize(w, h, o), b = await gptqQuantizeAsync(w, h, o);
      expect(b.data, JSON.stringify(o)).toEqual(a.data);
      expect(b.scales).toEqual(a.scales);
      expect(b.zeroPoints).toEqual(a.zeroPoints);
    }
    await expect(gptqQuantizeAsync(w, h, { bits: 3 as never, scheme: 'asymmetric' })).rejects.toThrow(/gptqQuantizeAsync: 'options.bits'/);
    await expect(gptqQuantizeAsync(w, new Float64Array(3), { bits: 4, scheme: 'asymmetric' })).rejects.toThrow(RangeError);
    // a Hessian no damping makes positive definite (NaN off the diagonal): the same QuantkitError both ways
    const bad = h.slice();
    bad[1] = bad[K] = NaN;
    const o = { bits: 4, scheme: 'asymmetric', groupSize: 16 } as const;
    expect(() => gptqQuantize(w, bad, o)).toThrow(expect.objectContaining({ code: 'ERR_NOT_POSITIVE_DEFINITE' }));
    await expect(gptqQuantizeAsync(w, bad, o)).rejects.toMatchObject({ code: 'ERR_NOT_POSITIVE_DEFINITE', message: expect.stringMatching(/^gptqQuantizeAsync: the 72 x 72 Hessian is not positive definite/) });
  });

  it('fromLinearAsync gives fromLinear\'s layer and checks the same options', async () => {
    const lin = new Linear(w, new Tensor('f32', [N], Float32Array.from({ length: N }, rnd)));
    const a = QLinear.fromLinear(lin, { bits: 4, granularity: 'group', groupSize: 8, activations: 'int8' });
    const b = await QLinear.fromLinearAsync(lin, { bits: 4, granularity: 'group', groupSize: 8, activations: 'int8' });
    expect(b.qweight.data).toEqual(a.qweight.data);
    expect(b.qweight.scales).toEqual(a.qweight.scales);
    const x = new Tensor('f32', [3, K], Float32Array.from({ length: 3 * K }, rnd));
    expect(b.forward(x).data).toEqual(a.forward(x).data);
    await expect(QLinear.fromLinearAsync(lin, { bits: 4, granularity: 'group', groupSize: 8, activations: 'llm.int8' })).rejects.toThrow(/QLinear.fromLinearAsync: 'options.bits'/);
  });
});

const haveStories = requireFixtures('stories260K/model.safetensors', 'stories260K/config.json', 'text/tinystories-head.txt');

describe.skipIf(!haveStories)('quantizeModelAsync on stories260K', () => {
  it('GPTQ int4 g32 and AWQ+GPTQ give the blocking form\'s model, bit for bit', async () => {
    const MODEL = fixture('stories260K');
    const toks = tokenizeText(loadModelSync(MODEL).tokenizer!, readTextFile(fixture('text', 'tinystories-head.txt'))).slice(0, 2048);
    for (const method of ['gptq', 'awq+gptq'] as const) {
      const opts: QuantizeModelOptions = { weights: 'int4', groupSize: 32, method, calibration: { tokens: toks, context: 256 } };
      const a = loadModelSync(MODEL).model, b = loadModelSync(MODEL).model;
      quantizeModel(a, opts);
      await quantizeModelAsync(b, opts);
      const ta = snapshot(a), tb = snapshot(b);
      for (const [n, v] of ta) expect(tb.get(n), `${method}: ${n}`).toEqual(v);
    }
  });
});
