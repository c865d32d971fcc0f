import { describe, expect, it } from 'vitest';
import { Rng } from '../src/model/rng.ts';
import {
  HOME_LINK, allReduceBytesPerNode, messageTime, nominalMessageTime, pairExchangeTime,
  ringAllReduceTime, syncTable, treeAllReduceTime, validateNetwork,
} from '../src/train/network.ts';

// sigma = 0: every message takes exactly its nominal time m, so collectives reduce to counting
// messages on the critical path.
const FLAT = { latency: 0.05, upBps: 20e6, sigma: 0 };
const MB = 1e6;
const m = (bytes: number) => 0.05 + (8 * bytes) / 20e6;

describe('network model', () => {
  it('nominal message time is latency + bits / uplink', () => {
    expect(nominalMessageTime(MB, FLAT)).toBeCloseTo(0.45, 12); // 0.05 + 8e6/20e6
    expect(messageTime(MB, FLAT, new Rng(1))).toBeCloseTo(0.45, 12);
  });

  it('log-normal messages have the nominal median and mean exp(sigma^2/2) times it', () => {
    const rng = new Rng(7);
    const xs = Array.from({ length: 20000 }, () => messageTime(MB, HOME_LINK, rng) / 0.45).sort((a, b) => a - b);
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(xs[xs.length / 2]).toBeGreaterThan(0.97);
    expect(xs[xs.length / 2]).toBeLessThan(1.03);
    expect(mean).toBeGreaterThan(Math.exp(0.125) * 0.97);
    expect(mean).toBeLessThan(Math.exp(0.125) * 1.03);
  });

  it('a pair exchange is one message each way, sent at the same time', () => {
    expect(pairExchangeTime(2 * MB, FLAT, new Rng(1))).toBeCloseTo(m(2 * MB), 12);
    // with a tail, the exchange waits for the slower of the two
    const rng = new Rng(3), rng2 = new Rng(3);
    const a = messageTime(MB, HOME_LINK, rng2), b = messageTime(MB, HOME_LINK, rng2);
    expect(pairExchangeTime(MB, HOME_LINK, rng)).toBe(Math.max(a, b));
  });

  it('tree all-reduce counts the critical path (reduce up, serial broadcast down)', () => {
    const M = m(MB), r = new Rng(1);
    expect(treeAllReduceTime(1, MB, FLAT, r)).toBe(0);
    expect(treeAllReduceTime(2, MB, FLAT, r)).toBeCloseTo(2 * M, 12); // up, down
    expect(treeAllReduceTime(3, MB, FLAT, r)).toBeCloseTo(3 * M, 12); // both children up at once; 2 serial sends down
    // n=4: 3->1 (M), 1->0 (2M); down 0->1 (3M), 0->2 (4M, serial), 1->3 (4M)
    expect(treeAllReduceTime(4, MB, FLAT, r)).toBeCloseTo(4 * M, 12);
    // n=7: up 2M; down 0->1 3M, 0->2 4M, 1->3 4M, 1->4 5M, 2->5 5M, 2->6 6M
    expect(treeAllReduceTime(7, MB, FLAT, r)).toBeCloseTo(6 * M, 12);
  });

  it('ring all-reduce is 2(n-1) rounds of a 1/n chunk', () => {
    for (const n of [2, 3, 8]) {
      expect(ringAllReduceTime(n, MB, FLAT, new Rng(1))).toBeCloseTo(2 * (n - 1) * m(MB / n), 10);
    }
  });

  it('counts the bytes each node sends', () => {
    expect(allReduceBytesPerNode(1, MB)).toBe(0);
    expect(allReduceBytesPerNode(4, MB)).toBe(1.5 * MB);
  });

  it('sync table: all-reduce over pair grows with n and is the same for the same seed', () => {
    const ns = [2, 8, 32, 128];
    const trials = { tree: 200, pair: 2000, ring: () => 30 };
    const a = syncTable(ns, 140_000, HOME_LINK, 1, trials);
    const b = syncTable(ns, 140_000, HOME_LINK, 1, trials);
    expect(a).toEqual(b);
    for (let i = 1; i < a.length; i++) expect(a[i].ratio).toBeGreaterThan(a[i - 1].ratio);
    expect(a[0].trials).toEqual({ tree: 200, ring: 30, pair: 2000 });
  });

  it('rejects a network that cannot carry bytes', () => {
    expect(() => validateNetwork({ ...FLAT, upBps: 0 })).toThrow(/upload bandwidth must be > 0/);
    expect(() => validateNetwork({ ...FLAT, latency: -1 })).toThrow(/latency/);
    expect(() => treeAllReduceTime(0, MB, FLAT, new Rng(1))).toThrow(/positive integer, got 0/);
  });
});
