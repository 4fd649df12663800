/**
 * `quantkit serve` under load, over HTTP on 127.0.0.1: the real server stack
 * (fastify, the BatchScheduler, the model in its WorkerEngine thread) on the
 * synthetic Llama of bench/e2e.ts (12 layers, hidden 768, vocab 32000),
 * per weight format. The synthetic model has no tokenizer, so prompts are
 * token-id arrays (as the completions API allows) and a stand-in tokenizer
 * prints ids as text.
 *
 *   1. correctness: the `openai` client, streaming and not, must get the
 *      same greedy text;
 *   2. N concurrent streams (openai client, SSE): aggregate tokens/s (all
 *      tokens over the wall time, prefill included) and its ratio to one
 *      stream, TTFT and inter-token latency p50/p99, errors, and the wall
 *      time of the same N requests run one after another;
 *   3. autocannon, non-streaming requests on N connections for --seconds:
 *      requests/s, latency p50/p99, non-2xx responses and errors.
 *
 *   npm run bench:setup && node --import tsx bench/serve.ts
 *     [--streams 1,4,8,16] [--configs int8,w8a8,int4-g32,w4a8] [--tokens 32]
 *     [--prompt 32] [--seconds 10] [--threads 1] [--layers 12] [--dim 768]
 */
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import OpenAI from 'openai';
import { isa, setThreads } from '../lib/index.js';
import { QuantkitServer } from '../lib/serve/server.js';
import { WorkerEngine } from '../lib/serve/worker-engine.js';
import type { StreamDecoder, Tokenizer } from '../lib/tokenizers/types.js';
import { cliOptions, median, percentile, printTable } from './common.js';
import { makePrompt } from './synthetic-llama.js';

const { opt, intOpt } = cliOptions(import.meta.url, { values: ['--streams', '--configs', '--tokens', '--prompt', '--seconds', '--threads', '--layers', '--dim'] });
const STREAMS = (opt('--streams') ?? '1,4,8,16').split(',').map(Number);
const CONFIGS = (opt('--configs') ?? 'int8,w8a8,int4-g32,w4a8').split(',');
const TOKENS = intOpt('--tokens', 32);
const PROMPT = intOpt('--prompt', 32);
const SECONDS = intOpt('--seconds', 10);
const THREADS = intOpt('--threads', 1);
const LAYERS = intOpt('--layers', 12);
const DIM = intOpt('--dim', 768);

/** Ids as text (" 123"): the synthetic model's stand-in tokenizer. */
const idTokenizer: Tokenizer = {
  vocabSize: 32000,
  bosId: 1,
  eosId: 2,
  encode: (text: string) => [...text].map((c) => 3 + (c.codePointAt(0)! % 31997)),
  decode: (ids: readonly number[]) => ids.map((i) => ` ${i}`).join(''),
  decodeStream: (): StreamDecoder => ({ push: (id: number) => ` ${id}`, flush: () => '' }),
} as unknown as Tokenizer;

interface Autocannon {
  (opts: Record<string, unknown>): Promise<{ requests: { average: number }; latency: { p50: number; p99: number }; non2xx: number; errors: number; timeouts: number }>;
}
async function loadAutocannon(): Promise<Autocannon> {
  const spec = 'autocannon'; // (a variable: resolved at run time from bench/node_modules)
  try {
    return ((await import(spec)) as { default: Autocannon }).default;
  } catch (e) {
    throw new Error(`autocannon is not installed: run 'npm run bench:setup' first (${(e as Error).message})`);
  }
}

const promptFor = (i: number) => makePrompt(PROMPT + 64).slice(i % 64, (i % 64) + PROMPT);

async function streams(client: OpenAI, n: number): Promise<{ tokS: number; ttft: number[]; itl: number[]; errors: number; wallMs: number }> {
  const ttft: number[] = [], itl: number[] = [];
  let tokens = 0, errors = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const start = performance.now();
      let last = -1;
      try {
        const s = await client.completions.create({ model: 'synthetic', prompt: promptFor(i), max_tokens: TOKENS, temperature: 0, stream: true });
        for await (const c of s) {
          if (!c.choices[0]?.text) continue;
          const now = performance.now();
          if (last < 0) ttft.push(now - start);
          else itl.push(now - last);
          last = now;
          tokens++;
        }
      } catch {
        errors++;
      }
    }),
  );
  const wallMs = performance.now() - t0;
  return { tokS: (tokens / wallMs) * 1000, ttft, itl, errors, wallMs };
}

