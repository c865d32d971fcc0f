// The offer flood (issue 16): fresh ids send signals at a victim as fast as they can, and leave.
// The relay charges the flood to the flooders: they are closed for their rate, while the victim,
// which answers every offer as simple-peer would, is never closed and keeps pairing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import wrtc from '@roamhq/wrtc';
import { SignalingClient, memorySessionStore, type WebSocketCtor } from '../src/sync/signaling-client.ts';
import { createMesh, type Mesh } from '../src/sync/mesh.ts';
import { simplePeerLinks } from '../src/sync/links.ts';
import { configHash } from '../src/protocol/hash.ts';
import type { ExchangeResult } from '../src/sync/types.ts';
import { RawPeer, sleep, startServer, until, type TestServer } from './support/coordinator.ts';
import { syntheticPayload } from './support/swarm.ts';
import { consoleLogger } from '../src/sync/components.ts';
import { answerEverySignal, floodOffers } from './support/attacks.ts';
import { FakeClock } from './support/fake-clock.ts';

let s: TestServer;
beforeAll(async () => {
  // The flooders are fresh ids as if from many addresses: the per-address hello budget
  // (server.budgets.test.ts) would otherwise stop them before the relay is tested.
  s = await startServer({ hub: { hellosPerMinute: 1e6, helloBurst: 1e6 } });
  const r = await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id: 'flood', dataset: 'moby-dick', preset: 'micro' } });
  expect(r.statusCode).toBe(201);
});
afterAll(async () => {
  await s?.close();
});

describe('signal relay under an offer flood', () => {
  it('closes the flooders for their rate; the victim answering every offer stays connected and keeps pairing', async () => {
    const victim = await RawPeer.join(s.wsUrl, { run: 'flood' });
    const honest = await RawPeer.join(s.wsUrl, { run: 'flood' });
    const v = answerEverySignal(victim.peer);
    const h = answerEverySignal(honest.peer);
    const { burst } = s.c.hub.o.limits;
    try {
      // Eight fresh ids, each sending twice its burst of offers at once, then leaving: the
      // victim's answers reach peers that are gone.
      const flooders = await floodOffers(s.wsUrl, 'flood', victim.welcome.peerId, 8, 2 * burst + 20);
      for (const f of flooders) expect(f.peers).toContain(victim.welcome.peerId);
      const closed = await Promise.all(flooders.map((f) => f.peer.waitClosed(20_000)));
      for (const c of closed) expect(c, 'every flooder is closed').not.toBeNull();
      expect(closed.every((c) => c!.code === 1008)).toBe(true);
      const offers = victim.peer.frames.filter((m) => m.t === 'signal').length;
      console.log(`flood: ${flooders.length} flooders sent at least ${flooders.length * (2 * burst + 20)} offers; ${offers} reached the victim, which answered ${v.answered} signals; flooders closed: ${closed.filter(Boolean).length}`);
      expect(offers).toBeGreaterThan(burst);
      await until(() => v.answered >= 3 * offers, 10_000, 'the victim to answer every offer');
      // The victim is still there, not struck: it pairs with the honest peer. Three pairings,
      // not three rounds in a row: two peers that only send readies (no steps) are held to the
      // pool's fairness turn (rule 4 of src/protocol/ready-pool.ts), which on a loaded machine
      // can send one of their quick readies to a solo step.
      const met: (string | null)[] = [];
      for (let round = 0; round < 12 && met.filter((p) => p === honest.welcome.peerId).length < 3; round++) {
        const [from, fromH] = [victim.peer.frames.length, honest.peer.frames.length];
        victim.peer.send({ t: 'ready', round, waitMs: 5_000 });
        honest.peer.send({ t: 'ready', round, waitMs: 5_000 });
        const got = await victim.peer.next((m) => m.t === 'paired' && m.round === round, 10_000, from) as { partner: string | null };
        await honest.peer.next((m) => m.t === 'paired' && m.round === round, 10_000, fromH);
        met.push(got.partner);
      }
      expect(met.filter((p) => p === honest.welcome.peerId).length, JSON.stringify(met)).toBe(3);
      expect(victim.peer.closed).toBeNull();
      expect(victim.peer.frames.filter((m) => m.t === 'error')).toEqual([]);
      expect(s.c.hub.isLive(victim.welcome.peerId)).toBe(true);
    } finally {
      v.stop(); h.stop();
      victim.peer.close(); honest.peer.close();
    }
  });
});

