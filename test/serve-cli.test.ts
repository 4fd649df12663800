/**
 * `quantkit serve` as a process: it binds 127.0.0.1, serves with --workers
 * (node:cluster, one port), and on SIGTERM finishes the request in flight
 * and exits 0.
 */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { CLI_ENTRY, ROOT, runCli } from './cli-run.js';
import { fixture, requireFixtures } from './fixtures.js';

const present = requireFixtures('stories260K/config.json', 'stories260K/model.safetensors', 'stories260K/tok512.bin');

/** Start `quantkit serve` on a free port; resolves with its URL once every worker listens. */
function serve(extra: string[], workers: number) {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI_ENTRY, 'serve', fixture('stories260K'), '--tokenizer', fixture('stories260K/tok512.bin'), '--port', '0', '--workers', String(workers), ...extra], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const url = new Promise<string>((resolve, reject) => {
    child.stderr.setEncoding('utf8').on('data', (s: string) => {
      err += s;
      const urls = [...err.matchAll(/ ready on (http:\/\/127\.0\.0\.1:\d+)/g)].map((m) => m[1]!);
      if (urls.length >= workers) resolve(urls[0]!);
    });
    child.on('exit', () => reject(new Error(`serve exited early: ${err}`)));
  });
  return { child, url, exited, stderr: () => err };
}

describe.skipIf(!present)('quantkit serve (process)', () => {
  it('serves with 2 workers on one port, and SIGTERM finishes the request in flight, then exits 0', async () => {
    const s = serve([], 2);
    const url = await s.url;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:/);
    const ok = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'Once', max_tokens: 5 }) });
    expect(ok.status).toBe(200);
    const inflight = fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'Once', max_tokens: 200, temperature: 0 }) });
    await new Promise((r) => setTimeout(r, 100));
    s.child.kill('SIGTERM');
    const r = await inflight;
    expect(r.status).toBe(200);
    expect(((await r.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBeGreaterThan(0);
    expect(await s.exited).toBe(0);
    expect(s.stderr()).toMatch(/shutting down/);
  }, 60_000);

  it('refuses a missing model and --calib with one line and exit code 1', async () => {
    const missing = await runCli(['serve', '/nonexistent/model', '--port', '0']);
    expect([missing.code, missing.err.trim()]).toEqual([1, 'quantkit: model not found: /nonexistent/model']);
    const calib = await runCli(['serve', fixture('stories260K'), '--calib', 'x.txt', '--port', '0']);
    expect(calib.code).toBe(1);
    expect(calib.err).toMatch(/^quantkit: serve does not calibrate/);
  });

  it('asks for the API key from $QUANTKIT_API_KEY', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', CLI_ENTRY, 'serve', fixture('stories260K'), '--tokenizer', fixture('stories260K/tok512.bin'), '--port', '0'], {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, QUANTKIT_API_KEY: 'k1' },
    });
    let err = '';
    const url = await new Promise<string>((resolve) =>
      child.stderr.setEncoding('utf8').on('data', (s: string) => {
        err += s;
        const m = / ready on (http:\/\/127\.0\.0\.1:\d+)/.exec(err);
        if (m) resolve(m[1]!);
      }),
    );
    expect(err).toMatch(/API key required/);
    expect((await fetch(`${url}/v1/models`)).status).toBe(401);
    expect((await fetch(`${url}/v1/models`, { headers: { authorization: 'Bearer k1' } })).status).toBe(200);
    const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  }, 60_000);
});
