/** `quantkit quantize <model> --out <dir>`: quantize and save a quantkit checkpoint. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { QuantkitError } from '../errors.js';
import { footprint } from '../eval/footprint.js';
import { saveQuantized } from '../io/quantized-checkpoint.js';
import { type CliIO, formatBytes, printJson } from './io.js';
import { loadCliModel } from './load.js';
import { type QuantFlags, fallbackLines, quantLabel, quantOptions, readCalibration, quantizeWithProgress, requireFloat } from './weights.js';

export interface QuantizeFlags extends QuantFlags {
  out: string;
  force?: boolean;
  bits: 8 | 4;
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
  const m = loadCliModel(modelPath, flags.tokenizer, io);
  requireFloat(m, 'quantize');
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
