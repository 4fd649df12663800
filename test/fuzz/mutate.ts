/**
 * Deterministic mutators for the fuzz harness: the same (seed, input index)
 * always gives the same bytes, so any finding replays from its numbers.
 * Byte-level mutations (bit flips, edge bytes, chunk insert/delete/duplicate,
 * truncation) reach the parsers' framing; structure-aware ones (JSON values,
 * text lines, a safetensors header, a llama2.c header) get past the first
 * check and reach the code behind it.
 */

/** mulberry32: a small seeded PRNG with a good enough spread for mutation choices. */
export class Rng {
  #a: number;
  constructor(seed: number) {
    this.#a = seed >>> 0;
  }
  next(): number {
    this.#a = (this.#a + 0x6d2b79f5) >>> 0;
    let t = this.#a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
}

/** The PRNG for input `index` of a run seeded `seed` (independent streams per input). */
export function inputRng(seed: number, index: number, salt: number): Rng {
  return new Rng((Math.imul(seed, 0x9e3779b1) ^ Math.imul(index + 1, 0x85ebca6b) ^ Math.imul(salt, 0xc2b2ae35)) >>> 0);
}

const EDGE_BYTES = [0x00, 0xff, 0x7f, 0x80, 0x01, 0xfe, 0x20, 0x0a, 0x22, 0x5c, 0x7b, 0x7d];

/** 1-8 byte-level edits of `src` (a copy). */
export function mutateBytes(src: Uint8Array, r: Rng): Buffer {
  let b = Buffer.from(src);
  const edits = 1 + r.int(8);
  for (let e = 0; e < edits; e++) {
    const n = b.length;
    switch (r.int(8)) {
      case 0: // bit flips
        if (n) for (let i = 0, k = 1 + r.int(8); i < k; i++) b[r.int(n)]! ^= 1 << r.int(8);
        break;
      case 1: // edge bytes
        if (n) for (let i = 0, k = 1 + r.int(4); i < k; i++) b[r.int(n)] = r.pick(EDGE_BYTES);
        break;
      case 2: // truncate
        b = b.subarray(0, r.int(n + 1));
        break;
      case 3: // extend with junk
        b = Buffer.concat([b, Buffer.from(Array.from({ length: 1 + r.int(64) }, () => r.int(256)))]);
        break;
      case 4: {
        // delete a chunk
        const at = r.int(n + 1);
        b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(n, at + 1 + r.int(256)))]);
        break;
      }
      case 5: {
        // duplicate a chunk in place
        const at = r.int(n + 1);
        const chunk = b.subarray(at, Math.min(n, at + 1 + r.int(256)));
        b = Buffer.concat([b.subarray(0, at), chunk, b.subarray(at)]);
        break;
      }
      case 6: {
        // overwrite 4 bytes with an edge int32 (lengths, counts, offsets)
        if (n >= 4) {
          const v = r.pick([0, -1, 1, 0x7fffffff, -0x80000000, 0x10000, n, n + 1]);
          Buffer.from(Int32Array.of(v).buffer).copy(b, r.int(n - 3));
        }
        break;
      }
      default: {
        // overwrite 4 bytes with an edge float32 (weights, scores)
        if (n >= 4) {
          const v = r.pick([NaN, Infinity, -Infinity, 3.4e38, -3.4e38, 1e-45, 0, -0]);
          Buffer.from(Float32Array.of(v).buffer).copy(b, r.int(n - 3));
        }
      }
    }
  }
  return b;
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const EDGE_NUMBERS = [0, -1, 1, -0.5, 0.5, 2 ** 31, 2 ** 53, -(2 ** 53), 1e308, -1e308, 1e-308, 3, 7, 1e9];

function edgeValue(r: Rng, old: Json): Json {
  switch (r.int(8)) {
    case 0:
      return r.pick(EDGE_NUMBERS);
    case 1:
      return typeof old === 'number' ? old + r.pick([-1, 1, 2, -2, 1000]) : r.pick(EDGE_NUMBERS);
    case 2:
      return r.pick(['', 'x', 'NaN', '\u0000', 'é'.repeat(1 + r.int(4)), 'a'.repeat(1 << (4 + r.int(12)))]);
    case 3:
      return r.pick([null, true, false]);
    case 4:
      return [];
    case 5:
      return {};
    case 6:
      return Array.from({ length: 1 + r.int(5) }, () => r.pick(EDGE_NUMBERS));
    default:
      return typeof old === 'string' ? old + old : typeof old === 'number' ? -old : null;
  }
}

/** Every (container, key) slot of a JSON value, up to `cap` of them (reservoir-free: first come). */
function slots(v: Json, out: [Json[] | { [k: string]: Json }, string | number][], cap: number): void {
  if (out.length >= cap || v === null || typeof v !== 'object') return;
  if (Array.isArray(v)) {
    // long arrays (a vocabulary, merges): sample a few entries, not all
    const step = Math.max(1, Math.floor(v.length / 64));
    for (let i = 0; i < v.length && out.length < cap; i += step) {
      out.push([v, i]);
      slots(v[i]!, out, cap);
    }
  } else {
    const keys = Object.keys(v);
    const step = Math.max(1, Math.floor(keys.length / 64));
    for (let i = 0; i < keys.length && out.length < cap; i += step) {
      out.push([v, keys[i]!]);
      slots(v[keys[i]!]!, out, cap);
    }
  }
}

