/**
 * quantkit vs ONNX Runtime (onnxruntime-node, CPU EP) in one process: the same
 * shapes, weights (bit-identical quantized codes), inputs and thread counts,
 * timed interleaved, with an output-agreement check per case.
 *
 *   node --import tsx bench/ort.ts            # full: [N,K] = 4096x4096, 11008x4096, 4096x11008
 *   node --import tsx bench/ort.ts --quick    # 4096x4096 only
 *   node --import tsx bench/ort.ts --json     # one JSON row per case
 *   node --import tsx bench/ort.ts --spin     # both libraries' workers spin between calls (see SPIN below)
 *   node --import tsx bench/ort.ts --kinds=int8-dqmm,int8-mmi   # only these kinds (f32, int8-dqmm, int8-mmi, int4-g32, int4-w4a8)
 *   (needs `cd bench && ONNXRUNTIME_NODE_INSTALL_CUDA=skip ONNXRUNTIME_NODE_INSTALL=skip npm install`)
 *
 * M = 1, 16, 128; threads 1 and 2 (quantkit setThreads; ORT intraOpNumThreads,
 * one session per thread count). Cases, quantkit side vs ORT side:
 *   f32      matmul(x, W f32)               vs MatMul(X, W^T)
 *   int8     matmul(x, W int8 per channel)  vs DynamicQuantizeMatMul (ORT quantizes X to u8 per tensor)
 *   int8     same                           vs MatMulInteger on X pre-quantized to u8 outside the timing (int32 out)
 *   int4     matmul(x, W int4 sym g32)      vs MatMulNBits bits 4, block 32, accuracy_level 4
 *   int4     W4A8: QLinear(W int4 sym g32, activations 'int8'), X quantized to int8
 *            per 32 values on every call: the same arithmetic as accuracy_level 4
 * M = 1 weights are cold: both sides cycle round robin through distinct copies
 * totalling >= max(256 MB, 2 x L3) (ORT: one session per copy, each with its own initializer).
 */
import { createRequire } from 'node:module';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { QLinear, QuantizedTensor, Tensor, isa, matmul, quantize, setSpin, setThreads } from '../lib/index.js';
import { COLD_BYTES, cliOptions, copyWeight, lastLevelCacheBytes, measureBandwidthChunked, median, printTable, randomF32, type Weight } from './common.js';
import * as graph from './onnx-graph.js';

// onnxruntime-node is loaded through require and typed by the members used, so
// `tsc` over bench/ passes without bench/node_modules (CI installs only the root).
interface OrtTensor { readonly data: Float32Array | Int32Array; readonly dims: readonly number[] }
interface OrtSession { run(feeds: Record<string, OrtTensor>): Promise<Record<string, OrtTensor>>; release(): Promise<void> }
interface Ort {
  Tensor: new (type: string, data: ArrayBufferView, dims: number[]) => OrtTensor;
  InferenceSession: { create(model: Uint8Array, options: object): Promise<OrtSession> };
}
const ort = createRequire(import.meta.url)('onnxruntime-node') as Ort;
const ORT_VERSION = (createRequire(import.meta.url)('onnxruntime-node/package.json') as { version: string }).version;

const { flag, opt } = cliOptions(import.meta.url, { flags: ['--json', '--quick', '--spin'], values: ['--kinds'] });
/**
 * Cold set per library for M = 1: at least 256 MB and twice the last-level
 * cache (this machine reports a 260 MB L3, which a 256 MB set would fit), so
 * cycling through it evicts every copy before its next use.
 */
const COLD_SET_BYTES = Math.max(COLD_BYTES, 2 * lastLevelCacheBytes());
const JSON_OUT = flag('--json');
const QUICK = flag('--quick');

/**
 * quantkit with int8 activations quantized on every call (QLinear { activations: 'int8' }):
 * with an int8 symmetric per-channel weight, dynamic W8A8 (one scale per row, the
 * semantics of ORT's DynamicQuantizeMatMul); with an int4 weight, W4A8 (one scale
 * per 32 values, as MatMulNBits at accuracy_level 4).
 */
