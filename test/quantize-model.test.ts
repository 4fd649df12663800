/**
 * quantizeModel and footprint on the tiny test model: which layers are
 * replaced (exclude globs), option validation, released float weights,
 * shared-tensor accounting, and bytes against hand-computed numbers.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { footprint } from '../lib/eval/footprint.js';
import { Linear, QLinear } from '../lib/nn/linear.js';
import { makeExcludeMatcher, quantizeModel } from '../lib/nn/quantize-model.js';
import { TinyLM } from './tiny-lm.js';

const ALL = ['layers.0.fc1', 'layers.0.fc2', 'layers.1.fc1', 'layers.1.fc2', 'lm_head'];

describe('exclude patterns', () => {
  const names = ['lm_head', 'model.lm_head', 'model.layers.0.self_attn.q_proj', 'model.layers.10.mlp.down_proj', 'model.layers.1.mlp.up_proj'];
  const hits = (pats: string[]) => names.filter(makeExcludeMatcher(pats));
  it('exact names and segment-aligned suffixes', () => {
    expect(hits(['lm_head'])).toEqual(['lm_head', 'model.lm_head']);
    expect(hits(['q_proj'])).toEqual(['model.layers.0.self_attn.q_proj']);
    expect(hits(['proj'])).toEqual([]); // no partial segments
    expect(hits(['model.layers.0.self_attn.q_proj'])).toEqual(['model.layers.0.self_attn.q_proj']);
  });
  it('* within a segment, ** across segments, ancestors', () => {
    expect(hits(['layers.*.mlp.*'])).toEqual(['model.layers.10.mlp.down_proj', 'model.layers.1.mlp.up_proj']);
    expect(hits(['layers.1*.**'])).toEqual(['model.layers.10.mlp.down_proj', 'model.layers.1.mlp.up_proj']);
    expect(hits(['model.**.down_proj'])).toEqual(['model.layers.10.mlp.down_proj']);
    expect(hits(['layers.0'])).toEqual(['model.layers.0.self_attn.q_proj']);
    expect(hits(['**'])).toEqual(names);
    expect(hits(['*_proj'])).toEqual(names.slice(2));
  });
});

describe('quantizeModel', () => {
  it('an exclude pattern that matches no Linear is a RangeError naming it, before any layer changes', () => {
    const m = new TinyLM();
    expect(() => quantizeModel(m, { weights: 'int8', exclude: ['lm_head', 'layerz.*'] })).toThrow(
      /'options\.exclude' pattern 'layerz\.\*' matches no Linear layer of this model; its Linear layers are .*lm_head/,
    );
    expect([...m.namedModules()].some(([, mod]) => mod instanceof QLinear)).toBe(false);
    // the default ['lm_head'] may match nothing (a model with a tied head): no error
    const s = quantizeModel(m, { weights: 'int8', exclude: ['lm_head'] });
    const noHead = new TinyLM();
    quantizeModel(noHead, { weights: 'int8', exclude: ['**'] });
    expect(s.kept).toEqual(['lm_head']);
  });

  it('replaces every Linear but lm_head by default (int8 per channel)', () => {
    const m = new TinyLM();
    const s = quantizeModel(m, { weights: 'int8' });
    expect(s.replaced).toEqual(ALL.slice(0, 4));
    expect(s.kept).toEqual(['lm_head']);
    for (const [name, mod] of m.namedModules()) {
      if (ALL.slice(0, 4).includes(name)) {
        expect(mod).toBeInstanceOf(QLinear);
        expect((mod as QLinear).qweight.granularity).toBe('channel');
        expect((mod as QLinear).qweight.bits).toBe(8);
      }
    }
    expect(m.child('lm_head')).toBeInstanceOf(Linear);
    // 4 layers of 128x64 (or 64x128) f32: 4 * 8192 * 4 bytes before;
    // after: 4 * 8192 codes + scales (128 + 64 + 128 + 64 rows) * 4 bytes
    expect(s.bytesBefore).toBe(4 * 8192 * 4);
    expect(s.bytesAfter).toBe(4 * 8192 + (128 + 64 + 128 + 64) * 4);
  });

  it('int4 defaults to groups of 32 and honours exclude globs', () => {
    const m = new TinyLM();
    const s = quantizeModel(m, { weights: 'int4', scheme: 'asymmetric', exclude: ['layers.1.**'] });
    expect(s.replaced).toEqual(['layers.0.fc1', 'layers.0.fc2', 'lm_head']);
    expect(s.kept).toEqual(['layers.1.fc1', 'layers.1.fc2']);
    const q = (m.child('layers')!.child('0')!.child('fc1') as QLinear).qweight;
    expect([q.bits, q.scheme, q.granularity, q.groupSize]).toEqual([4, 'asymmetric', 'group', 32]);
  });

  it('a group size that does not divide K: a shorter last group by default; a finer group, per channel or float on request', () => {
    const fc2 = (m: TinyLM) => (m.child('layers')!.child('0')!.child('fc2') as QLinear).qweight;
    const m = new TinyLM({ hidden: 100 }); // fc2 has K = 100 = 3 x 32 + 4
    const s = quantizeModel(m, { weights: 'int4' });
    expect(s.fallbacks).toEqual([]);
    expect([fc2(m).granularity, fc2(m).groupSize, fc2(m).scales.length]).toEqual(['group', 32, fc2(m).shape[0]! * 4]);
    const d = new TinyLM({ hidden: 100 });
    const sd = quantizeModel(d, { weights: 'int4', groupFallback: 'divisor' });
    expect(sd.fallbacks).toEqual(['layers.0.fc2', 'layers.1.fc2']);
    // the largest even divisor of 100 below 32
    expect([fc2(d).granularity, fc2(d).groupSize]).toEqual(['group', 20]);
    expect((d.child('layers')!.child('0')!.child('fc1') as QLinear).qweight.groupSize).toBe(32);
    const c = new TinyLM({ hidden: 100 });
    quantizeModel(c, { weights: 'int4', groupFallback: 'channel' });
    expect(fc2(c).granularity).toBe('channel');
    const k = quantizeModel(new TinyLM({ hidden: 100 }), { weights: 'int4', groupFallback: 'keep' });
    expect(k.kept).toEqual(['layers.0.fc2', 'layers.1.fc2', 'lm_head']);
    expect(() => quantizeModel(new TinyLM({ hidden: 100 }), { weights: 'int4', groupFallback: 'error' })).toThrow(/groupSize.*K = 100.*layers\.0\.fc2/);
  });

  it('says what each layer got; an explicit group size that divides no K is an error; a refusal changes nothing', () => {
    const m = new TinyLM({ hidden: 100 }); // fc1: K = 64, fc2: K = 100
    const s = quantizeModel(m, { weights: 'int4', groupSize: 32 });
    expect(s.layers.find((l) => l.name === 'layers.0.fc2')).toEqual({ name: 'layers.0.fc2', bits: 4, scheme: 'asymmetric', K: 100, granularity: 'group', groupSize: 32, lastGroup: 4 });
    expect(s.layers.find((l) => l.name === 'layers.0.fc1')).toEqual({ name: 'layers.0.fc1', bits: 4, scheme: 'asymmetric', K: 64, granularity: 'group', groupSize: 32 });
    const n = new TinyLM({ hidden: 100 });
    expect(() => quantizeModel(n, { weights: 'int4', groupSize: 48, groupFallback: 'divisor' })).toThrow(/'options\.groupSize' 48 divides the K of no layer \(K = 64, 100\)/);
    expect(() => quantizeModel(n, { weights: 'int4', groupSize: 128 })).toThrow(/'options\.groupSize' 128 is not smaller than the K of any layer \(K = 64, 100\)/);
    expect(() => quantizeModel(n, { weights: 'int4', groupFallback: 'error' })).toThrow(/K = 100/);
    expect([...n.namedModules()].some(([, mod]) => mod instanceof QLinear)).toBe(false);
    // groups of 48 with shorter last groups (64 = 48 + 16, 100 = 2 x 48 + 4)
    const g48 = quantizeModel(new TinyLM({ hidden: 100 }), { weights: 'int4', groupSize: 48 });
    expect(g48.layers.slice(0, 2).map((l) => l.lastGroup)).toEqual([16, 4]);
    // the default group size (not asked for) may fall back everywhere without an error
    expect(quantizeModel(new TinyLM({ dim: 48, hidden: 100 }), { weights: 'int4', groupFallback: 'divisor' }).fallbacks.length).toBeGreaterThan(0);
  });

  it('validates options, naming the option', () => {
    const m = new TinyLM();
    expect(() => quantizeModel(m, { weights: 'int3' as never })).toThrow(RangeError);
    expect(() => quantizeModel(m, { weights: 'int3' as never })).toThrow(/options\.weights/);
    expect(() => quantizeModel(m, { weights: 'int4', groupSize: 31 })).toThrow(/options\.groupSize/);
    expect(() => quantizeModel(m, { weights: 'int4', groupSize: '32' as never })).toThrow(TypeError);
    expect(() => quantizeModel(m, { weights: 'int8', groupSize: 32 })).toThrow(/options\.groupSize.*only valid/);
    expect(() => quantizeModel(m, { weights: 'int8', scheme: 'symm' as never })).toThrow(/options\.scheme/);
    expect(quantizeModel(new TinyLM(), { weights: 'int4', scheme: 'asym' }).config.scheme).toBe('asymmetric');
    expect(() => quantizeModel(m, { weights: 'int8', exclude: 'lm_head' as never })).toThrow(/options\.exclude/);
    expect(() => quantizeModel(m, { weights: 'int8', exclude: [''] })).toThrow(/options\.exclude/);
    expect(() => quantizeModel({} as never, { weights: 'int8' })).toThrow(/model/);
    // nothing was changed by the failed calls
    expect([...m.namedModules()].filter(([, x]) => x instanceof QLinear)).toHaveLength(0);
  });

  it('drops the replaced float weights but keeps a tied embedding alive', () => {
    const m = new TinyLM({ tied: true });
    const before = new Set([...m.namedTensors()].map(([, t]) => t));
    const embedW = (m.child('embed') as unknown as { weight: unknown }).weight;
    quantizeModel(m, { weights: 'int8', exclude: [] });
    const after = [...m.namedTensors()].map(([, t]) => t);
    // the model holds no float weight of a replaced layer any more; only the embedding (and biases) survive
    const floatLeft = after.filter((t) => before.has(t as never));
    expect(floatLeft).toEqual([embedW]);
    expect(m.child('lm_head')).toBeInstanceOf(QLinear);
  });

  it('lets the garbage collector reclaim the replaced float weights (child process with --expose-gc)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qk-gc-'));
    const script = path.join(dir, 'gc.mts'); // .mts: ESM (top-level await) outside the package
    const lib = (f: string) => JSON.stringify(path.resolve(__dirname, f));
    fs.writeFileSync(
      script,
      `import { TinyLM } from ${lib('tiny-lm.ts')};
import { quantizeModel } from ${lib('../lib/nn/quantize-model.ts')};
const m = new TinyLM({ tied: true });
const refs = [...m.namedTensors()].map(([n, t]) => [n, new WeakRef(t.data)] as const);
quantizeModel(m, { weights: 'int4', exclude: [] });
await new Promise((r) => setTimeout(r, 10));
globalThis.gc!();
await new Promise((r) => setTimeout(r, 10));
globalThis.gc!();
console.log(JSON.stringify(refs.filter(([, r]) => r.deref() !== undefined).map(([n]) => n)));
void m;
`,
    );
    try {
      const r = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', script], { cwd: path.resolve(__dirname, '..'), encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      // only the embedding survives (lm_head.weight was the very same array: tied)
      expect(JSON.parse(r.stdout.trim())).toEqual(['embed.weight', 'lm_head.weight']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('output stays close to the float model', () => {
    const ref = new TinyLM({ bias: true });
    const m = new TinyLM({ bias: true });
    quantizeModel(m, { weights: 'int8' });
    const toks = [0, 5, 9, 12, 3];
    const a = ref.forward(toks, ref.createCache()).data;
    const b = m.forward(toks, m.createCache()).data;
    let num = 0;
    let den = 0;
    for (let i = 0; i < a.length; i++) {
      num += (a[i]! - b[i]!) ** 2;
      den += a[i]! ** 2;
    }
    expect(Math.sqrt(num / den)).toBeLessThan(0.02);
  });
});

describe('footprint', () => {
  it('counts each tensor once by its memory, quantized ones as codes + scales + zeros', () => {
    // vocab 40, dim 64, hidden 128, untied: embed 40x64, 4 linears of 8192, lm_head 40x64; all f32
    const m = new TinyLM();
    const f0 = footprint(m);
    expect(f0.bytes).toBe((2 * 40 * 64 + 4 * 8192) * 4);
    expect(f0.tensors).toBe(6);
    expect(f0.byDtype).toEqual({ f32: f0.bytes });
    // tied: lm_head shares the embedding -> counted once
    const t = new TinyLM({ tied: true });
    expect(footprint(t).bytes).toBe((40 * 64 + 4 * 8192) * 4);
    expect(footprint(t).tensors).toBe(5);
    // int4 asymmetric g32 on all 4 blocks: codes 8192/2 bytes, per group one f32 scale and one u8 zero
    quantizeModel(m, { weights: 'int4', scheme: 'asymmetric' });
    const groups = 8192 / 32;
    const q4 = 4 * (8192 / 2 + groups * 4 + groups);
    const f1 = footprint(m);
    expect(f1.byDtype).toEqual({ f32: 2 * 40 * 64 * 4, int4: q4 });
    expect(f1.bytes).toBe(2 * 40 * 64 * 4 + q4);
  });
});
