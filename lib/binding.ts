/**
 * The only module that loads the native addon. It types the raw functions;
 * public classes in lib/ validate their arguments and call these.
 *
 * The addon comes from prebuilds/ (a packed package) or build/Release (a
 * source build), found by node-gyp-build from the package root.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMainThread, markAsUntransferable } from 'node:worker_threads';
import { QuantkitError, typeError } from './errors.js';

/** Source dtype codes of the raw addon. */
export const SrcType = { f32: 0, f16: 1, bf16: 2 } as const;
export type SrcType = (typeof SrcType)[keyof typeof SrcType];
/** Weight format codes of the raw addon's gemm. */
export const WFormat = { f32: 0, f16: 1, bf16: 2, i8: 3, i4: 4 } as const;
export type WFormat = (typeof WFormat)[keyof typeof WFormat];
/** Granularity codes of the raw addon. */
export const Gran = { tensor: 0, channel: 1, group: 2 } as const;
export type Gran = (typeof Gran)[keyof typeof Gran];

/** 'amx': the avx512 kernels with AMX-INT8 tiles for W8A8 (Intel Sapphire Rapids and later). */
export type IsaName = 'scalar' | 'avx2' | 'avx512' | 'amx' | 'neon';
export const ISA_NAMES: readonly IsaName[] = ['scalar', 'avx2', 'avx512', 'amx', 'neon'];

type Codes = Int8Array | Uint8Array;

