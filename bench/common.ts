/**
 * Helpers shared by the benchmarks (bench/run.ts, bench/ort.ts): timing with
 * a median, deterministic random weights, distinct weight copies for the
 * cold-weight (M = 1) cases, the DRAM read-bandwidth probe and the table
 * printer. Nothing here changes what run.ts measures or prints.
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { addon } from '../lib/binding.js';
import { Tensor, setThreads, type QuantizedTensor } from '../lib/index.js';

/** M = 1 cases cycle through distinct weight copies totalling at least this, so each call streams from DRAM, not L3. */
export const COLD_BYTES = 256 * 2 ** 20;

/** Size in bytes of the largest CPU cache (Linux sysfs), 0 if unknown. */
export function lastLevelCacheBytes(): number {
  let best = 0;
  for (let i = 0; i < 8; i++) {
    try {
      const txt = readFileSync(`/sys/devices/system/cpu/cpu0/cache/index${i}/size`, 'utf8').trim();
      const m = /^(\d+)([KMG]?)/.exec(txt);
      if (m) best = Math.max(best, Number(m[1]) * ({ '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30 } as Record<string, number>)[m[2]!]!);
    } catch {
      break;
    }
  }
  return best;
}

export type Weight = Tensor | QuantizedTensor;

/** The p-th percentile (nearest rank) of v; NaN when empty. */
export function percentile(v: readonly number[], p: number): number {
  const s = [...v].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! : NaN;
}

export function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Run fn repeatedly (after a warm-up) for about `budgetMs`; median ms per call. */
export function time(fn: (i: number) => void, budgetMs: number, minReps = 5): number {
  fn(0);
  const samples: number[] = [];
  const start = performance.now();
  for (let i = 1; samples.length < minReps || performance.now() - start < budgetMs; i++) {
    const t0 = performance.now();
    fn(i);
    samples.push(performance.now() - t0);
    if (samples.length >= 200) break;
  }
  return median(samples);
}

/** Uniform values in [-0.05, 0.05) from a fixed LCG, so every run (and every library) sees the same data. */
export function randomF32(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 4294967296 - 0.5) * 0.1;
  }
  return out;
}

export function weightBytes(w: Weight): number {
  return w.nbytes;
}

/** A distinct copy (new memory) of a weight. */
export function copyWeight(w: Weight): Weight {
  if (w instanceof Tensor) return new Tensor(w.dtype, w.shape, w.data.slice() as Float32Array);
  const Q = w.constructor as new (init: ConstructorParameters<typeof QuantizedTensor>[0]) => QuantizedTensor;
  return new Q({
    bits: w.bits, scheme: w.scheme, granularity: w.granularity,
    groupSize: w.granularity === 'group' ? w.groupSize : undefined,
    shape: w.shape, data: w.data.slice(), scales: w.scaleData.slice(), zeroPoints: w.zeroPoints?.slice() ?? null,
  });
}

/**
 * DRAM read bandwidth in GB/s, probed the way cold GEMVs are timed: the median
 * of short reads (32 MB chunks, ~ms each) cycling through a buffer of at least
 * 1 GiB and 4x the last-level cache. One long read over the whole buffer is
 * preempted by other processes on a loaded machine while short calls often
 * are not, so it would understate the bandwidth the short calls see.
 */
export function measureBandwidthChunked(threads: number): number {
  setThreads(threads);
  const chunk = 2 ** 23; // floats: 32 MB
  const total = Math.max(2 ** 28, Math.ceil((4 * lastLevelCacheBytes()) / 4 / chunk) * chunk);
  const buf = new Float32Array(total);
  for (let i = 0; i < buf.length; i += 1024) buf[i] = i; // touch every page
  const chunks = total / chunk;
  const ms = time((i) => addon.streamRead(buf.subarray((i % chunks) * chunk, (i % chunks + 1) * chunk)), 1500, 2 * chunks);
  return (chunk * 4) / (ms / 1000) / 1e9;
}

/** Print a markdown table with columns padded to their widest cell. */
export function printTable(header: string[], table: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
  const line = (cells: string[]) => '| ' + cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ') + ' |';
  console.log(line(header));
  console.log('|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|');
  for (const row of table) console.log(line(row));
}

/**
 * A benchmark's command line, parsed strictly by node:util's parseArgs:
 * `--name value` or `--name=value` for the declared values, bare `--flag`s;
 * an undeclared option, a missing value or a stray argument ends the
 * process with a message naming it (exit code 2), and `--help` prints the
 * script's usage (its leading doc comment) and exits. `script` is the
 * caller's import.meta.url.
 */
export function cliOptions(script: string, spec: { readonly flags?: readonly string[]; readonly values?: readonly string[] }, argv: string[] = process.argv.slice(2)) {
  const options: Record<string, { type: 'string' | 'boolean' }> = { help: { type: 'boolean' } };
  for (const f of spec.flags ?? []) options[f.replace(/^--/, '')] = { type: 'boolean' };
  for (const v of spec.values ?? []) options[v.replace(/^--/, '')] = { type: 'string' };
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    console.error(`${(e as Error).message} (--help lists the options)`);
    process.exit(2);
  }
  if (values.help) {
    console.log(usageOf(script));
    process.exit(0);
  }
  const key = (name: string): string => {
    const k = name.replace(/^--/, '');
    if (!(k in options)) throw new Error(`bench: option ${name} is read but not declared`);
    return k;
  };
  const opt = (name: string): string | undefined => values[key(name)] as string | undefined;
  const intOpt = (name: string, dflt: number): number => {
    const v = opt(name);
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got ${v}`);
    return n;
  };
  return { flag: (name: string) => values[key(name)] === true, opt, intOpt };
}

/** The leading doc comment of a script: its usage. */
function usageOf(script: string): string {
  const m = /\/\*\*([\s\S]*?)\*\//.exec(readFileSync(fileURLToPath(script), 'utf8'));
  return m ? m[1]!.split('\n').map((l) => l.replace(/^\s*\* ?/, '')).join('\n').trim() : '';
}
