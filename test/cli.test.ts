/**
 * The quantkit CLI, every call a child process of its entry point,
 * and the acceptance numbers on the real stories260K model (llama2.c
 * tokenizer tok512.bin, TinyStories text, one BOS per story):
 *   - int8 per-channel perplexity within 0.5 % of fp32, int4 asym g32 within 8 %
 *   - footprints equal to the hand-computed bytes
 *   - greedy generations read as English; int8 from BOS starts "Once upon a time"
 * The fixture lives in ../shared/fixtures: absent, these tests are skipped
 * with a message, unless CI is set, in which case they fail.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CliIO } from '../lib/cli/io.js';
import { run } from '../lib/cli/main.js';
import { runCli, runCliJson } from './cli-run.js';
import { FIXTURES_DIR } from './fixtures.js';
import { checkWellFormedSvg } from './xml-check.js';

const FIX = FIXTURES_DIR;
const MODEL = path.join(FIX, 'stories260K');
const BIN = path.join(MODEL, 'stories260K.bin');
const TOK = path.join(MODEL, 'tok512.bin');
const TEXT = path.join(FIX, 'text/tinystories-head.txt');
const haveFixture = [path.join(MODEL, 'model.safetensors'), BIN, TOK, TEXT].every((f) => fs.existsSync(f));
if (!haveFixture) {
  if (process.env.CI) throw new Error(`stories260K fixture missing under ${FIX} (required when CI is set)`);
  console.warn(`skipping stories260K CLI tests: fixture not found under ${FIX}`);
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qk-cli-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** `quantkit ...argv` as a child process (test/cli-run.ts). */
const cli = (...argv: string[]) => runCli(argv);
const json = <T = Record<string, unknown>>(...argv: string[]) => runCliJson<T>(argv);