export interface Addon {
  /** Hands the addon the class it throws native failures as (once per thread). */
  configure(options: { QuantkitError: typeof QuantkitError }): void;
  isa(): IsaName;
  cpuFeatures(): { avx2: boolean; avx512: boolean; amx: boolean; neon: boolean; neonDot: boolean; arch: string };
  selectIsa(name: IsaName): IsaName;
  setThreads(n: number): void;
  getThreads(): number;
  setSpin(microseconds: number): void;
  getSpin(): number;
  /**
   * Swaps the names of two existing paths in one step (renameat2
   * RENAME_EXCHANGE / renamex_np RENAME_SWAP). Returns 0, or the errno:
   * ENOSYS, EINVAL or ENOTSUP when this OS or file system cannot do it.
   */
  renameExchange(a: string, b: string): number;
  /** Bytes in use in the C heap (glibc mallinfo2), or -1 where unknown: for the leak test. */
  mallocInUse(): number;
  /** Returns -1, or the flat index of the first NaN/Inf in src. */
  quantize(
    src: Float32Array | Uint16Array,
    srcType: SrcType,
    rows: number,
    K: number,
    bits: number,
    asymmetric: boolean,
    granularity: Gran,
    groupSize: number,
    codes: Codes,
    scales: Float32Array,
    zeroPoints: Codes | null,
  ): number;
  dequantize(
    codes: Codes,
    rows: number,
    K: number,
    bits: number,
    asymmetric: boolean,
    granularity: Gran,
    groupSize: number,
    scales: Float32Array,
    zeroPoints: Codes | null,
    out: Float32Array,
  ): void;
  packRows(bits: number, values: Int8Array, rows: number, K: number, out: Uint8Array): void;
  unpackRows(bits: number, signed: boolean, packed: Uint8Array, rows: number, K: number, out: Int8Array): void;
  toF32(srcType: SrcType, src: Uint16Array, out: Float32Array): void;
  gemm(
    x: Float32Array,
    M: number,
    K: number,
    wFormat: WFormat,
    w: Float32Array | Uint16Array | Int8Array | Uint8Array,
    N: number,
    groupSize: number,
    /** f32, or f16 bits */
    scales: Float32Array | Uint16Array | null,
    zeroPoints: Codes | null,
    bias: Float32Array | null,
    y: Float32Array,
    /** 0 off; rows whose bits do not depend on M: 1 the small-M kernel at every M, 2 the large-M one (batched decoding). */
    rowInvariant?: 0 | 1 | 2,
  ): void;
  /** quantize on a libuv worker thread. */
  quantizeAsync(...args: Parameters<Addon['quantize']>): Promise<number>;
  /** gemm on a libuv worker thread; every buffer stays referenced until it settles. */
  gemmAsync(...args: Parameters<Addon['gemm']>): Promise<void>;
  /** rowsum[n] = sum_k q[n, k], once per W8A8 weight; rejects code -128. */
  w8a8Rowsums(q: Int8Array, N: number, K: number, rowsum: Int32Array): void;
  /**
   * Dynamic W8A8 (threshold < 0) or LLM.int8() (threshold >= 0) product.
   * Returns [index of the first NaN/Inf in x or -1, number of outlier columns].
   */
  gemmW8A8(
    x: Float32Array,
    M: number,
    K: number,
    q: Int8Array,
    N: number,
    scale: Float32Array,
    rowsum: Int32Array,
    threshold: number,
    bias: Float32Array | null,
    y: Float32Array,
    /** LLM.int8() with each row's own outlier columns (row-invariant). */
    perRow?: boolean,
  ): [number, number];
  gemmW8A8Async(...args: Parameters<Addon['gemmW8A8']>): Promise<[number, number]>;
  /**
   * W4A8: packed int4 weight w [N, K/2] (two's complement without zero
   * points) times x quantized to int8 per block of 32 values. Returns the
   * index of the first NaN/Inf in x or -1.
   */
  gemmW4A8(
    x: Float32Array,
    M: number,
    K: number,
    w: Uint8Array,
    N: number,
    groupSize: number,
    /** f32, or f16 bits */
    scales: Float32Array | Uint16Array,
    zeroPoints: Uint8Array | null,
    bias: Float32Array | null,
    y: Float32Array,
  ): number;
  gemmW4A8Async(...args: Parameters<Addon['gemmW4A8']>): Promise<number>;
  /**
   * Several W4A8 products of one x [M, K] (1 to 4 weights, each entry as
   * gemmW4A8's), x quantized once when the group sizes agree. Returns the
   * index of the first NaN/Inf in x or -1.
   */
  gemmW4A8Multi(
    x: Float32Array,
    M: number,
    K: number,
    ws: Uint8Array[],
    Ns: number[],
    groupSizes: number[],
    scales: (Float32Array | Uint16Array)[],
    zeroPoints: (Uint8Array | null)[],
    biases: (Float32Array | null)[],
    ys: Float32Array[],
  ): number;
  gemmW4A8MultiAsync(...args: Parameters<Addon['gemmW4A8Multi']>): Promise<number>;
  /** Several dynamic W8A8 products of one x [M, K] (1 to 4 weights), x quantized once. Returns the index of the first NaN/Inf in x or -1. */
  gemmW8A8Multi(
    x: Float32Array,
    M: number,
    K: number,
    qs: Int8Array[],
    Ns: number[],
    scales: Float32Array[],
    rowsums: Int32Array[],
    biases: (Float32Array | null)[],
    ys: Float32Array[],
  ): number;
  gemmW8A8MultiAsync(...args: Parameters<Addon['gemmW8A8Multi']>): Promise<number>;
  /**
   * Attention of T queries at positions pos0.. over keys (blocked layout)
   * and values [>= pos0 + T, nKvHeads * headDim] into out [T, nHeads *
   * headDim]; causal unless `causal` is false (every query then sees all
   * pos0 + T positions).
   */
  attention(
    q: Float32Array,
    T: number,
    pos0: number,
    keys: Float32Array,
    values: Float32Array,
    nHeads: number,
    nKvHeads: number,
    headDim: number,
    scale: number,
    out: Float32Array,
    causal?: boolean,
  ): void;
  attentionAsync(...args: Parameters<Addon['attention']>): Promise<void>;
  /**
   * Several attention calls in one thread-pool run: call i's T[i] query rows
   * follow call i - 1's in q and out, over keys[i] / values[i] at positions
   * pos0[i] ..; each row gets the bits attention() gives it alone.
   */
  attentionBatch(
    q: Float32Array,
    out: Float32Array,
    nHeads: number,
    nKvHeads: number,
    headDim: number,
    scale: number,
    keys: readonly Float32Array[],
    values: readonly Float32Array[],
    pos0: readonly number[],
    T: readonly number[],
  ): void;
  attentionBatchAsync(...args: Parameters<Addon['attentionBatch']>): Promise<void>;
  /** Map a file (read, copy-on-write) as an external ArrayBuffer, unmapped when collected; errors start with ENOENT/EIO/ENOSYS. */
  mapFile(path: string): ArrayBuffer;
  /** Advise the 2 MiB-aligned interior of a view's bytes onto huge pages before it is written (Linux MADV_HUGEPAGE; never memory from mapFile); bytes advised. */
  adviseHugePages(view: ArrayBufferView): number;
  /** Bytes from the start of a view's data to the next 64-byte cache line (0-63). */
  lineOffset(view: ArrayBufferView): number;
  /** Store k, v [T, kvDim] at positions pos0 .. of a blocked-key cache (native/ops/attention_ops.h). */
  attentionCacheWrite(keys: Float32Array, values: Float32Array, k: Float32Array, v: Float32Array, pos0: number, kvDim: number): void;
  /** g = silu(g) * u elementwise, in f32 with the kernels' exponential. */
  siluMul(g: Float32Array, u: Float32Array): void;
  /** Index (from offset) of the largest of x[offset .. offset + n), n >= 1: the first among equals, never NaN, 0 when none is above -Infinity. */
  argmax(x: Float32Array, offset: number, n: number): number;
  /**
   * Per row of D values: x += residual first (when given, written back), then
   * out = RMS norm (kind 0, times w) or layer norm (kind 1, times w, plus b,
   * each optional); sums in double (native/ops/elementwise_ops.h).
   */
  norm(kind: 0 | 1, x: Float32Array, residual: Float32Array | null, w: Float32Array | null, b: Float32Array | null, out: Float32Array, D: number, eps: number): void;
  /** GELU (tanh form) in place, f32 (native/kernels/kernels.h, gelu_tanh). */
  geluTanh(x: Float32Array): void;
  /** x += y elementwise (f32). */
  addInPlace(x: Float32Array, y: Float32Array): void;
  /** Rotary embeddings in place on x [T, nHeads * stride] (native/ops/elementwise_ops.h). */
  rope(x: Float32Array, T: number, nHeads: number, stride: number, half: number, pos0: number, cos: Float64Array, sin: Float64Array, interleaved: boolean): void;
  /** h [K*K] -> U with H^-1 = U^T U (upper); false if H is not positive definite. */
  cholInverseUpper(h: Float64Array, K: number): boolean;
  /** Columns [p0, p1) of GPTQ's walk over the block [b0, b1) (native/ops/linalg_ops.h, gptq_walk). */
  gptqWalk(
    w: Float32Array, N: number, K: number, u: Float64Array, col: Int32Array, scales: Float32Array, zps: Int32Array,
    G: number, qmin: number, qmax: number, codes: Int8Array, e: Float32Array, b0: number, p0: number, p1: number, b1: number,
  ): void;
  /** GPTQ's lazy-batch update W[:, b1:] -= E · U[b0:b1, b1:] (native/ops/linalg_ops.h, gptq_lazy_update). */
  gptqLazyUpdate(w: Float32Array, N: number, K: number, u: Float64Array, e: Float32Array, b0: number, b1: number): void;
  /** GPTQ group fit: each group's output error r' H_g r (native/ops/linalg_ops.h, gptq_group_errors), and the least-squares refit of its scale (gptq_group_refit). */
  gptqGroupErrors(x: Float32Array, N: number, L: number, G: number, scales: Float32Array, zps: Int32Array | null, qmin: number, qmax: number, h: Float64Array, ldh: number, k0: number, out: Float64Array): void;
  gptqGroupRefit(x: Float32Array, N: number, L: number, G: number, scales: Float32Array, zps: Int32Array | null, qmin: number, qmax: number, h: Float64Array, ldh: number, k0: number, rounds: number, err: Float64Array): void;
  /** GPTQ group fit: each group clamped to c * [lo, hi] (clamp_groups). */
  clampGroups(x: Float32Array, N: number, L: number, G: number, lo: Float32Array, hi: Float32Array, c: number, out: Float32Array): void;
  /** The six above on a libuv worker thread (same arguments, checked before it starts); resolves with cholInverseUpper's answer, true for the others. */
  cholInverseUpperAsync(h: Float64Array, K: number): Promise<boolean>;
  gptqWalkAsync(
    w: Float32Array, N: number, K: number, u: Float64Array, col: Int32Array, scales: Float32Array, zps: Int32Array,
    G: number, qmin: number, qmax: number, codes: Int8Array, e: Float32Array, b0: number, p0: number, p1: number, b1: number,
  ): Promise<boolean>;
  gptqLazyUpdateAsync(w: Float32Array, N: number, K: number, u: Float64Array, e: Float32Array, b0: number, b1: number): Promise<boolean>;
  gptqGroupErrorsAsync(x: Float32Array, N: number, L: number, G: number, scales: Float32Array, zps: Int32Array | null, qmin: number, qmax: number, h: Float64Array, ldh: number, k0: number, out: Float64Array): Promise<boolean>;
  gptqGroupRefitAsync(x: Float32Array, N: number, L: number, G: number, scales: Float32Array, zps: Int32Array | null, qmin: number, qmax: number, h: Float64Array, ldh: number, k0: number, rounds: number, err: Float64Array): Promise<boolean>;
  clampGroupsAsync(x: Float32Array, N: number, L: number, G: number, lo: Float32Array, hi: Float32Array, c: number, out: Float32Array): Promise<boolean>;
  /** Reads every value of buf (absmax) on the thread pool: a bandwidth probe. */
  streamRead(buf: Float32Array): number;
}

