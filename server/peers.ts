// The volunteers' WebSocket side: join (peer id + signed session), heartbeats, signal relay,
// the ready pool, metric reports and state requests. Every frame is validated
// (src/protocol/messages.ts) and every connection lives under a size limit (the WebSocket
// server's maxPayload), a token-bucket rate limit, a count of invalid frames it may send before
// it is closed, and a bound on what may queue unsent towards it.
//
// Identity: the server stamps `from` on every relayed signal with the connection's own peer id,
// and a peer id is bound to a connection only through a session token the server signed. So a
// peer can never speak as another.
//
// Offender reports: a peer whose partner sent a payload that failed validation says so
// (`offender`). The report is accepted only about one of the reporter's recent partners as the
// pool recorded them (anyone else is refused and nothing is stored), so fresh ids cannot accuse
// a peer they never met. Each
// report is a strike (but the soft ones, isSoftOffence, are evidence only: a probe CUSUM report,
// `probe-harm`, as honest partners' noisy losses add up to one now and then; a `stall`, as an
// honest slow link also misses deadlines), stored as a `peer-offender` run event; at VETO_AFTER strikes of one
// (reporter, accused) pair the ready pool never pairs the two again in this run (also after a
// coordinator restart: strikes are counted again from the events table). A report of any kind
// soon after another of the same partner rests the pair for a number of the reporter's rounds
// (rest()); a stall report rests it at once, and stall reports of two clients bench the accused
// from every pairing for a while (noteStaller). One strike is not a
// veto, as in the mesh (banAfter): a single damaged chunk or an outlier φ from a peer that just
// joined should not split a run. Reports past the veto write nothing, so a hostile reporter
// cannot grow the database faster than the run's peer count.
//
// Identities cost something (issue 15). A veto follows the accused across reconnects (its session
// keeps its id) and across new ids from the same client (clientKey: an IPv4 address or an IPv6
// /48), unless reporter and accused share that client (a household or a lab: the
// coordinator cannot tell them apart). Hellos per address are rate limited (RateBudget), so new
// ids come slowly. A new id is on probation until PROBATION_EXCHANGES accepted exchanges: the
// pool paired the two, they come from different addresses (addressKey: one host's two ids
// vouch for nobody, unless nobody else is live in the run to), both reported the round as paired with each other, and neither reported
// the other. On probation its partners are told (`probation` in `paired`), peer lists mark it,
// and it gets no checkpoint duty (eligibleForDuty).
import { createHmac, randomBytes } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import type { WebSocket, RawData } from 'ws';
import type { Db } from './db.ts';
import type { Clock } from '../src/protocol/clock.ts';
import { schemaProblem } from '../src/protocol/check.ts';
import { forgetOldest } from '../src/protocol/bounded.ts';
import { OffenderEventData } from '../src/protocol/events.ts';
import type { SessionSigner } from './auth.ts';
import type { RunStore } from './runs.ts';
import type { MetricsStore, ReportRow } from './metrics.ts';
import { reportError, stepRate } from './report-bounds.ts';
import { consensusStep, maxStepNow } from '../src/protocol/state-frame.ts';
import { Allowance, OpenCounter, RateBudget, addressKey, clientKey, siteKey } from './address-budget.ts';
import type { EventLog } from './events.ts';
import type { LiveHub } from './live.ts';
import type { DatasetSource } from './datasets.ts';
import { fileRefs } from './datasets.ts';
import type { CheckpointInfo, CheckpointStore } from './checkpoints.ts';
import { ReadyPool } from './pairing.ts';
import { PAIR_WAIT_BOUNDS_MS } from '../src/protocol/ready-pool.ts';
import { iceFor, renewDelayMs, type IceSettings } from './ice.ts';
import {
  DEFAULT_LIMITS, PROTOCOL_VERSION, isLagReport, isSoftOffence, isStallReport, isStateOffence, parseClientMessage, reportRefusal,
  type ClientMessage, type DataAssignment, type ErrorCode, type HelloMsg, type OffenderMsg, type ReportMsg, type RunInfo, type ServerMessage,
} from '../src/protocol/messages.ts';
import { DEFAULT_RUN_ID } from './runs.ts';

export interface PeerHubOptions {
  /** Interval peers send heartbeats at (announced in welcome). */
  heartbeatMs: number;
  /** A peer silent for this long is dropped. */
  livenessMs: number;
  /** A connection that has not said hello by then is closed. */
  helloTimeoutMs: number;
  limits: typeof DEFAULT_LIMITS;
  /** Open connections at most (joined or not). */
  maxConnections: number;
  /** Open WebSockets one client address (IPv6: one /64) may hold: a household or a lab shares one. */
  maxConnectionsPerAddress: number;
  /** Hellos (joins) per minute one address may send, and its burst. */
  hellosPerMinute: number;
  helloBurst: number;
  /**
   * The same for all the /64s of one IPv6 /48 together (siteKey): a /48 is 65,536 /64s, each with
   * budgets of its own. Checked after the /64's own, so one /64 over its budget spends none of its site's.
   */
  maxConnectionsPerSite: number;
  siteHellosPerMinute: number;
  siteHelloBurst: number;
  /**
   * Offender reports per minute one address may have stored (strikes, CUSUM reports), and its
   * burst: an honest peer reports at most once a round; ids of one address paired with each
   * other reported each other 600 times a second. Past it a report still keeps the exchange
   * from counting as accepted, and is otherwise dropped with a non-fatal `rate-limited`.
   */
  offenderReportsPerMinute: number;
  offenderReportBurst: number;
  /** Invalid frames a connection may send before it is closed. */
  maxStrikes: number;
  /** Unsent bytes towards one peer before it is treated as dead. */
  maxSendBufferBytes: number;
  /**
   * Unsent bytes towards a peer above which signals relayed to it are dropped and their sender
   * told (`rate-limited`, ref `signal`): what others send a slow reader never closes it.
   */
  relayBufferBytes: number;
  /** Largest relayed signal frame (a simple-peer offer is a few KB); a larger one is refused to its sender. */
  maxSignalBytes: number;
  /**
   * Ids of one client address, and of one IPv6 /48 together, that may signal one peer unasked
   * (not answering it, not its pool partner) within `diallerWindowMs` of their last such signal:
   * a peer holds at most 8 such offers (src/sync/mesh.ts) and 64 signals before its mesh
   * (src/volunteer/signaling.ts), and ids of one client filled both. Past it the signal is dropped
   * and its sender told (`rate-limited`, ref `signal`).
   */
  diallersPerAddress: number;
  diallersPerSite: number;
  diallerWindowMs: number;
  /**
   * Bytes a second of unasked signals the ids of one address, and of one /48, may send one peer,
   * gathering up to `diallerBurstBytes`: a dialler's offer and candidates are about 10 KB, and
   * 4 ids sending 16 KiB signals at their frame rate filled a victim's relayBufferBytes, so the
   * relay dropped every other peer's signals to it.
   */
  diallerBytesPerS: number;
  diallerBurstBytes: number;
  /** Bounds of a peer's pairing wait (docs/design.md section 3: never zero). */
  minPairWaitMs: number;
  maxPairWaitMs: number;
  /** The pool predicts partners from their cadence (docs/pairing.md); off: the plain wait. */
  pairPrediction: boolean;
  /** Joins and leaves within this window go out as one peer-list change. */
  peersEveryMs: number;
  /**
   * A peer gone this long loses its row and its events (its metric reports stay: they are the
   * run's curves). Silent joins then cost the database nothing lasting.
   */
  departedRetentionMs: number;
  /** Rule 4 of the pool, fairness (docs/pairing.md); off only to measure what it does. */
  pairFairness: boolean;
}

/**
 * How stale the agreed step anonymous run reads show may be (PeerHub.agreedStep): 1 s, the
 * dashboard's figure is a phase and a schedule position, not a bound anyone is held to.
 */
export const AGREED_STEP_MS = 1_000;

export const DEFAULT_HUB_OPTIONS: PeerHubOptions = {
  heartbeatMs: 5_000,
  livenessMs: 20_000,
  helloTimeoutMs: 10_000,
  limits: DEFAULT_LIMITS,
  maxConnections: 10_000,
  maxConnectionsPerAddress: 64,
  hellosPerMinute: 60,
  helloBurst: 120,
  maxConnectionsPerSite: 256,
  siteHellosPerMinute: 240,
  siteHelloBurst: 480,
  offenderReportsPerMinute: 30,
  offenderReportBurst: 20,
  maxStrikes: 20,
  maxSendBufferBytes: 4 << 20,
  relayBufferBytes: 256 << 10,
  maxSignalBytes: 16 << 10,
  diallersPerAddress: 4,
  diallersPerSite: 4,
  diallerWindowMs: 60_000,
  diallerBytesPerS: 16 << 10,
  diallerBurstBytes: 128 << 10,
  minPairWaitMs: PAIR_WAIT_BOUNDS_MS.min,
  maxPairWaitMs: PAIR_WAIT_BOUNDS_MS.max,
  pairPrediction: true,
  peersEveryMs: 100,
  departedRetentionMs: 7 * 24 * 3600_000,
  pairFairness: true,
};

/** Departed peers forgotten per prune pass (one transaction); the next pass takes the rest. */
export const PRUNE_BATCH = 500;

export interface PeerHubDeps {
  db: Db;
  clock: Clock;
  rng: () => number;
  logger: FastifyBaseLogger;
  signer: SessionSigner;
  runs: RunStore;
  metrics: MetricsStore;
  events: EventLog;
  live: LiveHub;
  datasets: DatasetSource;
  checkpoints: CheckpointStore;
  /** STUN/TURN servers handed to every peer (none: links only where host addresses reach). */
  ice?: IceSettings;
}

/** WebSocket close codes we use (4000-4999 are for applications). */
export const CLOSE = {
  protocol: 1008,
  shutdown: 1001,
  overloaded: 1013,
  replaced: 4000,
  heartbeat: 4001,
  runStopped: 4002,
  fatal: 4003,
} as const;