describe('meshes over the real coordinator under an offer flood', () => {
  it('the victim keeps its coordinator connection and keeps pairing while waves of fresh ids flood it with real offers', async () => {
    const r = await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id: 'flood-mesh', dataset: 'moby-dick', preset: 'micro' } });
    expect(r.statusCode).toBe(201);
    const n = 2000;
    const hash = configHash({ run: 'flood-mesh', elements: n });
    const clients = [0, 1].map(() => new SignalingClient({ url: s.url, run: 'flood-mesh', WebSocket: WebSocket as unknown as WebSocketCtor, session: memorySessionStore() }));
    const drops = [0, 0];
    clients.forEach((c, i) => { c.on('close', () => { drops[i]++; }); c.start(); });
    const meshes: Mesh[] = [];
    let flooding = true;
    const flooders: RawPeer[] = [];
    try {
      await until(() => clients.every((c) => c.connected), 10_000, 'both peers to join');
      for (const client of clients) {
        meshes.push(createMesh({ runId: 'flood-mesh', configHash: hash, elements: n, neighbours: { min: 1, max: 2 }, maintainMs: 100, connectTimeoutMs: 4_000 })({
          signaling: client, links: simplePeerLinks({ rtc: wrtc }),
          ...(process.env.DBG ? { logger: consoleLogger(`[${meshes.length}]`, true) } : {}),
        }));
      }
      await until(() => meshes.every((m) => m.neighbours().length >= 1), 45_000, 'the two peers to link');
      const victim = clients[0]!.peerId!;
      // A real SDP offer, as a browser would send: the victim's WebRTC stack answers it.
      const probe = simplePeerLinks({ rtc: wrtc })({ remote: victim, initiator: true });
      const offer = await new Promise<unknown>((res) => probe.on('signal', (sig) => { if ((sig as { type?: string }).type === 'offer') res(sig); }));
      probe.destroy();
      const { burst } = s.c.hub.o.limits;
      // Waves of four fresh ids until the rounds end.
      const flood = (async () => {
        for (let wave = 0; flooding; wave++) {
          const fs = await Promise.all([0, 1, 2, 3].map(() => RawPeer.join(s.wsUrl, { run: 'flood-mesh' })));
          flooders.push(...fs.map((f) => f.peer));
          // Each sends its whole burst and keeps sending until the coordinator closes it.
          await Promise.all(fs.map(async (f, j) => {
            for (let i = 0; !f.peer.closed; i++) {
              if (f.peer.ws.readyState === 1) f.peer.send({ t: 'signal', to: victim, data: { mesh: 1, cid: `w${wave}f${j}o${i}`, sig: offer } });
              if (i >= burst && i % 50 === 0) await sleep(5);
            }
          }));
        }
      })();
      const rounds = 8;
      const results: ExchangeResult[][] = await Promise.all(meshes.map(async (m, i) => {
        const out: ExchangeResult[] = [];
        for (let round = 0; round < rounds; round++) {
          await sleep(20 + Math.random() * 50);
          out.push(await m.exchange(round, syntheticPayload(n, i, round), { waitMs: 2_000 }));
        }
        return out;
      }));
      flooding = false;
      await flood;
      const paired = results[0]!.filter((x) => x.outcome === 'paired').length;
      console.log(`mesh flood: ${flooders.length} flooders in ${flooders.length / 4} waves; closed ${flooders.filter((f) => f.closed).length}; victim paired ${paired}/${rounds} (${results[0]!.map((x) => x.reason ?? 'ok').join(' ')}), coordinator drops ${drops.join('/')}`);
      expect(drops).toEqual([0, 0]);
      expect(flooders.every((f) => f.closed !== null)).toBe(true);
      expect(paired, JSON.stringify(results[0]!.map((x) => x.reason))).toBeGreaterThanOrEqual(rounds - 2);
    } finally {
      flooding = false;
      for (const f of flooders) f.close();
      for (const m of meshes) m.destroy();
      for (const c of clients) c.stop();
    }
  });
});

describe('answer credits between two peers in league', () => {
  it('run out: a pair answering each other\'s answers after one paid burst is held to one side\'s rate', async () => {
    // Before: every relayed signal, paid or not, gave its recipient REPLY_CREDITS free answers,
    // so two peers answering each other kept each other in credit and relayed ~20,000 signals a
    // second each way with no error, from one paid burst.
    const a = await RawPeer.join(s.wsUrl, { run: 'flood' });
    const b = await RawPeer.join(s.wsUrl, { run: 'flood' });
    const A = a.welcome.peerId, B = b.welcome.peerId;
    await a.peer.next((m) => m.t === 'peers-change' && (m as { joined: string[] }).joined.includes(B), 10_000);
    const told: Record<string, string[]> = { A: [], B: [] };
    const pingPong = (p: RawPeer, name: 'A' | 'B', to: string) => p.ws.on('message', (d: Buffer) => {
      const m = JSON.parse(String(d)) as { t: string; code?: string };
      if (m.t === 'error') told[name]!.push(m.code!);
      if (m.t === 'signal' && p.ws.readyState === 1) p.send({ t: 'signal', to, data: { mesh: 1, cid: 'league', sig: { candidate: 'x' } } });
    });
    pingPong(a.peer, 'A', B);
    pingPong(b.peer, 'B', A);
    const relayedBefore = s.c.hub.stats.relayed;
    try {
      const { burst } = s.c.hub.o.limits;
      for (let i = 0; i < burst / 2; i++) a.peer.send({ t: 'signal', to: B, data: { mesh: 1, cid: 'league', sig: { candidate: 'x' } } });
      await until(() => told.A!.includes('rate-limited') || a.peer.closed !== null, 20_000, 'A to be held to its rate');
      console.log(`league: ${s.c.hub.stats.relayed - relayedBefore} signals relayed before A was held to its rate; A told ${told.A!.length} errors, B ${told.B!.length}`);
      expect(told.B).not.toContain('rate-limited'); // B's answers are free: A paid for each signal it answered
    } finally {
      a.peer.close();
      b.peer.close();
    }
  });
});

