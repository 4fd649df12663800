/**
 * BERT's WordPiece from vocab.txt alone, against examples worked by hand
 * from the BERT tokenization rules (lowercase, strip accents, split on
 * whitespace and punctuation, CJK characters one by one, greedy longest
 * match with "##" continuations, [UNK] for a word that cannot be covered or
 * is over 100 characters), the special tokens kept whole, and the same
 * results through a folder's tokenizer.json built the same way.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadHfTokenizer } from '../lib/tokenizers/hf.js';
import { loadWordPieceTokenizer, parseVocabTxt, wordPieceTokenizerJson } from '../lib/tokenizers/wordpiece.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qk-wordpiece-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

// ids are line numbers
const VOCAB = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'the', 'capital', 'of', 'france', 'is', 'paris', '.', ',', '!', "'", 'hello', 'world', 'un', '##aff', '##able', 'don', 't', 'cafe', '中', '国', 'a', '##b', '##c'];
const id = (t: string) => VOCAB.indexOf(t);
const vocabFile = path.join(tmp, 'vocab.txt');
fs.writeFileSync(vocabFile, VOCAB.join('\n') + '\n');

describe('WordPiece from vocab.txt', () => {
  const tok = loadWordPieceTokenizer(vocabFile);
  const cases: [string, string, string[]][] = [
    ['lowercases and splits punctuation', 'Hello, World!', ['hello', ',', 'world', '!']],
    ['strips accents (uncased)', 'Café', ['cafe']],
    ['a long word into ##pieces, longest match first', 'unaffable', ['un', '##aff', '##able']],
    ["an apostrophe is punctuation: don't", "don't", ['don', "'", 't']],
    ['a word it cannot cover is one [UNK]', 'xyz', ['[UNK]']],
    ['a word with a covered prefix but an uncovered rest is [UNK] too', 'unaffx', ['[UNK]']],
    ['CJK characters are words of their own', '中国', ['中', '国']],
    ['more than 100 characters is [UNK]', 'a' + 'b'.repeat(100), ['[UNK]']],
    ['exactly 100 characters still splits', 'a' + 'b'.repeat(99), ['a', ...Array(99).fill('##b')]],
    ['[MASK] and the other specials stay whole', 'The capital of France is [MASK].', ['the', 'capital', 'of', 'france', 'is', '[MASK]', '.']],
  ];
  for (const [what, text, tokens] of cases) {
    it(what, () => {
      expect(tok.encode(text)).toEqual(tokens.map(id));
    });
  }

  it('decodes back to normalized text with BERT spacing', () => {
    expect(tok.decode(tok.encode('Hello, World!'))).toBe('hello, world!');
    expect(tok.decode(tok.encode('unaffable'))).toBe('unaffable');
  });

  it('do_lower_case false keeps case (and accents): cased words are then unknown here', () => {
    const cased = loadWordPieceTokenizer(vocabFile, { do_lower_case: false });
    expect(cased.encode('Hello hello')).toEqual([id('[UNK]'), id('hello')]);
  });

  it('the same through a tokenizer.json folder', () => {
    const dir = path.join(tmp, 'json');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(wordPieceTokenizerJson(parseVocabTxt(VOCAB.join('\n'), 'v'), true)));
    const t = loadHfTokenizer(dir);
    for (const [, text, tokens] of cases) expect(t.encode(text)).toEqual(tokens.map(id));
  });

  it('bad vocab.txt files are ERR_BAD_FILE naming the line', () => {
    const bad = (name: string, text: string) => {
      const f = path.join(tmp, name);
      fs.writeFileSync(f, text);
      return () => loadWordPieceTokenizer(f);
    };
    expect(bad('dup.txt', '[UNK]\na\na\n')).toThrow(/line 3 repeats the token "a" of line 2/);
    expect(bad('empty-line.txt', '[UNK]\n\na\n')).toThrow(/line 2 is empty/);
    expect(bad('no-unk.txt', 'a\nb\n')).toThrow(/has no \[UNK\] token/);
    expect(bad('empty.txt', '')).toThrow(/it is empty/);
    expect(() => loadWordPieceTokenizer(path.join(tmp, 'missing.txt'))).toThrow(expect.objectContaining({ code: 'ERR_NOT_FOUND' }));
  });
});