async function main(): Promise<void> {
  setThreads(THREADS);
  const autocannon = await loadAutocannon();
  console.log(`# quantkit serve under load: ${LAYERS} layers, hidden ${DIM}, vocab 32000; prompt ${PROMPT} tokens, max_tokens ${TOKENS}, greedy; ${THREADS} thread(s), ISA ${isa()}; 127.0.0.1`);
  console.log(`# load average before: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  const streamRows: string[][] = [];
  const loadRows: string[][] = [];
  for (const variant of CONFIGS) {
    const engine = await WorkerEngine.start({ module: new URL('./synthetic-llama.ts', import.meta.url).href, export: 'makeVariantModel', args: { layers: LAYERS, dim: DIM, variant } });
    const server = new QuantkitServer({ model: engine, tokenizer: idTokenizer, name: 'synthetic' }, { maxConcurrent: 256, scheduler: { maxSequences: Math.max(...STREAMS), prefillChunk: 64 } });
    const url = await server.listen('127.0.0.1', 0);
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'none', maxRetries: 0 });
    // 1. correctness: streamed text == whole text
    const whole = (await client.completions.create({ model: 'synthetic', prompt: promptFor(0), max_tokens: 8, temperature: 0 })).choices[0]!.text;
    let streamed = '';
    for await (const c of await client.completions.create({ model: 'synthetic', prompt: promptFor(0), max_tokens: 8, temperature: 0, stream: true })) streamed += c.choices[0]!.text;
    if (streamed !== whole) throw new Error(`${variant}: streamed text '${streamed}' differs from the whole response '${whole}'`);
    // 2. concurrent streams
    let one = NaN;
    for (const n of STREAMS) {
      const r = await streams(client, n);
      if (n === 1) one = r.tokS;
      let serialMs = NaN;
      if (n > 1) {
        const t0 = performance.now();
        for (let i = 0; i < n; i++) await client.completions.create({ model: 'synthetic', prompt: promptFor(i), max_tokens: TOKENS, temperature: 0 });
        serialMs = performance.now() - t0;
      }
      streamRows.push([variant, String(n), r.tokS.toFixed(1), `${(r.tokS / one).toFixed(2)}x`, percentile(r.ttft, 50).toFixed(0), percentile(r.ttft, 99).toFixed(0), median(r.itl).toFixed(1), percentile(r.itl, 99).toFixed(1), String(r.errors), n > 1 ? (r.wallMs / serialMs).toFixed(2) : '-']);
      console.error(`  ${variant} x${n}: ${r.tokS.toFixed(1)} tok/s`);
    }
    // 3. autocannon: non-streaming requests, bounded in time
    for (const n of STREAMS) {
      const body = JSON.stringify({ model: 'synthetic', prompt: promptFor(n), max_tokens: TOKENS, temperature: 0 });
      const r = await autocannon({ url: `${url}/v1/completions`, method: 'POST', headers: { 'content-type': 'application/json' }, body, connections: n, duration: SECONDS });
      loadRows.push([variant, String(n), r.requests.average.toFixed(2), (r.requests.average * TOKENS).toFixed(0), String(r.latency.p50), String(r.latency.p99), String(r.non2xx), String(r.errors + r.timeouts)]);
    }
    await server.shutdown(5000);
  }
  console.log('\n## concurrent streams (openai client, SSE)');
  printTable(['format', 'streams', 'tok/s', 'vs 1 stream', 'TTFT p50 ms', 'TTFT p99 ms', 'ITL p50 ms', 'ITL p99 ms', 'errors', 'wall / serial'], streamRows);
  console.log(`\n## autocannon, ${SECONDS} s per row, non-streaming, max_tokens ${TOKENS}`);
  printTable(['format', 'connections', 'req/s', 'tok/s', 'latency p50 ms', 'latency p99 ms', 'non-2xx', 'errors'], loadRows);
  console.log(`# load average after: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
}

await main();