function packageRoot(): string {
  // lib/binding.ts (tests) and dist/binding.js (package) both sit one level below the root.
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
}

/** QUANTKIT_THREADS: the pool size at load (default: the CPUs this process may run on). */
function threadsFromEnv(): number | undefined {
  const v = process.env.QUANTKIT_THREADS;
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isInteger(n) || n < 1 || n > 1024) {
    throw new QuantkitError('ERR_UNSUPPORTED', `QUANTKIT_THREADS must be an integer in [1, 1024]; got '${v}'`);
  }
  return n;
}

function load(): Addon {
  const env = process.env.QUANTKIT_ISA;
  if (env !== undefined && env !== '' && !(ISA_NAMES as readonly string[]).includes(env)) {
    throw new QuantkitError('ERR_UNSUPPORTED', `QUANTKIT_ISA must be one of ${ISA_NAMES.join(', ')}; got '${env}'`);
  }
  const require = createRequire(import.meta.url);
  const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown;
  let a: Addon;
  try {
    // QUANTKIT_ADDON: an explicit .node file (CI loads a sanitizer build this way)
    const explicit = process.env.QUANTKIT_ADDON;
    a = (explicit ? require(path.resolve(explicit)) : nodeGypBuild(packageRoot())) as Addon;
  } catch (err) {
    const reason = (err as Error).message.split('\n')[0];
    throw new QuantkitError(
      'ERR_NATIVE',
      `quantkit: could not load its native addon for ${process.platform}-${process.arch}, Node ${process.versions.node} (${reason}). ` +
        'Prebuilt binaries ship for linux-x64 and linux-arm64; elsewhere the addon is compiled at install, which needs install scripts allowed, ' +
        'python3, make and a C++17 compiler: install those, then run `npm rebuild quantkit`.',
      { cause: err },
    );
  }
  a.configure({ QuantkitError });
  // The pool is one per process: the main thread sizes it; a worker thread
  // loading the addon must not undo a setThreads() made since.
  const threads = threadsFromEnv();
  if (threads !== undefined && isMainThread) a.setThreads(threads);
  const spin = process.env.QUANTKIT_SPIN_US;
  if (spin !== undefined && spin !== '' && isMainThread) {
    const us = Number(spin);
    if (!/^\d+$/.test(spin.trim()) || us > 1_000_000) throw new QuantkitError('ERR_UNSUPPORTED', `QUANTKIT_SPIN_US must be an integer in [0, 1000000]; got '${spin}'`);
    a.setSpin(us);
  }
  for (const [fn, names] of Object.entries(ASYNC_ARGS)) {
    const raw = (a as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>)[fn]!.bind(a);
    (a as unknown as Record<string, unknown>)[fn] = (...args: unknown[]) => raw(...holdBuffers(fn, names, args));
  }
  return a;
}

