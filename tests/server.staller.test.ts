// A peer that stalls each partner in turn (takes its φ and Δ, then lets the exchange run to the
// deadline): each victim's stall report rests only that pair (server/peers.ts, rest), so before
// stall reports of distinct clients added up, it cost every honest peer of a small swarm a
// deadline at each rest's end, for good. Here the coordinator benches it once two clients report
// it, never for one client's ids alone, and a single report rests only its pair.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PairedMsg } from '../src/protocol/messages.ts';
import { BENCH_MAX_ROUNDS, BENCH_ROUND_MS } from '../server/peers.ts';
import { RawPeer, report, startServer, until, type TestServer } from './support/coordinator.ts';
import { FakeClock } from './support/fake-clock.ts';

const clock = new FakeClock();
let s: TestServer;
const RUNS = ['mover', 'once', 'one-host'];
beforeAll(async () => {
  s = await startServer({
    hub: { livenessMs: 3600_000, helloTimeoutMs: 3600_000, pairPrediction: false, pairFairness: false, offenderReportsPerMinute: 1e6, offenderReportBurst: 1e6 },
  }, { clock });
  for (const id of RUNS) {
    const r = await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id, dataset: 'moby-dick', preset: 'micro' } });
    expect(r.statusCode).toBe(201);
  }
});
afterAll(() => s?.close());

interface Peer { peer: RawPeer; id: string; run: string }
const open: RawPeer[] = [];
async function join(run: string, localAddress: string): Promise<Peer> {
  const { peer, welcome } = await RawPeer.join(s.wsUrl, { run }, { localAddress });
  open.push(peer);
  return { peer, id: welcome.peerId, run };
}
afterAll(() => { for (const p of open) p.close(); });

const offenderRows = () => (s.c.db.prepare("SELECT COUNT(*) AS n FROM events WHERE kind = 'peer-offender'").get() as { n: number }).n;

/** Rounds only go up: every meeting of this file takes the next one. */
let lastRound = 0;
/** `a` and `b` are ready for a new round while nobody else of the run is: the pool pairs them. */
async function meet(a: Peer, b: Peer): Promise<number> {
  const round = ++lastRound;
  const [na, nb] = [a.peer.frames.length, b.peer.frames.length];
  a.peer.send({ t: 'ready', round, waitMs: 1000 });
  b.peer.send({ t: 'ready', round, waitMs: 1000 });
  // A repeat partner is held while another is due (the pool's rule 1): it pairs when the hold ends.
  const told = (p: Peer, n: number) => p.peer.frames.slice(n).some((m) => m.t === 'paired' && m.round === round);
  await until(() => (told(a, na) || s.c.hub.pool(a.run).has(a.id)) && (told(b, nb) || s.c.hub.pool(b.run).has(b.id)), undefined, `the readies of round ${round}`);
  for (let t = 0; t < 1000 && !(told(a, na) && told(b, nb)); t += 50) clock.advance(50);
  const got = await Promise.all([a.peer.next<PairedMsg>((m) => m.t === 'paired' && m.round === round, undefined, na), b.peer.next<PairedMsg>((m) => m.t === 'paired' && m.round === round, undefined, nb)]);
  expect(got.map((m) => m.partner)).toEqual([b.id, a.id]);
  clock.advance(1000);
  return round;
}

let seq = 0;
/** `a` and `b` meet in `round` and both report it as paired with the other: an accepted exchange. */
async function exchange(a: Peer, b: Peer): Promise<void> {
  const round = await meet(a, b);
  await Promise.all([[a, b], [b, a]].map(async ([p, partner]) => {
    const n = p!.peer.frames.length, k = ++seq;
    p!.peer.send(report(k, { round, step: round + 1, partner: partner!.id, partnerDist: 0.5 }));
    await p!.peer.next((m) => m.t === 'ack' && m.seq === k, undefined, n);
  }));
}

/** Three peers take each other off probation (each pair meets twice: four accepted exchanges each). */
async function trustEachOther(h1: Peer, h2: Peer, h3: Peer): Promise<void> {
  const pairs: [Peer, Peer][] = [[h1, h2], [h2, h3], [h1, h3], [h1, h2], [h2, h3], [h1, h3]];
  for (const [a, b] of pairs) await exchange(a, b);
  for (const h of [h1, h2, h3]) expect(s.c.hub.onProbation(h.id)).toBe(false);
}

