/**
 * Child process of the setThreads test: after loading quantkit, caps this
 * process's address space a little above what it uses now (prlimit), so that
 * creating 1023 worker threads (8 MiB of stack each) fails part way. Prints
 * one JSON line: what setThreads threw, the pool size after, and a product
 * computed afterwards.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { QuantkitError, Tensor, getThreads, matmul, setThreads } from '../../lib/index.js';

const vmKb = Number(/VmSize:\s+(\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))![1]);
const limit = (vmKb + 1024 * 1024) * 1024; // current + 1 GiB
execFileSync('prlimit', [`--pid=${process.pid}`, `--as=${limit}:${limit}`]);
const before = getThreads();
let error: { quantkit: boolean; code?: string; message: string } | null = null;
try {
  setThreads(1024);
} catch (e) {
  error = { quantkit: e instanceof QuantkitError, code: (e as QuantkitError).code, message: (e as Error).message };
}
const after = getThreads();
const y = matmul(Tensor.fromArray([1, 2, 3, 4], [2, 2]), Tensor.fromArray([3, 4, 5, 6], [2, 2]));
console.log(JSON.stringify({ before, after, error, y: Array.from(y.data) }));
