// The replay check (src/sync/replay.ts, docs/design.md section 6 "Replayed updates"): a partner
// that sends an update it did not compute this round (its own earlier Δ, another peer's, ours) is
// refused and reported; honest partners, whose consecutive Δs reach cosines of 0.99 in the LR
// warm-up, never are.
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_REPLAY, REPLAY_COSINE, ReplayMemory } from '../src/sync/replay.ts';
import { DEFAULT_VALIDATION, PartnerValidator, norm2 } from '../src/sync/validate.ts';
import { preset, trainConfig } from '../src/model/config.ts';
import { buildLayout } from '../src/model/layout.ts';
import { initParams } from '../src/model/init.ts';
import { datasetFromCorpus } from '../src/data/dataset.ts';
import { CpuReplica } from './support/cpu-replica.ts';
import { seededRandom } from './support/stats.ts';
import { Swarm, syntheticPayload } from './support/swarm.ts';
import { chaosLinks } from './support/chaos.ts';
import type { Offence } from '../src/sync/types.ts';

function gaussian(n: number, seed: number, scale = 1e-3): Float32Array {
  const r = seededRandom(seed);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = scale * Math.sqrt(-2 * Math.log(r() || 1e-12)) * Math.cos(2 * Math.PI * r());
  return x;
}
/** a + noise of `fraction` × ||a|| (the noise's own direction drawn from `seed`). */
function perturbed(a: Float32Array, fraction: number, seed: number): Float32Array {
  const noise = gaussian(a.length, seed);
  const k = (fraction * norm2(a)) / norm2(noise);
  return a.map((x, i) => x + k * noise[i]);
}
/** c·unit(a) + √(1 − c²)·(unit noise orthogonal to a), times ||a||: a vector at cosine c with a. */
function atCosine(a: Float32Array, c: number, seed: number): Float32Array {
  const na = norm2(a);
  const noise = gaussian(a.length, seed);
  const along = noise.reduce((s, x, i) => s + x * a[i], 0) / (na * na);
  const ortho = noise.map((x, i) => x - along * a[i]);
  const no = norm2(ortho);
  return a.map((x, i) => c * x + Math.sqrt(1 - c * c) * (na / no) * ortho[i]);
}
const cosine = (a: Float32Array, b: Float32Array) => a.reduce((s, x, i) => s + x * b[i], 0) / (norm2(a) * norm2(b));

describe('ReplayMemory', () => {
  const n = 50_000;
  const draw = seededRandom(5);

  it('finds a Δ it remembers, as sent, scaled, or with noise of 1% or 4% of its norm; not one at the honest cosines measured (0.992)', () => {
    const m = new ReplayMemory(DEFAULT_REPLAY, draw);
    const old = gaussian(n, 1);
    m.remember(m.sketch(old), 3, 'b');
    for (const [what, d] of [['as sent', old], ['× 1.7', old.map((x) => 1.7 * x)], ['1% noise', perturbed(old, 0.01, 2)], ['4% noise', perturbed(old, 0.04, 3)]] as const) {
      const hit = m.match(m.sketch(d));
      expect(hit, what).not.toBeNull();
      expect(hit!.entry).toMatchObject({ peer: 'b', round: 3 });
    }
    // The honest extreme of bench/results/replay.json (a peer's Δ and its own a round before, H = 4
    // in the warm-up), and an unrelated Δ: no match, whatever their sketch reads.
    for (const c of [0.992, 0.95, 0]) {
      const honest = atCosine(old, c, 10 + c * 100);
      expect(cosine(honest, old)).toBeCloseTo(c, 4);
      const near = m.nearest(m.sketch(honest))!;
      expect(near.cosine, String(c)).toBeLessThan(REPLAY_COSINE);
      expect(m.match(m.sketch(honest)), String(c)).toBeNull();
    }
  });

  it('keeps at most `kept` sketches, whoever sent them: the oldest goes first; our own Δ of a round is kept once', () => {
    const m = new ReplayMemory({ ...DEFAULT_REPLAY, kept: 8 }, draw);
    const first = gaussian(4096, 100);
    m.remember(m.sketch(first), 0, 'p0');
    for (let k = 1; k < 8; k++) m.remember(m.sketch(gaussian(4096, 100 + k)), k, `p${k}`);
    expect(m.size).toBe(8);
    expect(m.match(m.sketch(first))?.entry.peer).toBe('p0');
    // Thousands of partners, one sketch each: the memory holds 8.
    for (let k = 8; k < 3000; k++) m.remember(m.sketch(gaussian(4096, 100 + k)), k, `p${k}`);
    expect(m.size).toBe(8);
    expect(m.match(m.sketch(first))).toBeNull();
    expect(m.match(m.sketch(gaussian(4096, 100 + 2999)))?.entry).toMatchObject({ peer: 'p2999', round: 2999 });
    // Our own Δ of one round, remembered twice, takes one place.
    const mine = gaussian(4096, 9000), again = gaussian(4096, 9001);
    m.remember(m.sketch(mine), 5000, null);
    m.remember(m.sketch(again), 5000, null);
    expect(m.size).toBe(8);
    expect(m.match(m.sketch(mine))).toBeNull();
    expect(m.match(m.sketch(again))?.entry).toMatchObject({ peer: null, round: 5000 });
    // Ours pushed out the oldest partner's sketch (round 2992) and nothing else.
    expect(m.match(m.sketch(gaussian(4096, 100 + 2992)))).toBeNull();
    expect(m.match(m.sketch(gaussian(4096, 100 + 2993)))?.entry).toMatchObject({ peer: 'p2993', round: 2993 });
  });

  it('refuses settings that are not a sketch', () => {
    expect(() => new ReplayMemory({ ...DEFAULT_REPLAY, buckets: 1 })).toThrow(/buckets/);
    expect(() => new ReplayMemory({ ...DEFAULT_REPLAY, kept: 0 })).toThrow(/kept/);
    expect(() => new ReplayMemory({ ...DEFAULT_REPLAY, cosine: 1.5 })).toThrow(/cosine/);
    expect(() => new PartnerValidator(16, { ...DEFAULT_VALIDATION, replayCosine: NaN })).toThrow(/replayCosine/);
    // A zero Δ has no direction: no cosine, no match.
    const m = new ReplayMemory(DEFAULT_REPLAY, draw);
    m.remember(m.sketch(new Float32Array(64)), 0, 'z');
    expect(m.match(m.sketch(new Float32Array(64)))).toBeNull();
  });
});

