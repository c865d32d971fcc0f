// Metrics that a client cannot corrupt: every report field is bounded by what could be true for
// that peer (step by the time since it joined, losses, throughput, bytes), each impossible report
// is refused with an error naming the field and nothing is stored; points are plotted at the
// coordinator's receive time whatever the client's clock says; a partner is stored only if the
// pool paired the two; and the metrics queries answer over byte counts whose sum overflows a
// 64-bit integer (rows a coordinator without these bounds accepted); and the step a welcome says the
// live peers agree on, which one peer inflating its steps cannot move.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tableCounts } from '../server/db.ts';
import { consensusStep, MAX_STEPS_PER_S, STEP_SLACK } from '../src/protocol/state-frame.ts';
import { RawPeer, report, startServer, until, type TestServer } from './support/coordinator.ts';
import { FakeClock } from './support/fake-clock.ts';
import { ABSURD_REPORTS, insertOverflowRows } from './support/attacks.ts';
import { honestState } from './support/states.ts';
import { AGREED_STEP_MS, stepVotes } from '../server/peers.ts';
import { welcomeStepCap } from '../src/sync/join.ts';
import { stateCheckBatchCount } from '../src/data/sampler.ts';
import type { RunInfo } from '../src/protocol/messages.ts';
import { PeerList } from '../src/protocol/api.ts';
import { schemaProblem } from '../src/protocol/check.ts';

let s: TestServer;
const clock = new FakeClock();

beforeAll(async () => {
  s = await startServer({}, { clock });
});
afterAll(() => s?.close());

const errorFor = (peer: RawPeer, from: number) => peer.next((m) => m.t === 'error' || m.t === 'ack', 5000, from);

