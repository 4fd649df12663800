/**
 * Calibrated 4-bit quantization on the real stories260K model: perplexity
 * ratio to fp32 and quantize time, method by method (round to nearest vs
 * GPTQ), on the shared TinyStories text split in two disjoint parts: the
 * first --calib-tokens tokens calibrate, every later token evaluates.
 *
 *   npm run bench:calib [-- --calib-tokens 16384 --context 256 --json]
 *
 * Needs ../shared/fixtures (stories260K and text/tinystories-head.txt).
 */
import { loadavg } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type QuantizeModelOptions, isa, loadModelSync, perplexity, quantizeModel } from '../lib/index.js';
import { readTextFile, tokenizeText } from '../lib/cli/load.js';
import { printTable } from './common.js';

const args = process.argv.slice(2);
const opt = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const fixtures = process.env.QUANTKIT_FIXTURES ?? path.resolve(root, '..', 'shared', 'fixtures');
const MODEL = path.join(fixtures, 'stories260K');
const TEXT = path.join(fixtures, 'text', 'tinystories-head.txt');
const nCal = Number(opt('--calib-tokens') ?? 16384);
const context = Number(opt('--context') ?? 256);

const { model: base, tokenizer } = loadModelSync(MODEL);
const all = tokenizeText(tokenizer!, readTextFile(TEXT));
const cal = all.slice(0, nCal);
const ev = all.slice(nCal);
if (ev.length < 1024) throw new Error(`only ${ev.length} evaluation tokens left after ${nCal} calibration tokens`);
const load0 = loadavg();
const fp = perplexity(base, ev, { context }).ppl;

type Row = { config: string; method: string; ppl: number; ratio: number; quantizeS: number };
const rows: Row[] = [];
const cases: [string, QuantizeModelOptions][] = [
  ['int4 asym g32', { weights: 'int4', scheme: 'asymmetric', groupSize: 32 }],
  ['int4 sym g32', { weights: 'int4', scheme: 'symmetric', groupSize: 32 }],
  ['int4 asym g128', { weights: 'int4', scheme: 'asymmetric', groupSize: 128 }],
  ['int8 sym per-channel', { weights: 'int8' }],
];
for (const [name, q] of cases) {
  for (const [method, extra] of [
    ['rtn', {}],
    ['gptq', { calibration: { tokens: cal, context } }],
    ['gptq, no act order', { calibration: { tokens: cal, context }, gptq: { actOrder: false } }],
  ] as const) {
    if (method === 'gptq, no act order' && !name.includes('g32')) continue;
    const { model } = loadModelSync(MODEL);
    const t0 = performance.now();
    quantizeModel(model, { ...q, ...extra });
    const quantizeS = (performance.now() - t0) / 1000;
    const ppl = perplexity(model, ev, { context }).ppl;
    rows.push({ config: name, method, ppl, ratio: ppl / fp, quantizeS });
    process.stderr.write(`  ${name} ${method}: ${ppl.toFixed(4)}\n`);
  }
}
const load1 = loadavg();
if (args.includes('--json')) {
  for (const r of rows) process.stdout.write(JSON.stringify(r) + '\n');
} else {
  console.log(`\nstories260K, every Linear but lm_head quantized; isa ${isa()}; calibration: first ${cal.length} tokens of ${path.basename(TEXT)}, evaluation: the other ${ev.length} (context ${context}); fp32 perplexity ${fp.toFixed(4)}`);
  console.log(`load average at start ${load0.map((v) => v.toFixed(2)).join(' ')}, at end ${load1.map((v) => v.toFixed(2)).join(' ')}\n`);
  printTable(
    ['config', 'method', 'perplexity', 'x fp32', 'quantize s'],
    rows.map((r) => [r.config, r.method, r.ppl.toFixed(4), r.ratio.toFixed(4), r.quantizeS.toFixed(2)]),
  );
}
