// The WebRTC mesh of one peer: a bounded, random, slowly rewired set of neighbour links,
// signalled through the coordinator; the outer exchange (exchange.ts) and bootstrap
// (bootstrap.ts) run on top of it. Built js-libp2p style: createMesh(init)(components).
import { decodeFrame, encodeControl, MAX_FRAME_BYTES } from '../protocol/frame.ts';
import { FrameError } from '../protocol/errors.ts';
import { parseControl, type ControlMessage } from '../protocol/peer-messages.ts';
import { isSoftOffence, parseMeshSignal, type MeshSignal } from '../protocol/messages.ts';
import type { Signaling } from '../protocol/signaling.ts';
import { isConfigHash } from '../protocol/hash.ts';
import { DELTA_DTYPES, NO_COMPRESSION, PHI_DTYPES } from './compress.ts';
import { systemClock, type Clock } from '../protocol/clock.ts';
import { pick, silentLogger, type Logger } from './components.ts';
import { Emitter } from './emitter.ts';
import { ConnectTimeoutError, LinkClosedError, MeshBusyError, MeshConfigError, MeshDestroyedError } from './errors.ts';
import { DEFAULT_DEADLINE } from '../protocol/exchange-link.ts';
import { DeadlineEstimator } from './deadline.ts';
import { ExchangeRun } from './exchange.ts';
import type { Conn, MeshCore, MeshSettings } from './mesh-core.ts';
import { requestState, serveState } from './bootstrap.ts';
import type { StateCheck } from './state-check.ts';
import { describeLinkFailure, simplePeerLinks, type LinkFactory, type RtcImplementation } from './links.ts';
import type { TransferIdentity } from './transfer.ts';
import { DEFAULT_VALIDATION, PartnerValidator, forgetOldest } from './validate.ts';
import type {
  BootState, ExchangeResult, MeshEvents, MeshInit, MeshStats, Offence, OuterPayload, StateProvider,
} from './types.ts';

export interface MeshComponents {
  signaling: Signaling;
  /** @roamhq/wrtc in Node; undefined in browsers. Ignored when `links` is given. */
  rtc?: RtcImplementation;
  /** Replace the WebRTC layer (tests: in-memory links, chaos wrappers). */
  links?: LinkFactory;
  clock?: Clock;
  logger?: Logger;
  /** Uniform [0, 1): every random choice of the mesh (neighbours, partners, ids) uses it. */
  random?: () => number;
}

export interface Mesh {
  /** Our id as the coordinator assigned it; null until it accepted us. */
  readonly peerId: string | null;
  on<K extends keyof MeshEvents>(event: K, fn: (e: MeshEvents[K]) => void): () => void;
  /** Ids of neighbours with an open, greeted link. */
  neighbours(): string[];
  /**
   * One outer step's communication: find one partner (coordinator pool, else a random
   * neighbour), swap φ and Δ, validate what arrived. Resolves within `budgetMs` of the result
   * (pairing wait + connect + transfer deadline) with a validated payload or a solo reason;
   * rejects only on bad arguments or destroy().
   */
  exchange(round: number, payload: OuterPayload, opts: { waitMs: number }): Promise<ExchangeResult>;
  /** Answer new peers' bootstrap requests with snapshots from `provider` (null: refuse them). */
  serveState(provider: StateProvider | null): void;
  /**
   * Pull φ, outer momentum and step counters from a random live neighbour (trusted ones first)
   * whose state passes `check` (state-check.ts); null if none could.
   */
  bootstrap(opts?: { timeoutMs?: number; tries?: number; check?: StateCheck }): Promise<BootState | null>;
  stats(): MeshStats;
  /**
   * A partner's update that the mesh accepted was judged harmful later (the probe,
   * src/round/probe.ts): the same strike, report and cut-off as a validation failure.
   */
  reportOffence(peer: string, code: string, detail: string): void;
  /** Close every link and stop all timers. Safe to call twice. */
  destroy(): void;
}

export function createMesh(init: MeshInit): (components: MeshComponents) => Mesh {
  const settings = resolveSettings(init);
  return (components) => new MeshImpl(settings, components);
}