describe('PartnerValidator: replayed updates (the real model, micro, H = 4 in the LR warm-up)', () => {
  it('an honest pair is never refused over 30 rounds although its consecutive Δs are alike; its earlier Δ sent again, ours sent back, another peer\'s, or one with 1% noise, is refused and an offence naming the round and whose it was', async () => {
    const model = preset('micro');
    const layout = buildLayout(model);
    const H = 4;
    // The regime where honest Δs are most alike (bench/results/replay.json: the browser test's run).
    const cfg = trainConfig({ batch: 2, lr: 6e-4, warmupSteps: 100, H, totalSteps: 100_000 }, model);
    const h = { momentum: cfg.outerMomentum, lr: cfg.outerLr, consensus: cfg.consensus };
    const data = datasetFromCorpus();
    const init = initParams(layout, 1);
    const [a, b] = [0, 1].map((i) => new CpuReplica(layout, cfg, init, data.train, i, 7, h));
    const [va, vb] = [new PartnerValidator(layout.total), new PartnerValidator(layout.total)];
    const sentByA: Float32Array[] = [], sentByB: Float32Array[] = [];
    let closest = -1;
    const K = 30;
    for (let round = 0; round < K; round++) {
      for (const r of [a, b]) await r.innerLoop(H);
      const pa = a.outerPayload(), pb = b.outerPayload();
      if (round > 0) closest = Math.max(closest, cosine(pb.delta, sentByB.at(-1)!), cosine(pa.delta, sentByA.at(-1)!));
      sentByA.push(pa.delta.slice());
      sentByB.push(pb.delta.slice());
      va.observeOwn(norm2(pa.delta));
      vb.observeOwn(norm2(pb.delta));
      const ra = va.check(pa.phi, { phi: pb.phi.slice(), delta: pb.delta.slice() }, { peer: 'B', round, peerRound: round }, pa.delta);
      const rb = vb.check(pb.phi, { phi: pa.phi.slice(), delta: pa.delta.slice() }, { peer: 'A', round, peerRound: round }, pb.delta);
      expect(ra, `A judging B at round ${round}`).toMatchObject({ ok: true });
      expect(rb, `B judging A at round ${round}`).toMatchObject({ ok: true });
      a.applyOuter(ra.ok ? [{ ...pb, delta: ra.delta, peer: 'B', round, deltaNorm: 0, phiDistance: 0, clipped: false }] : []);
      b.applyOuter(rb.ok ? [{ ...pa, delta: rb.delta, peer: 'A', round, deltaNorm: 0, phiDistance: 0, clipped: false }] : []);
    }
    // The test is where honest Δs are alike: a bound at the cosine of the full vectors that honest
    // pairs reach would refuse them (the bench measured up to 0.992).
    expect(closest).toBeGreaterThan(0.95);

    // Round K: A trains on; B sends its φ of the round with an update it did not compute.
    await a.innerLoop(H);
    const pa = a.outerPayload();
    va.observeOwn(norm2(pa.delta));
    const phiB = b.outerPayload().phi;
    const judge = (peer: string, delta: Float32Array, round = K) => va.check(pa.phi, { phi: phiB.slice(), delta }, { peer, round, peerRound: round }, pa.delta);
    const cases = [
      ['its own Δ of round 20 again', 'B', sentByB[20]!, /with the Δ this partner sent us at our round 20 .*replayed an earlier update/],
      ['its Δ of round 25 with 1% noise', 'B', perturbed(sentByB[25]!, 0.01, 77), /with the Δ this partner sent us at our round 25 /],
      ['the Δ A sent at round 28, echoed', 'B', sentByA[28]!, /with the Δ we sent at our round 28 .*replayed an earlier update/],
      ["B's Δ of round 29, from another peer", 'C', sentByB[29]!, /with the Δ B sent us at our round 29 /],
    ] as const;
    for (const [what, peer, delta, detail] of cases) {
      const res = judge(peer, delta.slice());
      expect(res, what).toMatchObject({ ok: false, reason: 'delta-replay', offence: true });
      if (!res.ok) expect(res.detail, what).toMatch(detail);
    }
    // Our own Δ of this round sent back is the echo: refused, no offence (two identical replicas
    // would send it honestly).
    expect(judge('B', pa.delta.slice())).toMatchObject({ ok: false, reason: 'delta-echo', offence: false });
    // B's honest Δ of the round passes.
    await b.innerLoop(H);
    expect(va.check(pa.phi, { phi: phiB.slice(), delta: b.outerPayload().delta }, { peer: 'B', round: K, peerRound: K }, pa.delta)).toMatchObject({ ok: true });
  });
});

