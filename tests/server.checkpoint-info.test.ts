// Issue 16: the `<id>.json` beside a checkpoint file is read back through its schema when the
// coordinator re-indexes after an unclean stop. A record that does not match is left on disk,
// not indexed, and named with the field that is wrong.
import { afterEach, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDb } from '../server/db.ts';
import { RunStore } from '../server/runs.ts';
import { CHECKPOINT_FORMAT, CHECKPOINT_VERSION, CheckpointStore, decodeCheckpoint } from '../server/checkpoints.ts';
import { writeSafetensors } from '../src/model/safetensors.ts';
import { honestState } from './support/states.ts';

const dirs: string[] = [];
afterEach(() => { for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true }); });

function store() {
  const dir = mkdtempSync(join(tmpdir(), 'murmur-ckinfo-'));
  dirs.push(dir);
  const db = openDb(join(dir, 'murmur.sqlite'));
  new RunStore(db, () => 1000).ensureDefault();
  const root = join(dir, 'checkpoints');
  const run = join(root, 'default');
  mkdirSync(run, { recursive: true });
  return { db, checkpoints: new CheckpointStore(db, root, 5), run };
}

/** A checkpoint file and its info record, as save() leaves them, with `over` changed. */
function saved(run: string, id: string, over: Record<string, unknown> = {}) {
  const bytes = Buffer.from(`state of ${id}`);
  writeFileSync(join(run, `${id}.safetensors`), bytes);
  const info = {
    id, runId: 'default', step: 10, round: 1, valLoss: 2.5, tokens: 1024, peerId: 'p-0000000000000001',
    sha256: createHash('sha256').update(bytes).digest('hex'), bytes: bytes.length, file: `${id}.safetensors`, createdAt: 5000, ...over,
  };
  writeFileSync(join(run, `${id}.json`), JSON.stringify(info));
}

describe('checkpoint info read back from disk', () => {
  it('indexes a record that matches its schema and names the field of one that does not', () => {
    const { db, checkpoints, run } = store();
    saved(run, 's10-good');
    saved(run, 's10-bad', { step: -1 });
    saved(run, 's10-padded', { admin: true });
    writeFileSync(join(run, 's10-torn.json'), '{"id": "s10-torn", ');
    const fixed = checkpoints.reconcile();
    expect(fixed.indexed).toBe(1);
    expect(checkpoints.list('default').map((c) => c.id)).toEqual(['s10-good']);
    expect(fixed.unreadable).toEqual(expect.arrayContaining([
      'default/s10-bad.json.step must be >= 0, got -1',
      'default/s10-padded.json.admin is not an allowed field',
      expect.stringMatching(/^default\/s10-torn\.json is not JSON: /),
    ]));
    expect(fixed.unreadable).toHaveLength(3);
    db.close();
  });

  it('never joins a `file` that is a path into the run directory', () => {
    const { db, checkpoints, run } = store();
    saved(run, 's10-escape', { file: '../../murmur.sqlite' });
    const fixed = checkpoints.reconcile();
    expect(fixed.indexed).toBe(0);
    expect(fixed.unreadable).toEqual([expect.stringMatching(/^default\/s10-escape\.json\.file does not match /)]);
    db.close();
  });
});

describe('checkpoint file metadata', () => {
  it('refuses a model config that does not match its schema, naming the field', () => {
    const file = (model?: unknown) => writeSafetensors([], {
      format: CHECKPOINT_FORMAT, version: CHECKPOINT_VERSION, ...(model === undefined ? {} : { model: JSON.stringify(model) }),
    });
    expect(() => decodeCheckpoint(file())).toThrow('checkpoint metadata model must be object, got null');
    expect(() => decodeCheckpoint(file({ vocab: 65, ctx: 8, layers: 1, d: 8, heads: -2 }))).toThrow('checkpoint metadata model.heads must be >= 1, got -2');
    expect(() => decodeCheckpoint(file({ vocab: 65, ctx: 8, layers: 1, d: 8 }))).toThrow('checkpoint metadata model.heads is required');
  });
});

describe('a checkpoint\'s files on disk', () => {
  const saving = async () => {
    const s = store();
    const run = new RunStore(s.db, () => 1000).get('default')!;
    return { ...s, runInfo: run, frame: honestState(run, 0) };
  };
  type Patchable = { writeDerived: (...a: unknown[]) => Promise<void>; load: CheckpointStore['load'] };

  it('a save that fails part way (a full disk) leaves no file, no record and no row behind', async () => {
    const { db, checkpoints, run, runInfo, frame } = await saving();
    // The checkpoint file is written; the derived files fail as a full disk would.
    (checkpoints as unknown as Patchable).writeDerived = async () => { throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }); };
    await expect(checkpoints.save(runInfo, frame, null, 2000, 1)).rejects.toThrow(/ENOSPC/);
    expect(readdirSync(run)).toEqual([]);
    expect(checkpoints.list('default')).toEqual([]);
    db.close();
  });

  it('after a crash, files of a checkpoint with neither a row nor a record are removed; a record keeps its files', () => {
    const { db, checkpoints, run } = store();
    saved(run, 's10-0badc0de', { step: -1 }); // a record that does not read: left, with its file, and named
    for (const f of ['s20-deadbeef.safetensors', 's20-deadbeef.state.bin', 's20-deadbeef.hf-model.bin', 's30-0123abcd.hf-config.bin']) writeFileSync(join(run, f), 'x');
    writeFileSync(join(run, 'notes.txt'), 'not a checkpoint file');
    const fixed = checkpoints.reconcile();
    expect(fixed.orphans).toBe(4);
    expect(readdirSync(run).sort()).toEqual(['notes.txt', 's10-0badc0de.json', 's10-0badc0de.safetensors']);
    db.close();
  });

  it('a download that derives the files of a checkpoint deleted meanwhile is a 404 and leaves no file behind', async () => {
    const { db, checkpoints, run, runInfo, frame } = await saving();
    const info = await checkpoints.save(runInfo, frame, null, 2000, 1);
    // Saved by an older coordinator: no derived files yet.
    for (const f of readdirSync(run).filter((f) => f.endsWith('.bin'))) unlinkSync(join(run, f));
    const p = checkpoints as unknown as Patchable;
    const load = p.load.bind(checkpoints);
    // The admin deletes it after the download read it and before the derived files are written.
    p.load = async (i) => { const l = await load(i); checkpoints.delete(i); return l; };
    const gone = await checkpoints.derived(info, 'state').catch((e: Error & { statusCode?: number }) => e);
    expect(gone).toBeInstanceOf(Error);
    expect([(gone as Error).message, (gone as { statusCode?: number }).statusCode]).toEqual([`checkpoint "${info.id}" of run default was deleted`, 404]);
    expect(readdirSync(run)).toEqual([]);
    db.close();
  });

  it('a derivation that failed is not tried again for a while: each try reads and hashes the whole checkpoint', async () => {
    const { db, checkpoints, run, runInfo, frame } = await saving();
    const info = await checkpoints.save(runInfo, frame, null, 2000, 1);
    for (const f of readdirSync(run).filter((f) => f.endsWith('.bin'))) unlinkSync(join(run, f));
    writeFileSync(join(run, info.file), 'corrupt');
    const p = checkpoints as unknown as Patchable;
    const load = p.load.bind(checkpoints);
    let loads = 0;
    p.load = async (i) => { loads++; return load(i); };
    for (let i = 0; i < 3; i++) await expect(checkpoints.derived(info, 'hfModel')).rejects.toThrow(/does not match its sha256/);
    expect(loads).toBe(1);
    db.close();
  });
});