/** Parameter names of the async entry points, for holdBuffers' messages. */
const ASYNC_ARGS: Record<string, readonly string[]> = {
  quantizeAsync: ['src', 'srcType', 'rows', 'K', 'bits', 'asymmetric', 'granularity', 'groupSize', 'codes', 'scales', 'zeroPoints'],
  gemmAsync: ['x', 'M', 'K', 'wFormat', 'w', 'N', 'groupSize', 'scales', 'zeroPoints', 'bias', 'y', 'rowInvariant'],
  gemmW8A8Async: ['x', 'M', 'K', 'q', 'N', 'scale', 'rowsum', 'threshold', 'bias', 'y'],
  gemmW4A8Async: ['x', 'M', 'K', 'w', 'N', 'groupSize', 'scales', 'zeroPoints', 'bias', 'y'],
  gemmW4A8MultiAsync: ['x', 'M', 'K', 'ws', 'Ns', 'groupSizes', 'scales', 'zeroPoints', 'biases', 'ys'],
  gemmW8A8MultiAsync: ['x', 'M', 'K', 'qs', 'Ns', 'scales', 'rowsums', 'biases', 'ys'],
  attentionAsync: ['q', 'T', 'pos0', 'keys', 'values', 'nHeads', 'nKvHeads', 'headDim', 'scale', 'out', 'causal'],
  attentionBatchAsync: ['q', 'out', 'nHeads', 'nKvHeads', 'headDim', 'scale', 'keys', 'values', 'pos0', 'T'],
  cholInverseUpperAsync: ['h', 'K'],
  gptqWalkAsync: ['w', 'N', 'K', 'u', 'col', 'scales', 'zps', 'G', 'qmin', 'qmax', 'codes', 'e', 'b0', 'p0', 'p1', 'b1'],
  gptqLazyUpdateAsync: ['w', 'N', 'K', 'u', 'e', 'b0', 'b1'],
  gptqGroupErrorsAsync: ['x', 'N', 'L', 'G', 'scales', 'zps', 'qmin', 'qmax', 'h', 'ldh', 'k0', 'out'],
  gptqGroupRefitAsync: ['x', 'N', 'L', 'G', 'scales', 'zps', 'qmin', 'qmax', 'h', 'ldh', 'k0', 'rounds', 'err'],
  clampGroupsAsync: ['x', 'N', 'L', 'G', 'lo', 'hi', 'c', 'out'],
};

