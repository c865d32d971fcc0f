// The mesh against the real coordinator (server/) and its WebSocket signaling client: signals
// pass the server's validation and relay, the server's ready pool pairs peers, and φ/Δ move
// over WebRTC (@roamhq/wrtc) exactly.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import wrtc from '@roamhq/wrtc';
import { SignalingClient, memorySessionStore, type WebSocketCtor } from '../src/sync/signaling-client.ts';
import { createMesh, type Mesh } from '../src/sync/mesh.ts';
import { simplePeerLinks } from '../src/sync/links.ts';
import { configHash } from '../src/protocol/hash.ts';
import { withPeerReplay } from '../src/volunteer/signaling.ts';
import type { Signaling } from '../src/protocol/signaling.ts';
import type { ExchangeResult } from '../src/sync/types.ts';
import { startServer, until, type TestServer } from './support/coordinator.ts';
import { sameFloats, sleep, syntheticPayload } from './support/swarm.ts';

let s: TestServer;
const clients: SignalingClient[] = [];
/** Each client as the mesh sees it, made before it starts: the mesh learns who is live only from
 * 'peers' events, and all of them may arrive before the meshes are created (0 neighbours for
 * good, seen in one fresh-clone run); the volunteer replays the list the same way. */
const signalings: Signaling[] = [];
const meshes: Mesh[] = [];
const n = 5000;

beforeAll(async () => {
  s = await startServer();
  const r = await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id: 'mesh', dataset: 'moby-dick', preset: 'micro' } });
  expect(r.statusCode).toBe(201);
  for (let i = 0; i < 4; i++) {
    const client = new SignalingClient({ url: s.url, run: 'mesh', WebSocket: WebSocket as unknown as WebSocketCtor, session: memorySessionStore() });
    signalings.push(withPeerReplay(client));
    client.start();
    clients.push(client);
  }
  await until(() => clients.every((c) => c.connected), 5000, 'all peers to join');
  const hash = configHash({ run: 'mesh', elements: n });
  for (const signaling of signalings) {
    meshes.push(createMesh({ runId: 'mesh', configHash: hash, elements: n, neighbours: { min: 2, max: 3 }, maintainMs: 100 })({
      signaling, links: simplePeerLinks({ rtc: wrtc }),
    }));
  }
});

afterAll(async () => {
  for (const m of meshes) m.destroy();
  for (const c of clients) c.stop();
  await s?.close();
});

describe('mesh over the real coordinator', () => {
  it('neighbours connect through the server relay and exchanges pair through its pool', async () => {
    // WebRTC setup through the relay: a few seconds here, but a connect that times out under
    // load is retried after backoff, so give it room (the claim is that links form, not how fast).
    await until(() => meshes.every((m) => m.neighbours().length >= 2), 100_000,
      'neighbour links through the relay').catch((e: Error) => {
      throw new Error(`${e.message}; now ${meshes.map((m) => m.neighbours().length).join(', ')} neighbours`);
    });
    const results: ExchangeResult[][] = await Promise.all(meshes.map(async (m, i) => {
      const out: ExchangeResult[] = [];
      for (let r = 0; r < 6; r++) {
        await sleep(20 + Math.random() * 80);
        out.push(await m.exchange(r, syntheticPayload(n, i, r), { waitMs: 500 }));
      }
      return out;
    }));
    const ids = clients.map((c) => c.peerId!);
    const paired = results.flat().filter((r) => r.outcome === 'paired');
    expect(paired.length).toBeGreaterThanOrEqual(results.flat().length * 0.6);
    for (const r of paired) {
      expect(r.via).toBe('coordinator');
      const j = ids.indexOf(r.partner!);
      expect(sameFloats(r.payload!.delta, syntheticPayload(n, j, r.payload!.round).delta)).toBe('same');
    }
    for (const m of meshes) expect(m.stats().banned).toEqual([]);
  });
});

