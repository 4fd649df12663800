/**
 * Atomic writes: a file (or folder) appears at its final path complete or not
 * at all, and a process killed at any instant (kill -9, power loss after the
 * fsyncs) leaves either the previous version or the new one there, never
 * neither. Content goes to a temporary sibling (same directory, so the final
 * rename never crosses a file system), is fsync'd, then renamed over the
 * target; a folder is swapped in with one atomic exchange where the OS has it.
 * A killed writer's temporaries (`.<name>.tmp-<pid>-<hex>`, and
 * `.<name>.old-<pid>-<hex>` from the two-rename fallback) are recognised by
 * their dead pid and removed by the next write of the same target.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import * as util from 'node:util';
import { randomBytes } from 'node:crypto';
import { addon } from '../binding.js';

/** Temporaries this process is writing right now (never cleaned as leftovers). */
const active = new Set<string>();

/** A hidden sibling name unlikely to collide with a concurrent writer; registered as active. */
function tempSibling(target: string, kind: 'tmp' | 'old'): string {
  const dir = path.dirname(target);
  const base = path.basename(target);
  const p = path.join(dir, `.${base}.${kind}-${process.pid}-${randomBytes(4).toString('hex')}`);
  active.add(p);
  return p;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by someone else
  }
}

export interface Leftover {
  path: string;
  kind: 'tmp' | 'old';
  mtimeMs: number;
}

/**
 * Temporaries of `target` left by writers that are gone: their pid is dead,
 * or it is this process and no write of ours is using them.
 */
export function findLeftovers(target: string): Leftover[] {
  const dir = path.dirname(target);
  const prefix = `.${path.basename(target)}.`;
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const out: Leftover[] = [];
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const m = /^(tmp|old)-(\d+)-[0-9a-f]{8}$/.exec(name.slice(prefix.length));
    if (!m) continue;
    const p = path.join(dir, name);
    const pid = Number(m[2]);
    if (active.has(p) || (pid !== process.pid && pidAlive(pid))) continue;
    let mtimeMs = 0;
    try {
      mtimeMs = fs.lstatSync(p).mtimeMs;
    } catch {
      continue; // removed meanwhile
    }
    out.push({ path: p, kind: m[1] as 'tmp' | 'old', mtimeMs });
  }
  return out;
}

/**
 * Before writing `target`: when an interrupted two-rename swap left no
 * `target` but its previous version aside (`old`), put that back; then remove
 * every leftover. Returns the paths removed (and restored).
 */
export function recoverLeftovers(target: string): { restored?: string; removed: string[] } {
  const left = findLeftovers(target);
  let restored: string | undefined;
  if (!fs.existsSync(target)) {
    const olds = left.filter((l) => l.kind === 'old').sort((a, b) => b.mtimeMs - a.mtimeMs);
    if (olds.length > 0) {
      try {
        fs.renameSync(olds[0]!.path, target);
        restored = olds[0]!.path;
      } catch {
        // someone else restored or wrote it meanwhile; the cleanup below still runs
      }
    }
  }
  const removed: string[] = [];
  for (const l of left) {
    if (l.path === restored) continue;
    fs.rmSync(l.path, { recursive: true, force: true });
    removed.push(l.path);
  }
  return { ...(restored !== undefined ? { restored } : {}), removed };
}

/** Where an interrupted save left the previous version of a missing `target`, if it did. */
export function interruptedSaveHint(target: string): string {
  const olds = findLeftovers(path.resolve(target)).filter((l) => l.kind === 'old');
  if (olds.length === 0) return '';
  return ` (an interrupted save left its previous version at ${olds[0]!.path}; the next save to this path restores it, or rename it back)`;
}

/**
 * fsync the directory so the rename itself is durable. Best effort: Windows
 * and some file systems refuse to open or fsync a directory.
 */