function int8Activations(q: QuantizedTensor): (x: Tensor) => Tensor {
  const layer = new QLinear(q, null, { activations: 'int8' });
  return (x) => layer.forward(x);
}

type Kind = 'f32' | 'int8-dqmm' | 'int8-mmi' | 'int4-g32' | 'int4-w4a8';
const ALL_KINDS: Kind[] = ['f32', 'int8-dqmm', 'int8-mmi', 'int4-g32', 'int4-w4a8'];
const kindsArg = opt('--kinds');
const KINDS: Kind[] = kindsArg
  ? kindsArg.split(',').map((k) => {
      if (!(ALL_KINDS as string[]).includes(k)) throw new Error(`--kinds: unknown kind '${k}' (one of ${ALL_KINDS.join(', ')})`);
      return k as Kind;
    })
  : ALL_KINDS;
const ORT_OP: Record<Kind, string> = {
  'f32': 'MatMul',
  'int8-dqmm': 'DynamicQuantizeMatMul',
  'int8-mmi': 'MatMulInteger (A pre-quantized, i32 out)',
  'int4-g32': 'MatMulNBits acc4',
  'int4-w4a8': 'MatMulNBits acc4',
};
/**
 * Relative Frobenius error allowed between the two outputs. f32: summation order only.
 * int8 and int4: ORT quantizes the activations to 8 bits (u8 per tensor; int8 per
 * 32-block for accuracy_level 4) while quantkit keeps them f32 (same weight codes),
 * which alone gives ~4e-3 on these uniform inputs. W4A8: both sides quantize the
 * activations per 32-block; only their rounding of x / scale may differ.
 */
const TOL: Record<Kind, number> = { 'f32': 1e-5, 'int8-dqmm': 2e-2, 'int8-mmi': 2e-2, 'int4-g32': 1e-2, 'int4-w4a8': 1e-2 };

interface Row {
  op: string; M: number; N: number; K: number; weight: string; threads: number;
  quantkit: string; qkMs: number; ortMs: number; ortOverQk: number;
  qkGops: number; ortGops: number; qkFracBw: number | null; ortFracBw: number | null;
  coldSetMB: number | null; relErr: number; tol: number; ok: boolean;
  /** 1-minute load average when the case finished: > 2 on this 2-vCPU machine means something else competed. */
  load1: number;
}

function log(msg: string) {
  if (!JSON_OUT) process.stderr.write(msg + '\n');
}

/** out[c * R + r] = a[r * C + c], in 64x64 tiles so neither side thrashes the cache. */
function transpose<T extends Float32Array | Int8Array>(a: T, R: number, C: number): T {
  const out = new (a.constructor as new (n: number) => T)(R * C);
  for (let r0 = 0; r0 < R; r0 += 64) {
    for (let c0 = 0; c0 < C; c0 += 64) {
      const r1 = Math.min(R, r0 + 64), c1 = Math.min(C, c0 + 64);
      for (let r = r0; r < r1; r++) for (let c = c0; c < c1; c++) out[c * R + r] = a[r * C + c]!;
    }
  }
  return out;
}

function relErr(got: ArrayLike<number>, ref: ArrayLike<number>): number {
  let n = 0, d = 0;
  for (let i = 0; i < ref.length; i++) { n += (got[i]! - ref[i]!) ** 2; d += ref[i]! ** 2; }
  return Math.sqrt(n / d);
}

/** DynamicQuantizeLinear's u8 per-tensor quantization, done in JS for MatMulInteger's input (outside the timing). */
function quantizeU8(x: Float32Array): { q: Uint8Array; scale: number; zp: number } {
  let lo = 0, hi = 0;
  for (const v of x) { if (v < lo) lo = v; if (v > hi) hi = v; }
  const scale = (hi - lo) / 255 || 1;
  const zp = Math.min(255, Math.max(0, Math.round(-lo / scale)));
  const q = new Uint8Array(x.length);
  for (let i = 0; i < x.length; i++) q[i] = Math.min(255, Math.max(0, Math.round(x[i]! / scale) + zp));
  return { q, scale, zp };
}

