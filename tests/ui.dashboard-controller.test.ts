// DashboardController against a fake coordinator feed: history + live reports become chart
// views (per peer, median, band), the x-axis and log-x switch, alerts, pairings, CSV; run events
// (history, then live) in the events panel, bounded, and the alerts they raise; of the peers that
// left, only the newest GONE_PEER_CAP are held, however many churn through.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DashboardController, GONE_PEER_CAP } from '../src/ui/controllers/dashboard-controller.ts';
import { FakeDashboardSource, fakeCheckpoint, fakeEvent, fakePeerId, fakeReport, FAKE_DASH_RUN } from './support/ui-fakes.ts';
import { HANG_GUARD_MS } from './support/wait.ts';

const T0 = 1_700_000_000_000;
let ctl: DashboardController | null = null;
afterEach(() => { ctl?.dispose(); ctl = null; });

async function setup(now = T0 + 60_000, over: Partial<ConstructorParameters<typeof DashboardController>[0]> = {}) {
  const src = new FakeDashboardSource();
  for (let s = 0; s <= 600; s += 20) for (let i = 0; i < 3; i++) src.historyRows.push(fakeReport(i, s, T0 + s * 100));
  src.checkpointRows = [fakeCheckpoint(500, T0 + 50_000), fakeCheckpoint(200, T0 + 20_000)];
  let clock = now;
  const c = (ctl = new DashboardController({ source: src, now: () => clock, ...over }));
  await c.start();
  return { c, src, setNow: (t: number) => { clock = t; } };
}