/**
 * An async call reads and writes its buffers on a libuv thread while
 * JavaScript runs on. The addon holds references to the typed arrays (so the
 * garbage collector keeps them), but JavaScript could still free the memory
 * under it: transferring the ArrayBuffer (structuredClone/postMessage with
 * `transfer`) detaches it, and shrinking a resizable ArrayBuffer decommits
 * its pages. So, before the call: resizable ArrayBuffers are refused, and
 * every other non-shared ArrayBuffer is marked untransferable (a transfer
 * list naming it then copies it instead, as Node does for its own pooled
 * buffers). The mark is permanent; SharedArrayBuffers never detach and are
 * left alone.
 */
function holdBuffers(fn: string, names: readonly string[], args: unknown[]): unknown[] {
  const hold = (v: unknown, name: string) => {
    if (!ArrayBuffer.isView(v)) return;
    const buf = v.buffer;
    if (buf instanceof ArrayBuffer) {
      if ((buf as { resizable?: boolean }).resizable === true) {
        throw typeError(fn, name, 'is backed by a resizable ArrayBuffer, which an async call cannot hold (it could shrink under the call); copy it into a fixed-size buffer, or use the synchronous form');
      }
      markAsUntransferable(buf);
    }
  };
  for (let i = 0; i < args.length; i++) {
    const v = args[i];
    const name = names[i] ?? `argument ${i}`;
    // arrays of buffers (attentionBatchAsync's caches) are held element by element
    if (Array.isArray(v)) v.forEach((e, j) => hold(e, `${name}[${j}]`));
    else hold(v, name);
  }
  return args;
}

export const addon: Addon = load();
