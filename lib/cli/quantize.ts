/** `quantkit quantize <model> --out <dir>`: quantize and save a quantkit checkpoint. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { QuantkitError } from '../errors.js';
import { footprint } from '../eval/footprint.js';
import { saveQuantized } from '../io/quantized-checkpoint.js';
import { disableHugePages } from '../ops/huge-pages.js';
import { type BudgetResult, quantizeToBudget } from '../eval/budget.js';
import { type CliIO, formatBytes, printJson, quantizeProgress } from './io.js';
import { type CliModel, loadCliModel } from './load.js';
import { type QuantFlags, fallbackLines, quantLabel, quantOptions, readCalibration, quantizeWithProgress, requireFloat } from './weights.js';

export interface QuantizeFlags extends QuantFlags {
  out: string;
  force?: boolean;
  bits: 8 | 4;
  /** --budget: largest perplexity ratio on --calib; the formats are then chosen per layer. */
  budget?: number;
  /** Whether --weights/--bits was given (it conflicts with --budget). */
  weights?: string;
  tokenizer?: string;
  json?: boolean;
}

export async function quantizeCommand(io: CliIO, modelPath: string, flags: QuantizeFlags): Promise<void> {
  const out = path.resolve(flags.out);
  const src = path.resolve(modelPath);
  if (out === src || src.startsWith(out + path.sep) || out === path.dirname(src)) {
    // the atomic swap would replace the model being read (or its folder)
    throw new QuantkitError('ERR_UNSUPPORTED', `--out ${flags.out} would overwrite the model itself; choose another folder`);
  }
  if (fs.existsSync(out) && !flags.force) throw new QuantkitError('ERR_UNSUPPORTED', `--out ${flags.out} already exists; pass --force to replace it`);
  // the weights are written to a checkpoint, not decoded here: 4 KiB pages fault faster
  disableHugePages();
  const m = loadCliModel(modelPath, flags.tokenizer, io);
  requireFloat(m, 'quantize');
  if (flags.budget !== undefined) return budgetCommand(io, m, flags);
  const opts = quantOptions(flags.bits === 8 ? 'int8' : 'int4', flags, readCalibration(flags, m));
  const before = footprint(m.model);
  const summary = quantizeWithProgress(io, m.model, opts);
  const after = footprint(m.model);
  await saveQuantized(m.model, summary, m.tokenizerFiles, flags.out, m.sourceConfig);
  const result = {
    out: flags.out,
    quantization: quantLabel(opts),
    replaced: summary.replaced,
    kept: summary.kept,
    fallbacks: summary.fallbacks,
    layers: summary.layers,
    layerBytesBefore: summary.bytesBefore,
    layerBytesAfter: summary.bytesAfter,
    footprintBefore: before.bytes,
    footprintAfter: after.bytes,
    tokenizerFiles: m.tokenizerFiles,
  };
  if (flags.json) return printJson(io, result);
  io.out(
    [
      `quantized ${summary.replaced.length} Linear layers to ${quantLabel(opts)}; kept in float: ${summary.kept.join(', ') || 'none'}`,
      ...(summary.fallbacks.length
        ? [`group size ${opts.groupSize} does not divide K of ${summary.fallbacks.length} layer(s), quantized instead as (--group-fallback ${flags.groupFallback ?? 'tail'}):`, ...fallbackLines(summary).map((l) => `  ${l}`)]
        : []),
      `layer weights: ${formatBytes(summary.bytesBefore)} -> ${formatBytes(summary.bytesAfter)}`,
      `model footprint: ${before.bytes.toLocaleString('en-US')} -> ${after.bytes.toLocaleString('en-US')} bytes (${(before.bytes / after.bytes).toFixed(2)}x smaller)`,
      `wrote ${flags.out}`,
    ].join('\n') + '\n',
  );
}