describe('DashboardController', () => {
  it('loads run, history and checkpoints (sorted by step) and lists peers', async () => {
    const { c } = await setup();
    expect(c.run).toEqual({ status: 'complete', value: FAKE_DASH_RUN });
    expect(c.checkpoints.status === 'complete' && c.checkpoints.value.map((x) => x.step)).toEqual([200, 500]);
    expect(c.peerRows.map((p) => p.id).sort()).toEqual(['p-0000000000000000', 'p-0000000000000001', 'p-0000000000000002']);
    expect(c.peerRows[0]!.adapter).toMatch(/fake GPU/);
    expect(c.reportCount).toBe(31 * 3);
    expect(c.totalTokensPerS).toBe(2000 + 2100 + 2200);
  });

  it('builds loss views with each peer, the median and a min/max band; the x-axis and log-x switch', async () => {
    const { c } = await setup();
    const v = c.trainView;
    expect(v.series.map((s) => s.role)).toEqual(['min', 'max', 'peer', 'peer', 'peer', 'median']);
    expect(v.x.length).toBe(300);
    expect(v.x[0]).toBeGreaterThanOrEqual(0);
    const last = (xs: number[]) => xs[xs.length - 1]!;
    // bin centres: the last one is half a bin below the largest x
    expect(last(v.x)).toBeGreaterThan(600 * 1024 * 0.99); // tokens
    expect(last(v.x)).toBeLessThan(600 * 1024);
    for (let k = 0; k < v.x.length; k++) {
      const [mn, mx, , , , md] = v.series.map((s) => s.values[k]);
      if (md === null) continue;
      expect(mn!).toBeLessThanOrEqual(mx!);
    }
    c.setXAxis('step');
    expect(last(c.trainView.x)).toBeGreaterThan(594);
    expect(last(c.trainView.x)).toBeLessThan(600);
    c.setXAxis('time');
    expect(last(c.trainView.x)).toBeGreaterThan(59.4); // seconds since the first report
    expect(last(c.trainView.x)).toBeLessThan(60);
    c.setLogX(true);
    const lx = c.trainView.x;
    expect(lx[0]).toBeGreaterThan(0);
    // Log spacing: constant ratio between neighbours.
    expect(lx[2]! / lx[1]!).toBeCloseTo(lx[101]! / lx[100]!, 6);
    expect(c.valView.series.some((s) => s.role === 'median' && s.values.some((v) => v !== null))).toBe(true);
  });

  it('draws at most maxPeerLines peers, all in the median', async () => {
    const { c } = await setup(T0 + 60_000, { maxPeerLines: 2 });
    expect(c.trainView.series.filter((s) => s.role === 'peer')).toHaveLength(2);
    expect(c.trainView).toMatchObject({ shownPeers: 2, totalPeers: 3 });
  });

  it('takes live reports, raises a NaN alert, and exports every report as CSV', async () => {
    const { c, src } = await setup();
    src.push(fakeReport(1, 620, T0 + 62_000, { trainLoss: NaN }));
    c.refresh();
    const nan = c.alerts.find((a) => a.kind === 'nan');
    expect(nan).toMatchObject({ peerId: 'p-0000000000000001', severity: 'critical' });
    const csv = c.csv().trim().split('\r\n');
    expect(csv[0]).toBe('time_iso,time_ms,peer,step,round,train_loss,val_loss,tokens_per_s,bytes_in,bytes_out,partner,partner_dist,adapter');
    expect(csv).toHaveLength(1 + 31 * 3 + 1);
    expect(csv[csv.length - 1]).toContain(',620,12,NaN,');
    c.dismissAlert(nan!.key);
    expect(c.alerts.find((a) => a.kind === 'nan')).toBeUndefined();
  });

  it('counts direct vs relayed exchanges and link failures, and flags a peer whose links keep failing', async () => {
    const { c, src } = await setup();
    src.push(fakeReport(0, 620, T0 + 62_000, { linkLocal: 'srflx', linkRemote: 'prflx' }));
    src.push(fakeReport(1, 620, T0 + 62_000, { linkLocal: 'relay', linkRemote: 'srflx' }));
    const why = 'connect timeout: no ICE path (ours host,srflx; theirs host,srflx); no TURN server is configured';
    for (let k = 0; k < 3; k++) src.push(fakeReport(2, 620 + 20 * k, T0 + 62_000 + k, { partner: null, linkFailures: 1, linkError: why }));
    c.refresh();
    expect(c.connectivity).toMatchObject({ direct: 1, relayed: 1, relayFraction: 0.5, linkFailures: 3, reasons: [{ reason: why, count: 3 }] });
    expect(c.connectivity.failing).toEqual([{ peerId: 'p-0000000000000002', reason: why }]);
    expect(c.alerts.find((a) => a.kind === 'connectivity')).toMatchObject({ peerId: 'p-0000000000000002', severity: 'warning' });
    // Once its link opens again (a paired round), it is no longer flagged.
    src.push(fakeReport(2, 700, T0 + 63_000, { linkLocal: 'relay', linkRemote: 'relay' }));
    c.refresh();
    expect(c.connectivity.failing).toEqual([]);
    expect(c.alerts.find((a) => a.kind === 'connectivity')).toBeUndefined();
  });

  it('marks stale peers and raises a stall alert for a live peer stuck at one step', async () => {
    const { c, src, setNow } = await setup(T0 + 61_000);
    setNow(T0 + 200_000);
    // peer 0 keeps reporting the same step; 1 and 2 went quiet
    for (let t = 61_000; t <= 200_000; t += 10_000) src.push(fakeReport(0, 600, T0 + t));
    c.refresh();
    const rows = Object.fromEntries(c.peerRows.map((p) => [p.id, c.isStale(p)]));
    expect(rows).toEqual({ 'p-0000000000000000': false, 'p-0000000000000001': true, 'p-0000000000000002': true });
    expect(c.alerts.filter((a) => a.kind === 'stall').map((a) => a.peerId)).toEqual(['p-0000000000000000']);
  });

  it('computes throughput, bandwidth, live peers, partner spread and recent pairings', async () => {
    const { c } = await setup();
    const [tokens, bw, live] = c.throughputView.series;
    expect(tokens!.values[0]).toBe(2000 + 2100 + 2200);
    expect(live!.values[0]).toBe(3);
    // 8000 bytes per report, a report every 2 s, 3 peers; carried between reports
    expect(bw!.values[30]).toBe(3 * 8000 / 2);
    expect(tokens!.values[31]).toBe(2000 + 2100 + 2200);
    const [mn, mx, md] = c.spreadView.series;
    expect(md!.values[0]).toBeCloseTo(0.6, 6);
    expect(mn!.values[0]).toBeCloseTo(0.5, 6);
    expect(mx!.values[0]).toBeCloseTo(0.7, 6);
    expect(c.pairings.length).toBe(3); // 0-1, 1-2, 2-0
  });

  it('names the run phase', async () => {
    const { c, setNow } = await setup();
    expect(c.phase.key).toBe('training');
    expect(c.phase.text).toMatch(/step 600 of 5000/);
    setNow(T0 + 10_000_000);
    c.refresh();
    expect(c.phase.key).toBe('waiting');
  });

  // Each peer's step is its own claim: a new id may report up to its report bound (1,000 steps a
  // second on small models), and the phase, the furthest of them, put the run past its schedule.
  it('names the run\'s phase by the step the coordinator says its peers agree on, never one peer\'s claim', async () => {
    const { c, src, setNow } = await setup(T0 + 60_000, { refreshMs: 10, runRefreshMs: 1000 });
    src.push(fakeReport(7, 59_000, T0 + 60_000));
    c.refresh();
    expect(c.phase).toEqual({ key: 'training', text: 'Training (cosine decay): step 600 of 5000, 12%' });
    // The grid still shows the peer's claim as its own.
    expect(c.peerRows.find((p) => p.id === fakePeerId(7))?.step).toBe(59_000);
    // The run's step follows the coordinator, asked again now and then.
    const loads = src.calls.run;
    src.runInfo = { ...src.runInfo, stepConsensus: 700 };
    setNow(T0 + 62_000);
    await vi.waitFor(() => expect(c.phase.text).toBe('Training (cosine decay): step 700 of 5000, 14%'), { timeout: HANG_GUARD_MS });
    expect(src.calls.run).toBeGreaterThan(loads);
    // Nothing agreed on yet (every peer on probation, no checkpoint): no step is named.
    src.runInfo = { ...src.runInfo, stepConsensus: null };
    setNow(T0 + 64_000);
    await vi.waitFor(() => expect(c.phase.key).toBe('starting'), { timeout: HANG_GUARD_MS });
    expect(c.phase.text).not.toMatch(/59000|59,000/);
  });

  it('loads text samples per checkpoint once', async () => {
    const { c, src } = await setup();
    const ck = fakeCheckpoint(500, T0);
    await c.loadSample(ck);
    await c.loadSample(ck);
    expect(src.sampled).toEqual(['c-500']);
    expect(c.samples.get('c-500')).toMatchObject({ status: 'complete', value: { step: 500 } });
  });

  it('keeps reports that arrive while the history loads', async () => {
    const src = new FakeDashboardSource();
    let release!: () => void;
    src.history = () => new Promise((r) => { release = () => r([fakeReport(0, 10, T0)]); });
    const c = (ctl = new DashboardController({ source: src, now: () => T0 + 1000 }));
    const started = c.start();
    await new Promise((r) => setTimeout(r, 0));
    src.push(fakeReport(0, 20, T0 + 500));
    release();
    await started;
    expect(c.reportCount).toBe(2);
    expect(c.peerRows[0]!.step).toBe(20);
  });
});

