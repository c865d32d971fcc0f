// Issue 16: the `<id>.json` beside a checkpoint file is read back through its schema when the
// coordinator re-indexes after an unclean stop. A record that does not match is left on disk,
// not indexed, and named with the field that is wrong.
import { afterEach, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDb } from '../server/db.ts';
import { RunStore } from '../server/runs.ts';
import { CHECKPOINT_FORMAT, CHECKPOINT_VERSION, CheckpointStore, decodeCheckpoint } from '../server/checkpoints.ts';
import { writeSafetensors } from '../src/model/safetensors.ts';

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
    expect(() => decodeCheckpoint(file({ vocab: 65, ctx: 8, layers: 1, d: 8, heads: -2 }))).toThrow('checkpoint metadata model.heads must be >= 0, got -2');
    expect(() => decodeCheckpoint(file({ vocab: 65, ctx: 8, layers: 1, d: 8 }))).toThrow('checkpoint metadata model.heads is required');
  });
});
