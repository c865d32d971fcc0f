// The boundary between the UI and everything it drives. Controllers consume these interfaces;
// only the page entry files (src/ui/pages/*) build real implementations (the comlink Trainer
// worker, the WebRTC mesh, the coordinator client), and tests pass fakes.
import type { AdapterSummary } from '../gpu/device.ts';
import type { GpuErrorCode } from '../gpu/errors.ts';
import type { ConsentLink, ConsentState, RunEventData } from '../protocol/api.ts';

export type { ConsentLink };
import type { RunEvent, RunEventKind } from '../protocol/events.ts';
import type { ReportFields } from '../protocol/messages.ts';
import type { StateLosses } from '../protocol/memorised.ts';
import type { RoundExchange } from '../round/outer-round.ts';
import type { ProbeLosses } from '../round/probe.ts';
import type { TrainerEvent } from '../worker/types.ts';

export type { ProbeLosses };
import type { PressureState, Sensors } from './core/policy.ts';

/** What the volunteer page says about the run before anything starts. */
export interface RunSummary {
  id: string;
  name: string;
  /** e.g. "Moby Dick (byte-level)" */
  dataset: string;
  preset: string;
  /** Trainable parameters of the model. */
  params: number;
  /** batch * seqLen: tokens consumed by one inner step. */
  tokensPerStep: number;
  /** Inner steps between outer steps (NoLoCo H). */
  H: number;
  /** Ready-pool wait as a fraction of the peer's own inner-loop time. */
  pairWaitFrac: number;
  /** Bytes this volunteer sends per outer step (φ and Δ after compression); as many come back. */
  bytesPerExchange: number;
  /**
   * The least link rate, bytes/s each way, at which an exchange ends inside the longest a
   * volunteer waits for its partner (exchangeWaitS); slower, every round is solo.
   */
  linkBytesPerS: number;
  /** That longest wait, seconds (DEFAULT_DEADLINE.maxMs). */
  exchangeWaitS: number;
  /**
   * The least rate, bytes/s each way, at which a volunteer's first exchange ends inside the
   * shorter wait it has before it measured its link (firstExchangeWaitS): 4x linkBytesPerS.
   * Slower, that first round is solo and the wait then grows to fit the link.
   */
  firstLinkBytesPerS: number;
  /** That first wait, seconds (DEFAULT_DEADLINE.initialMs). */
  firstExchangeWaitS: number;
  /** 'relay': links go only through the run's TURN server, so partners never see this volunteer's address. */
  icePolicy?: 'all' | 'relay';
  /** Who runs it and where results go, in the coordinator operator's words. */
  operator: string;
  /** Where checkpoints and metrics can be seen (the dashboard URL). */
  resultsUrl: string;
}

export type GpuProbe =
  | { ok: true; adapter: AdapterSummary; name: string }
  | { ok: false; code: GpuErrorCode; title: string; explanation: string; advice: string };

/** φ and Δ = θ − φ of one replica, as flat Float32Arrays of layout.total floats. */
export interface OuterPayload {
  phi: Float32Array; // (P,)
  delta: Float32Array; // (P,)
}

/** A replica's slow state as of one outer step. */
export interface OuterState {
  phi: Float32Array; // (P,)
  /** Outer momentum m. */
  momentum: Float32Array; // (P,)
  /** Inner steps taken by then: the LR schedule's position. */
  innerStep: number;
}

