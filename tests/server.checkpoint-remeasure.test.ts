// A checkpoint an older coordinator stored with the uploading peer's CLAIMED loss (before it
// measured uploads) or with a loss measured on other windows is not offered to newcomers, nor
// used as the next upload's bound, until this coordinator has measured it itself, which it does
// in the background when it starts (server/checkpoint-remeasure.ts). Without that, a claimed
// 0.02 would be every newcomer's bound (maxStateLoss), and every honest state would fail it.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { measuredForRun } from '../server/checkpoints.ts';
import { remeasureCheckpoints } from '../server/checkpoint-remeasure.ts';
import { EvaluatorBusyError, type CheckpointEvaluator } from '../server/checkpoint-validate.ts';
import type { RunStore } from '../server/runs.ts';
import { stateCheckBatchCount } from '../src/data/sampler.ts';
import type { RunInfo } from '../src/protocol/messages.ts';
import { decodeStateFrame } from '../src/protocol/state-frame.ts';
import { RawPeer, startServer, until, type TestServer } from './support/coordinator.ts';
import { honestState, valLoss } from './support/states.ts';

const dataDir = mkdtempSync(join(tmpdir(), 'murmur-remeasure-'));
const open: TestServer[] = [];
const peers: RawPeer[] = [];
afterAll(async () => {
  for (const p of peers) p.close();
  for (const s of open) await s.close();
  rmSync(dataDir, { recursive: true, force: true });
});

async function server(): Promise<TestServer> {
  const s = await startServer({}, {}, dataDir);
  open.push(s);
  return s;
}

/** A coordinator on a data dir of its own (closed after the tests). */
async function fresh(): Promise<TestServer> {
  const s = await startServer();
  open.push(s);
  return s;
}

/** A `micro` run on `s`, created through the admin API. */
async function newRun(s: TestServer, id: string): Promise<RunInfo> {
  const created = await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id, dataset: 'moby-dick', preset: 'micro', train: { H: 10 } } });
  expect(created.statusCode).toBe(201);
  return created.json() as RunInfo;
}

async function welcomeCheckpoint(s: TestServer, run: string) {
  const { peer, welcome } = await RawPeer.join(s.wsUrl, { run });
  peers.push(peer);
  return welcome.checkpoint;
}

