/**
 * Row invariance of the linear layers: with { rowInvariant: true } a row's
 * output has the same bits whatever the number of rows in the call, for
 * every weight format and activation mode, on every ISA of this CPU. The
 * batched decoder (many sequences in one forward) rests on this: a
 * sequence's logits must not depend on what else is in its batch.
 */
import { describe, expect, it } from 'vitest';
import { Linear, QLinear, Tensor, availableIsas, selectIsa } from '../lib/index.js';
import { toBf16Bits, toF16Bits } from './half-floats.js';
import { randomF32, restoreRuntimeAfterAll } from './helpers.js';

restoreRuntimeAfterAll();

const N = 37;
const M = 23;

type Layer = { name: string; layer: Linear | QLinear };

function layers(K: number): Layer[] {
  const wf = randomF32(N * K, 11, -0.5, 0.5);
  const w = new Tensor('f32', [N, K], wf);
  const bias = new Tensor('f32', [N], randomF32(N, 12));
  const lin = new Linear(w, bias);
  const half = (enc: (x: number) => number) => Uint16Array.from(wf, enc);
  const out: Layer[] = [
    { name: 'f32', layer: lin },
    { name: 'f16', layer: new Linear(new Tensor('f16', [N, K], half(toF16Bits)), bias) },
    { name: 'bf16', layer: new Linear(new Tensor('bf16', [N, K], half(toBf16Bits)), bias) },
    { name: 'int8 per channel', layer: QLinear.fromLinear(lin) },
    { name: 'int8 g32 asym', layer: QLinear.fromLinear(lin, { bits: 8, granularity: 'group', groupSize: 32, scheme: 'asymmetric' }) },
    { name: 'int4 g32', layer: QLinear.fromLinear(lin, { bits: 4, groupSize: 32 }) },
    { name: 'int4 g32 asym', layer: QLinear.fromLinear(lin, { bits: 4, groupSize: 32, scheme: 'asymmetric' }) },
    { name: 'W8A8', layer: QLinear.fromLinear(lin, { activations: 'int8' }) },
    { name: 'W4A8', layer: QLinear.fromLinear(lin, { bits: 4, groupSize: 32, activations: 'int8' }) },
    { name: 'LLM.int8', layer: QLinear.fromLinear(lin, { activations: 'llm.int8', threshold: 2 }) },
    { name: 'int4 g32, int8 prompts', layer: QLinear.fromLinear(lin, { bits: 4, groupSize: 32, activations: 'int8-prefill' }) },
    { name: 'int8, int8 prompts', layer: QLinear.fromLinear(lin, { activations: 'int8-prefill' }) },
  ];
  return out;
}

function rows(x: Float32Array, K: number, r0: number, n: number): Tensor<'f32'> {
  return new Tensor('f32', [n, K], x.slice(r0 * K, (r0 + n) * K));
}

describe('rowInvariant linear layers', () => {
  for (const isa of availableIsas()) {
    // K = 172: int4/int8 g32 end in a shorter group (172 = 5 x 32 + 12)
    for (const K of [64, 172, 300]) {
      it(`${isa}, K = ${K}: each row of 23 equals the row computed alone, in any slice (sync and async)`, async () => {
        selectIsa(isa);
        const x = randomF32(M * K, 13, -2, 2);
        // a few large values so LLM.int8 finds outlier columns in some rows only
        x[3 * K + 5] = 9;
        x[17 * K + 40] = -7;
        for (const { name, layer } of layers(K)) {
          // true: the small-M kernel at every M (decode rows); 'prefill': the large-M one
          for (const rowInvariant of [true, 'prefill'] as const) {
            const all = layer.forward(rows(x, K, 0, M), undefined, { rowInvariant }).data;
            for (const [r0, n] of [[0, 1], [5, 1], [22, 1], [1, 2], [3, 3], [4, 4], [6, 5], [0, 16], [7, 16]] as const) {
              const part = layer.forward(rows(x, K, r0, n), undefined, { rowInvariant }).data;
              expect(part, `${name} ${rowInvariant}: rows ${r0}..${r0 + n - 1}`).toEqual(all.subarray(r0 * N, (r0 + n) * N));
            }
            const asyncAll = await layer.forwardAsync!(rows(x, K, 0, M), undefined, { rowInvariant });
            expect(asyncAll.data, `${name} ${rowInvariant}: async`).toEqual(all);
          }
        }
      });
    }
  }

  it('checks the option', () => {
    const lin = new Linear(new Tensor('f32', [2, 3], new Float32Array(6)));
    const x = new Tensor('f32', [1, 3], new Float32Array(3));
    expect(() => lin.forward(x, undefined, { rowInvariant: 1 as unknown as boolean })).toThrow(TypeError);
    expect(() => lin.forward(x, undefined, { rowInvariant: 1 as unknown as boolean })).toThrow(/options\.rowInvariant/);
    expect(() => lin.forward(x, undefined, { rowInvariant: 'decode' as unknown as boolean })).toThrow(TypeError);
    expect(() => QLinear.fromLinear(lin).forward(x, undefined, 'yes' as never)).toThrow(/options/);
  });
});
