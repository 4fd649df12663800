/**
 * One fuzz worker process: runs inputs start .. start + count - 1 of one
 * format and reports each on stdout as a JSON line, {"begin": i} before and
 * {"i", "status", "code"?, "message"?} after, written synchronously so that
 * the parent knows which input was running when a hang or a crash ended us.
 *
 * argv: <format> <seed> <start> <count> <fixtures dir> <work dir>
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { formats, isTypedError } from './formats.js';

const [name, seedArg, startArg, countArg, fixtures, work] = process.argv.slice(2) as [string, string, string, string, string, string];
const format = formats(fixtures, work).find((f) => f.name === name);
if (!format) throw new Error(`fuzz child: unknown format ${name}`);
const seed = Number(seedArg);
const start = Number(startArg);
const count = Number(countArg);
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), `qk-fuzz-${name}-`));
const say = (o: object) => fs.writeSync(1, JSON.stringify(o) + '\n');

try {
  for (let i = start; i < start + count; i++) {
    const dir = path.join(scratch, String(i));
    fs.mkdirSync(dir);
    for (const [f, bytes] of format.input(seed, i)) fs.writeFileSync(path.join(dir, f), bytes);
    say({ begin: i });
    let status: string;
    let code: string | undefined;
    let message: string | undefined;
    try {
      status = format.run(dir);
    } catch (err) {
      const e = err as Error & { code?: unknown };
      status = isTypedError(err) ? 'typed' : 'untyped';
      code = typeof e?.code === 'string' ? e.code : e?.constructor?.name;
      message = String(e?.message ?? e).slice(0, 300);
    }
    say({ i, status, ...(code !== undefined ? { code } : {}), ...(message !== undefined ? { message } : {}) });
    fs.rmSync(dir, { recursive: true, force: true });
  }
} finally {
  fs.rmSync(scratch, { recursive: true, force: true });
}