describe('checkpoints stored by an older coordinator', () => {
  it('are offered only once measured: an honest one with its measured loss, never one worse than guessing', async () => {
    // The data dir an older coordinator left: two checkpoints with the peers' claims, no measurement.
    const first = await server();
    const run = await newRun(first, 'legacy');
    const honest = honestState(run, 30);
    const garbage = honest.phi.map((_, i) => 3 * Math.sin(i * 12.9898));
    const older = await first.c.checkpoints.save(run, { ...honest, meta: { ...honest.meta, valLoss: 0.01 } }, 'p-old', 1000);
    const newer = await first.c.checkpoints.save(run, { meta: { ...honest.meta, step: 40, valLoss: 0.02 }, phi: garbage, momentum: honest.momentum }, 'p-old', 2000);
    for (const c of [older, newer]) expect(measuredForRun(c, run)).toBe(false);
    // Not offered even by the coordinator that stored them: neither was measured.
    expect(first.c.checkpoints.current(run)).toBeNull();
    expect(await welcomeCheckpoint(first, 'legacy')).toBeNull();
    // Its bootstrap state is still downloadable, with the claimed loss in it, under this ETag.
    const stale = await fetch(`${first.url}/api/runs/legacy/checkpoints/${older.id}/state`);
    expect(stale.status).toBe(200);
    expect(decodeStateFrame(new Uint8Array(await stale.arrayBuffer())).meta.valLoss).toBe(0.01);
    const staleTag = stale.headers.get('etag')!;
    await first.c.remeasured;
    await first.close();
    open.length = 0;

    // The next start measures both: the honest one is offered with what it measures, the garbage
    // one (newest, claiming 0.02) measures worse than guessing and is never offered.
    const s = await server();
    expect(await s.c.remeasured).toEqual({ measured: 1, refused: 1 });
    const measured = valLoss(run, honest.phi);
    expect(measured).toBeGreaterThan(1);
    const list = s.c.checkpoints.list('legacy');
    expect(list.map((c) => [c.id, c.valLoss, c.valBatches])).toEqual([
      [newer.id, 0.02, undefined],
      [older.id, measured, stateCheckBatchCount(run.model, run.train)],
    ]);
    const offered = await welcomeCheckpoint(s, 'legacy');
    expect(offered).toMatchObject({ id: older.id, valLoss: measured });
    // Its record on disk and its bootstrap state frame say the measured loss too.
    const dir = s.c.checkpoints.dir('legacy');
    expect(JSON.parse(readFileSync(join(dir, `${older.id}.json`), 'utf8'))).toMatchObject({ valLoss: measured, valBatches: 4 });
    const res = await fetch(`${s.url}${offered!.stateUrl}`);
    expect(res.status).toBe(200);
    expect(decodeStateFrame(new Uint8Array(await res.arrayBuffer())).meta.valLoss).toBe(measured);
    // The frame changed, so its ETag did: a cache or a resumed download holding the old frame
    // (If-None-Match, If-Range) gets the new one, and no cache keeps a frame without asking.
    expect(res.headers.get('etag')).not.toBe(staleTag);
    expect(res.headers.get('cache-control')).toBe('public, no-cache');
    const revalidated = await fetch(`${s.url}${offered!.stateUrl}`, { headers: { 'if-none-match': staleTag } });
    expect(revalidated.status).toBe(200);
    expect(decodeStateFrame(new Uint8Array(await revalidated.arrayBuffer())).meta.valLoss).toBe(measured);
    // A third start measures nothing again.
    await s.close();
    open.length = 0;
    const again = await server();
    expect(await again.c.remeasured).toEqual({ measured: 0, refused: 1 });
  });

  it('waits while the evaluator is busy, goes on past a checkpoint it cannot measure, stops once the evaluator closes', async () => {
    const s = await fresh();
    const run = await newRun(s, 'legacy-2');
    const st = honestState(run, 2);
    const a = await s.c.checkpoints.save(run, { ...st, meta: { ...st.meta, valLoss: 0.01 } }, 'p-old', 1000);
    const b = await s.c.checkpoints.save(run, { ...st, meta: { ...st.meta, step: 4, valLoss: 0.01 } }, 'p-old', 2000);
    const logger = { info() {}, warn() {}, error() {} } as unknown as Parameters<typeof remeasureCheckpoints>[0]['logger'];
    // Busy once, then 3.25 for b (the newest, measured first); a's run "has no validation file".
    const calls: string[] = [];
    let closed = false;
    const evaluator = {
      get closed() { return closed; },
      async measure() {
        calls.push('measure');
        if (calls.length === 1) throw new EvaluatorBusyError('busy');
        if (calls.length === 3) throw new Error('run legacy-2: dataset moby-dick has no validation file to measure on');
        return { val: 3.25, train: 3.3 };
      },
    } as unknown as CheckpointEvaluator;
    const runs = { list: () => [run], get: () => run } as unknown as RunStore;
    expect(await remeasureCheckpoints({ runs, checkpoints: s.c.checkpoints, evaluator, logger }, 1)).toEqual({ measured: 1, refused: 1 });
    expect(calls).toHaveLength(3);
    expect(s.c.checkpoints.list('legacy-2').map((c) => [c.id, c.valLoss, c.valBatches])).toEqual([[b.id, 3.25, 4], [a.id, 0.01, undefined]]);
    // A closed evaluator: nothing more is measured.
    closed = true;
    expect(await remeasureCheckpoints({ runs, checkpoints: s.c.checkpoints, evaluator, logger }, 1)).toEqual({ measured: 0, refused: 0 });
    expect(calls).toHaveLength(3);
  });

  it('leaves unoffered a stored checkpoint that scores the validation text far better than the training text', async () => {
    const s = await fresh();
    const run = await newRun(s, 'legacy-4');
    const st = honestState(run, 2);
    await s.c.checkpoints.save(run, { ...st, meta: { ...st.meta, valLoss: 0.01 } }, 'p-old', 1000);
    const warned: string[] = [];
    const logger = { info() {}, warn(o: { reason?: string }) { warned.push(o.reason ?? ''); }, error() {} } as unknown as Parameters<typeof remeasureCheckpoints>[0]['logger'];
    const evaluator = { closed: false, async measure() { return { val: 1.0, train: 2.9 }; } } as unknown as CheckpointEvaluator;
    const runs = { list: () => [run], get: () => run } as unknown as RunStore;
    expect(await remeasureCheckpoints({ runs, checkpoints: s.c.checkpoints, evaluator, logger }, 1)).toEqual({ measured: 0, refused: 1 });
    expect(warned).toEqual([expect.stringMatching(/2\.9000 on the training text and 1\.0000 on the validation text/)]);
    expect(s.c.checkpoints.current(run)).toBeNull();
  });

  it('records no measurement taken on windows the run changed while it was measured: the pass the change queued measures it', async () => {
    const s = await fresh();
    const run = await newRun(s, 'legacy-5');
    const st = honestState(run, 2);
    await s.c.checkpoints.save(run, { ...st, meta: { ...st.meta, valLoss: 0.01 } }, 'p-old', 1000);
    const logger = { info() {}, warn() {}, error() {} } as unknown as Parameters<typeof remeasureCheckpoints>[0]['logger'];
    // The admin sets seqLen 16 while the checkpoint is measured on 32: the same number of batches.
    let current = run;
    const resized: RunInfo = { ...run, train: { ...run.train, seqLen: 16 } };
    expect(stateCheckBatchCount(resized.model, resized.train)).toBe(stateCheckBatchCount(run.model, run.train));
    const evaluator = { closed: false, async measure() { current = resized; return { val: 3.25, train: 3.3 }; } } as unknown as CheckpointEvaluator;
    const runs = { list: () => [current], get: () => current } as unknown as RunStore;
    expect(await remeasureCheckpoints({ runs, checkpoints: s.c.checkpoints, evaluator, logger }, 1)).toEqual({ measured: 0, refused: 0 });
    expect(s.c.checkpoints.current(resized)).toBeNull();
    // The next pass measures it on the run as it is now.
    expect(await remeasureCheckpoints({ runs, checkpoints: s.c.checkpoints, evaluator, logger }, 1)).toEqual({ measured: 1, refused: 0 });
    expect(s.c.checkpoints.current(resized)).toMatchObject({ valLoss: 3.25 });
  });

  it('a checkpoint deleted while it was measured leaves no record or state file behind', async () => {
    const s = await fresh();
    const run = await newRun(s, 'legacy-3');
    const st = honestState(run, 2);
    const info = await s.c.checkpoints.save(run, { ...st, meta: { ...st.meta, valLoss: 0.01 } }, 'p-old', 1000);
    const loaded = await s.c.checkpoints.load(info);
    const dir = s.c.checkpoints.dir('legacy-3');
    s.c.checkpoints.delete(info);
    expect(await s.c.checkpoints.remeasured(info, 3.25, 4, loaded)).toBeNull();
    expect(readdirSync(dir)).toEqual([]);
    // Deleted during the writes: what they wrote is removed again.
    const again = await s.c.checkpoints.save(run, { ...st, meta: { ...st.meta, valLoss: 0.01 } }, 'p-old', 2000);
    const writing = s.c.checkpoints.remeasured(again, 3.25, 4, await s.c.checkpoints.load(again));
    s.c.checkpoints.delete(again);
    expect(await writing).toBeNull();
    expect(readdirSync(dir)).toEqual([]);
  });

  it('a run whose batch changes has its checkpoints measured again on the new windows', async () => {
    const s = await fresh();
    const run = await newRun(s, 'resized');
    const st = honestState(run, 10);
    const before = valLoss(run, st.phi);
    const info = await s.c.checkpoints.save(run, { ...st, meta: { ...st.meta, valLoss: before } }, 'p-1', 1000, stateCheckBatchCount(run.model, run.train));
    expect(s.c.checkpoints.current(run)?.id).toBe(info.id);
    const patched = await s.c.app.inject({ method: 'PATCH', url: '/api/runs/resized', headers: s.admin, payload: { train: { batch: 4 } } });
    expect(patched.statusCode).toBe(200);
    const resized = s.c.runs.get('resized')!;
    const after = valLoss(resized, st.phi);
    expect(after).not.toBe(before);
    await until(() => s.c.checkpoints.list('resized')[0]!.valLoss === after, 30_000, 'the checkpoint measured on the new windows');
    expect(s.c.checkpoints.current(resized)).toMatchObject({ id: info.id, valLoss: after, valBatches: stateCheckBatchCount(resized.model, resized.train) });
  });

  it('a loss measured on other windows counts as not measured', () => {
    const run = { model: { vocab: 256, ctx: 512, layers: 12, d: 576, heads: 9 }, train: { batch: 8, seqLen: 512 } } as RunInfo;
    const info = { valBatches: 4 } as Parameters<typeof measuredForRun>[0];
    expect(measuredForRun(info, run)).toBe(false); // base is judged on one batch now
    expect(measuredForRun({ ...info, valBatches: 1 }, run)).toBe(true);
  });
});