function resolveSettings(init: MeshInit): MeshSettings {
  if (typeof init.runId !== 'string' || init.runId.length === 0) throw new MeshConfigError('runId must be a non-empty string');
  if (!isConfigHash(init.configHash)) throw new MeshConfigError(`configHash must be 16 lowercase hex digits (configHash()), got "${init.configHash}"`);
  if (!(Number.isInteger(init.elements) && init.elements > 0)) throw new MeshConfigError(`elements must be a positive integer, got ${init.elements}`);
  const min = init.neighbours?.min ?? 4;
  const max = init.neighbours?.max ?? 8;
  if (!(Number.isInteger(min) && min >= 1 && Number.isInteger(max) && max >= min)) {
    throw new MeshConfigError(`neighbours must satisfy 1 <= min <= max, got min=${min} max=${max}`);
  }
  const deadline = { ...DEFAULT_DEADLINE, ...init.deadline };
  if (!(deadline.minMs > 0 && deadline.maxMs >= deadline.minMs && deadline.multiple >= 1)) {
    throw new MeshConfigError(`deadline needs 0 < minMs <= maxMs and multiple >= 1, got ${JSON.stringify(deadline)}`);
  }
  const compression = { ...NO_COMPRESSION, ...init.compression };
  if (!PHI_DTYPES.includes(compression.phi) || !DELTA_DTYPES.includes(compression.delta)) {
    throw new MeshConfigError(`compression must be {phi: ${PHI_DTYPES.join('|')}, delta: ${DELTA_DTYPES.join('|')}}, got ${JSON.stringify(compression)}`);
  }
  return {
    runId: init.runId,
    configHash: init.configHash,
    elements: init.elements,
    minNeighbours: min,
    maxNeighbours: max,
    rewireMs: init.rewireMs ?? 60_000,
    maintainMs: init.maintainMs ?? 1_000,
    connectTimeoutMs: init.connectTimeoutMs ?? 10_000,
    chunkSize: init.chunkSize,
    highWaterBytes: init.highWaterBytes ?? 1 << 20,
    deadline,
    coordinatorGraceMs: init.coordinatorGraceMs ?? 1_000,
    pairRequestTimeoutMs: init.pairRequestTimeoutMs ?? 500,
    validation: { ...DEFAULT_VALIDATION, ...init.validation },
    banAfter: init.banAfter ?? 2,
    compression,
    iceServers: init.iceServers ?? [],
  };
}

const MAX_QUEUED_REPORTS = 100;
/**
 * Direct pairing leaves a partner that stalled us (our exchange with it ran to its deadline
 * without its payload, or the partner ended it once it had ours: exchange.ts, stalled) alone for our next 2^(k−2) rounds after its k-th stall in a row (k >= 2:
 * one stall alone, a link that hiccupped once, costs an honest partner nothing), at most this
 * many; an exchange with it that we accept clears the count. While the coordinator is down,
 * a neighbour that asks everyone at once is paired with whoever is not asking (the question
 * comes first), and one that then sends nothing held each of them a whole deadline every round,
 * each miss doubling the next deadline: solo rounds of maxMs for as long as the outage lasted.
 */
export const MAX_STALL_REST_ROUNDS = 64;
/** A remote may replace its own unopened incoming link this often at most. */
const REOFFER_MS = 1_000;
/** Signals (the offer and its trickled ICE candidates) kept of a held offer. */
const MAX_HELD_SIGNALS = 32;
/**
 * Diallers whose offers are held at once at the hard cap while our pool answer is on its way
 * (onSignal). One slot that every new offer took over let any other dialler, an honest neighbour
 * filling its minimum or a stranger, push out the partner's offer held just before: the pool then
 * named the partner, its offer was gone, and both waited out the connect timeout. Each held offer
 * is at most one 16 KiB SDP and MAX_HELD_SIGNALS candidates of 1 KiB: a few hundred KiB in all.
 */
const MAX_HELD_OFFERS = 8;
/**
 * Bytes a link may hold queued past its high-water mark before no more control messages are put
 * on it. Tensor sends keep within the mark plus one frame each (at most three of an exchange's
 * and one serve at once), so only control messages queue past this, and only to a remote that
 * reads nothing: each question it sends us (pair-req, xchg, state-req, ~60 bytes) is answered, and
 * 20,000 of them held 1.4 MB of answers on its link, without end.
 */
const CONTROL_BACKLOG_BYTES = 8 * MAX_FRAME_BYTES;
/** Time a planned disconnect leaves its bye to reach the remote before the link closes. */
const BYE_FLUSH_MS = 200;

/** The mesh: its public API (Mesh) and the narrow core its exchange, pairing and bootstrap use. */
class MeshImpl implements Mesh, MeshCore {
  readonly events: Emitter<MeshEvents>;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly random: () => number;
  readonly signaling: Signaling;
  readonly validator: PartnerValidator;
  readonly estimator: DeadlineEstimator;
  /** Sender-side error feedback for q8 Δ: what rounding has not delivered yet. */
  private residual: Float32Array | null = null;
  private suspect = false;
  run: ExchangeRun | null = null;
  private partner: string | null = null;

