/**
 * safetensors reader/writer: round trips, the real stories260K file, every
 * kind of malformed header, sharded folders, and atomic writes that leave
 * nothing behind on failure.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { QuantkitError } from '../lib/errors.js';
import { Tensor } from '../lib/tensor.js';
import {
  findDuplicateKey,
  loadSafetensorsFolder,
  parseSafetensors,
  readSafetensors,
  readSafetensorsAsync,
  writeSafetensors,
  writeSafetensorsSync,
} from '../lib/io/safetensors.js';
import { alignedChunks, writeDirAtomic, writeFileAtomicSync } from '../lib/io/atomic.js';
import { fixture, requireFixtures } from './fixtures.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'quantkit-st-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
let dir: string;
let seq = 0;
beforeEach(() => {
  dir = path.join(root, `case${seq++}`);
  fs.mkdirSync(dir);
});

/** Raw file from a header (object or exact JSON text) and a data section. */
function rawFile(header: unknown, data: Uint8Array | number = 0): Buffer {
  const text = typeof header === 'string' ? header : JSON.stringify(header);
  const h = Buffer.from(text, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  return Buffer.concat([len, h, typeof data === 'number' ? Buffer.alloc(data) : data]);
}

/** Write bytes to a file in the case dir and expect reading it to fail with `code`, naming the file. */
function expectBad(bytes: Buffer, code: string, pattern: RegExp): QuantkitError {
  const file = path.join(dir, 'bad.safetensors');
  fs.writeFileSync(file, bytes);
  let caught: unknown;
  try {
    readSafetensors(file);
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(QuantkitError);
  const err = caught as QuantkitError;
  expect(err.code).toBe(code);
  expect(err.message).toContain(file);
  expect(err.message).toMatch(pattern);
  return err;
}

function catchErr(fn: () => unknown): QuantkitError {
  try {
    fn();
  } catch (e) {
    return e as QuantkitError;
  }
  throw new Error('expected a throw');
}

const f32 = (n: number, k = 1) => Float32Array.from({ length: n }, (_, i) => i * k + 0.5);

describe('safetensors round trip', () => {
  it('writes and reads every supported dtype with metadata, in order, zero-copy', async () => {
    const tensors = {
      'a.weight': new Tensor('f32', [2, 3], f32(6)),
      b: new Tensor('f16', [3], Uint16Array.of(0x3c00, 0x4000, 0xbc00)),
      c: new Tensor('bf16', [1, 2], Uint16Array.of(0x3f80, 0xc000)),
      d: new Tensor('i8', [5], Int8Array.of(-128, -1, 0, 1, 127)),
      e: new Tensor('u8', [3], Uint8Array.of(0, 128, 255)),
      f: new Tensor('i32', [2], Int32Array.of(-2147483648, 2147483647)),
      empty: new Tensor('f32', [0, 4], new Float32Array(0)),
      scalar: new Tensor('f32', [], Float32Array.of(7)),
    };
    const meta = { format: 'pt', note: 'héllo' };
    for (const [i, write] of [writeSafetensorsSync, writeSafetensors].entries()) {
      const file = path.join(dir, `rt${i}.safetensors`);
      await write(file, tensors, meta);
      const bytes = fs.readFileSync(file);
      const n = Number(bytes.readBigUInt64LE(0));
      expect(n % 8).toBe(0); // padded so the data section is 8-aligned
      const st = readSafetensors(file);
      expect(st.names).toEqual(Object.keys(tensors));
      expect(st.metadata).toEqual(meta);
      for (const [name, t] of Object.entries(tensors)) {
        const got = st.get(name);
        expect(got.dtype).toBe(t.dtype);
        expect(got.shape).toEqual(t.shape);
        expect(Array.from(got.data)).toEqual(Array.from(t.data));
        expect(got.name).toBe(name);
        // a view, not a copy, wherever the offset is aligned for the element type
        // (the writer packs tensors in the order given, so 'f' after odd-sized ones is not)
        const aligned = st.info(name).begin % got.data.BYTES_PER_ELEMENT === 0;
        expect(got.data.buffer === st.buffer.buffer, `${name} is a view`).toBe(aligned);
        if (name === 'a.weight' || name === 'b') expect(aligned).toBe(true);
      }
      expect(st.info('b')).toMatchObject({ dtype: 'F16', shape: [3] });
      expect(fs.readdirSync(dir).filter((f) => f.startsWith('.'))).toEqual([]); // no temp left
    }
  });

  it('accepts a Map, keeps its order, and replaces an existing file', () => {
    const file = path.join(dir, 'm.safetensors');
    fs.writeFileSync(file, 'old junk');
    const m = new Map<string, Tensor>([
      ['z', new Tensor('f32', [2], f32(2))],
      ['a', new Tensor('i32', [1], Int32Array.of(3))],
    ]);
    writeSafetensorsSync(file, m);
    const st = readSafetensors(file);
    expect(st.names).toEqual(['z', 'a']);
    expect(st.metadata).toEqual({});
    expect(st.info('z').begin).toBeLessThan(st.info('a').begin);
  });

  it('reads asynchronously too', async () => {
    const file = path.join(dir, 'x.safetensors');
    writeSafetensorsSync(file, { x: new Tensor('u8', [2], Uint8Array.of(1, 2)) });
    const st = await readSafetensorsAsync(file);
    expect(Array.from(st.get('x').data)).toEqual([1, 2]);
    await expect(readSafetensorsAsync(path.join(dir, 'nope.safetensors'))).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
  });

  it('reports unsupported dtypes on access and unknown names with the file', () => {
    const file = path.join(dir, 'i64.safetensors');
    fs.writeFileSync(file, rawFile({ big: { dtype: 'I64', shape: [2], data_offsets: [0, 16] }, ok: { dtype: 'U8', shape: [1], data_offsets: [16, 17] } }, 17));
    const st = readSafetensors(file);
    expect(st.info('big').dtype).toBe('I64');
    const e1 = catchErr(() => st.get('big'));
    expect(e1.code).toBe('ERR_UNSUPPORTED');
    expect(e1.message).toContain('I64');
    expect(e1.message).toContain(file);
    const e2 = catchErr(() => st.get('missing.weight'));
    expect(e2.code).toBe('ERR_NOT_FOUND');
    expect(e2.message).toContain('missing.weight');
    expect(e2.message).toContain(file);
    expect(st.get('ok').data[0]).toBe(0);
  });

  it('copies only when the data section is misaligned for the dtype', () => {
    // header of 3 bytes ("{} "-like) puts the data at offset 11: an f32 there cannot be a view
    const bytes = rawFile('{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', Buffer.from(Float32Array.of(2.5).buffer));
    const st = parseSafetensors(bytes, 'mem');
    expect(st.get('x').data[0]).toBe(2.5);
  });

  it('writes in whole chunks at multiples of the chunk size, the bytes unchanged', async () => {
    // alignedChunks: parts shorter and longer than a chunk, an empty one, a tail
    const parts = [7, 0, 40, 3, 16, 33, 1].map((n, i) => Uint8Array.from({ length: n }, (_, j) => (i * 31 + j) & 255));
    const whole = Buffer.concat(parts);
    const seen: number[] = [];
    const out: Buffer[] = [];
    for (const c of alignedChunks(parts, 16)) {
      seen.push(c.byteLength);
      out.push(Buffer.from(c)); // copied now: a staged chunk is reused for the next one
    }
    expect(seen.slice(0, -1).every((n) => n === 16)).toBe(true);
    expect(seen.at(-1)! > 0 && seen.at(-1)! <= 16).toBe(true);
    expect(Buffer.concat(out).equals(whole)).toBe(true);
    expect([...alignedChunks([], 16)]).toEqual([]);
    // a file larger than one default chunk reads back bit for bit, sync and async
    const big = new Tensor('f32', [3, 1 << 20], Float32Array.from({ length: 3 << 20 }, (_, i) => i * 0.5));
    const small = new Tensor('i8', [5], Int8Array.of(1, -2, 3, -4, 5));
    const m = new Map<string, Tensor>([['small', small], ['big', big]]);
    const fs1 = path.join(dir, 'chunks-sync.safetensors'), fs2 = path.join(dir, 'chunks-async.safetensors');
    writeSafetensorsSync(fs1, m);
    await writeSafetensors(fs2, m);
    for (const f of [fs1, fs2]) {
      const st = readSafetensors(f);
      const b = st.get('big').data;
      expect(Buffer.from(b.buffer, b.byteOffset, b.byteLength).equals(Buffer.from(big.data.buffer))).toBe(true);
      expect([...st.get('small').data]).toEqual([1, -2, 3, -4, 5]);
    }
  });
});

describe('safetensors malformed input', () => {
  const ok = { x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };

  it('truncated file', () => expectBad(Buffer.alloc(5), 'ERR_BAD_FILE', /truncated/));
  it('empty file', () => expectBad(Buffer.alloc(0), 'ERR_BAD_FILE', /truncated/));
  it('header length beyond the file', () => {
    const b = rawFile(ok, 8);
    b.writeBigUInt64LE(BigInt(b.length), 0);
    expectBad(b, 'ERR_BAD_FILE', /past the end/);
  });
  it('header length over 100 MB', () => {
    const b = rawFile(ok, 8);
    b.writeBigUInt64LE(2n ** 63n, 0);
    expectBad(b, 'ERR_BAD_FILE', /limit/);
  });
  it('corrupt JSON', () => expectBad(rawFile('{"x": {"dtype": "F32",', 0), 'ERR_BAD_FILE', /JSON/));
  it('invalid UTF-8', () => expectBad(rawFile(Buffer.from([0x7b, 0xff, 0x7d]).toString('latin1')), 'ERR_BAD_FILE', /./));
  it('JSON that is not an object', () => expectBad(rawFile([1, 2]), 'ERR_BAD_FILE', /object/));
  it('entry that is not an object', () => expectBad(rawFile({ x: 3 }), 'ERR_BAD_FILE', /'x'/));
  it('missing dtype', () => expectBad(rawFile({ x: { shape: [2], data_offsets: [0, 8] } }, 8), 'ERR_BAD_FILE', /'x'.*dtype/));
  it('missing shape', () => expectBad(rawFile({ x: { dtype: 'F32', data_offsets: [0, 8] } }, 8), 'ERR_BAD_FILE', /shape/));
  it('bad shape', () => expectBad(rawFile({ x: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, 8), 'ERR_BAD_FILE', /shape/));
  it('missing data_offsets', () => expectBad(rawFile({ x: { dtype: 'F32', shape: [2] } }, 8), 'ERR_BAD_FILE', /data_offsets/));
  it('data_offsets not a pair', () => expectBad(rawFile({ x: { dtype: 'F32', shape: [2], data_offsets: [0] } }, 8), 'ERR_BAD_FILE', /pair/));
  it('data_offsets reversed', () => expectBad(rawFile({ x: { dtype: 'F32', shape: [0], data_offsets: [8, 0] } }, 8), 'ERR_BAD_FILE', /wrong order/));
  it('data_offsets out of range', () =>
    expectBad(rawFile({ x: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, 8), 'ERR_BAD_FILE', /past the data section/));
  it('overlapping tensors', () =>
    expectBad(
      rawFile({ x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, y: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, 12),
      'ERR_BAD_FILE',
      /'y'.*overlap/,
    ));
  it('a hole between tensors', () =>
    expectBad(
      rawFile({ x: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, y: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } }, 12),
      'ERR_BAD_FILE',
      /'y'.*hole/,
    ));
  it('a hole at the start', () => expectBad(rawFile({ x: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, 8), 'ERR_BAD_FILE', /hole/));
  it('trailing bytes after the last tensor', () => expectBad(rawFile(ok, 12), 'ERR_BAD_FILE', /trailing/));
  it('truncated data section', () => expectBad(rawFile(ok, 6), 'ERR_BAD_FILE', /past the data section/));
  it('wrong byte length for the shape', () =>
    expectBad(rawFile({ x: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, 8), 'ERR_BAD_FILE', /needs 12 bytes/));
  it('unknown dtype', () => expectBad(rawFile({ x: { dtype: 'F33', shape: [2], data_offsets: [0, 8] } }, 8), 'ERR_BAD_FILE', /unknown dtype 'F33'/));
  it('inherited property names are not dtypes', () =>
    expectBad(rawFile({ x: { dtype: 'constructor', shape: [2], data_offsets: [0, 8] } }, 8), 'ERR_BAD_FILE', /unknown dtype/));
  it('duplicate tensor names', () =>
    expectBad(
      rawFile(
        '{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"\\u0078":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}',
        8,
      ),
      'ERR_BAD_FILE',
      /'x' twice/,
    ));
  it('__metadata__ with a non-string value', () =>
    expectBad(rawFile({ __metadata__: { a: 1 }, ...ok }, 8), 'ERR_BAD_FILE', /__metadata__/));
  it('__metadata__ that is an array', () => expectBad(rawFile({ __metadata__: ['a'], ...ok }, 8), 'ERR_BAD_FILE', /__metadata__/));
  it('missing file', () => {
    const file = path.join(dir, 'absent.safetensors');
    const e = catchErr(() => readSafetensors(file));
    expect(e.code).toBe('ERR_NOT_FOUND');
    expect(e.message).toContain(file);
  });
  it('accepts null __metadata__, an empty header object and whitespace padding', () => {
    expect(parseSafetensors(rawFile('{"__metadata__":null}   ')).names).toEqual([]);
    expect(parseSafetensors(rawFile('{}')).names).toEqual([]);
  });
  it('duplicate scan handles nesting, escapes and strings holding braces', () => {
    expect(findDuplicateKey('{"a":{"b":1,"c":"}{,\\"b"},"b":[{"b":1},{"b":2}]}')).toBeUndefined();
    expect(findDuplicateKey('{"a":{"b":1,"b":2}}')).toBe('b');
    expect(findDuplicateKey('{"a\\"":1,"a\\u0022":2}')).toBe('a"');
  });
});

describe('safetensors writer failures leave nothing behind', () => {
  it('target directory does not exist', () => {
    const file = path.join(dir, 'no', 'such', 'out.safetensors');
    expect(() => writeSafetensorsSync(file, { x: new Tensor('f32', [1], f32(1)) })).toThrow(/ENOENT/);
    expect(fs.readdirSync(dir)).toEqual([]);
  });
  it('a value that is not a Tensor', async () => {
    const file = path.join(dir, 'out.safetensors');
    const bad = { x: new Tensor('f32', [1], f32(1)), y: Float32Array.of(1) } as unknown as Record<string, Tensor>;
    expect(() => writeSafetensorsSync(file, bad)).toThrow(TypeError);
    await expect(writeSafetensors(file, bad)).rejects.toThrow(/tensors\['y'\]/);
    expect(() => writeSafetensorsSync(file, { x: new Tensor('f32', [1], f32(1)) }, { n: 1 } as unknown as Record<string, string>)).toThrow(TypeError);
    expect(() => writeSafetensorsSync(file, { __metadata__: new Tensor('f32', [1], f32(1)) })).toThrow(/reserved/);
    expect(fs.readdirSync(dir)).toEqual([]);
  });
  it('an error in the middle of writing removes the temp file and keeps the old file', () => {
    const file = path.join(dir, 'out.bin');
    fs.writeFileSync(file, 'previous');
    expect(() =>
      writeFileAtomicSync(file, (fd) => {
        fs.writeSync(fd, Buffer.alloc(1000, 1));
        throw new Error('disk on fire');
      }),
    ).toThrow('disk on fire');
    expect(fs.readdirSync(dir)).toEqual(['out.bin']);
    expect(fs.readFileSync(file, 'utf8')).toBe('previous');
  });
  it('writeDirAtomic swaps a whole folder in, or leaves the old one', async () => {
    const target = path.join(dir, 'model');
    await writeDirAtomic(target, async (tmp) => writeSafetensors(path.join(tmp, 'model.safetensors'), { x: new Tensor('u8', [1], Uint8Array.of(9)) }));
    expect(readSafetensors(path.join(target, 'model.safetensors')).get('x').data[0]).toBe(9);
    await expect(
      writeDirAtomic(target, async (tmp) => {
        fs.writeFileSync(path.join(tmp, 'half'), 'x');
        throw new Error('nope');
      }),
    ).rejects.toThrow('nope');
    expect(fs.readdirSync(dir)).toEqual(['model']);
    expect(fs.readdirSync(target)).toEqual(['model.safetensors']);
    await writeDirAtomic(target, async (tmp) => fs.writeFileSync(path.join(tmp, 'new'), 'y'));
    expect(fs.readdirSync(target)).toEqual(['new']);
    expect(fs.readdirSync(dir)).toEqual(['model']);
  });
});

describe('sharded checkpoints', () => {
  function makeSharded(index: unknown) {
    writeSafetensorsSync(path.join(dir, 'model-00001-of-00002.safetensors'), { a: new Tensor('f32', [2], f32(2)), b: new Tensor('i8', [1], Int8Array.of(-3)) });
    writeSafetensorsSync(path.join(dir, 'model-00002-of-00002.safetensors'), { c: new Tensor('f32', [1], Float32Array.of(42)) });
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), typeof index === 'string' ? index : JSON.stringify(index));
  }
  const goodMap = { a: 'model-00001-of-00002.safetensors', b: 'model-00001-of-00002.safetensors', c: 'model-00002-of-00002.safetensors' };

  function expectFolderErr(code: string, pattern: RegExp) {
    const e = catchErr(() => loadSafetensorsFolder(dir));
    expect(e).toBeInstanceOf(QuantkitError);
    expect(e.code).toBe(code);
    expect(e.message).toMatch(pattern);
    return e;
  }

  it('loads one lookup across shards', () => {
    makeSharded({ metadata: { total_size: 13 }, weight_map: goodMap });
    const ck = loadSafetensorsFolder(dir);
    expect([...ck.names].sort()).toEqual(['a', 'b', 'c']);
    expect(ck.get('c').data[0]).toBe(42);
    expect(ck.get('b').data[0]).toBe(-3);
    expect(ck.files.length).toBe(2);
    expect(ck.metadata).toEqual({ total_size: '13' });
    expect(catchErr(() => ck.get('d')).code).toBe('ERR_NOT_FOUND');
  });
  it('a single model.safetensors folder', () => {
    writeSafetensorsSync(path.join(dir, 'model.safetensors'), { w: new Tensor('f32', [1], f32(1)) }, { format: 'pt' });
    const ck = loadSafetensorsFolder(dir);
    expect(ck.names).toEqual(['w']);
    expect(ck.metadata).toEqual({ format: 'pt' });
  });
  it('missing shard', () => {
    makeSharded({ weight_map: { ...goodMap, d: 'model-00003-of-00002.safetensors' } });
    const e = expectFolderErr('ERR_NOT_FOUND', /model-00003-of-00002\.safetensors/);
    expect(e.message).toContain(dir);
  });
  it('a mapped name its shard does not hold', () => {
    makeSharded({ weight_map: { ...goodMap, c: 'model-00001-of-00002.safetensors' } });
    expectFolderErr('ERR_BAD_FILE', /'c'.*does not hold/);
  });
  it('a shard tensor the index does not map', () => {
    const { c: _c, ...rest } = goodMap;
    makeSharded({ weight_map: { ...rest, x: 'model-00002-of-00002.safetensors' } });
    expectFolderErr('ERR_BAD_FILE', /'x'|'c'/);
  });
  it('shard paths cannot leave the folder', () => {
    makeSharded({ weight_map: { ...goodMap, c: '../model-00002-of-00002.safetensors' } });
    expectFolderErr('ERR_BAD_FILE', /not a file name/);
  });
  it('corrupt index JSON, missing weight_map, duplicate keys', () => {
    makeSharded('{"weight_map": {');
    expectFolderErr('ERR_BAD_FILE', /index\.json.*JSON/);
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), '{"metadata": {}}');
    expectFolderErr('ERR_BAD_FILE', /weight_map/);
    fs.writeFileSync(
      path.join(dir, 'model.safetensors.index.json'),
      '{"weight_map": {"a": "model-00001-of-00002.safetensors", "a": "model-00001-of-00002.safetensors"}}',
    );
    expectFolderErr('ERR_BAD_FILE', /'a' occurs twice/);
  });
  it('a folder without weights', () => {
    expectFolderErr('ERR_NOT_FOUND', /model\.safetensors/);
  });
  it('a corrupt shard names the shard', () => {
    makeSharded({ weight_map: goodMap });
    fs.writeFileSync(path.join(dir, 'model-00002-of-00002.safetensors'), Buffer.alloc(4));
    const e = expectFolderErr('ERR_BAD_FILE', /truncated/);
    expect(e.message).toContain('model-00002-of-00002.safetensors');
  });
});

const present = requireFixtures('stories260K/model.safetensors');
describe.skipIf(!present)('stories260K model.safetensors', () => {
  it('parses the real file', () => {
    const st = readSafetensors(fixture('stories260K', 'model.safetensors'));
    expect(st.names.length).toBe(47);
    expect(st.metadata).toBeTypeOf('object');
    expect(st.get('model.embed_tokens.weight').shape).toEqual([512, 64]);
    expect(st.get('model.layers.4.self_attn.k_proj.weight').shape).toEqual([32, 64]);
    expect(st.get('model.layers.0.mlp.down_proj.weight').shape).toEqual([64, 172]);
    // re-writing it gives a file that reads back identically
    const out = path.join(root, 'copy.safetensors');
    writeSafetensorsSync(out, Object.fromEntries(st.names.map((n) => [n, st.get(n)])), { ...st.metadata });
    const again = readSafetensors(out);
    for (const n of st.names) expect(Buffer.from(again.get(n).data.buffer, again.get(n).data.byteOffset, again.get(n).nbytes).equals(Buffer.from(st.get(n).data.buffer, st.get(n).data.byteOffset, st.get(n).nbytes))).toBe(true);
  });
});

describe('read progress', () => {
  it('reports the bytes read of each file while a listener is installed, and only then', async () => {
    const { withReadProgress } = await import('../lib/io/read-progress.js');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qk-readprog-'));
    try {
      const file = path.join(dir, 'a.safetensors');
      writeSafetensorsSync(file, { w: Tensor.fromArray([1, 2, 3, 4], [2, 2]) });
      const seen: [number, number, string][] = [];
      const st = withReadProgress((d, t, f) => seen.push([d, t, f]), () => readSafetensors(file));
      const size = fs.statSync(file).size;
      expect(seen).toEqual([[size, size, file]]);
      expect(Array.from(st.get('w').data as Float32Array)).toEqual([1, 2, 3, 4]);
      readSafetensors(file); // no listener now: nothing reported
      expect(seen).toHaveLength(1);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