/** 1-4 edits to values anywhere in a JSON document: edge numbers, wrong types, deleted keys, huge strings. */
export function mutateJson(src: Uint8Array, r: Rng): Buffer {
  let doc: Json;
  try {
    doc = JSON.parse(Buffer.from(src).toString('utf8')) as Json;
  } catch {
    return mutateBytes(src, r);
  }
  const all: [Json[] | { [k: string]: Json }, string | number][] = [];
  slots(doc, all, 4096);
  const edits = 1 + r.int(4);
  for (let e = 0; e < edits && all.length; e++) {
    const [c, k] = r.pick(all);
    if (!Array.isArray(c) && r.int(5) === 0) delete c[k as string];
    else if (Array.isArray(c) && r.int(6) === 0) c.splice(k as number, 1);
    else (c as Record<string | number, Json>)[k] = edgeValue(r, (c as Record<string | number, Json>)[k]!);
  }
  return Buffer.from(JSON.stringify(doc));
}

/** 1-8 line edits of a text file: delete, duplicate, swap, reverse the two halves of a line, very long lines. */
export function mutateLines(src: Uint8Array, r: Rng): Buffer {
  const lines = Buffer.from(src).toString('utf8').split('\n');
  const edits = 1 + r.int(8);
  for (let e = 0; e < edits; e++) {
    if (lines.length === 0) lines.push('');
    const i = r.int(lines.length);
    switch (r.int(6)) {
      case 0:
        lines.splice(i, 1);
        break;
      case 1:
        lines.splice(r.int(lines.length), 0, lines[i]!);
        break;
      case 2: {
        const j = r.int(lines.length);
        [lines[i], lines[j]] = [lines[j]!, lines[i]!];
        break;
      }
      case 3:
        lines[i] = lines[i]!.split(' ').reverse().join(' ');
        break;
      case 4:
        lines[i] = `${lines[i]!}${r.pick([' ', '  ', '\r', '\t'])}${lines[r.int(lines.length)]!}`;
        break;
      default:
        lines[i] = r.pick(['', ' ', 'a '.repeat(1 << r.int(14)), `${'x'.repeat(1 << r.int(16))} y`]);
    }
  }
  return Buffer.from(lines.join('\n'));
}

/** safetensors: edit the JSON header (offsets, shapes, dtypes), keep or break its length prefix. */
export function mutateSafetensors(src: Uint8Array, r: Rng): Buffer {
  const b = Buffer.from(src);
  if (b.length < 8) return mutateBytes(b, r);
  const n = Number(b.readBigUInt64LE(0));
  if (n <= 0 || 8 + n > b.length) return mutateBytes(b, r);
  const header = mutateJson(b.subarray(8, 8 + n), r);
  const len = Buffer.alloc(8);
  // mostly a consistent length (to reach the checks behind the header), sometimes not
  len.writeBigUInt64LE(BigInt(r.int(4) === 0 ? r.pick([0, 1, header.length + 1, header.length - 1, 2 ** 40]) : header.length));
  return Buffer.concat([len, header, b.subarray(8 + n)]);
}

/** llama2.c checkpoint: one of the seven int32 header fields set to an edge value, or a byte mutation of the body. */
export function mutateLlama2cHeader(src: Uint8Array, r: Rng): Buffer {
  const b = Buffer.from(src);
  if (b.length < 28 || r.int(3) === 0) return mutateBytes(b, r);
  const field = r.int(7);
  const old = b.readInt32LE(field * 4);
  b.writeInt32LE(r.pick([0, -1, 1, old + 1, old - 1, old * 2, -old, 0x7fffffff, -0x80000000]) | 0, field * 4);
  return b;
}

/** Bit flips and edge floats in the data after a `headerBytes` prefix only: inputs that still parse, so loading and the forward run. */
export function mutateBody(src: Uint8Array, r: Rng, headerBytes: number): Buffer {
  const b = Buffer.from(src);
  if (b.length <= headerBytes + 4) return mutateBytes(b, r);
  const span = b.length - headerBytes;
  for (let k = 0, n = 1 + r.int(16); k < n; k++) {
    const at = headerBytes + r.int(span - 3);
    if (r.int(2)) b[at]! ^= 1 << r.int(8);
    else Buffer.from(Float32Array.of(r.pick([NaN, Infinity, 1e30, -1e20, 65504, 1e-40, 0, 8, -8])).buffer).copy(b, at);
  }
  return b;
}

/** mutateBody after a safetensors file's header (the tensors' bytes). */
export function mutateSafetensorsData(src: Uint8Array, r: Rng): Buffer {
  const b = Buffer.from(src);
  const n = b.length >= 8 ? Number(b.readBigUInt64LE(0)) : 0;
  return mutateBody(b, r, n > 0 && 8 + n <= b.length ? 8 + n : 0);
}

/** mutateBody after a llama2.c checkpoint's 28-byte header (the weights). */
export function mutateLlama2cData(src: Uint8Array, r: Rng): Buffer {
  return mutateBody(src, r, 28);
}
