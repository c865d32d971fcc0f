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
import type { ExchangeResult } from '../src/sync/types.ts';
import { startServer, until, type TestServer } from './support/coordinator.ts';
import { sameFloats, sleep, syntheticPayload } from './support/swarm.ts';

let s: TestServer;
const clients: SignalingClient[] = [];
const meshes: Mesh[] = [];
const n = 5000;

beforeAll(async () => {
  s = await startServer();
  const r = await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id: 'mesh', dataset: 'moby-dick', preset: 'micro' } });
  expect(r.statusCode).toBe(201);
  for (let i = 0; i < 4; i++) {
    const client = new SignalingClient({ url: s.url, run: 'mesh', WebSocket: WebSocket as unknown as WebSocketCtor, session: memorySessionStore() });
    client.start();
    clients.push(client);
  }
  await until(() => clients.every((c) => c.connected), 5000, 'all peers to join');
  const hash = configHash({ run: 'mesh', elements: n });
  for (const client of clients) {
    meshes.push(createMesh({ runId: 'mesh', configHash: hash, elements: n, neighbours: { min: 2, max: 3 }, maintainMs: 100 })({
      signaling: client, links: simplePeerLinks({ rtc: wrtc }),
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
    await until(() => meshes.every((m) => m.neighbours().length >= 2), 15_000, 'neighbour links through the relay');
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
  }, 60_000);
});
