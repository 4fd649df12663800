// Parent side of the worker-termination test: starts test/scripts/async-worker.ts
// in a worker thread, then either terminates the worker while its async calls
// are in flight ('terminate') or lets the worker call process.exit() itself
// ('exit'). Prints "parent alive" once the worker is gone; an abort of the
// process (exit code 134) is the bug this guards against.
// usage: node terminate-parent.mjs <op> <terminate|exit>
import { Worker } from 'node:worker_threads';

const [op, mode] = process.argv.slice(2);
const worker = new Worker(new URL('./ts-worker.mjs', import.meta.url), {
  workerData: { script: new URL('./async-worker.ts', import.meta.url).href, op, exit: mode === 'exit' },
});
worker.on('error', (e) => {
  console.error('worker error:', e.message);
  process.exitCode = 2;
});
worker.on('message', async () => {
  if (mode !== 'terminate') return;
  await new Promise((r) => setTimeout(r, 30));
  await worker.terminate();
});
worker.on('exit', () => setTimeout(() => console.log('parent alive'), 10));
