// Issue 16: `murmur export` finds a checkpoint by the `<id>.json` records beside the files; each
// is read through the schema the coordinator writes it by, and a damaged one is named. "latest"
// is the checkpoint the coordinator offers, read from its database.
import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkpointInfo, resolveCheckpoint } from '../src/commands/export.ts';
import { encodeCheckpoint } from '../server/checkpoints.ts';
import { preset, trainConfig } from '../src/model/config.ts';
import { buildLayout } from '../src/model/layout.ts';
import { initParams } from '../src/model/init.ts';
import type { RunInfo } from '../src/protocol/messages.ts';
import { murmurCli } from './support/murmur-cli.ts';
import { startServer } from './support/coordinator.ts';
import { stateCheckBatchCount } from '../src/data/sampler.ts';
import { readSafetensors } from '../src/model/safetensors.ts';

const dirs: string[] = [];
afterEach(() => { for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true }); });

describe('export: checkpoint records', () => {
  it('reads a record as the coordinator wrote it and names the field of a damaged one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'murmur-export-'));
    dirs.push(dir);
    const info = {
      id: 's10-000000ab', runId: 'default', step: 10, round: 1, valLoss: null, tokens: 1024, peerId: null,
      sha256: '0'.repeat(64), bytes: 9, file: 's10-000000ab.safetensors', createdAt: 5000,
    };
    const at = (name: string, v: unknown) => { writeFileSync(join(dir, name), typeof v === 'string' ? v : JSON.stringify(v)); return join(dir, name); };
    expect(checkpointInfo(at('s10-000000ab.json', info))).toEqual(info);
    // Before, each was cast: createdAt "soon" sorted as NaN, a `file` path was joined as given.
    expect(() => checkpointInfo(at('a.json', { ...info, createdAt: 'soon' }))).toThrow(`${join(dir, 'a.json')}.createdAt must be number, got "soon"`);
    expect(() => checkpointInfo(at('b.json', { ...info, file: '../../etc/passwd' }))).toThrow(`${join(dir, 'b.json')}.file does not match`);
    expect(() => checkpointInfo(at('c.json', '{"id": '))).toThrow(`${join(dir, 'c.json')} is not JSON`);
  });
});

describe('export: finding a checkpoint by id or "latest"', () => {
  const record = (id: string, createdAt: number) => ({
    id, runId: 'default', step: 10, round: 1, valLoss: null, tokens: 1024, peerId: null,
    sha256: '0'.repeat(64), bytes: 9, file: `${id}.safetensors`, createdAt,
  });
  const dataDir = () => {
    const d = mkdtempSync(join(tmpdir(), 'murmur-export-'));
    dirs.push(d);
    const run = join(d, 'checkpoints', 'default');
    mkdirSync(run, { recursive: true });
    writeFileSync(join(run, 's10-0000000a.json'), JSON.stringify(record('s10-0000000a', 1000)));
    writeFileSync(join(run, 's10-0000000b.json'), JSON.stringify(record('s10-0000000b', 2000)));
    // A damaged record, as the coordinator names and leaves it, and the newest by name.
    writeFileSync(join(run, 's20-0000000c.json'), '{"id": "s20-0000000c", ');
    return { d, run };
  };

  it('by id reads only that checkpoint\'s record: a damaged one of another stands in no way', async () => {
    const { d, run } = dataDir();
    expect(await resolveCheckpoint('s10-0000000a', d, 'default')).toEqual({ file: join(run, 's10-0000000a.safetensors'), record: { sha256: '0'.repeat(64), step: 10 } });
    await expect(resolveCheckpoint('s20-0000000c', d, 'default')).rejects.toThrow(`${join(run, 's20-0000000c.json')} is not JSON`);
    await expect(resolveCheckpoint('s30-0000000d', d, 'default')).rejects.toThrow(`no checkpoint "s30-0000000d" in ${run} (have: s10-0000000a, s10-0000000b, s20-0000000c)`);
    await expect(resolveCheckpoint('../../x', d, 'default')).rejects.toThrow(/^no checkpoint "\.\.\/\.\.\/x" in /);
  });

  it('"latest" needs the coordinator\'s database, which says what it offers: records alone are not enough', async () => {
    const { d } = dataDir();
    await expect(resolveCheckpoint('latest', d, 'default')).rejects.toThrow(`"latest" is the checkpoint the coordinator offers, which its database says, and ${d} holds no murmur.sqlite (set --data-dir); name a checkpoint by its id or its .safetensors file instead`);
  });
});

