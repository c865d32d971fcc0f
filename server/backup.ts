// A consistent copy of a coordinator's data dir, taken while it runs (`murmur backup`). Copying
// the files by hand is not one: the SQLite file without its write-ahead log misses the latest
// commits, and one copied mid-write can be torn. So the database is written by SQLite itself
// (`VACUUM INTO`, one read transaction on a connection of its own: the coordinator keeps
// writing meanwhile, WAL lets both go on), then the files beside it are copied: the secrets
// (0600), every completed checkpoint with its derived downloads (written once and renamed into
// place, so a copy is never torn; temp files and folders skipped), and the prepared datasets
// (symlinks followed). A checkpoint saved after the snapshot is copied and indexed by the restored
// coordinator's start (CheckpointStore.reconcile checks its sha256); one pruned meanwhile is
// skipped and leaves a row that reconcile drops. Everything goes to a folder beside the
// destination, checked (SQLite's integrity check), written to the disk (fsync), then renamed into
// place: a failed backup leaves nothing at the destination.
// Restoring is starting `murmur serve --data-dir <the backup>`.
import { chmodSync, closeSync, constants, copyFileSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, realpathSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve, sep } from 'node:path';
import Database from 'better-sqlite3';
import { ADMIN_TOKEN_FILE, SESSION_SECRET_FILE } from './auth.ts';
import { DB_FILE } from './db.ts';
import { TMP_MARK, removeStaleTempsBeside, tempPath } from './fsutil.ts';

export { DB_FILE };

export interface BackupResult {
  dir: string;
  runs: number;
  reports: number;
  checkpoints: number;
  /** Checkpoint files copied (a checkpoint and its derived downloads). */
  checkpointFiles: number;
  datasetFiles: number;
  bytes: number;
  ms: number;
}

/** A path one of whose names marks work in progress: a temp file or folder, or one set aside to be removed. */
const unfinished = (rel: string) => rel.split(sep).some((name) => name.includes(TMP_MARK) || name.includes('.old-'));

/**
 * Files under `dir`, recursively, relative to it (none when it does not exist), symlinks followed
 * (each folder once: a loop ends), work in progress left out.
 */
function filesUnder(dir: string, rel = '', seen = new Set<string>()): string[] {
  const here = join(dir, rel);
  if (!existsSync(here)) return [];
  const real = realpathSync(here);
  if (seen.has(real)) return [];
  seen.add(real);
  return readdirSync(here).flatMap((name) => {
    const path = rel ? join(rel, name) : name;
    if (unfinished(path)) return [];
    let st;
    try { st = statSync(join(dir, path)); } catch { return []; } // gone meanwhile, or a dangling link
    if (st.isDirectory()) return filesUnder(dir, path, seen);
    return st.isFile() ? [path] : [];
  });
}

/** The real path `p` would have: its nearest existing folder resolved through symlinks, the rest appended. */
function realPathOf(p: string): string {
  let head = p;
  const rest: string[] = [];
  while (!existsSync(head)) {
    rest.unshift(basename(head));
    const up = dirname(head);
    if (up === head) break;
    head = up;
  }
  return join(realpathSync(head), ...rest);
}

/** Writes `path`'s data to the disk (a file or a folder). */
function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try { fsyncSync(fd); } finally { closeSync(fd); }
}

/**
 * Backs `dataDir` up into `dest` (which must not exist, or be an empty folder). `datasets`:
 * also copy the prepared datasets (a restored coordinator serves only the datasets it has).
 */
