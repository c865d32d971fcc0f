// Pairing without the coordinator (src/sync/pairing.ts) against a scripted mesh: only a yes to a
// question we put to that neighbour this round makes it our partner. Before the check, any
// neighbour's unasked `pair-ack ok` did: a hostile one could make itself our partner every round.
import { afterEach, describe, expect, it } from 'vitest';
import { DirectPairing } from '../src/sync/pairing.ts';
import type { MeshCore } from '../src/sync/mesh-core.ts';
import type { ControlMessage } from '../src/protocol/peer-messages.ts';
import { FakeClock } from './support/fake-clock.ts';
import { chaosLinks } from './support/chaos.ts';
import { Swarm, syntheticPayload } from './support/swarm.ts';
import { HANG_GUARD_MS, until } from './support/wait.ts';
import { isSoftOffence } from '../src/protocol/messages.ts';

const TIMEOUT_MS = 200;

function scriptedMesh(neighbours: string[]) {
  const clock = new FakeClock();
  const sent: { to: string; msg: ControlMessage }[] = [];
  let nonce = 1000;
  const mesh = {
    clock, settings: { pairRequestTimeoutMs: TIMEOUT_MS }, random: () => 0,
    randomU32: () => ++nonce,
    eligibleNeighbours: () => neighbours,
    isBanned: () => false,
    resting: () => false,
    sendControl: (to: string, msg: ControlMessage) => { sent.push({ to, msg }); return true; },
  } as unknown as MeshCore;
  /** The questions put so far: [peer, nonce]. */
  const asked = () => sent.flatMap(({ to, msg }) => (msg.t === 'pair-req' ? [[to, msg.nonce] as const] : []));
  return { mesh, clock, sent, asked };
}

describe('direct pairing', () => {
  it('pairs with the neighbour that says yes to our question, and knows its round from the yes', async () => {
    const m = scriptedMesh(['honest']);
    const p = new DirectPairing(m.mesh, 7, 10_000);
    const [[to, nonce]] = m.asked();
    expect(to).toBe('honest');
    expect(m.sent[0]!.msg).toEqual({ t: 'pair-req', round: 7, nonce });
    p.onAck('honest', { t: 'pair-ack', nonce, ok: true, round: 12 });
    expect(await p.result).toBe('honest');
    expect(p.partnerRound).toBe(12);
  });

  it('says yes to a question, naming our round, and knows the asker\'s round from the question', async () => {
    const m = scriptedMesh([]);
    const p = new DirectPairing(m.mesh, 7, 10_000);
    p.onRequest('asker', { t: 'pair-req', round: 30, nonce: 5 });
    expect(await p.result).toBe('asker');
    expect(p.partnerRound).toBe(30);
    expect(m.sent.map((s) => s.msg)).toEqual([{ t: 'pair-ack', nonce: 5, ok: true, round: 7 }]);
  });

  it('refuses a yes it never asked for (another neighbour, or the asked one with another nonce), answers it with an abort and keeps waiting', async () => {
    const m = scriptedMesh(['honest', 'attacker']);
    const p = new DirectPairing(m.mesh, 7, 10_000);
    const [[to, nonce]] = m.asked();
    expect(to).toBe('honest');
    p.onAck('attacker', { t: 'pair-ack', nonce, ok: true, round: 1 });
    p.onAck('attacker', { t: 'pair-ack', nonce: 1, ok: true, round: 2 });
    p.onAck('honest', { t: 'pair-ack', nonce: nonce + 1, ok: true, round: 3 });
    expect(p.asking).toBe('honest');
    // Each abort names the round the yes carried: the one its sender thinks it is paired with us for.
    expect(m.sent.filter((s) => s.msg.t === 'abort').map((s) => [s.to, s.msg])).toEqual([
      ['attacker', { t: 'abort', round: 7, reason: 'paired elsewhere', yourRound: 1 }],
      ['attacker', { t: 'abort', round: 7, reason: 'paired elsewhere', yourRound: 2 }],
      ['honest', { t: 'abort', round: 7, reason: 'paired elsewhere', yourRound: 3 }],
    ]);
    p.onAck('honest', { t: 'pair-ack', nonce, ok: true, round: 4 });
    expect(await p.result).toBe('honest');
    expect(p.partnerRound).toBe(4);
  });

  it("still takes a late yes to a question that timed out (the neighbour paired with us when it said it)", async () => {
    const m = scriptedMesh(['slow']);
    const p = new DirectPairing(m.mesh, 7, 10_000);
    const [[, first]] = m.asked();
    m.clock.advance(TIMEOUT_MS + 1);
    expect(m.asked()).toHaveLength(2);
    p.onAck('slow', { t: 'pair-ack', nonce: first, ok: true, round: 9 });
    expect(await p.result).toBe('slow');
    expect(p.partnerRound).toBe(9);
  });
});

