// Worker-thread entry used only when quantkit runs from its TypeScript
// sources (tests, development through tsx): registers tsx in the new thread
// (loader hooks given on the parent's command line do not reach workers on
// Node 20), then runs the .ts entry named in workerData.entry. The built
// package starts dist/serve/engine-thread.js directly instead.
import { register } from 'tsx/esm/api';
import { workerData } from 'node:worker_threads';

register();
await import(workerData.entry);
