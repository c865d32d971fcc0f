// Issue 16: the `<id>.json` beside a checkpoint file is read back through its schema when the
// coordinator re-indexes after an unclean stop. A record that does not match is left on disk,
// not indexed, and named with the field that is wrong.
import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDb } from '../server/db.ts';
import { RunStore } from '../server/runs.ts';
import { CHECKPOINT_FORMAT, CHECKPOINT_VERSION, CheckpointStore, DERIVED, decodeCheckpoint } from '../server/checkpoints.ts';
import { writeSafetensors } from '../src/model/safetensors.ts';
import { honestState } from './support/states.ts';
import { stateCheckBatchCount } from '../src/data/sampler.ts';

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
    saved(run, 's10-0000000a');
    saved(run, 's10-0000000b', { step: -1 });
    saved(run, 's10-0000000c', { admin: true });
    writeFileSync(join(run, 's10-0000000d.json'), '{"id": "s10-0000000d", ');
    const fixed = checkpoints.reconcile();
    expect(fixed.indexed).toBe(1);
    expect(checkpoints.list('default').map((c) => c.id)).toEqual(['s10-0000000a']);
    expect(fixed.unreadable).toEqual(expect.arrayContaining([
      'default/s10-0000000b.json.step must be >= 0, got -1',
      'default/s10-0000000c.json.admin is not an allowed field',
      expect.stringMatching(/^default\/s10-0000000d\.json is not JSON: /),
    ]));
    expect(fixed.unreadable).toHaveLength(3);
    db.close();
  });

  it('never joins a `file` that is a path into the run directory', () => {
    const { db, checkpoints, run } = store();
    saved(run, 's10-0000000e', { file: '../../murmur.sqlite' });
    saved(run, 's10-0000000f', { file: '..' });
    // Another checkpoint's file: a name of the right form, but not this record's.
    saved(run, 's10-00000010', { file: 's10-0000000e.safetensors' });
    const fixed = checkpoints.reconcile();
    expect(fixed.indexed).toBe(0);
    expect(fixed.unreadable.sort()).toEqual([
      expect.stringMatching(/^default\/s10-0000000e\.json\.file does not match /),
      expect.stringMatching(/^default\/s10-0000000f\.json\.file does not match /),
      'default/s10-00000010.json.file "s10-0000000e.safetensors" is not s10-00000010.safetensors',
    ]);
    db.close();
  });

  it('drops a row that does not read without touching the file it names, and names it', () => {
    const { db, checkpoints, run } = store();
    const outside = join(run, '..', '..', 'victim.txt');
    writeFileSync(outside, 'an operator file');
    db.prepare(`INSERT INTO checkpoints (id, run_id, step, round, val_loss, tokens, peer_id, sha256, bytes, file, created_at)
      VALUES ('s1-deadbeef', 'default', 1, 0, NULL, 0, NULL, ?, 16, '../../victim.txt', 1)`).run('0'.repeat(64));
    const fixed = checkpoints.reconcile();
    expect([fixed.dropped, fixed.unreadable]).toEqual([1, [expect.stringMatching(/^checkpoint row "s1-deadbeef"\.file does not match .*; row dropped, no file touched$/)]]);
    expect(readFileSync(outside, 'utf8')).toBe('an operator file');
    // Nor is a row that gets past start a way to name a file elsewhere.
    expect(() => checkpoints.path({ ...checkpoints.list('default')[0]!, id: 's1-deadbeef', file: '../../victim.txt' } as never)).toThrow();
    expect(() => checkpoints.path({ id: 's1-deadbeef', runId: 'default', file: '../../victim.txt' } as never))
      .toThrow(/names file "\.\.\/\.\.\/victim\.txt", not its own s1-deadbeef\.safetensors in .*; refused$/);
    db.close();
  });

  it('names a record whose file is short or does not match its sha256, and one that cannot be read; indexes none of them', () => {
    const { db, checkpoints, run } = store();
    saved(run, 's10-00000001');
    saved(run, 's10-00000002');
    saved(run, 's10-00000003');
    writeFileSync(join(run, 's10-00000001.safetensors'), 'short');
    writeFileSync(join(run, 's10-00000002.safetensors'), 'state of s10-0000000X'); // same size, other bytes
    mkdirSync(join(run, 's10-00000004.json')); // a folder where a record should be
    const fixed = checkpoints.reconcile();
    expect(fixed.indexed).toBe(1);
    expect(checkpoints.list('default').map((c) => c.id)).toEqual(['s10-00000003']);
    expect(fixed.unreadable.sort()).toEqual([
      'default/s10-00000001.safetensors is 5 bytes, but its record default/s10-00000001.json says 21 (truncated or replaced); not indexed',
      'default/s10-00000002.safetensors does not match the sha256 in default/s10-00000002.json (damaged on disk); not indexed',
      expect.stringMatching(/^default\/s10-00000004\.json could not be read: EISDIR/),
    ]);
    db.close();
  });

  it('a row whose file is not its size is dropped from the index, its files left and named', () => {
    const { db, checkpoints, run } = store();
    saved(run, 's10-00000005');
    expect(checkpoints.reconcile().indexed).toBe(1);
    writeFileSync(join(run, 's10-00000005.safetensors'), 'short');
    const fixed = checkpoints.reconcile();
    expect([fixed.dropped, fixed.unreadable]).toEqual([1, ['default/s10-00000005.safetensors is 5 bytes, but its row says 21 (truncated or replaced); not offered']]);
    expect(checkpoints.list('default')).toEqual([]);
    expect(readdirSync(run).sort()).toEqual(['s10-00000005.json', 's10-00000005.safetensors']);
    db.close();
  });

  it('skips what is not a run folder beside the run folders', () => {
    const { db, checkpoints, run } = store();
    const root = join(run, '..');
    writeFileSync(join(root, '.DS_Store'), 'x');
    mkdirSync(join(root, 'Not A Run'));
    symlinkSync(join(root, '..'), join(root, 'linked'));
    saved(run, 's10-00000006');
    expect(checkpoints.reconcile()).toMatchObject({ indexed: 1, unreadable: [] });
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

  it('a save whose row cannot be written (a full disk under the database) leaves no file behind either', async () => {
    const { db, checkpoints, run, runInfo, frame } = await saving();
    // Every file is written; SQLite then finds no room for the row.
    (checkpoints as unknown as { insert: () => void }).insert = () => { throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' }); };
    await expect(checkpoints.save(runInfo, frame, null, 2000, 1)).rejects.toThrow(/disk is full/);
    expect(readdirSync(run)).toEqual([]);
    // Nor does the next start index it from a record left behind: the upload was answered with an error.
    expect(checkpoints.reconcile().indexed).toBe(0);
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

  it('after a crash, a derived download cut short (written without fsync) is derived again, never served cut', async () => {
    const { db, checkpoints, run, runInfo, frame } = await saving();
    const info = await checkpoints.save(runInfo, frame, null, 2000, 1);
    const whole = new Map<string, Buffer>();
    for (const kind of ['state', 'hfModel', 'hfConfig'] as const) whole.set(kind, readFileSync(await checkpoints.derived(info, kind)));
    // What a machine crash can leave of files renamed into place before their data reached the
    // disk: the first part of each, not only nothing.
    for (const kind of ['state', 'hfModel', 'hfConfig'] as const) {
      const path = join(run, DERIVED[kind](info.id));
      writeFileSync(path, whole.get(kind)!.subarray(0, Math.floor(whole.get(kind)!.length / 2)));
    }
    const fixed = checkpoints.reconcile();
    for (const kind of ['state', 'hfModel', 'hfConfig'] as const) {
      const served = readFileSync(await checkpoints.derived(info, kind));
      expect(served.equals(whole.get(kind)!), `${kind}: ${served.length} bytes served of ${whole.get(kind)!.length}`).toBe(true);
    }
    expect(fixed).toMatchObject({ indexed: 0, dropped: 0, unreadable: [], rederived: 3 });
    // Whole ones are left as they are.
    expect(checkpoints.reconcile()).toMatchObject({ rederived: 0 });
    db.close();
  });

  it('a checkpoint saved after the clock went back is still the newest: kept, offered, the others pruned', async () => {
    const { db, checkpoints, runInfo, frame } = await saving();
    const older = [];
    const measuredOn = stateCheckBatchCount(runInfo.model, runInfo.train);
    for (let i = 0; i < checkpoints.keep; i++) older.push(await checkpoints.save(runInfo, { ...frame, meta: { ...frame.meta, step: 10 * i } }, null, 10_000 + i, measuredOn));
    // The machine's clock was set back an hour (an NTP step) before the next upload.
    const info = await checkpoints.save(runInfo, { ...frame, meta: { ...frame.meta, step: 100 } }, null, 10_000 - 3_600_000, measuredOn);
    expect(checkpoints.get('default', info.id), 'the checkpoint just saved and acknowledged').not.toBeNull();
    expect(checkpoints.latest('default')?.id).toBe(info.id);
    expect(checkpoints.current(runInfo)?.id).toBe(info.id);
    expect(checkpoints.list('default').map((c) => c.id)).toEqual([info.id, ...older.slice(1).map((c) => c.id).reverse()]);
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

  it('derives one checkpoint at a time, however many downloads ask for different ones: each holds a few copies of its checkpoint', async () => {
    const { db, checkpoints, run, runInfo, frame } = await saving();
    const infos = [];
    for (let i = 0; i < 3; i++) infos.push(await checkpoints.save(runInfo, { ...frame, meta: { ...frame.meta, step: 10 * i } }, null, 2000 + i, 1));
    // Saved by an older coordinator, or cut short by a crash: no derived files.
    for (const f of readdirSync(run).filter((f) => f.endsWith('.bin'))) unlinkSync(join(run, f));
    const p = checkpoints as unknown as Patchable;
    const load = p.load.bind(checkpoints);
    const writeDerived = p.writeDerived.bind(checkpoints);
    let now = 0, most = 0;
    // From the read of the whole checkpoint to its derived files written: its copies are held.
    p.load = async (i) => { most = Math.max(most, ++now); return load(i); };
    p.writeDerived = async (...a) => { try { await writeDerived(...a); } finally { now--; } };
    const paths = await Promise.all(infos.flatMap((info) => [checkpoints.derived(info, 'hfModel'), checkpoints.derived(info, 'state')]));
    expect(paths).toHaveLength(6);
    expect(most).toBe(1);
    db.close();
  });

  it('an export asked for while a remeasure rewrites the checkpoint\'s state is derived, not answered with a file that is not there', async () => {
    const { db, checkpoints, run, runInfo, frame } = await saving();
    const info = await checkpoints.save(runInfo, frame, null, 2000);
    // Saved by an older coordinator: no derived files, its loss not measured here. At start the
    // remeasure pass measures it and rewrites its bootstrap state, while a download asks for its export.
    for (const f of readdirSync(run).filter((f) => f.endsWith('.bin'))) unlinkSync(join(run, f));
    const loaded = await checkpoints.load(info);
    const remeasured = checkpoints.remeasured(info, 3.25, 1, loaded);
    const [model, config] = await Promise.all([checkpoints.derived(info, 'hfModel'), checkpoints.derived(info, 'hfConfig')]);
    await remeasured;
    expect(existsSync(model), 'model.safetensors to serve').toBe(true);
    expect(existsSync(config), 'config.json to serve').toBe(true);
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
