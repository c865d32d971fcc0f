// Pulls checkpoints from live peers: on a schedule (and on an admin's request) it asks one peer
// of each running run, chosen at random among those eligible for duty (PeerHub.eligibleForDuty:
// off probation, with accepted exchanges) whose client's upload was never refused, one client
// (address, or IPv6 /48) drawn first and then one of its ids. Never by the step a
// peer reports about itself: a peer that claims to be furthest ahead must not get the duty for it.
// The peer answers by uploading a state frame over HTTP to the one-time URL it was given
// (POST /api/peer/state/:id with its session token); the upload is checked and measured
// (server/checkpoint-validate.ts) before it is stored. A request that is not answered within
// requestTimeoutMs lapses and is recorded as a failed checkpoint.
import { randomBytes } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import type { Clock } from '../src/protocol/clock.ts';
import type { EventLog } from './events.ts';
import { clientKey } from './address-budget.ts';
import { forgetOldest } from '../src/protocol/bounded.ts';
import type { PeerHub } from './peers.ts';
import type { RunStore } from './runs.ts';

export interface PendingState {
  id: string;
  runId: string;
  peerId: string;
  requestedAt: number;
  timer: unknown;
}

export interface SchedulerOptions {
  /** Time between scheduled checkpoints of a run; 0 disables the schedule. */
  intervalMs: number;
  requestTimeoutMs: number;
}

export class CheckpointScheduler {
  private readonly pending = new Map<string, PendingState>();
  /** Peers whose upload failed the coordinator's checks: never asked again by this process. */
  private readonly refused = new Set<string>();
  /**
   * Clients (clientKey) of those peers, per run (`run client`): none of their ids is asked again
   * in that run either. Refused per id,
   * a host's other ids stayed eligible and their checkpoints stayed offered, so one client's bad
   * state cost it one id of many.
   */
  private readonly refusedClients = new Set<string>();
  /** Each asked peer's client when it was asked (the oldest forgotten first): an uploader may have left by the time one of its ids is refused. */
  private readonly askedClient = new Map<string, string>();
  private timer: unknown = null;

  constructor(
    private readonly d: { hub: PeerHub; runs: RunStore; events: EventLog; clock: Clock; rng: () => number; logger: FastifyBaseLogger },
    readonly o: SchedulerOptions,
  ) {
    d.hub.onStateFail = (peerId, id, reason) => this.fail(id, peerId, `peer could not serve its state: ${reason}`);
    d.hub.onPeerLeft = (peerId) => {
      for (const p of [...this.pending.values()]) if (p.peerId === peerId) this.fail(p.id, peerId, 'peer left before uploading its state');
    };
  }

  start(): void {
    if (this.o.intervalMs <= 0) return;
    this.timer = this.d.clock.setTimeout(() => {
      for (const run of this.d.runs.list()) if (run.status === 'running') this.request(run.id);
      this.start();
    }, this.o.intervalMs);
  }

  stop(): void {
    this.d.clock.clearTimeout(this.timer);
    for (const p of this.pending.values()) this.d.clock.clearTimeout(p.timer);
    this.pending.clear();
  }

  pendingFor(runId: string): PendingState | null {
    for (const p of this.pending.values()) if (p.runId === runId) return p;
    return null;
  }

  /** Peers eligible for checkpoint duty in `runId` now (live, off probation, no id of their client refused). */
  eligible(runId: string): string[] {
    return this.d.hub.livePeers(runId).filter((p) => {
      if (!this.d.hub.eligibleForDuty(p) || this.refused.has(p)) return false;
      const client = this.clientOf(p);
      return client === null || !this.refusedClients.has(`${runId} ${client}`);
    });
  }

  /** `peerId`'s client: where it is connected from now, else where it was when it was asked; null when unknown. */
  clientOf(peerId: string): string | null {
    const address = this.d.hub.addressOf(peerId);
    return address !== null ? clientKey(address) : this.askedClient.get(peerId) ?? null;
  }

  /**
   * Whether a checkpoint uploaded by `uploader` goes with `refused`'s refusal: the same id, or an
   * id asked from the same client (its upload came through a request, so its client is known to
   * this process; after a restart only the id is).
   */
  withdrawnWith(uploader: string | null, refused: string): boolean {
    if (uploader === null) return false;
    if (uploader === refused) return true;
    const client = this.clientOf(refused);
    return client !== null && this.askedClient.get(uploader) === client;
  }