describe('direct pairing with a neighbour that stalls', () => {
  let swarm: Swarm | null = null;
  afterEach(() => { swarm?.destroy(); swarm = null; });

  it('leaves a partner whose payload twice in a row never came by the deadline alone next round; honest neighbours still pair', async () => {
    const n = 20_000;
    // p2 answers pairings and announces, but none of its chunks ever leave: every exchange with it
    // runs to the deadline. Asking everyone at once, it was the partner of whoever was not asking
    // round after round while the coordinator was down, each round a whole deadline, solo.
    const s = (swarm = new Swarm({
      n: 3, transport: 'memory', elements: n, seed: 5,
      // Short first deadlines keep p2's stalls quick. The honest exchange of round 4 waits as long
      // as it needs: p1 never met a staller, and p0's deadline grows with each of p2's misses (a
      // loaded machine once moved no byte of either payload in the 400 ms p1 started from).
      init: { deadline: { minMs: 100, initialMs: 400, maxMs: HANG_GUARD_MS }, neighbours: { min: 2, max: 2 } },
      initFor: (id) => (id === 'p1' ? { deadline: { minMs: 100, initialMs: HANG_GUARD_MS, maxMs: HANG_GUARD_MS } } : {}),
      wrap: (id, links) => (id === 'p2' ? chaosLinks(links, (f, { chunk }) => (chunk ? [] : [f])) : links),
    }));
    await s.connected(2);
    s.hub.stop(); // the coordinator is down: pairing goes through neighbours
    const [p0, p1, p2] = s.peers;
    const exchange = (p: typeof p0, i: number, round: number, waitMs: number) => p!.mesh.exchange(round, syntheticPayload(n, i, round), { waitMs });
    // Rounds 1 and 2: p1 is busy elsewhere (not exchanging); p0 and p2 pair, and p2's payload
    // never comes. One stall alone is no rest (a link may hiccup once): they pair again.
    for (const round of [1, 2]) {
      const [a] = await Promise.all([exchange(p0, 0, round, 3_000), exchange(p2, 2, round, 3_000)]);
      expect(a!.via).toBe('direct');
      expect(a!.partner, `round ${round}`).toBe('p2');
      expect(a!.reason).toBe('deadline');
    }
    // Round 3: p2 is ready again and asks; p0 neither asks it nor says yes, and trains alone.
    const [b] = await Promise.all([exchange(p0, 0, 3, 600), exchange(p2, 2, 3, 600)]);
    expect(b!.partner, JSON.stringify({ ...b, payload: null })).toBeNull();
    expect(b!.reason).toBe('no-partner');
    // A question of round 3 still on its way would land in a neighbour's round 4 and be taken
    // there (p0's to p1, p2's to p0 once its rest is over): paired with a peer that has stopped,
    // the neighbour loses round 4 (1 run in 4 under load). Round 4 starts once every link is quiet.
    await until(() => s.net.inFlight === 0, HANG_GUARD_MS, 'the round-3 questions to land');
    // Round 4: the honest neighbour pairs as ever.
    const [c, d] = await Promise.all([exchange(p0, 0, 4, 3_000), exchange(p1, 1, 4, 3_000)]);
    const both = JSON.stringify({ p0: { ...c, payload: null }, p1: { ...d, payload: null } });
    expect(c!.partner, both).toBe('p1');
    expect(c!.outcome, both).toBe('paired');
  });
});

describe('pool pairing with a partner that stalls', () => {
  let swarm: Swarm | null = null;
  afterEach(() => { swarm?.destroy(); swarm = null; });

  it('reports a pool partner whose payload twice in a row never came by the deadline (soft `stall`), once, at the second; the first reports nothing', async () => {
    const n = 20_000;
    // p1 takes the pool's pairings and announces, but none of its chunks ever leave. Without a
    // report the coordinator's pool, which learns of no missed deadline, paired us with it again
    // and again: each round a whole deadline, solo, the next deadline longer.
    const s = (swarm = new Swarm({
      // Deadlines long enough for p0's payload to reach p1 on a loaded machine: only p1 stalls.
      n: 2, transport: 'memory', elements: n, seed: 9,
      init: { deadline: { minMs: 1_000, initialMs: 1_000, maxMs: 2_000 } },
      wrap: (id, links) => (id === 'p1' ? chaosLinks(links, (f, { chunk }) => (chunk ? [] : [f])) : links),
    }));
    await s.connected(1);
    const [p0, p1] = s.peers;
    const exchange = (p: typeof p0, i: number, round: number) => p!.mesh.exchange(round, syntheticPayload(n, i, round), { waitMs: 3_000 });
    const stalls = () => s.hub.reports.filter((r) => r.reason.split(':')[0] === 'stall');
    const [a1, b1] = await Promise.all([exchange(p0, 0, 1), exchange(p1, 1, 1)]);
    expect(a1!.via).toBe('coordinator');
    expect(a1!.partner).toBe('p1');
    expect(a1!.reason).toBe('deadline');
    expect(b1!.outcome).toBe('paired'); // p0's payload reached p1: only p0 was stalled
    // One stall alone reports nothing: a link may hiccup once.
    expect(stalls()).toEqual([]);
    const [a2] = await Promise.all([exchange(p0, 0, 2), exchange(p1, 1, 2)]);
    expect(a2!.via).toBe('coordinator');
    expect(a2!.partner).toBe('p1');
    expect(a2!.reason).toBe('deadline');
    const got = stalls();
    expect(got.map((r) => [r.from, r.peer]), JSON.stringify(s.hub.reports)).toEqual([['p0', 'p1']]);
    expect(isSoftOffence(got[0]!.reason)).toBe(true);
    expect(s.hub.reports).toHaveLength(1);
  });
});
