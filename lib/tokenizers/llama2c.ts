/**
 * The llama2.c tokenizer (tokenizer.bin): sentencepiece-style BPE over pieces
 * with scores, with byte fallback. Encoding reproduces run.c's encode()
 * exactly, including its quirks (the BOS piece takes part in merging, a
 * merge needs a score above -1e10), but runs in O(n log n) with a heap
 * instead of run.c's rescan-everything loop, so whole corpora can be encoded.
 *
 * File format: int32 max_token_length, then per piece: float32 score,
 * int32 byte length, bytes (no terminator). All little-endian.
 */
import * as fs from 'node:fs';
import { QuantkitError } from '../errors.js';
import type { EncodeOptions, StreamDecoder, Tokenizer } from './types.js';

/** run.c's fixed ids. */
export const LLAMA2C_BOS = 1;
export const LLAMA2C_EOS = 2;
/** run.c initialises the best merge score to -1e10 and merges only strictly above it. */
const NO_MERGE_SCORE = -1e10;

const utf8 = new TextEncoder();
const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;

/** A byte string as a JS string of char codes 0..255: a cheap, exact Map key. */
function binary(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}

export class Llama2cTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId = LLAMA2C_BOS;
  readonly eosId = LLAMA2C_EOS;
  readonly maxTokenLength: number;
  /** Raw bytes of each piece. */
  readonly pieces: readonly Uint8Array[];
  readonly scores: Float32Array;
  private readonly keys: string[];
  private readonly lookup = new Map<string, number>();
  /** What each id decodes to: a <0xXX> piece decodes to that single byte. */
  private readonly out: Uint8Array[];

  constructor(pieces: Uint8Array[], scores: Float32Array, maxTokenLength: number) {
    if (pieces.length !== scores.length) throw new RangeError('Llama2cTokenizer: pieces and scores differ in length');
    this.vocabSize = pieces.length;
    this.pieces = pieces;
    this.scores = scores;
    this.maxTokenLength = maxTokenLength;
    this.keys = pieces.map(binary);
    // the first id wins for a duplicated piece (run.c's bsearch picks an arbitrary one)
    this.keys.forEach((k, id) => {
      if (!this.lookup.has(k)) this.lookup.set(k, id);
    });
    this.out = this.keys.map((k, id) => {
      const m = BYTE_PIECE.exec(k);
      return m ? Uint8Array.of(parseInt(m[1]!, 16)) : pieces[id]!;
    });
  }

  idToToken(id: number): string | undefined {
    const p = this.pieces[id];
    return p === undefined ? undefined : Buffer.from(p).toString('utf8');
  }

  /** The id of a piece given as text, or undefined. */
  tokenToId(piece: string): number | undefined {
    return this.lookup.get(binary(utf8.encode(piece)));
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') throw new TypeError(`Llama2cTokenizer.encode: 'text' must be a string, got ${typeof text}`);
    // run.c works on the UTF-8 bytes (a NUL byte, which would end a C string, is just another byte here)
    const bytes = utf8.encode(text);
    const ids: number[] = [];
    if (opts.bos) ids.push(LLAMA2C_BOS);
    // sentencepiece's add_dummy_prefix: a leading space piece for non-empty text
    if (bytes.length > 0) ids.push(this.lookup.get(' ') ?? this.byteId(0x20));
    // one lookup per UTF-8 character (run.c groups at most 4 bytes); unknown
    // characters fall back to one <0xXX> piece per byte, at id byte + 3
    let start = 0;
    for (let i = 0; i < bytes.length; i++) {
      if ((bytes[i]! & 0xc0) !== 0x80) start = i;
      const len = i - start + 1;
      if (i + 1 < bytes.length && (bytes[i + 1]! & 0xc0) === 0x80 && len < 4) continue;
      const ch = bytes.subarray(start, i + 1);
      const id = this.lookup.get(binary(ch));
      if (id !== undefined) ids.push(id);
      else for (const b of ch) ids.push(this.byteId(b));
      start = i + 1;
    }
    const merged = this.merge(ids);
    if (opts.eos) merged.push(LLAMA2C_EOS);
    return merged;
  }

  private byteId(b: number): number {
    const id = b + 3;
    if (id >= this.vocabSize) {
      throw new QuantkitError('ERR_UNSUPPORTED', `llama2.c tokenizer: byte 0x${b.toString(16)} needs byte-fallback piece ${id}, but the vocabulary has ${this.vocabSize} pieces`);
    }
    return id;
  }

  /**
   * run.c's merge loop: repeatedly merge the adjacent pair whose concatenation
   * is the best-scoring piece, the leftmost pair on ties. Done with a linked
   * list and a max-heap keyed (score desc, left position asc): positions never
   * reorder, so "leftmost" is the smallest original index. Stale heap entries
   * (a side merged since) are recognised by per-node version numbers.
   */
  private merge(ids: number[]): number[] {
    const n = ids.length;
    if (n < 2) return ids;
    const tok = Int32Array.from(ids);
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    const ver = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    // heap of candidate merges, as parallel arrays
    const hScore: number[] = [];
    const hLeft: number[] = [];
    const hId: number[] = [];
    const hVerL: number[] = [];
    const hVerR: number[] = [];
    const before = (a: number, b: number) => hScore[a]! > hScore[b]! || (hScore[a] === hScore[b] && hLeft[a]! < hLeft[b]!);
    const swap = (a: number, b: number) => {
      for (const arr of [hScore, hLeft, hId, hVerL, hVerR]) {
        const t = arr[a]!;
        arr[a] = arr[b]!;
        arr[b] = t;
      }
    };
    const push = (left: number) => {
      const right = next[left]!;
      if (right < 0) return;
      const id = this.lookup.get(this.keys[tok[left]!]! + this.keys[tok[right]!]!);
      if (id === undefined || !(this.scores[id]! > NO_MERGE_SCORE)) return;
      let i = hScore.length;
      hScore.push(this.scores[id]!);
      hLeft.push(left);
      hId.push(id);
      hVerL.push(ver[left]!);
      hVerR.push(ver[right]!);
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (!before(i, p)) break;
        swap(i, p);
        i = p;
      }
    };
    const pop = () => {
      const last = hScore.length - 1;
      swap(0, last);
      const top = { left: hLeft[last]!, id: hId[last]!, verL: hVerL[last]!, verR: hVerR[last]! };
      for (const arr of [hScore, hLeft, hId, hVerL, hVerR]) arr.pop();
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < hScore.length && before(l, m)) m = l;
        if (r < hScore.length && before(r, m)) m = r;
        if (m === i) break;
        swap(i, m);
        i = m;
      }
      return top;
    };

    for (let i = 0; i < n - 1; i++) push(i);
    while (hScore.length > 0) {
      const { left, id, verL, verR } = pop();
      const right = next[left]!;
      if (ver[left] !== verL || right < 0 || ver[right] !== verR || ver[left]! < 0) continue; // stale
      // merge right into left
      tok[left] = id;
      ver[left] = ver[left]! + 1;
      ver[right] = -1; // dead
      next[left] = next[right]!;
      if (next[right]! >= 0) prev[next[right]!] = left;
      if (prev[left]! >= 0) push(prev[left]!);
      push(left);
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]!) out.push(tok[i]!);
    return out;
  }

  /**
   * run.c's decode(prev, token) as bytes: a piece following BOS loses its
   * leading space (the dummy prefix), and <0xXX> pieces become that byte.
   */
  decodePiece(prev: number, id: number): Uint8Array {
    const raw = this.pieces[id];
    if (raw === undefined || !Number.isInteger(id)) throw new RangeError(`Llama2cTokenizer.decode: id ${id} is outside [0, ${this.vocabSize})`);
    // strip first, then map bytes, as run.c does: <0x20> after BOS stays a space
    if (prev === LLAMA2C_BOS && raw[0] === 0x20) return raw.subarray(1);
    return this.out[id]!;
  }

  /**
   * Ids to text. BOS/EOS are dropped; the start of the list counts as "after
   * BOS", so the dummy-prefix space goes away like in sentencepiece and
   * decode(encode(text)) === text. Bytes are joined before UTF-8 decoding.
   */
  decode(ids: readonly number[]): string {
    const parts: Uint8Array[] = [];
    let prev = LLAMA2C_BOS;
    for (const id of ids) {
      if (id !== LLAMA2C_BOS && id !== LLAMA2C_EOS) parts.push(this.decodePiece(prev, id));
      prev = id;
    }
    return Buffer.concat(parts).toString('utf8');
  }

  decodeStream(context: readonly number[] = []): StreamDecoder {
    const td = new TextDecoder('utf-8');
    let prev = LLAMA2C_BOS;
    // Run the context's last pieces through the decoder, output discarded: the
    // first pushed piece then keeps its leading space (it follows a token, not
    // BOS), and a character whose bytes the context left incomplete completes.
    for (const id of context.slice(-STREAM_CONTEXT)) {
      if (id !== LLAMA2C_BOS && id !== LLAMA2C_EOS) td.decode(this.decodePiece(prev, id), { stream: true });
      prev = id;
    }
    return {
      push: (id) => {
        const p = prev;
        prev = id;
        if (id === LLAMA2C_BOS || id === LLAMA2C_EOS) return '';
        return td.decode(this.decodePiece(p, id), { stream: true });
      },
      flush: () => td.decode(),
    };
  }
}

