// A volunteer whose run diverges to a finite loss past MAX_LOSS (a blown-up softmax gives 1e4 to
// 1e6 before NaN) must stay on the dashboard. Its loss went out as a number, the coordinator
// refused the report (finite but outside [MIN_LOSS, MAX_LOSS]) and the volunteer dropped it: the
// run vanished from the charts and raised no alert just as it diverged. Now the one outer round
// (both volunteers) and the page's backend send it as "Infinity" (lossToWire), the coordinator
// takes it, and the dashboard raises its NaN alert and notes it on the chart; a crafted number
// past the bound is still refused. A probe's loss past the bound (a partner's harmful update) is
// sent as null: as a number it failed the report's schema, which names no seq, so the volunteer
// sent that report again at every reconnect.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runOuterRound, type RoundPorts } from '../src/round/outer-round.ts';
import { ProbeJudge } from '../src/round/probe.ts';
import { lossFromWire, lossToWire, MAX_LOSS, MIN_LOSS, parseClientMessage, probeLossToWire, type ReportFields } from '../src/protocol/messages.ts';
import { DashboardController } from '../src/ui/controllers/dashboard-controller.ts';
import { RawPeer, startServer, type TestServer } from './support/coordinator.ts';
import { FakeDashboardSource, fakeReport } from './support/ui-fakes.ts';

let s: TestServer;
beforeAll(async () => { s = await startServer(); });
afterAll(() => s?.close());

/** One solo round (or one judged against a partner whose update gives `paired` on the probe) whose inner steps ran at `losses`. */
async function roundReport(losses: number[], paired?: number): Promise<{ report: ReportFields; trainLoss: number | null }> {
  const ports: RoundPorts<string> = {
    outerPayload: () => 'mine',
    exchange: async () => (paired === undefined
      ? { partner: null, payload: null, partnerDist: null, bytesIn: 0, bytesOut: 0, solo: 'no partner' }
      : { partner: 'p-00000000000000aa', payload: 'theirs', partnerDist: 1, bytesIn: 10, bytesOut: 10, solo: null }),
    applyOuter: () => {},
    ...(paired === undefined ? {} : { probe: async () => ({ solo: [2.5, 2.6], paired: [paired, paired] }) }),
  };
  const out = await runOuterRound(ports, {
    round: 0, inner: { step: 1, losses, tokens: 100, innerMs: 50 }, pairWaitFrac: 0.5, adapter: null, evaluate: null,
    ...(paired === undefined ? {} : { judge: new ProbeJudge() }),
  });
  return { report: out.report, trainLoss: out.trainLoss };
}

/** What the coordinator answers to `fields` sent as report `seq`: the ack, or its error. */
async function answer(peer: RawPeer, seq: number, fields: Record<string, unknown>): Promise<Record<string, unknown>> {
  const at = peer.frames.length;
  peer.send({ t: 'report', seq, ...fields });
  return await peer.next((m) => m.t === 'error' || (m.t === 'ack' && m.seq === seq), 5000, at) as Record<string, unknown>;
}