interface Conn {
  n: number;
  /** Frees this connection's slot in its address's budget (once). */
  release: () => void;
  /** The client's addressKey (IPv6: its /64). */
  address: string;
  /** Its keyed tag, as the peer list gives it (standings), made at the first list that names it. */
  clientTag?: string;
  /** The keyed tag of its site (an IPv6 /48; an IPv4 address is its own), likewise. */
  siteTag?: string;
  ws: WebSocket;
  peerId: string | null;
  runId: string | null;
  lastSeen: number;
  bucket: number;
  refilledAt: number;
  lastRateError: number;
  overRate: number;
  strikes: number;
  helloTimer: unknown;
  /** Highest inner step this peer reported: the checkpoint scheduler asks the furthest peer. */
  lastStep: number;
  closed: boolean;
  /** Sends fresh TURN credentials before the current ones expire. */
  iceTimer?: unknown;
  /** When the hello was accepted, and the furthest step the peer could have started from (report-bounds.ts). */
  joinedAt: number;
  stepBase: number;
  lastReportAt: number;
  /** Order of this join among all joins, and the newest join the peer lists sent to it covered. */
  joinSeq: number;
  listedSeq: number;
  /** Peers that signalled this one lately -> signals it may still answer them with, free of its rate. */
  replies: Map<string, number>;
  /** Peers that signalled this one unasked lately (diallerRefusal), oldest first. */
  diallers: Map<string, { address: string; site: string | null; at: number }>;
  /** Links (peer and `cid`) the relay carried signals of lately, oldest first (creditLink). */
  linkCids: Set<string>;
  /** Links seen through the relay not yet reported as failed: what this peer's reports may claim (onReport). */
  linkCredit: number;
}

/**
 * Signal relay accounting. A signal answering one that reached a peer (simple-peer's answer and
 * its ICE candidates) is free for the answering side up to REPLY_CREDITS per signal received: so
 * a stranger flooding a peer with offers spends its own rate, never its victim's. Credits pile up
 * while a burst of offers waits for its answers; the pile is capped. Only a signal its sender
 * paid for earns the other side credits: when answers earned them too, two peers in league
 * answering each other's answers kept each other in credit for good (one paid burst, then 20,000
 * signals a second each way with no rate spent). So such a pair pushes at most a few times one
 * side's rate through the relay.
 */
const REPLY_CREDITS = 4;
const MAX_REPLY_CREDITS = 1024;
/** Peers one connection keeps answer credits for (the oldest are forgotten first). */
const MAX_REPLY_PEERS = 64;
/** Unasked diallers one connection keeps (the oldest are forgotten first): as many as its replay holds signals. */
const MAX_DIALLERS = 64;

/** Links a connection remembers having seen through the relay (creditLink): a few times the mesh's links. */
const LINK_CIDS_KEPT = 32;
/** Link failures a connection may have in hand to report at once (creditLink). */
const LINK_CREDIT_MAX = 256;

/** Partners the pool gave a peer that its reports may name (a report covers the last few rounds). */
const PARTNERS_KEPT = 4;
/**
 * The votes on a run's step (consensusStep): one per address, its lowest reported step, from
 * peers off probation that have reported (`step` -1: none yet). When none of them has, and the
 * run has no checkpoint to stand for its step (`anchored` false), every address votes (an IPv6
 * site, its /48, once: siteKey): early in
 * a run nobody is off probation yet, and with no vote and no checkpoint a newcomer's only bound
 * was the furthest claim of any live peer (stepBase), so one new id reporting 10,000 steps set
 * the step of every newcomer that adopted its state. A checkpoint, where there is one, stays the
 * step until trusted peers vote: new ids from many addresses could otherwise raise it.
 */
export function stepVotes(peers: Iterable<{ address: string; step: number; trusted: boolean }>, anchored = true): number[] {
  const trusted = new Map<string, number>(), all = new Map<string, number>();
  const vote = (m: Map<string, number>, key: string, step: number) => m.set(key, Math.min(m.get(key) ?? Infinity, step));
  for (const p of peers) {
    if (!(p.step >= 0)) continue;
    if (p.trusted) vote(trusted, p.address, p.step);
    // Where every address votes, an IPv6 site (/48) votes once: its 65,536 /64s are free to whoever
    // holds it, and three of them outvoted two honest peers and set every newcomer's step.
    vote(all, siteKey(p.address) ?? p.address, p.step);
  }
  return [...(trusted.size > 0 || anchored ? trusted : all).values()];
}

/** Accepted exchanges a new id needs to leave probation. */
export const PROBATION_EXCHANGES = 3;
/** Peer ids whose accepted-exchange count is kept (the oldest go first; ids are free to make). */
const ACCEPTED_KEPT = 100_000;

/** One pairing the pool made, until both sides reported it (or a report about it came). */
interface Exchange {
  a: string;
  b: string;
  /** Which sides reported the round as paired with the other. */
  aOk: boolean;
  bOk: boolean;
  /** One side reported the other as an offender. */
  offended: boolean;
  counted: boolean;
  /** The two came from one address while the run had a peer from another: it never counts towards trust. */
  oneAddress: boolean;
  /**
   * Each side's client address when the pool paired them: a report may come after the accused
   * hung up (its data channel needs no coordinator), and its strike must still reach the address.
   */
  addresses: Map<string, string>;
}

export interface StateFailHandler {
  (peerId: string, requestId: string, reason: string): void;
}

export class PeerHub {
  private readonly conns = new Set<Conn>();
  private readonly perAddress: OpenCounter;
  private readonly hellos: RateBudget;
  /** Bytes of unasked signals per (recipient connection, sender's address or /48): diallerRefusal. */
  private readonly dialBytes: Allowance;
  private readonly perSite: OpenCounter;
  private readonly siteHellos: RateBudget;
  private readonly offenderReports: RateBudget;
  private readonly byPeer = new Map<string, Conn>();
  private readonly byRun = new Map<string, Set<string>>();
  /** agreedStep's last answer per run, and when (this hub's clock) it was worked out. */
  private readonly agreed = new Map<string, { at: number; step: number | null }>();
  private readonly pools = new Map<string, ReadyPool>();
  /** Per run: reporter → the peers it reported; a pair is vetoed if either side reported the other. */
  /** run -> reporter -> accused -> offender reports (strikes) so far. */
  private readonly strikes = new Map<string, Map<string, Map<string, number>>>();
  /** Per run: CUSUM reports stored per (reporter, accused), bounded by SOFT_REPORTS_KEPT. */
  private readonly softReports = new Map<string, Map<string, Map<string, number>>>();
  /** Per run: peer-list changes not yet sent, and the timer that sends them. */
  private readonly peersPending = new Map<string, { timer: unknown; joined: Set<string>; left: Set<string>; probation: Set<string>; trusted: Set<string> }>();
  private joins = 0;
  /** Live peer -> the partners the pool gave it lately, newest last (a report may name only these). */
  private readonly partners = new Map<string, string[]>();
  /** Live peer -> its recent pairings (as partners), newest last, until both sides reported them. */
  private readonly exchanges = new Map<string, Exchange[]>();
  /** Peer -> accepted exchanges so far (kept across reconnects of the same id). */
  private readonly accepted = new Map<string, number>();
  /** run -> reporter -> accused -> the pair's rest, from the reporter's last report of the accused until REST_WINDOW readies after it (or after the rest it started). */
  private readonly rests = new Map<string, Map<string, Map<string, Rest>>>();
  /** run -> accused -> the clients that reported it stalling lately, and its benches (noteStaller). */
  private readonly stallers = new Map<string, Map<string, Staller>>();
  /** run -> reporter -> accused client (clientKey: an address, an IPv6 /48) -> strikes: a veto that follows new ids from that client. */
  private readonly addressStrikes = new Map<string, Map<string, Map<string, number>>>();
  private sweepTimer: unknown = null;
  private lastPrune = -Infinity;
  /** The next batch of a prune that is behind (pruneBehind), or null. */
  private pruneNext: ReturnType<typeof setImmediate> | null = null;
  private nextConn = 1;
  /** Set by the checkpoint scheduler. */
  onStateFail: StateFailHandler | null = null;
  /** Set by the checkpoint scheduler: a peer that leaves cannot answer a state request. */
  onPeerLeft: ((peerId: string) => void) | null = null;
  readonly stats = { frames: 0, rejected: 0, closedForAbuse: 0, relayed: 0, relayDropped: 0, forgotten: 0, offenderReportsDropped: 0 };

  constructor(private readonly d: PeerHubDeps, readonly o: PeerHubOptions = DEFAULT_HUB_OPTIONS) {
    this.perAddress = new OpenCounter(o.maxConnectionsPerAddress);
    this.hellos = new RateBudget(o.hellosPerMinute, o.helloBurst, () => d.clock.now());
    this.dialBytes = new Allowance(o.diallerBytesPerS, o.diallerBurstBytes, () => d.clock.now());
    this.perSite = new OpenCounter(o.maxConnectionsPerSite);
    this.siteHellos = new RateBudget(o.siteHellosPerMinute, o.siteHelloBurst, () => d.clock.now());
    this.offenderReports = new RateBudget(o.offenderReportsPerMinute, o.offenderReportBurst, () => d.clock.now());
    // Its oldest reports went (EventLog's cap): the strikes are counted again from what is left.
    d.events.onOffendersTrimmed = (runId) => { this.strikes.delete(runId); this.softReports.delete(runId); };
    this.scheduleSweep();
  }

  // ---------- queries ----------

  livePeers(runId: string): string[] {
    return [...(this.byRun.get(runId) ?? [])];
  }

  isLive(peerId: string): boolean {
    return this.byPeer.has(peerId);
  }

  /** A live peer's client address (addressKey), what duty and votes are counted by; null once it left. */
  addressOf(peerId: string): string | null {
    return this.byPeer.get(peerId)?.address ?? null;
  }

  lastStep(peerId: string): number {
    return this.byPeer.get(peerId)?.lastStep ?? -1;
  }

  /** Keys the client tags of standings(): new at each start, never sent anywhere. */
  private readonly clientTagKey = randomBytes(32);