/** The flags --budget chooses itself: giving one is a contradiction, said as such. */
const BUDGET_CONFLICTS: [keyof QuantizeFlags, string][] = [
  ['weights', '--weights/--bits'],
  ['scheme', '--scheme'],
  ['group', '--group'],
  ['granularity', '--granularity'],
  ['activations', '--activations'],
  ['threshold', '--threshold'],
];

/** `quantize --budget R --calib F`: per-layer formats within a perplexity ratio (quantizeToBudget). */
async function budgetCommand(io: CliIO, m: CliModel, flags: QuantizeFlags): Promise<void> {
  for (const [k, name] of BUDGET_CONFLICTS) {
    if (flags[k] !== undefined) throw new QuantkitError('ERR_UNSUPPORTED', `--budget chooses each layer's format itself; drop ${name}`);
  }
  if (flags.calib === undefined) throw new QuantkitError('ERR_UNSUPPORTED', '--budget measures perplexity on calibration text: pass --calib <file>');
  const calibration = readCalibration(flags, m)!;
  const before = footprint(m.model);
  const bar = quantizeProgress(io);
  let r: BudgetResult;
  try {
    r = quantizeToBudget(m.model, {
      budget: flags.budget!,
      calibration,
      ...(flags.exclude !== undefined ? { exclude: flags.exclude } : {}),
      ...(flags.method !== undefined ? { method: flags.method } : {}),
      onProgress: bar.onProgress,
    });
  } finally {
    bar.stop();
  }
  const after = footprint(m.model);
  await saveQuantized(m.model, r.summary, m.tokenizerFiles, flags.out, m.sourceConfig);
  const result = {
    out: flags.out,
    budget: r.budget,
    achievedRatio: r.achievedRatio,
    floatPpl: r.floatPpl,
    checkTokens: r.checkTokens,
    sensitivityTokens: r.sensitivityTokens,
    layers: r.layers.map((l) => ({ name: l.name, format: l.format, bytes: l.bytes[l.format], kl: l.kl })),
    layerBytes: r.bytes,
    layerBytesAllInt8: r.bytesAllInt8,
    checks: r.checks,
    footprintBefore: before.bytes,
    footprintAfter: after.bytes,
  };
  if (flags.json) return printJson(io, result);
  const counts = new Map<string, number>();
  for (const l of r.layers) counts.set(l.format, (counts.get(l.format) ?? 0) + 1);
  const w = Math.max(...r.layers.map((l) => l.name.length));
  io.out(
    [
      `plan for perplexity ratio <= ${r.budget} on ${r.checkTokens} calibration tokens (sensitivity: KL on the first ${r.sensitivityTokens}):`,
      `  ${'layer'.padEnd(w)}  format     KL int4 g128  KL int4 g32   KL int8`,
      ...r.layers.map((l) => `  ${l.name.padEnd(w)}  ${l.format.padEnd(9)}  ${l.kl['int4 g128'].toExponential(2).padStart(11)}  ${l.kl['int4 g32'].toExponential(2).padStart(11)}  ${l.kl.int8.toExponential(2).padStart(8)}`),
      `layers: ${[...counts].map(([f, n]) => `${n} ${f}`).join(', ')}`,
      `checked plans: ${r.checks.map((c) => `${formatBytes(c.bytes)} -> ${c.ratio.toFixed(4)}`).join(', ')}`,
      `achieved perplexity ratio ${r.achievedRatio.toFixed(4)} (budget ${r.budget}); layer weights ${formatBytes(r.bytes)} (all int8: ${formatBytes(r.bytesAllInt8)}, ${((r.bytes / r.bytesAllInt8) * 100).toFixed(1)} %)`,
      `model footprint: ${before.bytes.toLocaleString('en-US')} -> ${after.bytes.toLocaleString('en-US')} bytes (${(before.bytes / after.bytes).toFixed(2)}x smaller)`,
      `wrote ${flags.out}`,
    ].join('\n') + '\n',
  );
}
