/**
 * `quantkit serve`: an OpenAI-compatible HTTP server over a BatchScheduler
 * (continuous batching), on fastify.
 *
 *   POST /v1/completions  prompt, max_tokens, temperature, top_p, top_k,
 *                         seed, stop, stream (Server-Sent Events: one
 *                         `data: {chunk}` per text piece, then `data: [DONE]`)
 *   POST /v1/embeddings   input (a string or up to 2048), encoding_format
 *                         float | base64: an encoder's mean-pooled vectors
 *   GET  /v1/models       the one model served
 *   GET  /health          200 once the weights are loaded, 503 before
 *   GET  /metrics         Prometheus text (lib/serve/metrics.ts)
 *
 * Errors are OpenAI-shaped: { error: { message, type, param, code } } with
 * 400 (malformed JSON, wrong types, values out of range, a prompt beyond the
 * limits), 401 (API key), 413 (body too large), 429 (too many requests in
 * flight, or the batch queue is full), 503 (loading, shutting down).
 * A client that disconnects cancels its generation. shutdown() stops taking
 * requests, lets those in flight finish within a grace period, then cancels
 * what is left. The server keeps no state between requests, so replicas
 * scale out behind any load balancer.
 */
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { QuantkitError } from '../errors.js';
import { promptIds } from '../eval/generate.js';
import type { DecoderLM } from '../models/causal-lm.js';
import type { Tokenizer } from '../tokenizers/types.js';
import { ServeMetrics } from './metrics.js';
import type { Embedder } from './embedder.js';
import type { BatchEngine } from './engine.js';
import { BatchScheduler, type SchedulerOptions, type SequenceFinish } from './scheduler.js';
import { CompletionText } from './text.js';

export type ServedModel = ServedDecoder | ServedEncoder;

/** A decoder: /v1/completions. */
export interface ServedDecoder {
  /** The model (run in this thread), or an engine (WorkerEngine: in a worker thread; the server disposes it at shutdown). */
  readonly model: DecoderLM | BatchEngine;
  readonly tokenizer: Tokenizer;
  /** The id /v1/models reports and requests may name. */
  readonly name: string;
}

/** An encoder: /v1/embeddings (encoderEmbedder(loadEncoderSync(folder))). */
export interface ServedEncoder {
  readonly embedder: Embedder;
  readonly name: string;
}

export interface ServeOptions {
  /** Bearer token every request must carry (none: open). */
  readonly apiKey?: string;
  /** Request body bytes at most (default 1 MiB). */
  readonly bodyLimit?: number;
  /** Prompt tokens at most (default: the model's context - 1). */
  readonly maxPromptTokens?: number;
  /** Largest max_tokens a request may ask (default 4096, and the context). */
  readonly maxTokens?: number;
  /** Completion requests in flight at most, running or queued (default 64); beyond: 429. */
  readonly maxConcurrent?: number;
  readonly scheduler?: SchedulerOptions;
  /** fastify's logger (default off). */
  readonly logger?: boolean;
}

interface CompletionBody {
  model?: string;
  prompt: string | string[] | number[];
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  top_k?: number;
  seed?: number;
  stop?: string | string[] | null;
  stream?: boolean;
  n?: number;
  user?: string;
}

const embeddingSchema = {
  type: 'object',
  required: ['input'],
  additionalProperties: false,
  properties: {
    model: { type: 'string' },
    input: { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' }, minItems: 1, maxItems: 2048 }] },
    encoding_format: { type: 'string', enum: ['float', 'base64'] },
    user: { type: 'string' },
  },
} as const;

interface EmbeddingBody {
  model?: string;
  input: string | string[];
  encoding_format?: 'float' | 'base64';
  user?: string;
}

const completionSchema = {
  type: 'object',
  required: ['prompt'],
  additionalProperties: false,
  properties: {
    model: { type: 'string' },
    prompt: {
      anyOf: [
        { type: 'string' },
        { type: 'array', items: { type: 'string' }, minItems: 1, maxItems: 1 },
        { type: 'array', items: { type: 'integer', minimum: 0 }, minItems: 1 },
      ],
    },
    max_tokens: { type: 'integer', minimum: 1 },
    temperature: { type: 'number', minimum: 0, maximum: 2 },
    top_p: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
    top_k: { type: 'integer', minimum: 0 },
    seed: { type: 'integer', minimum: 0, maximum: 4294967295 },
    stop: { anyOf: [{ type: 'string', minLength: 1 }, { type: 'array', items: { type: 'string', minLength: 1 }, maxItems: 4 }, { type: 'null' }] },
    stream: { type: 'boolean' },
    n: { type: 'integer', minimum: 1, maximum: 1 },
    user: { type: 'string' },
  },
} as const;

/** An HTTP error with an OpenAI-style body. */
class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type = 'invalid_request_error',
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }
}

