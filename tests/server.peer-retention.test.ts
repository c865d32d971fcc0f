// Departed peers are forgotten after departedRetentionMs, PRUNE_BATCH at a time. Two ways a client
// kept the peers table growing past that bound for good:
// - One batch a minute forgot 500 peers a minute; fresh ids from 9 addresses (60 hellos a minute
//   each) come faster, and the rows past the retention piled up without end. Now a full batch is
//   followed by the next as soon as the event loop is free, until the backlog is gone.
// - A live peer's last_seen is its join time, and the batch was the oldest rows with the live ones
//   then left out: 500 connections held for longer than the retention (8 addresses' WebSockets)
//   filled every batch, and no departed peer was forgotten again. Now the live ones are read past.
import { afterEach, describe, expect, it } from 'vitest';
import { PRUNE_BATCH } from '../server/peers.ts';
import { RawPeer, startServer, type TestServer } from './support/coordinator.ts';
import { until } from './support/wait.ts';

const HOUR = 3600_000;

let s: TestServer | undefined;
const open: RawPeer[] = [];
afterEach(async () => {
  for (const p of open.splice(0)) p.close();
  await s?.close();
  s = undefined;
});

/**
 * A coordinator whose hub sweeps only when the test calls sweep() (its own timer is 10 minutes
 * away) and forgets peers gone a second; hellos and WebSockets per address unlimited.
 */
async function coordinator(): Promise<TestServer> {
  return startServer({
    hub: {
      heartbeatMs: 600_000, livenessMs: 1_200_000, departedRetentionMs: 1000,
      hellosPerMinute: 1e6, helloBurst: 1e6, maxConnectionsPerAddress: 10_000,
    },
  });
}

/** Writes `n` peers of the default run that left at `leftAt`, each with a join and a leave event. */
function departed(t: TestServer, n: number, leftAt: number, first: number): void {
  const db = t.c.db;
  const peer = db.prepare("INSERT INTO peers (id, run_id, replica, client_json, first_seen, last_seen) VALUES (?, 'default', ?, NULL, ?, ?)");
  const event = db.prepare("INSERT INTO events (run_id, t, kind, peer_id, data_json) VALUES ('default', ?, ?, ?, NULL)");
  db.transaction(() => {
    for (let i = 0; i < n; i++) {
      const id = `p-${(0xd0000000 + first + i).toString(16).padStart(16, '0')}`;
      peer.run(id, 100_000 + first + i, leftAt - 60_000, leftAt);
      event.run(leftAt - 60_000, 'peer-joined', id);
      event.run(leftAt, 'peer-left', id);
    }
  })();
}

const count = (t: TestServer, where: string): number => (t.c.db.prepare(`SELECT COUNT(*) AS n FROM peers WHERE ${where}`).get() as { n: number }).n;
const events = (t: TestServer): number => (t.c.db.prepare("SELECT COUNT(*) AS n FROM events WHERE peer_id LIKE 'p-00000000d%'").get() as { n: number }).n;

describe('forgetting departed peers', () => {
  it('a backlog of many batches is forgotten at one sweep, not a batch a minute', async () => {
    s = await coordinator();
    const n = 6 * PRUNE_BATCH + 17;
    departed(s, n, Date.now() - HOUR, 0);
    expect(count(s, "id LIKE 'p-00000000d%'")).toBe(n);
    s.c.hub.sweep();
    await until(() => count(s!, "id LIKE 'p-00000000d%'") === 0, 30_000, () => `the backlog to be forgotten (${count(s!, "id LIKE 'p-00000000d%'")} of ${n} rows left)`);
    expect(events(s)).toBe(0);
    expect(s.c.hub.stats.forgotten).toBe(n);
  });

  it('peers connected for longer than the retention do not stop the departed ones being forgotten', async () => {
    s = await coordinator();
    const live = PRUNE_BATCH + 10;
    for (let i = 0; i < live; i += 50) {
      const batch = await Promise.all(Array.from({ length: Math.min(50, live - i) }, () => RawPeer.join(s!.wsUrl)));
      open.push(...batch.map((b) => b.peer));
    }
    const ids = new Set(s.c.hub.livePeers('default'));
    expect(ids.size).toBe(live);
    // Joined three hours ago, as far as their rows say (a volunteer that stays a week and more).
    s.c.db.prepare("UPDATE peers SET first_seen = ?, last_seen = ? WHERE id NOT LIKE 'p-00000000d%'").run(Date.now() - 3 * HOUR, Date.now() - 3 * HOUR);
    departed(s, 40, Date.now() - 2 * HOUR, 0);
    s.c.hub.sweep();
    await until(() => count(s!, "id LIKE 'p-00000000d%'") === 0, 30_000, () => `the departed peers behind the live ones to be forgotten (${count(s!, "id LIKE 'p-00000000d%'")} of 40 left)`);
    expect(events(s)).toBe(0);
    // The live ones keep their rows.
    expect(count(s, "id NOT LIKE 'p-00000000d%'")).toBe(live);
    expect(s.c.hub.livePeers('default').length).toBe(live);
  });
});
