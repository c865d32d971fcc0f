// An in-memory coordinator for mesh tests: relays signals between peers of one run, keeps the
// live peer list, pairs ready peers with the one ready-pool rule (src/protocol/ready-pool.ts, as
// the server does), records reports, and can be stopped and started to simulate the coordinator
// going down.
import { ReadyPool, type PoolEvents, type ReadyPoolOptions } from '../../src/protocol/ready-pool.ts';
import type { Signaling, SignalingEventMap } from '../../src/protocol/signaling.ts';
import { Emitter } from '../../src/sync/emitter.ts';
import { isStallReport } from '../../src/protocol/messages.ts';

export interface HubOptions {
  random?: () => number;
  /** Delay of every relayed message, ms. */
  latencyMs?: number;
  /**
   * The pool's rules a test sets: `predict: false` for peers with no inner loop whose readies
   * follow each other's rounds (a partner's cadence learnt from them says nothing of when it
   * comes, and a loaded machine made it late enough to leave at once), `repeatHoldFrac: 0` to
   * pair the same two at once round after round.
   */
  pool?: Pick<ReadyPoolOptions, 'predict' | 'repeatHoldFrac'>;
}

export class SignalHub {
  readonly clients = new Map<string, HubClient>();
  readonly reports: { from: string; peer: string; reason: string }[] = [];
  /**
   * The reports that judge a partner's update: all but `stall` (a payload that missed the deadline
   * twice in a row, src/sync/mesh.ts noteStall), which honest partners on a loaded machine file too,
   * so a test that counts an honest or a rogue peer's reports counts these.
   */
  get judged(): { from: string; peer: string; reason: string }[] {
    return this.reports.filter((r) => !isStallReport(r.reason));
  }
  readonly pairings: { a: string; b: string; roundA: number; roundB: number }[] = [];
  readonly solos: { peer: string; round: number }[] = [];
  running = true;
  private pool: ReadyPool;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private seq = 0;
  readonly latencyMs: number;
  private random: () => number;
  private readonly poolOptions: HubOptions['pool'];

  private newPool(): ReadyPool {
    return new ReadyPool({
      now: () => performance.now(), random: this.random, liveCount: () => [...this.clients.values()].filter((c) => c.connected).length,
      ...this.poolOptions,
    });
  }

  constructor(opts: HubOptions = {}) {
    this.random = opts.random ?? Math.random;
    this.poolOptions = opts.pool;
    this.pool = this.newPool();
    this.latencyMs = opts.latencyMs ?? 1;
  }

  /** A new peer joins; it receives `open` and the peer list shortly after. */
  client(id = `p${++this.seq}`): HubClient {
    const c = new HubClient(this, id);
    this.clients.set(id, c);
    if (this.running) this.later(() => { c.accept(); this.broadcastPeers(); });
    return c;
  }

  leave(id: string): void {
    this.clients.delete(id);
    this.pool.forget(id);
    if (this.running) this.broadcastPeers();
  }

  /** Coordinator down: every client sees `close`; relays and readies are dropped. */
  stop(): void {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.pool = this.newPool(); // the coordinator's memory is gone
    for (const c of this.clients.values()) c.drop('coordinator stopped');
  }

  start(): void {
    this.running = true;
    this.pool = this.newPool();
    for (const c of this.clients.values()) this.later(() => c.accept());
    this.later(() => this.broadcastPeers());
  }

  relay(from: string, to: string, data: unknown): void {
    if (!this.running) return;
    const target = this.clients.get(to);
    if (!target) return;
    // Structured clone: like JSON over a WebSocket, nothing is shared between peers.
    const copy = JSON.parse(JSON.stringify(data));
    this.later(() => { if (this.running) target.emit('signal', { from, data: copy }); });
  }

  ready(peer: string, round: number, waitMs: number): void {
    if (!this.running) return;
    this.announce(this.pool.enter(peer, round, waitMs));
  }

  report(from: string, peer: string, reason: string): void {
    if (this.running) this.reports.push({ from, peer, reason });
  }

  private announce(e: PoolEvents): void {
    for (const m of e.matches) {
      this.pairings.push({ a: m.initiator.peer, b: m.responder.peer, roundA: m.initiator.round, roundB: m.responder.round });
      this.send(m.initiator.peer, 'paired', { round: m.initiator.round, partner: m.responder.peer, partnerRound: m.responder.round, initiator: true });
      this.send(m.responder.peer, 'paired', { round: m.responder.round, partner: m.initiator.peer, partnerRound: m.initiator.round, initiator: false });
    }
    for (const s of e.solos) {
      this.solos.push(s);
      this.send(s.peer, 'paired', { round: s.round, partner: null, initiator: false });
    }
    this.armTimer();
  }

  private armTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const t = this.pool.nextDeadline();
    if (t === null) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.announce(this.pool.tick());
    }, Math.max(0, t - performance.now()));
  }

  private send<K extends keyof SignalingEventMap>(to: string, event: K, payload: SignalingEventMap[K]): void {
    const c = this.clients.get(to);
    if (c) this.later(() => { if (this.running) c.emit(event, payload); });
  }

  private broadcastPeers(): void {
    const peers = [...this.clients.keys()];
    for (const c of this.clients.values()) if (c.connected) c.emit('peers', { peers });
  }

  private later(fn: () => void): void {
    setTimeout(fn, this.latencyMs);
  }
}

export class HubClient implements Signaling {
  connected = false;
  peerId: string | null = null;
  readonly sent: { to: string; data: unknown }[] = [];
  private events = new Emitter<SignalingEventMap>((err) => { throw err; });

  constructor(private hub: SignalHub, readonly id: string) {}

  accept(): void {
    if (this.connected || !this.hub.clients.has(this.id)) return;
    this.connected = true;
    this.peerId = this.id;
    this.events.emit('open', { peerId: this.id });
  }

  drop(reason: string): void {
    if (!this.connected) return;
    this.connected = false;
    this.events.emit('close', { reason });
  }

  emit<K extends keyof SignalingEventMap>(event: K, payload: SignalingEventMap[K]): void {
    if (!this.hub.clients.has(this.id)) return;
    this.events.emit(event, payload);
  }

  sendSignal(to: string, data: unknown): void {
    if (!this.connected) return;
    this.sent.push({ to, data });
    this.hub.relay(this.id, to, data);
  }

  ready(round: number, waitMs: number): void {
    if (this.connected) this.hub.ready(this.id, round, waitMs);
  }

  reportOffender(peer: string, reason: string): void {
    if (this.connected) this.hub.report(this.id, peer, reason);
  }

  on<K extends keyof SignalingEventMap>(event: K, fn: (e: SignalingEventMap[K]) => void): () => void {
    return this.events.on(event, fn);
  }

  /** The peer leaves the run (its page closed). */
  close(): void {
    this.drop('left');
    this.hub.leave(this.id);
  }
}
