/**
 * f16 and bf16 encoders/decoders written out in TypeScript, for tests and
 * benchmarks (no vitest import, so bench/ scripts can use them too).
 */
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** f32 -> bf16 bits, round to nearest even (finite inputs). */
export function toBf16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0]!;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}
export function bf16BitsToNumber(h: number): number {
  u32[0] = h << 16;
  return f32[0]!;
}

/** f32 -> IEEE half bits, round to nearest even, with subnormals and inf (the library's, checked in test/f16-scales.test.ts against f16BitsToNumber). */
export { f32ToF16Bits as toF16Bits } from '../lib/quant/half.js';
export function f16BitsToNumber(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 0x1f) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}
