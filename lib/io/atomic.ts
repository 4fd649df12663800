/**
 * Atomic writes: a file (or folder) appears at its final path complete or not
 * at all. Content goes to a temporary sibling (same directory, so the final
 * rename never crosses a file system), is fsync'd, then renamed over the
 * target. Any failure removes the temporary, so nothing half-written is left.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';

/** A hidden sibling name unlikely to collide with a concurrent writer. */
function tempSibling(target: string, kind: string): string {
  const dir = path.dirname(target);
  const base = path.basename(target);
  return path.join(dir, `.${base}.${kind}-${process.pid}-${randomBytes(4).toString('hex')}`);
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
  const tmp = tempSibling(target, 'tmp');
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
  syncDirSync(path.dirname(target));
}

/** Async twin of writeFileAtomicSync; `write` receives an open FileHandle. */
export async function writeFileAtomic(target: string, write: (h: fsp.FileHandle) => Promise<void>): Promise<void> {
  const tmp = tempSibling(target, 'tmp');
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
  await syncDir(path.dirname(target));
}

/**
 * Create the folder `target` atomically: `fill(tmpDir)` writes the contents
 * into a temporary sibling folder, which is then renamed to `target`. An
 * existing `target` is replaced: it is first moved aside, and moved back if
 * the swap fails, so readers see either the old folder or the new one.
 */
export async function writeDirAtomic(target: string, fill: (tmpDir: string) => Promise<void>): Promise<void> {
  const tmp = tempSibling(target, 'tmp');
  await fsp.mkdir(tmp);
  try {
    await fill(tmp);
  } catch (err) {
    await fsp.rm(tmp, { recursive: true, force: true });
    throw err;
  }
  let old: string | undefined;
  try {
    if (fs.existsSync(target)) {
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
  if (old !== undefined) await fsp.rm(old, { recursive: true, force: true });
  await syncDir(path.dirname(target));
}
