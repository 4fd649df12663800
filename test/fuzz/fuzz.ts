/**
 * The fuzz harness: mutated copies of the real fixture files for every file
 * format quantkit reads, each loaded (and, when it loads, run) in child
 * processes that take a batch of inputs each. Every input must load or fail
 * with a typed error within --timeout; a hang (the child is killed), a crash
 * (the child dies), an untyped error, or NaN logits from a model that loaded
 * is a finding: its input is saved under --out with the command that replays it.
 *
 *   npm run fuzz -- --count 10000 --seed 1              # nightly size, every format
 *   npm run fuzz -- --format gpt2,tok512 --count 300    # a slice
 *   npm run fuzz -- --format config --seed 1 --replay 17  # one input, in this process
 *   npm run fuzz -- --format config --list RangeError     # print the typed errors of one kind
 *
 * Exit code 1 when there is any finding.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { formats, isTypedError, prepareBases } from './formats.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');

const { values: a } = parseArgs({
  options: {
    format: { type: 'string', default: 'all' },
    count: { type: 'string', default: '200' },
    seed: { type: 'string', default: '1' },
    batch: { type: 'string', default: '250' },
    timeout: { type: 'string', default: '5000' },
    jobs: { type: 'string', default: String(Math.max(1, Math.min(2, os.availableParallelism()))) },
    out: { type: 'string', default: path.join(os.tmpdir(), 'quantkit-fuzz-findings') },
    work: { type: 'string', default: path.join(os.tmpdir(), 'quantkit-fuzz-work') },
    fixtures: { type: 'string', default: process.env.QUANTKIT_FIXTURES ?? path.join(repo, '..', 'shared', 'fixtures') },
    replay: { type: 'string' },
    // print each typed error with this code (e.g. RangeError) with its input index
    list: { type: 'string' },
  },
});
const int = (name: string, v: string, min: number) => {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min) throw new RangeError(`fuzz: --${name} must be an integer >= ${min}, got '${v}'`);
  return n;
};
const count = int('count', a.count!, 1);
const seed = int('seed', a.seed!, 0);
const batch = int('batch', a.batch!, 1);
const timeoutMs = int('timeout', a.timeout!, 100);
const jobs = int('jobs', a.jobs!, 1);
const fixtures = path.resolve(a.fixtures!);
const work = path.resolve(a.work!);
const outDir = path.resolve(a.out!);

if (!fs.existsSync(path.join(fixtures, 'stories260K', 'model.safetensors'))) {
  console.error(`fuzz: fixtures not found under ${fixtures} (set --fixtures or QUANTKIT_FIXTURES)`);
  process.exit(2);
}
fs.mkdirSync(work, { recursive: true });
await prepareBases(fixtures, work);
const all = formats(fixtures, work);
const wanted = a.format === 'all' ? all : a.format!.split(',').map((n) => all.find((f) => f.name === n.trim()) ?? (() => { throw new RangeError(`fuzz: --format '${n}' is not one of ${all.map((f) => f.name).join(', ')}`); })());

if (a.replay !== undefined) {
  const i = int('replay', a.replay, 0);
  for (const f of wanted) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `qk-replay-${f.name}-`));
    for (const [name, bytes] of f.input(seed, i)) fs.writeFileSync(path.join(dir, name), bytes);
    console.log(`${f.name} seed ${seed} input ${i} (files in ${dir}):`);
    try {
      console.log('  ->', f.run(dir));
    } catch (err) {
      console.log(`  -> ${isTypedError(err) ? 'typed' : 'UNTYPED'} error:`, err);
    }
  }
  process.exit(0);
}

interface Tally {
  inputs: number;
  ok: number;
  typed: number;
  untyped: number;
  nan: number;
  hangs: number;
  crashes: number;
  codes: Map<string, number>;
  findings: string[];
  ms: number;
}

function saveFinding(fmt: (typeof all)[number], i: number, kind: string, detail: string, t: Tally): void {
  const dir = path.join(outDir, `${fmt.name}-seed${seed}-input${i}-${kind}`);
  fs.mkdirSync(dir, { recursive: true });
  for (const [name, bytes] of fmt.input(seed, i)) fs.writeFileSync(path.join(dir, name), bytes);
  fs.writeFileSync(path.join(dir, 'FINDING.txt'), `${kind}: ${detail}\nreplay: npm run fuzz -- --format ${fmt.name} --seed ${seed} --replay ${i}\n`);
  t.findings.push(`${kind} at input ${i}: ${detail.slice(0, 160)} (saved in ${dir})`);
}

/** Runs inputs [from, to) of `fmt` in child processes, restarting after a hang or crash. */
async function runFormat(fmt: (typeof all)[number], from: number, to: number, t: Tally): Promise<void> {
  let next = from;
  while (next < to) {
    const start = next;
    const n = Math.min(batch, to - start);
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(here, 'child.ts'), fmt.name, String(seed), String(start), String(n), fixtures, work], {
      cwd: repo,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => void (stderr = (stderr + d.toString()).slice(-2000)));
    let running = -1; // input begun and not finished
    let hung = false;
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        hung = true;
        child.kill('SIGKILL');
      }, timeoutMs);
    };
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      let m: { begin?: number; i?: number; status?: string; code?: string; message?: string };
      try {
        m = JSON.parse(line);
      } catch {
        return; // a library's stray console output
      }
      if (m.begin !== undefined) {
        running = m.begin;
        arm();
        return;
      }
      clearTimeout(timer);
      running = -1;
      next = m.i! + 1;
      t.inputs++;
      if (m.status === 'ok') t.ok++;
      else if (m.status === 'typed') {
        t.typed++;
        t.codes.set(m.code ?? '?', (t.codes.get(m.code ?? '?') ?? 0) + 1);
        if (a.list !== undefined && m.code === a.list) console.log(`${fmt.name} input ${m.i}: ${m.code}: ${m.message}`);
      } else if (m.status === 'nan') {
        t.nan++;
        saveFinding(fmt, m.i!, 'nan', 'the input loaded and its forward gave non-finite logits', t);
      } else {
        t.untyped++;
        saveFinding(fmt, m.i!, 'untyped', `${m.code}: ${m.message}`, t);
      }
    });
    const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
    clearTimeout(timer);
    if (running >= 0) {
      t.inputs++;
      if (hung) {
        t.hangs++;
        saveFinding(fmt, running, 'hang', `no result within ${timeoutMs} ms`, t);
      } else {
        t.crashes++;
        saveFinding(fmt, running, 'crash', `child exited with ${exit.signal ?? `code ${exit.code}`}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`, t);
      }
      next = running + 1;
    } else if (next < start + n) {
      // died between inputs (setup failure): report it rather than loop
      throw new Error(`fuzz child for ${fmt.name} exited (${exit.signal ?? exit.code}) before input ${next}: ${stderr}`);
    }
  }
}