  /**
   * `runId`'s live peers as anyone may read them (GET /peers): each one's furthest reported step,
   * whether it is on probation, and `client`, a tag of its client address (addressKey) keyed by a
   * secret of this process: ids of one address share it, and it names no address (a keyed hash of
   * 32 bits of IPv4 cannot be reversed without the key). What the dashboard counts a peer's
   * claims by (src/ui/core/throughput.ts): only ids off probation vouch for their throughput,
   * and ids of one client count once.
   */
  standings(runId: string): { id: string; step: number; probation: boolean; client: string; site: string }[] {
    const tag = (key: string) => createHmac('sha256', this.clientTagKey).update(key).digest('hex').slice(0, 12);
    return this.livePeers(runId).flatMap((id) => {
      const c = this.byPeer.get(id);
      if (!c) return [];
      c.clientTag ??= tag(c.address);
      // The /64s of one /48 cost one tunnel broker's form: while nobody is off probation, the
      // dashboard's estimate counts a site once, as stepVotes does (siteKey).
      c.siteTag ??= tag(siteKey(c.address) ?? c.address);
      return [{ id, step: c.lastStep, probation: this.onProbation(id), client: c.clientTag, site: c.siteTag }];
    });
  }

  /**
   * The step `runId`'s live peers (but `except`) agree on (consensusStep): one vote per address,
   * its peers' lowest reported step, from peers off probation only (every address when none of
   * them has reported and there is no checkpoint: stepVotes), so neither a new id nor many
   * connections from one host outvote the others; never below the newest offered checkpoint's
   * step; null with neither. A newcomer adopting a state more than a round from it takes it
   * (the welcome's `stepConsensus`), and an uploaded checkpoint is stored held the same way (holdCounters). `latest`:
   * the run's newest offered checkpoint when the caller has read it already (the welcome has).
   */
  stepConsensus(runId: string, except?: string, latest?: CheckpointInfo | null): number | null {
    const peers = [...this.byRun.get(runId) ?? []].filter((p) => p !== except).flatMap((p) => {
      const c = this.byPeer.get(p);
      return c ? [{ address: c.address, step: c.lastStep, trusted: !this.onProbation(p) }] : [];
    });
    if (latest === undefined) {
      const run = this.d.runs.get(runId);
      latest = run ? this.d.checkpoints.current(run) : null;
    }
    return consensusStep(stepVotes(peers, latest !== null), latest ? latest.step : null);
  }

  /**
   * stepConsensus(runId) as anonymous reads show it (GET /api/runs, /api/runs/:run): worked out
   * at most once per AGREED_STEP_MS of this hub's clock per run, so a loop of requests costs one
   * pass over the run's live peers (up to 10,000: 6 ms) and one checkpoint read a second, not one
   * each. A join, a report, a checkpoint or a departure shows within AGREED_STEP_MS. The welcome
   * and a checkpoint upload, which hold a peer to the step, still ask stepConsensus itself.
   */
  agreedStep(runId: string): number | null {
    const now = this.d.clock.now();
    const held = this.agreed.get(runId);
    if (held && now >= held.at && now - held.at < AGREED_STEP_MS) return held.step;
    const step = this.stepConsensus(runId);
    // One entry per run asked about; the routes ask only about runs that exist (admin-made).
    this.agreed.set(runId, { at: now, step });
    return step;
  }

  /** How many peers of `runId` are live, without copying their ids. */
  liveCount(runId: string): number {
    return this.byRun.get(runId)?.size ?? 0;
  }

  /**
   * The furthest step a live peer could have trained to by now (report-bounds.ts: from what it
   * could have started from when it joined, at the fastest rate any device has on its run); -1 when it is
   * not live. An upload claiming more is refused.
   */
  maxStep(peerId: string): number {
    const c = this.byPeer.get(peerId);
    const run = c?.runId ? this.d.runs.get(c.runId) : undefined;
    return c && run ? maxStepNow({ now: this.d.clock.now(), joinedAt: c.joinedAt, stepBase: c.stepBase, rate: stepRate(run) }) : -1;
  }

  connectionCount(): number {
    return this.conns.size;
  }

  /**
   * Whether `a` and `b` may be paired in run `runId`: neither reported the other VETO_AFTER times,
   * nor an earlier id from the other's address (when their addresses differ), and the pair does
   * not rest. A rest holds only while the run has someone else live: with nobody else, resting
   * the pair would only make both train alone (and drift apart, so their next exchanges look
   * worse on the probe and are reported again: a swarm of two fell from 0.91 to 0.61 paired),
   * while the probe still refuses any update that does harm.
   */
  canPair(runId: string, a: string, b: string): boolean {
    const rests = this.rests.get(runId);
    const others = (this.byRun.get(runId)?.size ?? 0) > 2;
    if (rests && (rests.get(a)?.get(b)?.resting || rests.get(b)?.get(a)?.resting) && others) return false;
    if (others && (this.benched(runId, a) || this.benched(runId, b))) return false;
    const v = this.runStrikes(runId);
    if (strikeCount(v, a, b) >= VETO_AFTER || strikeCount(v, b, a) >= VETO_AFTER) return false;
    const byAddr = this.addressStrikes.get(runId);
    if (!byAddr) return true;
    const [aa, ab] = [this.byPeer.get(a)?.address, this.byPeer.get(b)?.address].map((x) => (x === undefined ? undefined : clientKey(x)));
    if (aa === undefined || ab === undefined || aa === ab) return true;
    return strikeCount(byAddr, a, ab) < VETO_AFTER && strikeCount(byAddr, b, aa) < VETO_AFTER;
  }

  /** The peer-list field naming those of `peers` on probation; absent when none is. */
  private probationField(peers: string[]): { probation?: string[] } {
    const on = peers.filter((p) => this.onProbation(p));
    return on.length > 0 ? { probation: on } : {};
  }

  /** Accepted exchanges of `peerId` so far (see the header). */
  acceptedExchanges(peerId: string): number {
    return this.accepted.get(peerId) ?? 0;
  }

  /** A new id until it has PROBATION_EXCHANGES accepted exchanges. */
  onProbation(peerId: string): boolean {
    return this.acceptedExchanges(peerId) < PROBATION_EXCHANGES;
  }

  /** May serve checkpoint duty: live, off probation, with at least one accepted exchange. */
  eligibleForDuty(peerId: string): boolean {
    return this.isLive(peerId) && !this.onProbation(peerId) && this.acceptedExchanges(peerId) >= 1;
  }

  pool(runId: string): ReadyPool {
    let p = this.pools.get(runId);
    if (!p) {
      p = new ReadyPool({
        clock: this.d.clock, rng: this.d.rng, minWaitMs: this.o.minPairWaitMs, maxWaitMs: this.o.maxPairWaitMs,
        liveCount: () => this.byRun.get(runId)?.size ?? 0, predict: this.o.pairPrediction, trackProgress: true, fair: this.o.pairFairness,
        // The typical cadence is one vote per address from peers off probation, as stepVotes is.
        groupOf: (peer) => this.byPeer.get(peer)?.address ?? peer, trusted: (peer) => !this.onProbation(peer),
        send: (peer, msg) => {
          if (msg.partner) {
            this.notePartner(peer, msg.partner);
            if (!msg.initiator) this.noteExchange(peer, msg.partner);
            if (this.onProbation(msg.partner)) msg = { ...msg, probation: true };
          }
          this.sendTo(peer, msg);
        },
        canPair: (a, b) => this.canPair(runId, a, b),
      });
      this.pools.set(runId, p);
    }
    return p;
  }

  private notePartner(peer: string, partner: string): void {
    const list = this.partners.get(peer) ?? [];
    list.push(partner);
    if (list.length > PARTNERS_KEPT) list.shift();
    this.partners.set(peer, list);
  }

  /** The pool paired `a` and `b` (called once per pair): an exchange waiting for both reports. */
  private noteExchange(a: string, b: string): void {
    // Both live now: the pool pairs only live peers. Two ids of one address vouch for each other
    // only where nobody from elsewhere is there to: a lab behind one NAT, or a local run, alone on
    // its run. With a peer of another address live, trust has to come from outside the host.
    const ca = this.byPeer.get(a), cb = this.byPeer.get(b);
    const elsewhere = (run: string | null | undefined, address: string | undefined) =>
      [...(this.byRun.get(run ?? '') ?? [])].some((p) => this.byPeer.get(p)?.address !== address);
    const oneAddress = ca?.address === cb?.address && elsewhere(ca?.runId, ca?.address);
    const addresses = new Map<string, string>();
    if (ca) addresses.set(a, ca.address);
    if (cb) addresses.set(b, cb.address);
    const x: Exchange = { a, b, aOk: false, bOk: false, offended: false, counted: false, oneAddress, addresses };
    for (const p of [a, b]) {
      const list = this.exchanges.get(p) ?? [];
      list.push(x);
      if (list.length > PARTNERS_KEPT) list.shift();
      this.exchanges.set(p, list);
    }
  }

  /** The newest recorded exchange between `peer` and `partner`, if still kept. */
  private exchangeOf(peer: string, partner: string): Exchange | undefined {
    const list = this.exchanges.get(peer) ?? [];
    for (let i = list.length - 1; i >= 0; i--) {
      const x = list[i]!;
      if ((x.a === peer && x.b === partner) || (x.b === peer && x.a === partner)) return x;
    }
    return undefined;
  }

  /**
   * `peer` reported a round as paired with `partner`: the exchange counts once both did, unless
   * the two share an address while someone from elsewhere is live (noteExchange). Two ids of one
   * host send `ready` together, the pool pairs them, and both report the round: without that
   * condition three such rounds trusted both beside honest peers.
   */
  private confirmExchange(runId: string, peer: string, partner: string): void {
    const x = this.exchangeOf(peer, partner);
    if (!x || x.counted || x.offended || x.oneAddress) return;
    if (x.a === peer) x.aOk = true; else x.bOk = true;
    if (!x.aOk || !x.bOk) return;
    x.counted = true;
    for (const p of [x.a, x.b]) this.addAccepted(runId, p, 1);
  }

  private addAccepted(runId: string, peer: string, d: number): void {
    const was = this.onProbation(peer);
    const n = Math.max(0, this.acceptedExchanges(peer) + d);
    this.accepted.delete(peer); // re-inserted last: Map order is the eviction order
    this.accepted.set(peer, n);
    while (this.accepted.size > ACCEPTED_KEPT) this.accepted.delete(this.accepted.keys().next().value!);
    if (was === this.onProbation(peer)) return;
    this.peersChanged(runId, peer, this.onProbation(peer) ? 'probation' : 'trusted');
    this.pools.get(runId)?.regroup();
  }

