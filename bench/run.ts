/**
 * quantkit kernel benchmarks: GEMV/GEMM for f32, bf16, int8 (per channel)
 * and int4 (g32) weights at real layer shapes (f32 activations, and with
 * int8 activations: W8A8 and W4A8 through QLinear), quantize throughput, and the
 * machine's DRAM read bandwidth measured in the same run, so every GEMV is
 * reported as a fraction of it and every quantized case as a ratio to fp32.
 *
 *   npm run bench                 # the full table
 *   npm run bench -- --json       # one JSON row per case
 *   npm run bench -- --quick      # one shape, fewer repetitions (smoke)
 *   npm run bench -- --kinds f32,int4-g32,int4-g32-f16s   # some weight kinds only ('-' for ' ')
 * ('f16s': int4 g32 with f16 scales.)
 *
 * M = 1 uses cold weights: the case cycles through distinct copies of the
 * weight totalling >= max(256 MB, 2 x the last-level cache), so each call
 * streams from DRAM, not L3.
 */
import { QLinear, type QuantizedTensor, Tensor, isa, matmul, quantize, setThreads } from '../lib/index.js';
import { COLD_BYTES, cliOptions, copyWeight, lastLevelCacheBytes, measureBandwidthChunked, printTable, randomF32, time, weightBytes, type Weight } from './common.js';

// Cold weights must overflow the last-level cache (this machine reports a
// 260 MB L3), so the working set is at least twice its size.
const COLD_SET_BYTES = Math.max(COLD_BYTES, 2 * lastLevelCacheBytes());

const { flag, opt } = cliOptions(import.meta.url, { flags: ['--json', '--quick'], values: ['--kinds'] });
const JSON_OUT = flag('--json');
const QUICK = flag('--quick');

type WKind = 'f32' | 'bf16' | 'int8' | 'int4-g32' | 'int4-g32 f16s' | 'int8 W8A8' | 'int4-g32 W4A8' | 'int4-g32 f16s W4A8';
const ALL_KINDS: WKind[] = ['f32', 'bf16', 'int8', 'int4-g32', 'int4-g32 f16s', 'int8 W8A8', 'int4-g32 W4A8', 'int4-g32 f16s W4A8'];
const kindsArg = opt('--kinds');
const KINDS: WKind[] = kindsArg !== undefined ? ALL_KINDS.filter((k) => kindsArg.split(',').includes(k.replace(/ /g, '-'))) : ALL_KINDS;
if (KINDS.length === 0) throw new Error(`--kinds matched none of ${ALL_KINDS.map((k) => k.replace(/ /g, '-')).join(', ')}`);


interface Row {
  op: string;
  M: number;
  N: number;
  K: number;
  weight: string;
  threads: number;
  ms: number;
  gbps: number;
  gflops: number;
  ratioToF32: number | null;
  fracBandwidth: number | null;
}

function log(msg: string) {
  if (!JSON_OUT) process.stderr.write(msg + '\n');
}

function toBf16(w: Float32Array): Uint16Array {
  const u = new Uint32Array(w.buffer, w.byteOffset, w.length);
  const out = new Uint16Array(w.length);
  for (let i = 0; i < w.length; i++) out[i] = u[i]! >>> 16;
  return out;
}

function makeWeight(kind: WKind, w: Float32Array, N: number, K: number): Weight {
  const t = new Tensor('f32', [N, K], w);
  switch (kind) {
    case 'f32': return t;
    case 'bf16': return new Tensor('bf16', [N, K], toBf16(w));
    case 'int8':
    case 'int8 W8A8': return quantize(t, { bits: 8, granularity: 'channel' });
    case 'int4-g32':
    case 'int4-g32 W4A8': return quantize(t, { bits: 4, granularity: 'group', groupSize: 32 });
    case 'int4-g32 f16s':
    case 'int4-g32 f16s W4A8': return quantize(t, { bits: 4, granularity: 'group', groupSize: 32, scaleDtype: 'f16' });
  }
}

/** The call timed for one weight copy: matmul with f32 activations, or a QLinear quantizing them to int8. */
function callFor(kind: WKind, w: Weight): (x: Tensor) => Tensor {
  if (kind.endsWith('A8')) {
    const layer = new QLinear(w as QuantizedTensor, null, { activations: 'int8' });
    return (x) => layer.forward(x);
  }
  return (x) => matmul(x, w);
}

