/**
 * Tokenizers: the llama2.c tokenizer against an independent transcription of
 * run.c's encode() (below, sharing nothing with lib/), round trips, streaming
 * decode; GPT-2 byte-level BPE through @huggingface/tokenizers; error cases.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QuantkitError } from '../lib/errors.js';
import { Llama2cTokenizer, loadLlama2cTokenizer, parseLlama2cTokenizer } from '../lib/tokenizers/llama2c.js';
import { HfTokenizer, gpt2TokenizerJson, loadGpt2Tokenizer, loadHfTokenizer } from '../lib/tokenizers/hf.js';
import type { Tokenizer } from '../lib/tokenizers/types.js';
import { fixture, requireFixtures } from './fixtures.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'quantkit-tok-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

// ------------------------------------------------------------------
// run.c, transcribed: build_tokenizer + encode, on byte strings held as
// latin1 JS strings, with the sorted vocabulary and a binary search.
interface RefTok {
  vocab: string[];
  scores: number[];
  sorted: { str: string; id: number }[];
}
function refLoad(bytes: Buffer, vocabSize: number): RefTok {
  const vocab: string[] = [];
  const scores: number[] = [];
  let p = 4;
  for (let i = 0; i < vocabSize; i++) {
    scores.push(bytes.readFloatLE(p));
    const len = bytes.readInt32LE(p + 4);
    vocab.push(bytes.toString('latin1', p + 8, p + 8 + len));
    p += 8 + len;
  }
  const sorted = vocab.map((str, id) => ({ str, id })).sort((a, b) => (a.str < b.str ? -1 : a.str > b.str ? 1 : a.id - b.id));
  return { vocab, scores, sorted };
}
function refLookup(t: RefTok, s: string): number {
  let lo = 0;
  let hi = t.sorted.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const v = t.sorted[mid]!.str;
    if (v === s) return t.sorted[mid]!.id;
    if (v < s) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}
function refEncode(t: RefTok, text: string, bos: boolean, eos: boolean): number[] {
  const c = Buffer.from(text, 'utf8'); // run.c receives the UTF-8 bytes
  const tokens: number[] = [];
  if (bos) tokens.push(1);
  if (c.length > 0) tokens.push(refLookup(t, ' '));
  let buf = '';
  for (let i = 0; i < c.length; i++) {
    if ((c[i]! & 0xc0) !== 0x80) buf = '';
    buf += String.fromCharCode(c[i]!);
    const next = i + 1 < c.length ? c[i + 1]! : 0;
    if ((next & 0xc0) === 0x80 && buf.length < 4) continue;
    const id = refLookup(t, buf);
    if (id !== -1) tokens.push(id);
    else for (let k = 0; k < buf.length; k++) tokens.push(buf.charCodeAt(k) + 3);
    buf = '';
  }
  for (;;) {
    let bestScore = Math.fround(-1e10);
    let bestId = -1;
    let bestIdx = -1;
    for (let i = 0; i < tokens.length - 1; i++) {
      const id = refLookup(t, t.vocab[tokens[i]!]! + t.vocab[tokens[i + 1]!]!);
      if (id !== -1 && t.scores[id]! > bestScore) {
        bestScore = t.scores[id]!;
        bestId = id;
        bestIdx = i;
      }
    }
    if (bestIdx === -1) break;
    tokens.splice(bestIdx, 2, bestId);
  }
  if (eos) tokens.push(2);
  return tokens;
}
// ------------------------------------------------------------------

function catchErr(fn: () => unknown): QuantkitError {
  try {
    fn();
  } catch (e) {
    return e as QuantkitError;
  }
  throw new Error('expected a throw');
}

function streamAll(tok: Tokenizer, ids: number[]): string {
  const s = tok.decodeStream();
  let out = '';
  for (const id of ids) out += s.push(id);
  return out + s.flush();
}

/** A tiny tokenizer.bin: pieces with scores. */
function tokBin(maxLen: number, pieces: [number, string][]): Buffer {
  const parts = [Buffer.alloc(4)];
  parts[0]!.writeInt32LE(maxLen);
  for (const [score, str] of pieces) {
    const b = Buffer.from(str, 'utf8');
    const h = Buffer.alloc(8);
    h.writeFloatLE(score);
    h.writeInt32LE(b.length, 4);
    parts.push(h, b);
  }
  return Buffer.concat(parts);
}

