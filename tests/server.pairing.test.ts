import { describe, expect, it } from 'vitest';
import { ReadyPool } from '../server/pairing.ts';
import type { PairedMsg } from '../src/protocol/messages.ts';
import { Rng } from '../src/model/rng.ts';
import { FakeClock } from './support/fake-clock.ts';

function pool(seed = 1, o: { minWaitMs?: number; maxWaitMs?: number; gatherMs?: number } = {}) {
  const clock = new FakeClock();
  const rng = new Rng(seed, 9);
  const sent: [string, PairedMsg][] = [];
  const p = new ReadyPool({ clock, rng: () => rng.uniform(), send: (peer, m) => sent.push([peer, m]), gatherMs: 20, ...o });
  return { clock, p, sent };
}

describe('ready pool (DESIGN.md section 3)', () => {
  it('pairs two ready peers after the gather tick; exactly one side initiates', () => {
    const { p, sent, clock } = pool();
    p.ready('a', 4, 1000);
    clock.advance(100);
    expect(sent).toEqual([]);
    p.ready('b', 7, 1000);
    clock.advance(19);
    expect(sent).toEqual([]);
    clock.advance(1);
    expect(sent).toHaveLength(2);
    const byPeer = new Map(sent);
    expect(byPeer.get('a')).toMatchObject({ round: 4, partner: 'b' });
    expect(byPeer.get('b')).toMatchObject({ round: 7, partner: 'a' });
    expect(byPeer.get('a')!.initiator !== byPeer.get('b')!.initiator).toBe(true);
    expect(p.size).toBe(0);
    expect(p.stats).toEqual({ pairs: 1, solos: 0 });
  });

  it('tells a peer to step solo when its wait runs out, never sooner', () => {
    const { p, sent, clock } = pool();
    p.ready('a', 1, 300);
    clock.advance(299);
    expect(sent).toEqual([]);
    clock.advance(1);
    expect(sent).toEqual([['a', { t: 'paired', round: 1, partner: null, initiator: false }]]);
    expect(p.stats).toEqual({ pairs: 0, solos: 1 });
  });

  it('clamps the wait: never zero, never unbounded', () => {
    const { p, sent, clock } = pool(1, { minWaitMs: 50, maxWaitMs: 1000 });
    p.ready('a', 1, 1);
    clock.advance(49);
    expect(sent.length).toBe(0);
    clock.advance(1);
    expect(sent.length).toBe(1);
    p.ready('b', 1, 1e9);
    clock.advance(1000);
    expect(sent.length).toBe(2);
  });

  it('a departed peer is never offered as a partner, and its timer is gone', () => {
    const { p, sent, clock } = pool();
    p.ready('a', 1, 500);
    p.ready('b', 1, 500);
    p.remove('a');
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

  it('an odd peer out keeps waiting and pairs with the next arrival', () => {
    const { p, sent, clock } = pool();
    for (const x of ['a', 'b', 'c']) p.ready(x, 0, 1000);
    clock.advance(20);
    expect(sent).toHaveLength(2);
    expect(p.size).toBe(1);
    p.ready('d', 0, 1000);
    clock.advance(20);
    expect(sent).toHaveLength(4);
    expect(sent.slice(2).map(([peer]) => peer).sort()).toContain('d');
  });

  it('chooses partners uniformly at random among the ready peers', () => {
    const { p, sent, clock } = pool(42);
    const counts = new Map<string, number>();
    let paired = 0;
    const trials = 4000;
    for (let i = 0; i < trials; i++) {
      sent.length = 0;
      for (const w of ['x', 'w0', 'w1', 'w2', 'w3', 'w4']) p.ready(w, 0, 1e6);
      clock.advance(20);
      const mine = sent.find(([peer]) => peer === 'x');
      if (mine) {
        paired++;
        counts.set(mine[1].partner!, (counts.get(mine[1].partner!) ?? 0) + 1);
      }
      p.clear();
    }
    expect(paired).toBe(trials);
    // Chi-square with 4 degrees of freedom; 18.5 is the 0.1% critical value.
    const expected = trials / 5;
    const chi2 = [...counts.values()].reduce((s, c) => s + (c - expected) ** 2 / expected, 0);
    expect(counts.size).toBe(5);
    expect(chi2).toBeLessThan(18.5);
  });
});

describe('ready pool vetoes (offender reports)', () => {
  it('never pairs a vetoed pair, pairs each of them with others, and lets a vetoed peer go solo', () => {
    const clock = new FakeClock();
    const rng = new Rng(5, 9);
    const sent: [string, PairedMsg][] = [];
    const veto = (a: string, b: string) => (a === 'a' && b === 'b') || (a === 'b' && b === 'a');
    const p = new ReadyPool({ clock, rng: () => rng.uniform(), send: (peer, m) => sent.push([peer, m]), gatherMs: 20, canPair: (a, b) => !veto(a, b) });
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
      clock.advance(20);
      expect(sent).toHaveLength(4); // a vetoed pair never blocks a full matching of four
      for (const [peer, m] of sent) {
        expect(veto(peer, m.partner!)).toBe(false);
        met.add([peer, m.partner].sort().join('-'));
      }
    }
    // c-d never forms: it would leave the vetoed a and b as the only ones to meet each other.
    expect([...met].sort()).toEqual(['a-c', 'a-d', 'b-c', 'b-d']);
  });
});
