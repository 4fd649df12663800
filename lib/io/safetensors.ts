/**
 * safetensors: read (single files and sharded folders) and write.
 *
 * Format: u64 little-endian header length N, N bytes of UTF-8 JSON
 * ({name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {..}}),
 * then the data section; offsets are relative to the data section. The
 * header is validated fully before any tensor is handed out, because a
 * checkpoint is untrusted input: every problem is an ERR_BAD_FILE naming the
 * file. Tensors are zero-copy views over one Buffer holding the whole file.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { addon } from '../binding.js';
import { QuantkitError, describe, typeError } from '../errors.js';
import { hugeArray } from '../ops/huge-pages.js';
import { noteMapped } from '../provenance.js';
import { Tensor, type DType } from '../tensor.js';
import { alignedChunks, writeAllSync, writeFileAtomic, writeFileAtomicSync } from './atomic.js';
import { assertFinite } from './finite.js';
import { reportRead } from './read-progress.js';

/** Bytes per element of every dtype the safetensors format defines (byte-sized ones). */
const ST_DTYPE_BYTES: Readonly<Record<string, number>> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  F8_E8M0: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
  C64: 8,
};

const TO_TENSOR: Readonly<Record<string, DType>> = { F32: 'f32', F16: 'f16', BF16: 'bf16', I8: 'i8', U8: 'u8', I32: 'i32' };
const FROM_TENSOR: Readonly<Record<DType, string>> = { f32: 'F32', f16: 'F16', bf16: 'BF16', i8: 'I8', u8: 'U8', i32: 'I32' };

/** Headers larger than this are refused (the reference implementation's limit too). */
export const MAX_HEADER_BYTES = 100_000_000;

/** What the header says about one tensor. Offsets are absolute within the file. */
export interface TensorInfo {
  readonly name: string;
  /** The safetensors dtype string, e.g. 'F32', 'BF16', 'I64'. */
  readonly dtype: string;
  readonly shape: readonly number[];
  /** Byte range [begin, end) within the file (data_offsets + 8 + header length). */
  readonly begin: number;
  readonly end: number;
}

/** A read-only name -> Tensor lookup (one file, or a sharded checkpoint). */
export interface TensorSource {
  /** Tensor names, in data order (sharded: shard by shard). */
  readonly names: readonly string[];
  readonly metadata: Readonly<Record<string, string>>;
  has(name: string): boolean;
  /** Header info of a tensor; throws ERR_NOT_FOUND. */
  info(name: string): TensorInfo;
  /** The tensor; throws ERR_NOT_FOUND, or ERR_UNSUPPORTED for a dtype Tensor cannot hold (F64, I64, ...). */
  get(name: string): Tensor;
}

function bad(file: string, problem: string): QuantkitError {
  return new QuantkitError('ERR_BAD_FILE', `${file}: not a valid safetensors file: ${problem}`);
}

/**
 * The first key that occurs twice in one JSON object, at any depth, or
 * undefined. JSON.parse silently keeps the last duplicate, so a scan of the
 * raw text is the only way to see them. `text` must already be valid JSON.
 */
export function findDuplicateKey(text: string): string | undefined {
  const stack: (Set<string> | null)[] = []; // a key set per open object; null for arrays
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      while (text.charCodeAt(j) !== 0x22) j += text.charCodeAt(j) === 0x5c /* \ */ ? 2 : 1;
      if (expectKey) {
        const key = JSON.parse(text.slice(i, j + 1)) as string; // resolves escapes: "a" and "\u0061" are the same key
        const keys = stack[stack.length - 1]!;
        if (keys.has(key)) return key;
        keys.add(key);
        expectKey = false;
      }
      i = j;
    } else if (c === 0x7b /* { */) {
      stack.push(new Set());
      expectKey = true;
    } else if (c === 0x5b /* [ */) {
      stack.push(null);
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
    } else if (c === 0x2c /* , */) {
      expectKey = stack[stack.length - 1] != null;
    }
  }
  return undefined;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** One safetensors file held in memory. */
export class SafetensorsFile implements TensorSource {
  readonly file: string;
  /** The whole file; tensors view into it. */
  readonly buffer: Uint8Array;
  readonly names: readonly string[];
  readonly metadata: Readonly<Record<string, string>>;
  /** Header length N (the data section starts at 8 + N). */
  readonly headerLength: number;
  private readonly infos: Map<string, TensorInfo>;
  private readonly cache = new Map<string, Tensor>();

