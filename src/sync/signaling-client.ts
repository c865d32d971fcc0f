// The volunteer's connection to the coordinator, for browsers and Node alike (the WebSocket
// constructor is injected: the page passes the global one, Node passes `ws`). It implements the
// mesh's `Signaling` boundary and adds what the trainer needs: metric reports that survive a
// coordinator outage, and serving state for checkpoints.
//
// Training must go on while the coordinator is down (docs/design.md section 3), so:
// - a dropped connection is retried for ever with exponential backoff and jitter; the signed
//   session token brings back the same peer id, even across a coordinator restart;
// - reports are kept until the coordinator acknowledges them (it acks only after its SQLite
//   commit) and re-sent after a reconnect; sequence numbers make re-sends idempotent;
// - a `ready()` that cannot reach the coordinator is answered locally with a solo step once
//   its wait runs out, so the trainer never blocks on pairing.
import type { IceConfig, PairAssignment, Signaling, SignalingEventMap } from '../protocol/signaling.ts';
import {
  DEFAULT_LIMITS, MAX_OFFENDER_REASON, PROTOCOL_VERSION, parseServerMessage, refusedReportSeq,
  type ClientMessage, type ErrorMsg, type ReportFields, type ReportMsg, type RunInfo, type ServerMessage, type WelcomeMsg,
} from '../protocol/messages.ts';
import { decodeStateFrame, encodeStateFrame, STATE_HEADER_MAX, stateFrameBytes, type StateFrame } from '../protocol/state-frame.ts';
import { fetchWhole, HttpRefusal } from '../protocol/retry-fetch.ts';

/** What we use of a WebSocket; the browser's and the `ws` package's both fit. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketCtor = new (url: string) => WebSocketLike;

/** Where the session token is kept between connections (localStorage in browsers). */
export interface SessionStore {
  load(): string | null;
  save(token: string | null): void;
}

export function memorySessionStore(initial: string | null = null): SessionStore {
  let v = initial;
  return { load: () => v, save: (t) => { v = t; } };
}

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(h: unknown): void;
  now(): number;
}

const realTimers: Timers = {
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (h) => globalThis.clearTimeout(h as ReturnType<typeof setTimeout>),
  now: () => Date.now(),
};

export interface SignalingClientInit {
  /** Coordinator base URL, e.g. http://127.0.0.1:8787. */
  url: string;
  /** Run to join (the coordinator's default run if omitted). */
  run?: string;
  WebSocket: WebSocketCtor;
  fetch?: typeof fetch;
  client?: { kind: 'browser' | 'node'; adapter?: string; version?: string };
  session?: SessionStore;
  /** Reconnect delay: initialMs · 2^attempt capped at maxMs, times a random factor in [1 - jitter, 1]. */
  backoff?: { initialMs: number; maxMs: number; jitter: number };
  /** Reports kept while the coordinator is unreachable; the oldest are dropped beyond it. */
  maxBufferedReports?: number;
  random?: () => number;
  timers?: Timers;
}

/** Events beyond the mesh's: for the trainer and the volunteer UI. */
export interface ClientEventMap extends SignalingEventMap {
  welcome: WelcomeMsg;
  config: RunInfo;
  /** An error frame from the coordinator (a rejected message, or the reason for a close). */
  error: ErrorMsg;
  ack: { seq: number; duplicate: boolean };
  /** The client gave up reconnecting (run stopped or unknown, replaced by another tab, ...). */
  stopped: { reason: string };
  /** A state upload for a checkpoint finished (ok) or failed (error). */
  'state-served': { id: string; ok: boolean; error?: string };
  /** New ICE servers (in the welcome, or renewed TURN credentials). */
  ice: IceConfig;
}

/**
 * The shortest heartbeat period the client keeps, whatever a welcome says (its schema allows 0):
 * at 0 ms the heartbeat re-armed itself at once and sent a frame every turn of the event loop,
 * past the coordinator's 50 frames/s. The coordinator's own liveness sweep runs no faster.
 */
const MIN_HEARTBEAT_MS = 100;

/** Codes after which reconnecting cannot help. */
const TERMINAL: ReadonlySet<string> = new Set(['unknown-run', 'run-stopped', 'bad-version']);
const CLOSE_REPLACED = 4000;
/**
 * How long a newcomer waits out the coordinator's download budget for the newest checkpoint before
 * it starts fresh: a crowd behind one NAT fetching `base`'s 387 MB states takes turns.
 */
export const CHECKPOINT_WAIT_MS = 5 * 60_000;

