/**
 * The formats the fuzz harness mutates, each from a real fixture: its base
 * files, how one input is derived from them (deterministically, from the
 * run's seed and the input's index), and what is done with it: load it, and
 * for what loads, run it (a model: one forward, logits must be finite; a
 * tokenizer: encode a text, every id in range, decode and stream-decode).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { QuantkitError } from '../../lib/errors.js';
import { saveQuantized } from '../../lib/io/quantized-checkpoint.js';
import { loadModelSync } from '../../lib/models/load.js';
import { quantizeModel } from '../../lib/nn/quantize-model.js';
import { gpt2TokenizerJson, loadGpt2Tokenizer, loadHfTokenizer } from '../../lib/tokenizers/hf.js';
import { loadLlama2cTokenizer } from '../../lib/tokenizers/llama2c.js';
import type { Tokenizer } from '../../lib/tokenizers/types.js';
import { type Rng, inputRng, mutateBytes, mutateJson, mutateLines, mutateLlama2cData, mutateLlama2cHeader, mutateSafetensors, mutateSafetensorsData } from './mutate.js';

/** File name -> bytes: one fuzz input. */
export type Files = Map<string, Buffer>;

export interface Format {
  name: string;
  /** The unmutated files (read once per process). */
  base(): Files;
  /** Input `index` of a run seeded `seed`: the base with one file mutated. */
  input(seed: number, index: number): Files;
  /** Load and exercise the input written into `dir`; throws what the library throws; 'nan' when a model computed NaN. */
  run(dir: string): 'ok' | 'nan';
}

const TEXT = 'Once upon a time, there was a little girl named Lily. She liked to play outside!\n"Hi," said Tom. 3 + 4 = 7; café, naïve, 日本語 🤗';

function exerciseTokenizer(tok: Tokenizer): 'ok' {
  const ids = tok.encode(TEXT, { bos: true });
  for (const id of ids) if (!Number.isInteger(id) || id < 0 || id >= tok.vocabSize) throw new Error(`fuzz: encode gave id ${id} outside [0, ${tok.vocabSize})`);
  tok.decode(ids);
  const s = tok.decodeStream(ids.slice(0, 3));
  for (const id of ids.slice(3)) s.push(id);
  s.flush();
  return 'ok';
}

function forwardFinite(dir: string, file: string, tokenizerPath?: string): 'ok' | 'nan' {
  const { model } = loadModelSync(path.join(dir, file), tokenizerPath ? { tokenizerPath } : {});
  const V = model.config.vocabSize;
  // small ids that exist in any vocabulary that loaded; a short cache, whatever the config's context
  const P = model.config.maxPositions;
  const tokens = [1 % V, 5 % V, 9 % V].slice(0, P);
  const y = model.forward(tokens, model.createCache(Math.min(8, P)));
  for (const v of y.data as Float32Array) if (!Number.isFinite(v)) return 'nan';
  return 'ok';
}

const read = (dir: string, ...names: string[]): Files => new Map(names.map((n) => [n, fs.readFileSync(path.join(dir, n))]));

/** A format whose input is `base` with one file mutated by one of `mutators`. */
function format(name: string, base: () => Files, target: string | ((r: Rng) => string), mutators: readonly ((b: Uint8Array, r: Rng) => Buffer)[], run: Format['run'], salt: number): Format {
  let cached: Files | undefined;
  const getBase = () => (cached ??= base());
  return {
    name,
    base: getBase,
    input(seed, index) {
      const r = inputRng(seed, index, salt);
      const files = new Map(getBase());
      const file = typeof target === 'string' ? target : target(r);
      files.set(file, r.pick(mutators)(files.get(file)!, r));
      return files;
    },
    run,
  };
}

/**
 * The formats, over the fixtures in `fixtures` and a quantized checkpoint the
 * harness makes once in `work` (see prepareCheckpoint).
 */
