// Preload for the kill -9 save test (node --import this): every async
// fs.promises call that changes the file system sleeps a few milliseconds
// first, so a kill at a random instant lands anywhere in a save, not only
// in its slowest step; the first mkdir of a save's temporary folder prints
// "SAVE_START" to stderr, so the parent can aim its kills at the save.
import * as fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';

const delayMs = Number(process.env.SLOW_FS_MS ?? '20');
const sleep = () => new Promise((r) => setTimeout(r, delayMs));
let announced = false;
for (const name of ['mkdir', 'open', 'rename', 'rm', 'writeFile', 'copyFile', 'unlink', 'rmdir']) {
  const orig = fs.promises[name];
  fs.promises[name] = async function (...args) {
    if (!announced && name === 'mkdir' && /\.tmp-\d+-[0-9a-f]{8}$/.test(String(args[0]))) {
      announced = true;
      process.stderr.write('SAVE_START\n');
    }
    await sleep();
    const r = await orig.apply(this, args);
    await sleep();
    return r;
  };
}
// `import * as fsp from 'node:fs/promises'` in the library sees the wrappers
syncBuiltinESMExports();