function makeWeight(kind: Kind, w: Float32Array, N: number, K: number): Weight {
  const t = new Tensor('f32', [N, K], w);
  if (kind === 'f32') return t;
  if (kind === 'int4-g32' || kind === 'int4-w4a8') return quantize(t, { bits: 4, granularity: 'group', groupSize: 32 });
  return quantize(t, { bits: 8, granularity: 'channel' });
}

/** The ORT model holding the same weight values (the same codes and scales for quantized kinds). */
function ortModel(kind: Kind, w: Weight, N: number, K: number): Uint8Array {
  if (kind === 'f32') return graph.matmulF32(transpose((w as Tensor).data as Float32Array, N, K), K, N);
  const q = w as QuantizedTensor;
  if (kind === 'int4-g32' || kind === 'int4-w4a8') {
    // quantkit symmetric int4 nibble = q & 15 (two's complement); MatMulNBits wants q + 8 (zero point 8): flip bit 3 of each nibble.
    const b = (q.data as Uint8Array).map((v) => v ^ 0x88);
    return graph.matMulNBits(b, q.scales, K, N, 32, 4);
  }
  const bKN = transpose(q.data as Int8Array, N, K);
  return kind === 'int8-dqmm' ? graph.dynQuantMatMul(bKN, q.scales, K, N) : graph.matMulInteger(bKN, K, N);
}

/** quantkit's call for one weight copy. */
function qkCall(kind: Kind, w: Weight): (x: Tensor) => Tensor {
  if (kind.startsWith('int8') || kind === 'int4-w4a8') return int8Activations(w as QuantizedTensor);
  return (x) => matmul(x, w);
}

/**
 * Median ms of quantkit and ORT, interleaved: blocks of calls alternate between
 * the two so drift on this noisy machine hits both alike. For calls under 20 ms
 * each block starts with one untimed call, so a pool still spinning from the
 * other library's block (ORT's workers spin after a run) is not charged.
 */
async function timePair(qk: (i: number) => void, ortRun: (i: number) => Promise<void>, budgetMs: number) {
  let qi = 0, oi = 0;
  qk(qi++); await ortRun(oi++); // warm-up: first-run allocations, page faults
  let t0 = performance.now(); qk(qi++); const qEst = performance.now() - t0;
  t0 = performance.now(); await ortRun(oi++); const oEst = performance.now() - t0;
  const est = Math.max(qEst, oEst);
  const block = Math.max(1, Math.min(8, Math.round(40 / est)));
  const skip = est < 20;
  const qs: number[] = [], os: number[] = [];
  const start = performance.now();
  while (qs.length < 5 || os.length < 5 || performance.now() - start < 2 * budgetMs) {
    if (skip) qk(qi++);
    for (let b = 0; b < block; b++) { t0 = performance.now(); qk(qi++); qs.push(performance.now() - t0); }
    if (skip) await ortRun(oi++);
    for (let b = 0; b < block; b++) { t0 = performance.now(); await ortRun(oi++); os.push(performance.now() - t0); }
    if (qs.length >= 200) break;
  }
  return { qkMs: median(qs), ortMs: median(os) };
}

/**
 * Both libraries run under the same spin policy. By default neither spins:
 * ORT's allow_spinning is off and quantkit's pool sleeps at once (setSpin(0)).
 * With one session per cold copy, idle sessions' spinning workers would
 * steal the 2 vCPUs from the session (or quantkit call) that runs next
 * (measured: 2-3x slower ORT M = 1 at 2 threads). --spin turns spinning on
 * for both (ORT's default; quantkit's default of 300 us), the fair setting
 * for one warm session on an otherwise idle machine.
 */
const SPIN = flag('--spin');
setSpin(SPIN ? 300 : 0);

function sessionOptions(threads: number) {
  return {
    intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential',
    extra: { session: { intra_op: { allow_spinning: SPIN ? '1' : '0' } } },
  };
}

