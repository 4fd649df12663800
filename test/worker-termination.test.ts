/**
 * A worker thread that is terminated (worker.terminate(), or process.exit()
 * inside it) while quantkit async calls are in flight must not take the
 * process down. Before the fix every such case aborted with "terminate
 * called after throwing an instance of 'Napi::Error'" (exit code 134): the
 * promise was settled during environment teardown and node-addon-api threw.
 * Each case runs in its own process, since a failure kills the process.
 */
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'scripts', 'terminate-parent.mjs');

function run(op: string, mode: string): Promise<{ code: number | null; signal: string | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [script, op, mode], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('close', (code, signal) => resolve({ code, signal, out }));
  });
}

const OPS = ['matmul', 'quantize', 'w8a8', 'w4a8', 'w8a8-shared', 'w4a8-shared', 'attention', 'gptq'];
const TRIALS = 5;

describe('worker termination with async work in flight', () => {
  for (const mode of ['terminate', 'exit']) {
    it(`${mode}: every async entry point, ${TRIALS} trials each, parent exits 0`, async () => {
      for (const op of OPS) {
        const runs = await Promise.all(Array.from({ length: TRIALS }, () => run(op, mode)));
        for (const r of runs) {
          expect({ op, code: r.code, signal: r.signal, out: r.out.slice(-300) }).toEqual({
            op, code: 0, signal: null, out: expect.stringContaining('parent alive'),
          });
        }
      }
    }, 120_000);
  }
});