export function formats(fixtures: string, work: string): Format[] {
  const stories = path.join(fixtures, 'stories260K');
  const gpt2 = path.join(fixtures, 'gpt2-tokenizer');
  const tok512 = path.join(stories, 'tok512.bin');
  return [
    format('safetensors', () => read(stories, 'config.json', 'model.safetensors'), 'model.safetensors', [mutateSafetensors, mutateSafetensorsData, mutateSafetensorsData, mutateBytes], (d) => forwardFinite(d, '.'), 1),
    format('config', () => read(stories, 'config.json', 'model.safetensors'), 'config.json', [mutateJson, mutateJson, mutateJson, mutateBytes], (d) => forwardFinite(d, '.'), 2),
    format('llama2c', () => read(stories, 'stories260K.bin'), 'stories260K.bin', [mutateLlama2cHeader, mutateLlama2cData, mutateLlama2cData, mutateBytes], (d) => forwardFinite(d, 'stories260K.bin', tok512), 3),
    format('tok512', () => read(stories, 'tok512.bin'), 'tok512.bin', [mutateBytes, mutateLlama2cHeader], (d) => {
      exerciseTokenizer(loadLlama2cTokenizer(path.join(d, 'tok512.bin'), 512));
      return exerciseTokenizer(loadLlama2cTokenizer(path.join(d, 'tok512.bin')));
    }, 4),
    format('checkpoint', () => read(path.join(work, 'checkpoint'), 'config.json', 'model.safetensors', 'tok512.bin'), (r) => (r.int(3) === 0 ? 'config.json' : 'model.safetensors'), [mutateSafetensors, mutateSafetensorsData, mutateSafetensorsData, mutateBytes, mutateJson], (d) => forwardFinite(d, '.'), 5),
    format('tokenizer-json', () => read(path.join(work, 'tokenizer-json'), 'tokenizer.json'), 'tokenizer.json', [mutateJson, mutateJson, mutateBytes], (d) => exerciseTokenizer(loadHfTokenizer(d)), 6),
    format('gpt2', () => read(gpt2, 'vocab.json', 'merges.txt'), (r) => (r.int(2) ? 'vocab.json' : 'merges.txt'), [mutateJson, mutateLines, mutateBytes], (d) => exerciseTokenizer(loadGpt2Tokenizer(path.join(d, 'vocab.json'), path.join(d, 'merges.txt'))), 7),
  ];
}

/** Make the unmutated inputs that are not fixtures: a quantkit int4 checkpoint of stories260K, a GPT-2 tokenizer.json. */
export async function prepareBases(fixtures: string, work: string): Promise<void> {
  const stories = path.join(fixtures, 'stories260K');
  const ckpt = path.join(work, 'checkpoint');
  if (!fs.existsSync(ckpt)) {
    const { model } = loadModelSync(stories);
    const summary = quantizeModel(model, { weights: 'int4', scheme: 'asymmetric' });
    await saveQuantized(model, summary, [path.join(stories, 'tok512.bin')], ckpt, JSON.parse(fs.readFileSync(path.join(stories, 'config.json'), 'utf8')));
  }
  const tj = path.join(work, 'tokenizer-json');
  if (!fs.existsSync(tj)) {
    const gpt2 = path.join(fixtures, 'gpt2-tokenizer');
    const vocab = JSON.parse(fs.readFileSync(path.join(gpt2, 'vocab.json'), 'utf8')) as Record<string, number>;
    const merges = fs
      .readFileSync(path.join(gpt2, 'merges.txt'), 'utf8')
      .split('\n')
      .filter((l) => l && !l.startsWith('#version'))
      .map((l) => l.split(' ') as [string, string]);
    fs.mkdirSync(tj, { recursive: true });
    fs.writeFileSync(path.join(tj, 'tokenizer.json'), JSON.stringify(gpt2TokenizerJson(vocab, merges)));
    fs.writeFileSync(path.join(tj, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<|endoftext|>', eos_token: '<|endoftext|>' }));
  }
}

/**
 * What the library promises for a bad input: a QuantkitError with a code, or
 * a TypeError/RangeError of its own (its message starts with the function,
 * "fn: ...", or a CLI flag). A TypeError from reading a property of undefined, a RangeError from
 * V8 (stack overflow, allocation) or any other Error is a finding.
 */
export function isTypedError(err: unknown): boolean {
  if (err instanceof QuantkitError) return typeof err.code === 'string' && err.code.startsWith('ERR_');
  if (err instanceof TypeError || err instanceof RangeError) return /^([\w.$]+: \S|--)/.test(err.message);
  return false;
}