/** Context tokens a stream decoder replays: enough for any UTF-8 character in byte tokens (4). */
const STREAM_CONTEXT = 8;

function bad(file: string, problem: string): QuantkitError {
  return new QuantkitError('ERR_BAD_FILE', `${file}: not a valid llama2.c tokenizer: ${problem}`);
}

/**
 * Parse tokenizer.bin bytes. `vocabSize` comes from the model (run.c reads
 * exactly that many pieces); without it, pieces are read up to the end of
 * the file, which must then end exactly on a piece boundary.
 */
export function parseLlama2cTokenizer(bytes: Uint8Array, file = '<buffer>', vocabSize?: number): Llama2cTokenizer {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (vocabSize !== undefined && (!Number.isSafeInteger(vocabSize) || vocabSize <= 0)) {
    throw new RangeError(`loadLlama2cTokenizer: 'vocabSize' must be a positive integer, got ${vocabSize}`);
  }
  if (buf.length < 4) throw bad(file, `truncated: ${buf.length} bytes`);
  const maxLen = buf.readInt32LE(0);
  if (maxLen <= 0) throw bad(file, `max_token_length ${maxLen} must be positive`);
  const pieces: Uint8Array[] = [];
  const scores: number[] = [];
  let off = 4;
  while (vocabSize === undefined ? off < buf.length : pieces.length < vocabSize) {
    const i = pieces.length;
    if (off + 8 > buf.length) {
      throw bad(file, vocabSize === undefined ? `truncated inside piece ${i}` : `truncated: ${i} pieces found, ${vocabSize} expected`);
    }
    const score = buf.readFloatLE(off);
    const len = buf.readInt32LE(off + 4);
    if (len < 0 || len > maxLen) throw bad(file, `piece ${i} has length ${len}, outside [0, max_token_length ${maxLen}]`);
    if (off + 8 + len > buf.length) throw bad(file, `truncated inside piece ${i}`);
    // encode() merges by score: a NaN compares false both ways and silently changes every merge decision
    if (!Number.isFinite(score)) throw bad(file, `piece ${i} has score ${score}; scores must be finite`);
    pieces.push(new Uint8Array(buf.subarray(off + 8, off + 8 + len)));
    scores.push(score);
    off += 8 + len;
  }
  if (pieces.length === 0) throw bad(file, 'no pieces');
  return new Llama2cTokenizer(pieces, Float32Array.from(scores), maxLen);
}

/** Load a llama2.c tokenizer.bin; a missing file is ERR_NOT_FOUND naming it. */
export function loadLlama2cTokenizer(file: string, vocabSize?: number): Llama2cTokenizer {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new QuantkitError('ERR_NOT_FOUND', `tokenizer file not found: ${file}`, { cause: err });
    throw new QuantkitError('ERR_BAD_FILE', `${file}: cannot read tokenizer (${(err as Error).message})`, { cause: err });
  }
  return parseLlama2cTokenizer(buf, file, vocabSize);
}
