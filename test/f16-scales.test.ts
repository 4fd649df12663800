/**
 * f16 scales (QuantizeOptions.scaleDtype, quantizeModel's scaleDtype,
 * --scale-dtype): the f32 -> f16 rounding is the nearest f16 (ties to
 * even); a tensor with f16 scales holds the codes of f32 quantization and
 * each scale rounded; every product over it (f32-activation GEMM at every
 * M, row-invariant modes, W4A8) equals, bit for bit, the product over the
 * same codes with the widened scales in f32; checkpoints keep F16 scales
 * (mapped or read) and the logits; bad scales are refused.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { f32ToF16Bits } from '../lib/quant/half.js';
import { QuantizedTensor } from '../lib/quant/qtensor.js';
import { quantize } from '../lib/quant/quantize.js';
import { matmul } from '../lib/ops/matmul.js';
import { QLinear } from '../lib/nn/linear.js';
import { quantizeModel } from '../lib/nn/quantize-model.js';
import { saveQuantized } from '../lib/io/quantized-checkpoint.js';
import { loadCliModel } from '../lib/cli/load.js';
import { readSafetensors } from '../lib/io/safetensors.js';
import type { DecoderLM } from '../lib/models/causal-lm.js';
import { Tensor } from '../lib/tensor.js';
import { f16BitsToNumber } from './half-floats.js';
import { rng } from './helpers.js';
import { llamaModel } from './tiny-models.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qk-f16s-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** The same codes with the f16 scales widened back to f32. */
const widened = (q: QuantizedTensor) => q.withScaleDtype('f32');