describe('export: "latest" is the checkpoint the coordinator offers', () => {
  const frame = (run: RunInfo, step: number) => {
    const layout = buildLayout(run.model);
    return { meta: { runId: run.id, step, round: step / 10, floats: layout.total, valLoss: 3.25, tokens: step * 1024 }, phi: initParams(layout, step), momentum: new Float32Array(layout.total) };
  };

  it('not the newest record when the coordinator does not offer it; a clear refusal when it offers none; an id still names any', async () => {
    const d = mkdtempSync(join(tmpdir(), 'murmur-export-'));
    dirs.push(d);
    const s = await startServer({}, {}, d);
    try {
      const run = s.c.runs.get('default')!;
      const batches = stateCheckBatchCount(run.model, run.train);
      // Measured on the run's windows, then a newer one that is not (an older coordinator's
      // upload, or one saved as the run's windows changed): the coordinator offers the older.
      const measured = await s.c.checkpoints.save(run, frame(run, 10), null, Date.now(), batches);
      const unmeasured = await s.c.checkpoints.save(run, frame(run, 20), null, Date.now());
      expect(s.c.checkpoints.latest('default')!.id).toBe(unmeasured.id);
      expect(s.c.checkpoints.current(run)!.id).toBe(measured.id);
      // Read while the coordinator runs, from its database.
      expect(await resolveCheckpoint('latest', d, 'default')).toEqual({ file: s.c.checkpoints.path(measured), record: { sha256: measured.sha256, step: 10 } });
      // The one not offered is still exported when named.
      expect(await resolveCheckpoint(unmeasured.id, d, 'default')).toEqual({ file: s.c.checkpoints.path(unmeasured), record: { sha256: unmeasured.sha256, step: 20 } });
      // The run's windows change: every measurement is forgotten (in the database; the records
      // keep theirs), and nothing is offered until measured again.
      s.c.checkpoints.forgetMeasurements('default');
      expect(s.c.checkpoints.current(run)).toBeNull();
      await expect(resolveCheckpoint('latest', d, 'default')).rejects.toThrow(`run default offers no checkpoint: none of its 2 (newest ${unmeasured.id}) is measured on the run's state check windows (not measured yet, or measured worse than allowed); name a checkpoint by its id or its .safetensors file instead`);
      await expect(resolveCheckpoint('latest', d, 'other')).rejects.toThrow(`no run "other" in ${join(d, 'murmur.sqlite')} (set --run)`);
    } finally {
      await s.close();
    }
  });

  it('murmur export latest writes the offered checkpoint\'s model', async () => {
    const d = mkdtempSync(join(tmpdir(), 'murmur-export-'));
    dirs.push(d);
    const s = await startServer({}, {}, d);
    try {
      const run = s.c.runs.get('default')!;
      await s.c.checkpoints.save(run, frame(run, 10), null, Date.now(), stateCheckBatchCount(run.model, run.train));
      await s.c.checkpoints.save(run, frame(run, 20), null, Date.now());
    } finally {
      await s.close();
    }
    const out = join(d, 'hf');
    const r = murmurCli(['export', 'latest', '--data-dir', d, '--out', out]);
    expect([r.status, r.err]).toEqual([0, '']);
    expect(r.out).toMatch(/\(step 10\) to /);
    expect(readSafetensors(readFileSync(join(out, 'model.safetensors'))).metadata).toMatchObject({ murmur_step: '10' });
  });
});

describe('export: killed part way', () => {
  /** A checkpoint file of `presetName` at `step`. */
  const checkpointFile = (dir: string, presetName: string, step: number): string => {
    const model = preset(presetName);
    const layout = buildLayout(model);
    const train = trainConfig({ batch: 4, lr: 3e-3, warmupSteps: 2, totalSteps: 40 }, model);
    const run = { id: 'x', name: 'x', dataset: 'moby-dick', preset: presetName, model, train, compression: 'none', pairWaitFrac: 0.3, seed: 3, status: 'running', createdAt: 0, updatedAt: 0 } as RunInfo;
    const frame = { meta: { runId: 'x', step, round: 0, floats: layout.total, valLoss: null, tokens: 0 }, phi: initParams(layout, 1), momentum: new Float32Array(layout.total) };
    const f = join(dir, `${presetName}-${step}.safetensors`);
    writeFileSync(f, encodeCheckpoint(run, frame, null, 1));
    return f;
  };

  it('between its renames: never a new model beside the old config; the next export tidies up', () => {
    const dir = mkdtempSync(join(tmpdir(), 'murmur-export-'));
    dirs.push(dir);
    const out = join(dir, 'hf');
    expect(murmurCli(['export', checkpointFile(dir, 'micro', 1), '--out', out]).status).toBe(0);
    const tiny = checkpointFile(dir, 'tiny', 2);
    const killed = murmurCli(['export', tiny, '--out', out], { fn: 'renameSync', match: 'config.json.tmp-' });
    expect(killed.signal).toBe('SIGKILL');
    // The new model is in; the old config is not beside it (a reader is told config.json is missing).
    expect(readdirSync(out).filter((f) => !f.includes('.tmp-'))).toEqual(['model.safetensors']);
    const again = murmurCli(['export', tiny, '--out', out]);
    expect([again.status, again.err]).toEqual([0, '']);
    expect(readdirSync(out).sort()).toEqual(['config.json', 'model.safetensors']);
    expect((JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as { n_embd: number }).n_embd).toBe(preset('tiny').d);
  });

  it('while writing: the model-sized temp it left is removed by the next export', () => {
    const dir = mkdtempSync(join(tmpdir(), 'murmur-export-'));
    dirs.push(dir);
    const out = join(dir, 'hf');
    const tiny = checkpointFile(dir, 'tiny', 3);
    const killed = murmurCli(['export', tiny, '--out', out], { fn: 'openSync', match: 'config.json.tmp-' });
    expect(killed.signal).toBe('SIGKILL');
    expect(readdirSync(out)).toEqual([expect.stringMatching(/^model\.safetensors\.tmp-/)]);
    expect(murmurCli(['export', tiny, '--out', out]).status).toBe(0);
    expect(readdirSync(out).sort()).toEqual(['config.json', 'model.safetensors']);
    expect(existsSync(join(out, 'model.safetensors'))).toBe(true);
  });
});
