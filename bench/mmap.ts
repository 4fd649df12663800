/**
 * Mapped vs read weights, on the synthetic 12-layer Llama of bench/e2e.ts
 * saved as a quantkit checkpoint (int8 per channel by default; lm_head f32):
 *   load time   loading the checkpoint into a model (file in the page cache),
 *               mapped (mmap, tensors are views of the mapping) vs read
 *               (copied into process memory); median of --repeats child
 *               processes each
 *   PSS         the proportional set size (/proc/<pid>/smaps_rollup) of N
 *               processes that each loaded the model, as `quantkit serve
 *               --workers N` does, summed, for N = 1 and N = --procs:
 *               mapped pages of one file are shared and counted once
 *
 *   node --import tsx bench/mmap.ts [--weights int8|int4] [--procs 4] [--repeats 5] [--layers 12] [--dim 768]
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { loadavg } from 'node:os';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { llamaConfigToHf } from '../lib/cli/load.js';
import { saveQuantized } from '../lib/io/quantized-checkpoint.js';
import { quantizeModel } from '../lib/nn/quantize-model.js';
import { cliOptions, median, printTable } from './common.js';
import { build, makeConfig, makeWeights } from './synthetic-llama.js';

const { opt, intOpt } = cliOptions(import.meta.url, { values: ['--weights', '--procs', '--repeats', '--layers', '--dim'] });
const WEIGHTS = (opt('--weights') ?? 'int8') as 'int8' | 'int4';
const PROCS = intOpt('--procs', 4);
const REPEATS = intOpt('--repeats', 5);
const LAYERS = intOpt('--layers', 12);
const DIM = intOpt('--dim', 768);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** A child that loads `dir` (mapped or read), prints its load ms, then waits for 'exit' on stdin. */
const CHILD = `
import { loadCliModel } from ${JSON.stringify(path.join(ROOT, 'lib/cli/load.ts'))};
const t0 = performance.now();
const m = loadCliModel(process.argv[2], undefined, undefined, { mmap: process.argv[3] === 'map' });
process.stdout.write(JSON.stringify({ ms: performance.now() - t0 }) + '\\n');
process.stdin.on('data', () => process.exit(0));
globalThis.keep = m;
`;

function startChild(dir: string, mode: 'map' | 'read'): Promise<{ ms: number; pid: number; stop: () => Promise<void> }> {
  const script = path.join(os.tmpdir(), 'qk-mmap-child.mts');
  fs.writeFileSync(script, CHILD);
  const child = spawn(process.execPath, ['--import', 'tsx', script, dir, mode], { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      out += s;
      if (out.includes('\n')) {
        const r = JSON.parse(out) as { ms: number };
        resolve({ ms: r.ms, pid: child.pid!, stop: () => new Promise((res) => { child.on('exit', () => res()); child.stdin.write('x'); }) });
      }
    });
    child.on('exit', (c) => (c !== 0 ? reject(new Error(`child exited ${c}`)) : undefined));
  });
}

function pssKiB(pid: number): number {
  const m = /Pss:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qk-mmap-ckpt-'));
  try {
    const config = makeConfig(LAYERS, DIM);
    const { model } = build(config, makeWeights(config, 0), { name: 'fp32', q: null });
    const summary = quantizeModel(model, WEIGHTS === 'int8' ? { weights: 'int8' } : { weights: 'int4', groupSize: 32 });
    await saveQuantized(model, summary, [], dir, llamaConfigToHf(config));
    const bytes = fs.readdirSync(dir).reduce((a, f) => a + fs.statSync(path.join(dir, f)).size, 0);
    console.log(`# ${LAYERS} layers, hidden ${DIM}, vocab ${config.vocabSize}, ${WEIGHTS} checkpoint of ${(bytes / 1e6).toFixed(1)} MB (in the page cache); load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
    const rows: string[][] = [];
    for (const mode of ['read', 'map'] as const) {
      const times: number[] = [];
      for (let r = 0; r < REPEATS; r++) {
        const c = await startChild(dir, mode);
        times.push(c.ms);
        await c.stop();
      }
      const pss: number[] = [];
      for (const n of [1, PROCS]) {
        const cs = await Promise.all(Array.from({ length: n }, () => startChild(dir, mode)));
        pss.push(cs.reduce((a, c) => a + pssKiB(c.pid), 0) / 1024);
        await Promise.all(cs.map((c) => c.stop()));
      }
      rows.push([mode === 'map' ? 'mapped' : 'read', median(times).toFixed(0), pss[0]!.toFixed(0), pss[1]!.toFixed(0), (pss[1]! / pss[0]!).toFixed(2)]);
    }
    printTable(['weights', 'load ms (median)', 'PSS 1 process MiB', `PSS ${PROCS} processes MiB`, `${PROCS} / 1`], rows);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
