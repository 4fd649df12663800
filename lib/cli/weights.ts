/**
 * The --weights / --bits / --scheme / --group options shared by the
 * commands, turned into quantizeModel options.
 */
import * as path from 'node:path';
import { QuantkitError } from '../errors.js';
import type { Module } from '../nn/module.js';
import { type QuantizeModelOptions, type QuantizeModelSummary, type WeightsFormat, quantizeModel } from '../nn/quantize-model.js';
import { type CliIO, quantizeProgress } from './io.js';
import type { CalibrationData } from '../nn/calibrate.js';
import { DEFAULT_CALIBRATED, type QuantMethod } from '../nn/quantize-model.js';
import type { Tokenizer } from '../tokenizers/types.js';
import { type CliModel, readTextFile, tokenizeText } from './load.js';

export interface QuantFlags {
  scheme?: 'sym' | 'asym' | 'symmetric' | 'asymmetric';
  group?: number;
  granularity?: 'channel' | 'group' | 'tensor';
  exclude?: string[];
  groupFallback?: 'tail' | 'divisor' | 'channel' | 'keep' | 'error';
  activations?: 'none' | 'int8' | 'int8-prefill' | 'llm.int8';
  threshold?: number;
  /** --scale-dtype: f32 (default) or f16. */
  scaleDtype?: 'f32' | 'f16';
  /** --calib: calibration text file (GPTQ by default). */
  calib?: string;
  calibTokens?: number;
  /** --method: rtn, gptq, awq or awq+gptq (all but rtn need --calib). */
  method?: QuantMethod;
}

/**
 * The calibration tokens of --calib (undefined without it), read once per
 * command. `m` (the loaded causal LM, for its tokenizer) is needed, and
 * `evalText` (the file the command evaluates on, if any) must be another file.
 */
export function readCalibration(f: QuantFlags, m?: { tokenizer: Tokenizer | undefined }, evalText?: string): CalibrationData | undefined {
  if (f.calib === undefined) {
    if (f.method !== undefined && f.method !== 'rtn') throw new QuantkitError('ERR_UNSUPPORTED', `--method ${f.method} needs calibration text: pass --calib <file>`);
    return undefined;
  }
  if (m === undefined) throw new QuantkitError('ERR_UNSUPPORTED', '--calib: calibration runs causal language models (Llama, GPT-2, OPT, CodeGen)');
  if (evalText !== undefined && path.resolve(evalText) === path.resolve(f.calib)) {
    throw new QuantkitError('ERR_UNSUPPORTED', `--calib and --text name the same file (${f.calib}): calibrate on other text than you evaluate on`);
  }
  if (m.tokenizer === undefined) throw new QuantkitError('ERR_NOT_FOUND', '--calib needs the model\'s tokenizer, and none was found; pass --tokenizer <file>');
  const tokens = tokenizeText(m.tokenizer, readTextFile(f.calib), f.calibTokens ?? 4096);
  if (tokens.length < 2) throw new QuantkitError('ERR_UNSUPPORTED', `--calib ${f.calib}: the text gives ${tokens.length} token(s); calibration needs at least 2`);
  return { tokens };
}

/** The quantizeModel options of the flags, calibrated (GPTQ) when `calibration` is given (readCalibration). */
export function quantOptions(weights: WeightsFormat, f: QuantFlags, calibration?: CalibrationData): QuantizeModelOptions {
  return {
    ...(calibration ? { calibration } : {}),
    ...(f.method !== undefined ? { method: f.method } : {}),
    weights,
    ...(f.scheme !== undefined ? { scheme: f.scheme === 'asym' || f.scheme === 'asymmetric' ? 'asymmetric' : 'symmetric' } : {}),
    granularity: f.granularity ?? (weights === 'int8' && f.group === undefined ? 'channel' : 'group'),
    ...(f.granularity !== 'channel' && f.granularity !== 'tensor' && (weights === 'int4' || f.group !== undefined) ? { groupSize: f.group ?? 32 } : {}),
    ...(f.exclude !== undefined ? { exclude: f.exclude } : {}),
    ...(f.groupFallback !== undefined ? { groupFallback: f.groupFallback } : {}),
    ...(f.activations !== undefined ? { activations: f.activations } : {}),
    ...(f.threshold !== undefined ? { threshold: f.threshold } : {}),
    ...(f.scaleDtype !== undefined ? { scaleDtype: f.scaleDtype } : {}),
  };
}

/** A float model is needed to quantize (a quantkit checkpoint already is). */
export function requireFloat(m: CliModel, what: string): void {
  if (m.source === 'quantkit') {
    throw new QuantkitError('ERR_UNSUPPORTED', `${what} needs a float model; this is already a quantkit checkpoint (drop --weights, or pass the original model)`);
  }
}

/** "model.layers.0.mlp.down_proj (K = 172): g4" for each layer quantized with another format than asked. */
export function fallbackLines(summary: QuantizeModelSummary): string[] {
  const byName = new Map(summary.layers.map((l) => [l.name, l]));
  return summary.fallbacks.map((n) => {
    const l = byName.get(n)!;
    return `${n} (K = ${l.K}): ${l.granularity === 'group' ? `g${l.groupSize}` : `per-${l.granularity}`}`;
  });
}

/** Short label: "int8 sym per-channel", "int4 asym g32". */
export function quantLabel(o: QuantizeModelOptions): string {
  const scheme = o.scheme ?? (o.weights === 'int4' ? 'asymmetric' : 'symmetric'); // quantizeModel's defaults
  const s = scheme === 'asymmetric' || scheme === 'asym' ? 'asym' : 'sym';
  const int8 = o.weights === 'int4' ? ' W4A8' : ' W8A8';
  const act = o.activations === 'int8' ? int8 : o.activations === 'int8-prefill' ? `${int8} prompts` : o.activations === 'llm.int8' ? ' LLM.int8' : '';
  const method = o.method ?? (o.calibration !== undefined ? DEFAULT_CALIBRATED : 'rtn');
  const m = method === 'rtn' ? '' : ` ${method.toUpperCase()}`;
  return `${o.weights} ${s} ${o.granularity === 'group' ? `g${o.groupSize}` : `per-${o.granularity}`}${o.scaleDtype === 'f16' ? ' f16-scales' : ''}${act}${m}`;
}

/** quantizeModel with a layer-by-layer progress bar on a terminal. */
export function quantizeWithProgress(io: CliIO, model: Module, opts: QuantizeModelOptions): QuantizeModelSummary {
  const p = quantizeProgress(io);
  try {
    return quantizeModel(model, { ...opts, onProgress: p.onProgress });
  } finally {
    p.stop();
  }
}
