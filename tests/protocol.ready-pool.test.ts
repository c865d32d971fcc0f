import { describe, expect, it } from 'vitest';
import { ReadyPool } from '../src/protocol/ready-pool.ts';
import { chiSquareSurvival, chiSquareUniform, seededRandom } from './support/stats.ts';

/** Rounds of 6 peers arriving in random order; returns how often each of the 15 pairs formed. */
function pairCounts(pool: ReadyPool, rounds: number, random: () => number): { counts: number[]; solo: number } {
  const peers = ['a', 'b', 'c', 'd', 'e', 'f'];
  const index = (x: string, y: string) => {
    const [i, j] = [peers.indexOf(x), peers.indexOf(y)].sort((p, q) => p - q);
    return i * 6 - (i * (i + 1)) / 2 + (j - i - 1);
  };
  const counts = new Array(15).fill(0);
  let solo = 0;
  for (let r = 0; r < rounds; r++) {
    const order = [...peers];
    for (let i = order.length - 1; i > 0; i--) { const j = Math.floor(random() * (i + 1)); [order[i], order[j]] = [order[j], order[i]]; }
    order.forEach((p, k) => {
      const m = pool.enter(p, r, 100, r * 1000 + k);
      if (m) counts[index(m.initiator.peer, m.responder.peer)]++;
    });
    solo += pool.expire(r * 1000 + 500).length;
  }
  return { counts, solo };
}

describe('ReadyPool', () => {
  it('pairs each ready peer with a uniformly random waiting peer (chi-square, 300 rounds)', () => {
    const { counts, solo } = pairCounts(new ReadyPool(seededRandom(1)), 300, seededRandom(2));
    expect(counts.reduce((a, b) => a + b, 0)).toBe(300 * 3);
    const { p } = chiSquareUniform(counts);
    expect(p).toBeGreaterThan(0.01);
    // With random arrivals a peer can end up last with nobody left: those go solo.
    expect(solo).toBe(0);
  });

  it('the same test catches a biased rule (pick the oldest waiter)', () => {
    const biased = new ReadyPool(() => 0); // always index 0 = the longest waiting
    // Arrivals in a fixed order make "oldest waiter" deterministic: a-b, c-d, e-f every round.
    const { counts } = pairCounts(biased, 300, () => 0.999999);
    expect(chiSquareUniform(counts).p).toBeLessThan(1e-6);
  });

  it('expires waits, replaces a repeated ready, removes leavers and respects vetoes', () => {
    const pool = new ReadyPool(seededRandom(3), (a, b) => !(a === 'x' || b === 'x'));
    expect(pool.enter('a', 1, 100, 0)).toBeNull();
    expect(pool.enter('a', 2, 100, 50)).toBeNull(); // replaces, does not pair with itself
    expect(pool.size).toBe(1);
    expect(pool.nextExpiry()).toBe(150);
    expect(pool.enter('x', 1, 100, 60)).toBeNull(); // vetoed: waits instead of pairing with a
    expect(pool.expire(149)).toEqual([]);
    expect(pool.expire(150).map((e) => e.peer)).toEqual(['a']);
    expect(pool.remove('x')).toBe(true);
    expect(pool.remove('x')).toBe(false);
    expect(pool.nextExpiry()).toBeNull();
    pool.enter('b', 7, 100, 200);
    expect(pool.enter('c', 9, 100, 210)).toEqual({ initiator: { peer: 'c', round: 9 }, responder: { peer: 'b', round: 7 } });
    expect(() => pool.enter('d', 1, -1, 0)).toThrow(/waitMs/);
  });
});

describe('chi-square helper', () => {
  it('matches known critical values', () => {
    expect(chiSquareSurvival(3.841, 1)).toBeCloseTo(0.05, 3);
    expect(chiSquareSurvival(23.685, 14)).toBeCloseTo(0.05, 3);
    expect(chiSquareSurvival(11.07, 5)).toBeCloseTo(0.05, 3);
  });
});