export type StateProvider = () => StateFrame | Promise<StateFrame>;

export class SignalingClient implements Signaling {
  private ws: WebSocketLike | null = null;
  private welcomeMsg: WelcomeMsg | null = null;
  /** Other live peers of the run: the welcome's list, then the coordinator's changes applied to it. */
  private livePeers = new Set<string>();
  /** Those of livePeers the coordinator says are on probation (asked last for bootstrap state). */
  private onProbation = new Set<string>();
  /** The last ICE servers the coordinator sent: kept across disconnects (links need TURN then too). */
  private iceConfig: IceConfig | null = null;
  private readonly listeners = new Map<keyof ClientEventMap, Set<(e: never) => void>>();
  private readonly unacked = new Map<number, ReportMsg>();
  private readonly timers: Timers;
  private readonly random: () => number;
  private readonly session: SessionStore;
  private readonly backoff: { initialMs: number; maxMs: number; jitter: number };
  private readonly maxBuffered: number;
  private attempt = 0;
  private running = false;
  private reconnectTimer: unknown = null;
  private heartbeatTimer: unknown = null;
  private flushTimer: unknown = null;
  private flushQueue: number[] = [];
  /** Sequence numbers start at the client's start time × 1000, so a reloaded page never reuses one. */
  private nextSeq: number;
  private pendingReady: { round: number; timer: unknown } | null = null;
  private stateProvider: StateProvider | null = null;
  /** Why the last connection ended (for the volunteer UI). */
  lastCloseReason: string | null = null;
  /** Reports dropped because the buffer was full. */
  droppedReports = 0;
  /** Reports the coordinator refused (dropped, never sent again). */
  refusedReports = 0;
  /** Frames not sent because they exceeded the coordinator's frame limit. */
  droppedFrames = 0;

  constructor(private readonly init: SignalingClientInit) {
    this.timers = init.timers ?? realTimers;
    this.random = init.random ?? Math.random;
    this.session = init.session ?? memorySessionStore();
    this.backoff = init.backoff ?? { initialMs: 500, maxMs: 30_000, jitter: 0.5 };
    this.maxBuffered = init.maxBufferedReports ?? 10_000;
    this.nextSeq = this.timers.now() * 1000;
  }

  get peerId(): string | null {
    return this.welcomeMsg?.peerId ?? null;
  }

  get connected(): boolean {
    return this.welcomeMsg !== null && this.ws !== null;
  }

  get welcome(): WelcomeMsg | null {
    return this.welcomeMsg;
  }

  /** ICE servers and policy for new links (null until the first welcome). */
  ice(): IceConfig | null {
    return this.iceConfig;
  }

  private setIce(servers: WelcomeMsg['ice'], run: RunInfo): void {
    this.iceConfig = { iceServers: servers?.iceServers ?? [], expiresAt: servers?.expiresAt ?? null, policy: run.icePolicy ?? 'all' };
    this.emit('ice', this.iceConfig);
  }

  /** Reports not yet acknowledged by the coordinator. */
  get pendingReports(): number {
    return this.unacked.size;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.connect();
  }

  /** Closes for good (no reconnect). Safe to call twice. */
  stop(reason = 'stopped by the client'): void {
    if (!this.running) return;
    this.running = false;
    this.timers.clearTimeout(this.reconnectTimer);
    const ws = this.ws;
    this.dropConnection(reason);
    ws?.close(1000, 'bye');
  }

