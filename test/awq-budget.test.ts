/**
 * Activation-aware scales and the error budget:
 * - every architecture's scale groups fold exactly (random positive scales
 *   folded into a float model leave its logits unchanged up to rounding);
 * - searchChannelScales never does worse than round to nearest on the
 *   output error it minimizes, and helps where channels differ in magnitude;
 * - quantizeModel methods 'awq' / 'awq+gptq' on stories260K, with the folded
 *   norms saved and reloaded bit-identically;
 * - per-layer overrides (mixed int8/int4/float), their checkpoint
 *   (format_version 2) and their errors;
 * - quantizeToBudget and `quantize --budget` (calibration and evaluation
 *   tokens disjoint).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Linear, QLinear, Tensor, loadModelSync, perplexity, quantize, quantizeModel, quantizeToBudget, saveQuantized } from '../lib/index.js';
import { readTextFile, tokenizeText } from '../lib/cli/load.js';
import type { CausalLM } from '../lib/models/causal-lm.js';
import { foldChannelScales, scaleGroupsOf } from '../lib/nn/scale-fold.js';
import { searchChannelScales } from '../lib/quant/awq.js';
import { layerOutputErrors } from '../lib/eval/error-report.js';
import type { ScaleGroupResult } from '../lib/nn/quantize-model.js';
import { runCli, runCliJson } from './cli-run.js';
import { fixture, requireFixtures } from './fixtures.js';
import { randomF32, rng } from './helpers.js';
import { codegenModel, gpt2Model, llamaModel, optModel } from './tiny-models.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qk-awq-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const logits = (m: CausalLM, ids: number[]) => m.forward(ids, m.createCache()).data;

describe('scale groups fold exactly', () => {
  const cases: [string, () => CausalLM, (prevs: string[]) => void][] = [
    ['llama (MHA)', () => llamaModel({ D: 32, F: 48, L: 2, nH: 4, nKv: 4, V: 50, P: 64, seed: 1 }), (p) => expect(p.filter((x) => x.endsWith('v_proj'))).toHaveLength(2)],
    ['llama (GQA: no v_proj -> o_proj)', () => llamaModel({ D: 32, F: 48, L: 2, nH: 4, nKv: 2, V: 50, P: 64, seed: 2 }), (p) => expect(p.some((x) => x.endsWith('v_proj'))).toBe(false)],
    ['gpt2', () => gpt2Model(3), (p) => expect(p.filter((x) => x.endsWith('c_attn'))).toHaveLength(2)],
    ['opt (pre-LN, ReLU)', () => optModel(4, true), (p) => expect(p.filter((x) => x.endsWith('fc1'))).toHaveLength(2)],
    ['opt (post-LN: no norm groups)', () => optModel(5, false), (p) => expect(p.some((x) => x.includes('layer_norm'))).toBe(false)],
    ['codegen (ln_1 feeds attention and MLP)', () => codegenModel(6), (p) => expect(p).toEqual(['transformer.h.0.ln_1', 'transformer.h.1.ln_1'])],
  ];
  for (const [name, make, shape] of cases) {
    it(name, () => {
      const m = make();
      const ids = Array.from({ length: 12 }, (_, i) => (i * 7 + 3) % 50);
      const before = logits(m, ids);
      const groups = scaleGroupsOf(m);
      shape(groups.map((g) => g.prev));
      const r = rng(9);
      for (const g of groups) {
        const K = (new Map(m.namedModules()).get(g.layers[0]!) as Linear).inFeatures;
        const s = Float32Array.from({ length: K }, () => 0.25 + 3.75 * r());
        expect(foldChannelScales(m, g, s), g.prev).toBe(true);
      }
      const after = logits(m, ids);
      let worst = 0;
      for (let i = 0; i < before.length; i++) worst = Math.max(worst, Math.abs(after[i]! - before[i]!) / (1 + Math.abs(before[i]!)));
      expect(worst).toBeLessThan(2e-5);
    });
  }
});

describe('layerOutputErrors', () => {
  it('undoes folded scales on a layer\'s input and output, so a scaled model compares with an unscaled one', () => {
    const make = () => llamaModel({ D: 32, F: 48, L: 2, nH: 4, nKv: 4, V: 50, P: 64, seed: 11 });
    const float = make(), plain = make(), folded = make();
    const r = rng(12);
    const scaled: ScaleGroupResult[] = [];
    for (const g of scaleGroupsOf(folded)) {
      const K = (new Map(folded.namedModules()).get(g.layers[0]!) as Linear).inFeatures;
      const s = Float32Array.from({ length: K }, () => 0.25 + 3.75 * r());
      expect(foldChannelScales(folded, g, s)).toBe(true);
      scaled.push({ prev: g.prev, layers: g.layers, alpha: 0.5, errorBefore: 0, errorAfter: 0, scales: s, rowOffset: g.rowOffset ?? 0 });
    }
    expect(scaled.some((g) => g.prev.endsWith('v_proj'))).toBe(true); // a Linear prev: its output is scaled too
    quantizeModel(plain, { weights: 'int8' });
    quantizeModel(folded, { weights: 'int8' });
    const ids = Array.from({ length: 20 }, (_, i) => (i * 7 + 3) % 50);
    const a = layerOutputErrors(float, plain, ids);
    const b = layerOutputErrors(float, folded, ids, scaled);
    const c = layerOutputErrors(float, folded, ids);
    expect(b.names).toEqual(a.names);
    expect(a.rows).toBe(20);
    a.output.forEach((m, i) => {
      // int8 per channel either way (~48 dB; the random scales, 16x apart, cost ~10 dB: they are no AWQ search)
      expect(m.sqnrDb, a.names[i]).toBeGreaterThan(40);
      expect(b.output[i]!.sqnrDb, a.names[i]).toBeGreaterThan(30);
    });
    // without the scales, every scaled layer looks broken
    const scaledNames = new Set(scaled.flatMap((g) => [...g.layers, g.prev]));
    c.names.forEach((n, i) => scaledNames.has(n) && expect(c.output[i]!.sqnrDb, n).toBeLessThan(10));
    expect(() => layerOutputErrors(float, folded, [])).toThrow(TypeError);
  });
});

describe('searchChannelScales', () => {
  /** Activations whose channels differ in magnitude (a few 20x outliers), and H = X^T X, mean |x|. */
  function stats(T: number, K: number, seed: number) {
    const r = rng(seed);
    const x = new Float32Array(T * K);
    for (let t = 0; t < T; t++) for (let k = 0; k < K; k++) x[t * K + k] = (r() * 2 - 1) * (k % 11 === 0 ? 20 : 1);
    const h = new Float64Array(K * K);
    const absMean = new Float64Array(K);
    for (let t = 0; t < T; t++) for (let j = 0; j < K; j++) {
      absMean[j] += Math.abs(x[t * K + j]!) / T;
      for (let k = 0; k < K; k++) h[j * K + k] += x[t * K + j]! * x[t * K + k]!;
    }
    return { h, absMean };
  }

  it('alpha 0 is round to nearest; the chosen scales lower the output error where channels differ', () => {
    const N = 24, K = 96;
    const { h, absMean } = stats(256, K, 1);
    const w = randomF32(N * K, 2, -1, 1);
    const options = { bits: 4 as const, scheme: 'asymmetric' as const, granularity: 'group' as const, groupSize: 32 };
    const res = searchChannelScales([{ weight: w, N, options }], K, h, absMean);
    // errorBefore is tr(dW H dW^T) of plain quantize(), computed here in float64
    const dq = quantize(new Tensor('f32', [N, K], w), options).dequantize().data;
    let ref = 0;
    for (let n = 0; n < N; n++) for (let j = 0; j < K; j++) for (let k = 0; k < K; k++) ref += (dq[n * K + j]! - w[n * K + j]!) * h[j * K + k]! * (dq[n * K + k]! - w[n * K + k]!);
    let hmax = 0;
    for (const v of h) hmax = Math.max(hmax, Math.abs(v));
    expect(res.errorBefore * hmax).toBeCloseTo(ref, -Math.floor(Math.log10(ref)) + 3);
    expect(res.alpha).toBeGreaterThan(0);
    expect(res.errorAfter).toBeLessThan(0.9 * res.errorBefore);
    // normalized: max(s) * min(s) = 1
    const s = [...res.scales];
    expect(Math.max(...s) * Math.min(...s)).toBeCloseTo(1, 4);
  });

  it('keeps s = 1 when every channel is alike', () => {
    const N = 8, K = 64;
    const h = new Float64Array(K * K);
    for (let k = 0; k < K; k++) h[k * K + k] = 1;
    const res = searchChannelScales([{ weight: randomF32(N * K, 3), N, options: { bits: 4, scheme: 'asymmetric', granularity: 'group', groupSize: 32 } }], K, h, new Float64Array(K).fill(0.5));
    expect(res.alpha).toBe(0);
    expect([...res.scales].every((v) => v === 1)).toBe(true);
  });
});