describe('DashboardController run events', () => {
  const [P0, P1, P2] = [0, 1, 2].map(fakePeerId) as [string, string, string];

  async function withEvents(stored: ReturnType<typeof fakeEvent>[], over: Partial<ConstructorParameters<typeof DashboardController>[0]> = {}) {
    const src = new FakeDashboardSource();
    for (let s = 0; s <= 100; s += 20) for (let i = 0; i < 3; i++) src.historyRows.push(fakeReport(i, s, T0 + s * 100));
    src.eventRows = stored;
    const c = (ctl = new DashboardController({ source: src, now: () => T0 + 20_000, ...over }));
    await c.start();
    return { c, src };
  }

  it('shows the stored events newest first, then live ones on top, in words', async () => {
    const { c, src } = await withEvents([
      fakeEvent('run-created', T0, null, { run: { preset: 'tiny', dataset: 'moby-dick' } }),
      fakeEvent('peer-joined', T0 + 100, P0, { replica: 0, resumed: false, client: { kind: 'browser' } }),
      fakeEvent('checkpoint-saved', T0 + 5000, P0, { step: 1200, valLoss: 2.5, bytes: 1000 }),
    ]);
    expect(src.eventRequests).toEqual([1000]);
    expect(c.events.map((e) => e.text)).toEqual(['checkpoint saved at step 1200', `peer ${P0} joined`, 'run created']);
    const v0 = c.eventsVersion;
    src.pushEvent(fakeEvent('peer-left', T0 + 6000, P0, { reason: 'disconnected' }));
    expect(c.events).toHaveLength(3); // views change at the next refresh, not per event
    c.refresh();
    expect(c.events[0]).toMatchObject({ kind: 'peer-left', text: `peer ${P0} left`, detail: 'disconnected', tone: 'info' });
    expect(c.eventsVersion).toBe(v0 + 1);
    c.refresh();
    expect(c.eventsVersion).toBe(v0 + 1); // nothing new: the panel need not render
    expect(c.eventsSeen).toBe(4);
  });

  it('keeps only the newest eventCap, and drops events it already holds (a reconnect replays the store)', async () => {
    const stored = Array.from({ length: 30 }, (_, k) => fakeEvent('peer-joined', T0 + k, `p-${k.toString(16).padStart(16, '0')}`));
    const { c, src } = await withEvents(stored, { eventCap: 10 });
    expect(c.events.map((e) => e.t)).toEqual(Array.from({ length: 10 }, (_, k) => T0 + 29 - k));
    for (const e of stored.slice(-20)) src.handlers!.event(e); // replayed after a reconnect
    const live = fakeEvent('peer-left', T0 + 40, P1);
    src.pushEvent(live);
    src.handlers!.event(live);
    c.refresh();
    expect(c.events).toHaveLength(10);
    expect(c.events.map((e) => e.t).slice(0, 3)).toEqual([T0 + 40, T0 + 29, T0 + 28]);
    expect(new Set(c.events.map((e) => e.id)).size).toBe(10);
    expect(c.eventsSeen).toBe(31);
  });

  it('raises an offender alert naming the accused peer and the reason, from history and live', async () => {
    const { c, src } = await withEvents([fakeEvent('peer-offender', T0 + 1000, P0, { accused: P2, reason: 'non-finite: Δ[12] = NaN', paired: true })], { eventCap: 1 });
    const off = () => c.alerts.find((a) => a.kind === 'offender');
    expect(off()).toMatchObject({ peerId: P2, severity: 'warning' });
    expect(off()!.message).toContain(`${P2} sent ${P0} a bad update: non-finite Δ (Δ[12] = NaN)`);
    expect(c.events[0]!.text).toBe(`peer ${P0} reported ${P2} for a bad update: non-finite Δ`);
    // A report the coordinator did not check as coming from a partner does not count.
    src.pushEvent(fakeEvent('peer-offender', T0 + 1200, fakePeerId(3), { accused: P2, reason: 'non-finite: Δ[1] = NaN' }));
    c.refresh();
    expect(off()).toMatchObject({ peerId: P2, severity: 'warning' });
    // A second checked reporter makes it critical, even after the first report scrolled out of the panel.
    src.pushEvent(fakeEvent('peer-left', T0 + 1500, P1));
    src.pushEvent(fakeEvent('peer-offender', T0 + 2000, P1, { accused: P2, reason: 'delta-norm: ||Δ|| = 1e9 > 30 × median 1', paired: true }));
    c.refresh();
    expect(c.alerts.filter((a) => a.kind === 'offender')).toHaveLength(1);
    expect(off()).toMatchObject({ peerId: P2, severity: 'critical', t: T0 + 1000 });
    expect(c.alerts[0]!.kind).toBe('offender'); // critical first
    c.dismissAlert(off()!.key);
    expect(off()).toBeUndefined();
  });

  it('raises a checkpoint alert on a failure, clears it on the next save, and reloads the list on live checkpoint events', async () => {
    const { c, src } = await withEvents([fakeEvent('checkpoint-saved', T0 + 1000, P0, { step: 100 })]);
    expect(c.alerts.find((a) => a.kind === 'checkpoint')).toBeUndefined();
    const lists = src.calls.checkpoints;
    src.pushEvent(fakeEvent('checkpoint-failed', T0 + 2000, P1, { request: 'r1', reason: 'no upload within 60000 ms' }));
    c.refresh();
    const ck = c.alerts.find((a) => a.kind === 'checkpoint');
    expect(ck).toMatchObject({ peerId: P1, severity: 'warning' });
    expect(ck!.message).toMatch(new RegExp(`^Checkpoint from ${P1} failed: no upload within 60000 ms\. The newest saved checkpoint is at step 100`));
    expect(c.events[0]!.text).toBe(`checkpoint from peer ${P1} failed`);
    expect(src.calls.checkpoints).toBe(lists + 1);
    src.checkpointRows = [fakeCheckpoint(200, T0 + 3000)];
    src.pushEvent(fakeEvent('checkpoint-saved', T0 + 3000, P0, { step: 200 }));
    await new Promise((r) => setTimeout(r, 0));
    c.refresh();
    expect(c.alerts.find((a) => a.kind === 'checkpoint')).toBeUndefined();
    expect(c.checkpoints.status === 'complete' && c.checkpoints.value.map((x) => x.step)).toEqual([200]);
  });

  it('marks a peer left on a live event only (history joins and leaves are of peers long gone), and reloads the run on run events', async () => {
    const { c, src } = await withEvents([fakeEvent('peer-left', T0 + 19_000, P2, { reason: 'disconnected' })]);
    const left = () => Object.fromEntries(c.peerRows.map((p) => [p.id, p.left]));
    expect(left()).toEqual({ [P0]: false, [P1]: false, [P2]: false });
    src.pushEvent(fakeEvent('peer-left', T0 + 19_500, P1, { reason: 'disconnected' }));
    src.pushEvent(fakeEvent('peer-joined', T0 + 19_600, fakePeerId(9), { replica: 9 }));
    const runs = src.calls.run;
    src.pushEvent(fakeEvent('run-updated', T0 + 19_700, null, { change: { train: { H: 20 } } }));
    c.refresh();
    expect(left()).toEqual({ [P0]: false, [P1]: true, [P2]: false, [fakePeerId(9)]: false });
    expect(src.calls.run).toBe(runs + 1);
  });

  // Every peer-joined adds a row and peer-left only marks it: 200,000 identities churned through
  // (or a widget's visitors over days) grew every open dashboard without bound, and past ~125,000
  // rows the phase's Math.max(...steps) threw RangeError and the dashboard stopped rendering.
  it('holds only the newest GONE_PEER_CAP peers that left, with their series, link state and alerts, never a live one, and counts the rest', async () => {
    const { c, src } = await withEvents([]);
    const held = () => {
      const m = c as unknown as Record<'peers' | 'series' | 'linkPeers' | 'nanSeen', Map<string, unknown>>;
      return { peers: m.peers.size, series: m.series.size, linkPeers: m.linkPeers.size, nanSeen: m.nanSeen.size };
    };
    const N = 200_000;
    const churned = (i: number) => 0x1000 + i;
    const t = (i: number) => T0 + 10_000 + i / 25; // 200,000 in 8 s, all before the clock (T0 + 20 s)
    // Five peers that joined first (the least recently seen of all) and stay.
    const stay = [0, 1, 2, 3, 4].map((k) => fakePeerId(0x100 + k));
    for (const id of stay) src.pushEvent(fakeEvent('peer-joined', t(0), id, { replica: 0, resumed: false, client: null }));
    for (let i = 0; i < N; i++) {
      const id = fakePeerId(churned(i));
      src.pushEvent(fakeEvent('peer-joined', t(i), id, { replica: 0, resumed: false, client: null }));
      // The first two report before they leave, one of them a NaN loss: a series, link state and a NaN alert.
      if (i < 2) src.push(fakeReport(churned(i), 50, t(i), { trainLoss: i === 0 ? NaN : 2 }));
      src.pushEvent(fakeEvent('peer-left', t(i), id, { reason: 'disconnected' }));
    }
    // Bounded between refreshes too.
    expect(held().peers).toBeLessThanOrEqual(3 + stay.length + 2 * GONE_PEER_CAP);
    c.refresh();
    expect(c.peerRows).toHaveLength(3 + stay.length + GONE_PEER_CAP);
    const ids = new Set(c.peerRows.map((p) => p.id));
    for (const id of [P0, P1, P2, ...stay]) expect(ids.has(id), id).toBe(true);
    // The newest that left are kept, the older forgotten, and counted.
    const left = c.peerRows.filter((p) => p.left);
    expect(left).toHaveLength(GONE_PEER_CAP);
    expect(ids.has(fakePeerId(churned(N - 1)))).toBe(true);
    expect(ids.has(fakePeerId(churned(N - GONE_PEER_CAP)))).toBe(true);
    expect(ids.has(fakePeerId(churned(N - GONE_PEER_CAP - 1)))).toBe(false);
    expect(c.forgottenPeers).toBe(N - GONE_PEER_CAP);
    // What was held for the forgotten went with them.
    expect(held()).toEqual({ peers: 3 + stay.length + GONE_PEER_CAP, series: 3, linkPeers: 3, nanSeen: 0 });
    expect(c.alerts.find((a) => a.kind === 'nan')).toBeUndefined();
    expect(c.phase).toEqual({ key: 'training', text: 'Training (cosine decay): step 600 of 5000, 12%' }); // the run's agreed step
    expect(c.isStale(c.peerRows[0]!)).toBe(false); // live first
  });

  it('keeps events that arrive while the stored ones load', async () => {
    const src = new FakeDashboardSource();
    let release!: () => void;
    const stored = fakeEvent('peer-joined', T0, P0);
    src.events = () => new Promise((r) => { release = () => r([stored]); });
    const c = (ctl = new DashboardController({ source: src, now: () => T0 + 1000 }));
    const started = c.start();
    await new Promise((r) => setTimeout(r, 0));
    src.handlers!.event(fakeEvent('peer-offender', T0 + 500, P0, { accused: P1, reason: 'size: expected 10 elements, got φ 9, Δ 9' }));
    src.handlers!.event(stored); // also on the stream: counted once
    release();
    await started;
    expect(c.events.map((e) => e.kind)).toEqual(['peer-offender', 'peer-joined']);
    expect(c.alerts.find((a) => a.kind === 'offender')?.message).toContain('wrong payload size');
  });

  it('still starts when the events cannot be loaded', async () => {
    const src = new FakeDashboardSource();
    src.events = () => Promise.reject(new Error('HTTP 500'));
    src.historyRows = [fakeReport(0, 10, T0)];
    const c = (ctl = new DashboardController({ source: src, now: () => T0 + 1000 }));
    await c.start();
    expect(c.events).toEqual([]);
    expect(c.reportCount).toBe(1);
  });
});