  /** Use parseSafetensors / readSafetensors. */
  constructor(file: string, buffer: Uint8Array, headerLength: number, infos: Map<string, TensorInfo>, metadata: Record<string, string>) {
    this.file = file;
    this.buffer = buffer;
    this.headerLength = headerLength;
    this.infos = infos;
    this.names = Object.freeze([...infos.keys()]);
    this.metadata = Object.freeze(metadata);
  }

  /** Header info per tensor, in data order. */
  get header(): ReadonlyMap<string, TensorInfo> {
    return this.infos;
  }

  has(name: string): boolean {
    return this.infos.has(name);
  }

  info(name: string): TensorInfo {
    const info = this.infos.get(name);
    if (info === undefined) throw new QuantkitError('ERR_NOT_FOUND', `${this.file}: no tensor named '${name}'`);
    return info;
  }

  get(name: string): Tensor {
    const hit = this.cache.get(name);
    if (hit !== undefined) return hit;
    const info = this.info(name);
    const dtype = TO_TENSOR[info.dtype];
    if (dtype === undefined) {
      throw new QuantkitError('ERR_UNSUPPORTED', `${this.file}: tensor '${name}' has dtype ${info.dtype}, which quantkit does not load (supported: F32, F16, BF16, I8, U8, I32)`);
    }
    // zero-copy unless the data section start leaves this tensor misaligned (then fromBuffer copies)
    const t = Tensor.fromBuffer(dtype, info.shape, this.buffer, info.begin, name);
    assertFinite(t, this.file, name); // once per tensor: the result is cached
    this.cache.set(name, t);
    return t;
  }
}

/**
 * A Buffer view of `bytes` (no copy). Public signatures take Uint8Array (a
 * Buffer is one), so the published types do not need Node's type package.
 * @internal
 */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Parse and validate a safetensors file already in memory. `file` is used in
 * error messages only.
 */