async function main() {
  const shapes: [number, number][] = QUICK ? [[4096, 4096]] : [[4096, 4096], [11008, 4096], [4096, 11008]];
  const Ms = [1, 16, 128];
  const threadCounts = [1, 2];
  const budget = QUICK ? 150 : 500;
  const rows: Row[] = [];
  const bw: Record<number, number> = {};
  const qkLabel = (kind: Kind) =>
    kind === 'f32' ? 'f32' : kind === 'int4-g32' ? 'int4 g32' : kind === 'int4-w4a8' ? 'int4 g32 W4A8' : 'W8A8';
  const loadStart = os.loadavg()[0]!;
  log(`quantkit vs onnxruntime-node ${ORT_VERSION}: isa ${isa()}, ${os.cpus().length} CPUs, load average ${loadStart.toFixed(2)}, L3 ${(lastLevelCacheBytes() / 2 ** 20).toFixed(0)} MB, cold-weight set >= ${(COLD_SET_BYTES / 2 ** 20).toFixed(0)} MB per library for M = 1`);
  for (const t of threadCounts) {
    bw[t] = measureBandwidthChunked(t);
    log(`DRAM read bandwidth, ${t} thread(s): ${bw[t]!.toFixed(1)} GB/s`);
    if (JSON_OUT) process.stdout.write(JSON.stringify({ op: 'dram-read', threads: t, gbps: bw[t] }) + '\n');
  }

  for (const [N, K] of shapes) {
    const base = randomF32(N * K, N + K);
    for (const kind of KINDS) {
      const first = makeWeight(kind, base, N, K);
      const per = first.nbytes;
      const copies = Math.max(1, Math.ceil(COLD_SET_BYTES / per));
      const cold: Weight[] = [first];
      for (let i = 1; i < copies; i++) cold.push(copyWeight(first));
      const qkCalls = cold.map((w) => qkCall(kind, w));
      const model = ortModel(kind, first, N, K);
      for (const threads of threadCounts) {
        // One session per copy: each session owns (and prepacks) its own initializer, so cycling them is cold.
        const t0 = performance.now();
        const sessions: OrtSession[] = [];
        for (let i = 0; i < copies; i++) sessions.push(await ort.InferenceSession.create(model, sessionOptions(threads)));
        log(`  ${kind} ${N}x${K} t=${threads}: ${copies} weight copies of ${(per / 2 ** 20).toFixed(1)} MB, ORT sessions built in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
        for (const M of Ms) {
          const xf = randomF32(M * K, 7);
          const x = new Tensor('f32', [M, K], xf);
          let feeds: Record<string, OrtTensor>;
          let xq: ReturnType<typeof quantizeU8> | null = null;
          if (kind === 'int8-mmi') {
            xq = quantizeU8(xf);
            feeds = { A: new ort.Tensor('uint8', xq.q, [M, K]), a_zp: new ort.Tensor('uint8', new Uint8Array([xq.zp]), []) };
          } else {
            feeds = { X: new ort.Tensor('float32', xf, [M, K]) };
          }
          setThreads(threads);
          // Correctness on the first copy, outside the timing.
          const ref = qkCalls[0]!(x).data as Float32Array;
          const out = (await sessions[0]!.run(feeds)).Y!.data;
          let got: ArrayLike<number> = out;
          if (xq) {
            // MatMulInteger returns sum (a - a_zp) * b; rescale to floats for the check only.
            const s = (first as QuantizedTensor).scales;
            got = Float32Array.from(out, (v, i) => v * xq.scale * s[i % N]!);
          }
          const err = relErr(got, ref);

          const n = M === 1 ? copies : 1;
          const { qkMs, ortMs } = await timePair(
            (i) => { qkCalls[i % n]!(x); },
            async (i) => { await sessions[i % n]!.run(feeds); },
            budget,
          );
          const gop = (2 * M * N * K) / 1e9;
          const row: Row = {
            op: M === 1 ? 'gemv' : 'gemm', M, N, K, weight: kind, threads, quantkit: qkLabel(kind),
            qkMs, ortMs, ortOverQk: ortMs / qkMs, qkGops: gop / (qkMs / 1000), ortGops: gop / (ortMs / 1000),
            qkFracBw: M === 1 ? per / (qkMs / 1000) / 1e9 / bw[threads]! : null,
            ortFracBw: M === 1 ? per / (ortMs / 1000) / 1e9 / bw[threads]! : null,
            coldSetMB: M === 1 ? (copies * per) / 2 ** 20 : null,
            relErr: err, tol: TOL[kind], ok: err < TOL[kind], load1: os.loadavg()[0]!,
          };
          rows.push(row);
          log(`    M=${String(M).padEnd(3)} qk ${qkMs.toFixed(3)} ms, ORT ${ortMs.toFixed(3)} ms (${row.ortOverQk.toFixed(2)}x), err ${err.toExponential(1)}`);
        }
        for (const s of sessions) await s.release();
      }
      cold.length = 0;
      qkCalls.length = 0;
    }
  }
  // Probe again at the end and keep the better figure per thread count: other tenants' memory traffic on this
  // machine lowers a single probe, which would make "of BW" exceed 1.
  for (const t of threadCounts) {
    const again = measureBandwidthChunked(t);
    log(`DRAM read bandwidth at the end, ${t} thread(s): ${again.toFixed(1)} GB/s`);
    if (JSON_OUT) process.stdout.write(JSON.stringify({ op: 'dram-read-end', threads: t, gbps: again }) + '\n');
    if (again > bw[t]!) {
      for (const r of rows.filter((o) => o.threads === t && o.qkFracBw !== null)) {
        r.qkFracBw! *= bw[t]! / again;
        r.ortFracBw! *= bw[t]! / again;
      }
      bw[t] = again;
    }
  }
  if (JSON_OUT) {
    for (const r of rows) process.stdout.write(JSON.stringify({ ...r, ortOp: ORT_OP[r.weight as Kind], ortVersion: ORT_VERSION, spin: SPIN }) + '\n');
    return;
  }
  report(rows, bw, threadCounts, loadStart);
}

function report(rows: Row[], bw: Record<number, number>, threadCounts: number[], loadStart: number) {
  const fmt = (v: number | null, d = 2) => (v === null ? '' : v.toFixed(d));
  console.log(`\nquantkit (isa ${isa()}) vs onnxruntime-node ${ORT_VERSION} CPU EP; DRAM read (best of start and end) ${threadCounts.map((t) => `${bw[t]!.toFixed(1)} GB/s (${t} thr)`).join(', ')}`);
  const loads = rows.map((r) => r.load1);
  console.log(`${os.cpus().length} CPUs; 1-min load average ${loadStart.toFixed(1)} at start, ${Math.min(...loads).toFixed(1)}..${Math.max(...loads).toFixed(1)} during the cases (above the CPU count: other processes competed, thread scaling is not meaningful)`);
  console.log(`Spinning between calls: ${SPIN ? 'on for both (ORT allow_spinning, quantkit setSpin(300))' : 'off for both (ORT allow_spinning 0, quantkit setSpin(0)); --spin turns it on for both'}.`);
  console.log('ORT/qk = ORT median ms / quantkit median ms = quantkit throughput / ORT throughput (> 1: quantkit faster).');
  console.log('M = 1: cold weights (cold set = distinct copies cycled per library); "of BW" = weight bytes per call / time / DRAM read bandwidth.');
  console.log('err = relative Frobenius difference of the two outputs; for MatMulInteger, its int32 output rescaled by a_scale * b_scale.\n');
  const header = ['op', 'M', 'N', 'K', 'quantkit', 'ORT op', 'thr', 'qk ms', 'ORT ms', 'ORT/qk', 'qk GOP/s', 'ORT GOP/s', 'qk of BW', 'ORT of BW', 'cold set MB', 'err', 'check'];
  const table = rows.map((r) => [
    r.op, r.M, r.N, r.K, r.quantkit, ORT_OP[r.weight as Kind], r.threads, fmt(r.qkMs, 3), fmt(r.ortMs, 3), fmt(r.ortOverQk),
    fmt(r.qkGops, 1), fmt(r.ortGops, 1), fmt(r.qkFracBw), fmt(r.ortFracBw), fmt(r.coldSetMB, 0),
    r.relErr.toExponential(1), `${r.ok ? 'ok' : 'FAIL'} < ${r.tol.toExponential(0)}`,
  ].map(String));
  printTable(header, table);
  targets(rows);
}

/** The issue's targets, each case by case. */
function targets(rows: Row[]) {
  const pick = (kind: Kind, pred: (r: Row) => boolean) => rows.filter((r) => r.weight === kind && pred(r));
  const lines = (title: string, rs: Row[], val: (r: Row) => number, pass: (v: number) => boolean) => {
    if (!rs.length) return;
    const ok = rs.filter((r) => pass(val(r))).length;
    console.log(`\n${title}: ${ok}/${rs.length} cases meet it`);
    console.log('  ' + rs.map((r) => `${r.N}x${r.K} M=${r.M} t${r.threads}: ${val(r).toFixed(2)}${pass(val(r)) ? '' : ' (miss)'}`).join('; '));
  };
  lines(`quantkit W8A8 M=128 throughput / ORT MatMulInteger, target >= 1.1`, pick('int8-mmi', (r) => r.M === 128), (r) => r.ortOverQk, (v) => v >= 1.1);
  lines('int8 cold GEMV (M=1) quantkit time / ORT DynamicQuantizeMatMul time, target <= 0.7', pick('int8-dqmm', (r) => r.M === 1), (r) => 1 / r.ortOverQk, (v) => v <= 0.7);
  lines('int4 g32 cold GEMV (M=1) quantkit (f32 activations) time / ORT MatMulNBits time, target <= 0.7', pick('int4-g32', (r) => r.M === 1), (r) => 1 / r.ortOverQk, (v) => v <= 0.7);
  lines('int4 g32 cold GEMV (M=1) quantkit W4A8 (int8 activations, like accuracy_level 4) time / ORT MatMulNBits time, target <= 0.7', pick('int4-w4a8', (r) => r.M === 1), (r) => 1 / r.ortOverQk, (v) => v <= 0.7);
  lines('fp32 GEMM (M>=16) quantkit throughput / ORT MatMul, target >= 0.9', pick('f32', (r) => r.M >= 16), (r) => r.ortOverQk, (v) => v >= 0.9);
  // Thread scaling: same case at 1 and 2 threads (the MatMulInteger rows time the same quantkit call as DQMM's: skipped).
  const pairs = rows.filter((r) => r.threads === 2 && r.M >= 16 && r.weight !== 'int8-mmi');
  const speedup = (r: Row, side: 'qkMs' | 'ortMs') => {
    const one = rows.find((o) => o.threads === 1 && o.weight === r.weight && o.M === r.M && o.N === r.N && o.K === r.K);
    return one ? one[side] / r[side] : NaN;
  };
  if (pairs.length) {
    const ok = pairs.filter((r) => speedup(r, 'qkMs') >= 1.6).length;
    console.log(`\nquantkit 2 threads / 1 thread speed-up (M>=16), target >= 1.6: ${ok}/${pairs.length} cases meet it (ORT's own in brackets)`);
    console.log('  ' + pairs.map((r) => `${r.weight} ${r.N}x${r.K} M=${r.M}: ${speedup(r, 'qkMs').toFixed(2)} [${speedup(r, 'ortMs').toFixed(2)}]`).join('; '));
  }
  const bad = rows.filter((r) => !r.ok);
  console.log(bad.length ? `\nCORRECTNESS: ${bad.length} case(s) above tolerance` : `\ncorrectness: all ${rows.length} cases within tolerance`);
}

main().catch((e) => { console.error(e); process.exit(1); });