  /** Asks a random eligible peer of `runId` for its state; null when no peer is eligible. */
  request(runId: string): PendingState | null {
    const existing = this.pendingFor(runId);
    if (existing) return existing;
    const candidates = this.eligible(runId);
    if (candidates.length === 0) return null;
    const peerId = this.draw(candidates);
    const client = this.clientOf(peerId);
    if (client !== null) {
      this.askedClient.delete(peerId); // re-inserted last: the oldest entry is the one to forget
      this.askedClient.set(peerId, client);
      forgetOldest(this.askedClient, ASKED_KEPT);
    }
    const id = randomBytes(12).toString('hex');
    const timer = this.d.clock.setTimeout(() => this.fail(id, peerId, `no upload within ${this.o.requestTimeoutMs} ms`), this.o.requestTimeoutMs);
    const p: PendingState = { id, runId, peerId, requestedAt: this.d.clock.now(), timer };
    this.pending.set(id, p);
    this.d.hub.sendTo(peerId, { t: 'state-request', id, url: `/api/peer/state/${id}` });
    this.d.logger.info({ run: runId, peer: peerId, request: id }, 'checkpoint requested');
    return p;
  }

  /**
   * One client drawn uniformly (an address, an IPv6 /48 once: siteKey), then one of its ids. Ids
   * of one address vouch for each other on a run with nobody else live (PeerHub), so a host can
   * bring any number of trusted ids; drawn per id, 10 of them beside one honest peer took 10 of
   * every 11 duties, and with them the checkpoint every newcomer starts from.
   */
  private draw(candidates: string[]): string {
    const byClient = new Map<string, string[]>();
    for (const p of candidates) {
      const key = this.clientOf(p) ?? p;
      const ids = byClient.get(key);
      if (ids) ids.push(p); else byClient.set(key, [p]);
    }
    const pick = <T>(xs: T[]): T => xs[Math.min(xs.length - 1, Math.floor(this.d.rng() * xs.length))]!;
    return pick(pick([...byClient.values()]));
  }

  /** The pending request `id` if it was made to `peerId`, without consuming it. */
  peek(id: string, peerId: string): PendingState | null {
    const p = this.pending.get(id);
    return p && p.peerId === peerId ? p : null;
  }

  /** Consumes the request: an upload can be used once. */
  take(id: string, peerId: string): PendingState | null {
    const p = this.peek(id, peerId);
    if (!p) return null;
    this.d.clock.clearTimeout(p.timer);
    this.pending.delete(id);
    return p;
  }

  /**
   * The upload of a taken request failed the coordinator's own checks: a failed checkpoint event
   * naming why, and neither this peer nor any id of its client gets checkpoint duty again.
   */
  reject(p: PendingState, reason: string): void {
    this.refused.add(p.peerId);
    const client = this.clientOf(p.peerId);
    if (client !== null) this.refusedClients.add(`${p.runId} ${client}`);
    this.d.events.append(p.runId, 'checkpoint-failed', p.peerId, { request: p.id, reason, rejected: true });
    this.d.logger.warn({ run: p.runId, peer: p.peerId, request: p.id, reason }, 'checkpoint upload rejected');
  }

  /** The coordinator could not judge an upload (busy, closing): a failed checkpoint, no blame. */
  abandon(p: PendingState, reason: string): void {
    this.d.events.append(p.runId, 'checkpoint-failed', p.peerId, { request: p.id, reason });
    this.d.logger.warn({ run: p.runId, peer: p.peerId, request: p.id, reason }, 'checkpoint failed');
  }

  private fail(id: string, peerId: string, reason: string): void {
    const p = this.take(id, peerId);
    if (!p) return;
    this.d.events.append(p.runId, 'checkpoint-failed', peerId, { request: id, reason });
    this.d.logger.warn({ run: p.runId, peer: peerId, request: id, reason }, 'checkpoint failed');
  }
}

/** Asked peers whose client a scheduler remembers (withdrawnWith): ids are free, memory is not. */
const ASKED_KEPT = 100_000;