describe('PartnerValidator: the replay bound where honest Δs are most alike (H = 1)', () => {
  it('takes an honest partner whose Δ sits at 0.9992 with its last while ours sit at 0.9987 with our last; its earlier Δ sent again, or with 1% noise, is still refused', () => {
    // At H = 1 a Δ is one AdamW step, and momentum carries each along the last: micro at batch 16
    // in the LR warm-up read 0.99873 between consecutive Δs, 0.99901 as sketches (20 seeds, 119
    // rounds: one past 0.999). The fixed bound refused such an honest partner as a replay, an
    // offence. Our own Δs tell how alike honest ones are in this run: the bound sits 8× closer to 1
    // than the most alike pair of ours, and never below replayCosine.
    const n = 50_000;
    const v = new PartnerValidator(n, DEFAULT_VALIDATION, seededRandom(3));
    const phi = gaussian(n, 3, 0.02);
    let ours = gaussian(n, 1), theirs = gaussian(n, 2);
    const sent: Float32Array[] = [];
    for (let round = 0; round < 20; round++) {
      if (round > 0) { ours = atCosine(ours, 0.9987, 100 + round); theirs = atCosine(theirs, 0.9992, 200 + round); }
      sent.push(theirs.slice());
      v.observeOwn(norm2(ours));
      const res = v.check(phi, { phi: phi.slice(), delta: theirs.slice() }, { peer: 'B', round, peerRound: round }, ours);
      expect(res, `round ${round}`).toMatchObject({ ok: true });
    }
    const judge = (delta: Float32Array) => v.check(phi, { phi: phi.slice(), delta }, { peer: 'B', round: 20, peerRound: 20 }, atCosine(ours, 0.9987, 300));
    for (const [what, d] of [['its Δ of round 15 again', sent[15]!], ['with 1% noise', perturbed(sent[15]!, 0.01, 9)]] as const) {
      const res = judge(d.slice());
      expect(res, what).toMatchObject({ ok: false, reason: 'delta-replay', offence: true });
      if (!res.ok) expect(res.detail, what).toMatch(/> 0\.9998\d+ \(our own Δs were alike up to 0\.99\d+\) with the Δ this partner sent us at our round 15 /);
    }
  });
});

