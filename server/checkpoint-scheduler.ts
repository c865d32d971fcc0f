// Pulls checkpoints from live peers: on a schedule (and on an admin's request) it asks one live
// peer of each running run — the one furthest ahead in inner steps — for its slow state.
// The peer answers by uploading a state frame over HTTP to the one-time URL it was given
// (POST /api/peer/state/:id with its session token); a request that is not answered within
// requestTimeoutMs lapses and is recorded as a failed checkpoint.
import { randomBytes } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import type { Clock } from '../src/protocol/clock.ts';
import type { EventLog } from './events.ts';
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

  /** Asks the furthest live peer of `runId` for its state; null when no peer is live. */
  request(runId: string): PendingState | null {
    const existing = this.pendingFor(runId);
    if (existing) return existing;
    const peers = this.d.hub.livePeers(runId);
    if (peers.length === 0) return null;
    let best = -Infinity;
    let candidates: string[] = [];
    for (const p of peers) {
      const s = this.d.hub.lastStep(p);
      if (s > best) { best = s; candidates = [p]; } else if (s === best) candidates.push(p);
    }
    const peerId = candidates[Math.floor(this.d.rng() * candidates.length)] ?? candidates[0]!;
    const id = randomBytes(12).toString('hex');
    const timer = this.d.clock.setTimeout(() => this.fail(id, peerId, `no upload within ${this.o.requestTimeoutMs} ms`), this.o.requestTimeoutMs);
    const p: PendingState = { id, runId, peerId, requestedAt: this.d.clock.now(), timer };
    this.pending.set(id, p);
    this.d.hub.sendTo(peerId, { t: 'state-request', id, url: `/api/peer/state/${id}` });
    this.d.logger.info({ run: runId, peer: peerId, request: id }, 'checkpoint requested');
    return p;
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

  private fail(id: string, peerId: string, reason: string): void {
    const p = this.take(id, peerId);
    if (!p) return;
    this.d.events.append(p.runId, 'checkpoint-failed', peerId, { request: id, reason });
    this.d.logger.warn({ run: p.runId, peer: peerId, request: id, reason }, 'checkpoint failed');
  }
}