  private readonly links: LinkFactory;
  private readonly conns = new Map<string, Conn>();
  /**
   * Peers cut off, and strikes of those not yet: each at most MAX_REMEMBERED, the oldest dropped
   * first (every new id with a bad hello adds one). A peer's strikes go when it leaves the run
   * (forgetDeparted); its ban stays, since the id may come back with its session.
   */
  private readonly banned = new Set<string>();
  private readonly strikes = new Map<string, number>();
  private readonly reports: [string, string][] = [];
  private livePeers: string[] = [];
  /** Live peers the coordinator says are on probation. */
  private probation = new Set<string>();
  /** Peers we dropped or that dropped us on purpose: not re-dialled by housekeeping until then. */
  private readonly cooldown = new Map<string, number>();
  /** Per partner: stalls in a row and the last of our rounds direct pairing leaves it alone (noteStall). */
  private readonly stalls = new Map<string, { count: number; until: number }>();
  private provider: StateProvider | null = null;
  private timer: unknown = null;
  private lastRewire: number;
  private destroyed = false;
  private readonly unsubscribe: (() => void)[] = [];
  private readonly totals = { exchanges: 0, paired: 0, solo: 0, bytesSent: 0, bytesReceived: 0, linksOpened: 0, linkFailures: 0 };
  private lastLinkError: string | null = null;
  /** Per peer: why our last link to it failed to open (for the exchange that needed it). */
  private readonly linkErrors = new Map<string, string>();
  /** Diallers' offers that came at the hard cap while we wait for our pool answer (see onSignal). */
  private readonly held = new Map<string, { cid: string; sigs: unknown[]; at: number }>();

  constructor(readonly settings: MeshSettings, components: MeshComponents) {
    if (!components?.signaling) throw new MeshConfigError('components.signaling is required');
    this.signaling = components.signaling;
    this.clock = components.clock ?? systemClock;
    this.logger = components.logger ?? silentLogger;
    this.random = components.random ?? Math.random;
    this.links = components.links ?? simplePeerLinks({
      rtc: components.rtc, iceServers: settings.iceServers, ice: () => this.signaling.ice?.() ?? null, clock: this.clock,
    });
    this.events = new Emitter<MeshEvents>((err, ev) => this.logger.error('mesh event listener threw', { event: String(ev), error: String(err) }));
    // On the mesh's clock: a partner's claimed rounds are bounded by the time between our exchanges.
    this.validator = new PartnerValidator(settings.elements, settings.validation, undefined, () => this.clock.now());
    this.estimator = new DeadlineEstimator(settings.deadline);
    this.lastRewire = this.clock.now();
    const s = this.signaling;
    this.unsubscribe.push(
      s.on('signal', (e) => this.onSignal(e.from, e.data)),
      s.on('peers', (e) => {
        const before = this.livePeers;
        this.livePeers = e.peers.filter((p) => typeof p === 'string');
        this.forgetDeparted(before);
        this.probation = new Set(e.probation ?? []);
        this.maintain();
      }),
      s.on('open', () => { this.suspect = false; this.events.emit('coordinator', { up: true }); this.flushReports(); this.maintain(); }),
      s.on('close', () => { this.held.clear(); this.events.emit('coordinator', { up: false }); }),
      s.on('paired', (e) => { if (this.run && e.round === this.run.round) this.onPaired(e.partner); }),
    );
    this.schedule();
  }

  // ---- public API -------------------------------------------------------------------------

  get peerId(): string | null {
    return this.signaling.peerId;
  }

  on<K extends keyof MeshEvents>(event: K, fn: (e: MeshEvents[K]) => void): () => void {
    return this.events.on(event, fn);
  }

  neighbours(): string[] {
    return [...this.conns.values()].filter((c) => c.state === 'open').map((c) => c.peer);
  }

  async exchange(round: number, payload: OuterPayload, opts: { waitMs: number }): Promise<ExchangeResult> {
    if (this.destroyed) throw new MeshDestroyedError('exchange');
    if (this.run) throw new MeshBusyError(round);
    const run = new ExchangeRun(this, round, payload, opts.waitMs);
    this.run = run;
    try {
      const result = withLink(await run.start(), this);
      this.totals.exchanges++;
      if (result.outcome === 'paired') this.totals.paired++; else this.totals.solo++;
      this.totals.bytesSent += result.bytesSent;
      this.totals.bytesReceived += result.bytesReceived;
      this.events.emit('exchange', result);
      return result;
    } finally {
      if (this.run === run) this.run = null;
    }
  }

