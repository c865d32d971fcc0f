// The coordinator's wrapper of the one ready-pool rule (src/protocol/ready-pool.ts, whose rules
// tests/protocol.ready-pool.test.ts pins): its timer and its `paired` messages.
import { describe, expect, it } from 'vitest';
import { ReadyPool, type ReadyPoolOptions } from '../server/pairing.ts';
import type { PairedMsg } from '../src/protocol/messages.ts';
import { Rng } from '../src/model/rng.ts';
import { FakeClock } from './support/fake-clock.ts';

function pool(seed = 1, o: Partial<ReadyPoolOptions> = {}) {
  const clock = new FakeClock();
  const rng = new Rng(seed, 9);
  const sent: [string, PairedMsg][] = [];
  const p = new ReadyPool({ clock, rng: () => rng.uniform(), send: (peer, m) => sent.push([peer, m]), ...o });
  return { clock, p, sent };
}

describe('ready pool on the server (docs/design.md section 3)', () => {
  it('pairs a ready peer with one already waiting; exactly one side (the later) initiates', () => {
    const { p, sent, clock } = pool();
    p.ready('a', 4, 1000);
    clock.advance(100);
    expect(sent).toEqual([]);
    p.ready('b', 7, 1000);
    expect(sent).toEqual([
      ['b', { t: 'paired', round: 7, partner: 'a', initiator: true }],
      ['a', { t: 'paired', round: 4, partner: 'b', initiator: false }],
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
