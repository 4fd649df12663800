/**
 * A BatchEngine whose model lives in a worker thread (lib/serve/engine-thread.ts).
 * The thread runs each step as one synchronous batched forward, so a step
 * costs no thread hop per native call, and this thread (the HTTP server's)
 * only ever waits for one message per step. The model is loaded in the
 * thread from a spec (a path as the CLI takes it, or a module exporting a
 * factory), since a model object cannot cross threads.
 */
import { Worker } from 'node:worker_threads';
import { QuantkitError } from '../errors.js';
import type { QuantizeModelOptions } from '../nn/quantize-model.js';
import type { BatchEngine, EngineInfo, EngineItem } from './engine.js';

export type EngineModelSpec =
  /**
   * A model path as the CLI takes it (HF folder, quantkit checkpoint,
   * llama2.c .bin), quantized after loading when asked; safetensors files
   * are mapped, not read, unless mmap is false.
   */
  | { readonly path: string; readonly tokenizer?: string; readonly quantize?: QuantizeModelOptions; readonly mmap?: boolean }
  /** A module (path or URL) exporting a factory (args) => DecoderLM | Promise<DecoderLM>. */
  | { readonly module: string; readonly export?: string; readonly args?: unknown };

/** A worker running engine-thread from the built .js, or from the .ts sources through tsx (tests, development). */
function spawn(spec: EngineModelSpec): Worker {
  const here = import.meta.url;
  if (here.endsWith('.ts')) {
    return new Worker(new URL('./dev-worker.mjs', here), { workerData: { spec, entry: new URL('./engine-thread.ts', here).href } });
  }
  return new Worker(new URL('./engine-thread.js', here), { workerData: { spec } });
}

type Reply =
  | { type: 'ready'; info: EngineInfo }
  | { type: 'loadError'; message: string; code?: string }
  | { type: 'logits'; seq: number; logits: Float32Array }
  | { type: 'stepError'; seq: number; message: string; code?: string };

export class WorkerEngine implements BatchEngine {
  readonly info: EngineInfo;
  readonly #worker: Worker;
  #seq = 0;
  #pending: { seq: number; resolve: (l: Float32Array) => void; reject: (e: unknown) => void } | null = null;
  #dead: Error | null = null;
  /** The last step's logits: the caller's until the next step(), which hands the buffer back to the thread. */
  #last: Float32Array | null = null;

  private constructor(worker: Worker, info: EngineInfo) {
    this.#worker = worker;
    this.info = info;
    worker.on('message', (m: Reply) => {
      const p = this.#pending;
      if (!p || (m.type !== 'logits' && m.type !== 'stepError') || m.seq !== p.seq) return;
      this.#pending = null;
      if (m.type === 'logits') p.resolve((this.#last = m.logits));
      else p.reject(toError(m));
    });
    const die = (e: Error) => {
      this.#dead ??= e;
      this.#pending?.reject(this.#dead);
      this.#pending = null;
    };
    worker.on('error', (e) => die(new QuantkitError('ERR_NATIVE', `the engine thread failed: ${e.message}`, { cause: e })));
    worker.on('exit', (code) => die(new QuantkitError('ERR_CLOSED', `the engine thread exited (code ${code})`)));
  }

  /** Start a worker thread and load `spec` in it; resolves once the model is loaded. */
  static start(spec: EngineModelSpec): Promise<WorkerEngine> {
    const worker = spawn(spec);
    return new Promise((resolve, reject) => {
      const onMessage = (m: Reply) => {
        if (m.type === 'ready') {
          cleanup();
          resolve(new WorkerEngine(worker, m.info));
        } else if (m.type === 'loadError') {
          cleanup();
          void worker.terminate();
          reject(toError(m));
        }
      };
      const onError = (e: Error) => {
        cleanup();
        reject(e);
      };
      const onExit = (code: number) => {
        cleanup();
        reject(new QuantkitError('ERR_NATIVE', `the engine thread exited (code ${code}) before loading the model`));
      };
      const cleanup = () => {
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
      };
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
    });
  }

  get failure(): Error | null {
    return this.#dead;
  }

  open(id: number, capacity: number): void {
    if (!this.#dead) this.#worker.postMessage({ type: 'open', id, capacity });
  }

  close(id: number, keep = false): void {
    if (!this.#dead) this.#worker.postMessage({ type: 'close', id, keep });
  }

  release(capacity: number): void {
    if (!this.#dead) this.#worker.postMessage({ type: 'release', capacity });
  }

  step(items: readonly EngineItem[]): Promise<Float32Array> {
    if (this.#dead) return Promise.reject(this.#dead);
    if (this.#pending) return Promise.reject(new QuantkitError('ERR_BUSY', 'WorkerEngine.step: a step is already running'));
    const seq = ++this.#seq;
    // (not if the caller moved its buffer elsewhere: a detached one cannot be sent)
    const recycle = this.#last !== null && this.#last.buffer.byteLength > 0 ? this.#last : null;
    this.#last = null;
    return new Promise((resolve, reject) => {
      this.#pending = { seq, resolve, reject };
      const msg = { type: 'step', seq, items: items.map((it) => ({ id: it.id, tokens: [...it.tokens], prompt: it.prompt })), ...(recycle ? { recycle } : {}) };
      this.#worker.postMessage(msg, recycle ? [recycle.buffer as ArrayBuffer] : []);
    });
  }

  async dispose(): Promise<void> {
    this.#dead ??= new QuantkitError('ERR_CLOSED', 'the engine was disposed');
    await this.#worker.terminate();
  }
}

function toError(m: { message: string; code?: string }): Error {
  const codes = new Set(['ERR_NONFINITE', 'ERR_UNSUPPORTED', 'ERR_BAD_FILE', 'ERR_BAD_CONFIG', 'ERR_NOT_FOUND', 'ERR_BUSY', 'ERR_NATIVE']);
  if (m.code && codes.has(m.code)) return new QuantkitError(m.code as 'ERR_NATIVE', m.message);
  return new Error(m.message);
}
