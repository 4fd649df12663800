/** `quantkit generate <model>`: stream a completion to stdout. */
import { generate } from '../eval/generate.js';
import type { WeightsFormat } from '../nn/quantize-model.js';
import { type CliIO, printJson } from './io.js';
import { loadCliModel, requireTokenizer } from './load.js';
import { type QuantFlags, quantOptions, readCalibration, quantizeWithProgress, requireFloat } from './weights.js';

export interface GenerateFlags extends QuantFlags {
  prompt: string;
  maxNewTokens: number;
  weights?: WeightsFormat | 'fp32';
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
  stop?: string[];
  tokenizer?: string;
  json?: boolean;
}

export async function generateCommand(io: CliIO, modelPath: string, flags: GenerateFlags): Promise<void> {
  const m = loadCliModel(modelPath, flags.tokenizer, io);
  const tokenizer = requireTokenizer(m, modelPath);
  if (flags.weights !== undefined && flags.weights !== 'fp32') {
    requireFloat(m, '--weights');
    quantizeWithProgress(io, m.model, quantOptions(flags.weights, flags, readCalibration(flags, m)));
  }
  const opts = { maxNewTokens: flags.maxNewTokens, temperature: flags.temperature, topK: flags.topK, topP: flags.topP, seed: flags.seed, stop: flags.stop ?? [] };
  const it = generate(m.model, tokenizer, flags.prompt, opts);
  let text = '';
  const tokens: number[] = [];
  if (!flags.json) io.out(flags.prompt);
  for (;;) {
    const r = await it.next();
    if (r.done) {
      if (flags.json) printJson(io, { prompt: flags.prompt, text, tokens, finishReason: r.value });
      else io.out('\n');
      return;
    }
    text += r.value.text;
    tokens.push(r.value.token);
    if (!flags.json) io.out(r.value.text);
  }
}
