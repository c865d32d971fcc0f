// Fakes of the UI's ports (src/ui/ports.ts) for unit tests (with vitest fake timers) and for the
// browser test pages. They keep their own records (busy intervals, reports, exchanges) so tests
// check the controller against an account it did not write itself.
import type {
  ExchangeResult, GpuEvent, GpuProbe, MeshPort, MeshStats, OuterPayload, OuterState, RunSummary, SensorPort, SessionStart, TrainerPort,
  VolunteerBackend, VolunteerReport, VolunteerSession,
} from '../../src/ui/ports.ts';
import type { Sensors } from '../../src/ui/core/policy.ts';
import type { CheckpointItem, DashboardHandlers, DashboardRun, DashboardSource, MetricReport, PeerStandingItem, RunEventItem, RunEventKind, TextSample } from '../../src/ui/ports.ts';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export const FAKE_RUN: RunSummary = {
  id: 'default',
  name: 'Moby Dick, tiny GPT',
  dataset: 'Moby Dick (byte-level, 1.2 MB)',
  preset: 'tiny',
  params: 1_020_000,
  tokensPerStep: 8 * 128,
  H: 5,
  pairWaitFrac: 0.3,
  bytesPerExchange: 8_160_000,
  linkBytesPerS: 136_000,
  exchangeWaitS: 60,
  firstLinkBytesPerS: 544_000,
  firstExchangeWaitS: 15,
  operator: 'The Murmur test coordinator',
  resultsUrl: '/dashboard',
};

export const FAKE_GPU: GpuProbe = {
  ok: true,
  adapter: { vendor: 'fake', architecture: 'test', description: 'Fake GPU for UI tests', isSoftware: false },
  name: 'fake test GPU',
};

export class FakeTrainer implements TrainerPort {
  /** Busy intervals [start, end] in Date.now() ms, as the "GPU" saw them. */
  readonly busy: [number, number][] = [];
  step = 0;
  outerSteps: number[] = []; // partners per outer step
  disposed = false;
  /** Loss to return at the next step instead of the curve (e.g. NaN). */
  inject: number | null = null;
  /** Make the next train() fail like the real Trainer does when the loss blows up. */
  divergeNext = false;
  /** Make this many train() calls in a row fail that way. */
  divergeTimes = 0;
  /** Who listens to the worker's GPU events (device lost, rebuilt). */
  readonly gpuListeners = new Set<(e: GpuEvent) => void>();

  onGpuEvent(fn: (e: GpuEvent) => void): () => void {
    this.gpuListeners.add(fn);
    return () => { this.gpuListeners.delete(fn); };
  }

  /** What the worker sends when its device is lost and rebuilt at `step` (the steps since the outer step trained again). */
  loseDevice(): void {
    for (const fn of this.gpuListeners) fn({ type: 'device-lost', message: 'GPU device lost (unknown)' });
    for (const fn of this.gpuListeners) fn({ type: 'rebuilt', step: this.step, attempt: 1, retrained: this.step % 10 });
  }

  /** `floats`: length of φ, Δ and the momentum (a run's layout.total where a coordinator checks it). */
  constructor(public msPerStep = 20, readonly floats = 4) {
    this.phi = Float32Array.from({ length: floats }, (_, i) => 1 + (i % 4));
    this.momentum = new Float32Array(floats);
  }

  async train(steps: number): Promise<number[]> {
    if (this.disposed) throw new Error('FakeTrainer: train() after dispose()');
    if (this.divergeNext || this.divergeTimes > 0) {
      this.divergeNext = false;
      this.divergeTimes = Math.max(0, this.divergeTimes - 1);
      throw new Error(`Trainer.train: loss is NaN at step ${this.step + 1}; the weights were reset to the last outer state (step ${this.step}). Lower the learning rate or check the data.`);
    }
    const t0 = Date.now();
    await sleep(steps * this.msPerStep);
    this.busy.push([t0, Date.now()]);
    const out: number[] = [];
    for (let i = 0; i < steps; i++) {
      this.step++;
      out.push(this.inject ?? 1.6 + 3.9 * Math.exp(-this.step / 150));
      this.inject = null;
    }
    return out;
  }

  async evaluate(): Promise<number> {
    return 1.7 + 3.9 * Math.exp(-this.step / 150);
  }

  async checkLoss(): Promise<{ val: number; train: number }> {
    const l = await this.evaluate();
    return { val: l, train: l };
  }

  async outerPayload(): Promise<OuterPayload> {
    return { phi: this.phi.slice(), delta: new Float32Array(this.floats).fill(0.1) };
  }

  async applyOuter(partners: OuterPayload[]): Promise<void> {
    this.outerSteps.push(partners.length);
    // Something that changes at every outer step, so tests can tell states apart.
    this.phi = this.phi.map((v) => v + 1);
    this.momentum = this.momentum.map((v) => v - 0.25);
    this.stepAtOuter = this.step;
  }

  /** The last outer state (φ counts outer steps in this fake) and every state loaded. */
  phi: Float32Array;
  momentum: Float32Array;
  stepAtOuter = 0;
  readonly loads: OuterState[] = [];