const tallies = new Map(wanted.map((f) => [f.name, { inputs: 0, ok: 0, typed: 0, untyped: 0, nan: 0, hangs: 0, crashes: 0, codes: new Map(), findings: [], ms: 0 } as Tally]));
// Each format's range is cut into `jobs` interleaved pieces; `jobs` children run at once.
const queue = wanted.flatMap((f) => {
  const per = Math.ceil(count / jobs);
  return Array.from({ length: jobs }, (_, j) => ({ f, from: j * per, to: Math.min(count, (j + 1) * per) })).filter((p) => p.from < p.to);
});
const t0 = Date.now();
await Promise.all(
  Array.from({ length: jobs }, async () => {
    for (let job = queue.shift(); job; job = queue.shift()) {
      const started = Date.now();
      await runFormat(job.f, job.from, job.to, tallies.get(job.f.name)!);
      tallies.get(job.f.name)!.ms += Date.now() - started;
    }
  }),
);

const pad = (s: string | number, n: number) => String(s).padStart(n);
console.log(`\nquantkit fuzz: seed ${seed}, ${count} inputs per format, timeout ${timeoutMs} ms, ${jobs} processes, ${((Date.now() - t0) / 1000).toFixed(0)} s`);
console.log(`${'format'.padEnd(15)}${pad('inputs', 8)}${pad('loaded', 8)}${pad('typed', 7)}${pad('untyped', 9)}${pad('nan', 5)}${pad('hangs', 7)}${pad('crashes', 9)}${pad('inputs/s', 10)}  typed errors by code`);
let findings = 0;
for (const [name, t] of tallies) {
  findings += t.untyped + t.nan + t.hangs + t.crashes;
  const codes = [...t.codes].sort((x, y) => y[1] - x[1]).map(([c, k]) => `${c} ${k}`).join(', ');
  console.log(`${name.padEnd(15)}${pad(t.inputs, 8)}${pad(t.ok, 8)}${pad(t.typed, 7)}${pad(t.untyped, 9)}${pad(t.nan, 5)}${pad(t.hangs, 7)}${pad(t.crashes, 9)}${pad((t.inputs / Math.max(t.ms / 1000, 1e-3)).toFixed(1), 10)}  ${codes}`);
}
for (const [name, t] of tallies) for (const f of t.findings.slice(0, 20)) console.log(`  ${name}: ${f}`);
console.log(findings === 0 ? '\nno findings' : `\n${findings} findings, inputs saved under ${outDir}`);
process.exit(findings === 0 ? 0 : 1);