/** The training worker as the controller uses it (the entry adapts the comlink Trainer). */
export interface TrainerPort {
  /** Runs `steps` inner AdamW steps; the training loss of each (NaN if a step blew up). */
  train(steps: number): Promise<ArrayLike<number>>;
  /** Mean loss over the run's fixed validation batches. */
  evaluate(): Promise<number>;
  /**
   * Mean loss over this page's state check windows: as many as the coordinator measures its
   * checkpoints on, drawn from a seed of this page's own (src/data/sampler.ts
   * privateCheckBatches), of the validation text and of this page's training shard: how a
   * newcomer judges a candidate state (src/sync/state-check.ts).
   */
  checkLoss(): Promise<StateLosses>;
  outerPayload(): Promise<OuterPayload>;
  /** NoLoCo outer step with the partners' payloads; [] is a solo step. */
  applyOuter(partners: OuterPayload[]): Promise<void>;
  /**
   * The probe (src/round/probe.ts), between outerPayload and applyOuter: the solo and the paired
   * candidate's loss on the same fresh private windows. Absent: updates are applied unjudged.
   */
  probe?(partner: OuterPayload): Promise<ProbeLosses>;
  /**
   * φ, outer momentum and inner step of the last outer step (or load): what newcomers and
   * checkpoints get. The worker keeps it on the CPU, so this costs a copy, not a GPU read.
   */
  outerState(): Promise<OuterState>;
  /** Starts from a peer's or checkpoint's state: θ = φ, AdamW moments zero, LR schedule at innerStep. */
  load(s: OuterState): Promise<void>;
  /** Releases the GPU device; safe to call twice. */
  dispose(): Promise<void>;
  /**
   * The worker's GPU events: a lost device and its rebuild (the inner steps since the last outer
   * step trained again, so the page's counts stay right). Returns the unsubscribe.
   */
  onGpuEvent?(fn: (e: GpuEvent) => void): () => void;
}

/** A lost GPU device and the worker's rebuild of it (src/worker/trainer.ts). */
export type GpuEvent = Extract<TrainerEvent, { type: 'device-lost' | 'rebuilt' }>;

/** One exchange as the outer round (src/round/outer-round.ts) sees it; payload null = solo step. */
export type ExchangeResult = RoundExchange<OuterPayload>;

export interface MeshStats {
  /** Other live peers of the run, as the coordinator lists them. */
  peers: number;
  /** Cumulative bytes received / sent on data channels. */
  bytesIn: number;
  bytesOut: number;
  /** Why the last outer step was taken alone, in words ("no partner was ready"); null after a pair. */
  lastSolo?: string | null;
}

export interface MeshPort {
  /** Finds a partner for outer round `round` within `waitMs` and swaps validated payloads. */
  exchange(round: number, mine: OuterPayload, waitMs: number): Promise<ExchangeResult>;
  /** Reports a partner whose update the probe found harmful (strike, coordinator report, cut-off). */
  reportOffence?(peer: string, code: string, detail: string): void;
  stats(): MeshStats;
}

/**
 * One metric row for the coordinator (src/protocol/messages.ts ReportFields). Losses may be NaN
 * or ±Infinity here; the backend sends those as their names (lossToWire).
 */
export interface VolunteerReport extends Omit<ReportFields, 'trainLoss' | 'valLoss'> {
  trainLoss: number | null;
  valLoss: number | null;
}

/** Where a session's starting state came from (src/sync/join.ts). */
export type StartSource = 'peer' | 'checkpoint' | 'fresh';

export interface SessionStart {
  source: StartSource;
  /** The live peer that served the state (source 'peer'), else null. */
  from: string | null;
  /** Inner steps and outer rounds of the adopted state: the replica's counters go on from here. */
  step: number;
  round: number;
}

export interface VolunteerSession {
  peerId: string;
  /** The state this session started from; the controller's step and round counters continue it. */
  start: SessionStart;
  /** The run's current pool wait (a fraction of the inner-loop time); it may change while training. */
  pairWaitFrac?(): number;
  trainer: TrainerPort;
  mesh: MeshPort;
  /** Queue a metric row; the client buffers while the coordinator is unreachable. */
  report(r: VolunteerReport): void;
  /**
   * Calls `fn` once if the coordinator ends this session (the run stopped, another tab of this
   * browser took the session over, this volunteer was refused): training must stop then, its
   * reports could never be sent. Returns an unsubscribe function.
   */
  onEnd?(fn: (reason: string) => void): () => void;
  /** Leaves the mesh, closes the coordinator connection, disposes the trainer. */
  close(): Promise<void>;
}

