// Durable file writes: a reader (or a restart after kill -9) sees either the old file or the
// complete new one, never a torn write. Temp file in the same folder, fsync, rename, fsync the
// folder so the rename itself survives a crash.
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export const TMP_MARK = '.tmp-';

/**
 * A fresh temp name beside `path` (same folder, so the final rename stays on one filesystem):
 * `<name>.tmp-<pid>-<8 hex>`, naming the process that writes it, so a later one can tell a temp
 * whose writer was killed from one still being written (removeStaleTempsBeside).
 */
export function tempPath(path: string): string {
  return join(dirname(path), `${basename(path)}${TMP_MARK}${process.pid}-${randomBytes(4).toString('hex')}`);
}

/**
 * Removes what killed writers left beside `path`: `<name>.tmp-*`, files or folders (a copy as
 * big as what it was writing, a backup's copies of the secrets). One that names a live process
 * other than this one is still being written and stays; one with no pid (an older Murmur's) has
 * no writer left to ask after. Returns the names removed.
 */
export function removeStaleTempsBeside(path: string): string[] {
  const dir = dirname(path);
  const prefix = basename(path) + TMP_MARK;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const removed: string[] = [];
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const pid = /^(\d+)-/.exec(name.slice(prefix.length))?.[1];
    if (pid !== undefined && (Number(pid) === process.pid || alive(Number(pid)))) continue;
    rmSync(join(dir, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

export function writeFileAtomic(path: string, data: Uint8Array, mode = 0o644): void {
  writeFilesAtomic([[path, data]], mode);
}

/**
 * Several files that belong together (e.g. an export's model and config), all or nothing: every
 * file is written and fsynced under a temp name first; only when all are complete are they
 * renamed into place. A failure before that removes the temps and leaves the old files as they
 * were. The old files are removed before the first rename: a process killed between the renames
 * leaves some of the new files and none of the old, never a new file beside an old one it does
 * not belong with (a model beside another model's config). Temps a killed writer left are removed
 * first.
 */
export function writeFilesAtomic(files: [path: string, data: Uint8Array][], mode = 0o644): void {
  for (const [path] of files) removeStaleTempsBeside(path);
  const temps: string[] = [];
  try {
    for (const [path, data] of files) {
      const tmp = tempPath(path);
      temps.push(tmp);
      const fd = openSync(tmp, 'wx', mode);
      try {
        let off = 0;
        while (off < data.length) off += writeSync(fd, data, off, data.length - off);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    }
    if (files.length > 1) {
      for (const [path] of files) {
        try { unlinkSync(path); } catch (err) { if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err; }
      }
    }
  } catch (err) {
    for (const t of temps) { try { unlinkSync(t); } catch { /* never created */ } }
    throw err;
  }
  files.forEach(([path], i) => renameSync(temps[i]!, path));
  for (const dir of new Set(files.map(([p]) => dirname(p)))) fsyncDir(dir);
}

/**
 * writeFileAtomic without blocking the event loop: the writes, fsyncs and rename run on libuv's
 * thread pool. `data` may be a list of pieces, written in order. For checkpoints (hundreds of MB
 * for the larger presets), so heartbeats, signals and reports keep flowing while one is written.
 */
/**
 * `durable: false` skips the fsyncs, for files that can be made again from durable ones (a
 * checkpoint's derived downloads): still never torn for a reader while the process runs.
 */
export async function writeFileAtomicAsync(path: string, data: Uint8Array | Uint8Array[], mode = 0o644, durable = true): Promise<void> {
  const tmp = tempPath(path);
  const fh = await open(tmp, 'wx', mode);
  try {
    // Pieces are written in order (e.g. a safetensors header, then views of each tensor).
    for (const piece of Array.isArray(data) ? data : [data]) {
      let off = 0;
      while (off < piece.length) off += (await fh.write(piece, off, piece.length - off)).bytesWritten;
    }
    if (durable) await fh.sync();
  } catch (err) {
    await fh.close();
    await unlink(tmp).catch(() => { /* already gone */ });
    throw err;
  }
  await fh.close();
  await rename(tmp, path);
  if (!durable) return;
  const dir = await open(dirname(path), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

export function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Removes temp files a crash left behind in `dir`; returns how many. `of`: only the temps of that
 * file name (`<of>.tmp-*`), for a folder shared with files this process does not own. Only plain
 * files: a folder or link named like a temp is not one this module wrote.
 */
export function removeStaleTemps(dir: string, of?: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (!e.isFile()) continue;
    if (of === undefined ? e.name.includes(TMP_MARK) : e.name.startsWith(of + TMP_MARK)) {
      try {
        unlinkSync(join(dir, e.name));
        n++;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err; // removed meanwhile
      }
    }
  }
  return n;
}

/**
 * Runs `fn` holding the lock `path` (a directory: mkdir is atomic), so processes that share a
 * folder (test files building the web app at once) take turns. A lock whose holder process is
 * gone is taken over; one held longer than `timeoutMs` is an error naming the lock to remove.
 */
export async function withDirLock<T>(path: string, fn: () => Promise<T>, opts: { pollMs?: number; timeoutMs?: number } = {}): Promise<T> {
  const end = Date.now() + (opts.timeoutMs ?? 600_000);
  for (;;) {
    try {
      mkdirSync(path);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let holder = NaN;
    try { holder = Number(readFileSync(join(path, 'pid'), 'utf8')); } catch { /* not written yet: held */ }
    if (Number.isInteger(holder) && holder > 0 && !alive(holder)) {
      rmSync(path, { recursive: true, force: true });
      continue;
    }
    if (Date.now() > end) throw new Error(`${path} is still locked${Number.isInteger(holder) ? ` by process ${holder}` : ''}; remove it if no build is running`);
    await new Promise((r) => setTimeout(r, opts.pollMs ?? 200));
  }
  try {
    writeFileSync(join(path, 'pid'), String(process.pid));
    return await fn();
  } finally {
    rmSync(path, { recursive: true, force: true });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
