// The coordinator's wrapper of the one ready-pool rule (src/protocol/ready-pool.ts, whose rules
// tests/protocol.ready-pool.test.ts pins): its timer and its `paired` messages.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReadyPool, type ReadyPoolOptions } from '../server/pairing.ts';
import type { PairedMsg } from '../src/protocol/messages.ts';
import { Rng } from '../src/model/rng.ts';
import { FakeClock } from './support/fake-clock.ts';
import { RawPeer, report, startServer, until, type TestServer } from './support/coordinator.ts';

function pool(seed = 1, o: Partial<ReadyPoolOptions> = {}) {
  const clock = new FakeClock();
  const rng = new Rng(seed, 9);
  const sent: [string, PairedMsg][] = [];
  const p = new ReadyPool({ clock, rng: () => rng.uniform(), send: (peer, m) => sent.push([peer, m]), ...o });
  return { clock, p, sent };
}

describe('ready pool on the server (docs/design.md section 3)', () => {
  it('pairs a ready peer with one already waiting; exactly one side (the later) initiates; each is told the round its partner entered with', () => {
    const { p, sent, clock } = pool();
    p.ready('a', 4, 1000);
    clock.advance(100);
    expect(sent).toEqual([]);
    p.ready('b', 7, 1000);
    expect(sent).toEqual([
      ['b', { t: 'paired', round: 7, partner: 'a', partnerRound: 4, initiator: true }],
      ['a', { t: 'paired', round: 4, partner: 'b', partnerRound: 7, initiator: false }],
    ]);
    expect(p.size).toBe(0);
    expect(p.stats).toEqual({ pairs: 1, solos: 0, leftAtOnce: 0 });
    expect(clock.pending).toBe(0);
  });

  it('tells a peer to step solo when its wait runs out, never sooner', () => {
    const { p, sent, clock } = pool();
    p.ready('a', 1, 300);
    clock.advance(299);
    expect(sent).toEqual([]);
    clock.advance(1);
    expect(sent).toEqual([['a', { t: 'paired', round: 1, partner: null, initiator: false }]]);
    expect(p.stats).toEqual({ pairs: 0, solos: 1, leftAtOnce: 0 });
  });

  it('a peer alone in its run is told at once (no idle wait)', () => {
    const { p, sent } = pool(1, { liveCount: () => 1 });
    p.ready('a', 1, 5000);
    expect(sent).toEqual([['a', { t: 'paired', round: 1, partner: null, initiator: false }]]);
  });

  it('clamps the wait: never zero, never unbounded', () => {
    const { p, sent, clock } = pool(1, { minWaitMs: 50, maxWaitMs: 1000 });
    p.ready('a', 1, 1);
    clock.advance(49);
    expect(sent.length).toBe(0);
    clock.advance(1);
    expect(sent.length).toBe(1);
    p.forget('a');
    p.ready('b', 1, 1e9);
    clock.advance(1000);
    expect(sent.length).toBe(2);
  });

  it('a departed peer is never offered as a partner, and its timer is gone', () => {
    const { p, sent, clock } = pool(1, { canPair: () => false });
    p.ready('a', 1, 500);
    p.ready('b', 1, 500);
    p.forget('a');
    clock.advance(500);
    expect(sent).toEqual([['b', { t: 'paired', round: 1, partner: null, initiator: false }]]);
    expect(clock.pending).toBe(0);
  });

  it('a repeated ready replaces the earlier one', () => {
    const { p, sent, clock } = pool();
    p.ready('a', 1, 500);
    p.ready('a', 2, 500);
    expect(p.size).toBe(1);
    clock.advance(500);
    expect(sent).toEqual([['a', { t: 'paired', round: 2, partner: null, initiator: false }]]);
  });

  it('chooses partners uniformly at random among the waiting peers', () => {
    // The w's may not meet each other, so all five wait when x comes.
    const { p, sent } = pool(42, { canPair: (a, b) => a === 'x' || b === 'x' });
    const counts = new Map<string, number>();
    const trials = 4000;
    for (let i = 0; i < trials; i++) {
      sent.length = 0;
      for (const w of ['w0', 'w1', 'w2', 'w3', 'w4', 'x']) p.ready(w, 0, 1e6);
      const mine = sent.find(([peer]) => peer === 'x')!;
      counts.set(mine[1].partner!, (counts.get(mine[1].partner!) ?? 0) + 1);
      p.clear();
    }
    // Chi-square with 4 degrees of freedom; 18.5 is the 0.1% critical value.
    const expected = trials / 5;
    const chi2 = [...counts.values()].reduce((s, c) => s + (c - expected) ** 2 / expected, 0);
    expect(counts.size).toBe(5);
    expect(chi2).toBeLessThan(18.5);
  });
});

describe('ready pool vetoes (offender reports)', () => {
  it('never pairs a vetoed pair, pairs each of them with others, and lets a vetoed peer go solo', () => {
    const veto = (a: string, b: string) => (a === 'a' && b === 'b') || (a === 'b' && b === 'a');
    const { p, sent, clock } = pool(5, { canPair: (a, b) => !veto(a, b), liveCount: () => 4 });
    p.ready('a', 1, 500);
    p.ready('b', 1, 500);
    clock.advance(499);
    expect(sent).toEqual([]);
    clock.advance(1);
    expect(sent.map(([peer, m]) => [peer, m.partner])).toEqual([['a', null], ['b', null]]);
    const met = new Set<string>();
    for (let round = 2; round < 40; round++) {
      sent.length = 0;
      for (const x of ['a', 'b', 'c', 'd']) p.ready(x, round, 500);
      clock.advance(1000);
      for (const [peer, m] of sent) if (m.partner) {
        expect(veto(peer, m.partner)).toBe(false);
        met.add([peer, m.partner].sort().join('-'));
      }
    }
    // a and b always arrive first and wait, so c and d each take one of them.
    expect([...met].sort()).toEqual(['a-c', 'a-d', 'b-c', 'b-d']);
  });
});