export interface VolunteerBackend {
  /** Public facts about the run; sends nothing about the visitor. */
  describeRun(): Promise<RunSummary>;
  /** Looks for a usable GPU without acquiring it (requestAdapter only). */
  probeGpu(): Promise<GpuProbe>;
  /**
   * Only after consent + Start: coordinator hello, worker + GPU device, mesh, the run's current
   * state. Aborting `signal` (Stop) ends a join in progress: the download stops, nothing more is
   * started, what was started is released, and the join rejects with the signal's reason.
   */
  join(signal?: AbortSignal): Promise<VolunteerSession>;
}

export interface SensorPort {
  read(): Sensors;
  /** Which sensors this browser has, so the page can say what it cannot watch. */
  support(): { battery: boolean; pressure: boolean };
  /** Called on any change; returns an unsubscribe function. */
  subscribe(fn: () => void): () => void;
}

// Time: the one Clock of the project, passed through the ports so components need not know where it lives.
export { sleep, systemClock, type Clock } from '../protocol/clock.ts';

export type { PressureState, Sensors, StateLosses };

// ---------- dashboard ----------

/** One stored metric report (the coordinator's raw point / live `report` event). */
export interface MetricReport {
  /** Plot time (ms since epoch). */
  t: number;
  peerId: string;
  step: number;
  round: number;
  trainLoss: number | null;
  valLoss: number | null;
  tokensPerS: number;
  /** Bytes received / sent since the peer's previous report. */
  bytesIn: number;
  bytesOut: number;
  partner: string | null;
  /** L2 distance between the peer's φ and its partner's at that outer step. */
  partnerDist: number | null;
  adapter: string | null;
  /** Candidate types of the exchange's link (relay = through TURN); absent from older coordinators. */
  linkLocal?: string | null;
  linkRemote?: string | null;
  /** Links that failed to open since the peer's previous report, and why the last one did. */
  linkFailures?: number;
  linkError?: string | null;
}

export interface DashboardRun {
  id: string;
  name: string;
  preset: string;
  dataset: string;
  status: 'running' | 'stopped';
  tokensPerStep: number;
  warmupSteps: number;
  totalSteps: number;
  H: number;
  createdAt: number;
  livePeers: number;
  /**
   * The run's step: the one its peers agree on, as the coordinator counts it (RunReply's
   * `stepConsensus`); null with nothing agreed yet. A peer's reported step is its own claim.
   */
  stepConsensus: number | null;
  /** The least link rate, bytes/s each way, at which the run's exchange ends in time (src/protocol/exchange-link.ts exchangeLink). */
  linkBytesPerS: number;
  /** The least link rate at which a volunteer's first exchange ends in time, before it measured its link (exchangeLink's firstBytesPerS). */
  firstLinkBytesPerS: number;
}

export interface CheckpointItem {
  id: string;
  step: number;
  round: number;
  valLoss: number | null;
  /**
   * Whether valLoss is the coordinator's own measurement. False: the uploading peer's claim that
   * an older coordinator stored, not yet measured (or worse than guessing when measured).
   */
  measured: boolean;
  tokens: number;
  peerId: string | null;
  bytes: number;
  createdAt: number;
  /** The checkpoint itself: φ and outer momentum, safetensors. */
  fileUrl: string;
  /** Hugging Face GPT-2 export: model.safetensors and config.json. */
  exportUrl: string;
  exportConfigUrl: string;
}

export interface TextSample {
  checkpointId: string;
  step: number;
  prompt: string;
  text: string;
}

export type { RunEventKind };

/**
 * One stored run event as the dashboard gets it (the protocol's RunEvent, minus runId), its data
 * what its kind's schema says (RUN_EVENT_DATA): the source checks each one before handing it on.
 */
export type RunEventItem = { [K in RunEventKind]: Omit<RunEvent, 'runId' | 'kind' | 'data'> & { kind: K; data: RunEventData[K] } }[RunEventKind];

export interface DashboardHandlers {
  report(r: MetricReport): void;
  /** A run event: peers joining/leaving/reported, checkpoints saved/deleted/failed, run changes. */
  event(e: RunEventItem): void;
  connection(state: 'live' | 'reconnecting'): void;
}

