/**
 * `quantkit serve` (lib/serve/server.ts) over HTTP on 127.0.0.1, with the
 * real `openai` client for the happy paths (its SSE parser reads our stream)
 * and raw fetch for the error paths: schema errors and malformed JSON give
 * 400 with an OpenAI-style body, a wrong key 401, a big body 413, overload
 * 429; a client that disconnects frees its slot; shutdown loses no
 * response in flight. Model: the real stories260K with its tokenizer.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { loadCliModel, requireTokenizer } from '../lib/cli/load.js';
import type { DecoderLM } from '../lib/models/causal-lm.js';
import { QuantkitServer, type ServedDecoder, type ServedModel, type ServeOptions } from '../lib/serve/server.js';
import { generateText } from '../lib/eval/generate.js';
import { WorkerEngine } from '../lib/serve/worker-engine.js';
import { fixture, requireFixtures } from './fixtures.js';

const present = requireFixtures('stories260K/config.json', 'stories260K/model.safetensors', 'stories260K/tok512.bin');

function served(): ServedModel {
  const m = loadCliModel(fixture('stories260K'), fixture('stories260K/tok512.bin'));
  return { model: m.model as DecoderLM, tokenizer: requireTokenizer(m, 'stories260K'), name: 'stories' };
}

async function start(options: ServeOptions = {}, model: ServedModel | Promise<ServedModel> = served()): Promise<{ server: QuantkitServer; url: string }> {
  const server = new QuantkitServer(model, options);
  const url = await server.listen('127.0.0.1', 0);
  return { server, url };
}

const post = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });

describe.skipIf(!present)('quantkit serve', () => {
  let server: QuantkitServer;
  let url: string;
  let client: OpenAI;
  beforeAll(async () => {
    ({ server, url } = await start({ apiKey: 'sekrit', bodyLimit: 4096, maxTokens: 100 }));
    client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'sekrit', maxRetries: 0 });
  });
  afterAll(async () => server.shutdown(1000));

  it('answers completions like generate(), streamed and not, through the openai client', async () => {
    const m = loadCliModel(fixture('stories260K'), fixture('stories260K/tok512.bin'));
    const want = await generateText(m.model, m.tokenizer!, 'Once upon a time', { maxNewTokens: 24, temperature: 0 });
    const r = await client.completions.create({ model: 'stories', prompt: 'Once upon a time', max_tokens: 24, temperature: 0 });
    expect(r.object).toBe('text_completion');
    expect(r.choices[0]!.text).toBe(want.text);
    expect(r.choices[0]!.finish_reason).toBe(want.finishReason === 'length' ? 'length' : 'stop');
    expect(r.usage).toEqual({ prompt_tokens: 5, completion_tokens: 24, total_tokens: 29 });
    const stream = await client.completions.create({ model: 'stories', prompt: 'Once upon a time', max_tokens: 24, temperature: 0, stream: true });
    let text = '';
    let finish: string | null = null;
    for await (const c of stream) {
      text += c.choices[0]!.text;
      finish = c.choices[0]!.finish_reason ?? finish;
    }
    expect(text).toBe(want.text);
    expect(finish).toBe('length');
    const models = await client.models.list();
    expect(models.data.map((d) => d.id)).toEqual(['stories']);
  });

  it('cuts stop strings and reproduces a seeded sample, alone or among concurrent requests', async () => {
    const base = await client.completions.create({ model: 'stories', prompt: 'Once upon a time', max_tokens: 30, temperature: 0 });
    const word = base.choices[0]!.text.split(' ').filter((w) => w.length > 3)[1]!;
    const cut = await client.completions.create({ model: 'stories', prompt: 'Once upon a time', max_tokens: 30, temperature: 0, stop: [word] });
    expect(cut.choices[0]!.text).toBe(base.choices[0]!.text.slice(0, base.choices[0]!.text.indexOf(word)));
    expect(cut.choices[0]!.finish_reason).toBe('stop');
    const req = { model: 'stories', prompt: 'The dog', max_tokens: 20, temperature: 0.8, top_p: 0.9, seed: 42, stream: false as const };
    const alone = (await client.completions.create(req)).choices[0]!.text;
    const many = await Promise.all(Array.from({ length: 8 }, (_, i) => client.completions.create(i === 5 ? req : { ...req, seed: i, prompt: `Tim ${i}` })));
    expect(many[5]!.choices[0]!.text).toBe(alone);
  });

  it('rejects bad requests with OpenAI-style errors', async () => {
    const auth = { authorization: 'Bearer sekrit' };
    const cases: [unknown, number, RegExp][] = [
      ['{"prompt": ', 400, /JSON/],
      [{ prompt: 'x', max_tokens: '5' }, 400, /max_tokens/],
      [{ prompt: 'x', temperature: -1 }, 400, /temperature/],
      [{ prompt: 5 }, 400, /prompt/],
      [{}, 400, /prompt/],
      [{ prompt: 'x', max_tokens: 101 }, 400, /max_tokens/],
      [{ prompt: 'x', bogus: 1 }, 400, /additional/],
      [{ prompt: [600] }, 400, /vocabulary/],
      [{ prompt: 'x', model: 'gpt-9' }, 404, /not served/],
      [{ prompt: 'x'.repeat(5000) }, 413, /larger/],
    ];
    for (const [body, status, msg] of cases) {
      const r = await post(url, body, auth);
      expect(r.status, JSON.stringify(body).slice(0, 40)).toBe(status);
      const j = (await r.json()) as { error: { message: string; type: string } };
      expect(j.error.message).toMatch(msg);
      expect(typeof j.error.type).toBe('string');
    }
    expect((await post(url, { prompt: 'x' })).status).toBe(401);
    expect((await post(url, { prompt: 'x' }, { authorization: 'Bearer wrong' })).status).toBe(401);
    expect((await fetch(`${url}/health`)).status).toBe(200); // health needs no key
    const metrics = await (await fetch(`${url}/metrics`, { headers: auth })).text();
    expect(metrics).toMatch(/quantkit_requests_total\{route="\/v1\/completions",status="400"\}/);
    expect(metrics).toMatch(/quantkit_time_to_first_token_seconds_bucket/);
  });

  it('a client that disconnects cancels its generation and frees the slot', async () => {
    const ac = new AbortController();
    const r = await post(url, { prompt: 'Once', max_tokens: 100, stream: true, temperature: 0 }, { authorization: 'Bearer sekrit' });
    const reader = r.body!.getReader();
    await reader.read();
    await reader.cancel();
    ac.abort();
    for (let i = 0; i < 100 && (server.scheduler!.active > 0 || server.scheduler!.queued > 0); i++) await new Promise((res) => setTimeout(res, 20));
    expect(server.scheduler!.active).toBe(0);
    expect(server.scheduler!.reservedBytes).toBe(0);
  });
});

describe.skipIf(!present)('quantkit serve: overload, loading, shutdown', () => {
  it('answers 429 beyond maxConcurrent, and never crashes', async () => {
    const { server, url } = await start({ maxConcurrent: 2 });
    const reqs = Array.from({ length: 6 }, () => post(url, { prompt: 'Once', max_tokens: 40, temperature: 0 }));
    const codes = (await Promise.all(reqs)).map((r) => r.status).sort();
    expect(codes.filter((c) => c === 200).length).toBeGreaterThanOrEqual(2);
    expect(codes.filter((c) => c === 429).length).toBeGreaterThan(0);
    expect(codes.every((c) => c === 200 || c === 429)).toBe(true);
    await server.shutdown(1000);
  });

  it('says 503 on /health until the model is loaded', async () => {
    let resolve!: (m: ServedModel) => void;
    const { server, url } = await start({}, new Promise<ServedModel>((r) => (resolve = r)));
    expect((await fetch(`${url}/health`)).status).toBe(503);
    expect((await post(url, { prompt: 'x' })).status).toBe(503);
    resolve(served());
    await new Promise((r) => setTimeout(r, 10));
    expect((await fetch(`${url}/health`)).status).toBe(200);
    await server.shutdown(1000);
  });

  it('says 503 on /health and 500 on completions once its engine thread is gone', async () => {
    const engine = await WorkerEngine.start({ path: fixture('stories260K'), tokenizer: fixture('stories260K/tok512.bin') });
    const { server, url } = await start({}, { model: engine, tokenizer: (served() as ServedDecoder).tokenizer, name: 'stories' });
    expect((await post(url, { prompt: 'Once', max_tokens: 3 })).status).toBe(200);
    await engine.dispose();
    const health = await fetch(`${url}/health`);
    expect(health.status).toBe(503);
    expect(((await health.json()) as { status: string }).status).toBe('error');
    const r = await post(url, { prompt: 'Once', max_tokens: 3 });
    expect(r.status).toBe(500);
    expect(((await r.json()) as { error: { type: string } }).error.type).toBe('server_error');
    await server.shutdown(1000);
  });

  it('shutdown lets in-flight responses finish whole', async () => {
    const { server, url } = await start();
    const inflight = [post(url, { prompt: 'Once', max_tokens: 60, temperature: 0 }), post(url, { prompt: 'Lily', max_tokens: 60, temperature: 0, stream: true })];
    await new Promise((r) => setTimeout(r, 30));
    const down = server.shutdown(20_000);
    const [a, b] = await Promise.all(inflight);
    expect(a.status).toBe(200);
    expect(((await a.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(60);
    const sse = await b.text();
    expect(sse.trim().endsWith('data: [DONE]')).toBe(true);
    await down;
    await expect(fetch(`${url}/health`)).rejects.toThrow();
  });
});
