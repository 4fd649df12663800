/**
 * Sizing the native pool without code: QUANTKIT_THREADS at load (checked,
 * applied by the main thread only, so a worker thread loading quantkit does
 * not undo a setThreads), `--threads` on every CLI command, and a default
 * that follows the CPUs this process may use (taskset / a container's
 * cpuset), not every CPU of the machine.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { getSpin, getThreads, setSpin, setThreads } from '../lib/runtime.js';
import { Tensor } from '../lib/tensor.js';
import { matmul } from '../lib/ops/matmul.js';
import { runCli, runCliJson } from './cli-run.js';
import { fixture, requireFixtures } from './fixtures.js';

const ROOT = path.resolve(__dirname, '..');
const initial = getThreads();
afterEach(() => setThreads(initial));

/** Run a snippet of TypeScript in a fresh Node with `env` added; returns stdout (trimmed) or throws with stderr. */
function child(code: string, env: Record<string, string> = {}, prefix: string[] = []): { status: number | null; out: string; err: string } {
  const argv = [...prefix, process.execPath, '--import', 'tsx', '--input-type=module', '-e', code];
  const r = spawnSync(argv[0]!, argv.slice(1), { cwd: ROOT, encoding: 'utf8', env: { ...process.env, ...env } });
  return { status: r.status, out: r.stdout.trim(), err: r.stderr };
}

describe('QUANTKIT_THREADS', () => {
  it('sets the pool size at load', () => {
    expect(child("const q = await import('./lib/index.ts'); console.log(q.getThreads());", { QUANTKIT_THREADS: '3' }).out).toBe('3');
  });

  it('refuses a value that is not an integer in [1, 1024], naming the variable', () => {
    for (const bad of ['0', '-2', '1.5', 'four', '2000']) {
      const r = child("const q = await import('./lib/index.ts').catch((e) => { console.log(e.code + ' ' + e.message); process.exit(0); }); console.log('loaded', q.getThreads());", { QUANTKIT_THREADS: bad });
      expect(r.out).toBe(`ERR_UNSUPPORTED QUANTKIT_THREADS must be an integer in [1, 1024]; got '${bad}'`);
    }
  });

  it('a worker thread loading quantkit keeps the size the main thread set', () => {
    const code = `
      import { Worker } from 'node:worker_threads';
      const q = await import('./lib/index.ts');
      q.setThreads(2);
      const w = new Worker(new URL('./test/scripts/ts-worker.mjs', 'file://' + process.cwd() + '/'), { execArgv: [], workerData: { script: new URL('./lib/index.ts', 'file://' + process.cwd() + '/').href } });
      await new Promise((res, rej) => { w.on('exit', res); w.on('error', rej); });
      console.log(q.getThreads());`;
    const r = child(code, { QUANTKIT_THREADS: '1' });
    expect(r.out, r.err).toBe('2');
  });
});

describe('default pool size', () => {
  const taskset = spawnSync('taskset', ['-c', '0', 'true']).status === 0;
  it.skipIf(!taskset)('follows the CPU affinity (taskset -c 0: one thread)', () => {
    const r = child("const q = await import('./lib/index.ts'); console.log(q.getThreads());", {}, ['taskset', '-c', '0']);
    expect(r.out, r.err).toBe('1');
  });
});

const haveModel = requireFixtures('stories260K/config.json', 'stories260K/model.safetensors');
describe.skipIf(!haveModel)('--threads on every command', () => {
  it('sets the pool for the run, and is checked like any option', async () => {
    const one = await runCliJson<{ runtime: { threads: number } }>(['inspect', fixture('stories260K'), '--threads', '1']);
    expect(one.runtime.threads).toBe(1);
    const three = await runCli(['inspect', fixture('stories260K'), '--threads', '3']);
    expect(three.out).toMatch(/^runtime: +\w+ kernels, 3 threads$/m);
    for (const cmd of ['inspect', 'quantize', 'generate', 'ppl', 'report']) {
      const h = await runCli([cmd, '--help']);
      expect(h.code).toBe(0);
      expect(h.out).toMatch(/--threads <n>/);
    }
    const bad = await runCli(['inspect', fixture('stories260K'), '--threads', '0']);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/--threads/);
  });
});

describe('spin policy (setSpin, QUANTKIT_SPIN_US)', () => {
  it('defaults to 300 us, is settable, checked, and never changes results', () => {
    expect(getSpin()).toBe(300);
    const w = new Tensor('f32', [64, 96], Float32Array.from({ length: 64 * 96 }, (_, i) => Math.sin(i)));
    const x = new Tensor('f32', [9, 96], Float32Array.from({ length: 9 * 96 }, (_, i) => Math.cos(i)));
    setThreads(2);
    const spinning = matmul(x, w).data;
    setSpin(0);
    try {
      expect(getSpin()).toBe(0);
      expect(matmul(x, w).data).toEqual(spinning);
    } finally {
      setSpin(300);
    }
    expect(() => setSpin(-1)).toThrow(/'microseconds' must be an integer in \[0, 1000000\]/);
    expect(() => setSpin('5' as never)).toThrow(TypeError);
  });

  it('QUANTKIT_SPIN_US sets it at load, and a bad value names the variable', () => {
    expect(child("const q = await import('./lib/index.ts'); console.log(q.getSpin());", { QUANTKIT_SPIN_US: '0' }).out).toBe('0');
    const r = child("await import('./lib/index.ts').catch((e) => console.log(e.code, e.message));", { QUANTKIT_SPIN_US: 'lots' });
    expect(r.out).toBe("ERR_UNSUPPORTED QUANTKIT_SPIN_US must be an integer in [0, 1000000]; got 'lots'");
  });
});