describe('the coordinator\'s pool and the connections of its run (one host\'s liars, silent peers)', () => {
  // The coordinator on a fake clock: the pool's timers fire only when the test moves it, and each
  // frame is awaited (its ack, or the pool taking the ready) before the clock moves on.
  const clock = new FakeClock();
  let s: TestServer;
  beforeAll(async () => {
    s = await startServer({ hub: { livenessMs: 3600_000, helloTimeoutMs: 3600_000 } }, { clock });
    for (const id of ['liars', 'silent']) {
      const r = await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id, dataset: 'moby-dick', preset: 'micro' } });
      expect(r.statusCode).toBe(201);
    }
  });
  afterAll(() => s?.close());

  let seq = 0;
  /** `p` reports inner step `step` (round `round`), and the coordinator took it. */
  const step = async (p: RawPeer, step: number, round: number) => {
    const n = p.frames.length, k = ++seq;
    p.send(report(k, { step, round }));
    const m = await p.next((x) => (x.t === 'ack' && x.seq === k) || x.t === 'error', 5000, n);
    expect(m.t).toBe('ack');
  };
  /** `p` (`id`) is ready for `round`; resolves once the pool holds it (true) or answered it (false). */
  const ready = async (run: string, p: RawPeer, id: string, round: number, waitMs: number): Promise<boolean> => {
    const n = p.frames.length;
    p.send({ t: 'ready', round, waitMs });
    const answered = () => p.frames.slice(n).some((m) => m.t === 'paired' && m.round === round);
    await until(() => s.c.hub.pool(run).has(id) || answered(), 5000, `the ready of ${id} for round ${round}`);
    return !answered();
  };
  const to = (t: number) => clock.advance(Math.max(0, t - clock.now()));

  it('three connections from one address claiming 900 steps/s leave two honest peers 150 ms apart pairing (one typical-cadence vote per address)', async () => {
    // Before the vote was per address the liars owned the typical cadence (22 ms a round), every
    // honest wait was cut to 50 ms and the two, 150 ms apart, met in 0 of 14 rounds.
    const a = await RawPeer.join(s.wsUrl, { run: 'liars' }, { localAddress: '127.0.0.2' });
    const b = await RawPeer.join(s.wsUrl, { run: 'liars' }, { localAddress: '127.0.0.3' });
    const liars = await Promise.all([0, 1, 2].map(() => RawPeer.join(s.wsUrl, { run: 'liars' }, { localAddress: '127.0.0.9' })));
    const LOOP = 400, OFFSET = 150, ROUNDS = 14, H = a.welcome.run.train.H;
    const t0 = clock.now();
    const events: [number, () => Promise<unknown>][] = [];
    let lied = 0;
    for (let t = 0; t < ROUNDS * LOOP; t += 100) events.push([t, () => Promise.all(liars.map((l) => step(l.peer, (lied + 1) * 90, 0))).then(() => lied++)]);
    for (let r = 0; r < ROUNDS; r++) {
      events.push([r * LOOP, () => step(a.peer, (r + 1) * H, r).then(() => ready('liars', a.peer, a.welcome.peerId, r, LOOP))]);
      events.push([r * LOOP + OFFSET, () => step(b.peer, (r + 1) * H, r).then(() => ready('liars', b.peer, b.welcome.peerId, r, LOOP))]);
    }
    events.sort((x, y) => x[0] - y[0]);
    try {
      for (const [t, act] of events) { to(t0 + t); await act(); }
      to(t0 + (ROUNDS + 1) * LOOP);
      const pool = s.c.hub.pool('liars');
      expect(pool.partnersOf(a.welcome.peerId)).toBeGreaterThanOrEqual(10);
    } finally {
      for (const p of [a, b, ...liars]) p.peer.close();
    }
  });

  it('a peer that joined and only stays connected holds a lone peer\'s readies for a couple of cadences, no longer', async () => {
    // Before the pool timed a newcomer's grace, every ready of a waited its whole wait for z.
    const a = await RawPeer.join(s.wsUrl, { run: 'silent' }, { localAddress: '127.0.0.2' });
    const z = await RawPeer.join(s.wsUrl, { run: 'silent' }, { localAddress: '127.0.0.3' });
    const LOOP = 300, H = a.welcome.run.train.H;
    const held: boolean[] = [];
    try {
      for (let r = 0; r < 10; r++) {
        await step(a.peer, (r + 1) * H, r);
        const waits = await ready('silent', a.peer, a.welcome.peerId, r, LOOP);
        held.push(waits);
        if (waits) clock.advance(LOOP); // its wait runs out: a solo step
        await a.peer.next((m) => m.t === 'paired' && m.round === r);
        clock.advance(LOOP);
      }
      expect(held.slice(4), held.join(', ')).toEqual(held.slice(4).map(() => false));
    } finally {
      a.peer.close(); z.peer.close();
    }
  });
});
