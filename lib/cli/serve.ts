/**
 * `quantkit serve <model>`: the OpenAI-compatible server (lib/serve/server.ts)
 * on one model, until SIGTERM/SIGINT (then: stop accepting, finish what is
 * in flight within --grace seconds, exit 0).
 *
 * The model runs in a worker thread (WorkerEngine: whole batched steps
 * synchronously there, the HTTP event loop free here). --workers N runs N
 * processes on one port through node:cluster (the primary only forks,
 * forwards the signal and waits); each loads its own copy of the model.
 * Binds 127.0.0.1 unless --host says otherwise.
 */
import cluster from 'node:cluster';
import * as path from 'node:path';
import { QuantkitError } from '../errors.js';
import * as fs from 'node:fs';
import type { WeightsFormat } from '../nn/quantize-model.js';
import { loadEncoderSync } from '../models/load-encoder.js';
import { quantizeModel } from '../nn/quantize-model.js';
import { encoderEmbedder } from '../serve/embedder.js';
import { QuantkitServer, type ServedModel } from '../serve/server.js';
import { isEncoderFolder } from './inspect.js';
import { WorkerEngine } from '../serve/worker-engine.js';
import type { CliIO } from './io.js';
import { cliTokenizer } from './load.js';
import { type QuantFlags, quantOptions } from './weights.js';

export interface ServeFlags extends QuantFlags {
  weights?: WeightsFormat | 'fp32';
  host: string;
  port: number;
  apiKey?: string;
  workers: number;
  maxSequences: number;
  prefillChunk: number;
  kvBudgetMb: number;
  maxConcurrent: number;
  maxTokens: number;
  maxPromptTokens?: number;
  bodyLimit: number;
  grace: number;
  name?: string;
  tokenizer?: string;
}

/** Resolve when the process gets SIGTERM or SIGINT (the listeners are removed then). */
function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (sig: NodeJS.Signals) => {
      process.off('SIGTERM', on);
      process.off('SIGINT', on);
      resolve(sig);
    };
    process.on('SIGTERM', on);
    process.on('SIGINT', on);
  });
}

async function primary(io: CliIO, flags: ServeFlags): Promise<void> {
  io.err(`quantkit serve: starting ${flags.workers} workers (node:cluster, one port)\n`);
  for (let i = 0; i < flags.workers; i++) cluster.fork();
  let failed = false;
  const exited = new Promise<void>((resolve) => {
    let left = flags.workers;
    cluster.on('exit', (_w, code) => {
      if (code !== 0) failed = true;
      if (--left === 0) resolve();
    });
  });
  const sig = untilSignal();
  const first = await Promise.race([sig, exited.then(() => null)]);
  if (first !== null) for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
  await exited;
  if (failed && first === null) throw new QuantkitError('ERR_NATIVE', 'every worker exited; see their messages above');
}

export async function serveCommand(io: CliIO, modelPath: string, flags: ServeFlags): Promise<void> {
  if (flags.calib !== undefined) throw new QuantkitError('ERR_UNSUPPORTED', 'serve does not calibrate: quantize with --calib first (quantkit quantize ... --out DIR), then serve DIR');
  if (!fs.existsSync(modelPath)) throw new QuantkitError('ERR_NOT_FOUND', `model not found: ${modelPath}`);
  if (flags.workers > 1 && cluster.isPrimary) return primary(io, flags);
  const apiKey = flags.apiKey ?? (process.env.QUANTKIT_API_KEY || undefined);
  const name = flags.name ?? path.basename(path.resolve(modelPath));
  const quantize = flags.weights !== undefined && flags.weights !== 'fp32' ? quantOptions(flags.weights, flags) : undefined;
  let load: Promise<ServedModel>;
  if (fs.statSync(modelPath).isDirectory() && isEncoderFolder(modelPath)) {
    // an encoder (DistilBERT): /v1/embeddings, in this thread (its forwards are async)
    load = (async () => {
      const enc = loadEncoderSync(modelPath, { mmap: true });
      if (quantize) quantizeModel(enc.model, quantize);
      return { embedder: encoderEmbedder(enc), name };
    })();
  } else {
    // the model loads (and is quantized) in the engine's worker thread while
    // the server already answers: /health says 503 until it is ready
    load = WorkerEngine.start({ path: modelPath, ...(flags.tokenizer ? { tokenizer: flags.tokenizer } : {}), ...(quantize ? { quantize } : {}) }).then(async (engine) => {
      const tokenizer = cliTokenizer(modelPath, flags.tokenizer, engine.info.vocabSize);
      if (!tokenizer) {
        await engine.dispose();
        throw new QuantkitError('ERR_NOT_FOUND', `no tokenizer found for ${modelPath}; pass --tokenizer <file>`);
      }
      return { model: engine, tokenizer, name };
    });
  }
  const server = new QuantkitServer(load, {
    ...(apiKey ? { apiKey } : {}),
    maxConcurrent: flags.maxConcurrent,
    maxTokens: flags.maxTokens,
    bodyLimit: flags.bodyLimit,
    ...(flags.maxPromptTokens !== undefined ? { maxPromptTokens: flags.maxPromptTokens } : {}),
    scheduler: { maxSequences: flags.maxSequences, prefillChunk: flags.prefillChunk, kvBudgetBytes: flags.kvBudgetMb * 2 ** 20 },
  });
  const sig = untilSignal();
  const addr = await server.listen(flags.host, flags.port);
  const who = cluster.isWorker ? ` (worker ${cluster.worker?.id})` : '';
  io.err(`quantkit serve: loading ${name}; listening on ${addr}${apiKey ? ' (API key required)' : ''}${who}\n`);
  const loaded = load.then(
    () => 'ready' as const,
    (e: unknown) => e,
  );
  const first = await Promise.race([sig, loaded]);
  if (first === 'ready') io.err(`quantkit serve: ${name} ready on ${addr}${who}\n`);
  else if (first !== 'SIGTERM' && first !== 'SIGINT') {
    await server.shutdown(0);
    if (cluster.isWorker) cluster.worker?.disconnect();
    throw first;
  }
  if (first === 'ready') await sig;
  io.err('quantkit serve: shutting down\n');
  await server.shutdown(flags.grace * 1000); // disposes the engine too
  // a cluster worker's IPC channel would keep it alive: let go of it
  if (cluster.isWorker) cluster.worker?.disconnect();
}
