// kill -9 the coordinator mid-run: after a restart on the same data dir, runs, every
// acknowledged report and every completed checkpoint are intact, and the volunteer reconnects by
// itself (same peer id) and delivers what it buffered during the outage.
import { afterAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { murmurServe } from './support/murmur-cli.ts';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { SignalingClient, memorySessionStore, type WebSocketCtor } from '../src/sync/signaling-client.ts';
import { buildLayout } from '../src/model/layout.ts';
import { preset } from '../src/model/config.ts';
import { initParams } from '../src/model/init.ts';
import { earnTrust, sleep, until } from './support/coordinator.ts';
import { PROBATION_EXCHANGES } from '../server/peers.ts';

const dataDir = mkdtempSync(join(tmpdir(), 'murmur-restart-'));
const children: ChildProcess[] = [];

const serve = (port: number) => murmurServe(dataDir, ['--port', String(port)]);

function kill9(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    child.on('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  rmSync(dataDir, { recursive: true, force: true });
});

describe('coordinator restart after kill -9', () => {
  it('keeps runs, acknowledged reports and completed checkpoints; volunteers reconnect by themselves', async () => {
    const first = await serve(0);
    const port = Number(new URL(first.url).port);
    const admin = { authorization: `Bearer ${readFileSync(join(dataDir, 'admin-token'), 'utf8').trim()}`, 'content-type': 'application/json' };
    const created = await fetch(`${first.url}/api/runs`, { method: 'POST', headers: admin, body: JSON.stringify({ id: 'r', dataset: 'moby-dick', preset: 'micro', train: { H: 7 } }) });
    expect(created.status).toBe(201);

    const layout = buildLayout(preset('micro'));
    const phi = initParams(layout, 11);
    const client = new SignalingClient({
      url: first.url, run: 'r', WebSocket: WebSocket as unknown as WebSocketCtor, session: memorySessionStore(),
      backoff: { initialMs: 100, maxMs: 800, jitter: 0.5 },
    });
    client.setStateProvider(() => ({ meta: { runId: 'r', step: 70, round: 10, floats: layout.total, valLoss: 4, tokens: 70 * 256 }, phi, momentum: new Float32Array(layout.total).fill(0.125) }));
    const acked = new Set<number>();
    const sent: number[] = [];
    const opens: string[] = [];
    client.on('ack', (e) => acked.add(e.seq));
    client.on('open', (e) => opens.push(e.peerId));
    client.start();
    try {
      await until(() => client.connected, 10_000, 'the volunteer to join');
      const peerId = client.peerId!;
      // Only a peer off probation gets checkpoint duty; its reports on the way count as sent.
      sent.push(...await earnTrust(first.url, 'r', client, { exchanges: PROBATION_EXCHANGES, H: 7 }));
      const fields = (step: number) => ({ time: Date.now(), step, round: step >> 3, trainLoss: 5, valLoss: null, tokensPerS: 100, bytesIn: 1, bytesOut: 1, partner: null, partnerDist: null, adapter: 'restart-test' });

      // A completed checkpoint.
      const served = new Promise<{ ok: boolean }>((resolve) => client.on('state-served', resolve));
      expect((await fetch(`${first.url}/api/runs/r/checkpoints`, { method: 'POST', headers: { authorization: admin.authorization } })).status).toBe(202);
      expect((await served).ok).toBe(true);
      const ckBefore = (await (await fetch(`${first.url}/api/runs/r/checkpoints`)).json()).checkpoints;
      expect(ckBefore).toHaveLength(1);

      // Reports stream in; kill -9 while they are in flight.
      let step = 0;
      const pump = setInterval(() => { sent.push(client.report(fields(step++))); }, 3);
      await until(() => acked.size >= 100, 10_000, '100 acknowledged reports');
      await kill9(first.child);
      const ackedAtKill = new Set(acked);
      await until(() => !client.connected, 5000, 'the client to notice');
      await sleep(300);
      clearInterval(pump);
      expect(client.pendingReports).toBeGreaterThan(0);

      const second = await serve(port);
      // The volunteer comes back by itself, as the same peer.
      await until(() => client.connected, 15_000, 'the volunteer to reconnect');
      expect(opens).toEqual([peerId, peerId]);
      await until(() => client.pendingReports === 0, 15_000, 'the buffered reports to be flushed');

      const runs = (await (await fetch(`${second.url}/api/runs`)).json()).runs.map((r: { id: string; train: { H: number } }) => [r.id, r.train.H]);
      expect(runs).toEqual([['default', 50], ['r', 7]]);
      const m = await (await fetch(`${second.url}/api/runs/r/metrics?peer=${peerId}&maxPoints=20000`)).json();
      expect(m.downsampled).toBe(false);
      const stored = new Set<number>(m.points.map((p: { seq: number }) => p.seq));
      const lost = [...ackedAtKill].filter((s) => !stored.has(s));
      expect(lost, 'acknowledged before the kill but missing after the restart').toEqual([]);
      // And nothing the client sent was lost or stored twice.
      expect(stored.size).toBe(sent.length);
      expect(m.points.length).toBe(sent.length);

      const ckAfter = (await (await fetch(`${second.url}/api/runs/r/checkpoints`)).json()).checkpoints;
      expect(ckAfter).toEqual(ckBefore);
      const file = Buffer.from(await (await fetch(`${second.url}/api/runs/r/checkpoints/${ckAfter[0].id}/file`)).arrayBuffer());
      expect(createHash('sha256').update(file).digest('hex')).toBe(ckAfter[0].sha256);
      await kill9(second.child);
    } finally {
      client.stop();
    }
  });
});