describe('offender reports through the real coordinator', () => {
  it('a partner whose Δ fails validation is reported, stored as an event, and after a second strike never paired with the reporter again', async () => {
    const r = await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id: 'mesh-bad', dataset: 'moby-dick', preset: 'micro' } });
    expect(r.statusCode).toBe(201);
    const pair = [0, 1].map(() => new SignalingClient({ url: s.url, run: 'mesh-bad', WebSocket: WebSocket as unknown as WebSocketCtor, session: memorySessionStore() }));
    const replayed = pair.map((c) => withPeerReplay(c)); // before start: see `signalings`
    for (const c of pair) { c.start(); clients.push(c); }
    await until(() => pair.every((c) => c.connected), 5000, 'both peers to join');
    const hash = configHash({ run: 'mesh-bad', elements: n });
    // The rogue checks no Δ for being next to nothing: its own Δ a million times an honest one, the
    // honest partner's sits at a millionth of its scale, and it would refuse and report it
    // (delta-null) as the honest side reports it; an attacker's own code checks nothing.
    const [honest, rogue] = replayed.map((signaling, i) => {
      const m = createMesh({ runId: 'mesh-bad', configHash: hash, elements: n, neighbours: { min: 1, max: 1 }, maintainMs: 100, ...(i === 1 ? { validation: { nullFraction: 0 } } : {}) })({
        signaling, links: simplePeerLinks({ rtc: wrtc }),
      });
      meshes.push(m);
      return m;
    }) as [Mesh, Mesh];
    const [honestId, rogueId] = pair.map((c) => c.peerId!) as [string, string];
    await until(() => honest.neighbours().includes(rogueId) && rogue.neighbours().includes(honestId), 15_000, 'the two to link through the relay');
    // Finite (the sender's own check passes) but a Δ a million times too large: the receiver's
    // validator refuses it (delta-norm) while the rogue, receiving an honest payload, accepts.
    const huge = () => { const p = syntheticPayload(n, 1, 0); p.delta = p.delta.map((x) => x * 1e6); return p; };

    const offenders = () => s.c.db.prepare("SELECT peer_id AS reporter, data_json AS data FROM events WHERE run_id = 'mesh-bad' AND kind = 'peer-offender'").all() as { reporter: string; data: string }[];

    // Rounds 0 and 1: the pool pairs the only two peers; each time the honest side rejects the Δ
    // and reports it. One report is not a veto (round 1 still pairs); the second is.
    for (let round = 0; round <= 1; round++) {
      const [h] = await Promise.all([honest.exchange(round, syntheticPayload(n, 0, round), { waitMs: 3000 }), rogue.exchange(round, huge(), { waitMs: 3000 })]);
      expect(h).toMatchObject({ outcome: 'solo', partner: rogueId, reason: 'rejected', rejection: 'delta-norm' });
      await until(() => offenders().length > round, 5000, `the stored offender event of round ${round}`);
    }
    const stored = offenders();
    expect(stored).toHaveLength(2);
    expect(stored.map((e) => e.reporter)).toEqual([honestId, honestId]);
    expect(stored.map((e) => JSON.parse(e.data))).toMatchObject([
      { accused: rogueId, reason: expect.stringMatching(/^delta-norm/), strike: 1, vetoed: false },
      { accused: rogueId, reason: expect.stringMatching(/^delta-norm/), strike: 2, vetoed: true },
    ]);

    // From now on the pool never pairs them, though each is the other's only candidate: both go
    // solo for want of a partner from the pool.
    for (let round = 2; round <= 4; round++) {
      const got = await Promise.all([honest.exchange(round, syntheticPayload(n, 0, round), { waitMs: 400 }), rogue.exchange(round, syntheticPayload(n, 1, round), { waitMs: 400 })]);
      for (const g of got) expect(g).toMatchObject({ outcome: 'solo', partner: null, reason: 'no-partner', via: 'coordinator' });
    }
  });
});