describe('CLI usage and errors', () => {
  it('--help everywhere, exit 0', async () => {
    const top = await cli('--help');
    expect(top.code).toBe(0);
    expect(top.out).toMatch(/Usage: quantkit/);
    for (const c of ['inspect', 'quantize', 'generate', 'ppl', 'report']) {
      const r = await cli(c, '--help');
      expect(r.code).toBe(0);
      expect(r.out).toMatch(new RegExp(`Usage: quantkit ${c}`));
    }
  });

  it('a missing model path: non-zero, one line naming it', async () => {
    const r = await cli('inspect', path.join(tmp, 'no-such-model'));
    expect(r.code).not.toBe(0);
    expect(r.err).toBe(`quantkit: model not found: ${path.join(tmp, 'no-such-model')}\n`);
  });

  it('bad option values and missing options are usage errors', async () => {
    const bits = await cli('quantize', MODEL, '--out', path.join(tmp, 'q'), '--bits', '3');
    expect(bits.code).not.toBe(0);
    expect(bits.err).toMatch(/^quantkit: option '--bits <n>' argument '3' is invalid/);
    expect(fs.existsSync(path.join(tmp, 'q'))).toBe(false);
    const noOut = await cli('quantize', MODEL);
    expect(noOut.code).not.toBe(0);
    expect(noOut.err).toMatch(/required option '--out <dir>'/);
    expect((await cli('ppl', MODEL, '--text', TEXT, '--context', 'x')).err).toMatch(/--context/);
    expect((await cli('frobnicate')).code).not.toBe(0);
  });

  it('a failure: exit code 1 and one line, no stack trace', async () => {
    const r = await cli('ppl', path.join(tmp, 'missing'), '--text', TEXT);
    expect(r.code).toBe(1);
    expect(r.err.trim().split('\n')).toHaveLength(1);
    expect(r.err).toMatch(/^quantkit: /);
    expect(r.err).not.toMatch(/\n\s+at /);
    const h = await cli('--help');
    expect(h.code).toBe(0);
    expect(h.out).toMatch(/Commands:/);
  });

  it('one vocabulary: --weights or --bits on quantize, sym/asym or the full names; required options and defaults in --help', async () => {
    const h = await cli('quantize', '--help');
    expect(h.out).toMatch(/--out <dir>\s+output folder, written atomically \(required\)/);
    expect(h.out).toMatch(/--weights <w>\s+weight format: int8 or int4 \(default: int8\)/);
    const flat = h.out.replace(/\s+/g, ' ');
    expect(flat).toMatch(/--scheme <s> sym \/ symmetric, or asym \/ asymmetric \(with zero points\) \(default: sym for int8, asym for int4\)/);
    expect(flat).toMatch(/--granularity <g> channel, group or tensor \(default: channel for int8, group for int4\)/);
    expect((await cli('ppl', '--help')).out.replace(/\s+/g, ' ')).toMatch(/--text <file> .*\(required\)/);
    const bad = await cli('quantize', MODEL, '--out', path.join(tmp, 'never'), '--weights', 'int8', '--bits', '4');
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/--weights int8 and --bits 4 disagree/);
    expect(fs.existsSync(path.join(tmp, 'never'))).toBe(false);
  });

  it.skipIf(!haveFixture)('quantize --weights int4 --scheme asymmetric is --bits 4 --scheme asym', async () => {
    const a = await json<{ out: string; quantization: string; footprintAfter: number }>('quantize', MODEL, '--out', path.join(tmp, 'va'), '--weights', 'int4', '--scheme', 'asymmetric');
    const b = await json<{ out: string; quantization: string; footprintAfter: number }>('quantize', MODEL, '--out', path.join(tmp, 'vb'), '--bits', '4', '--scheme', 'asym');
    expect(a.quantization).toBe('int4 asym g32');
    expect(a).toEqual({ ...b, out: a.out });
    expect(fs.readFileSync(path.join(tmp, 'va', 'model.safetensors'))).toEqual(fs.readFileSync(path.join(tmp, 'vb', 'model.safetensors')));
  });

  it.skipIf(!haveFixture)('inspect says what the model is and prints its module tree, before and after --weights', async () => {
    const r = await cli('inspect', MODEL, '--weights', 'int4');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^kind: +causal language model$/m);
    expect(r.out).toContain('      (0-4): 5 x LlamaDecoderLayer(');
    expect(r.out).toContain('(q_proj): Linear(in=64, out=64, f32)');
    expect(r.out).toMatch(/after quantizeModel \(int4 asym g32\): 35 Linear layers became QLinear; kept in float: lm_head/);
    expect(r.out).toContain('(down_proj): QLinear(in=172, out=64, int4 asym g32 (last 12))');
    expect(r.out).toContain('(lm_head): Linear(in=64, out=512, f32)');
    const j = await json<{ kind: string; quantizedAs: { kept: string[]; moduleTree: string } }>('inspect', MODEL, '--weights', 'int8', '--activations', 'int8');
    expect(j.kind).toBe('causal-lm');
    expect(j.quantizedAs.kept).toEqual(['lm_head']);
    expect(j.quantizedAs.moduleTree).toContain('(q_proj): QLinear(in=64, out=64, int8 sym per-channel, W8A8)');
  });

  // In-process: the bars draw only on a terminal, which a piped child lacks;
  // here the io's progress stream claims to be one.
  it.skipIf(!haveFixture)('progress on a terminal: loading by bytes, quantize layer by layer, report step by step, with a labelled ETA', async () => {
    let drawn = '';
    const tty = { isTTY: true, columns: 200, write: (s: string) => ((drawn += s), true) } as unknown as NodeJS.WritableStream & { isTTY: boolean };
    const io: CliIO = { out: () => undefined, err: () => undefined, progressStream: tty };
    expect(await run(['quantize', MODEL, '--out', path.join(tmp, 'progress-q'), '--weights', 'int4'], io)).toBe(0);
    expect(drawn).toMatch(/quantize \[[^\]]*\] \d+\/35 model\.layers\.\d\.[\w.]+ \| ETA/);
    // loading: the bytes read of each weight file
    expect(drawn).toMatch(/load \[[^\]]*\] \d+\/\d+ model\.safetensors \| ETA/);
    drawn = '';
    expect(await run(['report', MODEL, '--out', path.join(tmp, 'progress-r'), '--weights', 'int8', '--max-tokens', '256', '--max-new-tokens', '4'], io)).toBe(0);
    // (the bar redraws at most 10 times a second: some step is on it, with its label)
    expect(drawn).toMatch(/report \[[^\]]*\] \d+\/6 (fp32|int8 sym per-channel): (generations|perplexity|per-layer errors|quantize) \| ETA/);
    // not a terminal: nothing drawn
    drawn = '';
    expect(await run(['quantize', MODEL, '--out', path.join(tmp, 'progress-q'), '--force'], { out: () => undefined, err: () => undefined })).toBe(0);
    expect(drawn).toBe('');
  });

  it.skipIf(!haveFixture)('a mistyped --exclude is an error naming the flag, and writes nothing', async () => {
    const out = path.join(tmp, 'typo');
    const r = await cli('quantize', MODEL, '--out', out, '--exclude', 'model.layerz.*');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^quantkit: --exclude pattern 'model\.layerz\.\*' matches no Linear layer of this model; its Linear layers are model\.layers\.0\./);
    expect(fs.existsSync(out)).toBe(false);
  });
});

