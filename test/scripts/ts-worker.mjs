// Worker-thread entry for tests: registers tsx in this thread (loader hooks
// given on the parent's command line do not reach workers on Node 20), then
// runs the TypeScript worker named in workerData.script.
import { register } from 'tsx/esm/api';
import { workerData } from 'node:worker_threads';

register();
await import(workerData.script);