/** `victim` reports `staller` for a stall of `round` (as the mesh does from a partner's second stall in a row); resolves once it is stored. */
async function reportStall(victim: Peer, staller: Peer, round: number): Promise<void> {
  const n = offenderRows();
  victim.peer.send({ t: 'offender', peer: staller.id, reason: `stall: no payload of its by our deadline, or it ended the exchange once it had ours, 2 exchanges in a row (round ${round})` });
  await until(() => offenderRows() > n, undefined, `the stall report of ${staller.id} by ${victim.id}`);
}

describe('stall reports of distinct clients add up', () => {
  it('a staller meeting a different partner each round is benched once two clients reported it: the pool pairs it with nobody while honest peers are live, for a bounded time', async () => {
    const honest = [await join('mover', '127.0.0.2'), await join('mover', '127.0.0.3'), await join('mover', '127.0.0.4')];
    const staller = await join('mover', '127.0.0.9');
    const [h1, h2, h3] = honest as [Peer, Peer, Peer];
    const hub = s.c.hub;
    await trustEachOther(h1, h2, h3);
    // Round by round a new victim; each reports at its second stall, as the mesh does. The honest
    // peers meet each other between (the pool takes no repeat partner while another is due).
    await meet(staller, h1);
    await meet(staller, h2);
    await meet(staller, h3);
    await meet(h1, h2);
    await reportStall(h1, staller, await meet(staller, h1));
    // One client's report: the pair rests, nobody else's pairing with it.
    expect(hub.canPair('mover', staller.id, h1.id)).toBe(false);
    expect(hub.canPair('mover', staller.id, h2.id)).toBe(true);
    await reportStall(h2, staller, await meet(staller, h2));
    // A second client: benched, with the peer that never reported it too.
    expect(hub.canPair('mover', staller.id, h3.id)).toBe(false);
    expect(hub.canPair('mover', h1.id, h3.id)).toBe(true);
    // All four ready: the honest peers pair among themselves, the staller's wait runs out alone.
    const round = ++lastRound;
    const from = [...honest, staller].map((p) => p.peer.frames.length);
    for (const p of [staller, ...honest]) p.peer.send({ t: 'ready', round, waitMs: 1000 });
    const entered = (p: Peer, i: number) => hub.pool('mover').has(p.id) || p.peer.frames.slice(from[i]).some((m) => m.t === 'paired' && m.round === round);
    await until(() => [...honest, staller].every(entered), undefined, 'the four readies');
    clock.advance(1000);
    const told = await Promise.all([...honest, staller].map((p, i) => p.peer.next<PairedMsg>((m) => m.t === 'paired' && m.round === round, undefined, from[i])));
    expect(told[3]!.partner).toBeNull();
    expect(told.slice(0, 3).filter((m) => m.partner !== null).length).toBe(2);
    // The bench ends: at most BENCH_MAX_ROUNDS of the longest round.
    clock.advance(BENCH_MAX_ROUNDS * BENCH_ROUND_MS.max);
    expect(hub.canPair('mover', staller.id, h3.id)).toBe(true);
  });

  it('an honest peer reported once by one partner is rested only from that partner', async () => {
    const h = await join('once', '127.0.0.2');
    const [reporter, other] = [await join('once', '127.0.0.3'), await join('once', '127.0.0.4')];
    await trustEachOther(h, reporter, other);
    await reportStall(reporter, h, await meet(reporter, h));
    expect(s.c.hub.canPair('once', h.id, reporter.id)).toBe(false);
    expect(s.c.hub.canPair('once', h.id, other.id)).toBe(true);
  });

  it('ids of one address reporting an honest peer are one witness: it is not benched', async () => {
    const h = await join('one-host', '127.0.0.2');
    const other = await join('one-host', '127.0.0.3');
    const host = [await join('one-host', '127.0.0.7'), await join('one-host', '127.0.0.7'), await join('one-host', '127.0.0.7')];
    // Each id off probation, as a witness must be: the host's ids earn it with h and the other peer.
    for (const id of host) {
      await exchange(id, h);
      await exchange(id, other);
      await exchange(id, h);
      expect(s.c.hub.onProbation(id.id)).toBe(false);
    }
    for (const [i, id] of host.entries()) {
      await reportStall(id, h, await meet(id, h));
    }
    expect(s.c.hub.canPair('one-host', h.id, other.id)).toBe(true);
  });
});