describe('metric report bounds', () => {
  it('refuses impossible reports, naming the field, and stores none of them', async () => {
    const { peer } = await RawPeer.join(s.wsUrl);
    try {
      const before = tableCounts(s.c.db).reports;
      for (const [k, [over, why]] of ABSURD_REPORTS.entries()) {
        const at = peer.frames.length;
        peer.send(report(k + 1, over));
        const answer = await errorFor(peer, at);
        expect(answer, JSON.stringify(over)).toMatchObject({ t: 'error', code: 'bad-message', ref: 'report' });
        expect((answer as { message: string }).message).toMatch(why);
      }
      expect(tableCounts(s.c.db).reports).toBe(before);
      // An honest one still goes through (NaN losses too: they are the dashboard's alert).
      peer.send(report(20, { trainLoss: 'NaN', valLoss: 2.5, bytesIn: 300_000 }));
      expect(await peer.next((m) => m.t === 'ack' && m.seq === 20)).toEqual({ t: 'ack', seq: 20 });
      expect(tableCounts(s.c.db).reports).toBe(before + 1);
      // The probe's figures (src/round/probe.ts) are stored with the report.
      peer.send(report(21, { probeMs: 12.5, probeSolo: 2.5, probePaired: 2.9, probeRejected: true }));
      expect(await peer.next((m) => m.t === 'ack' && m.seq === 21)).toEqual({ t: 'ack', seq: 21 });
      expect(s.c.db.prepare('SELECT probe_ms AS ms, probe_solo AS solo, probe_paired AS paired, probe_rejected AS rejected FROM reports WHERE seq = 21 AND probe_ms IS NOT NULL').get())
        .toEqual({ ms: 12.5, solo: 2.5, paired: 2.9, rejected: 1 });
    } finally {
      peer.close();
    }
  });

  it('bounds step progress by the time since the peer joined', async () => {
    const { peer, welcome } = await RawPeer.join(s.wsUrl);
    try {
      const first = STEP_SLACK + 1;
      let at = peer.frames.length;
      peer.send(report(1, { step: first }));
      expect(await errorFor(peer, at)).toMatchObject({ t: 'error', ref: 'report' });
      clock.advance(2000);
      const allowed = 2 * MAX_STEPS_PER_S + STEP_SLACK;
      at = peer.frames.length;
      peer.send(report(2, { step: allowed + 1, round: 3 }));
      expect(await errorFor(peer, at)).toMatchObject({ t: 'error', ref: 'report' });
      peer.send(report(3, { step: allowed, round: 3 }));
      expect(await peer.next((m) => m.t === 'ack' && m.seq === 3)).toEqual({ t: 'ack', seq: 3 });
      expect(s.c.hub.lastStep(welcome.peerId)).toBe(allowed);
    } finally {
      peer.close();
    }
  });

  it('bounds a big model\'s steps and throughput by what the fastest device could do on it, and says so in the welcome', async () => {
    // base at batch 32: at least 6 FLOPs per token per weight, 32 x 512 tokens a step; no device
    // does MAX_DEVICE_FLOPS (2e14) a second, so no peer steps faster than about 42.5 a second,
    // where the constant bound (MAX_STEPS_PER_S) allowed 1,000.
    const created = await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id: 'big', dataset: 'moby-dick', preset: 'base', train: { batch: 32 } } });
    expect(created.statusCode).toBe(201);
    const run = created.json() as RunInfo;
    const weights = 12 * 12 * 576 * 576 + 256 * 576;
    const rate = 2e14 / (6 * 32 * 512 * weights);
    expect(rate).toBeLessThan(MAX_STEPS_PER_S / 20);
    const { peer, welcome } = await RawPeer.join(s.wsUrl, { run: 'big' });
    try {
      expect(welcome.stepRate).toBeCloseTo(rate, 9);
      clock.advance(2000);
      const allowed = Math.ceil(2 * rate) + STEP_SLACK;
      let at = peer.frames.length;
      peer.send(report(1, { step: allowed + 1, round: 1 }));
      const refused = await errorFor(peer, at);
      expect(refused).toMatchObject({ t: 'error', code: 'bad-message', ref: 'report' });
      expect((refused as { message: string }).message).toContain(`at most ${allowed} (from step 0 at ${rate.toPrecision(3)} steps/s, this run's fastest`);
      const maxTps = Math.ceil(rate * run.train.batch * run.train.seqLen);
      at = peer.frames.length;
      peer.send(report(2, { step: allowed, round: 1, tokensPerS: maxTps + 1 }));
      expect(await errorFor(peer, at)).toMatchObject({ t: 'error', ref: 'report', message: expect.stringContaining(`tokensPerS ${maxTps + 1} exceeds ${maxTps}`) });
      peer.send(report(3, { step: allowed, round: 1, tokensPerS: maxTps }));
      expect(await peer.next((m) => m.t === 'ack' && m.seq === 3)).toEqual({ t: 'ack', seq: 3 });
      // An upload from this peer is judged by the same bound.
      expect(s.c.hub.maxStep(welcome.peerId)).toBe(allowed);
    } finally {
      peer.close();
    }
  });

  it('welcomes a newcomer with the furthest step it could start from and the step the run agrees on', async () => {
    const created = await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id: 'agree', dataset: 'moby-dick', preset: 'micro', train: { H: 10 } } });
    expect(created.statusCode).toBe(201);
    const run = created.json() as RunInfo;
    const peers: RawPeer[] = [];
    const join = async () => {
      const j = await RawPeer.join(s.wsUrl, { run: 'agree' });
      peers.push(j.peer);
      return j;
    };
    const reported = async (p: RawPeer, seq: number, step: number) => {
      p.send(report(seq, { step, round: Math.floor(step / 10) }));
      expect(await p.next((m) => m.t === 'ack' && m.seq === seq)).toEqual({ t: 'ack', seq });
    };
    try {
      // Nothing reported and no checkpoint: nothing to agree on.
      const a = await join();
      expect(a.welcome).toMatchObject({ stepBase: 0 });
      expect(a.welcome.stepConsensus).toBeUndefined();
      await reported(a.peer, 1, 50);
      // b claims 10,000 steps, as much as its bound allows 10 s after it joined.
      const b = await join();
      clock.advance(10_000);
      await reported(b.peer, 1, 10_000);
      // The report bound covers b's claim; with nobody off probation and no checkpoint, every
      // address votes its lowest step (here one address: a's 50), never the furthest claim.
      const c = await join();
      expect(c.welcome).toMatchObject({ stepBase: 10_000, stepConsensus: 50 });
      // The newest offered checkpoint is the floor: with no trusted vote, the run's step.
      const st = honestState(run, 0);
      await s.c.checkpoints.save(run, { ...st, meta: { ...st.meta, step: 40, round: 4, valLoss: 5 } }, null, clock.now(), stateCheckBatchCount(run.model, run.train));
      expect((await join()).welcome).toMatchObject({ stepBase: 10_000, stepConsensus: 40 });
    } finally {
      for (const p of peers) p.close();
    }
  });

  it('the run\'s summary names the step its peers agree on, never the furthest claim, for the dashboard\'s phase', async () => {
    const created = await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id: 'summary-step', dataset: 'moby-dick', preset: 'micro', train: { H: 10, totalSteps: 5000 } } });
    expect(created.statusCode).toBe(201);
    const run = created.json() as RunInfo;
    const summary = async () => (await s.c.app.inject({ method: 'GET', url: '/api/runs/summary-step' })).json() as { stepConsensus?: number };
    const peers: RawPeer[] = [];
    try {
      // Nothing reported and no checkpoint: no figure.
      const honest = await RawPeer.join(s.wsUrl, { run: 'summary-step' });
      peers.push(honest.peer);
      expect((await summary()).stepConsensus).toBeUndefined();
      honest.peer.send(report(1, { step: 30, round: 3 }));
      expect(await honest.peer.next((m) => m.t === 'ack' && m.seq === 1)).toEqual({ t: 'ack', seq: 1 });
      // A new id claims as many steps as its bound allows 10 s after it joined: past the run's
      // whole schedule, which the dashboard then showed as the run's phase.
      const { peer } = await RawPeer.join(s.wsUrl, { run: 'summary-step' });
      peers.push(peer);
      clock.advance(10_000);
      const claimed = 10 * MAX_STEPS_PER_S;
      expect(claimed).toBeGreaterThan(run.train.totalSteps);
      peer.send(report(1, { step: claimed, round: claimed / 10 }));
      expect(await peer.next((m) => m.t === 'ack' && m.seq === 1)).toEqual({ t: 'ack', seq: 1 });
      expect(await summary()).toMatchObject({ stepConsensus: 30 });
      const st = honestState(run, 0);
      await s.c.checkpoints.save(run, { ...st, meta: { ...st.meta, step: 40, round: 4, valLoss: 5 } }, null, clock.now(), stateCheckBatchCount(run.model, run.train));
      // Anonymous reads show the agreed step as worked out within the last AGREED_STEP_MS.
      clock.advance(AGREED_STEP_MS);
      expect(await summary()).toMatchObject({ stepConsensus: 40 });
      const list = (await s.c.app.inject({ method: 'GET', url: '/api/runs' })).json() as { runs: { id: string; stepConsensus?: number }[] };
      expect(list.runs.find((r) => r.id === 'summary-step')).toMatchObject({ stepConsensus: 40 });
    } finally {
      for (const p of peers) p.close();
    }
  });

  // Early in a run nobody is off probation yet (3 accepted exchanges each). With no vote counted
  // then, the welcome named no step and a newcomer's only bound was stepBase: the furthest claim
  // of any live peer. One new id reporting 10,000 steps and serving a good φ at that step put
  // the newcomer past the run's schedule, and its reports, states and uploads carried it on.
  it('with nobody off probation yet, every address votes: one new id\'s claim is not a newcomer\'s step', async () => {
    const created = await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id: 'untrusted', dataset: 'moby-dick', preset: 'micro', train: { H: 10, totalSteps: 5000 } } });
    expect(created.statusCode).toBe(201);
    const peers: RawPeer[] = [];
    try {
      const honest = await RawPeer.join(s.wsUrl, { run: 'untrusted' });
      peers.push(honest.peer);
      honest.peer.send(report(1, { step: 50, round: 5 }));
      expect(await honest.peer.next((m) => m.t === 'ack' && m.seq === 1)).toEqual({ t: 'ack', seq: 1 });
      const liar = await RawPeer.join(s.wsUrl, { run: 'untrusted' });
      peers.push(liar.peer);
      clock.advance(10_000);
      liar.peer.send(report(1, { step: 10_000, round: 1000 }));
      expect(await liar.peer.next((m) => m.t === 'ack' && m.seq === 1)).toEqual({ t: 'ack', seq: 1 });
      const newcomer = await RawPeer.join(s.wsUrl, { run: 'untrusted' });
      peers.push(newcomer.peer);
      // Its reports may still claim what it could have adopted (the bound stays loose)...
      expect(newcomer.welcome.stepBase).toBe(10_000);
      // ...but the state it adopts is held to what the run's addresses agree on.
      expect(newcomer.welcome.stepConsensus).toBe(50);
      expect(welcomeStepCap(newcomer.welcome)).toEqual({ step: 50, H: 10 });
    } finally {
      for (const p of peers) p.close();
    }
  });

  // A /64 is one client's address, but a /48 (free from a tunnel broker) holds 65,536 of them and
  // may hold 256 connections (server/peers.ts, maxConnectionsPerSite): with every address voting
  // early in a run, three /64s of one site outvoted two honest IPv4 peers and put every newcomer's
  // adopted state at the step they claimed (held or raised to it).
  it('with nobody off probation yet, the /64s of one IPv6 site vote once: a site cannot set a newcomer\'s step', async () => {
    const clock2 = new FakeClock();
    const t = await startServer({ trustProxy: ['127.0.0.1'] }, { clock: clock2 });
    const peers: RawPeer[] = [];
    try {
      const created = await t.c.app.inject({ method: 'POST', url: '/api/runs', headers: t.admin, payload: { id: 'sites', dataset: 'moby-dick', preset: 'micro', train: { H: 10, totalSteps: 5000 } } });
      expect(created.statusCode).toBe(201);
      const liars: RawPeer[] = [];
      const liarIds: string[] = [];
      for (let i = 1; i <= 3; i++) {
        const { peer, welcome } = await RawPeer.join(t.wsUrl, { run: 'sites' }, { localAddress: '127.0.0.1', headers: { 'x-forwarded-for': `2001:db8:7:${i}::1` } });
        peers.push(peer);
        liars.push(peer);
        liarIds.push(welcome.peerId);
      }
      clock2.advance(10_000);
      for (const [i, addr] of ['127.0.0.2', '127.0.0.3'].entries()) {
        const { peer } = await RawPeer.join(t.wsUrl, { run: 'sites' }, { localAddress: addr });
        peers.push(peer);
        peer.send(report(1, { step: 50 + i, round: 5 }));
        expect(await peer.next((m) => m.t === 'ack' && m.seq === 1)).toEqual({ t: 'ack', seq: 1 });
      }
      for (const liar of liars) {
        liar.send(report(1, { step: 10_000, round: 1000 }));
        expect(await liar.next((m) => m.t === 'ack' && m.seq === 1)).toEqual({ t: 'ack', seq: 1 });
      }
      const newcomer = await RawPeer.join(t.wsUrl, { run: 'sites' }, { localAddress: '127.0.0.4' });
      peers.push(newcomer.peer);
      // Votes: the site's 10,000 once, and the two honest addresses' 50 and 51.
      expect(newcomer.welcome.stepConsensus).toBe(51);
      // The peer list tells the dashboard the same: the site's /64s are clients of their own but
      // one site (its throughput estimate counts a site once), and it names neither.
      const list = await t.c.app.inject({ method: 'GET', url: '/api/runs/sites/peers' });
      expect(list.statusCode).toBe(200);
      expect(list.body).not.toMatch(/2001:db8|127\.0\.0/);
      const body = list.json() as PeerList;
      expect(schemaProblem(PeerList, body, 'reply')).toBeNull();
      const byId = new Map(body.peers.map((p) => [p.id, p]));
      const liarRows = liarIds.map((id) => byId.get(id)!);
      expect(new Set(liarRows.map((r) => r.site)).size).toBe(1);
      expect(new Set(liarRows.map((r) => r.client)).size).toBe(3);
      expect(new Set(body.peers.map((p) => p.site)).size).toBe(4); // the /48, the two honest addresses, the newcomer's
    } finally {
      for (const p of peers) p.close();
      await t.close();
    }
  });

  it('the run\'s step: one vote per address (its lowest step) from peers off probation, the lower median, never below the checkpoint', () => {
    const peer = (address: string, step: number, trusted = true) => ({ address, step, trusted });
    // Five connections from one host count once, at their lowest step.
    const sybils = Array.from({ length: 5 }, (_, i) => peer('203.0.113.9', 1_000_000 + i));
    expect(stepVotes([...sybils, peer('203.0.113.9', 70)])).toEqual([70]);
    expect(consensusStep(stepVotes([...sybils, peer('198.51.100.1', 60), peer('198.51.100.2', 65)]), null)).toBe(65);
    // New ids and peers that have not reported do not vote.
    expect(stepVotes([peer('198.51.100.3', 90_000, false), peer('198.51.100.4', -1)])).toEqual([]);
    // Unless nobody off probation has reported and no checkpoint stands for the step: then every
    // address votes, once, so one new id's claim is outvoted by the others'.
    const early = [peer('198.51.100.3', 90_000, false), peer('198.51.100.3', 95_000, false), peer('198.51.100.5', 60, false), peer('198.51.100.6', 64, false)];
    expect(stepVotes(early, false).sort((a, b) => a - b)).toEqual([60, 64, 90_000]);
    expect(consensusStep(stepVotes(early, false), null)).toBe(64);
    expect(stepVotes([...early, peer('198.51.100.7', 70)], false)).toEqual([70]);
    // A liar among two honest addresses cannot raise it; one reporting low cannot take it below the checkpoint.
    expect(consensusStep(stepVotes([peer('a', 60), peer('b', 64), peer('c', 900_000)]), 40)).toBe(64);
    expect(consensusStep(stepVotes([peer('a', 0), peer('b', 64)]), 40)).toBe(40);
  });

  it('plots every point at the coordinator\'s receive time, whatever the client clock says', async () => {
    const { peer, welcome } = await RawPeer.join(s.wsUrl);
    try {
      peer.send(report(1, { time: 0 }));
      peer.send(report(2, { time: 1e14 }));
      peer.send(report(3, { time: clock.now() - 3600_000 }));
      await peer.next((m) => m.t === 'ack' && m.seq === 3);
      const ts = s.c.db.prepare('SELECT t, received_at AS r FROM reports WHERE peer_id = ? ORDER BY seq').all(welcome.peerId) as { t: number; r: number }[];
      expect(ts).toEqual([1, 2, 3].map(() => ({ t: clock.now(), r: clock.now() })));
    } finally {
      peer.close();
    }
  });

  it('stores a partner only if the pool paired the two', async () => {
    const a = await RawPeer.join(s.wsUrl), b = await RawPeer.join(s.wsUrl), stranger = await RawPeer.join(s.wsUrl);
    try {
      a.peer.send({ t: 'ready', round: 0, waitMs: 5000 });
      b.peer.send({ t: 'ready', round: 0, waitMs: 5000 });
      const paired = await a.peer.next((m) => m.t === 'paired');
      expect(paired).toMatchObject({ partner: b.welcome.peerId });
      a.peer.send(report(1, { partner: b.welcome.peerId, partnerDist: 0.5 }));
      a.peer.send(report(2, { partner: stranger.welcome.peerId, partnerDist: 0.7 }));
      await a.peer.next((m) => m.t === 'ack' && m.seq === 2);
      const rows = s.c.db.prepare('SELECT partner, partner_dist AS d FROM reports WHERE peer_id = ? ORDER BY seq').all(a.welcome.peerId);
      expect(rows).toEqual([{ partner: b.welcome.peerId, d: 0.5 }, { partner: null, d: null }]);
    } finally {
      a.peer.close(); b.peer.close(); stranger.peer.close();
    }
  });

  it('answers metric queries over byte counts whose sum overflows a 64-bit integer', async () => {
    // Rows as a coordinator without the bounds stored them: 2,000 reports of 2^53-1 bytes each.
    const t0 = clock.now();
    insertOverflowRows(s.c.db, 'default', t0);
    // One or two buckets: 1,000+ such rows in a bucket overflow an integer SUM.
    for (const q of ['maxPoints=1', 'maxPoints=2', 'maxPoints=1&peer=p-00000000000000ff']) {
      const r = await s.c.app.inject({ method: 'GET', url: `/api/runs/default/metrics?from=0&to=${t0 + 10_000}&${q}` });
      expect(r.statusCode, `${q}: ${r.body.slice(0, 200)}`).toBe(200);
    }
    const body = (await s.c.app.inject({ method: 'GET', url: `/api/runs/default/metrics?from=${t0}&to=${t0 + 10_000}&maxPoints=1&peer=p-00000000000000ff` })).json();
    expect(body.downsampled).toBe(true);
    expect(body.points[0].bytesIn).toBeCloseTo(2000 * Number.MAX_SAFE_INTEGER, -10);
  });
});
