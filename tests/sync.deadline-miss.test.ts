// The mesh's one transfer-rate estimate must learn from misses too. Fed only completed
// receives, one fast exchange set the deadline for every partner: an honest slower one missed it
// ('deadline', solo on both sides) and, since a miss changed nothing, went on missing for good.
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_DEADLINE } from '../src/protocol/exchange-link.ts';
import { DeadlineEstimator, MISS_GROWTH } from '../src/sync/deadline.ts';
import { chaosLinks } from './support/chaos.ts';
import { Swarm, syntheticPayload } from './support/swarm.ts';

let swarm: Swarm | null = null;
afterEach(() => { swarm?.destroy(); swarm = null; });

/** φ and Δ of 2.4 M floats each, f32: 19.2 MB an exchange. */
const BYTES = 19_200_000;
/** A fast partner: 128 MB/s (bytes per ms). */
const FAST = 128_000;

describe('DeadlineEstimator after a miss', () => {
  it('after a fast exchange, a miss lengthens the next deadline to what an honest 5 MB/s partner needs', () => {
    const est = new DeadlineEstimator(DEFAULT_DEADLINE);
    est.observe(BYTES, BYTES / FAST);
    const before = est.deadlineMs(BYTES);
    expect(before).toBe(DEFAULT_DEADLINE.minMs); // 600 ms raw: the floor
    const slow = 5_000; // 5 MB/s
    const need = BYTES / slow; // 3,840 ms
    expect(need).toBeGreaterThan(before);
    // The partner delivered what it could before the deadline.
    est.miss(BYTES, before, slow * before, before);
    const after = est.deadlineMs(BYTES);
    expect(after).toBeGreaterThan(before);
    expect(after).toBeGreaterThanOrEqual(need);
    expect(after).toBeLessThanOrEqual(DEFAULT_DEADLINE.maxMs);
  });

  it('repeated misses with nothing received grow the deadline until a slow partner fits, never past maxMs; its completed exchange keeps it there', () => {
    const est = new DeadlineEstimator(DEFAULT_DEADLINE);
    est.observe(BYTES, BYTES / FAST);
    const need = BYTES / 1_000; // 1 MB/s: 19.2 s
    const seen = [est.deadlineMs(BYTES)];
    while (est.deadlineMs(BYTES) < need) {
      expect(seen.length).toBeLessThan(10);
      est.miss(BYTES, est.deadlineMs(BYTES));
      seen.push(est.deadlineMs(BYTES));
    }
    for (let i = 1; i < seen.length; i++) expect(seen[i]).toBeGreaterThan(seen[i - 1]!);
    expect(seen.length).toBeGreaterThan(2);
    expect(seen.at(-1)).toBeGreaterThanOrEqual(need);
    // The slow partner now gets through; its exchange is observed and it still fits next time.
    est.observe(BYTES, need);
    expect(est.deadlineMs(BYTES)).toBeGreaterThanOrEqual(need);
    // A partner that never sends: misses stop at maxMs.
    for (let i = 0; i < 20; i++) est.miss(BYTES, est.deadlineMs(BYTES));
    expect(est.deadlineMs(BYTES)).toBe(DEFAULT_DEADLINE.maxMs);
  });

  it('a partner that sends one byte and stalls lengthens the deadline at most MISS_GROWTH times, not to maxMs', () => {
    const est = new DeadlineEstimator(DEFAULT_DEADLINE);
    est.observe(BYTES, BYTES / FAST);
    const before = est.deadlineMs(BYTES);
    expect(before).toBe(DEFAULT_DEADLINE.minMs);
    // Its one chunk carried a single byte (the chunk size is the sender's to pick), then nothing.
    est.miss(BYTES, before, 1, before);
    const after = est.deadlineMs(BYTES);
    expect(after).toBe(MISS_GROWTH * before);
    expect(after).toBeLessThan(DEFAULT_DEADLINE.maxMs);
    // A partner that sent nothing at all doubles it, as before: one byte buys no more than 4x.
    const mute = new DeadlineEstimator(DEFAULT_DEADLINE);
    mute.observe(BYTES, BYTES / FAST);
    mute.miss(BYTES, before);
    expect(mute.deadlineMs(BYTES)).toBe(2 * before);
  });

  it('an honest partner needing up to MISS_GROWTH times the missed deadline fits the next one', () => {
    const est = new DeadlineEstimator(DEFAULT_DEADLINE);
    est.observe(BYTES, BYTES / FAST);
    const before = est.deadlineMs(BYTES);
    const need = MISS_GROWTH * before; // 8 s: 2.4 MB/s
    est.miss(BYTES, before, (BYTES / need) * before, before);
    expect(est.deadlineMs(BYTES)).toBeGreaterThanOrEqual(need);
  });

  it('a miss never shortens a deadline, also before anything was measured', () => {
    const est = new DeadlineEstimator(DEFAULT_DEADLINE);
    expect(est.deadlineMs(BYTES)).toBe(DEFAULT_DEADLINE.initialMs);
    est.miss(BYTES, DEFAULT_DEADLINE.initialMs, BYTES / 2, 10); // a partial rate far above what missed
    expect(est.deadlineMs(BYTES)).toBe(2 * DEFAULT_DEADLINE.initialMs);
  });
});

describe('the mesh after a missed exchange', () => {
  it('a fast exchange, then partners that miss: each miss lengthens the deadline of the next exchange', async () => {
    const n = 20_000;
    let mute = false;
    // p1 turns into a partner whose tensors do not arrive in time (its announcement does).
    const s = (swarm = new Swarm({
      n: 2, transport: 'memory', elements: n, seed: 4,
      init: { deadline: { minMs: 100, initialMs: 2_000, maxMs: 10_000 } },
      wrap: (id, links) => (id === 'p1' ? chaosLinks(links, (f, { chunk }) => (mute && chunk ? [] : [f])) : links),
    }));
    await s.connected(1);
    const [p0, p1] = s.peers;
    const round = (r: number) => Promise.all([p0!, p1!].map((p, i) => p.mesh.exchange(r, syntheticPayload(n, i, r), { waitMs: 3_000 })));
    const [fast] = await round(0);
    expect(fast!.outcome).toBe('paired');
    const deadlines = [p0!.mesh.stats().deadlineMs];
    // Near the floor (100 ms): memory links are fast, but a loaded machine may slow one receive.
    expect(deadlines[0]).toBeLessThanOrEqual(1_000);
    mute = true;
    // The pool pairs the two most rounds, not all (its cadence rules): count the rounds it does.
    for (let r = 1; deadlines.length < 4; r++) {
      expect(r, 'rounds needed for three misses').toBeLessThan(40);
      const [mine] = await round(r);
      if (mine!.reason === 'no-partner') continue;
      expect(mine!.partner).toBe('p1');
      expect(mine!.reason).toBe('deadline');
      deadlines.push(p0!.mesh.stats().deadlineMs);
    }
    for (let i = 1; i < deadlines.length; i++) expect(deadlines[i]).toBeGreaterThan(deadlines[i - 1]!);
  });
});
