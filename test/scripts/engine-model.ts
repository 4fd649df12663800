/** A factory WorkerEngine tests load in the engine thread: scheduler.test.ts's tiny Llama, optionally quantized. */
import { quantizeModel, type QuantizeModelOptions } from '../../lib/nn/quantize-model.js';
import type { DecoderLM } from '../../lib/models/causal-lm.js';
import { llamaModel } from '../tiny-models.js';

export function makeModel(args: { q: QuantizeModelOptions | null; fail?: boolean }): DecoderLM {
  if (args.fail) throw new Error('factory failed on purpose');
  const m = llamaModel({ D: 64, F: 160, L: 2, nH: 4, nKv: 2, V: 96, P: 128, seed: 9 }) as DecoderLM;
  if (args.q) quantizeModel(m, args.q);
  return m;
}
