// A checkpoint an older coordinator stored with the uploading peer's CLAIMED loss (before it
// measured uploads) or with a loss measured on other windows is not offered to newcomers, nor
// used as the next upload's bound, until this coordinator has measured it itself, which it does
// in the background when it starts (server/checkpoint-remeasure.ts). Without that, a claimed
// 0.02 would be every newcomer's bound (maxStateLoss), and every honest state would fail it.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { measuredForRun } from '../server/checkpoints.ts';
import { stateCheckBatchCount } from '../src/data/sampler.ts';
import type { RunInfo } from '../src/protocol/messages.ts';
import { decodeStateFrame } from '../src/protocol/state-frame.ts';
import { RawPeer, startServer, type TestServer } from './support/coordinator.ts';
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

async function welcomeCheckpoint(s: TestServer, run: string) {
  const { peer, welcome } = await RawPeer.join(s.wsUrl, { run });
  peers.push(peer);
  return welcome.checkpoint;
}

describe('checkpoints stored by an older coordinator', () => {
  it('are offered only once measured: an honest one with its measured loss, never one worse than guessing', async () => {
    // The data dir an older coordinator left: two checkpoints with the peers' claims, no measurement.
    const first = await server();
    const created = await first.c.app.inject({ method: 'POST', url: '/api/runs', headers: first.admin, payload: { id: 'legacy', dataset: 'moby-dick', preset: 'micro', train: { H: 10 } } });
    expect(created.statusCode).toBe(201);
    const run = created.json() as RunInfo;
    const honest = honestState(run, 30);
    const garbage = honest.phi.map((_, i) => 3 * Math.sin(i * 12.9898));
    const older = await first.c.checkpoints.save(run, { ...honest, meta: { ...honest.meta, valLoss: 0.01 } }, 'p-old', 1000);
    const newer = await first.c.checkpoints.save(run, { meta: { ...honest.meta, step: 40, valLoss: 0.02 }, phi: garbage, momentum: honest.momentum }, 'p-old', 2000);
    for (const c of [older, newer]) expect(measuredForRun(c, run)).toBe(false);
    // Not offered even by the coordinator that stored them: neither was measured.
    expect(first.c.checkpoints.current(run)).toBeNull();
    expect(await welcomeCheckpoint(first, 'legacy')).toBeNull();
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
    // A third start measures nothing again.
    await s.close();
    open.length = 0;
    const again = await server();
    expect(await again.c.remeasured).toEqual({ measured: 0, refused: 1 });
  });

  it('a loss measured on other windows counts as not measured', () => {
    const run = { model: { vocab: 256, ctx: 512, layers: 12, d: 576, heads: 9 }, train: { batch: 8, seqLen: 512 } } as RunInfo;
    const info = { valBatches: 4 } as Parameters<typeof measuredForRun>[0];
    expect(measuredForRun(info, run)).toBe(false); // base is judged on one batch now
    expect(measuredForRun({ ...info, valBatches: 1 }, run)).toBe(true);
  });
});