/**
 * A live peer as the coordinator lists it (GET /peers, PeerStanding): on probation or not, and
 * an opaque tag of its client address that every id of that address shares (never the address).
 */
export interface PeerStandingItem {
  id: string;
  probation: boolean;
  client: string;
  /** Ids of one site (an IPv6 /48; an IPv4 address) share it. */
  site: string;
}

export interface DashboardSource {
  run(): Promise<DashboardRun>;
  /** The run's live peers and their standing: whose claims the dashboard counts (src/ui/core/throughput.ts). */
  standings(): Promise<PeerStandingItem[]>;
  /** Stored reports, oldest first. */
  history(): Promise<MetricReport[]>;
  /** The newest stored run events (at most `limit`), oldest first. */
  events(limit: number): Promise<RunEventItem[]>;
  checkpoints(): Promise<CheckpointItem[]>;
  /** Text generated from a checkpoint (may take seconds: the model runs on demand). */
  sample(c: CheckpointItem): Promise<TextSample>;
  subscribe(h: DashboardHandlers): () => void;
}

/**
 * The coordinator's side of the widget's consent window (src/ui/browser/consent-client.ts): the
 * frame registers a nonce for one click on its Start or Resume, opens the window for it, claims
 * the visitor's answer, and once allowed holds the session it trains under by claiming on.
 */
export interface ConsentPort {
  /**
   * Registers `nonce` for this frame's run on `site` (the page the frame is on), with the frame's
   * intensity ceiling (the site's cap, which it never lets the page raise); rejects with the coordinator's reason.
   */
  register(nonce: string, site: string, maxIntensity: number): Promise<void>;
  /**
   * The answer so far, and while 'allowed' the session held on: 'denied', 'stopped' and 'closed'
   * (the window's Stop, or its closing, ended the session) are answered once; 'gone' when the coordinator no longer knows the nonce
   * (expired, already answered, or the window was not seen for its time). Rejects when the
   * coordinator cannot be reached or answers otherwise.
   */
  claim(nonce: string): Promise<ConsentState | 'gone'>;
  /** Ends the session (or gives up the request), sent so that it outlives the page; never rejects. */
  release(nonce: string): void;
}

/** A consent request as the consent window shows it: the run, the site that asks, the state, when it expires (ms since the epoch). */
export interface ConsentAsked {
  run: string; runName: string; site: string; state: ConsentState; expiresAt: number;
  /** What the run's exchange asks of the visitor's link (ConsentLink); absent when the coordinator no longer has the run. */
  link?: ConsentLink;
  /** The most of the GPU's time the widget may use (its frame's ceiling). */
  maxIntensity?: number;
}

/** What the coordinator says of a nonce whose registration it refused: why (a site not listed, a limit reached). */
export interface ConsentRefusal { refused: string }

/** The consent window's side (src/ui/elements/consent-window.ts): reads a request and answers it; each rejects with the coordinator's reason. */
export interface ConsentWindowPort {
  /** The request, or why its registration was refused. */
  load(nonce: string): Promise<ConsentAsked | ConsentRefusal>;
  decide(nonce: string, allow: boolean): Promise<ConsentAsked>;
  /**
   * While the window asks or the donation runs: takes back its leaving (leaveOnClose) and, while
   * the donation runs, renews the window's side of the session; 'released' once the frame ended
   * it, 'withdrawn' once it took back the question still asked, 'gone' once the coordinator no longer knows it (the frame was not seen for its time).
   */
  watch(nonce: string): Promise<ConsentAsked | 'gone'>;
  /** The window's Stop: ends the session, and the frame stops at its next claim. */
  stop(nonce: string): Promise<ConsentAsked>;
  /**
   * Sent as the window's page goes while it asks or donates (a request that outlives the page;
   * never rejects): a close or a reload, which the page cannot tell apart. A short grace on
   * (leaveMs, server/consent.ts) the session ends as 'closed', or the unanswered request as Don't
   * allow, unless the window watches again, as a reloaded one does at once.
   */
  leaveOnClose(nonce: string): void;
}