  async outerState(): Promise<OuterState> {
    return { phi: this.phi.slice(), momentum: this.momentum.slice(), innerStep: this.stepAtOuter };
  }

  async load(s: OuterState): Promise<void> {
    this.loads.push(s);
    this.phi = s.phi.slice();
    this.momentum = s.momentum.slice();
    this.step = this.stepAtOuter = s.innerStep;
  }

  async dispose(): Promise<void> {
    this.disposed = true;
  }

  /** Fraction of [from, to] the fake GPU was busy. */
  dutyBetween(from: number, to: number): number {
    let b = 0;
    for (const [s, e] of this.busy) b += Math.max(0, Math.min(e, to) - Math.max(s, from));
    return b / (to - from);
  }
}

export class FakeMesh implements MeshPort {
  peers = 0;
  bytesIn = 0;
  bytesOut = 0;
  exchanges: { round: number; waitMs: number; partner: string | null }[] = [];
  /** Partner ids used in turn while peers > 0. */
  partners = ['p-00000000000000b2', 'p-00000000000000c3'];
  /** Set: links to partners fail to open for this reason (every exchange is solo, 'connect-failed'). */
  linkError: string | null = null;

  constructor(public exchangeMs = 30) {}

  async exchange(round: number, mine: OuterPayload, waitMs: number): Promise<ExchangeResult> {
    await sleep(this.exchangeMs);
    if (this.peers === 0) {
      this.exchanges.push({ round, waitMs, partner: null });
      return { partner: null, payload: null, partnerDist: null, bytesIn: 0, bytesOut: 0, solo: 'no-partner' };
    }
    const partner = this.partners[round % this.partners.length]!;
    if (this.linkError) {
      this.exchanges.push({ round, waitMs, partner: null });
      return { partner: null, payload: null, partnerDist: null, bytesIn: 0, bytesOut: 0, solo: 'connect-failed',
        link: { linkLocal: null, linkRemote: null, connectMs: null, linkFailures: 1, linkError: this.linkError } };
    }
    this.exchanges.push({ round, waitMs, partner });
    const bytes = (mine.phi.byteLength + mine.delta.byteLength);
    this.bytesOut += bytes;
    this.bytesIn += bytes;
    // The partner's φ is ours + 0.5 everywhere: the validator would measure 0.5 √P.
    const phi = mine.phi.map((v) => v + 0.5);
    return {
      partner, payload: { phi, delta: mine.delta.slice() }, partnerDist: 0.5 * Math.sqrt(phi.length), bytesIn: bytes, bytesOut: bytes, solo: null,
      link: { linkLocal: 'host', linkRemote: 'host', connectMs: 12, linkFailures: 0, linkError: null },
    };
  }

  stats(): MeshStats {
    const last = this.exchanges[this.exchanges.length - 1];
    return { peers: this.peers, bytesIn: this.bytesIn, bytesOut: this.bytesOut, lastSolo: last && !last.partner ? 'no partner was ready' : null };
  }
}

export class FakeBackend implements VolunteerBackend {
  trainer: FakeTrainer | null = null;
  readonly mesh = new FakeMesh();
  readonly reports: VolunteerReport[] = [];
  joins = 0;
  closes = 0;
  /** Set to make join() fail (e.g. coordinator unreachable). */
  joinError: Error | null = null;
  /** The state the next session starts from (a peer's or a checkpoint's; fresh by default). */
  start: SessionStart = { source: 'fresh', from: null, step: 0, round: 0 };
  /** The pool wait the coordinator says now (null: the session offers none, the run's is used). */
  pairWaitFrac: number | null = null;

  constructor(public run: RunSummary = FAKE_RUN, public gpu: GpuProbe = FAKE_GPU, public msPerStep = 20) {}

  async describeRun(): Promise<RunSummary> { return this.run; }
  async probeGpu(): Promise<GpuProbe> { return this.gpu; }

  async join(_signal?: AbortSignal): Promise<VolunteerSession> {
    this.joins++;
    await sleep(10);
    if (this.joinError) throw this.joinError;
    const trainer = (this.trainer = new FakeTrainer(this.msPerStep));
    const start = { ...this.start };
    if (start.source !== 'fresh') await trainer.load({ phi: new Float32Array(trainer.floats).fill(9), momentum: new Float32Array(trainer.floats), innerStep: start.step });
    return {
      peerId: 'p-00000000000000a1',
      start,
      ...(this.pairWaitFrac !== null ? { pairWaitFrac: () => this.pairWaitFrac! } : {}),
      trainer,
      mesh: this.mesh,
      report: (r) => { this.reports.push(r); },
      close: async () => { this.closes++; await trainer.dispose(); },
    };
  }
}

export class FakeSensors implements SensorPort {
  state: Sensors = { hidden: false, battery: null, pressure: null };
  private fns = new Set<() => void>();
  constructor(private readonly supported = { battery: false, pressure: false }) {}
  read(): Sensors { return this.state; }
  support() { return this.supported; }
  subscribe(fn: () => void) { this.fns.add(fn); return () => { this.fns.delete(fn); }; }
  set(s: Partial<Sensors>): void {
    this.state = { ...this.state, ...s };
    for (const fn of this.fns) fn();
  }
}