  on<K extends keyof ClientEventMap>(event: K, fn: (e: ClientEventMap[K]) => void): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(fn as (e: never) => void);
    return () => set!.delete(fn as (e: never) => void);
  }

  sendSignal(to: string, data: unknown): void {
    if (!this.connected) return;
    this.send({ t: 'signal', to, data: data as Record<string, unknown> });
  }

  ready(round: number, waitMs: number): void {
    this.clearPendingReady();
    const timer = this.timers.setTimeout(() => {
      // Our own deadline, with a margin for the round trip: if the coordinator has not answered
      // (down, or the frame was lost), take the solo step rather than stall training.
      if (this.pendingReady?.round === round) this.resolveReady({ round, partner: null, initiator: false });
    }, waitMs + (this.connected ? 2_000 : 0));
    this.pendingReady = { round, timer };
    if (this.connected) this.send({ t: 'ready', round, waitMs });
  }

  /**
   * Tells the coordinator that `peer` sent us a payload that failed validation, so it records
   * the event and never pairs us with that peer again. Dropped while disconnected (the mesh
   * queues its reports and re-sends them once we are connected again).
   */
  reportOffender(peer: string, reason: string): void {
    if (!this.connected || peer === this.peerId) return;
    const text = reason.trim() || 'unspecified';
    this.send({ t: 'offender', peer, reason: text.length > MAX_OFFENDER_REASON ? text.slice(0, MAX_OFFENDER_REASON - 1) + '…' : text });
  }

  /** Queues one metric report; it is kept until the coordinator acknowledges it. Returns its seq. */
  report(fields: ReportFields): number {
    const seq = this.nextSeq++;
    const msg: ReportMsg = { t: 'report', seq, ...fields };
    this.unacked.set(seq, msg);
    while (this.unacked.size > this.maxBuffered) {
      const oldest = this.unacked.keys().next().value as number;
      this.unacked.delete(oldest);
      this.droppedReports++;
    }
    if (this.connected) {
      this.flushQueue.push(seq);
      this.pumpFlush();
    }
    return seq;
  }

  /** Who answers the coordinator's checkpoint requests (the trainer's φ and momentum). */
  setStateProvider(fn: StateProvider | null): void {
    this.stateProvider = fn;
  }

  /**
   * The newest checkpoint's state, for bootstrapping when no live peer can serve; null if none.
   * A coordinator that asks this address to wait for its share of downloads (429, Retry-After;
   * server/download-budget.ts) is waited out for up to CHECKPOINT_WAIT_MS, then the refusal is
   * thrown; a transfer that breaks off (387 MB on `base`) is taken up where it stopped, and one
   * longer than a frame of `floats` (the run's layout) is dropped as soon as it is. The request
   * carries this peer's session (the welcome's token): the coordinator serves a live peer's
   * bootstrap from a share of its download budget that anonymous downloads cannot take.
   */
  async fetchCheckpointState(floats?: number): Promise<StateFrame | null> {
    const ref = this.welcomeMsg?.checkpoint;
    if (!ref) return null;
    let bytes: Uint8Array;
    try {
      // No more than a frame of `floats` fills (one past it does not fit the layout anyway).
      const maxBytes = floats === undefined ? undefined : stateFrameBytes(floats, STATE_HEADER_MAX);
      const session = this.session.load();
      bytes = await fetchWhole(this.fetchFn(), this.httpUrl(ref.stateUrl), {
        maxWaitMs: CHECKPOINT_WAIT_MS, ...(maxBytes !== undefined ? { maxBytes } : {}),
        ...(session ? { headers: { authorization: `Bearer ${session}` } } : {}),
      });
    } catch (err) {
      if (err instanceof HttpRefusal) throw new Error(`checkpoint ${ref.id}: GET ${ref.stateUrl} answered ${err.detail}`);
      throw err;
    }
    return decodeStateFrame(bytes);
  }

  // ---------- connection ----------

  private connect(): void {
    if (!this.running) return;
    const url = this.init.url.replace(/^http/, 'ws').replace(/\/$/, '') + '/api/ws';
    let ws: WebSocketLike;
    try {
      ws = new this.init.WebSocket(url);
    } catch (err) {
      this.scheduleReconnect(`cannot open ${url}: ${(err as Error).message}`);
      return;
    }
    this.ws = ws;
    let closeReason = 'connection closed';
    ws.onopen = () => {
      const session = this.session.load();
      const hello: ClientMessage = { t: 'hello', v: PROTOCOL_VERSION };
      if (this.init.run) hello.run = this.init.run;
      if (session) hello.session = session;
      if (this.init.client) hello.client = this.init.client;
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data !== 'string') return;
      const r = parseServerMessage(ev.data);
      // A frame its schema refuses (a proxy, a version skew) is dropped, and said so.
      if (!r.ok) return this.emit('error', { t: 'error', code: 'bad-message', message: `refused a coordinator frame: ${r.error}` });
      const m = r.msg;
      if (m.t === 'error' && m.fatal) closeReason = `${m.code}: ${m.message}`;
      this.onMessage(m);
    };
    ws.onerror = () => { /* onclose follows and carries the decision */ };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      const wasConnected = this.connected;
      this.dropConnection(ev.reason ? `${closeReason} (${ev.code} ${ev.reason})` : closeReason);
      if (!this.running) return;
      if (ev.code === CLOSE_REPLACED) return this.giveUp('replaced by a newer connection of this peer');
      // The close code's reason names why (e.g. run-stopped) when no error frame came first.
      if (TERMINAL.has(ev.reason)) return this.giveUp(closeReason === 'connection closed' ? `${ev.reason}: the coordinator closed the connection` : closeReason);
      if (wasConnected) this.attempt = 0;
      this.scheduleReconnect(closeReason);
    };
  }

  private onMessage(m: ServerMessage): void {
    switch (m.t) {
      case 'welcome':
        this.welcomeMsg = m;
        this.setIce(m.ice, m.run);
        this.attempt = 0;
        this.session.save(m.session);
        this.startHeartbeat(Math.max(MIN_HEARTBEAT_MS, m.heartbeatMs));
        this.emit('welcome', m);
        this.emit('open', { peerId: m.peerId });
        this.livePeers = new Set(m.peers);
        this.onProbation = new Set(m.probation ?? []);
        this.emitPeers();
        // Everything not yet acknowledged goes again (the coordinator drops duplicates).
        this.flushQueue = [...this.unacked.keys()];
        this.pumpFlush();
        return;
      case 'ack': {
        this.unacked.delete(m.seq);
        this.emit('ack', { seq: m.seq, duplicate: m.duplicate === true });
        return;
      }
      case 'signal':
        this.emit('signal', { from: m.from, data: m.data });
        return;
      case 'peers-change': {
        const self = this.welcomeMsg?.peerId;
        for (const p of m.left) { this.livePeers.delete(p); this.onProbation.delete(p); }
        for (const p of m.joined) if (p !== self) this.livePeers.add(p);
        for (const p of m.probation ?? []) if (this.livePeers.has(p)) this.onProbation.add(p);
        for (const p of m.trusted ?? []) this.onProbation.delete(p);
        this.emitPeers();
        return;
      }
      case 'paired':
        if (!this.pendingReady || this.pendingReady.round !== m.round) return;
        if (m.partner === null) this.resolveReady({ round: m.round, partner: null, initiator: m.initiator });
        else this.resolveReady({ round: m.round, partner: m.partner, partnerRound: m.partnerRound, initiator: m.initiator, ...(m.probation ? { probation: true } : {}) });
        return;
      case 'ice':
        if (this.welcomeMsg) this.setIce(m.ice, this.welcomeMsg.run);
        return;
      case 'config':
        if (this.welcomeMsg) this.welcomeMsg = { ...this.welcomeMsg, run: m.run };
        if (this.iceConfig && m.run.icePolicy && m.run.icePolicy !== this.iceConfig.policy) this.iceConfig = { ...this.iceConfig, policy: m.run.icePolicy };
        this.emit('config', m.run);
        return;
      case 'state-request':
        void this.serveState(m.id, m.url);
        return;
      case 'error': {
        if (m.code === 'bad-session') this.session.save(null);
        // A report the coordinator refused (a claim it judged impossible) is never stored: sent
        // again at every reconnect, each refusal was another invalid frame, and past maxStrikes
        // of them the coordinator closed the connection, to get the same reports again.
        const refused = refusedReportSeq(m);
        if (refused !== null && this.unacked.delete(refused)) this.refusedReports++;
        this.emit('error', m);
        return;
      }
    }
  }

  private dropConnection(reason: string): void {
    const had = this.ws !== null;
    if (this.ws) {
      this.ws.onopen = this.ws.onmessage = this.ws.onclose = null;
      // Closing a socket still connecting makes Node's `ws` emit an error: with no handler that
      // is an uncaught exception, and it took the volunteer process down when it stopped during
      // a reconnect. Whatever the socket we let go says now is ignored.
      this.ws.onerror = () => {};
    }
    this.ws = null;
    this.welcomeMsg = null;
    this.timers.clearTimeout(this.heartbeatTimer);
    this.timers.clearTimeout(this.flushTimer);
    this.flushTimer = null;
    this.flushQueue = [];
    // The coordinator will never answer this ready now: step solo.
    if (this.pendingReady) this.resolveReady({ round: this.pendingReady.round, partner: null, initiator: false });
    if (had) this.emit('close', { reason });
  }

  private scheduleReconnect(reason: string): void {
    const { initialMs, maxMs, jitter } = this.backoff;
    const base = Math.min(maxMs, initialMs * 2 ** Math.min(this.attempt, 30));
    // Jitter spreads a crowd of volunteers reconnecting after a coordinator restart.
    const delay = Math.max(0, base * (1 - jitter * this.random()));
    this.attempt++;
    this.timers.clearTimeout(this.reconnectTimer);
    this.reconnectTimer = this.timers.setTimeout(() => this.connect(), delay);
    this.lastCloseReason = reason;
  }

  private giveUp(reason: string): void {
    this.running = false;
    this.emit('stopped', { reason });
  }

  private emitPeers(): void {
    const peers = [...this.livePeers];
    const probation = peers.filter((p) => this.onProbation.has(p));
    this.emit('peers', probation.length > 0 ? { peers, probation } : { peers });
  }

  private startHeartbeat(ms: number): void {
    this.timers.clearTimeout(this.heartbeatTimer);
    this.heartbeatTimer = this.timers.setTimeout(() => {
      if (!this.connected) return;
      this.send({ t: 'hb' });
      this.startHeartbeat(ms);
    }, ms);
  }

  /**
   * Sends queued reports within a share of the coordinator's rate limit, so a long backlog
   * after an outage never trips it (signals and heartbeats keep the rest).
   */
  private pumpFlush(): void {
    if (this.flushTimer !== null || !this.connected) return;
    const limits = this.welcomeMsg!.limits;
    const perTick = Math.max(1, Math.floor(limits.messagesPerSecond / 10 / 2));
    let sent = 0;
    while (this.flushQueue.length > 0 && sent < perTick) {
      const seq = this.flushQueue.shift()!;
      const msg = this.unacked.get(seq);
      if (!msg) continue;
      this.send(msg);
      sent++;
    }
    if (this.flushQueue.length > 0) {
      this.flushTimer = this.timers.setTimeout(() => { this.flushTimer = null; this.pumpFlush(); }, 100);
    }
  }

  private async serveState(id: string, url: string): Promise<void> {
    const fail = (error: string) => {
      this.send({ t: 'state-fail', id, reason: error.slice(0, 500) });
      this.emit('state-served', { id, ok: false, error });
    };
    if (!this.stateProvider) return fail('this peer has no state to serve yet');
    const session = this.session.load();
    try {
      const frame = encodeStateFrame(await this.stateProvider());
      const res = await this.fetchFn()(this.httpUrl(url), {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream', authorization: `Bearer ${session}` },
        body: frame,
      });
      if (!res.ok) return fail(`upload answered ${res.status}: ${(await res.text()).slice(0, 200)}`);
      this.emit('state-served', { id, ok: true });
    } catch (err) {
      fail((err as Error).message);
    }
  }

  // ---------- helpers ----------

  private resolveReady(a: PairAssignment): void {
    this.clearPendingReady();
    this.emit('paired', a);
  }

  private clearPendingReady(): void {
    if (this.pendingReady) this.timers.clearTimeout(this.pendingReady.timer);
    this.pendingReady = null;
  }

  private send(m: ClientMessage): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== 1) return;
    const text = JSON.stringify(m);
    // The coordinator closes the socket (1009) on a frame over its limit, which would cost us
    // the pending ready and every other frame in flight: such a frame is dropped here instead.
    const limit = this.welcomeMsg?.limits.maxMessageBytes ?? DEFAULT_LIMITS.maxMessageBytes;
    const bytes = text.length * 3 <= limit ? text.length : new TextEncoder().encode(text).length;
    if (bytes > limit) {
      this.droppedFrames++;
      const message = `dropped an outgoing ${m.t} frame of ${bytes} bytes: over the coordinator's limit of ${limit}`;
      console.warn(`murmur signaling: ${message}`);
      this.emit('error', { t: 'error', code: 'too-large', message });
      return;
    }
    ws.send(text);
  }

  /**
   * `path` (a welcome's or a state request's) on the coordinator. The request carries this peer's
   * session, so a path that would leave the coordinator's origin once appended ('@host/…' reads as
   * userinfo, '.host' or ':port' as another host) is refused, whatever the schema let through.
   */
  private httpUrl(path: string): string {
    const base = this.init.url.replace(/\/$/, '');
    const url = new URL(base + path);
    if (url.origin !== new URL(base).origin) throw new Error(`the coordinator named ${JSON.stringify(path.slice(0, 100))}, which is not a path on ${new URL(base).origin}: refused`);
    return url.toString();
  }

  private fetchFn(): typeof fetch {
    const f = this.init.fetch ?? globalThis.fetch;
    if (!f) throw new Error('no fetch available: pass init.fetch');
    return f;
  }

  private emit<K extends keyof ClientEventMap>(event: K, e: ClientEventMap[K]): void {
    for (const fn of this.listeners.get(event) ?? []) {
      try {
        (fn as (e: ClientEventMap[K]) => void)(e);
      } catch (err) {
        // A listener's bug must not break the connection's state machine.
        console.error(`signaling listener for "${event}" threw`, err);
      }
    }
  }
}