  // ---------- connection lifecycle ----------

  attach(ws: WebSocket, remote: string): void {
    const now = this.d.clock.now();
    const address = addressKey(remote);
    const c: Conn = {
      n: this.nextConn++, ws, release: () => {}, address, peerId: null, runId: null, lastSeen: now, bucket: this.o.limits.burst, refilledAt: now,
      lastRateError: -Infinity, overRate: 0, strikes: 0, helloTimer: null, lastStep: -1, closed: false,
      joinedAt: now, stepBase: 0, lastReportAt: now, joinSeq: 0, listedSeq: 0, replies: new Map(), diallers: new Map(), linkCids: new Set(), linkCredit: 0,
    };
    if (this.conns.size >= this.o.maxConnections) {
      this.fail(c, 'server-full', `the coordinator holds ${this.conns.size} connections, its limit; try again later`, CLOSE.overloaded);
      return;
    }
    const release = this.perAddress.acquire(address);
    if (!release) {
      this.fail(c, 'rate-limited', `this address holds ${this.o.maxConnectionsPerAddress} connections, the limit; close one first`, CLOSE.overloaded);
      return;
    }
    const site = siteKey(address);
    const releaseSite = site === null ? () => {} : this.perSite.acquire(site);
    if (!releaseSite) {
      release();
      this.fail(c, 'rate-limited', `this address's /48 holds ${this.o.maxConnectionsPerSite} connections, the limit; close one first`, CLOSE.overloaded);
      return;
    }
    c.release = () => { release(); releaseSite(); };
    this.conns.add(c);
    c.helloTimer = this.d.clock.setTimeout(() => {
      if (!c.peerId && !c.closed) this.fail(c, 'timeout', `no hello within ${this.o.helloTimeoutMs} ms`, CLOSE.protocol);
    }, this.o.helloTimeoutMs);
    ws.on('message', (data: RawData, isBinary: boolean) => {
      // A frame handler that throws (a damaged file on the coordinator, a bug) ends this
      // connection, named in the log; an exception thrown out of a ws event would end the process.
      try {
        this.onFrame(c, data, isBinary);
      } catch (err) {
        this.d.logger.error({ conn: c.n, peer: c.peerId, remote, err: (err as Error).message, stack: (err as Error).stack }, 'frame handler failed; connection closed');
        if (!c.closed) this.fail(c, 'internal', 'the coordinator failed to handle this frame; reconnect later', CLOSE.fatal);
      }
    });
    ws.on('close', () => this.onClose(c));
    ws.on('error', (err) => {
      // ws reports oversized frames here (then closes with 1009); keep it at debug level.
      this.d.logger.debug({ conn: c.n, peer: c.peerId, remote, err: err.message }, 'websocket error');
    });
  }

  private onFrame(c: Conn, data: RawData, isBinary: boolean): void {
    if (c.closed) return;
    this.stats.frames++;
    if (!this.takeToken(c)) return;
    if (isBinary) {
      if (!c.peerId) return this.fail(c, 'bad-message', 'binary frames are not accepted; the first frame must be a hello', CLOSE.protocol);
      return this.reject(c, 'bad-message', 'binary frames are not accepted; send JSON text');
    }
    const raw = Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.from(data as ArrayBuffer).toString('utf8');
    const parsed = parseClientMessage(raw, this.o.limits);
    if (!parsed.ok) {
      // Before joining, the only acceptable frame is a valid hello: anything else ends it.
      if (!c.peerId) return this.fail(c, parsed.code, `${parsed.error} (the first frame must be a valid hello)`, CLOSE.protocol);
      return this.reject(c, parsed.code, parsed.error);
    }
    const msg = parsed.msg;
    if (!c.peerId) {
      if (msg.t !== 'hello') return this.fail(c, 'not-joined', `"${msg.t}" before hello; the first frame must be hello`, CLOSE.protocol);
      return this.onHello(c, msg);
    }
    c.lastSeen = this.d.clock.now();
    this.dispatch(c, msg);
  }

  private dispatch(c: Conn, msg: ClientMessage): void {
    const peerId = c.peerId!, runId = c.runId!;
    switch (msg.t) {
      case 'hello':
        return this.reject(c, 'already-joined', `this connection already joined as ${peerId}`);
      case 'hb':
        return;
      case 'signal':
        return this.relay(c, msg.to, msg.data);
      case 'ready':
        this.restTick(runId, peerId);
        return this.pool(runId).ready(peerId, msg.round, msg.waitMs);
      case 'report':
        return this.onReport(c, msg);
      case 'state-fail':
        this.onStateFail?.(peerId, msg.id, msg.reason);
        return;
      case 'offender':
        return this.onOffender(c, msg);
    }
  }

  /**
   * Relays a signal only between peers this coordinator introduced: one listed to the sender
   * (in its welcome or a later peer-list change), a partner the pool gave either of them, or a
   * peer that signalled the sender first (an answer). Answers are free of the sender's rate.
   * A signal over maxSignalBytes is refused; one towards a peer with over relayBufferBytes
   * unsent is dropped, its sender told: signals never make the hub close their recipient.
   */
  private relay(c: Conn, toId: string, data: Record<string, unknown>): void {
    const peerId = c.peerId!, runId = c.runId!;
    const credit = c.replies.get(toId) ?? 0;
    if (credit > 0) {
      c.replies.set(toId, credit - 1);
      c.bucket = Math.min(this.o.limits.burst, c.bucket + 1); // the token onFrame took
    }
    const to = this.byPeer.get(toId);
    if (!to || to.runId !== runId || toId === peerId) {
      // An answer to a peer that has left since, or a peer of the run that left before its
      // leave reached the sender: a race, not an offence.
      if (toId !== peerId && (credit > 0 || this.wasPeerOf(runId, toId))) return;
      return this.reject(c, 'unknown-peer', `peer ${toId} is not a live peer of run ${runId}`, 'signal');
    }
    const partners = (this.partners.get(peerId) ?? []).includes(toId) || (this.partners.get(toId) ?? []).includes(peerId);
    const introduced = credit > 0 || to.joinSeq <= c.listedSeq || partners;
    if (!introduced) return this.reject(c, 'unknown-peer', `peer ${toId} was not introduced to you; signal peers from your peer list or your pool partner`, 'signal');
    const text = JSON.stringify({ t: 'signal', from: peerId, data } satisfies ServerMessage);
    const bytes = Buffer.byteLength(text);
    if (bytes > this.o.maxSignalBytes) return this.reject(c, 'too-large', `signal of ${bytes} bytes exceeds ${this.o.maxSignalBytes}; not relayed`, 'signal');
    // Unasked: neither an answer (`to` signalled us lately) nor to or from a pool partner.
    if (!partners && !c.replies.has(toId)) {
      const refused = this.diallerRefusal(c, to, bytes);
      if (refused !== null) {
        this.stats.relayDropped++;
        return this.slowDown(c, refused, 'signal');
      }
    }
    if (to.ws.bufferedAmount > this.o.relayBufferBytes) {
      // The recipient reads slower than it is signalled: the signal is dropped and its sender
      // told, so no sender can make the hub close a peer (maxSendBufferBytes) for not reading.
      this.stats.relayDropped++;
      return this.slowDown(c, `peer ${toId} has ${to.ws.bufferedAmount} bytes unsent (over ${this.o.relayBufferBytes}); signals to it are being dropped, retry later`, 'signal');
    }
    this.stats.relayed++;
    // The entry also says the sender signalled `to` (whose state it may then report): kept even
    // for a free answer, which earns nothing.
    const left = to.replies.get(peerId);
    to.replies.delete(peerId); // re-inserted last: the oldest entry is the one to forget
    to.replies.set(peerId, Math.min(MAX_REPLY_CREDITS, (left ?? 0) + (credit === 0 ? REPLY_CREDITS : 0)));
    if (to.replies.size > MAX_REPLY_PEERS) to.replies.delete(to.replies.keys().next().value!);
    this.creditLink(c, to, data);
    this.sendRaw(to, text);
  }

  /**
   * A link attempt seen through the relay. Every mesh signal names its link (`cid`, MeshSignal),
   * and no link opens without one, so a (peer, cid) new to either end is one link that end may
   * later report as failed to open (onReport). A report's `linkFailures` was taken as claimed, up
   * to 100,000 a report with a reason of the peer's own words, and the dashboard's "links failed
   * to open" and its reasons are sums over the run: one new id that signalled nobody filled both.
   */
  private creditLink(c: Conn, to: Conn, data: Record<string, unknown>): void {
    const cid = data.cid;
    if (typeof cid !== 'string' || cid.length > 64) return;
    for (const [side, other] of [[c, to.peerId!], [to, c.peerId!]] as const) {
      const key = `${other} ${cid}`;
      if (side.linkCids.has(key)) continue;
      side.linkCids.add(key);
      if (side.linkCids.size > LINK_CIDS_KEPT) side.linkCids.delete(side.linkCids.values().next().value!);
      side.linkCredit = Math.min(LINK_CREDIT_MAX, side.linkCredit + 1);
    }
  }