export function backupDataDir(dataDir: string, dest: string, o: { datasets: boolean } = { datasets: true }): BackupResult {
  const t0 = performance.now();
  const src = resolve(dataDir);
  const out = resolve(dest);
  const dbPath = join(src, DB_FILE);
  if (!existsSync(dbPath)) throw new Error(`${src} holds no ${DB_FILE}: not a coordinator's data dir (--data-dir)`);
  const realSrc = realpathSync(src);
  const realOut = realPathOf(out);
  if (realOut === realSrc || realOut.startsWith(`${realSrc}${sep}`)) throw new Error(`the backup ${out} would be inside the data dir ${src}; choose a folder outside it`);
  if (existsSync(out) && (!statSync(out).isDirectory() || readdirSync(out).length > 0)) {
    throw new Error(`${out} exists and is not an empty folder; a backup goes to a new one`);
  }
  mkdirSync(dirname(out), { recursive: true });
  // A backup killed part way (Ctrl-C, a full disk, a reboot) left its copy beside the destination,
  // the secrets (0600) among it: gone before this one starts.
  removeStaleTempsBeside(out);
  const tmp = tempPath(out);
  mkdirSync(tmp, { mode: 0o700 });
  try {
    // The database first: checkpoints saved after this snapshot are still copied below.
    const live = new Database(dbPath, { readonly: true, fileMustExist: true });
    try {
      live.pragma('busy_timeout = 5000');
      live.prepare('VACUUM INTO ?').run(join(tmp, DB_FILE));
    } finally {
      live.close();
    }
    const copy = new Database(join(tmp, DB_FILE));
    let counts: { runs: number; reports: number; checkpoints: number };
    try {
      const check = copy.pragma('integrity_check', { simple: true });
      if (check !== 'ok') throw new Error(`the database copy fails SQLite's integrity check: ${String(check)}`);
      // Opened in WAL mode by the coordinator that restores it, as openDb does.
      copy.pragma('journal_mode = WAL');
      const n = (table: string) => (copy.prepare(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n;
      counts = { runs: n('runs'), reports: n('reports'), checkpoints: n('checkpoints') };
    } finally {
      copy.close();
    }
    let bytes = statSync(join(tmp, DB_FILE)).size;
    fsyncPath(join(tmp, DB_FILE));
    /** Copies a file; false when it went away since it was listed (a checkpoint pruned meanwhile). */
    const put = (from: string, to: string, mode?: number): boolean => {
      mkdirSync(dirname(to), { recursive: true, mode: 0o700 });
      try {
        copyFileSync(from, to, constants.COPYFILE_FICLONE);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !existsSync(from)) return false;
        throw err;
      }
      if (mode !== undefined) chmodSync(to, mode);
      fsyncPath(to);
      bytes += statSync(to).size;
      return true;
    };
    for (const secret of [ADMIN_TOKEN_FILE, SESSION_SECRET_FILE]) {
      if (existsSync(join(src, secret))) put(join(src, secret), join(tmp, secret), 0o600);
    }
    const ckRoot = join(src, 'checkpoints');
    const checkpointFiles = filesUnder(ckRoot).filter((f) => put(join(ckRoot, f), join(tmp, 'checkpoints', f)));
    const dsRoot = join(src, 'datasets');
    const datasetFiles = o.datasets ? filesUnder(dsRoot).filter((f) => put(join(dsRoot, f), join(tmp, 'datasets', f))) : [];
    const result: BackupResult = {
      dir: out, ...counts, checkpointFiles: checkpointFiles.length, datasetFiles: datasetFiles.length, bytes, ms: 0,
    };
    result.ms = Math.round(performance.now() - t0);
    writeFileSync(join(tmp, 'backup.json'), JSON.stringify({ from: src, at: new Date().toISOString(), ...result, dir: undefined }, null, 2) + '\n');
    fsyncPath(join(tmp, 'backup.json'));
    // Every folder's entries too, deepest first, the backup's own last.
    const dirs = new Set<string>();
    for (const f of filesUnder(tmp)) for (let d = dirname(f); d !== '.'; d = dirname(d)) dirs.add(d);
    for (const d of [...dirs].sort((a, b) => b.length - a.length)) fsyncPath(join(tmp, d));
    fsyncPath(tmp);
    if (existsSync(out)) rmSync(out, { recursive: true }); // the empty folder checked above
    renameSync(tmp, out);
    fsyncPath(dirname(out));
    return result;
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}