function main() {
  const shapes: [number, number][] = QUICK ? [[4096, 4096]] : [[4096, 4096], [11008, 4096], [4096, 11008]];
  const Ms = [1, 16, 128];
  const threadCounts = [1, 2];
  const budget = QUICK ? 200 : 600;
  const rows: Row[] = [];
  const bw: Record<number, number> = {};
  log(`quantkit bench: isa ${isa()}, cold-weight working set ${Math.round(COLD_SET_BYTES / 2 ** 20)} MB for M = 1`);
  for (const t of threadCounts) {
    bw[t] = measureBandwidthChunked(t);
    log(`DRAM read bandwidth, ${t} thread(s): ${bw[t]!.toFixed(1)} GB/s`);
  }

  for (const [N, K] of shapes) {
    const base = randomF32(N * K, N + K);
    for (const kind of KINDS) {
      const first = makeWeight(kind, base, N, K);
      const per = weightBytes(first);
      const copies = Math.max(1, Math.ceil(COLD_SET_BYTES / per));
      const cold: Weight[] = [first];
      for (let i = 1; i < copies; i++) cold.push(copyWeight(first));
      const calls = cold.map((w) => callFor(kind, w));
      for (const M of Ms) {
        const x = new Tensor('f32', [M, K], randomF32(M * K, 7));
        for (const threads of threadCounts) {
          setThreads(threads);
          const n = M === 1 ? calls.length : 1;
          const ms = time((i) => calls[i % n]!(x), budget);
          const gbps = per / (ms / 1000) / 1e9;
          const gflops = (2 * M * N * K) / (ms / 1000) / 1e9;
          rows.push({
            op: M === 1 ? 'gemv' : 'gemm', M, N, K, weight: kind, threads, ms, gbps, gflops,
            ratioToF32: null, fracBandwidth: M === 1 ? gbps / bw[threads]! : null,
          });
          log(`  ${kind.padEnd(8)} M=${String(M).padEnd(3)} ${N}x${K} t=${threads}: ${ms.toFixed(3)} ms`);
        }
      }
      cold.length = 0;
      calls.length = 0;
    }
  }
  // Ratios to fp32 from the same run.
  for (const r of rows) {
    const f = rows.find((o) => o.weight === 'f32' && o.M === r.M && o.N === r.N && o.K === r.K && o.threads === r.threads);
    if (f) r.ratioToF32 = f.ms / r.ms;
  }

  // Quantize throughput (GB/s of f32 input).
  const qrows: Row[] = [];
  {
    const [N, K] = [4096, 4096];
    const t = new Tensor('f32', [N, K], randomF32(N * K, 3));
    for (const threads of threadCounts) {
      setThreads(threads);
      for (const [name, opts] of [['quantize int8 channel', { bits: 8 as const }], ['quantize int4 g32', { bits: 4 as const, groupSize: 32 }]] as const) {
        const ms = time(() => quantize(t, opts), budget);
        qrows.push({ op: name, M: 0, N, K, weight: 'f32 input', threads, ms, gbps: t.nbytes / (ms / 1000) / 1e9, gflops: 0, ratioToF32: null, fracBandwidth: null });
      }
    }
  }

  if (JSON_OUT) {
    for (const t of threadCounts) process.stdout.write(JSON.stringify({ op: 'dram-read', threads: t, gbps: bw[t] }) + '\n');
    for (const r of [...rows, ...qrows]) process.stdout.write(JSON.stringify(r) + '\n');
    return;
  }
  const fmt = (v: number | null, d = 2) => (v === null ? '' : v.toFixed(d));
  const header = ['op', 'M', 'N', 'K', 'weight', 'thr', 'median ms', 'GB/s', 'GFLOP/s', 'x fp32', 'of BW'];
  const table = rows.map((r) => [r.op, r.M, r.N, r.K, r.weight, r.threads, fmt(r.ms, 3), fmt(r.gbps, 1), fmt(r.gflops, 1), fmt(r.ratioToF32), r.fracBandwidth === null ? '' : fmt(r.fracBandwidth)].map(String));
  for (const r of qrows) table.push([r.op, '', String(r.N), String(r.K), r.weight, String(r.threads), fmt(r.ms, 2), fmt(r.gbps, 1), '', '', '']);
  console.log(`\nisa ${isa()}; DRAM read ${threadCounts.map((t) => `${bw[t]!.toFixed(1)} GB/s (${t} thr)`).join(', ')}`);
  printTable(header, table);
}

main();