  serveState(provider: StateProvider | null): void {
    this.provider = provider;
  }

  bootstrap(opts: { timeoutMs?: number; tries?: number; check?: StateCheck } = {}): Promise<BootState | null> {
    if (this.destroyed) return Promise.reject(new MeshDestroyedError('bootstrap'));
    return requestState(this, opts.timeoutMs ?? 30_000, opts.tries ?? 3, opts.check);
  }

  stats(): MeshStats {
    const conns = [...this.conns.values()];
    return {
      neighbours: conns.filter((c) => c.state === 'open').length,
      connecting: conns.filter((c) => c.state === 'connecting').length,
      banned: [...this.banned],
      ...this.totals,
      deadlineMs: this.estimator.deadlineMs(2 * 4 * this.settings.elements),
      lastLinkError: this.lastLinkError,
    };
  }

  /** The open link to `peer` as ICE made it, or why the last one to it failed (for withLink). */
  linkOutcome(peer: string): { link: ExchangeResult['link']; error: string | null } {
    const c = this.conns.get(peer);
    if (c?.state === 'open') {
      const i = c.link.info?.();
      return { link: i?.route ? { ...i.route, connectMs: i.connectMs } : null, error: null };
    }
    // Still trying past the exchange's connect timeout: that link has failed for this round.
    if (c) this.dropConn(c, 'connect timeout', false);
    return { link: null, error: this.linkErrors.get(peer) ?? null };
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
    for (const off of this.unsubscribe.splice(0)) off();
    this.run?.destroy();
    for (const c of [...this.conns.values()]) this.dropConn(c, 'mesh destroyed', true);
    this.events.clear();
  }

  get isDestroyed(): boolean {
    return this.destroyed;
  }

  // ---- MeshCore: used by exchange.ts, pairing.ts and bootstrap.ts ------------------------

  get coordinatorSuspect(): boolean {
    return this.suspect;
  }

  suspectCoordinator(): void {
    this.suspect = true;
  }

  get lastPartner(): string | null {
    return this.partner;
  }

  notePartner(peer: string): void {
    this.partner = peer;
    this.stalls.delete(peer);
  }

  noteStall(peer: string, round: number, pooled: boolean): void {
    const count = (this.stalls.get(peer)?.count ?? 0) + 1;
    this.stalls.delete(peer);
    this.stalls.set(peer, { count, until: count < 2 ? -1 : round + Math.min(MAX_STALL_REST_ROUNDS, 2 ** Math.min(count - 2, 30)) });
    forgetOldest(this.stalls);
    // The same rule for the pool: from the second stall in a row, each one of a partner the pool
    // gave us is reported (soft: evidence, no strike), and the coordinator rests the pair. One
    // of a direct pairing is not: the coordinator takes reports only of the pool's partners.
    if (count >= 2 && pooled) {
      this.logger.warn('partner stalled us again', { peer, round, stalls: count });
      this.report(peer, `stall: no payload of its by our deadline, or it ended the exchange once it had ours, ${count} exchanges in a row (round ${round})`);
    }
  }

  resting(peer: string, round: number): boolean {
    const s = this.stalls.get(peer);
    return s !== undefined && round <= s.until;
  }

  q8Residual(): Float32Array {
    return (this.residual ??= new Float32Array(this.settings.elements));
  }

  identity(): TransferIdentity {
    return { runId: this.settings.runId, configHash: this.settings.configHash, sender: this.signaling.peerId ?? '' };
  }

  conn(peer: string): Conn | undefined {
    return this.conns.get(peer);
  }

  isBanned(peer: string): boolean {
    return this.banned.has(peer);
  }

  /** Open neighbours we may pair with. */
  eligibleNeighbours(): string[] {
    return this.neighbours().filter((p) => !this.banned.has(p));
  }

  onProbation(peer: string): boolean {
    return this.probation.has(peer);
  }

  /** Send a control message; false if the link is not open, or its remote reads nothing (CONTROL_BACKLOG_BYTES). */
  sendControl(peer: string, msg: ControlMessage): boolean {
    const c = this.conns.get(peer);
    if (!c || !c.link.open) return false;
    if (c.link.bufferedAmount > this.settings.highWaterBytes + CONTROL_BACKLOG_BYTES) {
      this.logger.debug('not answering a neighbour that reads nothing', { peer, buffered: c.link.bufferedAmount, t: msg.t });
      return false;
    }
    try {
      c.link.send(encodeControl(msg));
      return true;
    } catch {
      return false;
    }
  }

