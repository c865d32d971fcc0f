// A headless volunteer keeps training while the coordinator is down and restarts: its reports
// are buffered, flushed on reconnect under the same peer id, and none is lost or doubled.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import wrtc from '@roamhq/wrtc';
import { buildApp, type Coordinator } from '../server/app.ts';
import type { WebSocketCtor } from '../src/sync/signaling-client.ts';
import { runVolunteer, type RoundEvent, type Volunteer } from '../src/volunteer/volunteer.ts';
import { until } from './support/coordinator.ts';

const dir = mkdtempSync(join(tmpdir(), 'murmur-volunteer-restart-'));
let c: Coordinator | null = null;
let v: Volunteer | null = null;

async function start(port: number): Promise<{ c: Coordinator; url: string }> {
  const co = await buildApp({ dataDir: dir }, { checkpointEveryMs: 0 });
  const url = await co.app.listen({ port, host: '127.0.0.1' });
  return { c: co, url };
}

afterAll(async () => {
  await v?.stop();
  await c?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('volunteer across a coordinator restart', () => {
  it('trains on while the coordinator is down and delivers every report after it is back', async () => {
    const first = await start(0);
    c = first.c;
    const port = Number(new URL(first.url).port);
    const r = await c.app.inject({
      method: 'POST', url: '/api/runs', headers: { authorization: `Bearer ${c.adminToken}` },
      // H = 32: a lone peer leaves the pool at once (nobody is due), so with a tiny H rounds would
      // outrun the coordinator's per-connection message rate and the stored count would trail.
      payload: { id: 'restart', dataset: 'moby-dick', preset: 'micro', train: { batch: 2, H: 32, lr: 3e-3, warmupSteps: 2 } },
    });
    expect(r.statusCode).toBe(201);
    v = runVolunteer({ url: first.url, run: 'restart', backend: 'cpu', evalEveryRounds: 2 }, { WebSocket: WebSocket as unknown as WebSocketCtor, rtc: wrtc });
    const rounds: RoundEvent[] = [];
    v.onRound((e) => rounds.push(e));
    const { peerId } = await v.joined;
    await until(() => rounds.length >= 2, 30_000, 'two rounds with the coordinator up');

    await c.close();
    c = null;
    const downAt = rounds.length;
    // Solo rounds while nobody coordinates: the ready() is answered locally.
    await until(() => rounds.length >= downAt + 3, 30_000, 'three rounds with the coordinator down');

    const second = await start(port);
    c = second.c;
    const co = c;
    const stored = () => (co.db.prepare('SELECT COUNT(*) AS n FROM reports WHERE run_id = ?').get('restart') as { n: number }).n;
    // Reconnecting takes a backoff; then the buffered reports go out, then new ones follow.
    await until(() => rounds.length >= downAt + 5 && stored() >= rounds.length, 60_000, 'every report stored after the restart');
    const s = await v.stop();
    v = null;
    expect(s.unsentReports).toBe(0);
    const rows = c.db.prepare('SELECT peer_id AS peer, round FROM reports WHERE run_id = ? ORDER BY round').all('restart') as { peer: string; round: number }[];
    // The signed session brought back the same peer id; every round is there exactly once.
    expect(new Set(rows.map((x) => x.peer))).toEqual(new Set([peerId]));
    expect(rows.map((x) => x.round)).toEqual(rounds.map((e) => e.report.round));
  });
});