describe('llama2.c tokenizer: synthetic vocabulary', () => {
  // ids 0..2 control, 3..258 bytes, then pieces; scores decide merge order
  const bytes: [number, string][] = Array.from({ length: 256 }, (_, b) => [0, `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`]);
  const pieces: [number, string][] = [[0, '<unk>'], [0, '\n<s>\n'], [0, '\n</s>\n'], ...bytes, [-1, ' '], [-2, 'a'], [-3, 'b'], [-4, 'ab'], [-5, ' a'], [-1, ' ab'], [-9, 'é']];
  const tok = parseLlama2cTokenizer(tokBin(7, pieces), 'synthetic.bin');
  const id = (s: string) => tok.tokenToId(s)!;
  const ref = refLoad(tokBin(7, pieces), pieces.length);

  it('merges the best-scoring pair first, leftmost on ties', () => {
    // " ab": pairs (" ","a") -> " a" (-5), ("a","b") -> "ab" (-4): "ab" wins, then " "+"ab" -> " ab"
    expect(tok.encode('ab')).toEqual([id(' ab')]);
    // "abab": two equal "ab" candidates; leftmost first; then " ab" + "ab" stays
    expect(tok.encode('abab')).toEqual([id(' ab'), id('ab')]);
    expect(tok.encode('abab')).toEqual(refEncode(ref, 'abab', false, false));
  });

  it('falls back to bytes for unknown characters, and uses known multi-byte pieces', () => {
    // 'ü' = C3 BC is not a piece: two byte tokens at byte + 3
    expect(tok.encode('ü')).toEqual([id(' '), 0xc3 + 3, 0xbc + 3]);
    expect(tok.encode('é')).toEqual([id(' '), id('é')]);
    expect(tok.decode(tok.encode('aü é'))).toBe('aü é');
  });

  it('rejects bad files with errors naming them', () => {
    const f = path.join(tmp, 'trunc.bin');
    fs.writeFileSync(f, tokBin(7, pieces).subarray(0, 101));
    const e = catchErr(() => loadLlama2cTokenizer(f, pieces.length));
    expect(e.code).toBe('ERR_BAD_FILE');
    expect(e.message).toContain(f);
    expect(e.message).toMatch(/truncated/);
    expect(catchErr(() => loadLlama2cTokenizer(f)).message).toMatch(/truncated inside piece/);
    fs.writeFileSync(f, tokBin(1, [[0, 'abc']]));
    expect(catchErr(() => loadLlama2cTokenizer(f)).message).toMatch(/length 3/);
    fs.writeFileSync(f, Buffer.alloc(2));
    expect(catchErr(() => loadLlama2cTokenizer(f)).code).toBe('ERR_BAD_FILE');
    const missing = path.join(tmp, 'none', 'tokenizer.bin');
    const e2 = catchErr(() => loadLlama2cTokenizer(missing, 512));
    expect(e2.code).toBe('ERR_NOT_FOUND');
    expect(e2.message).toContain(missing);
  });
});

