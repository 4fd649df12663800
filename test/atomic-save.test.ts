/**
 * Saves that survive kill -9 at any instant (lib/io/atomic.ts):
 *   - a folder is replaced by one atomic exchange of names, so the previous
 *     version stays loadable until the new one is complete;
 *   - temporaries of a killed writer (dead pid) are removed by the next save,
 *     never those of a live one; the two-rename fallback (no exchange on this
 *     file system) puts the previous version back if a kill left none;
 *   - the CLI killed at random instants of `quantkit quantize --force` (20
 *     trials, file-system calls slowed so the kills spread over the save)
 *     always leaves a folder that loads and runs.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { addon } from '../lib/binding.js';
import { findLeftovers, recoverLeftovers, writeDirAtomic, writeFileAtomicSync } from '../lib/io/atomic.js';
import { loadModelSync } from '../lib/models/load.js';
import { requireFixtures, fixture } from './fixtures.js';

const ROOT = path.resolve(__dirname, '..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qk-atomic-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A pid that no process has now (a child that already exited). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

async function folder(target: string, content: string): Promise<void> {
  await writeDirAtomic(target, async (d) => fs.writeFileSync(path.join(d, 'v.txt'), content));
}
const read = (target: string) => fs.readFileSync(path.join(target, 'v.txt'), 'utf8');
const siblings = (target: string) => fs.readdirSync(path.dirname(target)).filter((n) => n.startsWith(`.${path.basename(target)}.`));

describe('atomic folder writes', () => {
  it('replaces an existing folder with one exchange, leaving no temporaries', async () => {
    const t = path.join(tmp, 'swap');
    await folder(t, 'A');
    const spy = vi.spyOn(addon, 'renameExchange');
    await folder(t, 'B');
    expect(spy).toHaveBeenCalledTimes(1);
    spy.mockRestore();
    expect(read(t)).toBe('B');
    expect(siblings(t)).toEqual([]);
  });

  it('removes leftovers of dead writers on the next save, keeps those of live ones', async () => {
    const t = path.join(tmp, 'left');
    await folder(t, 'A');
    const dead = deadPid();
    const deadTmp = path.join(tmp, `.left.tmp-${dead}-0123abcd`);
    const deadOld = path.join(tmp, `.left.old-${dead}-89abcdef`);
    fs.mkdirSync(deadTmp);
    fs.writeFileSync(path.join(deadTmp, 'half'), 'x');
    fs.mkdirSync(deadOld);
    const deadFile = path.join(tmp, `.left.tmp-${dead}-00000000`);
    fs.writeFileSync(deadFile, 'partial');
    // a live writer: the parent of this test process
    const liveTmp = path.join(tmp, `.left.tmp-${process.ppid}-feedbeef`);
    fs.mkdirSync(liveTmp);
    // names that only look similar are not ours to remove
    const other = path.join(tmp, '.left.tmp-notapid');
    fs.mkdirSync(other);
    expect(findLeftovers(t).map((l) => l.path).sort()).toEqual([deadFile, deadTmp, deadOld].sort());
    await folder(t, 'B');
    expect(read(t)).toBe('B');
    expect(fs.existsSync(deadTmp) || fs.existsSync(deadOld) || fs.existsSync(deadFile)).toBe(false);
    expect(fs.existsSync(liveTmp) && fs.existsSync(other)).toBe(true);
  });

  it('file writes clean their own leftovers too', () => {
    const f = path.join(tmp, 'w.bin');
    const stale = path.join(tmp, `.w.bin.tmp-${deadPid()}-abcdef01`);
    fs.writeFileSync(stale, 'half');
    writeFileAtomicSync(f, (fd) => fs.writeSync(fd, 'whole'));
    expect(fs.readFileSync(f, 'utf8')).toBe('whole');
    expect(fs.existsSync(stale)).toBe(false);
  });

  it('without an exchange (ENOSYS): two renames, and a kill between them is repaired by the next save', async () => {
    const t = path.join(tmp, 'fallback');
    await folder(t, 'A');
    const spy = vi.spyOn(addon, 'renameExchange').mockReturnValue(os.constants.errno.ENOSYS);
    try {
      await folder(t, 'B');
      expect(read(t)).toBe('B');
      expect(siblings(t)).toEqual([]);
      // what a kill between the renames leaves: the previous version aside,
      // the new one complete under its temporary name, no folder
      const dead = deadPid();
      fs.renameSync(t, path.join(tmp, `.fallback.old-${dead}-11111111`));
      fs.mkdirSync(path.join(tmp, `.fallback.tmp-${dead}-22222222`));
      expect(() => loadModelSync(t)).toThrow(/interrupted save left its previous version at .*\.fallback\.old-/);
      expect(recoverLeftovers(t).restored).toMatch(/\.fallback\.old-/);
      expect(read(t)).toBe('B');
      expect(siblings(t)).toEqual([]);
    } finally {
      spy.mockRestore();
    }
  });

  it('an exchange failure other than "unsupported" is an fs error and keeps the old folder', async () => {
    const t = path.join(tmp, 'eacces');
    await folder(t, 'A');
    const spy = vi.spyOn(addon, 'renameExchange').mockReturnValue(os.constants.errno.EACCES);
    try {
      await expect(folder(t, 'B')).rejects.toMatchObject({ code: 'EACCES', syscall: 'rename' });
    } finally {
      spy.mockRestore();
    }
    expect(read(t)).toBe('A');
    expect(siblings(t)).toEqual([]);
  });

  it('renameExchange refuses non-strings and NUL bytes with a TypeError', () => {
    expect(() => addon.renameExchange(1 as never, 'b')).toThrow(TypeError);
    expect(() => addon.renameExchange('a\0b', 'b')).toThrow(/NUL/);
  });
});

const haveModel = requireFixtures('stories260K/config.json', 'stories260K/model.safetensors', 'stories260K/tok512.bin');

describe.skipIf(!haveModel)('kill -9 during `quantkit quantize --force`', () => {
  const MODEL = fixture('stories260K');
  const OUT = path.join(tmp, 'ckpt');
  const TRIALS = 20;
  const cliArgs = (bits: number) => ['--import', 'tsx', '--import', path.join(ROOT, 'test/scripts/slow-fs.mjs'), path.join(ROOT, 'lib/cli/main.ts'), 'quantize', MODEL, '--out', OUT, '--force', '--bits', String(bits)];

  /** Runs the CLI; kills it `killAfterMs` after it starts saving (or lets it finish). */
  function runCli(bits: number, killAfterMs?: number): Promise<{ code: number | null; signal: string | null; saveMs: number }> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, cliArgs(bits), { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
      let started = 0;
      let err = '';
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
        if (!started && err.includes('SAVE_START')) {
          started = Date.now();
          if (killAfterMs !== undefined) setTimeout(() => child.kill('SIGKILL'), killAfterMs);
        }
      });
      child.on('error', reject);
      child.on('exit', (code, signal) => {
        if (code !== 0 && signal === null) reject(new Error(`quantkit quantize failed (${code}): ${err}`));
        else resolve({ code, signal, saveMs: started ? Date.now() - started : 0 });
      });
    });
  }

  /** The folder loads, names one of the two versions, and runs a forward to finite logits. */
  function checkLoadable(): number {
    const { model } = loadModelSync(OUT);
    const logits = model.forward([1, 403, 407], model.createCache()).data as Float32Array;
    expect(logits.every((v) => Number.isFinite(v))).toBe(true);
    const bits = JSON.parse(fs.readFileSync(path.join(OUT, 'config.json'), 'utf8')).quantization_config.bits as number;
    expect([4, 8]).toContain(bits);
    return bits;
  }

  it(`leaves a loadable folder after each of ${TRIALS} kills, and the next save cleans up`, async () => {
    const first = await runCli(8);
    expect(first.signal).toBeNull();
    // a whole save with the slowed file system, to spread the kills over it
    const full = await runCli(4);
    const span = Math.max(full.saveMs, 50);
    let seed = 12345;
    const rand = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
    const seen = { killed: 0, finished: 0, newVersion: 0, leftovers: 0 };
    let bitsNow = 4;
    for (let trial = 0; trial < TRIALS; trial++) {
      const want = bitsNow === 4 ? 8 : 4; // each trial tries to replace the version there
      const r = await runCli(want, Math.floor(rand() * span * 1.2));
      if (r.signal === 'SIGKILL') seen.killed++;
      else seen.finished++;
      bitsNow = checkLoadable();
      if (bitsNow === want) seen.newVersion++;
      seen.leftovers += siblings(OUT).length;
    }
    console.log(`kill -9 during save: ${JSON.stringify(seen)} (save span ${span} ms)`);
    expect(seen.killed).toBeGreaterThanOrEqual(TRIALS / 2);
    await runCli(8);
    expect(checkLoadable()).toBe(8);
    expect(siblings(OUT)).toEqual([]);
  });
});