  /** An open, greeted link to `peer`, connecting first if needed (as `initiator`). */
  ensureOpen(peer: string, initiator: boolean, timeoutMs: number): Promise<Conn> {
    if (this.destroyed) return Promise.reject(new MeshDestroyedError('connect'));
    let c = this.conns.get(peer);
    if (c?.state === 'open') return Promise.resolve(c);
    if (!c && initiator) c = this.connect(peer);
    return new Promise<Conn>((resolve, reject) => {
      let done = false;
      const finish = (ok: boolean) => {
        if (done) return;
        done = true;
        this.clock.clearTimeout(timer);
        this.unwait(peer, finish);
        const now = this.conns.get(peer);
        if (ok && now?.state === 'open') resolve(now);
        else reject(ok ? new LinkClosedError(peer) : new ConnectTimeoutError(peer, timeoutMs));
      };
      const timer = this.clock.setTimeout(() => finish(false), timeoutMs);
      // Not yet connecting (we are the responder): wait for the initiator's offer to create it.
      this.waitOpen(peer, finish);
    });
  }

  reportOffence(peer: string, code: string, detail: string): void {
    this.offence(peer, code, detail);
  }

  /** A validation failure: strike, report to the coordinator, cut off a repeated offender. */
  offence(peer: string, code: string, detail: string, immediateBan = false): void {
    // A soft offence (the probe's CUSUM) is reported, but is no strike: noisy losses add up to
    // one between honest partners now and then, and two would cut off a good partner for good.
    const strikes = (this.strikes.get(peer) ?? 0) + (isSoftOffence(code) && !immediateBan ? 0 : 1);
    this.strikes.delete(peer);
    this.strikes.set(peer, strikes);
    forgetOldest(this.strikes);
    const cutOff = immediateBan || strikes >= this.settings.banAfter;
    this.logger.warn('partner rejected', { peer, code, detail, strikes, cutOff });
    this.report(peer, `${code}: ${detail}`);
    if (cutOff) {
      this.banned.delete(peer);
      this.banned.add(peer);
      forgetOldest(this.banned);
      const c = this.conns.get(peer);
      if (c) this.dropConn(c, `cut off: ${code}`, false);
    }
    const e: Offence = { peer, code, detail, strikes, cutOff };
    this.events.emit('offence', e);
  }

  /**
   * Strikes of peers that were live and are no longer (`before`: the previous list) go with them.
   * Should one come back under its id, it starts again from none here; the coordinator's own count
   * of our reports of it, which vetoes the pair at the second, lasts through its return.
   */
  private forgetDeparted(before: readonly string[]): void {
    if (this.strikes.size === 0) return;
    const was = new Set(before), live = new Set(this.livePeers);
    for (const p of [...this.strikes.keys()]) if (was.has(p) && !live.has(p)) this.strikes.delete(p);
  }

  /** Listen to control messages arriving on `peer`'s link; returns the unsubscribe. */
  listen(peer: string, fn: (msg: ControlMessage) => void): () => void {
    const c = this.conns.get(peer);
    if (!c) return () => {};
    c.listeners.add(fn);
    return () => { c.listeners.delete(fn); };
  }

  /** Run `fn` with `conn` marked busy, so trimming and rewiring leave it alone meanwhile. */
  async holding<T>(conn: Conn, fn: () => Promise<T>): Promise<T> {
    conn.active++;
    try {
      return await fn();
    } finally {
      conn.active--;
    }
  }

  randomU32(): number {
    return Math.floor(this.random() * 0x100000000) >>> 0;
  }

  // ---- links ------------------------------------------------------------------------------

  private waiters = new Map<string, Set<(ok: boolean) => void>>();

  private waitOpen(peer: string, fn: (ok: boolean) => void): void {
    let set = this.waiters.get(peer);
    if (!set) this.waiters.set(peer, (set = new Set()));
    set.add(fn);
  }

  /**
   * Forget one wait for `peer`'s link (it ended). Kept until the peer's link opened or closed, a
   * wait for a partner that never dialled us (the pool named us its responder) stayed for good:
   * one per such round, under an id that need never come back.
   */
  private unwait(peer: string, fn: (ok: boolean) => void): void {
    const set = this.waiters.get(peer);
    if (!set) return;
    set.delete(fn);
    if (set.size === 0) this.waiters.delete(peer);
  }

  private wake(peer: string, ok: boolean): void {
    const set = this.waiters.get(peer);
    if (!set) return;
    this.waiters.delete(peer);
    for (const fn of set) fn(ok);
  }

  private connect(peer: string): Conn {
    const cid = this.randomU32().toString(36) + this.randomU32().toString(36);
    return this.addConn(peer, cid, true);
  }