// A report's tokensPerS and step are the peer's own claims. One new id inside the coordinator's
// report bounds on the default `tiny` run claimed 1,024,000 tokens/s beside three honest peers'
// 6,300, and the dashboard showed 1,030,300 tokens/s (the throughput chart and its drop alert
// read the same sum), and its 10,000 steps stretched the loss-vs-tokens axis to 10.2 M tokens,
// the honest curves in its first 6%. Only what the coordinator vouches for counts
// (src/ui/core/throughput.ts; docs/design.md section 6, "Claims the dashboard counts").
describe('DashboardController: claims the dashboard counts', () => {
  const LIAR = 7;
  const honest = [0, 1, 2];
  const HONEST_TPS = 2000 + 2100 + 2200;
  const CLAIM = 1_024_000;

  /** Three honest peers to step 600 over 60 s, the liar to step 10,000 claiming 1,024,000 tokens/s; standings as given. */
  async function withLiar(standings: { id: number; probation: boolean; client: string; site?: string }[] | 'fails', opts: { until?: number; liarUntil?: number; now?: number } = {}) {
    const until = opts.until ?? 60_000, liarUntil = opts.liarUntil ?? until;
    const src = new FakeDashboardSource();
    for (let t = 0; t <= until; t += 2000) {
      for (const i of honest) src.historyRows.push(fakeReport(i, Math.round((600 * t) / until), T0 + t));
      if (t <= liarUntil) src.historyRows.push(fakeReport(LIAR, Math.round((10_000 * t) / until), T0 + t + 1, { tokensPerS: CLAIM }));
    }
    if (standings === 'fails') src.standings = () => Promise.reject(new Error('HTTP 429'));
    else src.standingRows = listed(standings);
    let clock = opts.now ?? T0 + until + 1000;
    const c = (ctl = new DashboardController({ source: src, now: () => clock, refreshMs: 10, runRefreshMs: 1000 }));
    await c.start();
    return { c, src, setNow: (t: number) => { clock = t; } };
  }
  const listed = (standings: { id: number; probation: boolean; client: string; site?: string }[]) => standings.map((s) => ({ id: fakePeerId(s.id), probation: s.probation, client: s.client, site: s.site ?? s.client }));
  const trusted = (i: number, client = `c${i}`) => ({ id: i, probation: false, client });
  const newcomer = (i: number, client = `c${i}`) => ({ id: i, probation: true, client });
  const last = (xs: number[]) => xs[xs.length - 1]!;

  it('sums only the claims of ids off probation, and shows a liar on probation beside the total, not in it', async () => {
    const { c } = await withLiar([...honest.map((i) => trusted(i)), newcomer(LIAR)]);
    expect(c.totalTokensPerS).toBe(HONEST_TPS);
    expect(c.throughput).toEqual({ basis: 'vouched', tokensPerS: HONEST_TPS, peers: 3, clients: 3, unvouched: { peers: 1, tokensPerS: CLAIM } });
    // The throughput chart counts the same way, in every bucket.
    const tokens = c.throughputView.series[0]!.values as number[];
    expect(Math.max(...tokens)).toBe(HONEST_TPS);
    // The grid still shows the liar's claim as its own.
    expect(c.peerRows.find((p) => p.id === fakePeerId(LIAR))?.tokensPerS).toBe(CLAIM);
  });

  it('ends the loss charts\' step and tokens axes where peers off probation and the agreed step reach, and says what it left out', async () => {
    const { c } = await withLiar([...honest.map((i) => trusted(i)), newcomer(LIAR)]);
    // The agreed step is 600 (FAKE_DASH_RUN), H = 50: the axis ends at 700 steps at most.
    for (const v of [c.trainView, c.valView]) {
      expect(last(v.x)).toBeLessThanOrEqual(700 * 1024);
      expect(v.clipped).toEqual({ peers: 1, furthestStep: 10_000, axisStep: 700 });
    }
    // The honest curves (to step 600) fill most of the axis, the liar's first points beside them.
    expect(last(c.trainView.x)).toBeGreaterThan(600 * 1024);
    c.setXAxis('step');
    expect(last(c.trainView.x)).toBeLessThanOrEqual(700);
    // Wall time is the coordinator's own clock: nothing to bound.
    c.setXAxis('time');
    expect(c.trainView.clipped).toBeUndefined();
    expect(last(c.trainView.x)).toBeGreaterThan(59);
  });

  it('raises no throughput-drop alert when a liar on probation that claimed a lot stops', async () => {
    // Six minutes: the liar claims 1,024,000 tokens/s for five of them, then goes quiet.
    const { c } = await withLiar([...honest.map((i) => trusted(i)), newcomer(LIAR)], { until: 400_000, liarUntil: 300_000 });
    c.refresh();
    expect(c.alerts.filter((a) => a.kind === 'throughput')).toEqual([]);
    expect(c.totalTokensPerS).toBe(HONEST_TPS);
  });

  it('still raises it when peers off probation stop', async () => {
    // Two of the three honest peers go quiet at 300 s of 400: their claims are in the baseline.
    const src = new FakeDashboardSource();
    for (let t = 0; t <= 400_000; t += 2000) for (const i of honest) if (i === 0 || t <= 300_000) src.historyRows.push(fakeReport(i, t / 1000, T0 + t));
    src.standingRows = listed(honest.map((i) => trusted(i)));
    const c = (ctl = new DashboardController({ source: src, now: () => T0 + 401_000 }));
    await c.start();
    expect(c.alerts.find((a) => a.kind === 'throughput')?.message).toMatch(/Throughput dropped to 2000 tokens\/s/);
  });

  it('counts the ids of one client address once (the lower median of their claims), unless every counted id is at one address', async () => {
    // The liar's host holds three ids off probation, each claiming 1,024,000 tokens/s.
    const src = await withLiar([...honest.map((i) => trusted(i)), trusted(LIAR, 'host'), trusted(8, 'host'), trusted(9, 'host')]);
    for (const i of [8, 9]) src.src.push(fakeReport(i, 700, T0 + 60_500, { tokensPerS: CLAIM }));
    src.c.refresh();
    expect(src.c.throughput).toMatchObject({ basis: 'vouched', tokensPerS: HONEST_TPS + CLAIM, peers: 6, clients: 4 });
    src.c.dispose();
    // A lab or a local run, every id at one address (the coordinator lets them vouch for each other): each counts.
    const { c } = await withLiar(honest.map((i) => trusted(i, 'lab')));
    expect(c.throughput).toMatchObject({ basis: 'vouched', tokensPerS: HONEST_TPS, peers: 3, clients: 1, unvouched: { peers: 1, tokensPerS: CLAIM } });
  });

  it('with nobody off probation yet, estimates from every client address once, and bounds the axes by the agreed step', async () => {
    const { c } = await withLiar([...honest.map((i) => newcomer(i)), newcomer(LIAR)]);
    // Four addresses × the lower median of their claims (2000, 2100, 2200, 1,024,000).
    expect(c.throughput).toEqual({ basis: 'every-client', tokensPerS: 4 * 2100, peers: 4, clients: 4, unvouched: { peers: 0, tokensPerS: 0 } });
    // Twice the agreed step: room for honest peers faster than the median, none for the liar's 10,000.
    expect(last(c.trainView.x)).toBeLessThanOrEqual(1200 * 1024);
    expect(c.trainView.clipped).toEqual({ peers: 1, furthestStep: 10_000, axisStep: 1200 });
  });

  it('with nobody off probation yet, the /64s of one IPv6 site count once in the estimate', async () => {
    // The liar's id and two more of its /48, each from its own /64 (a client of its own), all claiming.
    const site = (i: number) => ({ id: i, probation: true, client: `v6-${i}`, site: 'one-48' });
    const src = new FakeDashboardSource();
    for (let t = 0; t <= 60_000; t += 2000) {
      for (const i of honest) src.historyRows.push(fakeReport(i, Math.round(t / 100), T0 + t));
      for (const i of [LIAR, 8, 9]) src.historyRows.push(fakeReport(i, Math.round(t / 6), T0 + t + 1, { tokensPerS: CLAIM }));
    }
    src.standingRows = listed([...honest.map((i) => newcomer(i)), site(LIAR), site(8), site(9)]);
    const clock = T0 + 61_000;
    const c = (ctl = new DashboardController({ source: src, now: () => clock, refreshMs: 10, runRefreshMs: 1000 }));
    await c.start();
    // Four sites × the lower median of their claims (2000, 2100, 2200 and the site's 1,024,000):
    // as six clients, the site's three would have set the median and the multiplier.
    expect(c.throughput).toEqual({ basis: 'every-client', tokensPerS: 4 * 2100, peers: 6, clients: 4, unvouched: { peers: 0, tokensPerS: 0 } });
  });

  it('asks who is off probation again with the run, and estimates while the peer list does not load', async () => {
    const { c, src, setNow } = await withLiar('fails');
    expect(c.standingsListed).toBe(false);
    // Every id its own client: the same estimate, one liar moving it one rank at most.
    expect(c.throughput).toMatchObject({ basis: 'every-client', tokensPerS: 4 * 2100, clients: 4 });
    // The list comes, then the honest peers leave probation: the liar is left out.
    src.standings = FakeDashboardSource.prototype.standings;
    src.standingRows = listed([...honest.map((i) => trusted(i)), newcomer(LIAR)]);
    setNow(T0 + 63_000);
    await vi.waitFor(() => expect(c.throughput).toMatchObject({ basis: 'vouched', tokensPerS: HONEST_TPS }), { timeout: HANG_GUARD_MS });
    expect(c.standingsListed).toBe(true);
    // The liar leaves probation too (it earned three accepted exchanges): now it counts.
    src.standingRows = listed([...honest.map((i) => trusted(i)), trusted(LIAR)]);
    setNow(T0 + 65_000);
    await vi.waitFor(() => expect(c.totalTokensPerS).toBe(HONEST_TPS + CLAIM), { timeout: HANG_GUARD_MS });
  });
});