  /**
   * Why `c` may not signal `to` unasked now, or null (and it is counted). Each of a peer's held
   * offers and replayed signals is one dialler's, and several ids of one client (an address, or
   * the /64s of one /48) together took all 8 held offers or all 64 replayed signals, so the pool
   * partner's offer behind them was dropped and the pair waited out its connect timeout. Now ids
   * of one address, and of one /48, dial one peer unasked diallersPerAddress and diallersPerSite
   * (4) at a time: half the held offers, so no client fills them, while a household or a lab
   * behind one NAT still has 4 of its ids dial a newcomer at once, the others a minute on (or when
   * the pool pairs them, or the newcomer dials them: neither is counted). A dialler counts while
   * it is live and for diallerWindowMs (60 s, the mesh's rewiring period) after its last unasked signal.
   * What they send it together is held to diallerBytesPerS (16 KiB/s, gathering 128 KiB), per
   * address and per /48, so they cannot fill its relayBufferBytes and have every other peer's
   * signals to it dropped.
   */
  private diallerRefusal(c: Conn, to: Conn, bytes: number): string | null {
    const now = this.d.clock.now(), d = to.diallers, peerId = c.peerId!;
    const site = siteKey(c.address);
    let ofAddress = 0, ofSite = 0;
    for (const [id, x] of d) {
      if (now - x.at > this.o.diallerWindowMs || this.byPeer.get(id)?.runId !== to.runId) d.delete(id);
      else if (id !== peerId) {
        if (x.address === c.address) ofAddress++;
        if (site !== null && x.site === site) ofSite++;
      }
    }
    if (!d.has(peerId)) {
      if (ofAddress >= this.o.diallersPerAddress) {
        return `${ofAddress} other ids of this address are dialling peer ${to.peerId} (at most ${this.o.diallersPerAddress}); signal it when one has left or a minute has passed, or wait for it or the pool to name you`;
      }
      if (ofSite >= this.o.diallersPerSite) {
        return `${ofSite} other ids of this address's /48 are dialling peer ${to.peerId} (at most ${this.o.diallersPerSite}); signal it when one has left or a minute has passed, or wait for it or the pool to name you`;
      }
    }
    const keys = [`${to.n} ${c.address}`, ...(site !== null ? [`${to.n} ${site}`] : [])];
    const waitMs = Math.max(...keys.map((k) => this.dialBytes.waitMs(k)));
    if (waitMs > 0) {
      return `this address${keys.length > 1 && this.dialBytes.waitMs(keys[1]!) === waitMs ? '\'s /48' : ''} sent peer ${to.peerId} more unasked signals than ${this.o.diallerBytesPerS} bytes a second (gathering up to ${this.o.diallerBurstBytes}); retry in ${Math.ceil(waitMs / 1000)} s`;
    }
    for (const k of keys) this.dialBytes.charge(k, bytes);
    d.delete(peerId); // re-inserted last: the oldest entry is the one to forget
    d.set(peerId, { address: c.address, site, at: now });
    forgetOldest(d, MAX_DIALLERS);
    return null;
  }

  private wasPeerOf(runId: string, peerId: string): boolean {
    const row = this.d.db.prepare('SELECT run_id AS runId FROM peers WHERE id = ?').get(peerId) as { runId: string } | undefined;
    return row?.runId === runId;
  }

  private onOffender(c: Conn, msg: OffenderMsg): void {
    const reporter = c.peerId!, runId = c.runId!;
    if (msg.peer === reporter) return this.reject(c, 'bad-message', 'offender: a peer cannot report itself', 'offender');
    // The accused may have left already (it was cut off), so ask the peers table, not the live set.
    const row = this.d.db.prepare('SELECT run_id AS runId FROM peers WHERE id = ?').get(msg.peer) as { runId: string } | undefined;
    if (!row || row.runId !== runId) return this.reject(c, 'unknown-peer', `offender: ${msg.peer} is not a peer of run ${runId}`, 'offender');
    // Only a partner the pool gave the reporter can have sent it a payload; or, for a state it
    // served (a newcomer's bootstrap source is no pool partner), a peer that signalled the
    // reporter through this relay (which gave the reporter credit to answer it). Such a report
    // is marked unpaired: the dashboard's alert does not count it.
    const paired = (this.partners.get(reporter) ?? []).includes(msg.peer);
    if (!paired && !(isStateOffence(msg.reason) && c.replies.has(msg.peer))) {
      return this.reject(c, 'unknown-peer', `offender: ${msg.peer} is not one of your recent partners (the last ${PARTNERS_KEPT} the pool paired you with on this connection), nor a peer whose state you asked for; only those can be reported`, 'offender');
    }
    // The exchange it reports is not an accepted one, for either side.
    const x = this.exchangeOf(reporter, msg.peer);
    if (x && !x.offended) {
      x.offended = true;
      if (x.counted) for (const p of [x.a, x.b]) this.addAccepted(runId, p, -1);
    }
    if (!this.offenderReports.take(c.address)) {
      this.stats.offenderReportsDropped++;
      return this.slowDown(c, `this address filed more than ${this.o.offenderReportsPerMinute} offender reports a minute; this one is not kept`, 'offender');
    }
    // A CUSUM report is evidence for the dashboard, not a strike: it adds up noisy probe losses,
    // and honest partners in a swarm of two reported each other about once per hundred exchanges
    // (bench/results/swarm.json, `offences`), so two of them parted the only pair of the run.
    // The judge that made it holds the partner to the strict margin from then on; a gross harm
    // or a failed size check still counts. Its stored reports per pair are bounded.
    if (paired) this.rest(runId, reporter, msg.peer, msg.reason);
    if (paired && isStallReport(msg.reason)) this.noteStaller(runId, c, msg.peer, this.byPeer.get(msg.peer)?.address ?? x?.addresses.get(msg.peer));
    if (isSoftOffence(msg.reason)) {
      const soft = this.runSoftReports(runId);
      const n = strikeCount(soft, reporter, msg.peer);
      if (n >= SOFT_REPORTS_KEPT) return;
      addStrike(soft, reporter, msg.peer);
      const data: OffenderEventData = { accused: msg.peer, reason: msg.reason, strike: n + 1, vetoed: false, paired: true };
      this.d.events.append(runId, 'peer-offender', reporter, data);
      this.d.logger.warn({ run: runId, reporter, accused: msg.peer, reason: msg.reason }, 'offender reported (evidence: no strike)');
      return;
    }
    const strikes = this.runStrikes(runId);
    const before = strikeCount(strikes, reporter, msg.peer);
    // Where the accused is now, else where it was when it was paired with the reporter, or when it
    // signalled it unasked: one that left before the report came took no strike with it before,
    // and its next id from the same address was paired with the reporter again.
    const accusedAddress = this.byPeer.get(msg.peer)?.address ?? x?.addresses.get(msg.peer) ?? c.diallers.get(msg.peer)?.address;
    // The strike binds the accused's client (clientKey: an IPv6 /48, not its /64): a /48 is 65,536
    // /64s for one tunnel broker's form, and bound to the /64, the accused's next id from the
    // /64 beside it was paired with the reporter again. An honest household elsewhere in that /48
    // loses only its pairings with this one reporter.
    const accusedClient = accusedAddress === undefined ? undefined : clientKey(accusedAddress);
    if (accusedClient !== undefined && accusedClient !== clientKey(c.address)) {
      let byAddr = this.addressStrikes.get(runId);
      if (!byAddr) this.addressStrikes.set(runId, (byAddr = new Map()));
      if (strikeCount(byAddr, reporter, accusedClient) < VETO_AFTER) addStrike(byAddr, reporter, accusedClient);
      forgetOldest(byAddr, MAX_REPORTERS_KEPT);
    }
    if (before >= VETO_AFTER) return; // already vetoed: nothing more to write
    addStrike(strikes, reporter, msg.peer);
    const strike = before + 1;
    // `paired`: the reporter was the accused's partner (the dashboard counts only such reports).
    const data: OffenderEventData = { accused: msg.peer, reason: msg.reason, strike, vetoed: strike >= VETO_AFTER, paired };
    this.d.events.append(runId, 'peer-offender', reporter, data);
    this.d.logger.warn({ run: runId, reporter, accused: msg.peer, reason: msg.reason, strike }, 'offender reported');
  }

  /**
   * A pair reported again soon rests (issue 15): a report of the accused (of any kind) within
   * REST_WINDOW of the reporter's readies after its previous one (or after the rest that one
   * started) stops the pool from pairing the two for the reporter's next REST_READIES × 2^(k − 2)
   * readies at its k-th report, up to REST_MAX_READIES. A report alone is free: an honest pair's
   * probe losses add up to a CUSUM report about once in a few hundred exchanges, two within a
   * window are rarer still (resting on any second report cost a swarm of two 1.5 points of its
   * paired share), while a partner whose updates keep failing the probe (an anti-progress φ the
   * lag clip shortened, say) is reported every few exchanges. It would otherwise keep taking a
   * third of its victims' rounds, each one a solo step for them; rule 1 of the pool (no repeat
   * partner while another is due) even sends honest peers to it every other round. The rest
   * affects only the reporter's own pairings with the accused, and a report needs a recent
   * pairing, so a hostile reporter can part nobody but itself. A stall report (isStallReport)
   * rests the pair at once, as a report's second would (REST_READIES × 2^(k − 1) at its k-th):
   * the mesh sends it only at the partner's second stall in a row, each of which cost the
   * reporter a whole deadline, and the pool would otherwise pair it with the staller again.
   */
  private rest(runId: string, reporter: string, accused: string, reason: string): void {
    const lag = isLagReport(reason), stall = isStallReport(reason);
    let byReporter = this.rests.get(runId);
    if (!byReporter) this.rests.set(runId, (byReporter = new Map()));
    let m = byReporter.get(reporter);
    if (!m) {
      byReporter.set(reporter, (m = new Map()));
      forgetOldest(byReporter, MAX_REPORTERS_KEPT);
    }
    let last = m.get(accused);
    if (!last) {
      m.set(accused, (last = { resting: false, left: 0, since: 0 }));
      if (!stall) return;
    }
    const k = Math.max(2, (stall ? 2 : 1) + strikeCount(this.runSoftReports(runId), reporter, accused) + strikeCount(this.runStrikes(runId), reporter, accused));
    last.resting = true;
    // A lag report rests REST_READIES, never longer (isLagReport): an honest peer behind must
    // meet the peers ahead again to catch up, while a φ that keeps lagging is rested each time.
    last.left = lag ? REST_READIES : Math.min(REST_MAX_READIES, REST_READIES * 2 ** (k - 2));
    last.since = 0;
  }

