// The research dashboard's state: every report from the coordinator (history, then the live
// stream), peers and their health, checkpoints, alerts, and the chart-ready views derived from
// them, and the run's events (peers joining, leaving or reported for bad updates, checkpoints
// saved or failed) in words. Reports arrive at up to hundreds per second with 500 peers, so
// ingest only appends; the views are recomputed at most once per `refreshMs` and only when
// something changed. Every peer that joins adds a row, so of the peers that left or went stale
// only the newest `gonePeerCap` are held (a widget's visitors over days, or identities churned on
// purpose, would otherwise grow every open dashboard without bound).
import { emptyConnectivity, finishConnectivity, ingestLinks, newPeerLinkState, type ConnectivityView, type PeerLinkState } from '../core/connectivity.ts';
import {
  checkpointAlerts, connectivityAlerts, divergenceAlerts, nanAlerts, offenderAlerts, stallAlerts, throughputAlerts,
  type Alert, type CheckpointOutcome, type LossPoint, type OffenderReport,
} from '../core/alerts.ts';
import { toCsv } from '../core/csv.ts';
import { describeEvent, type EventText } from '../core/events.ts';
import { binMean, binMedian, binRange, fillGaps, makeGrid, median, smoothEma } from '../core/series.ts';
import { EMPTY_COUNT, countThroughput, stepDomainEnd, type Claim, type Standing, type ThroughputBasis, type ThroughputCount } from '../core/throughput.ts';
import type { CheckpointItem, DashboardRun, DashboardSource, MetricReport, RunEventItem, TextSample } from '../ports.ts';
import { Observable, type Task } from './observable.ts';

export type XAxis = 'tokens' | 'step' | 'time';

export interface PeerRow {
  id: string;
  adapter: string | null;
  tokensPerS: number;
  step: number;
  round: number;
  trainLoss: number | null;
  valLoss: number | null;
  /** The last partner this peer reported an exchange with. */
  partner: string | null;
  firstSeen: number;
  lastSeen: number;
  stepChangedAt: number;
  reports: number;
  /** Left per the coordinator (peer-left event). */
  left: boolean;
}

/** Aligned chart data for uPlot: x plus one array per series (null = gap). */
export interface ChartView {
  x: number[];
  series: { label: string; role: 'peer' | 'median' | 'min' | 'max' | 'total'; values: (number | null)[] }[];
  /** Peers with a line of their own (the rest are in the median and the band). */
  shownPeers: number;
  totalPeers: number;
  /**
   * Peers whose claimed steps run past the axis (stepDomainEnd: no id on probation sets it), and
   * the furthest step claimed; their points past it are left out.
   */
  clipped?: { peers: number; furthestStep: number; axisStep: number };
  /**
   * Peers that reported a non-finite loss (NaN, or Infinity: a volunteer sends a finite loss
   * past MAX_LOSS so) among the points drawn, the first of them and its step: such a point is a
   * gap in the line, so the chart says so.
   */
  diverged?: { peers: number; first: string; step: number };
}

export interface Pairing { a: string; b: string; t: number; count: number }

/** A run event with its sentence, computed once when it arrives (rendering only reads it). */
export type RunEventView = RunEventItem & EventText;

/** Per-peer arrays for drawing; thinned to every other point when full. */
interface PeerSeries {
  t: number[];
  step: number[];
  train: (number | null)[];
  val: (number | null)[];
  tps: number[];
  bytes: number[];
  dist: (number | null)[];
}

export interface DashboardOptions {
  source: DashboardSource;
  now?: () => number;
  /** A peer not heard from for this long is stale (highlighted in the grid). */
  staleMs?: number;
  /** Peers drawn with their own line; the others are in the median and band. */
  maxPeerLines?: number;
  /** Bins of the shared x grid. */
  bins?: number;
  /** Points kept per peer for drawing before thinning. */
  perPeerCap?: number;
  /** Raw reports kept for the CSV export. */
  logCap?: number;
  refreshMs?: number;
  /** How far back the pairing graph looks. */
  pairingWindowMs?: number;
  /** Run events shown (and held) by the events panel, newest first. */
  eventCap?: number;
  /** Stored events fetched on load: more than shown, so older offender reports still alert. */
  eventHistory?: number;
  /** Peers that left or went stale held beyond the live ones (GONE_PEER_CAP). */
  gonePeerCap?: number;
  /** How often the run is asked again, for the step its peers agree on (the phase). */
  runRefreshMs?: number;
}

/**
 * Peers that left or went stale whose rows, series and link state are held, the most recently
 * seen; older ones are forgotten (`forgottenPeers`). Live peers are never forgotten. A row is a
 * few hundred bytes, a series up to `perPeerCap` points; 125,000 rows once made the phase's
 * Math.max(...steps) throw RangeError, and the dashboard stopped rendering.
 */
