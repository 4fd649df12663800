/**
 * Calibrated 4-bit quantization on the real stories260K model: perplexity
 * ratio to fp32 and quantize time, method by method (round to nearest,
 * GPTQ with and without its options, AWQ scales, both) and the error
 * budget, on the shared TinyStories text split in two disjoint parts: the
 * first --calib-tokens tokens calibrate, every later token evaluates
 * (--split last: the last ones calibrate, the earlier ones evaluate).
 *
 *   npm run bench:calib [-- --calib-tokens 16384 --context 256 --split first|last|<token> --quick --json]
 *
 * --split <token>: calibration on the --calib-tokens tokens from that index,
 * evaluation on the tokens before and after them.
 *
 * --quick runs int4 g32 only. The "async" rows run quantizeModelAsync (the
 * same weights, checked by their perplexity) and give the event loop's
 * longest stall meanwhile.
 * Needs ../shared/fixtures (stories260K and text/tinystories-head.txt).
 */
import { loadavg } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { type QuantizeModelOptions, isa, loadModelSync, perplexity, quantizeModel, quantizeModelAsync, quantizeToBudget } from '../lib/index.js';
import { readTextFile, tokenizeText } from '../lib/cli/load.js';
import { cliOptions, printTable } from './common.js';

const { flag, opt } = cliOptions(import.meta.url, { flags: ['--quick', '--json'], values: ['--calib-tokens', '--context', '--split'] });
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const fixtures = process.env.QUANTKIT_FIXTURES ?? path.resolve(root, '..', 'shared', 'fixtures');
const MODEL = path.join(fixtures, 'stories260K');
const TEXT = path.join(fixtures, 'text', 'tinystories-head.txt');
const nCal = Number(opt('--calib-tokens') ?? 16384);
const context = Number(opt('--context') ?? 256);

const { model: base, tokenizer } = loadModelSync(MODEL);
const all = tokenizeText(tokenizer!, readTextFile(TEXT));
const split = opt('--split') ?? 'first';
// first, last, or the index of the first calibration token (the tokens
// before and after the calibration window evaluate, joined)
const start = split === 'first' ? 0 : split === 'last' ? all.length - nCal : Number(split);
if (!Number.isInteger(start) || start < 0 || start + nCal > all.length) throw new Error(`--split must be first, last or a token index in [0, ${all.length - nCal}], got ${split}`);
const cal = all.slice(start, start + nCal);
const ev = all.slice(0, start).concat(all.slice(start + nCal));
if (ev.length < 1024) throw new Error(`only ${ev.length} evaluation tokens left after ${nCal} calibration tokens`);
const load0 = loadavg();
const fp = perplexity(base, ev, { context }).ppl;

type Row = { config: string; method: string; ppl: number; ratio: number; quantizeS: number; stallMs?: number };
const rows: Row[] = [];
const cases: [string, QuantizeModelOptions][] = [
  ['int4 asym g32', { weights: 'int4', scheme: 'asymmetric', groupSize: 32 }],
  ['int4 sym g32', { weights: 'int4', scheme: 'symmetric', groupSize: 32 }],
  ['int4 asym g128', { weights: 'int4', scheme: 'asymmetric', groupSize: 128 }],
  ['int8 sym per-channel', { weights: 'int8' }],
];
const calibration = { tokens: cal, context };
const methods: [string, Partial<QuantizeModelOptions>][] = [
  ['rtn', {}],
  ['gptq (default)', { calibration }],
  ['gptq (default), async', { calibration }],
  ['gptq, no clipping search', { calibration, gptq: { clip: false } }],
  ['gptq, sequential', { calibration, gptq: { sequential: true } }],
  ['awq', { calibration, method: 'awq' }],
  ['awq+gptq', { calibration, method: 'awq+gptq' }],
  ['awq+gptq, async', { calibration, method: 'awq+gptq' }],
];
const quick = flag('--quick');
for (const [name, q] of cases) {
  if (quick && name !== 'int4 asym g32') continue;
  for (const [method, extra] of methods) {
    if (!name.startsWith('int4 asym') && method !== 'rtn' && method !== 'gptq (default)') continue;
    const { model } = loadModelSync(MODEL);
    const async = method.endsWith(', async');
    const delay = monitorEventLoopDelay({ resolution: 1 });
    const t0 = performance.now();
    if (async) {
      delay.enable();
      await quantizeModelAsync(model, { ...q, ...extra });
      delay.disable();
    } else {
      quantizeModel(model, { ...q, ...extra });
    }
    const quantizeS = (performance.now() - t0) / 1000;
    const ppl = perplexity(model, ev, { context }).ppl;
    rows.push({ config: name, method, ppl, ratio: ppl / fp, quantizeS, ...(async ? { stallMs: delay.max / 1e6 } : {}) });
    process.stderr.write(`  ${name} ${method}: ${ppl.toFixed(4)}\n`);
  }
}
// the error budget: per-layer formats within 1.01 on the calibration text
const budgetRows: { budget: number; calRatio: number; ratio: number; bytes: number; int8Bytes: number; formats: string; quantizeS: number }[] = [];
for (const budget of quick ? [] : [1.01]) {
  const { model } = loadModelSync(MODEL);
  const t0 = performance.now();
  const r = quantizeToBudget(model, { budget, calibration });
  const quantizeS = (performance.now() - t0) / 1000;
  const counts = new Map<string, number>();
  for (const l of r.layers) counts.set(l.format, (counts.get(l.format) ?? 0) + 1);
  const ppl = perplexity(model, ev, { context }).ppl;
  budgetRows.push({ budget, calRatio: r.achievedRatio, ratio: ppl / fp, bytes: r.bytes, int8Bytes: r.bytesAllInt8, formats: [...counts].map(([f, n]) => `${n} ${f}`).join(', '), quantizeS });
  process.stderr.write(`  budget ${budget}: ${(ppl / fp).toFixed(4)}\n`);
}
const load1 = loadavg();
if (flag('--json')) {
  for (const r of rows) process.stdout.write(JSON.stringify(r) + '\n');
  for (const r of budgetRows) process.stdout.write(JSON.stringify(r) + '\n');
} else {
  const where = split === 'first' ? `first ${cal.length} tokens` : split === 'last' ? `last ${cal.length} tokens` : `tokens ${start} to ${start + cal.length - 1}`;
  console.log(`\nstories260K, every Linear but lm_head quantized; isa ${isa()}; calibration: ${where} of ${path.basename(TEXT)}, evaluation: the other ${ev.length} (context ${context}); fp32 perplexity ${fp.toFixed(4)}`);
  console.log(`load average at start ${load0.map((v) => v.toFixed(2)).join(' ')}, at end ${load1.map((v) => v.toFixed(2)).join(' ')}\n`);
  printTable(
    ['config', 'method', 'perplexity', 'x fp32', 'quantize s', 'event loop'],
    rows.map((r) => [r.config, r.method, r.ppl.toFixed(4), r.ratio.toFixed(4), r.quantizeS.toFixed(2), r.stallMs === undefined ? 'blocked' : `longest stall ${r.stallMs.toFixed(0)} ms`]),
  );
  if (budgetRows.length > 0) {
    console.log('');
    printTable(
      ['budget', 'x fp32 (calibration)', 'x fp32 (evaluation)', 'layer bytes', 'vs all int8', 'formats', 'quantize s'],
      budgetRows.map((r) => [String(r.budget), r.calRatio.toFixed(4), r.ratio.toFixed(4), String(r.bytes), `${((r.bytes / r.int8Bytes) * 100).toFixed(1)} %`, r.formats, r.quantizeS.toFixed(1)]),
    );
  }
}