  /**
   * A stall report of `accused` by a pool partner (c). A pair's rest (rest()) parts only that pair,
   * so a peer that takes its partners' φ and Δ and stalls each one in turn cost every honest peer
   * of a small swarm two deadlines before its rest, and one more at each rest's end, for good.
   * Here the reports of distinct clients add up: STALL_REPORTERS clients (clientKey: an address,
   * an IPv6 /48 once; never the accused's own) reporting it within STALL_WINDOW_ROUNDS of the
   * run's rounds bench it, no pairing with anyone while the run has someone else live, for
   * BENCH_ROUNDS rounds, doubled at each bench that follows within BENCH_MAX_ROUNDS of the last
   * one's end, up to BENCH_MAX_ROUNDS. Ids of one client are one witness, and only ids off
   * probation are witnesses, so one host's ids, or fresh ids of two hosts, cannot bench an honest
   * peer; each report already took two stalls in a row of that reporter.
   */
  private noteStaller(runId: string, c: Conn, accused: string, accusedAddress: string | undefined): void {
    // A witness has earned trust (new ids cost only a hello), and is not of the accused's client.
    const key = clientKey(c.address);
    if (this.onProbation(c.peerId!) || (accusedAddress !== undefined && clientKey(accusedAddress) === key)) return;
    const now = this.d.clock.now(), round = this.roundMs(runId);
    let byAccused = this.stallers.get(runId);
    if (!byAccused) this.stallers.set(runId, (byAccused = new Map()));
    const s = byAccused.get(accused) ?? { reporters: new Map<string, number>(), benches: 0, until: -Infinity };
    byAccused.delete(accused); // re-inserted last: the oldest entry is the one to forget
    byAccused.set(accused, s);
    forgetOldest(byAccused, MAX_REPORTERS_KEPT);
    s.reporters.delete(key);
    s.reporters.set(key, now);
    forgetOldest(s.reporters, STALL_REPORTERS_KEPT);
    for (const [k, at] of s.reporters) if (now - at > STALL_WINDOW_ROUNDS * round) s.reporters.delete(k);
    if (now < s.until || s.reporters.size < STALL_REPORTERS) return;
    // A quiet spell as long as the longest bench forgives the earlier ones: a link that was bad
    // for an hour starts again from BENCH_ROUNDS.
    if (now - s.until > BENCH_MAX_ROUNDS * round) s.benches = 0;
    s.benches++;
    const rounds = Math.min(BENCH_MAX_ROUNDS, BENCH_ROUNDS * 2 ** Math.min(s.benches - 1, 30));
    s.until = now + rounds * round;
    // The next bench needs fresh witnesses: those of this one said what they saw.
    s.reporters.clear();
    this.d.logger.warn({ run: runId, peer: accused, rounds, roundMs: round, bench: s.benches }, 'peer benched: partners of distinct clients reported it stalling');
  }

  /** Whether `peer` sits out its bench (noteStaller). */
  private benched(runId: string, peer: string): boolean {
    const s = this.stallers.get(runId)?.get(peer);
    return s !== undefined && this.d.clock.now() < s.until;
  }

  /**
   * A round of the run in ms for stall benches: the pool's typical cadence (one vote per address,
   * from peers off probation when any has one), within BENCH_ROUND_MS; its fallback before one is known.
   */
  private roundMs(runId: string): number {
    const typical = this.pool(runId).typicalCadence();
    return typical === null ? BENCH_ROUND_MS.fallback : Math.min(BENCH_ROUND_MS.max, Math.max(BENCH_ROUND_MS.min, typical));
  }

  /**
   * One ready of `peer`, before the pool sees it: a rest of N covers the reporter's next N
   * readies (and its partner's readies until then); it ends at the one after. From there (or
   * from a report that started none) the window runs REST_WINDOW readies.
   */
  private restTick(runId: string, peer: string): void {
    const m = this.rests.get(runId)?.get(peer);
    if (!m) return;
    for (const [accused, r] of m) {
      if (r.resting) {
        if (r.left > 0) { r.left--; continue; }
        r.resting = false;
      }
      if (++r.since >= REST_WINDOW) m.delete(accused);
    }
    if (m.size === 0) this.rests.get(runId)!.delete(peer);
  }

  /** The run's stored CUSUM reports per (reporter, accused), counted from its events on first use. */
  private runSoftReports(runId: string): Map<string, Map<string, number>> {
    return this.softReports.get(runId) ?? this.loadOffenders(runId).soft;
  }

  /** The run's strikes per (reporter, accused), counted from its stored offender events on first use. */
  private runStrikes(runId: string): Map<string, Map<string, number>> {
    return this.strikes.get(runId) ?? this.loadOffenders(runId).strikes;
  }

  /** Counts a run's stored offender events once: strikes, and CUSUM reports (no strike). */
  private loadOffenders(runId: string): { strikes: Map<string, Map<string, number>>; soft: Map<string, Map<string, number>> } {
    const strikes = new Map<string, Map<string, number>>(), soft = new Map<string, Map<string, number>>();
    const rows = this.d.db.prepare("SELECT peer_id AS reporter, data_json AS data FROM events WHERE run_id = ? AND kind = 'peer-offender'").all(runId) as { reporter: string; data: string }[];
    for (const r of rows) {
      // A row its schema refuses (a damaged database) counts no strike: it is logged, never thrown
      // into the joining peer's hello.
      let data: unknown;
      try { data = JSON.parse(r.data); } catch { data = r.data; }
      const problem = schemaProblem(OffenderEventData, data, 'peer-offender.data');
      if (problem !== null) { this.d.logger.warn({ run: runId, reporter: r.reporter, problem }, 'stored offender event skipped'); continue; }
      const d = data as OffenderEventData;
      addStrike(isSoftOffence(d.reason) ? soft : strikes, r.reporter, d.accused);
    }
    if (!this.strikes.has(runId)) this.strikes.set(runId, strikes);
    if (!this.softReports.has(runId)) this.softReports.set(runId, soft);
    return { strikes: this.strikes.get(runId)!, soft: this.softReports.get(runId)! };
  }

  private onHello(c: Conn, msg: HelloMsg): void {
    if (!this.hellos.take(c.address)) {
      return this.fail(c, 'rate-limited', `this address sent more than ${this.o.hellosPerMinute} hellos a minute; wait before joining again`, CLOSE.overloaded);
    }
    const site = siteKey(c.address);
    if (site !== null && !this.siteHellos.take(site)) {
      return this.fail(c, 'rate-limited', `this address's /48 sent more than ${this.o.siteHellosPerMinute} hellos a minute; wait before joining again`, CLOSE.overloaded);
    }
    if (msg.v !== PROTOCOL_VERSION) {
      return this.fail(c, 'bad-version', `protocol version ${msg.v} is not supported; this coordinator speaks ${PROTOCOL_VERSION}: ${msg.v < PROTOCOL_VERSION ? 'reload the page (a browser) or update murmur (a headless volunteer)' : 'this coordinator is older than the client; it must be updated'}`, CLOSE.protocol);
    }
    let runId = msg.run ?? DEFAULT_RUN_ID;
    let peerId: string | null = null;
    if (msg.session) {
      const claims = this.d.signer.verify(msg.session);
      if (!claims) return this.fail(c, 'bad-session', 'session token is not valid here (expired, forged or from another coordinator); reconnect without it to join as a new peer', CLOSE.fatal);
      if (msg.run && msg.run !== claims.r) return this.fail(c, 'bad-session', `session belongs to run ${claims.r}, not ${msg.run}`, CLOSE.fatal);
      runId = claims.r;
      peerId = claims.p;
    }
    const run = this.d.runs.get(runId);
    if (!run) return this.fail(c, 'unknown-run', `no run "${runId}"`, CLOSE.fatal);
    if (run.status !== 'running') return this.fail(c, 'run-stopped', `run "${runId}" is stopped`, CLOSE.runStopped);
    // The run's dataset is read from the operator's files, which can be damaged while it runs (an
    // edit, a truncated restore): that hello is refused and the dataset named, before any of the
    // peer's state is touched.
    let files: ReturnType<typeof fileRefs>;
    try {
      const manifest = this.d.datasets.manifest(run.dataset);
      if (!manifest) return this.fail(c, 'internal', `dataset "${run.dataset}" of run ${runId} is missing on the coordinator`, CLOSE.fatal);
      files = fileRefs(runId, manifest);
    } catch (err) {
      this.d.logger.error({ run: runId, dataset: run.dataset, err: (err as Error).message }, 'dataset unreadable: hellos for its run are refused until it is prepared again');
      return this.fail(c, 'internal', `dataset "${run.dataset}" of run ${runId} is damaged on the coordinator; its operator must prepare it again`, CLOSE.fatal);
    }

    const now = this.d.clock.now();
    const resumed = peerId !== null;
    if (peerId) {
      // The same peer reconnecting (its old socket may not have timed out yet): the new one wins.
      const old = this.byPeer.get(peerId);
      if (old && old !== c) {
        this.detach(old, 'replaced by a newer connection');
        this.close(old, CLOSE.replaced, 'replaced by a newer connection');
      }
    } else {
      peerId = `p-${randomBytes(8).toString('hex')}`;
    }
    const replica = this.peerRow(peerId, runId, msg.client ?? null, now);
    this.d.clock.clearTimeout(c.helloTimer);
    c.peerId = peerId;
    c.runId = runId;
    c.lastSeen = now;
    c.joinedAt = c.lastReportAt = now;
    c.stepBase = this.stepBase(runId, peerId, resumed);
    this.byPeer.set(peerId, c);
    let set = this.byRun.get(runId);
    if (!set) this.byRun.set(runId, (set = new Set()));
    set.add(peerId);
    this.pool(runId).join(peerId);
    c.joinSeq = c.listedSeq = ++this.joins; // the welcome lists every live peer

    const assignment: DataAssignment = {
      dataset: run.dataset, train: files.train, val: files.val,
      // One shard per replica, round robin; with a single train file every replica reads it
      // and differs only by its window seed.
      shards: [replica % files.train.length],
      seed: (run.seed * 7919 + (replica + 1) * 104729) % 2147483647,
      replica,
    };
    // Only a checkpoint whose loss this coordinator measured on the run's state check windows:
    // a newcomer's bound is that figure (maxStateLoss), never a peer's claim an older coordinator kept.
    const latest = this.d.checkpoints.current(run);
    const consensus = this.stepConsensus(runId, peerId, latest);
    this.send(c, {
      t: 'welcome', peerId, session: this.d.signer.sign({ p: peerId, r: runId, i: now }), resumed, run, assignment,
      checkpoint: latest ? this.d.checkpoints.ref(latest) : null,
      peers: this.livePeers(runId).filter((p) => p !== peerId),
      ...this.probationField(this.livePeers(runId).filter((p) => p !== peerId)),
      heartbeatMs: this.o.heartbeatMs,
      limits: { maxMessageBytes: this.o.limits.maxMessageBytes, messagesPerSecond: this.o.limits.messagesPerSecond, burst: this.o.limits.burst },
      ice: this.issueIce(c, peerId, now),
      stepBase: c.stepBase,
      stepRate: stepRate(run),
      ...(consensus === null ? {} : { stepConsensus: consensus }),
    });
    this.d.events.append(runId, 'peer-joined', peerId, { replica, resumed, client: msg.client ?? null });
    this.d.logger.info({ peer: peerId, run: runId, replica, resumed }, 'peer joined');
    this.peersChanged(runId, peerId, 'joined');
  }