const errorBody = (message: string, type: string, param: string | null = null, code: string | null = null) => ({ error: { message, type, param, code } });

/** Constant-time comparison of a presented key with the configured one (hashed first: no length leak). */
function keyMatches(presented: string, expected: Buffer): boolean {
  const h = createHash('sha256').update(presented).digest();
  return timingSafeEqual(h, expected);
}

export class QuantkitServer {
  readonly app: FastifyInstance;
  readonly metrics = new ServeMetrics();
  #served: ServedModel | null = null;
  #scheduler: BatchScheduler | null = null;
  #loadError: unknown = null;
  #inFlight = 0;
  #closing = false;
  readonly #aborts = new Set<AbortController>();
  readonly #options: ServeOptions;
  readonly #keyHash: Buffer | null;

  /** `load`: the model (or a promise of it: /health says 503 until it resolves). */
  constructor(load: ServedModel | Promise<ServedModel>, options: ServeOptions = {}) {
    this.#options = options;
    this.#keyHash = options.apiKey ? createHash('sha256').update(options.apiKey).digest() : null;
    this.app = Fastify({
      logger: options.logger ?? false,
      bodyLimit: options.bodyLimit ?? 1 << 20,
      // wrong types are errors, not coerced ("5" is not an integer here)
      ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
      forceCloseConnections: 'idle',
    });
    Promise.resolve(load).then(
      (m) => this.#ready(m),
      (e) => (this.#loadError = e),
    );
    this.#routes();
  }

  /** The scheduler, once the model is loaded. */
  get scheduler(): BatchScheduler | null {
    return this.#scheduler;
  }

  /** Listen on host:port (port 0: any free port); resolves to the address. */
  async listen(host = '127.0.0.1', port = 8080): Promise<string> {
    return this.app.listen({ host, port });
  }

  /**
   * Stop accepting requests and let those in flight finish; after `graceMs`
   * cancel what is still generating (those responses end early, with
   * finish_reason 'length'). Resolves once the server is closed.
   */
  async shutdown(graceMs = 30_000): Promise<void> {
    this.#closing = true;
    const timer = setTimeout(() => {
      for (const ac of this.#aborts) ac.abort();
    }, graceMs);
    // keep-alive connections whose last response ended after close() began
    // would otherwise hold the server open until the client drops them
    const idle = setInterval(() => this.app.server.closeIdleConnections(), 50);
    try {
      await this.app.close();
      await this.#scheduler?.close();
      await this.#scheduler?.engine.dispose();
    } finally {
      clearTimeout(timer);
      clearInterval(idle);
    }
  }

  #ready(m: ServedModel): void {
    this.#served = m;
    if ('embedder' in m) return;
    const s = new BatchScheduler(m.model, this.#options.scheduler);
    s.onStep = (info) => {
      this.metrics.batchSize.observe(info.sequences);
      this.metrics.stepSeconds.observe(info.ms / 1000);
    };
    this.#scheduler = s;
  }

  #routes(): void {
    const app = this.app;
    app.addHook('onRequest', async (req: FastifyRequest) => {
      if (this.#closing) throw new ApiError(503, 'the server is shutting down', 'server_error');
      if (this.#keyHash && req.url !== '/health') {
        const h = req.headers.authorization;
        const m = typeof h === 'string' ? /^Bearer (.+)$/.exec(h) : null;
        if (!m || !keyMatches(m[1]!, this.#keyHash)) throw new ApiError(401, 'missing or wrong API key (send Authorization: Bearer <key>)', 'invalid_request_error', null, 'invalid_api_key');
      }
    });
    app.addHook('onResponse', async (req, reply) => {
      this.metrics.requests.inc({ route: req.routeOptions.url ?? 'unknown', status: String(reply.statusCode) });
    });
    app.setErrorHandler((err: Error & { statusCode?: number; validation?: unknown; code?: string }, _req, reply) => {
      if (err instanceof ApiError) return reply.status(err.status).send(errorBody(err.message, err.type, err.param, err.code));
      if (err.validation) return reply.status(400).send(errorBody(`invalid request: ${err.message}`, 'invalid_request_error'));
      const status = err.statusCode ?? 500;
      if (status === 413) return reply.status(413).send(errorBody(`the request body is larger than ${this.#options.bodyLimit ?? 1 << 20} bytes`, 'invalid_request_error', null, 'request_too_large'));
      if (status >= 400 && status < 500) return reply.status(status).send(errorBody(err.message, 'invalid_request_error'));
      this.app.log.error(err);
      return reply.status(500).send(errorBody('internal error', 'server_error'));
    });
    app.setNotFoundHandler((req, reply) => reply.status(404).send(errorBody(`no route ${req.method} ${req.url}`, 'invalid_request_error')));

    app.get('/health', async (_req, reply) => {
      if (this.#loadError) return reply.status(503).send({ status: 'error', message: String((this.#loadError as Error).message ?? this.#loadError) });
      if (!this.#served) return reply.status(503).send({ status: 'loading' });
      const failure = this.#scheduler?.engine.failure;
      if (failure) return reply.status(503).send({ status: 'error', message: failure.message });
      return { status: 'ok', model: this.#served.name };
    });
    app.get('/v1/models', async () => {
      const m = this.#requireModel();
      return { object: 'list', data: [{ id: m.name, object: 'model', created: 0, owned_by: 'quantkit' }] };
    });
    app.get('/metrics', async (_req, reply) => {
      const s = this.#scheduler;
      this.metrics.queueDepth.set(s?.queued ?? 0);
      this.metrics.activeSequences.set(s?.active ?? 0);
      reply.header('content-type', this.metrics.registry.contentType);
      return this.metrics.registry.metrics();
    });
    app.post('/v1/completions', { schema: { body: completionSchema } }, (req, reply) => this.#completion(req as FastifyRequest<{ Body: CompletionBody }>, reply));
    app.post('/v1/embeddings', { schema: { body: embeddingSchema } }, (req) => this.#embeddings(req as FastifyRequest<{ Body: EmbeddingBody }>));
  }

  #requireModel(): ServedModel {
    if (this.#loadError) throw new ApiError(503, `the model failed to load: ${(this.#loadError as Error).message ?? this.#loadError}`, 'server_error');
    if (!this.#served) throw new ApiError(503, 'the model is still loading', 'server_error');
    return this.#served;
  }

  /** The served model, checked against the request's `model` and the endpoint's kind. */
  #modelFor(requested: string | undefined, kind: 'decoder' | 'encoder'): ServedModel {
    const served = this.#requireModel();
    if (requested !== undefined && requested !== served.name) throw new ApiError(404, `model '${requested}' is not served here (this server serves '${served.name}')`, 'invalid_request_error', 'model', 'model_not_found');
    const isEncoder = 'embedder' in served;
    if (kind === 'encoder' && !isEncoder) throw new ApiError(400, `'${served.name}' is a text generation model: use /v1/completions`, 'invalid_request_error', 'model');
    if (kind === 'decoder' && isEncoder) throw new ApiError(400, `'${served.name}' is an embedding model: use /v1/embeddings`, 'invalid_request_error', 'model');
    return served;
  }

  async #embeddings(req: FastifyRequest<{ Body: EmbeddingBody }>): Promise<unknown> {
    const b = req.body;
    const served = this.#modelFor(b.model, 'encoder') as ServedEncoder;
    const texts = typeof b.input === 'string' ? [b.input] : b.input;
    if (this.#inFlight >= (this.#options.maxConcurrent ?? 64)) throw new ApiError(429, 'too many requests in flight; retry later', 'rate_limit_error', null, 'rate_limit_exceeded');
    this.#inFlight++;
    try {
      const { vectors, tokens } = await served.embedder.embed(texts);
      this.metrics.promptTokens.inc(tokens);
      const data = vectors.map((v, index) => ({
        object: 'embedding',
        index,
        // base64: the f32 values' little-endian bytes, as OpenAI sends them
        embedding: b.encoding_format === 'base64' ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') : Array.from(v),
      }));
      return { object: 'list', data, model: served.name, usage: { prompt_tokens: tokens, total_tokens: tokens } };
    } finally {
      this.#inFlight--;
    }
  }

  async #completion(req: FastifyRequest<{ Body: CompletionBody }>, reply: FastifyReply): Promise<unknown> {
    const b = req.body;
    const served = this.#modelFor(b.model, 'decoder') as ServedDecoder;
    const sched = this.#scheduler!;
    const { tokenizer } = served;
    const info = sched.info;
    const ctx = info.maxPositions;
    let ids: number[];
    if (typeof b.prompt === 'string' || typeof b.prompt[0] === 'string') {
      const text = typeof b.prompt === 'string' ? b.prompt : (b.prompt[0] as string);
      ids = promptIds({ config: info }, tokenizer, text, true);
    } else {
      ids = b.prompt as number[];
      const V = info.vocabSize;
      const bad = ids.findIndex((t) => t >= V);
      if (bad >= 0) throw new ApiError(400, `prompt token ${ids[bad]} at index ${bad} is outside the vocabulary (${V} tokens)`, 'invalid_request_error', 'prompt');
    }
    const maxPrompt = Math.min(this.#options.maxPromptTokens ?? ctx - 1, ctx - 1);
    if (ids.length > maxPrompt) throw new ApiError(400, `the prompt is ${ids.length} tokens; at most ${maxPrompt} are allowed`, 'invalid_request_error', 'prompt', 'context_length_exceeded');
    const maxTokensCap = Math.min(this.#options.maxTokens ?? 4096, ctx - ids.length);
    const maxTokens = b.max_tokens ?? Math.min(16, maxTokensCap); // OpenAI's default is 16
    if (maxTokens > maxTokensCap) throw new ApiError(400, `max_tokens is ${maxTokens}; at most ${maxTokensCap} here (the prompt takes ${ids.length} of ${ctx} positions)`, 'invalid_request_error', 'max_tokens');
    if (this.#inFlight >= (this.#options.maxConcurrent ?? 64)) throw new ApiError(429, 'too many requests in flight; retry later', 'rate_limit_error', null, 'rate_limit_exceeded');
    const stops = b.stop === undefined || b.stop === null ? [] : typeof b.stop === 'string' ? [b.stop] : b.stop;
    const ac = new AbortController();
    const t0 = performance.now();
    let handle;
    try {
      handle = sched.submit({
        prompt: ids,
        maxTokens,
        temperature: b.temperature ?? 1,
        topP: b.top_p ?? 1,
        topK: b.top_k ?? 0,
        seed: b.seed ?? 0,
        eosId: info.eosId ?? tokenizer.eosId ?? null,
        signal: ac.signal,
      });
    } catch (e) {
      if (e instanceof QuantkitError && e.code === 'ERR_OVERLOADED') throw new ApiError(429, e.message, 'rate_limit_error', null, 'rate_limit_exceeded');
      if (e instanceof QuantkitError && (e.code === 'ERR_TOO_LARGE' || e.code === 'ERR_CLOSED')) throw new ApiError(e.code === 'ERR_CLOSED' ? 503 : 400, e.message, 'invalid_request_error');
      throw e;
    }
    this.#inFlight++;
    this.#aborts.add(ac);
    this.metrics.promptTokens.inc(ids.length);
    // the client going away cancels the generation
    const onClose = () => {
      if (!reply.raw.writableFinished) ac.abort();
    };
    reply.raw.on('close', onClose);
    const id = `cmpl-${randomUUID()}`;
    const created = Math.floor(Date.now() / 1000);
    const text = new CompletionText(tokenizer, ids, stops);
    const finishReason = (f: SequenceFinish) => (text.stopped || f === 'eos' ? 'stop' : 'length');
    let generated = 0;
    let last = -1;
    const onToken = () => {
      const now = performance.now();
      if (last < 0) this.metrics.ttft.observe((now - t0) / 1000);
      else this.metrics.itl.observe((now - last) / 1000);
      last = now;
      generated++;
      this.metrics.generatedTokens.inc();
    };
    const done = () => {
      this.#inFlight--;
      this.#aborts.delete(ac);
    };
    const chunk = (t: string, finish: string | null) => ({ id, object: 'text_completion', created, model: served.name, choices: [{ text: t, index: 0, logprobs: null, finish_reason: finish }] });
    const usage = () => ({ prompt_tokens: ids.length, completion_tokens: generated, total_tokens: ids.length + generated });

    if (!b.stream) {
      try {
        let out = '';
        for await (const tok of handle) {
          onToken();
          out += text.push(tok);
          if (text.stopped) break; // return() cancels the rest
        }
        const f = await handle.finish;
        out += text.flush();
        if (f === 'error') throw new ApiError(500, 'generation failed', 'server_error');
        return { id, object: 'text_completion', created, model: served.name, choices: [{ text: out, index: 0, logprobs: null, finish_reason: finishReason(f) }], usage: usage() };
      } finally {
        done();
      }
    }

    // Server-Sent Events, as OpenAI's clients parse them
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    // a client that left gets nothing more (its generation is already cancelled)
    const send = (obj: unknown) => void (res.destroyed || res.write(`data: ${JSON.stringify(obj)}\n\n`));
    try {
      for await (const tok of handle) {
        onToken();
        const t = text.push(tok);
        if (t) send(chunk(t, null));
        if (text.stopped) break;
      }
      const f = await handle.finish;
      const tail = text.flush();
      if (f === 'error') send(errorBody('generation failed', 'server_error'));
      else send(chunk(tail, finishReason(f)));
      if (!res.destroyed) res.write('data: [DONE]\n\n');
    } finally {
      done();
      if (!res.destroyed) res.end();
    }
    return reply;
  }
}