  private addConn(peer: string, cid: string, initiator: boolean): Conn {
    const link = this.links({ remote: peer, initiator });
    const c: Conn = {
      peer, cid, link, initiator, state: 'connecting', createdAt: this.clock.now(), openedAt: NaN,
      inbound: new Map(), active: 0, listeners: new Set(),
    };
    this.conns.set(peer, c);
    link.on('signal', (sig) => {
      const wrapped: MeshSignal = { mesh: 1, cid, sig };
      this.signaling.sendSignal(peer, wrapped);
    });
    link.on('connect', () => {
      const id = this.signaling.peerId;
      if (!id) { this.dropConn(c, 'no peer id', false); return; }
      this.sendRaw(c, { t: 'hello', peer: id, runId: this.settings.runId, configHash: this.settings.configHash, elements: this.settings.elements });
    });
    link.on('data', (bytes) => this.onData(c, bytes));
    link.on('close', ({ reason }) => this.onLinkClosed(c, reason));
    return c;
  }

  private sendRaw(c: Conn, msg: ControlMessage): void {
    try { c.link.send(encodeControl(msg)); } catch { /* closed: onLinkClosed handles it */ }
  }

  private onSignal(from: string, data: unknown): void {
    if (this.destroyed || typeof from !== 'string' || from === this.signaling.peerId || this.banned.has(from)) return;
    const parsed = parseMeshSignal(data);
    if (!parsed.ok) {
      this.logger.debug('ignoring a malformed relayed signal', { from, error: parsed.error });
      return;
    }
    const w = parsed.value;
    const existing = this.conns.get(from);
    if (existing && existing.cid === w.cid) { existing.link.signal(w.sig); return; }
    const h = this.held.get(from);
    if (h && h.cid === w.cid) {
      // Its ICE candidates trickle in after the offer: keep a few for when it is admitted.
      if (h.sigs.length < MAX_HELD_SIGNALS) h.sigs.push(w.sig);
      return;
    }
    const isOffer = (w.sig as { type?: unknown } | null)?.type === 'offer';
    if (!isOffer) return; // a late candidate of a link we already replaced
    if (existing) {
      // Both sides dialled at once: the smaller id's offer wins, the other side yields.
      const mine = this.signaling.peerId ?? '';
      if (existing.state === 'connecting' && existing.initiator && mine < from) return;
      // A dialler re-offering before its last offer could have failed would make us build a
      // WebRTC connection per offer it sends: one per REOFFER_MS at most.
      if (!existing.initiator && existing.state === 'connecting' && this.clock.now() - existing.createdAt < Math.min(REOFFER_MS, this.settings.connectTimeoutMs)) return;
      this.dropConn(existing, 'replaced by a new connection from the remote', true);
    } else if (this.conns.size >= this.settings.maxNeighbours + 2 && this.run?.expectedPartner !== from) {
      // At the hard cap only the partner the pool named gets a link. While our own pool answer
      // is still on its way the dialler may be that partner (its answer came first): hold its
      // offer, and admit it only if the pool names it. One per dialler (its new offer replaces
      // its own), MAX_HELD_OFFERS in all, first come: a later dialler never displaces one held.
      if (this.run?.phase === 'pairing' && this.run.expectedPartner === null) {
        if (h || this.held.size < MAX_HELD_OFFERS) {
          this.held.set(from, { cid: w.cid, sigs: [w.sig], at: this.clock.now() });
          return;
        }
        this.logger.debug('refusing a connection: at the hard cap, and holding offers enough', { from });
        return;
      }
      this.logger.debug('refusing a connection: at the hard cap', { from });
      return;
    }
    const c = this.addConn(from, w.cid, false);
    c.link.signal(w.sig);
  }

  /** The pool answered our ready: admit the partner's held offer, if any; drop the others. */
  private onPaired(partner: string | null): void {
    const h = partner === null ? undefined : this.held.get(partner);
    this.held.clear();
    if (!h || partner === null || this.destroyed || this.banned.has(partner)) return;
    const existing = this.conns.get(partner);
    if (existing) return; // a link of its own since: that one is used
    const c = this.addConn(partner, h.cid, false);
    for (const sig of h.sigs) c.link.signal(sig);
  }

