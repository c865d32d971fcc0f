// Hugging Face export of a checkpoint file (used by `murmur export`; the dashboard download
// builds the same two files in routes/checkpoints.ts).
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { CheckpointStore, decodeCheckpoint } from './checkpoints.ts';
import { DB_FILE } from './db.ts';
import { RunStore } from './runs.ts';
import type { CheckpointInfo } from '../src/protocol/api.ts';
import { writeFilesAtomic } from './fsutil.ts';
import { hfGpt2Config, hfModelSafetensors } from '../src/model/hf-export.ts';
import Type from 'typebox';
import { schemaProblem } from '../src/protocol/check.ts';
import { ID_PATTERN } from '../src/protocol/messages.ts';

/** The one field of a checkpoint's `run` metadata the export reads (the rest is the run as it was). */
const RunRef = Type.Object({ id: Type.String({ pattern: ID_PATTERN }) });

/** The id of the run a checkpoint was saved from; '' when it names none. */
function runIdOf(metadata: Record<string, string>): string {
  if (metadata.run === undefined) return '';
  let v: unknown;
  try { v = JSON.parse(metadata.run); } catch { throw new Error('checkpoint metadata run is not JSON'); }
  const problem = schemaProblem(RunRef, v, 'checkpoint metadata run');
  if (problem !== null) throw new Error(problem);
  return (v as { id: string }).id;
}

/** The step a checkpoint's metadata gives: a whole number, or the export is refused. */
function stepOf(file: string, metadata: Record<string, string>): number {
  const s = metadata.step;
  const step = s !== undefined && /^\d{1,16}$/.test(s) ? Number(s) : NaN;
  if (!Number.isSafeInteger(step)) throw new Error(`${file}: checkpoint metadata step ${JSON.stringify(s ?? null)} is not a whole number; not exported`);
  return step;
}

/**
 * Writes `file`'s φ to `outDir`. `record`: what the checkpoint's `<id>.json` says of it. A file
 * whose sha256 differs (damaged on disk, edited) is refused with nothing written, as the
 * coordinator refuses to serve it, and so is one whose step is not the record's: the export
 * would be labelled with a step the coordinator never listed.
 */
export function exportCheckpoint(file: string, outDir: string, record?: { sha256: string; step: number }): { dir: string; step: number } {
  const raw = readFileSync(file);
  if (record !== undefined) {
    const got = createHash('sha256').update(raw).digest('hex');
    if (got !== record.sha256) throw new Error(`${file} has sha256 ${got}, but its record says ${record.sha256}: the file is damaged or was changed; not exported`);
  }
  const c = decodeCheckpoint(raw);
  const step = stepOf(file, c.metadata);
  if (record !== undefined && step !== record.step) throw new Error(`${file} says step ${step} in its metadata, but its record says step ${record.step}; not exported`);
  mkdirSync(outDir, { recursive: true });
  const bytes = hfModelSafetensors(c.layout, c.phi, { murmur_step: String(step), murmur_run: runIdOf(c.metadata) });
  // Both files or neither: a researcher never finds a model without its config (or an old one).
  writeFilesAtomic([
    [join(outDir, 'model.safetensors'), bytes],
    [join(outDir, 'config.json'), new TextEncoder().encode(JSON.stringify(hfGpt2Config(c.model), null, 2) + '\n')],
  ]);
  return { dir: outDir, step };
}

/**
 * The checkpoint of run `runId` that the coordinator of `dataDir` offers newcomers
 * (CheckpointStore.current: the newest measured on the run's state check windows), read from its
 * database without writing to it, with the file it names. The `<id>.json` records cannot say
 * this: a change of the run's windows forgets measurements in the database only, and a checkpoint
 * measured worse than allowed keeps its record. Throws, naming why and how to name one instead,
 * when there is no database, no such run, or no offered checkpoint.
 */
export function offeredCheckpoint(dataDir: string, runId: string): { info: CheckpointInfo; file: string } {
  const path = join(dataDir, DB_FILE);
  const byId = 'name a checkpoint by its id or its .safetensors file instead';
  if (!existsSync(path)) throw new Error(`"latest" is the checkpoint the coordinator offers, which its database says, and ${dataDir} holds no ${DB_FILE} (set --data-dir); ${byId}`);
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    db.pragma('busy_timeout = 5000');
    const run = new RunStore(db, Date.now).get(runId);
    if (!run) throw new Error(`no run "${runId}" in ${path} (set --run)`);
    // Nothing is saved here, so nothing is pruned: `keep` is never used.
    const store = new CheckpointStore(db, join(dataDir, 'checkpoints'), Infinity);
    const info = store.current(run);
    if (!info) {
      const all = store.list(runId);
      throw new Error(all.length === 0
        ? `run ${runId} has no checkpoint`
        : `run ${runId} offers no checkpoint: none of its ${all.length} (newest ${all[0]!.id}) is measured on the run's state check windows (not measured yet, or measured worse than allowed); ${byId}`);
    }
    return { info, file: store.path(info) };
  } finally {
    db.close();
  }
}