const haveL2c = requireFixtures('stories260K/tok512.bin', 'text/tinystories-head.txt');
describe.skipIf(!haveL2c)('llama2.c tokenizer: tok512.bin', () => {
  // loaded in beforeAll: a skipped describe still runs its body at collection
  const file = fixture('stories260K', 'tok512.bin');
  let tok: Llama2cTokenizer;
  let ref: RefTok;
  let stories: string;
  let lines: string[];
  beforeAll(() => {
    tok = loadLlama2cTokenizer(file, 512);
    ref = refLoad(fs.readFileSync(file), 512);
    stories = fs.readFileSync(fixture('text', 'tinystories-head.txt'), 'utf8');
    lines = stories.split('\n').filter((l) => l.length > 0);
  });

  it('loads 512 pieces (also without being told the size)', () => {
    expect(tok.vocabSize).toBe(512);
    expect(loadLlama2cTokenizer(file).vocabSize).toBe(512);
    expect(tok.maxTokenLength).toBe(7);
    expect(tok.idToToken(259)).toBe(' t');
    expect(tok.bosId).toBe(1);
    expect(tok.eosId).toBe(2);
  });

  it('hand-checked encodings', () => {
    expect(tok.encode('')).toEqual([]);
    expect(tok.encode('', { bos: true, eos: true })).toEqual([1, 2]);
    // " " + "a" -> " a" (id 261, score -2)
    expect(tok.encode('a', { bos: true, eos: true })).toEqual([1, 261, 2]);
    // '日' (E6 97 A5) is not a piece: dummy space, then three byte pieces
    const sp = tok.tokenToId(' ')!;
    expect(tok.encode('日')).toEqual([sp, 0xe6 + 3, 0x97 + 3, 0xa5 + 3]);
    expect(tok.decode([1, sp, 0xe6 + 3, 0x97 + 3, 0xa5 + 3])).toBe('日');
    const ids = tok.encode('Once upon a time', { bos: true });
    expect(ids.map((i) => tok.idToToken(i))).toEqual(['\n<s>\n', ...refEncode(ref, 'Once upon a time', false, false).map((i) => ref.vocab[i])]);
    expect(tok.decode(ids)).toBe('Once upon a time');
  });

  it('matches run.c encode() on every line of the TinyStories sample', () => {
    expect(lines.length).toBeGreaterThan(1000);
    for (const [i, line] of lines.entries()) {
      const bos = i % 2 === 0;
      expect(tok.encode(line, { bos, eos: bos }), `line ${i}`).toEqual(refEncode(ref, line, bos, bos));
    }
  });

  it('matches run.c on whole multi-line stories and odd inputs', () => {
    const chunks = stories.split('\n\n').slice(0, 40);
    for (const s of [...chunks, '  leading spaces', 'tabs\tand\r\nCRLF', 'emoji 🤗 and 日本語 and ü', '\u0001\u007f', ' ', 'a  b   c']) {
      expect(tok.encode(s, { bos: true })).toEqual(refEncode(ref, s, true, false));
    }
  });

  it('decode(encode(text)) round-trips, batch and streaming', () => {
    for (const s of [...lines.slice(0, 300), stories.slice(0, 20000), '  two spaces', 'emoji 🤗 日本語 ü', '']) {
      const ids = tok.encode(s, { bos: true, eos: true });
      expect(tok.decode(ids)).toBe(s);
      expect(tok.decode(tok.encode(s))).toBe(s);
      expect(streamAll(tok, ids)).toBe(s);
    }
  });

  it('decodePiece follows run.c: space stripped only after BOS, <0xXX> to a byte', () => {
    const once = tok.encode('Once', { bos: true })[1]!;
    expect(Buffer.from(tok.decodePiece(1, once)).toString()).toBe('Once');
    expect(Buffer.from(tok.decodePiece(5, once)).toString()).toBe(' Once');
    expect(Array.from(tok.decodePiece(1, 0x20 + 3))).toEqual([0x20]); // <0x20> after BOS stays a space
    expect(Array.from(tok.decodePiece(7, 0xe6 + 3))).toEqual([0xe6]);
    expect(() => tok.decode([512])).toThrow(RangeError);
  });
});