export const GONE_PEER_CAP = 2000;

const DEFAULTS = {
  staleMs: 30_000, maxPeerLines: 16, bins: 300, perPeerCap: 1000, logCap: 300_000, refreshMs: 1000, pairingWindowMs: 300_000,
  eventCap: 200, eventHistory: 1000, gonePeerCap: GONE_PEER_CAP, runRefreshMs: 15_000,
};
/** Offender reports and checkpoint outcomes held for the alerts (each a few dozen bytes). */
const OFFENDER_CAP = 2000;
const OUTCOME_CAP = 50;

export class DashboardController extends Observable {
  run: Task<DashboardRun> = { status: 'pending' };
  checkpoints: Task<CheckpointItem[]> = { status: 'pending' };
  connection: 'connecting' | 'live' | 'reconnecting' = 'connecting';
  xAxis: XAxis = 'tokens';
  logX = false;
  /** EMA weight, 0 = raw. */
  smoothing = 0.6;
  alerts: Alert[] = [];
  /** Samples by checkpoint id. */
  samples = new Map<string, Task<TextSample>>();

  // derived (refreshed by tick)
  trainView: ChartView = emptyView();
  valView: ChartView = emptyView();
  throughputView: ChartView = emptyView();
  spreadView: ChartView = emptyView();
  pairings: Pairing[] = [];
  /** Direct vs relayed exchanges, link failures and their reasons, peers whose links keep failing. */
  connectivity: ConnectivityView = emptyConnectivity();
  private readonly linkCounts = emptyConnectivity();
  private readonly linkReasons = new Map<string, number>();
  private readonly linkPeers = new Map<string, PeerLinkState>();
  peerRows: PeerRow[] = [];
  /**
   * The run's tokens/s as counted (src/ui/core/throughput.ts): the claims of live ids off
   * probation, each client address once; with nobody off probation, an estimate from every
   * address once. The claims left out are in `throughput.unvouched`.
   */
  totalTokensPerS = 0;
  throughput: ThroughputCount = EMPTY_COUNT;
  /** Whether the coordinator's peer list (who is off probation) came: false until it does, or after it failed. */
  standingsListed = false;
  /** The newest `eventCap` run events, newest first. */
  events: RunEventView[] = [];
  /** Bumped whenever `events` changes, so the panel renders only then. */
  eventsVersion = 0;
  /** Run events received since the page opened (history included), for "200 of N". */
  eventsSeen = 0;
  /** Peers that left or went stale and were dropped past gonePeerCap, with all held for them (the grid says how many). */
  forgottenPeers = 0;

  private readonly o: typeof DEFAULTS;
  private readonly now: () => number;
  private readonly peers = new Map<string, PeerRow>();
  /**
   * Each peer's standing as the coordinator last listed it (GET /peers), kept for those that left
   * while they are held (their history still counts as what it was). Unlisted: unvouched.
   */
  private readonly standing = new Map<string, Standing>();
  /** 'vouched' when the coordinator's last list had anyone off probation. */
  private basis: ThroughputBasis = 'every-client';
  private readonly series = new Map<string, PeerSeries>();
  private log: MetricReport[] = [];
  logTruncated = false;
  private readonly nanSeen = new Map<string, Alert>();
  /** Events not yet in `events` order, trimmed to eventCap at each refresh. */
  private eventBuf: RunEventView[] = [];
  private eventsDirty = false;
  /** Ids of events already taken: history and the live stream overlap after a reconnect. */
  private eventIds = new Set<number>();
  /** By "reporter|accused": the coordinator stores one per pair. */
  private readonly offenders = new Map<string, OffenderReport>();
  private outcomes: CheckpointOutcome[] = [];
  private readonly dismissed = new Set<string>();
  private dirty = true;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private off: (() => void) | null = null;
  private t0: number | null = null;
  /** Peers held past which a new one looks for gone ones to forget (forgetGone), so between refreshes too. */
  private forgetAt: number;

