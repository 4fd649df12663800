/**
 * Regression tests for the fuzz harness's findings (test/fuzz/): small
 * hostile tokenizer files that used to hang a load, or to load with values
 * that silently change every later result, now fail at load with
 * ERR_BAD_FILE naming the file and the entry.
 *   - one token id of 1e9 in a GPT-2 vocab.json or a tokenizer.json made
 *     the load walk a billion-slot vocabulary (never finished; fuzz seed 1,
 *     gpt2 input 84, tokenizer-json inputs 163 and 181);
 *   - malformed merges / added tokens reached @huggingface/tokenizers as is;
 *   - a NaN score in a llama2.c tokenizer.bin loaded and changed merges.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HfTokenizer, gpt2TokenizerJson, loadGpt2Tokenizer, loadHfTokenizer } from '../lib/tokenizers/hf.js';
import { parseLlama2cTokenizer } from '../lib/tokenizers/llama2c.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qk-hostile-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function badFile(f: () => unknown, ...parts: (string | RegExp)[]): void {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a throw').toBeDefined();
  expect((err as { code?: string }).code).toBe('ERR_BAD_FILE');
  for (const p of parts) expect((err as Error).message).toMatch(p);
}

/** A byte-level BPE over "a", "b", "c" and their merges (every byte has a token, as GPT-2's does). */
function smallVocab(): Record<string, number> {
  const v: Record<string, number> = {};
  // GPT-2's byte-to-unicode alphabet for the printable ASCII range is the identity
  for (let c = 33; c < 127; c++) v[String.fromCharCode(c)] = c - 33;
  v['Ġ'] = 94; // space
  v.ab = 95;
  v.abc = 96;
  return v;
}
const MERGES: [string, string][] = [
  ['a', 'b'],
  ['ab', 'c'],
];

describe('hostile GPT-2 vocab.json / merges.txt', () => {
  it('a token id far beyond the vocabulary is refused at once (it used to hang the load)', () => {
    const dir = path.join(tmp, 'gpt2-huge-id');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'vocab.json'), JSON.stringify({ ...smallVocab(), abc: 1e9 }));
    fs.writeFileSync(path.join(dir, 'merges.txt'), '#version: 0.2\na b\nab c\n');
    badFile(() => loadGpt2Tokenizer(path.join(dir, 'vocab.json'), path.join(dir, 'merges.txt')), path.join(dir, 'vocab.json'), /token id 1000000000 is far beyond the 97 tokens/);
    // the well-formed pair loads and round-trips
    fs.writeFileSync(path.join(dir, 'vocab.json'), JSON.stringify(smallVocab()));
    const tok = loadGpt2Tokenizer(path.join(dir, 'vocab.json'), path.join(dir, 'merges.txt'));
    expect(tok.decode(tok.encode('abc ab!'))).toBe('abc ab!');
  });

  it('merges lines that are not "left right" name the line', () => {
    const dir = path.join(tmp, 'gpt2-bad-merge');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'vocab.json'), JSON.stringify(smallVocab()));
    fs.writeFileSync(path.join(dir, 'merges.txt'), '#version: 0.2\na b\nab c d\n');
    badFile(() => loadGpt2Tokenizer(path.join(dir, 'vocab.json'), path.join(dir, 'merges.txt')), /line 3 is not a "left right" merge/);
  });
});

describe('hostile tokenizer.json', () => {
  const base = () => JSON.parse(JSON.stringify(gpt2TokenizerJson(smallVocab(), MERGES))) as Record<string, any>;
  const cases: [string, (j: Record<string, any>) => void, RegExp][] = [
    ['a huge vocab id', (j) => (j.model.vocab.ab = 1e9), /token id 1000000000 is far beyond/],
    ['a negative vocab id', (j) => (j.model.vocab.ab = -1), /model\.vocab\["ab"\] must be a non-negative integer id, got number -1/],
    ['a fractional vocab id', (j) => (j.model.vocab.ab = 1.5), /must be a non-negative integer id/],
    ['a null merge', (j) => (j.model.merges[1] = null), /model\.merges\[1\] must be "left right" or \[left, right\], got null/],
    ['a "NaN" merge string', (j) => (j.model.merges[0] = 'NaN'), /model\.merges\[0\] must be "left right", got "NaN"/],
    ['a merge with an empty side', (j) => (j.model.merges[0] = ['a', '']), /model\.merges\[0\] has an empty side/],
    ['merges that are not an array', (j) => (j.model.merges = { a: 'b' }), /'model\.merges' must be an array/],
    ['a vocab that is a number', (j) => (j.model.vocab = 7), /'model\.vocab' must be an object or an array/],
    ['no model', (j) => delete j.model, /'model' must be an object, got undefined/],
    ['an added token without content', (j) => j.added_tokens.push({ id: 97, special: true }), /added_tokens\[0\]\.content must be a string/],
    ['an added token with a huge id', (j) => j.added_tokens.push({ id: 2 ** 40, content: '<x>' }), /token id 1099511627776 is far beyond/],
    ['a token of a megabyte', (j) => (j.model.vocab['x'.repeat(1 << 20)] = 97), /is 1048576 characters long/],
    ['a Unigram piece with a NaN score', (j) => (j.model = { type: 'Unigram', unk_id: 0, vocab: [['a', -1], ['b', 'NaN']] }), /model\.vocab\[1\]\[1\] \(the score\) must be a finite number/],
  ];
  for (const [what, mutate, msg] of cases) {
    it(`${what}: ERR_BAD_FILE naming the entry`, () => {
      const j = base();
      mutate(j);
      const dir = path.join(tmp, `tj-${what.replace(/\W+/g, '-')}`);
      fs.mkdirSync(dir);
      fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(j));
      badFile(() => loadHfTokenizer(dir), path.join(dir, 'tokenizer.json'), msg);
    });
  }

  it('a tokenizer.json that is not an object, or a config that is not, is refused', () => {
    badFile(() => new HfTokenizer([] as never), /tokenizer\.json must hold a JSON object/);
    badFile(() => new HfTokenizer(base(), 3 as never), /tokenizer_config\.json must hold a JSON object/);
  });
});

describe('hostile llama2.c tokenizer.bin', () => {
  function tokBin(pieces: [number, string][]): Buffer {
    const parts = [Buffer.from(Int32Array.of(8).buffer)];
    for (const [score, s] of pieces) {
      const b = Buffer.from(s, 'utf8');
      const h = Buffer.alloc(8);
      h.writeFloatLE(score, 0);
      h.writeInt32LE(b.length, 4);
      parts.push(h, b);
    }
    return Buffer.concat(parts);
  }
  it('a NaN or infinite score is ERR_BAD_FILE naming the piece', () => {
    badFile(() => parseLlama2cTokenizer(tokBin([[0, '<unk>'], [NaN, 'a']]), 'nan.bin'), /nan\.bin.*piece 1 has score NaN; scores must be finite/);
    badFile(() => parseLlama2cTokenizer(tokBin([[-Infinity, 'a']]), 'inf.bin'), /piece 0 has score -Infinity/);
    expect(parseLlama2cTokenizer(tokBin([[0, 'a'], [-1.5, 'b']]), 'ok.bin').vocabSize).toBe(2);
  });
});
