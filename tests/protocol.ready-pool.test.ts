import { describe, expect, it } from 'vitest';
import { ReadyPool } from '../src/protocol/ready-pool.ts';
import { chiSquareSurvival, chiSquareUniform, seededRandom } from './support/stats.ts';

const PEERS = ['a', 'b', 'c', 'd', 'e', 'f'];
const pairIndex = (x: string, y: string) => {
  const [i, j] = [PEERS.indexOf(x), PEERS.indexOf(y)].sort((p, q) => p - q);
  return i * 6 - (i * (i + 1)) / 2 + (j - i - 1);
};

/**
 * Rounds of 6 peers; `arrivals(round, lastPartner)` gives each round's arrival order and times.
 * Returns how often each of the 15 pairs formed and how many waits expired.
 */
function simulate(pool: ReadyPool, rounds: number, arrivals: (r: number, last: Map<string, string>) => [string, number][]) {
  const counts = new Array(15).fill(0);
  const last = new Map<string, string>();
  const partners = new Map(PEERS.map((p) => [p, new Set<string>()]));
  let solo = 0;
  const record = (a: string, b: string) => {
    counts[pairIndex(a, b)]++;
    last.set(a, b); last.set(b, a);
    partners.get(a)!.add(b); partners.get(b)!.add(a);
  };
  for (let r = 0; r < rounds; r++) {
    const base = r * 10_000;
    for (const [p, t] of arrivals(r, last)) {
      // Let the pool's timers fire up to this arrival.
      let d;
      while ((d = pool.nextDeadline()) !== null && d <= base + t) {
        const { matches, expired } = pool.tick(d);
        for (const m of matches) record(m.initiator.peer, m.responder.peer);
        solo += expired.length;
      }
      const m = pool.enter(p, r, 1000, base + t);
      if (m) record(m.initiator.peer, m.responder.peer);
    }
    let d;
    while ((d = pool.nextDeadline()) !== null) {
      const { matches, expired } = pool.tick(d);
      for (const m of matches) record(m.initiator.peer, m.responder.peer);
      solo += expired.length;
    }
  }
  return { counts, solo, partners };
}

function shuffle<T>(xs: T[], random: () => number): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) { const j = Math.floor(random() * (i + 1)); [a[i], a[j]] = [a[j], a[i]]; }
  return a;
}

describe('ReadyPool', () => {
  it('pairs each ready peer with a uniformly random waiting peer (chi-square, 300 rounds of random arrivals)', () => {
    const random = seededRandom(2);
    // Arrivals spread over 0..400 ms of a 1000 ms wait, in random order.
    const { counts, solo } = simulate(new ReadyPool(seededRandom(1)), 300, () => shuffle(PEERS, random).map((p) => [p, Math.floor(random() * 400)]));
    expect(counts.reduce((a, b) => a + b, 0)).toBe(300 * 3);
    expect(solo).toBe(0);
    const { p } = chiSquareUniform(counts);
    expect(p, counts.join(',')).toBeGreaterThan(0.01);
  });

  it('the same test catches a biased rule', () => {
    const random = seededRandom(4);
    // Always the longest waiter, and arrivals in a fixed order: a-b, c-d, e-f every round.
    const { counts } = simulate(new ReadyPool(() => 0, { repeatDelayFrac: 0 }), 300, () => PEERS.map((p, i) => [p, i * 10 + Math.floor(random() * 5)]));
    expect(chiSquareUniform(counts).p).toBeLessThan(1e-6);
  });

  it('equal-speed peers do not lock into fixed pairs (partners arrive together)', () => {
    const random = seededRandom(5);
    // Lockstep: last round's pairs arrive back to back, pairs in random order, within 3 ms.
    const lockstep = (r: number, last: Map<string, string>): [string, number][] => {
      if (r === 0) return PEERS.map((p, i) => [p, i]);
      const pairs: string[][] = [];
      const seen = new Set<string>();
      for (const p of PEERS) if (!seen.has(p)) { const q = last.get(p)!; seen.add(p); seen.add(q); pairs.push([p, q]); }
      return shuffle(pairs, random).flat().map((p, i) => [p, i * 0.5]);
    };
    const plain = simulate(new ReadyPool(seededRandom(6), { repeatDelayFrac: 0 }), 60, lockstep);
    const held = simulate(new ReadyPool(seededRandom(6)), 60, lockstep);
    // The plain rule never changes partners; the hold-off meets (nearly) everyone.
    for (const p of PEERS) expect(plain.partners.get(p)!.size).toBe(1);
    for (const p of PEERS) expect(held.partners.get(p)!.size).toBeGreaterThanOrEqual(4);
    expect(held.solo).toBe(0);
  });

  it('takes a repeat partner at once when only two peers are live', () => {
    const pool = new ReadyPool(seededRandom(3), { liveCount: () => 2 });
    expect(pool.enter('a', 0, 100, 0)).toBeNull();
    expect(pool.enter('b', 0, 100, 1)).not.toBeNull();
    expect(pool.enter('a', 1, 100, 10)).toBeNull();
    expect(pool.enter('b', 1, 100, 11)).not.toBeNull(); // a repeat, no hold-off
  });

  it('holds a repeat off, then allows it; expires waits; replaces repeated readies; respects vetoes', () => {
    const pool = new ReadyPool(seededRandom(3), { canPair: (a, b) => !(a === 'x' || b === 'x') });
    pool.enter('a', 0, 100, 0);
    expect(pool.enter('b', 0, 100, 0)).not.toBeNull();
    expect(pool.enter('a', 1, 100, 1000)).toBeNull();
    expect(pool.enter('b', 1, 100, 1000)).toBeNull(); // only its last partner waits: hold off
    expect(pool.nextDeadline()).toBe(1025);
    const t = pool.tick(1025);
    expect(t.matches.map((m) => [m.initiator.peer, m.responder.peer].sort())).toEqual([['a', 'b']]);
    expect(pool.size).toBe(0);
    expect(pool.enter('c', 2, 100, 2000)).toBeNull();
    expect(pool.enter('c', 3, 100, 2050)).toBeNull(); // replaces its own entry
    expect(pool.size).toBe(1);
    expect(pool.enter('x', 1, 100, 2060)).toBeNull(); // vetoed: waits instead of pairing with c
    expect(pool.tick(2149).expired).toEqual([]);
    expect(pool.tick(2150).expired.map((e) => e.peer)).toEqual(['c']);
    expect(pool.remove('x')).toBe(true);
    expect(pool.remove('x')).toBe(false);
    expect(pool.nextDeadline()).toBeNull();
    pool.enter('d', 7, 100, 3000);
    expect(pool.enter('e', 9, 100, 3010)).toEqual({ initiator: { peer: 'e', round: 9 }, responder: { peer: 'd', round: 7 } });
    expect(() => pool.enter('f', 1, -1, 0)).toThrow(/waitMs/);
  });
});

describe('chi-square helper', () => {
  it('matches known critical values', () => {
    expect(chiSquareSurvival(3.841, 1)).toBeCloseTo(0.05, 3);
    expect(chiSquareSurvival(23.685, 14)).toBeCloseTo(0.05, 3);
    expect(chiSquareSurvival(11.07, 5)).toBeCloseTo(0.05, 3);
  });
});
