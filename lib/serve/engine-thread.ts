/**
 * The worker-thread side of WorkerEngine (lib/serve/worker-engine.ts): loads
 * the model named by workerData.spec, then serves open / close / step
 * messages in order. A step is one synchronous forwardBatch (row-invariant,
 * native calls on the pool without a thread hop per op); its logits go back
 * as a transferred buffer.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { pathToFileURL } from 'node:url';
import { QuantkitError } from '../errors.js';
import { DecoderLM } from '../models/causal-lm.js';
import { quantizeModel } from '../nn/quantize-model.js';
import { Scratch } from '../nn/scratch.js';
import { loadCliModel } from '../cli/load.js';
import { requireFloat } from '../cli/weights.js';
import { CachePool, type EngineItem, engineInfo, joinRows } from './engine.js';
import type { EngineModelSpec } from './worker-engine.js';

type Msg =
  | { type: 'open'; id: number; capacity: number }
  | { type: 'close'; id: number; keep: boolean }
  | { type: 'release'; capacity: number }
  | { type: 'step'; seq: number; items: EngineItem[] };

async function load(spec: EngineModelSpec): Promise<DecoderLM> {
  let model: unknown;
  if ('path' in spec) {
    const m = loadCliModel(spec.path, spec.tokenizer, undefined, { mmap: spec.mmap ?? true });
    model = m.model;
    if (spec.quantize) {
      requireFloat(m, '--weights');
      quantizeModel(model as DecoderLM, spec.quantize);
    }
  } else {
    const url = /^[a-z]+:/.test(spec.module) ? spec.module : pathToFileURL(spec.module).href;
    const mod = (await import(url)) as Record<string, unknown>;
    const f = mod[spec.export ?? 'default'];
    if (typeof f !== 'function') throw new QuantkitError('ERR_NOT_FOUND', `${spec.module} has no function export '${spec.export ?? 'default'}'`);
    model = await (f as (args: unknown) => unknown)(spec.args);
  }
  if (!(model instanceof DecoderLM)) throw new QuantkitError('ERR_UNSUPPORTED', 'the engine runs decoder models (Llama, GPT-2, OPT, CodeGen)');
  return model;
}

const port = parentPort!;
const errorOf = (e: unknown) => ({ message: e instanceof Error ? e.message : String(e), code: (e as { code?: unknown })?.code });

try {
  const model = await load((workerData as { spec: EngineModelSpec }).spec);
  const caches = new CachePool((capacity) => model.createCache(capacity));
  const scratch = new Scratch();
  port.on('message', (m: Msg) => {
    if (m.type === 'open') caches.open(m.id, m.capacity);
    else if (m.type === 'close') caches.close(m.id, m.keep);
    else if (m.type === 'release') caches.release(m.capacity);
    else {
      try {
        const out = model.forwardBatch(
          m.items.map((it) => ({ tokens: it.tokens, cache: caches.get(it.id), prompt: it.prompt })),
          { logits: 'last', scratch },
        );
        const logits = joinRows(out.map((t) => t.data));
        // the lm_head's output is this step's own array: hand its buffer over
        const whole = logits.byteOffset === 0 && logits.byteLength === logits.buffer.byteLength;
        const send = whole ? logits : logits.slice();
        port.postMessage({ type: 'logits', seq: m.seq, logits: send }, [send.buffer as ArrayBuffer]);
      } catch (e) {
        port.postMessage({ type: 'stepError', seq: m.seq, ...errorOf(e) });
      }
    }
  });
  port.postMessage({ type: 'ready', info: engineInfo(model) });
} catch (e) {
  port.postMessage({ type: 'loadError', ...errorOf(e) });
}