  private onData(c: Conn, bytes: Uint8Array): void {
    if (this.conns.get(c.peer) !== c) return;
    let frame;
    try {
      frame = decodeFrame(bytes);
    } catch (err) {
      // On an ordered channel a bad frame breaks whatever transfer it belonged to: fail them all.
      const code = err instanceof FrameError ? err.code : 'ERR_FRAME';
      this.logger.warn('bad frame', { peer: c.peer, code, error: String(err) });
      for (const a of c.inbound.values()) a.fail(err);
      return;
    }
    if (frame.type === 'chunk') {
      if (c.state !== 'open') return;
      c.inbound.get(frame.header.transferId)?.add(frame.header, frame.payload);
      return;
    }
    let msg: ControlMessage;
    try {
      msg = parseControl(frame.message);
    } catch (err) {
      this.logger.warn('bad control message', { peer: c.peer, error: String(err) });
      return;
    }
    if (c.state !== 'open') {
      if (msg.t === 'hello') this.onHello(c, msg);
      return;
    }
    this.onControl(c, msg);
  }

  private onHello(c: Conn, msg: Extract<ControlMessage, { t: 'hello' }>): void {
    const s = this.settings;
    const problem =
      msg.peer !== c.peer ? ['ERR_HELLO_IDENTITY', `says it is "${msg.peer}"`] :
      msg.runId !== s.runId ? ['ERR_FRAME_RUN', `is in run "${msg.runId}", not "${s.runId}"`] :
      msg.configHash !== s.configHash ? ['ERR_FRAME_CONFIG', `has config ${msg.configHash}, ours is ${s.configHash}`] :
      msg.elements !== s.elements ? ['ERR_FRAME_SIZE', `has ${msg.elements} elements, ours ${s.elements}`] : null;
    if (problem) {
      // It can never be a valid partner: cut it off at once.
      this.offence(c.peer, problem[0], `hello from ${c.peer} ${problem[1]}`, true);
      this.dropConn(c, problem[0], false);
      return;
    }
    c.state = 'open';
    this.totals.linksOpened++;
    c.openedAt = this.clock.now();
    this.logger.debug('neighbour up', { peer: c.peer });
    this.events.emit('neighbour:up', { peer: c.peer });
    this.wake(c.peer, true);
  }

  private onControl(c: Conn, msg: ControlMessage): void {
    for (const fn of [...c.listeners]) fn(msg);
    switch (msg.t) {
      case 'bye':
        this.coolDown(c.peer);
        this.dropConn(c, 'remote said bye', false);
        return;
      case 'state-req':
        void this.holding(c, () => serveState(this, c, msg.nonce, this.provider));
        return;
      case 'pair-req':
      case 'pair-ack':
      case 'xchg':
      case 'abort':
        if (this.run) this.run.onControl(c.peer, msg);
        // No exchange running: an announcement or a yes is answered with an abort naming the
        // round it carried, the sender's (exchange.ts, onAbort); the sender may not wait for us.
        else if (msg.t === 'pair-req') this.sendControl(c.peer, { t: 'pair-ack', nonce: msg.nonce, ok: false, reason: 'not-ready' });
        else if (msg.t === 'xchg') this.sendControl(c.peer, { t: 'abort', round: 0, reason: 'not-ready', yourRound: msg.round });
        else if (msg.t === 'pair-ack' && msg.ok) this.sendControl(c.peer, { t: 'abort', round: 0, reason: 'not-ready', yourRound: msg.round });
        return;
      default:
        return;
    }
  }

  private onLinkClosed(c: Conn, reason: string): void {
    if (this.conns.get(c.peer) !== c) return;
    this.conns.delete(c.peer);
    // A link that never opened is a failure unless we closed it for our own reasons.
    // A link that never opened failed: it timed out, or the network closed it (ICE failure). One we
    // dropped for our own reasons (trimmed, replaced, cut off) is not a connectivity problem.
    if (c.state === 'connecting' && !this.destroyed && (c.dropped === undefined || c.dropped === 'connect timeout')) {
      const info = c.link.info?.();
      const error = info && !info.route ? describeLinkFailure(info, reason) : reason;
      this.totals.linkFailures++;
      this.lastLinkError = error;
      this.linkErrors.set(c.peer, error);
      if (this.linkErrors.size > 256) this.linkErrors.delete(this.linkErrors.keys().next().value!);
      this.logger.info('link failed to open', { peer: c.peer, error });
    }
    const err = new LinkClosedError(c.peer);
    for (const a of c.inbound.values()) a.fail(err);
    c.inbound.clear();
    c.listeners.clear();
    if (c.state === 'open') this.events.emit('neighbour:down', { peer: c.peer, reason });
    this.logger.debug('link closed', { peer: c.peer, reason });
    this.run?.onLinkClosed(c.peer);
    this.wake(c.peer, false);
  }

  /** Housekeeping leaves `peer` alone for a while: a full peer that trimmed us would trim us again. */
  private coolDown(peer: string): void {
    this.cooldown.set(peer, this.clock.now() + Math.max(5_000, 20 * this.settings.maintainMs));
  }