function syncDirSync(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // not supported here; the rename is still atomic, only less durable
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

async function syncDir(dir: string): Promise<void> {
  let h: fsp.FileHandle | undefined;
  try {
    h = await fsp.open(dir, 'r');
    await h.sync();
  } catch {
    // see syncDirSync
  } finally {
    await h?.close();
  }
}

/**
 * Bytes per write of a large file (a multiple of 2 MiB), see alignedChunks.
 * Measured (AMD EPYC Zen 5, Linux 6.18, ext4): a W8A8 checkpoint of the
 * synthetic 12-layer model written a tensor at a time was mapped through
 * 2 MiB entries for 184 of its 266 MB (FilePmdMapped), and its 128-token
 * prompt then ran 67-91 ms against 47-50 ms for the same file read into
 * memory; read back from disk instead (larger page-cache folios) it mapped
 * 233 MB that way and ran 47 ms; written in these pieces, 262-264 MB and
 * 48-55 ms (read into memory: 46-55 ms).
 */
export const WRITE_CHUNK = 8 << 20;

/**
 * The concatenation of `parts` as views of `chunk` bytes each (the last one
 * shorter), so each lands at a multiple of `chunk` in the file. Page-cache
 * folios of a written file are no larger than the writes that made them: a
 * file written a tensor at a time (most of them well under 2 MiB, at
 * unaligned offsets) then sits in small folios, which a mapping reads
 * through 4 KiB entries until the pages are evicted and read back.
 * Whole chunks inside one part are views of it; the others are copied into
 * one staging buffer, so each view must be written before the next is taken.
 */
export function* alignedChunks(parts: readonly Uint8Array[], chunk = WRITE_CHUNK): Generator<Uint8Array> {
  let stage: Uint8Array | undefined;
  let fill = 0;
  for (const part of parts) {
    let off = 0;
    while (off < part.byteLength) {
      if (fill === 0 && part.byteLength - off >= chunk) {
        yield part.subarray(off, off + chunk);
        off += chunk;
        continue;
      }
      stage ??= new Uint8Array(chunk);
      const n = Math.min(chunk - fill, part.byteLength - off);
      stage.set(part.subarray(off, off + n), fill);
      fill += n;
      off += n;
      if (fill === chunk) {
        yield stage;
        fill = 0;
      }
    }
  }
  if (fill > 0) yield stage!.subarray(0, fill);
}

/** Write all of `data` to `fd` (writeSync may write less than asked). */
export function writeAllSync(fd: number, data: Uint8Array): void {
  let off = 0;
  while (off < data.byteLength) off += fs.writeSync(fd, data, off, data.byteLength - off);
}

/**
 * Create `target` atomically: `write(fd)` fills a temporary file, which is then
 * fsync'd and renamed to `target` (replacing any existing file).
 */
export function writeFileAtomicSync(target: string, write: (fd: number) => void): void {
  recoverLeftovers(target);
  const tmp = tempSibling(target, 'tmp');
  try {
    // 'wx' fails on an existing path instead of clobbering someone else's temp;
    // it also throws ENOENT up front when the directory does not exist.
    let fd: number | undefined = fs.openSync(tmp, 'wx', 0o644);
    try {
      write(fd);
      fs.fsyncSync(fd);
      fs.closeSync(fd);
      fd = undefined;
      fs.renameSync(tmp, target);
    } catch (err) {
      if (fd !== undefined) {
        try {
          fs.closeSync(fd);
        } catch {
          // already failing; the original error matters more
        }
      }
      fs.rmSync(tmp, { force: true });
      throw err;
    }
  } finally {
    active.delete(tmp);
  }
  syncDirSync(path.dirname(target));
}

/** Async twin of writeFileAtomicSync; `write` receives an open FileHandle. */
export async function writeFileAtomic(target: string, write: (h: fsp.FileHandle) => Promise<void>): Promise<void> {
  recoverLeftovers(target);
  const tmp = tempSibling(target, 'tmp');
  try {
    let h: fsp.FileHandle | undefined = await fsp.open(tmp, 'wx', 0o644);
    try {
      await write(h);
      await h.sync();
      await h.close();
      h = undefined;
      await fsp.rename(tmp, target);
    } catch (err) {
      await h?.close().catch(() => undefined);
      await fsp.rm(tmp, { force: true });
      throw err;
    }
  } finally {
    active.delete(tmp);
  }
  await syncDir(path.dirname(target));
}

/** fsync every file under `dir`, then `dir` itself (so a rename of `dir` publishes durable contents). */
async function syncTree(dir: string): Promise<void> {
  for (const e of await fsp.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) await syncTree(p);
    else if (e.isFile()) {
      const h = await fsp.open(p, 'r');
      try {
        await h.sync();
      } finally {
        await h.close();
      }
    }
  }
  await syncDir(dir);
}

/** errnos with which the exchange is unsupported here (OS or file system), not failed. */
const NO_EXCHANGE = new Set([os.constants.errno.ENOSYS, os.constants.errno.EINVAL, os.constants.errno.ENOTSUP, os.constants.errno.EOPNOTSUPP]);

function exchangeError(errno: number, a: string, b: string): NodeJS.ErrnoException {
  const code = util.getSystemErrorName(-errno);
  return Object.assign(new Error(`${code}: cannot swap ${a} and ${b}`), { code, errno: -errno, syscall: 'rename', path: a, dest: b });
}

/**
 * Create the folder `target` atomically: `fill(tmpDir)` writes the contents
 * into a temporary sibling folder, which is fsync'd and then takes the name
 * `target`. An existing `target` is replaced by one atomic exchange of the two
 * names (Linux renameat2, macOS renamex_np), so at every instant `target` is
 * the complete old folder or the complete new one; the old one, now under the
 * temporary name, is then removed. Where the exchange is unsupported, the old
 * folder is renamed aside first: a kill between the two renames leaves it at
 * `.<name>.old-*`, and the next write (recoverLeftovers) moves it back.
 */
export async function writeDirAtomic(target: string, fill: (tmpDir: string) => Promise<void>): Promise<void> {
  recoverLeftovers(target);
  const tmp = tempSibling(target, 'tmp');
  let old: string | undefined;
  try {
    await fsp.mkdir(tmp);
    try {
      await fill(tmp);
      await syncTree(tmp);
    } catch (err) {
      await fsp.rm(tmp, { recursive: true, force: true });
      throw err;
    }
    const rc = fs.existsSync(target) ? addon.renameExchange(tmp, target) : -1;
    if (rc === 0) {
      // `tmp` now names the previous version
      await syncDir(path.dirname(target));
      await fsp.rm(tmp, { recursive: true, force: true });
      return;
    }
    if (rc > 0 && !NO_EXCHANGE.has(rc)) {
      await fsp.rm(tmp, { recursive: true, force: true });
      throw exchangeError(rc, tmp, target);
    }
    try {
      if (rc !== -1) {
        old = tempSibling(target, 'old');
        await fsp.rename(target, old);
      }
      await fsp.rename(tmp, target);
    } catch (err) {
      // the second rename failed: put the old folder back where it was
      if (old !== undefined && !fs.existsSync(target)) await fsp.rename(old, target).catch(() => undefined);
      await fsp.rm(tmp, { recursive: true, force: true });
      throw err;
    }
    await syncDir(path.dirname(target));
    if (old !== undefined) await fsp.rm(old, { recursive: true, force: true });
  } finally {
    active.delete(tmp);
    if (old !== undefined) active.delete(old);
  }
}
