/**
 * The raw addon must never crash the process, whatever JavaScript passes it:
 * every wrong type, length or value is a TypeError/RangeError naming the
 * argument. (lib/ validates first; this is the second line of defence.)
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { addon } from '../lib/binding.js';

describe('raw addon argument checks', () => {
  it('rejects wrong types and lengths in quantize', () => {
    const src = new Float32Array(8);
    const ok = () => addon.quantize(src, 0, 2, 4, 8, false, 1, 0, new Int8Array(8), new Float32Array(2), null);
    expect(ok()).toBe(-1);
    expect(() => addon.quantize(new Float64Array(8) as unknown as Float32Array, 0, 2, 4, 8, false, 1, 0, new Int8Array(8), new Float32Array(2), null)).toThrow(/'src' must be a Float32Array, got Float64Array/);
    expect(() => addon.quantize(src, 0, 3, 4, 8, false, 1, 0, new Int8Array(8), new Float32Array(2), null)).toThrow(/'src' has 8 elements, expected 12/);
    expect(() => addon.quantize(src, 0, 2, 4, 8, false, 1, 0, new Int8Array(7), new Float32Array(2), null)).toThrow(/'codes'/);
    expect(() => addon.quantize(src, 0, 2, 4, 8, false, 1, 0, new Int8Array(8), new Float32Array(1), null)).toThrow(/'scales'/);
    expect(() => addon.quantize(src, 0, 2, 4, 8, true, 1, 0, new Int8Array(8), new Float32Array(2), null)).toThrow(/'zeroPoints'/);
    expect(() => addon.quantize(src, 0, 2, 4, 5, false, 1, 0, new Int8Array(8), new Float32Array(2), null)).toThrow(/'bits'/);
    expect(() => addon.quantize(src, 0, 2, 4, 8, false, 2, 0, new Int8Array(8), new Float32Array(2), null)).toThrow(/'groupSize'/);
    expect(() => addon.quantize(src, 0, 2, 4, 4, false, 2, 3, new Uint8Array(4), new Float32Array(4), null)).toThrow(/'groupSize' must be even/);
    // groups of 3 over K = 4: two per row (the last one 1 value long)
    expect(() => addon.quantize(src, 0, 2, 4, 8, false, 2, 3, new Int8Array(8), new Float32Array(2), null)).toThrow(/'scales' has 2 elements, expected 4/);
    expect(() => addon.quantize(src, 0, 2, 4, 8, false, 2, 3, new Int8Array(8), new Float32Array(4), null)).not.toThrow();
    expect(() => addon.quantize(src, 0, -1, 4, 8, false, 1, 0, new Int8Array(8), new Float32Array(2), null)).toThrow(RangeError);
    expect(() => addon.quantize(src, 0, 2 ** 40, 2 ** 40, 8, false, 1, 0, new Int8Array(8), new Float32Array(2), null)).toThrow(RangeError);
    expect(() => (addon.quantize as unknown as () => void)()).toThrow(TypeError);
  });

  it('rejects wrong arguments in gemm', () => {
    const x = new Float32Array(4);
    const y = new Float32Array(2);
    expect(() => addon.gemm(x, 1, 4, 0, new Float32Array(8), 2, 4, null, null, null, y)).not.toThrow();
    expect(() => addon.gemm(x, 1, 4, 0, new Float32Array(7), 2, 4, null, null, null, y)).toThrow(/'w'/);
    expect(() => addon.gemm(x, 1, 4, 3, new Int8Array(8), 2, 4, null, null, null, y)).toThrow(/'scales'/);
    expect(() => addon.gemm(x, 1, 4, 3, new Int8Array(8), 2, 0, new Float32Array(2), null, null, y)).toThrow(/'groupSize'/);
    expect(() => addon.gemm(x, 1, 4, 3, new Int8Array(8), 2, 3, new Float32Array(2), null, null, y)).toThrow(/'scales' has 2 elements, expected 4/);
    expect(() => addon.gemm(x, 1, 4, 4, new Uint8Array(4), 2, 3, new Float32Array(4), null, null, y)).toThrow(/'groupSize' must be even/);
    expect(() => addon.gemm(x, 1, 4, 4, new Uint8Array(4), 2, 4, new Float32Array(2), new Int8Array(2), null, y)).toThrow(/'zeroPoints'/);
    expect(() => addon.gemm(x, 1, 4, 7 as 0, new Float32Array(8), 2, 4, null, null, null, y)).toThrow(/'wFormat'/);
    expect(() => addon.gemm(x, 1, 4, 0, new Float32Array(8), 2, 4, null, null, new Float32Array(3), y)).toThrow(/'bias'/);
    expect(() => addon.gemm(x, 1, 4, 0, new Float32Array(8), 2, 4, null, null, null, new Float32Array(1))).toThrow(/'y'/);
  });

  it('rejects wrong arguments in attention', async () => {
    const q = new Float32Array(8); // T 1, 2 heads x 4
    const kv = new Float32Array(256); // keys: one block of 64 positions x 1 kv head x 4; values: 64 positions
    const out = new Float32Array(8);
    expect(() => addon.attention(q, 1, 2, kv, kv, 2, 1, 4, 0.5, out)).not.toThrow();
    expect(() => addon.attention(q, 1, 64, kv, kv, 2, 1, 4, 0.5, out)).toThrow(/'keys' must hold at least 512 floats \(whole blocks of 64 positions\)/);
    expect(() => addon.attention(q, 1, 2, kv.subarray(0, 255), kv, 2, 1, 4, 0.5, out)).toThrow(/'keys' must hold at least 256/);
    expect(() => addon.attention(q, 1, 2, kv, new Float32Array(4), 2, 1, 4, 0.5, out)).toThrow(/'values'/);
    expect(() => addon.attention(q, 1, 2, kv, kv, 2, 0, 4, 0.5, out)).toThrow(/'nKvHeads'/);
    expect(() => addon.attention(q, 1, 2, kv, kv, 3, 2, 4, 0.5, out)).toThrow(RangeError);
    expect(() => addon.attention(q, 1, 2, kv, kv, 2, 1, 4, Infinity, out)).toThrow(/'scale'/);
    expect(() => addon.attention(q, 1, 2, kv, kv, 2, 1, 4, 0.5, new Float32Array(7))).toThrow(/'out'/);
    expect(() => addon.attention(new Float64Array(8) as unknown as Float32Array, 1, 2, kv, kv, 2, 1, 4, 0.5, out)).toThrow(TypeError);
    expect(() => addon.attention(q, 1, 2, kv, kv, 2, 1, 4, 0.5, out, 1 as unknown as boolean)).toThrow(/'causal' must be a boolean/);
    expect(() => addon.attentionAsync(q, 1, 90, kv, kv, 2, 1, 4, 0.5, out)).toThrow(/'keys'/); // checked before queuing
    await addon.attentionAsync(q, 1, 2, kv, kv, 2, 1, 4, 0.5, out);
  });

  it('attentionCacheWrite stores keys blocked and values as rows, and rejects wrong arguments', () => {
    const keys = new Float32Array(64 * 2), values = new Float32Array(3 * 2);
    addon.attentionCacheWrite(keys, values, Float32Array.of(1, 2, 3, 4), Float32Array.of(5, 6, 7, 8), 1, 2);
    expect([keys[1], keys[2], keys[64 + 1], keys[64 + 2]]).toEqual([1, 3, 2, 4]); // dim 0 of positions 1, 2, then dim 1
    expect(Array.from(values)).toEqual([0, 0, 5, 6, 7, 8]);
    const k = new Float32Array(4);
    expect(() => addon.attentionCacheWrite(keys, values, k, k, 2, 2)).toThrow(/'values' must hold/);
    expect(() => addon.attentionCacheWrite(keys.subarray(0, 100), values, k, k, 0, 2)).toThrow(/'keys' must hold whole blocks/);
    expect(() => addon.attentionCacheWrite(keys, values, new Float32Array(3), k, 0, 2)).toThrow(/'k' must hold whole rows/);
    expect(() => addon.attentionCacheWrite(keys, values, k, new Float32Array(2), 0, 2)).toThrow(/'v'/);
    expect(() => addon.attentionCacheWrite(keys, values, k, k, 0, 0)).toThrow(/'kvDim'/);
  });

  it('rejects wrong arguments in argmax', () => {
    const x = Float32Array.from([1, 5, 2, 5]);
    expect(addon.argmax(x, 0, 4)).toBe(1);
    expect(addon.argmax(x, 2, 2)).toBe(1);
    expect(() => addon.argmax(x, 0, 0)).toThrow(RangeError);
    expect(() => addon.argmax(x, 0, 0)).toThrow(/'n' must be >= 1/);
    expect(() => addon.argmax(x, 3, 2)).toThrow(/'n' runs past the end of 'x'/);
    expect(() => addon.argmax(x, 5, 1)).toThrow(RangeError);
    expect(() => addon.argmax(new Float64Array(4) as unknown as Float32Array, 0, 4)).toThrow(TypeError);
    expect(() => addon.argmax(x, -1, 2)).toThrow(RangeError);
  });

  it('rejects wrong arguments in siluMul', () => {
    expect(() => addon.siluMul(new Float32Array(3), new Float32Array(3))).not.toThrow();
    expect(() => addon.siluMul(new Float32Array(3), new Float32Array(4))).toThrow(/'u' has 4 elements, expected 3/);
    expect(() => addon.siluMul(new Float64Array(3) as unknown as Float32Array, new Float32Array(3))).toThrow(/'g' must be a Float32Array/);
  });

  it('rejects wrong arguments elsewhere', () => {
    expect(() => addon.setThreads(0)).toThrow(RangeError);
    expect(() => addon.selectIsa('mmx' as 'avx2')).toThrow(RangeError);
    expect(() => addon.packRows(3, new Int8Array(4), 1, 4, new Uint8Array(2))).toThrow(/'bits'/);
    expect(() => addon.unpackRows(4, true, new Uint8Array(1), 1, 4, new Int8Array(4))).toThrow(/'packed'/);
    expect(() => addon.toF32(1, new Uint16Array(4), new Float32Array(3))).toThrow(/'out'/);
    expect(() => addon.dequantize(new Int8Array(4), 1, 4, 8, false, 1, 0, new Float32Array(1), null, new Float32Array(5))).toThrow(/'out'/);
  });
});

describe('QUANTKIT_ADDON (load an explicit .node file, as the sanitizer CI does)', () => {
  const root = new URL('..', import.meta.url).pathname;
  const probe = "const q = await import('./lib/index.ts').catch((e) => { console.log(e.code, e.message.split('(')[0]); process.exit(0); }); console.log('isa', q.isa());";
  const run = (addon: string) =>
    spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', probe], { cwd: root, encoding: 'utf8', env: { ...process.env, QUANTKIT_ADDON: addon } }).stdout.trim();
  it('loads the file it names', () => {
    expect(run('build/Release/quantkit.node')).toMatch(/^isa (scalar|avx2|avx512|amx|neon)$/);
  });
  it('a missing file is ERR_NATIVE', () => {
    expect(run('/nonexistent/quantkit.node')).toMatch(/^ERR_NATIVE quantkit: could not load its native addon/);
  });
});
