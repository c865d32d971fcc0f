// The coordinator's ready pool as pure logic (no sockets, no timers), so the server and the
// tests' signaling stub pair peers the same way and the rule can be tested on its own.
//
// Rule: a peer that finished its inner steps enters the pool. If others are waiting, it is
// paired with one of them chosen uniformly at random; otherwise it waits until its own wait
// expires and is then told to take a solo step. Arrival order is random across rounds, so
// every other ready peer is equally likely to be a given peer's partner.

export interface PoolEntry {
  peer: string;
  round: number;
  expiresAt: number;
}

export interface PoolMatch {
  /** The newcomer: it initiates the WebRTC connection if none exists. */
  initiator: { peer: string; round: number };
  responder: { peer: string; round: number };
}

export class ReadyPool {
  private waiting: PoolEntry[] = [];

  /**
   * @param random uniform in [0, 1)
   * @param canPair optional veto (e.g. a peer reported the other as an offender)
   */
  constructor(
    private readonly random: () => number,
    private readonly canPair: (a: string, b: string) => boolean = () => true,
  ) {}

  get size(): number {
    return this.waiting.length;
  }

  /** Peer `peer` is ready for `round`. Returns the pair formed now, or null if it waits. */
  enter(peer: string, round: number, waitMs: number, now: number): PoolMatch | null {
    if (!(waitMs >= 0)) throw new RangeError(`ReadyPool.enter: waitMs must be >= 0, got ${waitMs}`);
    this.remove(peer); // a repeated ready replaces the old entry: one wait per peer
    const candidates: number[] = [];
    for (let i = 0; i < this.waiting.length; i++) {
      if (this.canPair(peer, this.waiting[i].peer)) candidates.push(i);
    }
    if (candidates.length > 0) {
      const i = candidates[Math.min(candidates.length - 1, Math.floor(this.random() * candidates.length))];
      const [other] = this.waiting.splice(i, 1);
      return { initiator: { peer, round }, responder: { peer: other.peer, round: other.round } };
    }
    this.waiting.push({ peer, round, expiresAt: now + waitMs });
    return null;
  }

  /** Remove and return every entry whose wait ended at or before `now` (they go solo). */
  expire(now: number): PoolEntry[] {
    const gone = this.waiting.filter((e) => e.expiresAt <= now);
    if (gone.length > 0) this.waiting = this.waiting.filter((e) => e.expiresAt > now);
    return gone;
  }

  /** A peer left (disconnected, or asked again): forget its wait. */
  remove(peer: string): boolean {
    const i = this.waiting.findIndex((e) => e.peer === peer);
    if (i < 0) return false;
    this.waiting.splice(i, 1);
    return true;
  }

  /** When the earliest wait ends, for the caller's single timer; null if nobody waits. */
  nextExpiry(): number | null {
    let t: number | null = null;
    for (const e of this.waiting) if (t === null || e.expiresAt < t) t = e.expiresAt;
    return t;
  }
}
