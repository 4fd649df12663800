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
import { CachePool, type EngineItem, LogitsBuffer, engineInfo, joinRows } from './engine.js';
import type { EngineModelSpec } from './worker-engine.js';

type Msg =
  | { type: 'open'; id: number; capacity: number }
  | { type: 'close'; id: number; keep: boolean }
  | { type: 'release'; capacity: number }
  | { type: 'step'; seq: number; items: EngineItem[]; recycle?: Float32Array };

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
  // The logits go to the main thread as a transferred buffer, which comes
  // back with the next step (the caller's once it has sampled): one buffer
  // in steady decoding, not a new one per step.
  const logitsBuf = new LogitsBuffer();
  port.on('message', (m: Msg) => {
    if (m.type === 'open') caches.open(m.id, m.capacity);
    else if (m.type === 'close') caches.close(m.id, m.keep);
    else if (m.type === 'release') caches.release(m.capacity);
    else {
      try {
        if (m.recycle) logitsBuf.give(m.recycle);
        const buf = logitsBuf.take(m.items.length * model.config.vocabSize);
        const out = model.forwardBatch(
          m.items.map((it) => ({ tokens: it.tokens, cache: caches.get(it.id), prompt: it.prompt })),
          { logits: 'last', scratch, out: buf },
        );
        // the logits buffer itself when the rows are in item order (no
        // prompt chunk ahead of a decode row), else joinRows' own copy
        const logits = joinRows(out.map((t) => t.data));
        if (logits.buffer === buf.buffer) logitsBuf.drop();
        port.postMessage({ type: 'logits', seq: m.seq, logits }, [logits.buffer as ArrayBuffer]);
      } catch (e) {
        port.postMessage({ type: 'stepError', seq: m.seq, ...errorOf(e) });
      }
    }
  });
  port.postMessage({ type: 'ready', info: engineInfo(model) });
} catch (e) {
  port.postMessage({ type: 'loadError', ...errorOf(e) });
}
