/**
 * `quantkit serve <model>`: the OpenAI-compatible server (lib/serve/server.ts)
 * on one model, until SIGTERM/SIGINT (then: stop accepting, finish what is
 * in flight within --grace seconds, exit 0).
 *
 * --workers N runs N processes on one port through node:cluster (the
 * primary only forks, forwards the signal and waits); each loads its own
 * copy of the model. Binds 127.0.0.1 unless --host says otherwise.
 */
import cluster from 'node:cluster';
import * as path from 'node:path';
import { QuantkitError } from '../errors.js';
import { DecoderLM } from '../models/causal-lm.js';
import type { WeightsFormat } from '../nn/quantize-model.js';
import { QuantkitServer } from '../serve/server.js';
import type { CliIO } from './io.js';
import { loadCliModel, requireTokenizer } from './load.js';
import { type QuantFlags, quantOptions, readCalibration, quantizeWithProgress, requireFloat } from './weights.js';

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
  if (flags.workers > 1 && cluster.isPrimary) return primary(io, flags);
  const apiKey = flags.apiKey ?? (process.env.QUANTKIT_API_KEY || undefined);
  const m = loadCliModel(modelPath, flags.tokenizer, io);
  if (!(m.model instanceof DecoderLM)) throw new QuantkitError('ERR_UNSUPPORTED', `serve runs decoder models (Llama, GPT-2, OPT, CodeGen); ${modelPath} is a ${m.model.constructor.name}`);
  const tokenizer = requireTokenizer(m, modelPath);
  if (flags.weights !== undefined && flags.weights !== 'fp32') {
    requireFloat(m, '--weights');
    quantizeWithProgress(io, m.model, quantOptions(flags.weights, flags, readCalibration(flags, m)));
  }
  const name = flags.name ?? path.basename(path.resolve(modelPath));
  const server = new QuantkitServer(
    { model: m.model, tokenizer, name },
    {
      ...(apiKey ? { apiKey } : {}),
      maxConcurrent: flags.maxConcurrent,
      maxTokens: flags.maxTokens,
      scheduler: { maxSequences: flags.maxSequences, prefillChunk: flags.prefillChunk, kvBudgetBytes: flags.kvBudgetMb * 2 ** 20 },
    },
  );
  const sig = untilSignal();
  const addr = await server.listen(flags.host, flags.port);
  io.err(`quantkit serve: ${name} on ${addr}${apiKey ? ' (API key required)' : ''}${cluster.isWorker ? ` (worker ${cluster.worker?.id})` : ''}\n`);
  await sig;
  io.err('quantkit serve: shutting down\n');
  await server.shutdown(flags.grace * 1000);
  // a cluster worker's IPC channel would keep it alive: let go of it
  if (cluster.isWorker) cluster.worker?.disconnect();
}