const haveGpt2 = requireFixtures('gpt2-tokenizer/vocab.json', 'gpt2-tokenizer/merges.txt', 'text/wikitext2-test.txt');
describe.skipIf(!haveGpt2)('GPT-2 tokenizer (vocab.json + merges.txt)', () => {
  const dir = fixture('gpt2-tokenizer');
  let tok: HfTokenizer;
  beforeAll(() => {
    tok = loadHfTokenizer(dir);
  });

  it('encodes "Hello world" as [15496, 995]', () => {
    expect(tok.encode('Hello world')).toEqual([15496, 995]);
    expect(tok.vocabSize).toBe(50257);
    expect(tok.bosId).toBe(50256);
    expect(tok.eosId).toBe(50256);
    expect(tok.encode('Hello world', { bos: true, eos: true })).toEqual([50256, 15496, 995, 50256]);
    expect(tok.decode([50256, 15496, 995, 50256])).toBe('Hello world');
    expect(tok.idToToken(995)).toBe('Ġworld');
    expect(tok.encode('')).toEqual([]);
    expect(tok.decode([])).toBe('');
  });

  it('round-trips all of wikitext2-test.txt', () => {
    const text = fs.readFileSync(fixture('text', 'wikitext2-test.txt'), 'utf8');
    const ids = tok.encode(text);
    expect(ids.length).toBeGreaterThan(200000);
    expect(tok.decode(ids)).toBe(text);
    // spaces before punctuation survive (no "clean up" of " ." or " 's")
    expect(tok.decode(tok.encode('a . b , c \'s'))).toBe('a . b , c \'s');
  });

  it('streams characters split across byte-level tokens whole', () => {
    const s = 'héllo 日本語 🤗 ok';
    const ids = tok.encode(s);
    const dec = tok.decodeStream();
    const pieces = ids.map((id) => dec.push(id));
    expect(pieces.join('') + dec.flush()).toBe(s);
    expect(pieces.some((p) => p.includes('\uFFFD'))).toBe(false);
  });

  it('the same tokenizer through a tokenizer.json folder', () => {
    const vocab = JSON.parse(fs.readFileSync(path.join(dir, 'vocab.json'), 'utf8')) as Record<string, number>;
    const merges = fs
      .readFileSync(path.join(dir, 'merges.txt'), 'utf8')
      .split('\n')
      .slice(1)
      .filter((l) => l)
      .map((l) => l.split(' ') as [string, string]);
    const folder = path.join(tmp, 'gpt2-json');
    fs.mkdirSync(folder);
    fs.writeFileSync(path.join(folder, 'tokenizer.json'), JSON.stringify(gpt2TokenizerJson(vocab, merges)));
    fs.writeFileSync(path.join(folder, 'tokenizer_config.json'), JSON.stringify({ bos_token: { content: '<|endoftext|>' }, eos_token: '<|endoftext|>' }));
    const t2 = loadHfTokenizer(folder);
    const s = 'The quick brown fox, 1234 — jumps!\n\n  over';
    expect(t2.encode(s)).toEqual(tok.encode(s));
    expect(t2.bosId).toBe(50256);
    expect(t2.decode(t2.encode(s))).toBe(s);
    expect(loadGpt2Tokenizer(path.join(dir, 'vocab.json'), path.join(dir, 'merges.txt')).encode(s)).toEqual(tok.encode(s));
  });
});

describe('HF tokenizer errors', () => {
  it('missing tokenizer: ERR_NOT_FOUND naming tokenizer.json', () => {
    const folder = path.join(tmp, 'empty');
    fs.mkdirSync(folder);
    const e = catchErr(() => loadHfTokenizer(folder));
    expect(e.code).toBe('ERR_NOT_FOUND');
    expect(e.message).toContain(path.join(folder, 'tokenizer.json'));
  });
  it('corrupt tokenizer.json / tokenizer_config.json / merges.txt / vocab.json', () => {
    const folder = path.join(tmp, 'corrupt');
    fs.mkdirSync(folder);
    const tj = path.join(folder, 'tokenizer.json');
    fs.writeFileSync(tj, '{"model": ');
    let e = catchErr(() => loadHfTokenizer(folder));
    expect(e.code).toBe('ERR_BAD_FILE');
    expect(e.message).toContain(tj);
    fs.writeFileSync(tj, '{"model": {"type": "Nope"}}');
    e = catchErr(() => loadHfTokenizer(folder));
    expect(e.code).toBe('ERR_BAD_FILE');
    expect(e.message).toContain(tj);
    fs.writeFileSync(tj, JSON.stringify(gpt2TokenizerJson({ a: 0, b: 1, ab: 2 }, [['a', 'b']])));
    const cfg = path.join(folder, 'tokenizer_config.json');
    fs.writeFileSync(cfg, '[');
    e = catchErr(() => loadHfTokenizer(folder));
    expect(e.code).toBe('ERR_BAD_FILE');
    expect(e.message).toContain(cfg);
    fs.rmSync(cfg);
    expect(loadHfTokenizer(folder).encode('ab')).toEqual([2]);

    const g = path.join(tmp, 'gpt2-bad');
    fs.mkdirSync(g);
    fs.writeFileSync(path.join(g, 'vocab.json'), '{"a": 0, "b": 1}');
    fs.writeFileSync(path.join(g, 'merges.txt'), '#version: 0.2\na b\nthree parts here\n');
    e = catchErr(() => loadHfTokenizer(g));
    expect(e.code).toBe('ERR_BAD_FILE');
    expect(e.message).toMatch(/merges\.txt: line 3/);
    fs.writeFileSync(path.join(g, 'vocab.json'), '{"a": "zero"}');
    e = catchErr(() => loadHfTokenizer(g));
    expect(e.message).toMatch(/vocab\.json/);
    const e2 = catchErr(() => loadGpt2Tokenizer(path.join(g, 'missing.json'), path.join(g, 'merges.txt')));
    expect(e2.code).toBe('ERR_NOT_FOUND');
    expect(e2.message).toContain('missing.json');
  });
});