describe('ids of one client dialling one peer unasked', () => {
  it('are relayed 4 at a time per address and per /48, so they cannot fill the peer\'s held offers and replay; an honest dialler still gets through', async () => {
    // Before: five ids of one address (or of one /48) each reached the victim with an offer, and
    // nine such ids (three addresses' worth of them, or more from one) filled its 8 held offers and
    // its 64 replayed signals, so the pool partner's offer behind them was dropped.
    const clock = new FakeClock();
    const h = await startServer({ hub: { hellosPerMinute: 1e6, helloBurst: 1e6, livenessMs: 3_600_000 }, trustProxy: ['127.0.0.1'] }, { clock });
    const r = await h.c.app.inject({ method: 'POST', url: '/api/runs', headers: h.admin, payload: { id: 'dial', dataset: 'moby-dick', preset: 'micro' } });
    expect(r.statusCode).toBe(201);
    const peers: RawPeer[] = [];
    const join = async (xff: string) => {
      const j = await RawPeer.join(h.wsUrl, { run: 'dial' }, { headers: { 'x-forwarded-for': xff } });
      peers.push(j.peer);
      return { peer: j.peer, id: j.welcome.peerId };
    };
    try {
      const victim = await join('198.51.100.10');
      let n = 0;
      /** Sends an offer to the victim and waits until it arrived there or its sender was told it was not. */
      const dial = async (p: { peer: RawPeer; id: string }): Promise<'relayed' | 'refused'> => {
        const cid = `c${n++}`, from = p.peer.frames.length;
        p.peer.send({ t: 'signal', to: victim.id, data: { mesh: 1, cid, sig: { type: 'offer', sdp: 'v=0' } } });
        const arrived = () => victim.peer.frames.some((m) => m.t === 'signal' && m.from === p.id && (m.data as { cid?: string }).cid === cid);
        const told = () => p.peer.frames.slice(from).some((m) => m.t === 'error' && m.code === 'rate-limited' && m.ref === 'signal');
        await until(() => arrived() || told(), 10_000, `the outcome of ${p.id}'s offer`);
        return arrived() ? 'relayed' : 'refused';
      };
      const ofAddress: { peer: RawPeer; id: string }[] = [];
      for (let i = 0; i < 6; i++) ofAddress.push(await join('198.51.100.20'));
      const ofSite: { peer: RawPeer; id: string }[] = [];
      for (let i = 1; i <= 5; i++) ofSite.push(await join(`2001:db8:77:${i}::1`));
      const honest = await join('198.51.100.30');
      const outcomes: string[] = [];
      for (const p of ofAddress.slice(0, 5)) outcomes.push(await dial(p));
      expect(outcomes).toEqual(['relayed', 'relayed', 'relayed', 'relayed', 'refused']);
      const siteOutcomes: string[] = [];
      for (const p of ofSite) siteOutcomes.push(await dial(p));
      expect(siteOutcomes).toEqual(['relayed', 'relayed', 'relayed', 'relayed', 'refused']);
      expect(await dial(honest)).toBe('relayed');
      // A counted id dials again freely; one that left frees its place for another id of its address.
      expect(await dial(ofAddress[1]!)).toBe('relayed');
      ofAddress[0]!.peer.close();
      await until(() => !h.c.hub.isLive(ofAddress[0]!.id), 10_000, 'the first dialler to leave');
      expect(await dial(ofAddress[4]!)).toBe('relayed');
      expect(await dial(ofAddress[5]!)).toBe('refused');
      // A dialler counts for a minute after its last unasked signal.
      clock.advance(h.c.hub.o.diallerWindowMs + 1);
      expect(await dial(ofAddress[5]!)).toBe('relayed');
      expect(victim.peer.closed).toBeNull();
    } finally {
      for (const p of peers) p.close();
      await h.close();
    }
  });
});