  /** The peer's row (created on first join); returns its replica number in the run. */
  private peerRow(peerId: string, runId: string, client: HelloMsg['client'] | null, now: number): number {
    const db = this.d.db;
    const row = db.prepare('SELECT replica FROM peers WHERE id = ?').get(peerId) as { replica: number } | undefined;
    if (row) {
      db.prepare('UPDATE peers SET last_seen = ?, client_json = ? WHERE id = ?').run(now, client ? JSON.stringify(client) : null, peerId);
      return row.replica;
    }
    const next = (db.prepare('SELECT COALESCE(MAX(replica), -1) + 1 AS r FROM peers WHERE run_id = ?').get(runId) as { r: number }).r;
    db.prepare('INSERT INTO peers (id, run_id, replica, client_json, first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?)')
      .run(peerId, runId, next, client ? JSON.stringify(client) : null, now, now);
    return next;
  }

  /**
   * The furthest inner step a peer joining now could start from: the run's latest checkpoint,
   * the state of any live peer of the run (a newcomer may adopt one), or its own earlier reports.
   */
  private stepBase(runId: string, peerId: string, resumed: boolean): number {
    let base = Math.max(0, this.d.checkpoints.latest(runId)?.step ?? 0);
    for (const p of this.byRun.get(runId) ?? []) if (p !== peerId) base = Math.max(base, this.byPeer.get(p)?.lastStep ?? 0);
    if (resumed) {
      // Its own furthest accepted report, and what it could have trained since that report arrived
      // at the run's fastest rate: a volunteer away for a while (its network, or this coordinator
      // restarting) trained on and flushes the reports it buffered the moment it is back. Counted
      // from its join alone, those were refused as impossible, each a strike, and past maxStrikes
      // the connection was closed, to come back with the same unacknowledged reports.
      const own = this.d.db.prepare('SELECT step, received_at AS at FROM reports WHERE run_id = ? AND peer_id = ? ORDER BY step DESC LIMIT 1')
        .get(runId, peerId) as { step: number; at: number } | undefined;
      if (own) {
        const run = this.d.runs.get(runId);
        const away = Math.max(0, this.d.clock.now() - own.at) / 1000;
        base = Math.max(base, own.step + (run ? Math.ceil(away * stepRate(run)) : 0));
      }
    }
    return base;
  }

  private onReport(c: Conn, msg: ReportMsg): void {
    const now = this.d.clock.now();
    const run = this.d.runs.get(c.runId!);
    if (!run) return;
    const impossible = reportError(msg, { run, now, joinedAt: c.joinedAt, stepBase: c.stepBase, lastReportAt: c.lastReportAt });
    if (impossible) return this.reject(c, 'bad-message', reportRefusal(msg.seq, impossible), 'report');
    c.lastReportAt = now;
    const { t: _t, seq, ...fields } = msg;
    // A partner the pool never gave this peer (or gave it before a reconnect) is not plotted as one.
    const paired = fields.partner !== null && (this.partners.get(c.peerId!) ?? []).includes(fields.partner);
    if (paired) this.confirmExchange(c.runId!, c.peerId!, fields.partner!);
    // Links failed to open: at most as many as the relay carried signals of for this connection
    // and no report claimed yet (creditLink). An honest report is never refused for it: one sent
    // after a reconnect, for links of the connection before, is stored with fewer.
    const failures = Math.min(fields.linkFailures ?? 0, c.linkCredit);
    c.linkCredit -= failures;
    const row: ReportRow = {
      ...fields, ...(fields.linkFailures === undefined ? {} : { linkFailures: failures }),
      partner: paired ? fields.partner : null, partnerDist: paired ? fields.partnerDist : null,
      runId: c.runId!, peerId: c.peerId!, seq, t: now, receivedAt: now,
    };
    if (msg.step > c.lastStep) c.lastStep = msg.step;
    this.pool(c.runId!).progress(c.peerId!, msg.step, run.train.H);
    this.d.metrics.enqueue(row, (r, duplicate) => {
      // Ack whichever connection the peer holds now: after a reconnect the new one needs it.
      this.sendTo(r.peerId, duplicate ? { t: 'ack', seq: r.seq, duplicate: true } : { t: 'ack', seq: r.seq });
      if (!duplicate) this.d.live.publish(r.runId, 'report', r);
    });
  }

  private onClose(c: Conn): void {
    c.closed = true;
    c.release();
    this.d.clock.clearTimeout(c.helloTimer);
    this.conns.delete(c);
    this.detach(c, 'disconnected');
  }

  /** ICE servers for `peerId`; renewed on this connection before the TURN credential expires. */
  private issueIce(c: Conn, peerId: string, now: number) {
    const s = this.d.ice;
    if (!s) return { iceServers: [], expiresAt: null };
    const ice = iceFor(s, c.address, now);
    const delay = renewDelayMs(s, now, ice.expiresAt);
    this.d.clock.clearTimeout(c.iceTimer);
    if (delay !== null) {
      c.iceTimer = this.d.clock.setTimeout(() => {
        if (c.closed || this.byPeer.get(peerId) !== c) return;
        this.send(c, { t: 'ice', ice: this.issueIce(c, peerId, this.d.clock.now()) });
      }, delay);
    }
    return ice;
  }

  /** Removes a joined connection from the live set (once). */
  private detach(c: Conn, reason: string): void {
    this.d.clock.clearTimeout(c.iceTimer);
    const peerId = c.peerId, runId = c.runId;
    if (!peerId || !runId || this.byPeer.get(peerId) !== c) return;
    this.byPeer.delete(peerId);
    this.partners.delete(peerId);
    this.exchanges.delete(peerId);
    this.byRun.get(runId)?.delete(peerId);
    this.pools.get(runId)?.forget(peerId);
    this.onPeerLeft?.(peerId);
    const now = this.d.clock.now();
    this.d.db.prepare('UPDATE peers SET last_seen = ? WHERE id = ?').run(now, peerId);
    this.d.events.append(runId, 'peer-left', peerId, { reason });
    this.d.logger.info({ peer: peerId, run: runId, reason }, 'peer left');
    this.peersChanged(runId, peerId, 'left');
  }

  // ---------- sending ----------

  sendTo(peerId: string, msg: ServerMessage): boolean {
    const c = this.byPeer.get(peerId);
    return c ? this.send(c, msg) : false;
  }

  broadcast(runId: string, msg: ServerMessage): void {
    const text = JSON.stringify(msg);
    for (const p of this.byRun.get(runId) ?? []) {
      const c = this.byPeer.get(p);
      if (c) this.sendRaw(c, text);
    }
  }

  private send(c: Conn, msg: ServerMessage): boolean {
    return this.sendRaw(c, JSON.stringify(msg));
  }

  private sendRaw(c: Conn, text: string): boolean {
    if (c.closed || c.ws.readyState !== c.ws.OPEN) return false;
    if (c.ws.bufferedAmount > this.o.maxSendBufferBytes) {
      // A peer that does not read would make us hold its frames for ever.
      this.d.logger.warn({ peer: c.peerId, buffered: c.ws.bufferedAmount }, 'closing a peer that does not read');
      this.close(c, CLOSE.overloaded, 'too much unsent data; reconnect');
      return false;
    }
    c.ws.send(text);
    return true;
  }

  /**
   * A peer joined or left: its run's peers hear of it as a change (the whole list goes only in
   * a welcome), so a join costs the run one small frame per peer, not a list per peer.
   * Changes within peersEveryMs go out together.
   */
  private peersChanged(runId: string, peerId: string, change: 'joined' | 'left' | 'probation' | 'trusted'): void {
    let p = this.peersPending.get(runId);
    if (!p) {
      const pending = { joined: new Set<string>(), left: new Set<string>(), probation: new Set<string>(), trusted: new Set<string>(), timer: null as unknown };
      pending.timer = this.d.clock.setTimeout(() => this.sendPeersChange(runId), this.o.peersEveryMs);
      this.peersPending.set(runId, (p = pending));
    }
    // A peer that joined and left within one window is still sent as left: a welcome in between listed it.
    if (change === 'joined') { p.left.delete(peerId); p.joined.add(peerId); if (this.onProbation(peerId)) p.probation.add(peerId); }
    else if (change === 'left') { p.joined.delete(peerId); p.left.add(peerId); p.probation.delete(peerId); p.trusted.delete(peerId); }
    else if (change === 'probation') { p.trusted.delete(peerId); p.probation.add(peerId); }
    else { p.probation.delete(peerId); p.trusted.add(peerId); }
  }

  private sendPeersChange(runId: string): void {
    const p = this.peersPending.get(runId);
    if (!p) return;
    this.peersPending.delete(runId);
    const text = JSON.stringify({
      t: 'peers-change', joined: [...p.joined], left: [...p.left],
      ...(p.probation.size > 0 ? { probation: [...p.probation] } : {}), ...(p.trusted.size > 0 ? { trusted: [...p.trusted] } : {}),
    } satisfies ServerMessage);
    for (const id of this.byRun.get(runId) ?? []) {
      const c = this.byPeer.get(id);
      if (!c) continue;
      c.listedSeq = this.joins;
      this.sendRaw(c, text);
    }
  }

  // ---------- limits and errors ----------