/** In-memory Storage for ConsentStore. */
export class MemoryStorage {
  private m = new Map<string, string>();
  getItem(k: string): string | null { return this.m.get(k) ?? null; }
  setItem(k: string, v: string): void { this.m.set(k, v); }
  removeItem(k: string): void { this.m.delete(k); }
}

// ---------- dashboard ----------

export const FAKE_DASH_RUN: DashboardRun = {
  id: 'default', name: 'Moby Dick, tiny GPT', preset: 'tiny', dataset: 'moby-dick', status: 'running',
  tokensPerStep: 1024, warmupSteps: 100, totalSteps: 5000, H: 50, createdAt: 1_700_000_000_000, livePeers: 3, stepConsensus: 600, linkBytesPerS: 138_770, firstLinkBytesPerS: 555_077,
};

/** A coordinator as the dashboard sees it: history, a live feed the test pushes, checkpoints, run events. */
export class FakeDashboardSource implements DashboardSource {
  handlers: DashboardHandlers | null = null;
  historyRows: MetricReport[] = [];
  checkpointRows: CheckpointItem[] = [];
  /** Stored run events, oldest first (what GET /events would hold). */
  eventRows: RunEventItem[] = [];
  /** The `limit` of each events() call. */
  eventRequests: number[] = [];
  /**
   * The coordinator's peer list (GET /peers). Null: every peer of the history and the live feed,
   * off probation, each its own client (an honest run whose peers all earned their standing).
   */
  standingRows: PeerStandingItem[] | null = null;
  /** checkpoints(), run() and standings() calls, to see that live events refresh them. */
  calls = { checkpoints: 0, run: 0, standings: 0 };
  private readonly seen = new Set<string>();
  sampled: string[] = [];

  constructor(public runInfo: DashboardRun = FAKE_DASH_RUN) {}

  async run() { this.calls.run++; return this.runInfo; }
  async standings() {
    this.calls.standings++;
    if (this.standingRows) return this.standingRows;
    for (const r of this.historyRows) this.seen.add(r.peerId);
    return [...this.seen].map((id) => ({ id, probation: false, client: `client-${id}`, site: `site-${id}` }));
  }
  async history() { return this.historyRows; }
  async checkpoints() { this.calls.checkpoints++; return this.checkpointRows; }
  async events(limit: number) { this.eventRequests.push(limit); return this.eventRows.slice(-limit); }
  async sample(c: CheckpointItem): Promise<TextSample> {
    this.sampled.push(c.id);
    return { checkpointId: c.id, step: c.step, prompt: 'Call me', text: ` Ishmael. Some years ago (step ${c.step})` };
  }
  subscribe(h: DashboardHandlers) {
    this.handlers = h;
    return () => { this.handlers = null; };
  }
  push(r: MetricReport) { this.seen.add(r.peerId); this.handlers?.report(r); }
  /** Stores the event and sends it live, as the coordinator's EventLog.append does. */
  pushEvent(e: RunEventItem) { this.eventRows.push(e); this.handlers?.event(e); }
}

let nextEventId = 1;
/**
 * A run event with the next id; `data` as the coordinator writes it for that kind, or only the
 * fields a test needs: a fake source hands it on unchecked (the real one checks it by its schema).
 */
export function fakeEvent(kind: RunEventKind, t: number, peerId: string | null, data: unknown = null): RunEventItem {
  return { id: nextEventId++, t, kind, peerId, data } as RunEventItem;
}

/** The fake ids of fakeReport's peers. */
export const fakePeerId = (i: number) => `p-${i.toString(16).padStart(16, '0')}`;

/** A plausible report for peer `i` at step `step` and time `t`. */
export function fakeReport(i: number, step: number, t: number, over: Partial<MetricReport> = {}): MetricReport {
  const id = `p-${i.toString(16).padStart(16, '0')}`;
  const partner = `p-${((i + 1) % 3).toString(16).padStart(16, '0')}`;
  return {
    t, peerId: id, step, round: Math.floor(step / 50), trainLoss: 1.6 + 0.12 * i + 3.9 * Math.exp(-step / 300) + 0.08 * Math.sin(7 * i + step / 7),
    valLoss: step % 100 === 0 ? 1.7 + 0.12 * i + 3.9 * Math.exp(-step / 300) : null, tokensPerS: 2000 + 100 * i,
    bytesIn: 4000, bytesOut: 4000, partner, partnerDist: 0.5 + 0.1 * i, adapter: `fake GPU ${i}`, ...over,
  };
}

export function fakeCheckpoint(step: number, createdAt: number): CheckpointItem {
  const id = `c-${step}`;
  return {
    id, step, round: step / 50, valLoss: 2.5, measured: true, tokens: step * 1024, peerId: 'p-0000000000000000', bytes: 8_200_000, createdAt,
    fileUrl: `/api/runs/default/checkpoints/${id}/file`, exportUrl: `/api/runs/default/checkpoints/${id}/export/model.safetensors`,
    exportConfigUrl: `/api/runs/default/checkpoints/${id}/export/config.json`,
  };
}