  /** Close a link; `bye` first when it is a planned disconnect the remote should not mistake for a crash. */
  private dropConn(c: Conn, reason: string, bye: boolean): void {
    c.dropped ??= reason;
    if (bye) this.coolDown(c.peer);
    if (bye && c.state === 'open' && !this.destroyed) {
      // Closing the connection at once would drop the bye still queued on the channel: forget
      // the link now, close it a moment later.
      this.sendRaw(c, { t: 'bye' });
      this.onLinkClosed(c, reason);
      this.clock.setTimeout(() => c.link.destroy(reason), BYE_FLUSH_MS);
      return;
    }
    c.link.destroy(reason);
    this.onLinkClosed(c, reason);
  }

  // ---- housekeeping -----------------------------------------------------------------------

  private schedule(): void {
    if (this.destroyed) return;
    this.timer = this.clock.setTimeout(() => {
      this.maintain();
      this.schedule();
    }, this.settings.maintainMs);
  }

  private busy(peer: string): boolean {
    return (this.run?.involves(peer) ?? false) || (this.conns.get(peer)?.active ?? 0) > 0;
  }

  private maintain(): void {
    if (this.destroyed) return;
    const now = this.clock.now();
    const s = this.settings;
    for (const c of [...this.conns.values()]) {
      if (c.state === 'connecting' && now - c.createdAt > s.connectTimeoutMs) this.dropConn(c, 'connect timeout', false);
    }
    for (const [from, h] of this.held) if (this.run?.phase !== 'pairing' || now - h.at > s.connectTimeoutMs) this.held.delete(from);
    const me = this.signaling.peerId;
    if (!this.signaling.connected || !me) return; // without signaling no new link can form
    const live = new Set(this.livePeers);
    for (const [p, until] of this.cooldown) if (until <= now) this.cooldown.delete(p);
    const strangers = () => this.livePeers.filter((p) => p !== me && !this.conns.has(p) && !this.banned.has(p) && !this.cooldown.has(p));
    // Fill up to min.
    for (let missing = s.minNeighbours - this.conns.size; missing > 0; missing--) {
      const p = pick(this.random, strangers());
      if (!p) break;
      this.connect(p);
    }
    // Trim to max: evict random idle neighbours. Prefer ones the coordinator no longer lists,
    // then ones past their grace period: a newcomer that just dialled us needs its first links
    // to bootstrap and pair, so older links make room for it.
    const idle = () => this.neighbours().filter((p) => !this.busy(p));
    const grace = Math.max(2_000, 5 * s.maintainMs);
    const settled = (p: string) => now - (this.conns.get(p)?.openedAt ?? now) >= grace;
    // Only open links count: unopened incoming ones (a flood of offers that never complete) must
    // not push out working neighbours; the hard cap in onSignal bounds them.
    while (this.neighbours().length > s.maxNeighbours) {
      const gone = idle().filter((p) => !live.has(p));
      const old = idle().filter(settled);
      const p = pick(this.random, gone.length > 0 ? gone : old.length > 0 ? old : idle());
      if (!p) break;
      this.dropConn(this.conns.get(p)!, 'trimmed to max neighbours', true);
    }
    // Rewire: swap one random idle neighbour for a random stranger.
    if (now - this.lastRewire >= s.rewireMs) {
      this.lastRewire = now;
      const stranger = pick(this.random, strangers());
      const victim = pick(this.random, idle());
      if (stranger && victim && this.conns.size >= s.minNeighbours) {
        this.logger.debug('rewiring', { drop: victim, add: stranger });
        this.dropConn(this.conns.get(victim)!, 'rewired', true);
        this.connect(stranger);
      }
    }
    this.flushReports();
  }

  private report(peer: string, reason: string): void {
    this.reports.push([peer, reason]);
    if (this.reports.length > MAX_QUEUED_REPORTS) this.reports.shift();
    this.flushReports();
  }

  private flushReports(): void {
    if (!this.signaling.connected || !this.signaling.reportOffender) return;
    for (const [peer, reason] of this.reports.splice(0)) this.signaling.reportOffender(peer, reason);
  }
}

/** The exchange's result with its link: the route ICE chose, or why no link opened. */
function withLink(r: ExchangeResult, mesh: MeshImpl): ExchangeResult {
  if (r.partner === null) return { ...r, link: null, linkError: null };
  const o = mesh.linkOutcome(r.partner);
  return { ...r, link: o.link, linkError: r.reason === 'connect-failed' ? o.error : null };
}