export function parseSafetensors(buffer: Uint8Array, file = '<buffer>'): SafetensorsFile {
  const buf = asBuffer(buffer);
  if (buf.length < 8) throw bad(file, `truncated: ${buf.length} bytes, too short for the 8-byte header length`);
  const n64 = buf.readBigUInt64LE(0);
  if (n64 > BigInt(MAX_HEADER_BYTES)) throw bad(file, `header length ${n64} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  const n = Number(n64);
  if (8 + n > buf.length) throw bad(file, `header length ${n} runs past the end of the file (${buf.length} bytes)`);
  if (n < 2) throw bad(file, `header length ${n} is too small to hold a JSON object`);

  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(8, 8 + n));
  } catch {
    throw bad(file, 'header is not valid UTF-8');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw bad(file, `header is not valid JSON (${(err as Error).message})`);
  }
  if (!isPlainObject(json)) throw bad(file, `header must be a JSON object, got ${describe(json)}`);
  const dup = findDuplicateKey(text);
  if (dup !== undefined) throw bad(file, `header has the key '${dup}' twice`);

  const dataStart = 8 + n;
  const dataLength = buf.length - dataStart;
  let metadata: Record<string, string> = {};
  const entries: { name: string; dtype: string; shape: number[]; b: number; e: number }[] = [];
  for (const [name, v] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (v === null) continue; // the reference writer may emit null for "no metadata"
      if (!isPlainObject(v)) throw bad(file, `__metadata__ must be an object of strings, got ${describe(v)}`);
      for (const [k, s] of Object.entries(v)) {
        if (typeof s !== 'string') throw bad(file, `__metadata__ value of '${k}' must be a string, got ${describe(s)}`);
      }
      metadata = { ...(v as Record<string, string>) };
      continue;
    }
    const where = `tensor '${name}'`;
    if (!isPlainObject(v)) throw bad(file, `${where}: entry must be an object, got ${describe(v)}`);
    const { dtype, shape, data_offsets: offs } = v;
    if (typeof dtype !== 'string') throw bad(file, `${where}: missing or non-string dtype`);
    const size = ST_DTYPE_BYTES[dtype];
    if (size === undefined || !Object.prototype.hasOwnProperty.call(ST_DTYPE_BYTES, dtype)) throw bad(file, `${where}: unknown dtype '${dtype}'`);
    if (!Array.isArray(shape) || !shape.every(isCount)) throw bad(file, `${where}: shape must be an array of non-negative integers`);
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every(isCount)) {
      throw bad(file, `${where}: data_offsets must be a pair of non-negative integers`);
    }
    const [b, e] = offs as [number, number];
    if (b > e) throw bad(file, `${where}: data_offsets [${b}, ${e}] are in the wrong order`);
    if (e > dataLength) throw bad(file, `${where}: data_offsets [${b}, ${e}] run past the data section (${dataLength} bytes)`);
    let count = 1;
    for (const d of shape as number[]) count *= d;
    if (!Number.isSafeInteger(count * size) || count * size !== e - b) {
      throw bad(file, `${where}: shape [${shape.join(', ')}] of ${dtype} needs ${count * size} bytes but data_offsets [${b}, ${e}] hold ${e - b}`);
    }
    entries.push({ name, dtype, shape: shape as number[], b, e });
  }

  // The tensors must tile the data section exactly: no overlap, no hole, nothing trailing.
  // (checked in data order; names keep the header's order)
  const byOffset = [...entries].sort((x, y) => x.b - y.b || x.e - y.e);
  let at = 0;
  for (const t of byOffset) {
    if (t.b < at) throw bad(file, `tensor '${t.name}': data_offsets [${t.b}, ${t.e}] overlap the previous tensor (which ends at ${at})`);
    if (t.b > at) throw bad(file, `tensor '${t.name}': data_offsets [${t.b}, ${t.e}] leave a hole of ${t.b - at} bytes after offset ${at}`);
    at = t.e;
  }
  if (at !== dataLength) throw bad(file, `the data section holds ${dataLength} bytes but the tensors cover ${at} (trailing bytes or truncated file)`);

  const infos = new Map<string, TensorInfo>();
  for (const t of entries) {
    infos.set(t.name, Object.freeze({ name: t.name, dtype: t.dtype, shape: Object.freeze(t.shape), begin: dataStart + t.b, end: dataStart + t.e }));
  }
  return new SafetensorsFile(file, buf, n, infos, metadata);
}

/** Bytes per read call of readFileUnpooled. */
const READ_CHUNK = 64 << 20;

/**
 * A Buffer for a whole weight file read into memory, with the file's byte
 * `lineAt` on a 64-byte line. The weights are used in place from it, so it
 * lies as quantize()'s arrays do: on huge pages, and with the weights on
 * lines (ops/huge-pages.ts) when they are a whole number of lines apart.
 */
function fileBuffer(size: number, lineAt: number): Buffer {
  const shift = (64 - (lineAt % 64)) % 64;
  const bytes = hugeArray(Uint8Array, size + shift);
  return Buffer.from(bytes.buffer, bytes.byteOffset + shift, size);
}

/**
 * Where a safetensors file's data section starts (8 + the header length
 * its first 8 bytes give), or 0 when they give none a parser would accept.
 * Hugging Face's writer pads the header to 8 bytes only, so the section
 * usually starts mid-line; its tensors are then as far from a line as the
 * section's start, since their sizes are nearly always whole lines.
 */
function dataStart(head: Buffer, got: number): number {
  if (got < 8) return 0;
  const n = head.readBigUInt64LE(0);
  return n <= BigInt(MAX_HEADER_BYTES) ? 8 + Number(n) : 0;
}

function safetensorsDataStart(fd: number): number {
  const head = Buffer.alloc(8);
  return dataStart(head, fs.readSync(fd, head, 0, 8, 0));
}

/**
 * Read a whole file into a Buffer of its own, with the file's byte `lineAt`
 * (0 by default; a function of the open file descriptor, for formats whose
 * data start is in a header) on a 64-byte line. The kernels read weights in
 * 64-byte vectors, and one that starts mid-line spans two lines: the
 * synthetic fp32 Llama of bench/ (12 x d768) read from a file whose data
 * section starts 8 bytes past a line decoded in 0.82-0.95x the time per
 * token (median of 4 process pairs 0.86) once this put it on lines (AMD
 * EPYC Zen 5, one thread, memory-bound decode). fs.readFileSync
 * may hand back a slice of Node's shared pool for small files, at an offset
 * that would break typed-array alignment and keep unrelated memory alive.
 * Errors: ERR_NOT_FOUND for a missing file, ERR_BAD_FILE otherwise; both name it.
 * @internal
 */
export function readFileUnpooled(file: string, what: string, lineAt: number | ((fd: number) => number) = 0): Buffer {
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, 'r');
    const size = fs.fstatSync(fd).size;
    const buf = fileBuffer(size, typeof lineAt === 'number' ? lineAt : lineAt(fd));
    let off = 0;
    while (off < size) {
      // in chunks, so a progress bar can follow a multi-gigabyte file
      const n = fs.readSync(fd, buf, off, Math.min(READ_CHUNK, size - off), off);
      if (n === 0) throw new Error(`file shrank while reading (${off} of ${size} bytes)`);
      off += n;
      reportRead(off, size, file);
    }
    return buf;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new QuantkitError('ERR_NOT_FOUND', `${what} not found: ${file}`, { cause: err });
    throw new QuantkitError('ERR_BAD_FILE', `${file}: cannot read ${what} (${(err as Error).message})`, { cause: err });
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

const readWhole = readFileUnpooled;

export interface ReadOptions {
  /**
   * Map the file into memory instead of reading it (native mmap, private
   * copy-on-write): loading copies nothing, tensors are views of the page
   * cache, and processes mapping the same file share its pages. The mapping
   * lives as long as a tensor of it does. Do not truncate a mapped file in
   * place (replace it by rename, as quantkit's saves do).
   */
  readonly mmap?: boolean;
}

/**
 * A Buffer over the mapped bytes of `file` (byteOffset 0, page-aligned).
 * Errors as readFileUnpooled's.
 * @internal
 */
export function mapFileBuffer(file: string, what: string): Buffer {
  let ab: ArrayBuffer;
  try {
    ab = addon.mapFile(file);
  } catch (err) {
    const msg = (err as Error).message;
    if (msg.startsWith('ENOENT')) throw new QuantkitError('ERR_NOT_FOUND', `${what} not found: ${file}`, { cause: err });
    throw new QuantkitError('ERR_BAD_FILE', `${file}: cannot map ${what} (${msg})`, { cause: err });
  }
  reportRead(ab.byteLength, ab.byteLength, file);
  noteMapped(ab);
  return Buffer.from(ab);
}

/** Read (or map, see ReadOptions) and validate one .safetensors file. */
export function readSafetensors(file: string, options: ReadOptions = {}): SafetensorsFile {
  return parseSafetensors(options.mmap ? mapFileBuffer(file, 'safetensors file') : readWhole(file, 'safetensors file', safetensorsDataStart), file);
}

/** A sharded checkpoint (or a single file) seen as one name -> Tensor lookup. */
export class SafetensorsCheckpoint implements TensorSource {
  readonly folder: string;
  readonly files: readonly SafetensorsFile[];
  readonly names: readonly string[];
  /** The index's "metadata" (e.g. total_size) for sharded folders, else the single file's __metadata__. */
  readonly metadata: Readonly<Record<string, string>>;
  private readonly owner: Map<string, SafetensorsFile>;

  constructor(folder: string, files: SafetensorsFile[], owner: Map<string, SafetensorsFile>, metadata: Record<string, string>) {
    this.folder = folder;
    this.files = Object.freeze([...files]);
    this.owner = owner;
    this.names = Object.freeze([...owner.keys()]);
    this.metadata = Object.freeze(metadata);
  }
  has(name: string): boolean {
    return this.owner.has(name);
  }
  private source(name: string): SafetensorsFile {
    const f = this.owner.get(name);
    if (f === undefined) throw new QuantkitError('ERR_NOT_FOUND', `${this.folder}: no tensor named '${name}' in the checkpoint`);
    return f;
  }
  info(name: string): TensorInfo {
    return this.source(name).info(name);
  }
  get(name: string): Tensor {
    return this.source(name).get(name);
  }
}

export const SAFETENSORS_INDEX = 'model.safetensors.index.json';
export const SAFETENSORS_SINGLE = 'model.safetensors';

/**
 * Load the weights of a Hugging Face model folder: `model.safetensors.index.json`
 * with its shards if present, else `model.safetensors`. Every shard must
 * exist, every mapped tensor must be in the shard the index names, and no
 * shard may hold a tensor the index does not map to it.
 */
export function loadSafetensorsFolder(folder: string, options: ReadOptions = {}): SafetensorsCheckpoint {
  const indexPath = path.join(folder, SAFETENSORS_INDEX);
  if (!fs.existsSync(indexPath)) {
    const single = path.join(folder, SAFETENSORS_SINGLE);
    if (!fs.existsSync(single)) {
      throw new QuantkitError('ERR_NOT_FOUND', `${folder}: neither ${SAFETENSORS_INDEX} nor ${SAFETENSORS_SINGLE} found`);
    }
    const f = readSafetensors(single, options);
    return new SafetensorsCheckpoint(folder, [f], new Map(f.names.map((n) => [n, f])), { ...f.metadata });
  }

  const badIndex = (problem: string) => new QuantkitError('ERR_BAD_FILE', `${indexPath}: not a valid safetensors index: ${problem}`);
  const text = readWhole(indexPath, 'safetensors index').toString('utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw badIndex(`not valid JSON (${(err as Error).message})`);
  }
  if (!isPlainObject(json)) throw badIndex(`must be a JSON object, got ${describe(json)}`);
  const dup = findDuplicateKey(text);
  if (dup !== undefined) throw badIndex(`the key '${dup}' occurs twice`);
  const { weight_map: map, metadata: meta } = json;
  if (!isPlainObject(map)) throw badIndex('missing or non-object "weight_map"');
  const metadata: Record<string, string> = {};
  if (meta !== undefined && meta !== null) {
    if (!isPlainObject(meta)) throw badIndex(`"metadata" must be an object, got ${describe(meta)}`);
    // values such as total_size are numbers in the wild; keep them as strings
    for (const [k, v] of Object.entries(meta)) metadata[k] = typeof v === 'string' ? v : JSON.stringify(v);
  }

  const shards = new Map<string, SafetensorsFile>();
  const owner = new Map<string, SafetensorsFile>();
  for (const [name, shard] of Object.entries(map)) {
    if (typeof shard !== 'string' || shard === '' || shard !== path.basename(shard) || shard === '.' || shard === '..') {
      // a shard must be a plain file name in this folder, never a path out of it
      throw badIndex(`tensor '${name}' maps to ${typeof shard === 'string' ? `'${shard}'` : describe(shard)}, not a file name in the folder`);
    }
    let f = shards.get(shard);
    if (f === undefined) {
      const shardPath = path.join(folder, shard);
      if (!fs.existsSync(shardPath)) throw new QuantkitError('ERR_NOT_FOUND', `${indexPath}: shard ${shardPath} (holding '${name}') not found`);
      f = readSafetensors(shardPath, options);
      shards.set(shard, f);
    }
    if (!f.has(name)) throw badIndex(`tensor '${name}' is mapped to ${f.file}, which does not hold it`);
    owner.set(name, f);
  }
  for (const f of shards.values()) {
    for (const name of f.names) {
      if (owner.get(name) !== f) throw badIndex(`${f.file} holds tensor '${name}', which the index does not map to it`);
    }
  }
  return new SafetensorsCheckpoint(folder, [...shards.values()], owner, metadata);
}

// ---------------------------------------------------------------- writing

export type TensorMap = Record<string, Tensor> | ReadonlyMap<string, Tensor>;

/** Validate the inputs and build the padded header; nothing touches the disk. */
function encodeHeader(fn: string, tensors: TensorMap, metadata: Record<string, string> | undefined): { header: Buffer; list: Tensor[] } {
  if (!(tensors instanceof Map) && !isPlainObject(tensors)) throw typeError(fn, 'tensors', `must be an object or a Map of Tensors, got ${describe(tensors)}`);
  const pairs: [unknown, unknown][] = tensors instanceof Map ? [...(tensors as ReadonlyMap<unknown, unknown>).entries()] : Object.entries(tensors);
  const json: Record<string, unknown> = {};
  if (metadata !== undefined) {
    if (!isPlainObject(metadata)) throw typeError(fn, 'metadata', `must be an object of strings, got ${describe(metadata)}`);
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw typeError(fn, 'metadata', `value of '${k}' must be a string, got ${describe(v)}`);
    }
    // define rather than assign: a '__proto__' key must stay an own property
    Object.defineProperty(json, '__metadata__', { value: { ...metadata }, enumerable: true, writable: true, configurable: true });
  }
  for (const [name, t] of pairs) {
    if (typeof name !== 'string') throw typeError(fn, 'tensors', `keys must be strings, got ${describe(name)}`);
    if (name === '__metadata__') throw typeError(fn, 'tensors', `cannot hold a tensor named '__metadata__' (reserved)`);
    if (!(t instanceof Tensor)) throw typeError(fn, `tensors['${name}']`, `must be a Tensor, got ${describe(t)}`);
  }
  // Data order (the header keeps the given order): tensors whose sizes are
  // whole 64-byte lines first, so each starts on a line of the file, then
  // the others by element size, so each starts aligned to its element.
  // A file mapped or read onto a line then hands the kernels weights on
  // lines (a 64-byte vector or AMX tile row off a line touches two).
  const items = pairs as [string, Tensor][];
  const rank = (t: Tensor) => (t.data.byteLength % 64 === 0 ? 0 : 16 - t.data.BYTES_PER_ELEMENT);
  const order = items.map((_, i) => i).sort((i, j) => rank(items[i]![1]) - rank(items[j]![1]) || i - j);
  const offsets: [number, number][] = new Array(items.length);
  const list: Tensor[] = [];
  let offset = 0;
  for (const i of order) {
    const t = items[i]![1];
    offsets[i] = [offset, offset + t.data.byteLength];
    offset += t.data.byteLength;
    list.push(t);
  }
  items.forEach(([name, t], i) => {
    Object.defineProperty(json, name, {
      value: { dtype: FROM_TENSOR[t.dtype as DType], shape: [...t.shape], data_offsets: offsets[i] },
      enumerable: true,
      writable: true,
      configurable: true,
    });
  });
  const body = Buffer.from(JSON.stringify(json), 'utf8');
  // pad with spaces (valid JSON whitespace) so the data section starts on a 64-byte line of the file
  const padded = Math.ceil((8 + body.length) / 64) * 64 - 8;
  const header = Buffer.alloc(8 + padded, 0x20);
  header.writeBigUInt64LE(BigInt(padded), 0);
  body.copy(header, 8);
  return { header, list };
}

function bytesOf(t: Tensor): Uint8Array {
  // typed arrays are host-endian; every platform Node supports is little-endian, as safetensors requires
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/**
 * Write tensors and optional string metadata to `file` (the header lists
 * them in the order given; the data is laid out on lines, see encodeHeader,
 * and written in aligned chunks, see alignedChunks), atomically: a temp
 * file in the same folder is written, fsync'd and renamed; on any error
 * nothing is left behind.
 */
export function writeSafetensorsSync(file: string, tensors: TensorMap, metadata?: Record<string, string>): void {
  const { header, list } = encodeHeader('writeSafetensorsSync', tensors, metadata);
  writeFileAtomicSync(file, (fd) => {
    for (const c of alignedChunks([header, ...list.map(bytesOf)])) writeAllSync(fd, c);
  });
}

/** Async twin of writeSafetensorsSync. */
export async function writeSafetensors(file: string, tensors: TensorMap, metadata?: Record<string, string>): Promise<void> {
  const { header, list } = encodeHeader('writeSafetensors', tensors, metadata);
  await writeFileAtomic(file, async (h) => {
    let pos = 0;
    for (const data of alignedChunks([header, ...list.map(bytesOf)])) {
      // write() may write less than asked; loop until the chunk is out
      for (let off = 0; off < data.byteLength; ) {
        const { bytesWritten } = await h.write(data, off, data.byteLength - off, pos);
        off += bytesWritten;
        pos += bytesWritten;
      }
    }
  });
}

/** Read the whole file asynchronously (for callers that must not block), then parse it. */
export async function readSafetensorsAsync(file: string): Promise<SafetensorsFile> {
  let buf: Buffer;
  let h: fsp.FileHandle | undefined;
  try {
    h = await fsp.open(file, 'r');
    const size = (await h.stat()).size;
    const head = Buffer.alloc(8);
    buf = fileBuffer(size, dataStart(head, (await h.read(head, 0, 8, 0)).bytesRead));
    for (let off = 0; off < size; ) {
      const { bytesRead } = await h.read(buf, off, Math.min(READ_CHUNK, size - off), off);
      if (bytesRead === 0) throw new Error(`file shrank while reading (${off} of ${size} bytes)`);
      off += bytesRead;
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new QuantkitError('ERR_NOT_FOUND', `safetensors file not found: ${file}`, { cause: err });
    throw new QuantkitError('ERR_BAD_FILE', `${file}: cannot read safetensors file (${(err as Error).message})`, { cause: err });
  } finally {
    await h?.close();
  }
  return parseSafetensors(buf, file);
}