describe('mesh: a partner that replays an update', () => {
  let swarm: Swarm | null = null;
  afterEach(() => { swarm?.destroy(); swarm = null; });

  it('is refused through the exchange (a solo step, rejection delta-replay) and reported to the coordinator, naming the round and whose update it was', async () => {
    const N = 20_000;
    const s = (swarm = new Swarm({ n: 2, transport: 'memory', elements: N, seed: 4 }));
    await s.connected(1);
    const [p0, p1] = s.peers;
    const offences: Offence[] = [];
    p0.mesh.on('offence', (e) => offences.push(e));
    // Honest rounds until three paired (under load the pool may send a round solo, 'no-partner'):
    // nothing refused.
    const round = async (r: number, theirs = syntheticPayload(N, 1, r)) =>
      Promise.all([p0.mesh.exchange(r, syntheticPayload(N, 0, r), { waitMs: 5_000 }), p1.mesh.exchange(r, theirs, { waitMs: 5_000 })]);
    const paired: number[] = [];
    let r = 0;
    for (; paired.length < 3 && r < 30; r++) {
      const res = await round(r);
      for (const x of res) expect([x.outcome, x.reason], `round ${r}`).toEqual(x.outcome === 'paired' ? ['paired', null] : ['solo', 'no-partner']);
      if (res[0].outcome === 'paired') paired.push(r);
    }
    expect(paired).toHaveLength(3);
    // Then p1 sends its φ of the round with its Δ of the second paired round again, until paired.
    const old = paired[1]!;
    let mine = (await round(r, { phi: syntheticPayload(N, 1, r).phi, delta: syntheticPayload(N, 1, old).delta }))[0];
    for (r++; mine.reason === 'no-partner' && r < 60; r++) mine = (await round(r, { phi: syntheticPayload(N, 1, r).phi, delta: syntheticPayload(N, 1, old).delta }))[0];
    expect(mine).toMatchObject({ outcome: 'solo', reason: 'rejected', rejection: 'delta-replay', partner: p1.id });
    expect(mine.unreported).toBeUndefined();
    expect(offences).toHaveLength(1);
    expect(offences[0]).toMatchObject({ peer: p1.id, code: 'delta-replay', strikes: 1 });
    expect(offences[0]!.detail).toMatch(new RegExp(`with the Δ this partner sent us at our round ${old} `));
    const report = s.hub.reports.find((x) => x.from === p0.id && x.peer === p1.id);
    expect(report?.reason).toMatch(new RegExp(`^delta-replay: sketch cosine \\S+ > 0\\.999 with the Δ this partner sent us at our round ${old} `));
  });

  it('remembers our Δ when it is sent, not when the partner\'s payload comes: a partner that stalled that exchange and sends our Δ back later is refused (delta-replay, ours)', async () => {
    const N = 20_000;
    // p1 takes p0's payload and lets none of its own chunks leave while `stalling`: p0's exchange
    // runs to its deadline and its validator never sees a payload of that round. Before, our Δ
    // entered the replay memory only beside a partner's payload it judged, so p1 could send it
    // back a round later as its own, accepted (one stall alone is no report, and the accepted
    // exchange clears the stall count: stall, replay, stall, replay, ... never reported).
    let stalling = false;
    const s = (swarm = new Swarm({
      n: 2, transport: 'memory', elements: N, seed: 6,
      init: { deadline: { minMs: 1_000, initialMs: 1_000, maxMs: 2_000 } },
      wrap: (id, links) => (id === 'p1' ? chaosLinks(links, (f, { chunk }) => (chunk && stalling ? [] : [f])) : links),
    }));
    await s.connected(1);
    const [p0, p1] = s.peers;
    const round = async (r: number, theirs = syntheticPayload(N, 1, r)) =>
      (await Promise.all([p0.mesh.exchange(r, syntheticPayload(N, 0, r), { waitMs: 5_000 }), p1.mesh.exchange(r, theirs, { waitMs: 5_000 })]))[0];
    // Honest rounds until two paired (under load the pool may send a round solo, 'no-partner').
    let r = 0;
    for (let paired = 0; paired < 2 && r < 30; r++) if ((await round(r)).outcome === 'paired') paired++;
    // Then a round p1 stalls.
    stalling = true;
    let stalled = await round(r);
    for (r++; stalled.reason === 'no-partner' && r < 60; r++) stalled = await round(r);
    expect(stalled).toMatchObject({ outcome: 'solo', reason: 'deadline', partner: p1.id });
    const ours = r - 1;
    stalling = false;
    // Next paired round, p1 sends its own φ with the Δ p0 sent it in the stalled round.
    const replay = (k: number) => round(k, { phi: syntheticPayload(N, 1, k).phi, delta: syntheticPayload(N, 0, ours).delta });
    let mine = await replay(r);
    for (r++; mine.reason === 'no-partner' && r < 90; r++) mine = await replay(r);
    expect(mine).toMatchObject({ outcome: 'solo', reason: 'rejected', rejection: 'delta-replay', partner: p1.id });
    const report = s.hub.reports.find((x) => x.from === p0.id && x.peer === p1.id && x.reason.startsWith('delta-replay'));
    expect(report?.reason).toMatch(new RegExp(`with the Δ we sent at our round ${ours} `));
  });
});
