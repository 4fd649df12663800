/**
 * An empty inner dimension (K = 0) is a valid product: y = bias (or zeros)
 * for every weight format. int8 weights used to throw a RangeError naming an
 * internal argument ("gemm: 'scales' has 4 elements, expected 0") while
 * int4 worked.
 */
import { describe, expect, it } from 'vitest';
import { Linear, QLinear, Tensor, matmul, matmulAsync, quantize, type QuantizeOptions, type QLinearOptions } from '../lib/index.js';

const M = 3, N = 4;
const x = Tensor.zeros('f32', [M, 0]);
const w = Tensor.zeros('f32', [N, 0]);
const bias = Tensor.fromArray([1, -2, 3.5, 0], [N]);
const expected = Float32Array.from({ length: M * N }, (_, i) => bias.data[i % N]!);

const QUANT: QuantizeOptions[] = [
  { bits: 8 },
  { bits: 8, granularity: 'tensor' },
  { bits: 8, scheme: 'asymmetric' },
  { bits: 8, granularity: 'group', groupSize: 32 },
  { bits: 4 },
  { bits: 4, granularity: 'group', groupSize: 32 },
  { bits: 4, scheme: 'asymmetric', granularity: 'channel' },
  { bits: 4, granularity: 'tensor' },
];
const LAYERS: QLinearOptions[] = [
  { bits: 8 },
  { bits: 4, groupSize: 32 },
  { bits: 8, activations: 'int8' },
  { bits: 4, groupSize: 32, activations: 'int8' },
  { bits: 8, activations: 'llm.int8' },
];

describe('K = 0 behaves the same for every weight format', () => {
  it('float weights', async () => {
    expect(matmul(x, w, bias).data).toEqual(expected);
    expect((await matmulAsync(x, w, bias)).data).toEqual(expected);
  });
  for (const o of QUANT) {
    it(`quantized ${JSON.stringify(o)}`, async () => {
      const q = quantize(w, o);
      expect(matmul(x, q, bias).data).toEqual(expected);
      expect((await matmulAsync(x, q, bias)).data).toEqual(expected);
      expect(matmul(x, q).data).toEqual(new Float32Array(M * N));
    });
  }
  for (const o of LAYERS) {
    it(`QLinear ${JSON.stringify(o)}`, async () => {
      const l = QLinear.fromLinear(new Linear(w, bias), o);
      expect(l.forward(x).data).toEqual(expected);
      expect((await l.forwardAsync(x)).data).toEqual(expected);
    });
  }
});