  /** Token bucket; false (and the frame dropped) when the connection sends too fast. */
  private takeToken(c: Conn): boolean {
    const now = this.d.clock.now();
    const { messagesPerSecond, burst } = this.o.limits;
    c.bucket = Math.min(burst, c.bucket + ((now - c.refilledAt) / 1000) * messagesPerSecond);
    c.refilledAt = now;
    // Dropped frames are forgiven only once the bucket has refilled (the sender calmed down),
    // so a flood that lets a token trickle in now and then still adds up to a close.
    if (c.bucket >= burst) c.overRate = 0;
    if (c.bucket >= 1) {
      c.bucket -= 1;
      return true;
    }
    this.stats.rejected++;
    c.overRate++;
    if (c.overRate > burst) {
      this.fail(c, 'rate-limited', `more than ${burst} frames dropped for exceeding ${messagesPerSecond} frames/s; closing`, CLOSE.protocol);
      return false;
    }
    this.slowDown(c, `over ${messagesPerSecond} frames/s (burst ${burst}); frames are being dropped`);
    return false;
  }

  /** Frames of `c` are being dropped (not an offence): a non-fatal `rate-limited`, one per second at most. */
  private slowDown(c: Conn, message: string, ref?: string): void {
    const now = this.d.clock.now();
    // One error per second at most: the reply must not amplify a flood.
    if (now - c.lastRateError < 1000) return;
    c.lastRateError = now;
    this.send(c, ref ? { t: 'error', code: 'rate-limited', message, ref } : { t: 'error', code: 'rate-limited', message });
  }

  /** A bad frame: say why; after too many, close. Nothing is written for it. */
  private reject(c: Conn, code: ErrorCode, message: string, ref?: string): void {
    this.stats.rejected++;
    c.strikes++;
    if (c.strikes > this.o.maxStrikes) {
      this.fail(c, code, `${message} (and ${this.o.maxStrikes} earlier invalid frames); closing`, CLOSE.protocol);
      return;
    }
    this.send(c, ref ? { t: 'error', code, message, ref } : { t: 'error', code, message });
  }

  /** A fatal error: tell the peer why, then close. */
  private fail(c: Conn, code: ErrorCode, message: string, closeCode: number): void {
    this.stats.closedForAbuse++;
    this.send(c, { t: 'error', code, message, fatal: true });
    this.close(c, closeCode, code);
  }

  private close(c: Conn, code: number, reason: string): void {
    if (c.closed) return;
    c.closed = true;
    try {
      c.ws.close(code, reason.slice(0, 120));
    } catch {
      c.ws.terminate();
    }
    // A client that never answers the close handshake must not hold the socket.
    const ws = c.ws;
    this.d.clock.setTimeout(() => { if (ws.readyState !== ws.CLOSED) ws.terminate(); }, 5_000);
    if (c.peerId) this.detach(c, reason);
    this.conns.delete(c);
  }

  // ---------- liveness ----------

  private scheduleSweep(): void {
    this.sweepTimer = this.d.clock.setTimeout(() => {
      this.sweep();
      this.scheduleSweep();
    }, Math.max(100, Math.min(this.o.heartbeatMs, this.o.livenessMs / 2)));
  }

  /** Drops peers that have been silent longer than livenessMs; now and then, forgets departed ones. */
  sweep(): void {
    const now = this.d.clock.now();
    if (this.pruneNext === null && now - this.lastPrune >= Math.min(60_000, this.o.departedRetentionMs)) {
      this.lastPrune = now;
      this.pruneBehind();
    }
    for (const c of [...this.conns]) {
      if (c.peerId && now - c.lastSeen > this.o.livenessMs) {
        this.send(c, { t: 'error', code: 'timeout', message: `no heartbeat for ${now - c.lastSeen} ms`, fatal: true });
        this.close(c, CLOSE.heartbeat, 'heartbeat timeout');
      }
    }
  }

  /**
   * Forgets departed peers a batch at a time, the next batch as soon as the event loop is free
   * while each comes full: one batch a minute forgot 500 peers a minute, and fresh ids from 9
   * addresses (60 hellos a minute each) outran it for good, the table growing past the retention.
   */
  private pruneBehind(): void {
    this.pruneNext = null;
    let forgotten: number;
    try {
      forgotten = this.prune();
    } catch (err) {
      this.d.logger.error({ err: (err as Error).message }, 'forgetting departed peers failed; the next sweep tries again');
      return;
    }
    if (forgotten >= PRUNE_BATCH) this.pruneNext = setImmediate(() => this.pruneBehind());
  }

  /**
   * Deletes the rows and events of at most PRUNE_BATCH peers gone longer than departedRetentionMs,
   * the longest gone first. A live peer's last_seen is its join time, so the live ones are passed
   * over: read past, since a batch of the oldest rows alone stopped at peers connected for longer
   * than the retention, and 500 of them (8 addresses' WebSockets) kept every departed row for good.
   * Returns how many it forgot.
   */
  prune(now = this.d.clock.now()): number {
    const db = this.d.db;
    const ids = (db.prepare('SELECT id FROM peers WHERE last_seen < ? ORDER BY last_seen LIMIT ?').all(now - this.o.departedRetentionMs, PRUNE_BATCH + this.byPeer.size) as { id: string }[])
      .map((r) => r.id).filter((id) => !this.byPeer.has(id)).slice(0, PRUNE_BATCH);
    if (ids.length === 0) return 0;
    const events = db.prepare('DELETE FROM events WHERE peer_id = ?');
    const peer = db.prepare('DELETE FROM peers WHERE id = ?');
    db.transaction(() => { for (const id of ids) { events.run(id); peer.run(id); } })();
    this.d.events.recount();
    this.forgetIds(new Set(ids));
    this.stats.forgotten += ids.length;
    this.d.logger.info({ peers: ids.length }, 'forgot departed peers');
    return ids.length;
  }

  /**
   * What the hub remembers of forgotten peers goes with their rows: their strikes (as reporter or
   * accused) and their accepted exchanges. After a restart the same would be counted again from
   * the events that are now deleted, so nothing changes but that memory stays bounded by the
   * peers within the retention time.
   */
  private forgetIds(ids: Set<string>): void {
    for (const id of ids) this.accepted.delete(id);
    for (const runs of [this.strikes, this.softReports, this.addressStrikes, this.rests]) {
      for (const byReporter of runs.values()) {
        for (const [reporter, accused] of byReporter) {
          if (ids.has(reporter)) { byReporter.delete(reporter); continue; }
          if (runs === this.addressStrikes) continue; // keyed by address, not by id
          for (const id of ids) accused.delete(id);
          if (accused.size === 0) byReporter.delete(reporter);
        }
      }
    }
  }

  /** Entries the hub holds per peer id, by table: each is bounded (tests measure it). */
  remembered(): { accepted: number; strikes: number; softReports: number; addressStrikes: number; rests: number } {
    const count = (runs: Map<string, Map<string, Map<string, unknown>>>) => {
      let n = 0;
      for (const byReporter of runs.values()) for (const m of byReporter.values()) n += m.size;
      return n;
    };
    return { accepted: this.accepted.size, strikes: count(this.strikes), softReports: count(this.softReports), addressStrikes: count(this.addressStrikes), rests: count(this.rests) };
  }

  // ---------- run changes ----------

  /** A researcher changed or stopped a run: tell its peers; a stopped run's peers are closed. */
  runChanged(run: RunInfo): void {
    this.broadcast(run.id, { t: 'config', run });
    if (run.status === 'stopped') {
      for (const p of this.livePeers(run.id)) {
        const c = this.byPeer.get(p);
        if (c) this.close(c, CLOSE.runStopped, 'run-stopped');
      }
      this.pools.get(run.id)?.clear();
    }
  }

  shutdown(): void {
    this.d.clock.clearTimeout(this.sweepTimer);
    if (this.pruneNext !== null) clearImmediate(this.pruneNext);
    this.pruneNext = null;
    for (const p of this.peersPending.values()) this.d.clock.clearTimeout(p.timer);
    this.peersPending.clear();
    for (const p of this.pools.values()) p.clear();
    for (const c of [...this.conns]) this.close(c, CLOSE.shutdown, 'coordinator shutting down');
  }
}

/** Offender reports of one (reporter, accused) pair that stop the pool from pairing them. */
export const VETO_AFTER = 2;
/**
 * Reporters a run's memory-only tables (rests, address strikes) keep, the oldest forgotten
 * first: each reporter is a few entries, and ids (hence reporters) are free.
 */
export const MAX_REPORTERS_KEPT = 10_000;

/** CUSUM reports (no strike) stored per (reporter, accused) pair and run; later ones are dropped. */
export const SOFT_REPORTS_KEPT = 4;
/** A pair's rest after a report of the accused within REST_WINDOW of the last, in the reporter's readies; it doubles with each later report. */
export const REST_READIES = 8;
/** The reporter's readies after a report (or after the rest it started) within which another report rests the pair. */
export const REST_WINDOW = 16;
/** A reported pair: whether it rests and for how many more of the reporter's readies after the next, and readies since the report or the rest's end. */
interface Rest { resting: boolean; left: number; since: number }
/** The longest rest, in the reporter's readies. */
export const REST_MAX_READIES = 64;

/** Distinct clients (clientKey) whose stall reports of one peer within STALL_WINDOW_ROUNDS bench it (noteStaller). */
export const STALL_REPORTERS = 2;
/** The run's rounds within which stall reports of distinct clients add up. */
export const STALL_WINDOW_ROUNDS = 32;
/** A peer's first bench, in the run's rounds; it doubles at each bench within BENCH_MAX_ROUNDS of the last. */
export const BENCH_ROUNDS = 8;
/** The longest bench, in the run's rounds. */
export const BENCH_MAX_ROUNDS = 64;
/** A round's length for benches: the run's typical cadence within min and max, `fallback` while none is known. */
export const BENCH_ROUND_MS = { min: 1_000, max: 120_000, fallback: 10_000 } as const;
/** Reporting clients kept per accused (the oldest forgotten first). */
const STALL_REPORTERS_KEPT = 16;
/** A peer reported for stalls: the clients that reported it lately (when), its benches so far and when the last one ends. */
interface Staller { reporters: Map<string, number>; benches: number; until: number }

function strikeCount(v: Map<string, Map<string, number>>, reporter: string, accused: string): number {
  return v.get(reporter)?.get(accused) ?? 0;
}

function addStrike(v: Map<string, Map<string, number>>, reporter: string, accused: string): void {
  let m = v.get(reporter);
  if (!m) v.set(reporter, (m = new Map()));
  m.set(accused, (m.get(accused) ?? 0) + 1);
}
