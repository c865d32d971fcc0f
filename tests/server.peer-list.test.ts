// Silent joins (issue 16): every join used to re-send the whole peer list to every peer, so the
// bytes one join pushed grew with the square of the run's size. Now a join costs a welcome with
// the list to the newcomer and one small change frame to each peer: linear in the run's size.
// And a peer that left is forgotten after the retention time: the rows stay bounded.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tableCounts } from '../server/db.ts';
import { report, startServer, until, type TestServer } from './support/coordinator.ts';
import { SilentPeer } from './support/attacks.ts';

let s: TestServer;
beforeAll(async () => {
  // One address joins them all (the per-address budgets are tested in server.budgets.test.ts);
  // changes go out 1 ms after a join, so each join is measured on its own.
  s = await startServer({
    hub: { maxConnectionsPerAddress: 10_000, hellosPerMinute: 1e6, helloBurst: 1e6, peersEveryMs: 1, livenessMs: 600_000, heartbeatMs: 60_000 },
  });
});
afterAll(async () => {
  await s?.close();
});

describe('peer list under silent joins', () => {
  it('a join pushes bytes linear in the number of live peers, not quadratic', async () => {
    const JOINS = 300;
    const peers: SilentPeer[] = [];
    const pushed: number[] = []; // total bytes pushed to all peers once join k had reached the first peer
    const total = () => peers.reduce((a, p) => a + p.bytes, 0);
    try {
      for (let k = 0; k < JOINS; k++) {
        const p = new SilentPeer(s.wsUrl, k === 0);
        peers.push(p);
        await until(() => p.id !== '', 10_000, `join ${k}`);
        if (k > 0) await until(() => peers[0]!.known.has(p.id), 10_000, `the first peer to hear of join ${k}`);
        pushed.push(total());
      }
      expect(s.c.hub.livePeers('default')).toHaveLength(JOINS);
      const perJoin = (from: number, to: number) => (pushed[to - 1]! - pushed[from - 1]!) / (to - from);
      const early = perJoin(100, 150), late = perJoin(250, 300);
      const liveEarly = 125, liveLate = 275;
      console.log([
        `peer list: ${JOINS} silent joins, ${total()} bytes pushed in all`,
        `  joins 100-150 (~${liveEarly} live): ${early.toFixed(0)} bytes per join (${(early / liveEarly).toFixed(1)} per live peer)`,
        `  joins 250-300 (~${liveLate} live): ${late.toFixed(0)} bytes per join (${(late / liveLate).toFixed(1)} per live peer)`,
        `  growth ${(late / early).toFixed(2)}x for ${(liveLate / liveEarly).toFixed(2)}x the peers (quadratic would be ${((liveLate / liveEarly) ** 2).toFixed(2)}x)`,
      ].join('\n'));
      // Linear: the bytes of a join grow as the live count does (2.2x here), a quadratic list
      // re-broadcast would grow 4.8x.
      expect(late / early).toBeLessThan(((liveLate / liveEarly) + (liveLate / liveEarly) ** 2) / 2);
    } finally {
      for (const p of peers) p.ws.close();
    }
  });
});

describe('database rows under silent joins', () => {
  it('forgets departed peers and their events after the retention time; live peers and every metric report stay', async () => {
    const t = await startServer({
      hub: { maxConnectionsPerAddress: 10_000, hellosPerMinute: 1e6, helloBurst: 1e6, departedRetentionMs: 200, heartbeatMs: 100, livenessMs: 60_000 },
    });
    const stay: SilentPeer[] = [];
    try {
      // Two peers stay for the whole test; one of them reports a metric point first.
      for (let i = 0; i < 2; i++) stay.push(new SilentPeer(t.wsUrl, true));
      await until(() => stay.every((p) => p.id !== ''), 10_000, 'the staying peers to join');
      stay[0]!.ws.send(JSON.stringify(report(1)));
      await until(() => tableCounts(t.c.db).reports === 1, 10_000, 'the report to be stored');
      const rows: Record<string, number>[] = [];
      for (const wave of [100, 200]) {
        // Silent joins: join, say nothing, leave (each writes a peer row and two events).
        for (let k = 0; k < wave; k += 20) {
          const batch = Array.from({ length: 20 }, () => new SilentPeer(t.wsUrl, false));
          await until(() => batch.every((p) => p.id !== ''), 10_000, 'a batch of joins');
          for (const p of batch) p.ws.close();
          await until(() => batch.every((p) => !t.c.hub.isLive(p.id)), 10_000, 'the batch to leave');
        }
        await until(() => tableCounts(t.c.db).peers === 2, 20_000, 'departed peers to be forgotten');
        rows.push(tableCounts(t.c.db));
      }
      console.log(`rows after 100 and 300 silent joins: ${rows.map((r) => `peers ${r.peers}, events ${r.events}, reports ${r.reports}`).join(' | ')}`);
      // The same rows after 300 joins as after 100: the live peers, their join events, their report.
      expect(t.c.hub.stats.forgotten).toBe(300);
      expect(rows[1]).toEqual(rows[0]);
      // Run events (no peer) stay; of peers' events only the staying peers' joins are left.
      const peerEvents = t.c.db.prepare('SELECT peer_id AS p, kind FROM events WHERE peer_id IS NOT NULL ORDER BY peer_id').all();
      expect(peerEvents).toEqual(stay.map((p) => p.id).sort().map((p) => ({ p, kind: 'peer-joined' })));
      expect(rows[1]!.reports).toBe(1);
      for (const p of stay) expect(t.c.hub.isLive(p.id)).toBe(true);
      const ids = (t.c.db.prepare('SELECT id FROM peers ORDER BY id').all() as { id: string }[]).map((r) => r.id);
      expect(ids).toEqual(stay.map((p) => p.id).sort());
    } finally {
      for (const p of stay) p.ws.close();
      await t.close();
    }
  });
});