describe('a diverged volunteer stays on the dashboard', () => {
  it('a round at loss 5e4 reports "Infinity", the coordinator stores it, and the dashboard raises its alert and notes it on the chart', async () => {
    const { report, trainLoss } = await roundReport([3, 5e4]);
    expect(trainLoss).toBe((3 + 5e4) / 2);
    expect(report.trainLoss).toBe('Infinity');
    // The page's backend sends the round's number loss through lossToWire: the same word.
    expect(lossToWire(trainLoss)).toBe(report.trainLoss);
    expect(lossToWire(5e4)).toBe('Infinity');
    expect(lossToWire(MAX_LOSS)).toBe(MAX_LOSS);
    expect(lossToWire(2.5)).toBe(2.5);

    const { peer, welcome } = await RawPeer.join(s.wsUrl);
    try {
      expect(await answer(peer, 1, report)).toEqual({ t: 'ack', seq: 1 });
      const stored = s.c.db.prepare('SELECT train_loss AS train FROM reports WHERE peer_id = ? AND seq = 1').get(welcome.peerId) as { train: unknown } | undefined;
      expect(stored).toBeDefined();
      const page = (await s.c.app.inject({ method: 'GET', url: `/api/runs/${welcome.run.id}/metrics?peer=${welcome.peerId}&newest=true` })).json() as { points: { trainLoss: unknown }[] };
      expect(page.points.map((p) => p.trainLoss)).toEqual(['Infinity']);

      // The dashboard, fed what the coordinator serves (lossFromWire, as its source does).
      const src = new FakeDashboardSource();
      for (let step = 0; step <= 100; step += 20) src.historyRows.push(fakeReport(1, step, 1_700_000_000_000 + step * 100));
      const dash = new DashboardController({ source: src, now: () => 1_700_000_020_000 });
      await dash.start();
      try {
        expect(dash.alerts.filter((a) => a.kind === 'nan')).toEqual([]);
        expect(dash.trainView.diverged).toBeUndefined();
        src.push(fakeReport(1, 120, 1_700_000_012_000, { trainLoss: lossFromWire(page.points[0]!.trainLoss as ReportFields['trainLoss']) }));
        dash.refresh();
        const alert = dash.alerts.find((a) => a.kind === 'nan');
        expect(alert).toMatchObject({ peerId: 'p-0000000000000001', severity: 'critical' });
        expect(alert!.message).toContain('infinite training loss (or one past 10,000, sent as Infinity) at step 120');
        expect(dash.trainView.diverged).toEqual({ peers: 1, first: 'p-0000000000000001', step: 120 });
      } finally {
        dash.dispose();
      }
    } finally {
      peer.close();
    }
  });

  it('a probe loss past MAX_LOSS goes as null, and the report passes the schema and the coordinator', async () => {
    const { report } = await roundReport([3], 5e4);
    expect(report).toMatchObject({ probeRejected: true, probePaired: null, probeSolo: 2.55 });
    expect(parseClientMessage(JSON.stringify({ t: 'report', seq: 1, ...report })).ok).toBe(true);
    const { peer } = await RawPeer.join(s.wsUrl);
    try {
      expect(await answer(peer, 1, report)).toEqual({ t: 'ack', seq: 1 });
    } finally {
      peer.close();
    }
  });

  // A run that learned a small dataset by heart goes below MIN_LOSS honestly (a cross-entropy can
  // reach 0): sent as the number, the coordinator refused the report and the volunteer dropped
  // it, so the run vanished from the charts. It goes as MIN_LOSS, the floor the charts can draw.
  it('a round at a loss below MIN_LOSS reports MIN_LOSS, and the coordinator stores it', async () => {
    const { report, trainLoss } = await roundReport([2e-5, 4e-5], 1e-6);
    expect(trainLoss).toBeCloseTo(3e-5, 12);
    expect(report.trainLoss).toBe(MIN_LOSS);
    expect(report.probePaired).toBe(MIN_LOSS);
    expect(lossToWire(0)).toBe(MIN_LOSS);
    expect(lossToWire(MIN_LOSS)).toBe(MIN_LOSS);
    expect(lossToWire(2 * MIN_LOSS)).toBe(2 * MIN_LOSS);
    expect(lossToWire(-1)).toBe(-1);
    expect(probeLossToWire(0)).toBe(MIN_LOSS);
    expect(probeLossToWire(-1)).toBeNull();
    expect(probeLossToWire(Number.NaN)).toBeNull();
    const { peer, welcome } = await RawPeer.join(s.wsUrl);
    try {
      expect(await answer(peer, 1, report)).toEqual({ t: 'ack', seq: 1 });
      expect(await answer(peer, 2, { ...report, valLoss: lossToWire(0) })).toEqual({ t: 'ack', seq: 2 });
      const stored = s.c.db.prepare('SELECT train_loss AS train FROM reports WHERE peer_id = ? ORDER BY seq').all(welcome.peerId) as { train: number }[];
      expect(stored.map((r) => r.train)).toEqual([MIN_LOSS, MIN_LOSS]);
      // A crafted number under the floor is still no report of ours.
      const under = await answer(peer, 3, { ...report, trainLoss: 1e-6 });
      expect(String(under.message)).toMatch(/trainLoss 0\.000001 is outside \[0\.0001, 10000\]/);
    } finally {
      peer.close();
    }
  });

  it('a crafted report of 1e300, or of a number past MAX_LOSS, is still refused, naming the field, and nothing is stored', async () => {
    const { report } = await roundReport([3]);
    const { peer, welcome } = await RawPeer.join(s.wsUrl);
    try {
      const huge = await answer(peer, 1, { ...report, trainLoss: 1e300 });
      expect(huge).toMatchObject({ t: 'error', code: 'bad-message' });
      expect(String(huge.message)).toMatch(/trainLoss/);
      const past = await answer(peer, 2, { ...report, valLoss: 5e4 });
      expect(past).toMatchObject({ t: 'error', code: 'bad-message', ref: 'report' });
      expect(String(past.message)).toMatch(/valLoss 50000 is outside \[0.0001, 10000\]/);
      expect(s.c.db.prepare('SELECT COUNT(*) AS n FROM reports WHERE peer_id = ?').get(welcome.peerId)).toEqual({ n: 0 });
      // The connection is still up and takes an honest report.
      expect(await answer(peer, 3, report)).toEqual({ t: 'ack', seq: 3 });
    } finally {
      peer.close();
    }
  });
});