describe('f16 scales', () => {
  it('round to the nearest f16, ties to even, with subnormals, overflow and underflow', () => {
    const r = rng(3);
    const f32 = new Float32Array(1);
    const values = [0, 1, 65504, 65519.99, 65520, 1e6, 2 ** -24, 2 ** -25, 2 ** -25 * 1.0001, 3 * 2 ** -26, 6.1e-5, 1 + 2 ** -11, 1 + 3 * 2 ** -11];
    for (let i = 0; i < 20000; i++) values.push(Math.exp((r() - 0.5) * 40) * (r() < 0.5 ? -1 : 1));
    for (const v of values) {
      f32[0] = v;
      const x = f32[0]!; // the conversion rounds from f32
      const h = f32ToF16Bits(x);
      const got = f16BitsToNumber(h);
      if (Math.abs(x) >= 65520) {
        expect(got).toBe(x > 0 ? Infinity : -Infinity);
        continue;
      }
      // no other f16 is nearer; on a tie, the even one
      const ax = Math.abs(x), ag = Math.abs(got);
      for (const d of [-1, 1]) {
        const nb = (h & 0x7fff) + d;
        if (nb < 0 || nb >= 0x7c00) continue;
        const other = f16BitsToNumber(nb);
        const de = Math.abs(ax - ag), dn = Math.abs(ax - other);
        expect(de < dn || (de === dn && (h & 1) === 0), `${x}: ${got} vs ${other}`).toBe(true);
      }
      expect(Math.sign(got) === Math.sign(x) || got === 0).toBe(true);
    }
  });

  it('quantize() keeps the f32 codes and rounds each scale; nbytes drops by the scale bytes', () => {
    const r = rng(5);
    const w = new Tensor('f32', [40, 172], Float32Array.from({ length: 40 * 172 }, () => r() * 2 - 1));
    for (const o of [{ bits: 4 as const, groupSize: 32 }, { bits: 4 as const, groupSize: 32, scheme: 'asymmetric' as const }, { bits: 8 as const }, { bits: 8 as const, granularity: 'group' as const, groupSize: 64 }]) {
      const a = quantize(w, o), b = quantize(w, { ...o, scaleDtype: 'f16' });
      expect([a.scaleDtype, b.scaleDtype]).toEqual(['f32', 'f16']);
      expect(b.scaleData).toBeInstanceOf(Uint16Array);
      expect(b.data).toEqual(a.data);
      expect(b.zeroPoints).toEqual(a.zeroPoints);
      expect(Array.from(b.scaleData)).toEqual(Array.from(a.scales, f32ToF16Bits));
      expect(Array.from(b.scales)).toEqual(Array.from(b.scaleData, f16BitsToNumber));
      expect(a.nbytes - b.nbytes).toBe(2 * a.scales.length);
    }
  });

  it('every product over f16 scales equals the product over their f32 widening, bit for bit', async () => {
    const r = rng(8);
    for (const [N, K] of [[70, 64], [300, 172], [9, 256]] as const) {
      const w = new Tensor('f32', [N, K], Float32Array.from({ length: N * K }, () => r() * 2 - 1));
      const bias = new Tensor('f32', [N], Float32Array.from({ length: N }, () => r()));
      for (const o of [{ bits: 4 as const, groupSize: 32 }, { bits: 4 as const, groupSize: 64, scheme: 'asymmetric' as const }, { bits: 8 as const }]) {
        const q16 = quantize(w, { ...o, scaleDtype: 'f16' });
        const q32 = widened(q16);
        for (const M of [1, 5, 40]) {
          const x = new Tensor('f32', [M, K], Float32Array.from({ length: M * K }, () => r() * 2 - 1));
          expect(matmul(x, q16, bias).data).toEqual(matmul(x, q32, bias).data);
          for (const rowInvariant of [true, 'prefill'] as const) {
            const a = new QLinear(q16, bias), b = new QLinear(q32, bias);
            expect(a.forward(x, undefined, { rowInvariant }).data).toEqual(b.forward(x, undefined, { rowInvariant }).data);
          }
          if (o.bits === 4) {
            const a = new QLinear(q16, bias, { activations: 'int8' }), b = new QLinear(q32, bias, { activations: 'int8' });
            expect(a.forward(x).data).toEqual(b.forward(x).data);
            expect((await a.forwardAsync(x)).data).toEqual(b.forward(x).data);
          }
        }
      }
    }
  });

  it('refuses scales f16 cannot hold and malformed f16 scales; a scale below its range becomes the smallest subnormal', () => {
    const q = quantize(new Tensor('f32', [2, 4], Float32Array.from([1e8, 1, 2, 3, 1e-9, 0, 0, 1e-9])), { bits: 8 });
    expect(() => q.withScaleDtype('f16')).toThrow(RangeError);
    const tiny = quantize(new Tensor('f32', [1, 4], Float32Array.from([1e-9, 0, 0, -1e-9])), { bits: 8, scaleDtype: 'f16' });
    expect(Array.from(tiny.scaleData)).toEqual([1]);
    expect(() => quantize(new Tensor('f32', [1, 4], new Float32Array(4)), { bits: 8, scaleDtype: 'bf16' as 'f16' })).toThrow(/scaleDtype/);
    const base = { bits: 8 as const, scheme: 'symmetric' as const, granularity: 'channel' as const, shape: [2, 2], data: new Int8Array(4) };
    for (const bad of [0, 0x7c00, 0x7e00, 0xbc00]) expect(() => new QuantizedTensor({ ...base, scales: Uint16Array.from([0x3c00, bad]) })).toThrow(RangeError);
    expect(() => new QuantizedTensor({ ...base, scales: new Int16Array(2) as unknown as Uint16Array })).toThrow(TypeError);
  });

  it('quantizeModel: f16 scales everywhere, the logits of the widened model, kept by a checkpoint (read and mapped)', async () => {
    const make = () => llamaModel({ D: 64, F: 172, L: 2, nH: 4, nKv: 2, V: 96, P: 64, seed: 4 }) as DecoderLM;
    const tokens = [1, 5, 9, 30, 31, 2, 77];
    for (const opts of [{ weights: 'int4' as const }, { weights: 'int4' as const, activations: 'int8' as const }, { weights: 'int8' as const }, { weights: 'int4' as const, calibration: { tokens: Array.from({ length: 200 }, (_, i) => (i * 37) % 96) } }]) {
      const m = make();
      const summary = quantizeModel(m, { ...opts, scaleDtype: 'f16' });
      const qs = [...m.namedModules()].map(([, x]) => x).filter((x): x is QLinear => x instanceof QLinear);
      expect(qs.length).toBeGreaterThan(0);
      expect(qs.every((x) => x.qweight.scaleDtype === 'f16')).toBe(true);
      const logits = m.forward(tokens, m.createCache()).data;
      // the same model with each layer's scales widened to f32
      const w = make();
      quantizeModel(w, { ...opts, scaleDtype: 'f16' });
      for (const [name, mod] of [...w.namedModules()]) {
        if (!(mod instanceof QLinear)) continue;
        const cut = name.lastIndexOf('.');
        const parent = [...w.namedModules()].find(([n]) => n === name.slice(0, cut))![1];
        parent.replaceChild(name.slice(cut + 1), new QLinear(widened(mod.qweight), mod.bias, { activations: mod.activations }));
      }
      expect(logits).toEqual(w.forward(tokens, w.createCache()).data);
      if (opts.calibration) continue;
      const dir = path.join(tmp, `ckpt-${opts.weights}-${opts.activations ?? 'none'}`);
      await saveQuantized(m, summary, [], dir, { model_type: 'llama', hidden_size: 64, intermediate_size: 172, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 96, max_position_embeddings: 64, rms_norm_eps: 1e-5 });
      expect(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')).quantization_config.scale_dtype).toBe('f16');
      const st = readSafetensors(path.join(dir, 'model.safetensors'));
      expect(st.names.filter((n) => n.endsWith('.scales')).every((n) => st.get(n).dtype === 'f16')).toBe(true);
      for (const mmap of [false, true]) {
        const back = loadCliModel(dir, undefined, undefined, { mmap }).model;
        expect(back.forward(tokens, back.createCache()).data).toEqual(logits);
      }
    }
  });
});