const haveStories = requireFixtures('stories260K/model.safetensors', 'stories260K/config.json', 'text/tinystories-head.txt');

describe.skipIf(!haveStories)('AWQ, overrides and the budget on stories260K (calibration and evaluation tokens disjoint)', () => {
  const MODEL = fixture('stories260K');
  const TEXT = fixture('text', 'tinystories-head.txt');
  const load = () => loadModelSync(MODEL);
  const tokens = tokenizeText(load().tokenizer!, readTextFile(TEXT));
  const cal = tokens.slice(0, 2048);
  const ev = tokens.slice(8192, 8192 + 4096);
  const sourceConfig = () => JSON.parse(fs.readFileSync(path.join(MODEL, 'config.json'), 'utf8')) as Record<string, unknown>;

  it("method 'awq' folds scales into the norms: int8 keeps float perplexity, int4 runs; the checkpoint reloads bit-identically", async () => {
    const fp = perplexity(load().model, ev, { context: 256 }).ppl;
    const m8 = load().model;
    const s8 = quantizeModel(m8, { weights: 'int8', method: 'awq', calibration: { tokens: cal } });
    expect(s8.scaled.length).toBeGreaterThan(0);
    for (const g of s8.scaled) expect(g.errorAfter).toBeLessThan(g.errorBefore);
    // Llama with GQA: norms -> (q, k, v), (gate, up); up_proj -> down_proj; no v_proj -> o_proj
    for (const g of s8.scaled) expect(['input_layernorm', 'post_attention_layernorm', 'up_proj']).toContain(g.prev.split('.').pop());
    expect(perplexity(m8, ev, { context: 256 }).ppl / fp).toBeLessThan(1.003);
    const m4 = load().model;
    const s4 = quantizeModel(m4, { weights: 'int4', method: 'awq+gptq', calibration: { tokens: cal } });
    expect(s4.config.method).toBe('awq+gptq');
    const ratio = perplexity(m4, ev, { context: 256 }).ppl / fp;
    console.log(`stories260K int4 asym g32 AWQ+GPTQ (2,048 calibration tokens) on ${ev.length} held-out tokens: x${ratio.toFixed(4)} of fp32`);
    expect(ratio).toBeLessThan(1.15);
    const out = path.join(tmp, 'awq');
    await saveQuantized(m4, s4, [], out, sourceConfig());
    expect(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).quantization_config.method).toBe('awq+gptq');
    const back = loadModelSync(out).model;
    const t = ev.slice(0, 48);
    expect(logits(back, t)).toEqual(logits(m4, t));
  });

  it('GPTQ options: sequential statistics within a block and the clipping search both run and beat round to nearest', () => {
    const fp = perplexity(load().model, ev, { context: 256 }).ppl;
    const rtn = load().model;
    quantizeModel(rtn, { weights: 'int4' });
    const pR = perplexity(rtn, ev, { context: 256 }).ppl;
    for (const gptq of [{ sequential: true }, { clip: false }]) {
      const m = load().model;
      const s = quantizeModel(m, { weights: 'int4', calibration: { tokens: cal }, gptq });
      expect(s.replaced).toHaveLength(35);
      const p = perplexity(m, ev, { context: 256 }).ppl;
      console.log(`stories260K int4 g32 GPTQ ${JSON.stringify(gptq)} (2,048 calibration tokens): x${(p / fp).toFixed(4)} (RTN x${(pR / fp).toFixed(4)})`);
      expect(p).toBeLessThan(pR);
    }
  });

  it('per-layer overrides: mixed int8 / int4 / float, saved as format_version 2 and reloaded bit-identically', async () => {
    const m = load().model;
    const s = quantizeModel(m, {
      weights: 'int4',
      overrides: {
        'model.layers.0.mlp.down_proj': { weights: 'int8' },
        'model.layers.1.self_attn.q_proj': 'float',
        'model.layers.2.mlp.up_proj': { weights: 'int4', groupSize: 64 },
      },
    });
    const byName = new Map(s.layers.map((l) => [l.name, l]));
    expect(byName.get('model.layers.0.mlp.down_proj')).toMatchObject({ bits: 8, scheme: 'symmetric', granularity: 'channel' });
    expect(byName.get('model.layers.2.mlp.up_proj')).toMatchObject({ bits: 4, scheme: 'asymmetric', granularity: 'group', groupSize: 64 });
    expect(byName.get('model.layers.0.mlp.up_proj')).toMatchObject({ bits: 4, groupSize: 32 });
    expect(s.kept).toEqual(['model.layers.1.self_attn.q_proj', 'lm_head']);
    expect(s.fallbacks).toEqual([]); // an override is what was asked, not a fallback
    const out = path.join(tmp, 'mixed');
    await saveQuantized(m, s, [], out, sourceConfig());
    const qc = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).quantization_config;
    expect(qc.format_version).toBe(2);
    expect(qc.module_overrides['model.layers.0.mlp.down_proj']).toEqual({ granularity: 'channel', group_size: null, bits: 8, scheme: 'symmetric' });
    expect(qc.modules_to_not_convert).toContain('model.layers.1.self_attn.q_proj');
    const back = loadModelSync(out).model;
    const t = ev.slice(0, 48);
    expect(logits(back, t)).toEqual(logits(m, t));
    // a version-1 config may not carry per-layer bits
    const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
    cfg.quantization_config.format_version = 1;
    fs.writeFileSync(path.join(out, 'config.json'), JSON.stringify(cfg));
    expect(() => loadModelSync(out)).toThrow(/sets bits or scheme, which needs format_version 2/);
  });

  it('refuses bad overrides before changing anything', () => {
    const m = load().model;
    expect(() => quantizeModel(m, { weights: 'int4', overrides: { 'model.layers.9.mlp.up_proj': 'float' } })).toThrow(/'options.overrides' names 'model.layers.9.mlp.up_proj', which is not a Linear layer/);
    expect(() => quantizeModel(m, { weights: 'int4', overrides: { 'model.layers.0.mlp.up_proj': 'int8' as never } })).toThrow(TypeError);
    expect(() => quantizeModel(m, { weights: 'int4', overrides: { 'model.layers.0.mlp.up_proj': { weights: 'int3' as never } } })).toThrow(/overrides\['model.layers.0.mlp.up_proj'\].*'options.weights'/);
    expect(() => quantizeModel(m, { weights: 'int4', overrides: [] as never })).toThrow(/'options.overrides' must be an object/);
    expect([...m.namedModules()].some(([, x]) => x instanceof QLinear)).toBe(false);
  });

  it('quantizeToBudget: within the budget on the calibration text, smaller than all-int8; checks its arguments', () => {
    const m = load().model;
    const r = quantizeToBudget(m, { budget: 1.01, calibration: { tokens: cal }, sensitivityTokens: 1024, method: 'rtn' });
    expect(r.achievedRatio).toBeLessThanOrEqual(1.01);
    expect(r.bytes).toBeLessThan(r.bytesAllInt8);
    expect(r.layers).toHaveLength(35);
    for (const l of r.layers) for (const f of ['int4 g128', 'int4 g32', 'int8'] as const) expect(l.kl[f]).toBeGreaterThanOrEqual(0);
    // the model is quantized to the plan: what it holds is what the plan says
    const formats = new Map(r.summary.layers.map((l) => [l.name, l.bits === 8 ? 'int8' : l.groupSize === 32 ? 'int4 g32' : 'int4 g128']));
    for (const l of r.layers) expect(l.format === 'float' ? r.summary.kept.includes(l.name) : formats.get(l.name)).toBe(l.format === 'float' ? true : l.format);
    const measured = perplexity(m, cal, { context: 256 }).ppl / r.floatPpl;
    expect(measured).toBeCloseTo(r.achievedRatio, 10);
    console.log(`budget 1.01 (RTN, 2,048 calibration tokens): calibration x${r.achievedRatio.toFixed(4)}, held-out x${(perplexity(m, ev, { context: 256 }).ppl / perplexity(load().model, ev, { context: 256 }).ppl).toFixed(4)}, ${r.bytes} bytes vs ${r.bytesAllInt8} all-int8`);
    const f = load().model;
    expect(() => quantizeToBudget(f, { budget: 1, calibration: { tokens: cal } })).toThrow(/'options.budget' must be a perplexity ratio > 1/);
    expect(() => quantizeToBudget(f, { budget: 1.01, calibration: undefined as never })).toThrow(/'options.calibration'/);
    expect(() => quantizeToBudget(f, { budget: 1.01, calibration: { tokens: cal }, sensitivityTokens: 1 })).toThrow(/'options.sensitivityTokens'/);
    expect(() => quantizeToBudget(f, { budget: 1.01, calibration: { tokens: cal }, exclude: ['**'] })).toThrow(/no Linear layer left/);
  });

  it('quantize --budget through the CLI: the plan, the achieved ratio, a loadable checkpoint; conflicting flags refused', async () => {
    const text = readTextFile(TEXT);
    const calib = path.join(tmp, 'calib.txt');
    fs.writeFileSync(calib, text.slice(0, 12000));
    const out = path.join(tmp, 'cli-budget');
    const j = await runCliJson<{ achievedRatio: number; layerBytes: number; layerBytesAllInt8: number; layers: { format: string }[] }>([
      'quantize', MODEL, '--out', out, '--budget', '1.02', '--calib', calib, '--calib-tokens', '1024', '--method', 'rtn',
    ]);
    expect(j.achievedRatio).toBeLessThanOrEqual(1.02);
    expect(j.layerBytes).toBeLessThan(j.layerBytesAllInt8);
    expect(loadModelSync(out).model.forward([1, 2, 3], loadModelSync(out).model.createCache()).shape).toEqual([3, 512]);
    const bad = await runCli(['quantize', MODEL, '--out', path.join(tmp, 'x'), '--budget', '1.01', '--calib', calib, '--weights', 'int4']);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/--budget chooses each layer's format itself; drop --weights\/--bits/);
    const noCal = await runCli(['quantize', MODEL, '--out', path.join(tmp, 'y'), '--budget', '1.01']);
    expect(noCal.code).toBe(1);
    expect(noCal.err).toMatch(/--budget measures perplexity on calibration text: pass --calib/);
    const noCalMethod = await runCli(['quantize', MODEL, '--out', path.join(tmp, 'w'), '--weights', 'int4', '--method', 'awq']);
    expect(noCalMethod.code).toBe(1);
    expect(noCalMethod.err).toMatch(/--method awq needs calibration text: pass --calib <file>/);
    const low = await runCli(['quantize', MODEL, '--out', path.join(tmp, 'z'), '--budget', '0.9', '--calib', calib]);
    expect(low.code).not.toBe(0);
    expect(low.err).toMatch(/--budget/);
    for (const d of ['w', 'x', 'y', 'z']) expect(fs.existsSync(path.join(tmp, d))).toBe(false);
  });
});
