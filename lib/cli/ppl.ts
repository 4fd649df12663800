/** `quantkit ppl <model> --text <file>`: sliding-window perplexity (see lib/eval/perplexity.ts). */
import { perplexity } from '../eval/perplexity.js';
import type { WeightsFormat } from '../nn/quantize-model.js';
import { type CliIO, printJson, progressBar } from './io.js';
import { contextLength, loadCliModel, readTextFile, requireTokenizer, tokenizeText } from './load.js';
import { type QuantFlags, quantLabel, quantOptions, readCalibration, quantizeWithProgress, requireFloat } from './weights.js';

export interface PplFlags extends QuantFlags {
  text: string;
  weights?: WeightsFormat | 'fp32';
  context?: number;
  stride?: number;
  maxTokens: number;
  tokenizer?: string;
  json?: boolean;
}

export function pplCommand(io: CliIO, modelPath: string, flags: PplFlags): void {
  const text = readTextFile(flags.text);
  const m = loadCliModel(modelPath, flags.tokenizer, io);
  const tokenizer = requireTokenizer(m, modelPath);
  let label = m.source === 'quantkit' ? 'quantkit checkpoint' : 'fp32';
  if (flags.weights !== undefined && flags.weights !== 'fp32') {
    requireFloat(m, '--weights');
    const o = quantOptions(flags.weights, flags, readCalibration(flags, m, flags.text));
    quantizeWithProgress(io, m.model, o);
    label = quantLabel(o);
  }
  const tokens = tokenizeText(tokenizer, text, flags.maxTokens);
  const context = contextLength(flags.context, m.model.config.maxPositions);
  const bar = progressBar(io, 'ppl', 1);
  let r;
  try {
    r = perplexity(m.model, tokens, { context, stride: flags.stride, onProgress: (d, t) => bar.update(d, t) });
  } finally {
    bar.stop();
  }
  if (flags.json) return printJson(io, { model: modelPath, weights: label, text: flags.text, context, stride: flags.stride ?? context, ...r });
  io.out(`${label}: perplexity ${r.ppl.toFixed(4)} (mean NLL ${r.nll.toFixed(5)} nats over ${r.tokens} tokens, context ${context})\n`);
}
