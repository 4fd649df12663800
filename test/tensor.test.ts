import { describe, expect, it } from 'vitest';
import { Tensor, toFloat32 } from '../lib/index.js';
import { toBf16Bits, toF16Bits } from './helpers.js';

describe('Tensor', () => {
  it('views Buffers without copying when aligned, copies when not', () => {
    const buf = Buffer.alloc(64);
    buf.writeFloatLE(1.5, 8);
    const t = Tensor.fromBuffer('f32', [2, 2], buf, 8);
    expect(t.data[0]).toBe(1.5);
    buf.writeFloatLE(2.5, 8);
    expect(t.data[0]).toBe(2.5); // same memory
    const u = Tensor.fromBuffer('f32', [2], buf, 9);
    expect(u.data.length).toBe(2); // misaligned: a copy, still correct values
    expect(t.nbytes).toBe(16);
    expect(t.reshape([4]).shape).toEqual([4]);
    expect(t.reshape([-1, 1]).shape).toEqual([4, 1]);
  });

  it('validates shape, dtype and data', () => {
    expect(() => new Tensor('f32', [2, 2], new Float32Array(3))).toThrow(/'data' has 3 elements/);
    expect(() => new Tensor('f32', [2, -1], new Float32Array(2))).toThrow(/'shape'/);
    expect(() => new Tensor('f32', [2], new Int8Array(2) as unknown as Float32Array)).toThrow(/'data' must be a Float32Array/);
    expect(() => new Tensor('f64' as 'f32', [1], new Float32Array(1))).toThrow(/'dtype'/);
    expect(() => Tensor.fromBuffer('f32', [4], Buffer.alloc(8))).toThrow(/'buffer'/);
    expect(() => new Tensor('f32', [2, 2], new Float32Array(4)).reshape([3])).toThrow(/'shape'/);
  });

  it('keeps a frozen shape as given and copies any other', () => {
    const frozen = Object.freeze([2, 3]);
    expect(new Tensor('f32', frozen, new Float32Array(6)).shape).toBe(frozen);
    const open = [2, 3];
    const t = new Tensor('f32', open, new Float32Array(6));
    expect(t.shape).not.toBe(open);
    open[0] = 7; // the caller's array changes, the tensor's shape does not
    expect(t.shape).toEqual([2, 3]);
    expect(Object.isFrozen(t.shape)).toBe(true);
  });

  it('converts f16 and bf16 to f32 exactly', () => {
    const vals = [0, -0, 1, -2.5, 65504, 6.1e-5, 5.96e-8, 1e-3];
    const h = new Tensor('f16', [vals.length], Uint16Array.from(vals, toF16Bits));
    const hf = toFloat32(h);
    expect(Array.from(hf.data)).toEqual([0, -0, 1, -2.5, 65504, 6.097555160522461e-5, 5.960464477539063e-8, 0.0010004043579101562]);
    const b = new Tensor('bf16', [3], Uint16Array.from([1, -3, 0.1], toBf16Bits));
    expect(Array.from(toFloat32(b).data)).toEqual([1, -3, 0.10009765625]);
    const inf = toFloat32(new Tensor('f16', [3], Uint16Array.from([0x7c00, 0xfc00, 0x7e00])));
    expect(inf.data[0]).toBe(Infinity);
    expect(inf.data[1]).toBe(-Infinity);
    expect(Number.isNaN(inf.data[2])).toBe(true);
  });
});