describe.skipIf(!haveFixture)('stories260K through the CLI (acceptance)', () => {
  // the first 8192 tokens of the TinyStories head, one BOS per story, windows of 256
  const PPL = ['--text', TEXT, '--max-tokens', '8192', '--context', '256'];
  type Ppl = { ppl: number; nll: number; tokens: number };
  const ppl: Record<string, Ppl> = {};

  beforeAll(async () => {
    ppl.fp32 = await json<Ppl>('ppl', MODEL, ...PPL);
    ppl.int8 = await json<Ppl>('ppl', MODEL, ...PPL, '--weights', 'int8');
    ppl.int4 = await json<Ppl>('ppl', MODEL, ...PPL, '--weights', 'int4', '--scheme', 'asym', '--group', '32');
    console.log(
      `stories260K perplexity (${ppl.fp32!.tokens} tokens): fp32 ${ppl.fp32!.ppl.toFixed(4)}, int8 ${ppl.int8!.ppl.toFixed(4)}, int4 asym g32 ${ppl.int4!.ppl.toFixed(4)}`,
    );
  });

  it('perplexity: int8 within 0.5 % of fp32, int4 asym g32 within 8 %', () => {
    expect(ppl.fp32!.tokens).toBe(8160); // 32 windows of 256, each scoring 255
    expect(ppl.fp32!.ppl).toBeGreaterThan(3);
    expect(ppl.fp32!.ppl).toBeLessThan(6);
    expect(Math.abs(ppl.int8!.ppl / ppl.fp32!.ppl - 1)).toBeLessThan(0.005);
    expect(ppl.int4!.ppl / ppl.fp32!.ppl - 1).toBeLessThan(0.08);
    expect(ppl.int4!.ppl).toBeGreaterThan(ppl.int8!.ppl);
  });

  it('a llama2.c .bin with --tokenizer gives the same perplexity as the HF folder', async () => {
    const r = await json<Ppl>('ppl', BIN, '--tokenizer', TOK, '--text', TEXT, '--max-tokens', '1024', '--context', '256');
    const h = await json<Ppl>('ppl', MODEL, '--text', TEXT, '--max-tokens', '1024', '--context', '256');
    expect(r.tokens).toBe(h.tokens);
    expect(r.ppl).toBeCloseTo(h.ppl, 4);
  });

  /*
   * Footprints by hand. stories260K: dim 64, hidden 172, 5 layers, 8 heads of
   * 8, 4 kv heads (k/v rows 32), vocab 512, lm_head tied to the embedding.
   * Per layer Linear weights [N, K]: q 64x64, k 32x64, v 32x64, o 64x64,
   * gate 172x64, up 172x64, down 64x172 = 45,312 values, 600 rows.
   *   fp32: (5 * 45,312 + 512*64 embedding + 5 * 2 * 64 + 64 norms) * 4
   *       = (226,560 + 32,768 + 704) * 4 = 1,040,128
   *   float part that stays (embedding/tied lm_head, norms): (32,768 + 704) * 4 = 133,888
   *   int8 sym per channel: codes 226,560 + scales 5 * 600 * 4 = 12,000
   *       -> 133,888 + 238,560 = 372,448
   *   int4 asym g32 (down_proj: K = 172 = 5 x 32 + 12, so 6 groups per row,
   *   the last one 12 values long): per group a 4-byte scale + 1-byte zero
   *       q  64 rows: codes 64*32 = 2,048 + 64*2 groups * 5 = 640 -> 2,688
   *       k, v 32 rows: 1,024 + 320 = 1,344 each
   *       o  2,688;  gate, up 172 rows: 5,504 + 1,720 = 7,224 each
   *       down 64 rows: codes 64*86 = 5,504 + 64*6 groups * 5 = 1,920 -> 7,424
   *       per layer 2*2,688 + 2*1,344 + 2*7,224 + 7,424 = 29,936; x5 = 149,680
   *       -> 133,888 + 149,680 = 283,568
   */
  it('footprints equal the hand-computed bytes; checkpoints reload bit-identically', async () => {
    const fp32 = await json<{ footprint: { bytes: number }; parameters: number }>('inspect', MODEL);
    expect(fp32.footprint.bytes).toBe(1_040_128);
    expect(fp32.parameters).toBe(260_032);

    const q8 = path.join(tmp, 'stories-int8');
    const s8 = await json<{ footprintBefore: number; footprintAfter: number; kept: string[] }>('quantize', MODEL, '--out', q8, '--bits', '8');
    expect(s8.footprintBefore).toBe(1_040_128);
    expect(s8.footprintAfter).toBe(372_448);
    expect(s8.kept).toEqual(['lm_head']);

    const exists = await cli('quantize', MODEL, '--out', q8);
    expect(exists.code).toBe(1);
    expect(exists.err).toMatch(/already exists; pass --force/);
    expect((await cli('quantize', MODEL, '--out', MODEL, '--force')).err).toMatch(/overwrite the model itself/);
    expect((await cli('quantize', MODEL, '--out', q8, '--force')).code).toBe(0);

    const q4 = path.join(tmp, 'stories-int4');
    const s4 = await json<{ footprintAfter: number; fallbacks: string[] }>('quantize', MODEL, '--out', q4, '--bits', '4', '--scheme', 'asym', '--group', '32');
    expect(s4.footprintAfter).toBe(283_568);
    expect(s4.fallbacks).toEqual([]); // the 5 down_proj keep groups of 32, the last one 12 long
    // asked for, the divisor fallback: the text output says what those layers got
    const t4 = await cli('quantize', MODEL, '--out', q4, '--force', '--bits', '4', '--group', '32', '--group-fallback', 'divisor');
    expect(t4.out).toMatch(/group size 32 does not divide K of 5 layer\(s\), quantized instead as \(--group-fallback divisor\):\n  model\.layers\.0\.mlp\.down_proj \(K = 172\): g4\n/);
    const k4 = await cli('quantize', MODEL, '--out', q4, '--force', '--bits', '4', '--group', '32', '--group-fallback', 'keep');
    expect(k4.out).toMatch(/kept in float: model\.layers\.0\.mlp\.down_proj/);
    // a group size no layer can use is refused, naming the flag
    const g48 = await cli('quantize', MODEL, '--out', path.join(tmp, 'g48'), '--bits', '4', '--group', '48', '--group-fallback', 'divisor');
    expect(g48.code).toBe(1);
    expect(g48.err).toMatch(/^quantkit: --group 48 divides the K of no layer \(K = 64, 172\)/);
    expect((await cli('ppl', MODEL, '--text', TEXT, '--weights', 'int4', '--group', '256')).err).toMatch(/--group 256 is not smaller than the K of any layer \(K = 64, 172\)/);
    expect((await cli('quantize', MODEL, '--out', q4, '--force', '--bits', '4', '--group-fallback', 'error')).err).toMatch(/--group 32 does not divide K = 172 .*\(set --group-fallback to tail, divisor, channel or keep\)/);
    await cli('quantize', MODEL, '--out', q4, '--force', '--bits', '4', '--scheme', 'asym', '--group', '32'); // restore for the checks below
    const i4 = await json<{ source: string; footprint: { bytes: number } }>('inspect', q4);
    expect(i4.source).toBe('quantkit');
    expect(i4.footprint.bytes).toBe(283_568);
    // loaded without the original weights, the checkpoint scores exactly like the in-memory model
    expect(await json<Ppl>('ppl', q4, ...PPL)).toEqual({ ...(await json<Ppl>('ppl', MODEL, ...PPL, '--weights', 'int4', '--scheme', 'asym')), weights: 'quantkit checkpoint', model: q4 });
    const cfg = JSON.parse(fs.readFileSync(path.join(q4, 'config.json'), 'utf8'));
    expect(cfg.quantization_config).toMatchObject({ quant_method: 'quantkit', bits: 4, scheme: 'asymmetric', granularity: 'group', group_size: 32, modules_to_not_convert: ['lm_head'], format_version: 1 });
    expect(fs.existsSync(path.join(q4, 'tok512.bin'))).toBe(true);
    // --weights on an already quantized checkpoint is refused
    const again = await cli('ppl', q4, ...PPL, '--weights', 'int8');
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/already a quantkit checkpoint/);
  });

  it('greedy generations read as English; int8 from BOS starts "Once upon a time"', async () => {
    const words = new Set(fs.readFileSync(TEXT, 'utf8').toLowerCase().match(/[a-z]+/g));
    type Gen = { text: string; finishReason: string };
    const g8 = await json<Gen>('generate', MODEL, '--weights', 'int8', '--max-new-tokens', '60');
    expect(g8.text.startsWith('Once upon a time')).toBe(true);
    const fromQ4 = await json<Gen>('generate', path.join(tmp, 'stories-int4'), '--prompt', 'Once upon a time', '--max-new-tokens', '60');
    const g4 = await json<Gen>('generate', MODEL, '--weights', 'int4', '--scheme', 'asym', '--prompt', 'Once upon a time', '--max-new-tokens', '60');
    expect(fromQ4.text).toBe(g4.text);
    for (const t of [g8.text, g4.text]) {
      const w = t.toLowerCase().match(/[a-z]+/g) ?? [];
      expect(w.length).toBeGreaterThan(20);
      const known = w.filter((x) => words.has(x)).length / w.length;
      expect(known).toBeGreaterThan(0.9); // words of the training register
    }
    console.log(`int8 greedy: ${JSON.stringify(g8.text)}\nint4 greedy: ${JSON.stringify('Once upon a time' + g4.text)}`);
    // text mode streams the prompt and the completion to stdout
    const plain = await cli('generate', MODEL, '--prompt', 'Once upon a time', '--max-new-tokens', '8');
    expect(plain.code).toBe(0);
    expect(plain.out.startsWith('Once upon a time')).toBe(true);
    // sampling is reproducible from a seed
    const s1 = await json<Gen>('generate', MODEL, '--temperature', '0.8', '--top-k', '40', '--top-p', '0.9', '--seed', '7', '--max-new-tokens', '20');
    const s2 = await json<Gen>('generate', MODEL, '--temperature', '0.8', '--top-k', '40', '--top-p', '0.9', '--seed', '7', '--max-new-tokens', '20');
    expect(s1).toEqual(s2);
  });

  it('report: report.md, report.json and well-formed SVGs', async () => {
    const out = path.join(tmp, 'report');
    const r = await cli('report', MODEL, '--out', out, '--max-tokens', '1024', '--max-new-tokens', '20', '--scheme', 'asym', '--layer', 'model.layers.2.mlp.down_proj');
    expect(r.code, r.err).toBe(0);
    const files = fs.readdirSync(out).sort();
    expect(files).toEqual(['footprint.svg', 'perplexity.svg', 'report.json', 'report.md', 'sqnr-int4-asym-g32.svg', 'sqnr-int8-asym-per-channel.svg', 'weights-int4-asym-g32.svg', 'weights-int8-asym-per-channel.svg']);
    for (const f of files.filter((x) => x.endsWith('.svg'))) checkWellFormedSvg(fs.readFileSync(path.join(out, f), 'utf8'));
    const rep = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8'));
    expect(rep.results.map((x: { label: string }) => x.label)).toEqual(['fp32', 'int8 asym per-channel', 'int4 asym g32']);
    expect(rep.results[2].footprint.bytes).toBe(283_568);
    expect(rep.results[1].layers).toHaveLength(35); // 5 x 7 Linear layers; the tied lm_head stays float
    const md = fs.readFileSync(path.join(out, 'report.md'), 'utf8');
    expect(md).toContain('| int4 asym g32 | 283,568');
    expect(md).toContain('![SQNR per layer](sqnr-int4-asym-g32.svg)');
    expect(fs.readFileSync(path.join(out, 'weights-int4-asym-g32.svg'), 'utf8')).toContain('model.layers.2.mlp.down_proj');

    // refused before any evaluation, naming the flag
    const again = await cli('report', MODEL, '--out', out);
    expect(again.err).toMatch(/--out .* already exists; pass --force to replace it/);
    const badLayer = await cli('report', MODEL, '--out', path.join(tmp, 'r2'), '--layer', 'model.layers.9.mlp.up_proj');
    expect(badLayer.err).toMatch(/--layer model\.layers\.9\.mlp\.up_proj is not a quantized Linear layer of this model; choose one of model\.layers\.0\./);
    const longCtx = await cli('report', MODEL, '--out', path.join(tmp, 'r2'), '--context', '4096');
    expect(longCtx.err).toMatch(/--context 4096 exceeds the model's context of 512 tokens/);
    expect((await cli('ppl', MODEL, '--text', TEXT, '--context', '513')).err).toMatch(/--context 513 exceeds/);
    expect(fs.existsSync(path.join(tmp, 'r2'))).toBe(false);

    // --force replaces the folder whole: a stale file of an earlier run is gone
    fs.writeFileSync(path.join(out, 'sqnr-int2-stale.svg'), '<svg/>');
    const forced = await cli('report', MODEL, '--out', out, '--force', '--weights', 'int8', '--max-tokens', '256', '--max-new-tokens', '4');
    expect(forced.code, forced.err).toBe(0);
    expect(fs.readdirSync(out).sort()).toEqual(['footprint.svg', 'perplexity.svg', 'report.json', 'report.md', 'sqnr-int8-sym-per-channel.svg', 'weights-int8-sym-per-channel.svg']);
  });
});
