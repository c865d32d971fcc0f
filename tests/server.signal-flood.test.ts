// The offer flood (issue 16): fresh ids send signals at a victim as fast as they can, and leave.
// The relay charges the flood to the flooders: they are closed for their rate, while the victim,
// which answers every offer as simple-peer would, is never closed and keeps pairing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawPeer, startServer, until, type TestServer } from './support/coordinator.ts';

let s: TestServer;
beforeAll(async () => {
  s = await startServer();
  const r = await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id: 'flood', dataset: 'moby-dick', preset: 'micro' } });
  expect(r.statusCode).toBe(201);
});
afterAll(async () => {
  await s?.close();
});

/** A victim that answers every signal it gets with an answer and two ICE candidates, and heartbeats. */
function answering(p: RawPeer): { answered: number; stop(): void } {
  const state = { answered: 0, stop: () => {} };
  p.ws.on('message', (data: Buffer) => {
    const m = JSON.parse(String(data)) as { t: string; from?: string };
    if (m.t !== 'signal' || p.ws.readyState !== 1) return;
    for (const sig of [{ type: 'answer', sdp: 'v=0' }, { candidate: 'a' }, { candidate: 'b' }]) {
      p.send({ t: 'signal', to: m.from, data: { mesh: 1, cid: 'c', sig } });
      state.answered++;
    }
  });
  const hb = setInterval(() => p.ws.readyState === 1 && p.send({ t: 'hb' }), 1000);
  state.stop = () => clearInterval(hb);
  return state;
}

describe('signal relay under an offer flood', () => {
  it('closes the flooders for their rate; the victim answering every offer stays connected and keeps pairing', async () => {
    const victim = await RawPeer.join(s.wsUrl, { run: 'flood' });
    const honest = await RawPeer.join(s.wsUrl, { run: 'flood' });
    const v = answering(victim.peer);
    const h = answering(honest.peer);
    const { burst } = s.c.hub.o.limits;
    try {
      // Eight fresh ids, each sending twice its burst of offers at once, then leaving: the
      // victim's answers reach peers that are gone.
      const flooders = await Promise.all(Array.from({ length: 8 }, () => RawPeer.join(s.wsUrl, { run: 'flood' })));
      for (const f of flooders) expect(f.welcome.peers).toContain(victim.welcome.peerId);
      for (const f of flooders) {
        for (let i = 0; i < 2 * burst + 20; i++) f.peer.send({ t: 'signal', to: victim.welcome.peerId, data: { mesh: 1, cid: `f${i}`, sig: { type: 'offer', sdp: 'v=0' } } });
      }
      const closed = await Promise.all(flooders.map((f) => f.peer.waitClosed(20_000)));
      for (const c of closed) expect(c, 'every flooder is closed').not.toBeNull();
      expect(closed.every((c) => c!.code === 1008)).toBe(true);
      const offers = victim.peer.frames.filter((m) => m.t === 'signal').length;
      console.log(`flood: ${flooders.length} flooders sent ${flooders.length * (2 * burst + 20)} offers; ${offers} reached the victim, which answered ${v.answered} signals; flooders closed: ${closed.filter(Boolean).length}`);
      expect(offers).toBeGreaterThan(burst);
      await until(() => v.answered >= 3 * offers, 10_000, 'the victim to answer every offer');
      // The victim is still there, not struck: it pairs with the honest peer.
      for (let round = 0; round < 3; round++) {
        const from = victim.peer.frames.length;
        victim.peer.send({ t: 'ready', round, waitMs: 5_000 });
        honest.peer.send({ t: 'ready', round, waitMs: 5_000 });
        expect(await victim.peer.next((m) => m.t === 'paired' && m.round === round, 10_000, from)).toMatchObject({ partner: honest.welcome.peerId });
      }
      expect(victim.peer.closed).toBeNull();
      expect(victim.peer.frames.filter((m) => m.t === 'error')).toEqual([]);
      expect(s.c.hub.isLive(victim.welcome.peerId)).toBe(true);
    } finally {
      v.stop(); h.stop();
      victim.peer.close(); honest.peer.close();
    }
  }, 60_000);
});
