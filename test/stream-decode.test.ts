/**
 * Streaming decode continues after the prompt: for every tokenizer kind
 * (llama2.c tok512.bin, GPT-2 byte-level BPE, a SentencePiece-style
 * tokenizer.json whose decoder strips the first token's leading space),
 * decode(prompt) + the streamed text === decode(prompt + generated), on
 * prompts ending in a word, a space, punctuation and a multi-byte character.
 * And end to end: generate() on stories260K and the CLI keep the space
 * before the first generated word ("Once upon", not "Onceupon").
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { generateText, promptIds } from '../lib/eval/generate.js';
import { loadModelSync } from '../lib/models/load.js';
import { HfTokenizer, loadGpt2Tokenizer } from '../lib/tokenizers/hf.js';
import { loadLlama2cTokenizer } from '../lib/tokenizers/llama2c.js';
import type { Tokenizer } from '../lib/tokenizers/types.js';
import { fixture, requireFixtures } from './fixtures.js';

const PROMPTS = ['Once', 'Once upon a ', 'She smiled.', 'He said "no",', 'un café', 'naïve 日本'];
const CONTINUATIONS = [' upon a time, there was a cat.', 'dog and a café 日本 🤗!', '\nThe end.'];

function streamAfter(tok: Tokenizer, context: number[], gen: number[]): string {
  const s = tok.decodeStream(context);
  let out = '';
  for (const id of gen) out += s.push(id);
  return out + s.flush();
}

function checkTokenizer(tok: Tokenizer, bos: boolean): void {
  for (const p of PROMPTS) {
    const ctx = tok.encode(p, { bos });
    for (const c of CONTINUATIONS) {
      // a continuation as a model would produce it: the ids of prompt + continuation, after the prompt's
      const all = tok.encode(p + c, { bos });
      const gen = all.slice(ctx.length);
      const want = tok.decode([...ctx, ...gen]);
      expect(tok.decode(ctx) + streamAfter(tok, ctx, gen), `prompt ${JSON.stringify(p)} + ${JSON.stringify(c)}`).toBe(want);
    }
    // and any token after any prompt: every id of a small sample
    for (let id = 0; id < tok.vocabSize; id += Math.ceil(tok.vocabSize / 97)) {
      expect(tok.decode(ctx) + streamAfter(tok, ctx, [id])).toBe(tok.decode([...ctx, id]));
    }
  }
  // without a context, the stream decodes as from the start of a text
  const ids = tok.encode('Once upon', { bos });
  expect(streamAfter(tok, [], ids)).toBe(tok.decode(ids));
}

/**
 * A Llama-style tokenizer.json: BPE over characters with byte fallback,
 * "▁" for spaces (a normalizer prepends one), and a decoder that strips the
 * leading space of the text, so a token decodes differently first and later.
 */
function sentencePieceTokenizer(): HfTokenizer {
  const specials = ['<unk>', '<s>', '</s>'];
  const bytes = Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
  const chars = [...new Set([...'▁abcdefghijklmnopqrstuvwxyzOSTHe.,"\n!'])];
  const merges: [string, string][] = [['▁', 'O'], ['n', 'c'], ['▁O', 'nc'], ['▁Onc', 'e'], ['u', 'p'], ['▁', 'up'], ['▁up', 'o'], ['▁upo', 'n'], ['▁', 'a']];
  const vocab: Record<string, number> = {};
  for (const t of [...specials, ...bytes, ...chars, ...merges.map(([a, b]) => a + b)]) if (!(t in vocab)) vocab[t] = Object.keys(vocab).length;
  const json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specials.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
    pre_tokenizer: null,
    post_processor: null,
    decoder: {
      type: 'Sequence',
      decoders: [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }],
    },
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, vocab, merges },
  };
  return new HfTokenizer(json as never, { bos_token: '<s>', eos_token: '</s>' });
}

describe('stream decoding after a prompt equals the full decode', () => {
  it('SentencePiece-style tokenizer.json (first-token space stripped by the decoder)', () => {
    const tok = sentencePieceTokenizer();
    // the case the fix is for: "▁upon" after "▁Once" decodes with its space
    const ctx = tok.encode('Once', { bos: true });
    const gen = tok.encode('Once upon').slice(ctx.length - 1);
    expect(streamAfter(tok, ctx, gen)).toBe(' upon');
    checkTokenizer(tok, true);
  });

  const haveTok = requireFixtures('stories260K/tok512.bin', 'gpt2-tokenizer/vocab.json', 'gpt2-tokenizer/merges.txt');
  it.skipIf(!haveTok)('llama2.c tok512.bin', () => {
    checkTokenizer(loadLlama2cTokenizer(fixture('stories260K', 'tok512.bin')), true);
  });
  it.skipIf(!haveTok)('GPT-2 byte-level BPE', () => {
    checkTokenizer(loadGpt2Tokenizer(fixture('gpt2-tokenizer', 'vocab.json'), fixture('gpt2-tokenizer', 'merges.txt')), false);
  });
});

const haveModel = requireFixtures('stories260K/stories260K.bin', 'stories260K/tok512.bin');
describe.skipIf(!haveModel)('generated text keeps the space after the prompt (stories260K)', () => {
  it('generate(): prompt + text === decode(prompt ids + tokens)', async () => {
    const { model, tokenizer } = loadModelSync(fixture('stories260K', 'stories260K.bin'), { tokenizerPath: fixture('stories260K', 'tok512.bin') });
    for (const prompt of ['Once', 'Once upon', 'Lily was']) {
      const r = await generateText(model, tokenizer!, prompt, { maxNewTokens: 12 });
      const ids = promptIds(model, tokenizer!, prompt);
      expect(prompt + r.text).toBe(tokenizer!.decode([...ids, ...r.tokens]));
      expect(r.text.startsWith(' ')).toBe(true);
    }
  });

  it('the CLI prints "Once upon", not "Onceupon"', () => {
    const root = path.resolve(__dirname, '..');
    const r = spawnSync(
      process.execPath,
      ['--import', 'tsx', path.join(root, 'lib/cli/main.ts'), 'generate', fixture('stories260K', 'stories260K.bin'), '--tokenizer', fixture('stories260K', 'tok512.bin'), '--prompt', 'Once', '--max-new-tokens', '8'],
      { cwd: root, encoding: 'utf8' },
    );
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Once upon/);
  });
});