  constructor(private readonly opts: DashboardOptions) {
    super();
    this.o = { ...DEFAULTS, ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) } as typeof DEFAULTS;
    this.now = opts.now ?? Date.now;
    this.forgetAt = 2 * this.o.gonePeerCap;
  }

  async start(): Promise<void> {
    const src = this.opts.source;
    // Subscribe first and buffer, so nothing published while history loads is lost.
    const early: MetricReport[] = [];
    const earlyEvents: RunEventItem[] = [];
    let loaded = false, eventsLoaded = false;
    this.off = src.subscribe({
      report: (r) => (loaded ? this.ingest(r) : early.push(r)),
      event: (e) => (eventsLoaded ? this.onEvent(e, true) : earlyEvents.push(e)),
      connection: (s) => { this.connection = s; this.notify(); },
    });
    await Promise.all([this.loadRun(), this.loadStandings(), this.loadCheckpoints(), (async () => {
      try {
        for (const r of await src.history()) this.ingest(r);
      } catch (e) {
        console.warn(`[murmur] metric history did not load: ${(e as Error).message}`);
      }
      loaded = true;
      for (const r of early) this.ingest(r);
    })(), (async () => {
      try {
        for (const e of await src.events(this.o.eventHistory)) this.onEvent(e, false);
      } catch (e) {
        console.warn(`[murmur] run events did not load: ${(e as Error).message}`);
      }
      eventsLoaded = true;
      // Live: the checkpoint list or the run may have changed while they loaded.
      for (const e of earlyEvents) this.onEvent(e, true);
    })()]);
    this.refresh();
    this.schedule();
  }

  /**
   * Next refresh after refreshMs, or later when the last one was slow: recomputing the views
   * never takes more than ~10% of the main thread, however many peers report.
   */
  private schedule(): void {
    const delay = Math.max(this.o.refreshMs, 10 * this.lastRefreshMs);
    this.timer = setTimeout(() => { void this.tick().then(() => { if (this.timer !== null) this.schedule(); }); }, delay);
  }

  /** Duration of the last refresh (ms), for the adaptive interval and the page's footer. */
  lastRefreshMs = 0;

  dispose(): void {
    this.off?.();
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  // ---------- ingest ----------

  ingest(r: MetricReport): void {
    if (this.log.length >= this.o.logCap) {
      this.log = this.log.slice(this.log.length >> 1);
      this.logTruncated = true;
    }
    this.log.push(r);
    if (this.t0 === null || r.t < this.t0) this.t0 = r.t;
    let p = this.peers.get(r.peerId);
    if (!p) {
      p = { id: r.peerId, adapter: r.adapter, tokensPerS: 0, step: -1, round: 0, trainLoss: null, valLoss: null, partner: null,
        firstSeen: r.t, lastSeen: r.t, stepChangedAt: r.t, reports: 0, left: false };
      this.peers.set(r.peerId, p);
    }
    if (r.t >= p.lastSeen || p.reports === 0) {
      if (r.step !== p.step) p.stepChangedAt = r.t;
      p.step = r.step; p.round = r.round; p.tokensPerS = r.tokensPerS; p.lastSeen = r.t;
      // Reports between outer steps carry no partner: keep the last one the peer exchanged with.
      if (r.partner) p.partner = r.partner;
      if (r.trainLoss !== null) p.trainLoss = r.trainLoss;
      if (r.valLoss !== null) p.valLoss = r.valLoss;
      if (r.adapter) p.adapter = r.adapter;
      p.left = false;
    }
    p.reports++;
    let lp = this.linkPeers.get(r.peerId);
    if (!lp) this.linkPeers.set(r.peerId, (lp = newPeerLinkState()));
    ingestLinks(this.linkCounts, this.linkReasons, lp, r);
    let s = this.series.get(r.peerId);
    if (!s) this.series.set(r.peerId, (s = { t: [], step: [], train: [], val: [], tps: [], bytes: [], dist: [] }));
    s.t.push(r.t); s.step.push(r.step); s.train.push(r.trainLoss); s.val.push(r.valLoss);
    s.tps.push(r.tokensPerS); s.bytes.push(r.bytesIn + r.bytesOut); s.dist.push(r.partnerDist);
    if (s.t.length > this.o.perPeerCap) thin(s);
    for (const [name, v] of [['training', r.trainLoss], ['validation', r.valLoss]] as const) {
      if (v !== null && !Number.isFinite(v) && !this.nanSeen.has(r.peerId)) {
        const [a] = nanAlerts(r.peerId, [{ t: r.t, step: r.step, trainLoss: name === 'training' ? v : null, valLoss: name === 'validation' ? v : null }]);
        if (a) this.nanSeen.set(r.peerId, a);
      }
    }
    if (this.peers.size > this.forgetAt) this.forgetGone(this.now());
    this.dirty = true;
  }

  /**
   * A run event, from history (`live` false) or the stream. Only live peer events touch the
   * peer grid: the history's joins and leaves are of peers long gone, and the metric history
   * already says who is there.
   */
  private onEvent(e: RunEventItem, live: boolean): void {
    if (this.eventIds.has(e.id)) return;
    this.eventIds.add(e.id);
    if (this.eventIds.size > 4 * this.o.eventHistory) this.eventIds = new Set([...this.eventIds].slice(2 * this.o.eventHistory));
    this.eventBuf.push({ ...e, ...describeEvent(e) });
    this.eventsSeen++;
    this.eventsDirty = true;
    // The source checked the data against its kind's schema (RUN_EVENT_DATA), so its fields are typed.
    switch (e.kind) {
      case 'peer-joined': case 'peer-left':
        if (live && e.peerId) this.onPeer(e.kind, e.peerId, e.t);
        break;
      case 'peer-offender':
        if (e.peerId) {
          const { accused, reason, paired } = e.data;
          this.offenders.set(`${e.peerId}|${accused}`, { t: e.t, reporter: e.peerId, accused, reason, paired });
          if (this.offenders.size > OFFENDER_CAP) this.offenders.delete(this.offenders.keys().next().value!);
        }
        break;
      case 'checkpoint-saved': case 'checkpoint-failed':
        this.outcomes.push({
          t: e.t, ok: e.kind === 'checkpoint-saved', peerId: e.peerId,
          step: e.kind === 'checkpoint-saved' ? e.data.step : null, reason: e.kind === 'checkpoint-failed' ? e.data.reason : null,
        });
        if (this.outcomes.length > 2 * OUTCOME_CAP) this.outcomes = this.outcomes.slice(-OUTCOME_CAP);
        break;
    }
    if (live && e.kind.startsWith('checkpoint-')) void this.loadCheckpoints();
    if (live && e.kind.startsWith('run-')) void this.loadRun();
    this.dirty = true;
  }

  private onPeer(kind: 'peer-joined' | 'peer-left', peerId: string, t: number): void {
    const p = this.peers.get(peerId);
    if (kind === 'peer-left' && p) p.left = true;
    if (kind === 'peer-joined' && !p) {
      this.peers.set(peerId, { id: peerId, adapter: null, tokensPerS: 0, step: 0, round: 0, trainLoss: null, valLoss: null,
        partner: null, firstSeen: t, lastSeen: t, stepChangedAt: t, reports: 0, left: false });
      if (this.peers.size > this.forgetAt) this.forgetGone(this.now());
    }
  }

  /**
   * Forgets the peers that left or went stale past gonePeerCap, the least recently seen first,
   * with their series, link state and NaN alert; never a live one. Called at each refresh, and
   * when a new peer takes the count past `forgetAt`: at least gonePeerCap new peers apart, so one
   * costs O(1) amortised, and between refreshes at most 2 × gonePeerCap gone peers are held.
   */
  private forgetGone(now: number): void {
    const gone: PeerRow[] = [];
    for (const p of this.peers.values()) if (this.isStale(p, now)) gone.push(p);
    const excess = gone.length - this.o.gonePeerCap;
    if (excess > 0) {
      gone.sort((a, b) => a.lastSeen - b.lastSeen || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      for (let i = 0; i < excess; i++) {
        const id = gone[i]!.id;
        this.peers.delete(id);
        this.series.delete(id);
        this.linkPeers.delete(id);
        this.nanSeen.delete(id);
        this.linePeers.delete(id);
        this.standing.delete(id);
      }
      this.forgottenPeers += excess;
    }
    this.forgetAt = this.peers.size + this.o.gonePeerCap;
  }

  /** Newest first, at most eventCap; the buffer keeps only what is shown. */
  private refreshEvents(): void {
    if (!this.eventsDirty) return;
    this.eventsDirty = false;
    // History comes oldest first and live events in order, so this is nearly sorted already.
    this.eventBuf.sort((a, b) => a.t - b.t || a.id - b.id);
    if (this.eventBuf.length > this.o.eventCap) this.eventBuf = this.eventBuf.slice(-this.o.eventCap);
    this.events = [...this.eventBuf].reverse();
    this.eventsVersion++;
  }

  /** When the run was last asked for (the controller's clock). */
  private runLoadedAt = -Infinity;

  private async loadRun(): Promise<void> {
    this.runLoadedAt = this.now();
    try {
      this.run = { status: 'complete', value: await this.opts.source.run() };
    } catch (e) {
      this.run = { status: 'error', error: (e as Error).message };
    }
    this.dirty = true;
    this.notify();
  }

  /**
   * Who is off probation and which ids share a client (the coordinator's peer list): whose claims
   * count. Asked with the run. A failed answer keeps the last one.
   */
  private async loadStandings(): Promise<void> {
    try {
      const list = await this.opts.source.standings();
      const listed = new Set<string>();
      let vouched = false;
      for (const p of list) {
        listed.add(p.id);
        this.standing.set(p.id, { vouched: !p.probation, client: p.client, site: p.site });
        if (!p.probation) vouched = true;
      }
      // Bounded: the listed peers and those the page holds.
      for (const id of this.standing.keys()) if (!listed.has(id) && !this.peers.has(id)) this.standing.delete(id);
      this.basis = vouched ? 'vouched' : 'every-client';
      this.standingsListed = true;
    } catch (e) {
      if (this.standingsListed) console.warn(`[murmur] the run's peer list did not load: ${(e as Error).message}`);
      this.standingsListed = this.standing.size > 0;
    }
    this.dirty = true;
  }

  /** A peer's claim as counted: unlisted ids are unvouched, each its own client. */
  private claim(id: string, tokensPerS: number): Claim {
    const st = this.standing.get(id);
    return { tokensPerS, vouched: st?.vouched === true, client: st ? `c:${st.client}` : `id:${id}`, site: st ? `s:${st.site}` : `id:${id}` };
  }

  private async loadCheckpoints(): Promise<void> {
    try {
      const list = await this.opts.source.checkpoints();
      this.checkpoints = { status: 'complete', value: [...list].sort((a, b) => a.step - b.step || a.createdAt - b.createdAt) };
    } catch (e) {
      this.checkpoints = { status: 'error', error: (e as Error).message };
    }
    this.notify();
  }

  // ---------- commands ----------

  setXAxis(x: XAxis): void { this.xAxis = x; this.refresh(); }
  setLogX(on: boolean): void { this.logX = on; this.refresh(); }
  setSmoothing(w: number): void {
    if (!(w >= 0 && w < 1)) throw new Error(`smoothing must be in [0, 1), got ${w}`);
    this.smoothing = w;
    this.refresh();
  }
  dismissAlert(key: string): void { this.dismissed.add(key); this.refresh(); }

  async loadSample(c: CheckpointItem): Promise<void> {
    const cur = this.samples.get(c.id);
    if (cur && cur.status !== 'error') return;
    this.samples.set(c.id, { status: 'pending' });
    this.notify();
    try {
      this.samples.set(c.id, { status: 'complete', value: await this.opts.source.sample(c) });
    } catch (e) {
      this.samples.set(c.id, { status: 'error', error: (e as Error).message });
    }
    this.notify();
  }

  /** Every held report as CSV, oldest first. */
  csv(): string {
    const rows = [...this.log].sort((a, b) => a.t - b.t);
    return toCsv(rows, [
      { name: 'time_iso', get: (r) => new Date(r.t).toISOString() },
      { name: 'time_ms', get: (r) => r.t },
      { name: 'peer', get: (r) => r.peerId },
      { name: 'step', get: (r) => r.step },
      { name: 'round', get: (r) => r.round },
      { name: 'train_loss', get: (r) => r.trainLoss },
      { name: 'val_loss', get: (r) => r.valLoss },
      { name: 'tokens_per_s', get: (r) => r.tokensPerS },
      { name: 'bytes_in', get: (r) => r.bytesIn },
      { name: 'bytes_out', get: (r) => r.bytesOut },
      { name: 'partner', get: (r) => r.partner },
      { name: 'partner_dist', get: (r) => r.partnerDist },
      { name: 'adapter', get: (r) => r.adapter },
    ]);
  }

  get reportCount(): number { return this.log.length; }

  /** The controller's clock (the grid and graph compute "ago" against it). */
  clockNow(): number { return this.now(); }

  get staleMs(): number { return this.o.staleMs; }

  isStale(p: PeerRow, now = this.now()): boolean {
    return p.left || now - p.lastSeen > this.o.staleMs;
  }

  /**
   * The run's phase in words, at the step the coordinator says its peers agree on
   * (`stepConsensus`), never the furthest step a peer reported: that is its own claim, and one
   * new id may claim up to its report bound (1,000 steps a second on small models).
   */
  get phase(): { key: 'loading' | 'waiting' | 'starting' | 'warmup' | 'training' | 'annealed' | 'stopped'; text: string } {
    if (this.run.status !== 'complete') return { key: 'loading', text: 'Loading…' };
    const run = this.run.value;
    if (run.status === 'stopped') return { key: 'stopped', text: 'Stopped by the operator' };
    const now = this.now();
    let live = 0;
    for (const p of this.peerRows) if (!this.isStale(p, now)) live++;
    if (live === 0) return { key: 'waiting', text: 'Waiting for volunteers (no live peer)' };
    const step = run.stepConsensus;
    if (step === null) return { key: 'starting', text: 'Training: no step agreed yet (no peer has reported one, no checkpoint)' };
    if (step < run.warmupSteps) return { key: 'warmup', text: `Warm-up: step ${step} of ${run.warmupSteps}` };
    if (step < run.totalSteps) return { key: 'training', text: `Training (cosine decay): step ${step} of ${run.totalSteps}, ${Math.round((100 * step) / run.totalSteps)}%` };
    return { key: 'annealed', text: `Past the schedule (step ${step}): learning rate held at its minimum` };
  }

  // ---------- derived views ----------

  private async tick(): Promise<void> {
    // The run's agreed step moves on: ask for it now and then (a run-* event asks at once).
    if (this.now() - this.runLoadedAt >= this.o.runRefreshMs) await Promise.all([this.loadRun(), this.loadStandings()]);
    if (this.dirty) await this.refreshSliced();
    else { this.updateAlerts(); this.notify(); } // staleness and stalls change with time alone
  }

  /**
   * The scheduled refresh, in slices with a yield between them: with 500 peers each view costs
   * ~20 ms, and one 80 ms task would delay input and frames. lastRefreshMs sums the slices.
   */
  private async refreshSliced(): Promise<void> {
    const yieldNow = () => new Promise<void>((r) => setTimeout(r, 0));
    let spent = 0;
    const slice = (fn: () => void) => { const t0 = performance.now(); fn(); spent += performance.now() - t0; };
    this.dirty = false;
    slice(() => this.refreshPeers(this.now()));
    await yieldNow();
    slice(() => { this.trainView = this.lossView('train'); });
    await yieldNow();
    slice(() => { this.valView = this.lossView('val'); });
    await yieldNow();
    slice(() => {
      this.computeTimeViews();
      this.pairings = this.computePairings(this.now());
      this.refreshLinks();
      this.refreshEvents();
      this.updateAlerts();
    });
    this.lastRefreshMs = spent;
    this.notify();
  }

  private refreshPeers(now: number): void {
    this.forgetGone(now);
    const stale = new Map([...this.peers.values()].map((p) => [p.id, this.isStale(p, now)]));
    this.peerRows = [...this.peers.values()].sort((a, b) =>
      Number(stale.get(a.id)) - Number(stale.get(b.id)) || b.tokensPerS - a.tokensPerS || a.id.localeCompare(b.id));
    this.throughput = countThroughput(this.peerRows.filter((p) => !stale.get(p.id)).map((p) => this.claim(p.id, p.tokensPerS)), this.basis);
    this.totalTokensPerS = this.throughput.tokensPerS;
    // Peers with a line of their own: sticky while they stay live, so the charts keep their
    // series (and colours) from one refresh to the next; free places go to the most recent.
    for (const id of this.linePeers) if (stale.get(id) !== false) this.linePeers.delete(id);
    const byRecent = [...this.peers.values()].filter((p) => !stale.get(p.id) && !this.linePeers.has(p.id)).sort((a, b) => b.lastSeen - a.lastSeen);
    for (const p of byRecent) {
      if (this.linePeers.size >= this.o.maxPeerLines) break;
      this.linePeers.add(p.id);
    }
  }

  /** Peers drawn with their own line (see refreshPeers). */
  private readonly linePeers = new Set<string>();

  private refreshLinks(): void {
    this.connectivity = finishConnectivity(this.linkCounts, this.linkReasons, this.linkPeers, (id) => this.peers.get(id)?.left === false);
  }

  refresh(): void {
    const started = performance.now();
    this.dirty = false;
    const now = this.now();
    this.refreshPeers(now);
    this.trainView = this.lossView('train');
    this.valView = this.lossView('val');
    this.computeTimeViews();
    this.pairings = this.computePairings(now);
    this.refreshLinks();
    this.refreshEvents();
    this.updateAlerts();
    this.lastRefreshMs = performance.now() - started;
    this.notify();
  }

  private xOf(s: PeerSeries, i: number, tokensPerStep: number): number {
    switch (this.xAxis) {
      case 'tokens': return s.step[i]! * tokensPerStep;
      case 'step': return s.step[i]!;
      case 'time': return (s.t[i]! - this.startTime()) / 1000;
    }
  }

  /** Wall time zero: the run's creation, or the first report if that is earlier (clock skew). */
  private startTime(): number {
    const created = this.run.status === 'complete' ? this.run.value.createdAt : Infinity;
    return Math.min(created, this.t0 ?? Infinity);
  }

  /**
   * The furthest step the step and tokens axes reach (stepDomainEnd): the furthest step of a peer
   * off probation and two rounds past the agreed step (twice it while nobody is off probation).
   * A peer's steps are its own claims, and one new id inside its report bound stretched the axis
   * to 16 times the honest peers' steps.
   */
  private stepAxisEnd(): number {
    if (this.xAxis === 'time' || this.run.status !== 'complete') return Infinity;
    let furthest: number | null = null;
    for (const [id, s] of this.series) {
      if (this.standing.get(id)?.vouched !== true || s.step.length === 0) continue;
      let m = -Infinity;
      for (const v of s.step) if (v > m) m = v;
      furthest = Math.max(furthest ?? -Infinity, m);
    }
    return stepDomainEnd(furthest, this.run.value.stepConsensus, this.run.value.H);
  }

  private lossView(which: 'train' | 'val'): ChartView {
    const tps = this.run.status === 'complete' ? this.run.value.tokensPerStep : 1;
    const perPeer: { id: string; x: number[]; y: (number | null)[]; raw: (number | null)[] }[] = [];
    let lo = Infinity, hi = -Infinity;
    const axisStep = this.stepAxisEnd();
    let clippedPeers = 0, furthestStep = -Infinity;
    let diverged: ChartView['diverged'] = undefined;
    for (const [id, s] of this.series) {
      const ys = which === 'train' ? s.train : s.val;
      const x: number[] = [], raw: (number | null)[] = [];
      let clipped = false, bad = false;
      for (let i = 0; i < s.t.length; i++) {
        if (ys[i] === null) continue;
        if (s.step[i]! > axisStep) { clipped = true; furthestStep = Math.max(furthestStep, s.step[i]!); continue; }
        const xv = this.xOf(s, i, tps);
        if (this.logX && !(xv > 0)) continue;
        x.push(xv); raw.push(ys[i]!);
        if (xv < lo) lo = xv;
        if (xv > hi) hi = xv;
        if (!bad && !Number.isFinite(ys[i]!)) {
          bad = true;
          if (!diverged) diverged = { peers: 0, first: id, step: s.step[i]! };
          else if (s.step[i]! < diverged.step) { diverged.first = id; diverged.step = s.step[i]!; }
          diverged.peers++;
        }
      }
      if (clipped) clippedPeers++;
      if (x.length) perPeer.push({ id, x, raw, y: smoothEma(raw, this.smoothing) });
    }
    const notes = {
      ...(clippedPeers > 0 ? { clipped: { peers: clippedPeers, furthestStep, axisStep } } : {}),
      ...(diverged ? { diverged } : {}),
    };
    if (perPeer.length === 0) return { ...emptyView(), ...notes };
    const grid = makeGrid(lo, hi, this.o.bins, this.logX);
    const binned = perPeer.map((p) => fillGaps(binMean(grid, { x: p.x, y: p.y })));
    const range = binRange(grid, perPeer.map((p) => ({ x: p.x, y: p.raw })));
    const band = { min: fillGaps(range.min), max: fillGaps(range.max) };
    // Own lines for a stable set of live peers (all of them when few); every peer counts in the
    // median and the band. With no live peer (a finished run), the most recent ones.
    const recent = this.linePeers.size > 0 ? this.linePeers
      : new Set([...perPeer].sort((a, b) => (this.peers.get(b.id)?.lastSeen ?? 0) - (this.peers.get(a.id)?.lastSeen ?? 0))
        .slice(0, this.o.maxPeerLines).map((p) => p.id));
    const series: ChartView['series'] = [
      { label: 'min', role: 'min', values: band.min },
      { label: 'max', role: 'max', values: band.max },
    ];
    // Sorted by id: the same peer keeps the same series index (and colour) across refreshes.
    const order = perPeer.map((p, i) => ({ p, i })).filter(({ p }) => recent.has(p.id)).sort((a, b) => a.p.id.localeCompare(b.p.id));
    for (const { p, i } of order) series.push({ label: p.id, role: 'peer', values: binned[i]! });
    series.push({ label: 'median', role: 'median', values: binMedian(binned, grid.x.length) });
    return { x: grid.x, series, shownPeers: order.length, totalPeers: perPeer.length, ...notes };
  }

  /**
   * Throughput, bandwidth, live peers and partner spread per time bucket. Rates are carried
   * forward from each peer's last report until it goes stale, so a bucket between two reports
   * still counts the peer (reports come every few seconds, buckets can be shorter). Tokens/s is
   * counted as the total is (countThroughput, by each peer's standing as last listed): the
   * throughput-drop alert reads it, and a liar on probation who claimed a lot and stopped once
   * raised a false one.
   */
  private computeTimeViews(): void {
    if (this.t0 === null) { this.throughputView = emptyView(); this.spreadView = emptyView(); return; }
    const t0 = this.t0;
    let tMax = t0;
    for (const s of this.series.values()) if (s.t.length) tMax = Math.max(tMax, s.t[s.t.length - 1]!);
    const span = Math.max(1000, tMax - t0);
    const bucketMs = Math.max(1000, Math.ceil(span / this.o.bins / 1000) * 1000);
    const n = Math.floor(span / bucketMs) + 1;
    const bytes = new Float64Array(n), live = new Uint32Array(n);
    const claims: Claim[][] = Array.from({ length: n }, () => []);
    const dists: number[][] = Array.from({ length: n }, () => []);
    for (const [id, s] of this.series) {
      const standing = this.claim(id, 0);
      let j = 0, lastT = -Infinity, tps = 0, rate = 0, dist: number | null = null;
      for (let k = 0; k < n; k++) {
        const end = t0 + (k + 1) * bucketMs;
        for (; j < s.t.length && s.t[j]! < end; j++) {
          rate = j > 0 ? s.bytes[j]! / Math.max(1, (s.t[j]! - s.t[j - 1]!) / 1000) : 0;
          tps = s.tps[j]!;
          lastT = s.t[j]!;
          const d = s.dist[j];
          if (d !== null && d !== undefined && Number.isFinite(d)) dist = d;
        }
        if (end - lastT > this.o.staleMs + bucketMs) continue;
        claims[k]!.push({ ...standing, tokensPerS: tps });
        bytes[k] += rate;
        live[k]++;
        if (dist !== null) dists[k]!.push(dist);
      }
    }
    const x = Array.from({ length: n }, (_, k) => (t0 + k * bucketMs) / 1000);
    this.throughputView = {
      x, shownPeers: 0, totalPeers: this.series.size,
      series: [
        { label: 'tokens/s', role: 'total', values: claims.map((c) => countThroughput(c, this.basis).tokensPerS) },
        { label: 'bytes/s', role: 'total', values: Array.from(bytes) },
        { label: 'live peers', role: 'total', values: Array.from(live) },
      ],
    };
    this.spreadView = {
      x, shownPeers: 0, totalPeers: this.series.size,
      series: [
        { label: 'min', role: 'min', values: dists.map((d) => (d.length ? d.reduce((a, b) => Math.min(a, b)) : null)) },
        { label: 'max', role: 'max', values: dists.map((d) => (d.length ? d.reduce((a, b) => Math.max(a, b)) : null)) },
        { label: 'median', role: 'median', values: dists.map((d) => median(d)) },
      ],
    };
  }

  private computePairings(now: number): Pairing[] {
    // Both sides report an exchange (when both report at all): count each side's reports and
    // take the larger, so a pair is not counted twice nor missed when one side is silent.
    const edges = new Map<string, Pairing & { fromA: number; fromB: number }>();
    const since = now - this.o.pairingWindowMs;
    for (let i = this.log.length - 1; i >= 0; i--) {
      const r = this.log[i]!;
      if (r.t < since) break; // the log is in arrival order, close enough to time order
      if (!r.partner) continue;
      const [a, b] = r.peerId < r.partner ? [r.peerId, r.partner] : [r.partner, r.peerId];
      const key = `${a}|${b}`;
      let e = edges.get(key);
      if (!e) edges.set(key, (e = { a, b, t: r.t, count: 0, fromA: 0, fromB: 0 }));
      e.t = Math.max(e.t, r.t);
      if (r.peerId === a) e.fromA++; else e.fromB++;
      e.count = Math.max(e.fromA, e.fromB);
    }
    return [...edges.values()].map(({ a, b, t, count }) => ({ a, b, t, count })).sort((x, y) => y.t - x.t);
  }

  private updateAlerts(): void {
    const now = this.now();
    const out: Alert[] = [...this.nanSeen.values()];
    for (const [id, s] of this.series) {
      const from = Math.max(0, s.t.length - 60);
      const pts: LossPoint[] = [];
      for (let i = from; i < s.t.length; i++) pts.push({ t: s.t[i]!, step: s.step[i]!, trainLoss: s.train[i]!, valLoss: s.val[i]! });
      pushAll(out, divergenceAlerts(id, pts));
    }
    pushAll(out, stallAlerts(this.peerRows.map((p) => ({ peerId: p.id, step: p.step, lastSeen: p.left ? -Infinity : p.lastSeen, stepChangedAt: p.stepChangedAt })), now, this.o.staleMs));
    const tv = this.throughputView;
    if (tv.x.length) {
      const total = tv.series[0]!.values;
      // The last bucket is still filling: leave it out of the comparison.
      pushAll(out, throughputAlerts(tv.x.slice(0, -1).map((x, k) => ({ t: x * 1000, tokensPerS: total[k] ?? 0 })), tv.x[tv.x.length - 1]! * 1000));
    }
    pushAll(out, offenderAlerts([...this.offenders.values()]));
    pushAll(out, connectivityAlerts(this.connectivity.failing, now));
    if (this.outcomes.length) pushAll(out, checkpointAlerts([...this.outcomes].sort((a, b) => a.t - b.t)));
    this.alerts = out.filter((a) => !this.dismissed.has(a.key)).sort((a, b) => severityRank(a) - severityRank(b) || b.t - a.t);
  }
}

/** out.push(...more) without spreading: as many arguments as alerts (one per peer) could overflow the stack. */
function pushAll<T>(out: T[], more: readonly T[]): void {
  for (const x of more) out.push(x);
}

function severityRank(a: Alert): number { return a.severity === 'critical' ? 0 : 1; }

function emptyView(): ChartView {
  return { x: [], series: [], shownPeers: 0, totalPeers: 0 };
}

/** Halves a full series, keeping every other point (and always the newest). */
function thin(s: PeerSeries): void {
  const keep = (a: unknown[]) => a.filter((_, i) => i % 2 === 1 || i === a.length - 1);
  for (const k of Object.keys(s) as (keyof PeerSeries)[]) (s as unknown as Record<string, unknown[]>)[k] = keep(s[k]);
}
