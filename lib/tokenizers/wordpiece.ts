/**
 * BERT's WordPiece tokenizer from vocab.txt alone (many BERT-family folders
 * ship only that): the tokenizer.json Hugging Face would build for it is made
 * in memory (BertNormalizer: clean text, CJK characters split, lowercasing and
 * accent stripping as tokenizer_config.json's do_lower_case says, default
 * true; BertPreTokenizer: whitespace and punctuation; WordPiece with "##"
 * continuations, [UNK] for a word it cannot cover or one of over 100
 * characters) and run by @huggingface/tokenizers like any tokenizer.json.
 */
import * as fs from 'node:fs';
import { QuantkitError } from '../errors.js';
import { HfTokenizer } from './hf.js';
import { MAX_TOKEN_CHARS, MAX_VOCAB_ENTRIES } from './hf-validate.js';

/** BERT's special tokens, in the order bert-base vocabularies list them. */
export const BERT_SPECIAL_TOKENS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] as const;

function bad(file: string, what: string): QuantkitError {
  return new QuantkitError('ERR_BAD_FILE', `${file}: not a valid WordPiece vocab.txt: ${what}`);
}

/** vocab.txt: one token per line, the id is the line number (0-based). */
export function parseVocabTxt(text: string, file: string): Record<string, number> {
  const lines = text.split(/\r?\n/);
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop(); // the final newline
  if (lines.length === 0) throw bad(file, 'it is empty');
  if (lines.length > MAX_VOCAB_ENTRIES) throw bad(file, `${lines.length} lines (at most ${MAX_VOCAB_ENTRIES})`);
  const vocab: Record<string, number> = Object.create(null);
  lines.forEach((tok, i) => {
    if (tok === '') throw bad(file, `line ${i + 1} is empty`);
    if (tok.length > MAX_TOKEN_CHARS) throw bad(file, `line ${i + 1} is ${tok.length} characters long`);
    if (tok in vocab) throw bad(file, `line ${i + 1} repeats the token ${JSON.stringify(tok)} of line ${vocab[tok]! + 1}`);
    vocab[tok] = i;
  });
  if (!('[UNK]' in vocab)) throw bad(file, 'it has no [UNK] token');
  return { ...vocab };
}

/** The tokenizer.json equivalent of a BERT vocab.txt. */
export function wordPieceTokenizerJson(vocab: Record<string, number>, lowercase: boolean): Record<string, unknown> {
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: BERT_SPECIAL_TOKENS.filter((t) => t in vocab).map((content) => ({ id: vocab[content], content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: null,
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab },
  };
}

/**
 * A WordPiece tokenizer from vocab.txt; `config` is tokenizer_config.json's
 * content if the folder has one (do_lower_case, special tokens).
 */
export function loadWordPieceTokenizer(vocabFile: string, config: Record<string, unknown> = {}): HfTokenizer {
  let text: string;
  try {
    text = fs.readFileSync(vocabFile, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new QuantkitError('ERR_NOT_FOUND', `vocab.txt not found: ${vocabFile}`, { cause: err });
    throw new QuantkitError('ERR_BAD_FILE', `${vocabFile}: cannot read vocab.txt (${(err as Error).message})`, { cause: err });
  }
  const vocab = parseVocabTxt(text, vocabFile);
  const lowercase = config.do_lower_case !== false;
  // BERT has no BOS/EOS; [CLS]/[SEP] are added around a text by the encoder's encode()
  return new HfTokenizer(wordPieceTokenizerJson(vocab, lowercase), { clean_up_tokenization_spaces: true, ...config }, vocabFile);
}
