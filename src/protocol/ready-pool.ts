// The coordinator's ready pool as pure logic (no sockets, no timers), so the server and the
// tests' signaling stub pair peers the same way and the rule can be tested on its own.
//
// Rule: a peer that finished its inner steps enters the pool. If others are waiting, it is
// paired with one of them chosen uniformly at random; otherwise it waits until its own wait
// expires and is then told to take a solo step.
//
// One refinement: partners finish an exchange together, so on equal-speed devices they reach
// the pool together again and the plain rule would pair them again, round after round, splitting
// the run into isolated pairs. So a peer whose only waiting candidate is its last partner holds
// off for `repeatDelayFrac` of its wait, giving anyone else a chance to arrive first; then the
// repeat is allowed. With two live peers there is nobody else, so no delay.

export interface PoolEntry {
  peer: string;
  round: number;
  expiresAt: number;
  /** When a repeat with the last partner becomes acceptable. */
  repeatAt: number;
}

export interface PoolMatch {
  /** The later arrival: it initiates the WebRTC connection if none exists. */
  initiator: { peer: string; round: number };
  responder: { peer: string; round: number };
}

export interface ReadyPoolOptions {
  /** Veto a pairing (e.g. one peer reported the other as an offender). */
  canPair?: (a: string, b: string) => boolean;
  /** Live peers in the run; with 2 or fewer a repeat partner is taken at once. */
  liveCount?: () => number;
  /** Fraction of a peer's wait it holds off a repeat partner (default 0.25). */
  repeatDelayFrac?: number;
}

export class ReadyPool {
  private waiting: PoolEntry[] = [];
  private lastPartner = new Map<string, string>();
  private readonly canPair: (a: string, b: string) => boolean;
  private readonly liveCount: () => number;
  private readonly repeatDelayFrac: number;

  /** @param random uniform in [0, 1) */
  constructor(private readonly random: () => number, opts: ReadyPoolOptions = {}) {
    this.canPair = opts.canPair ?? (() => true);
    this.liveCount = opts.liveCount ?? (() => Infinity);
    this.repeatDelayFrac = opts.repeatDelayFrac ?? 0.25;
  }

  get size(): number {
    return this.waiting.length;
  }

  /** Peer `peer` is ready for `round`. Returns the pair formed now, or null if it waits. */
  enter(peer: string, round: number, waitMs: number, now: number): PoolMatch | null {
    if (!(waitMs >= 0)) throw new RangeError(`ReadyPool.enter: waitMs must be >= 0, got ${waitMs}`);
    this.remove(peer); // a repeated ready replaces the old entry: one wait per peer
    const entry: PoolEntry = { peer, round, expiresAt: now + waitMs, repeatAt: now + this.repeatDelayFrac * waitMs };
    const candidates = this.waiting.filter((e) => this.canPair(peer, e.peer));
    const fresh = candidates.filter((e) => !this.isRepeat(peer, e.peer));
    if (fresh.length > 0) return this.match(entry, fresh[this.index(fresh.length)]);
    if (candidates.length > 0 && this.liveCount() <= 2) return this.match(entry, candidates[this.index(candidates.length)]);
    this.waiting.push(entry);
    return null;
  }

  /**
   * Advance time: pairs whose repeat hold-off ended (no one else came) and entries whose wait
   * ended (they go solo). Call at nextDeadline().
   */
  tick(now: number): { matches: PoolMatch[]; expired: PoolEntry[] } {
    const matches: PoolMatch[] = [];
    for (const e of [...this.waiting]) {
      if (!this.waiting.includes(e) || e.repeatAt > now || e.expiresAt <= now) continue;
      const other = this.waiting.find((o) => o !== e && this.canPair(e.peer, o.peer));
      if (other) {
        this.waiting.splice(this.waiting.indexOf(e), 1);
        matches.push(this.match(e, other));
      }
    }
    const expired = this.waiting.filter((e) => e.expiresAt <= now);
    if (expired.length > 0) this.waiting = this.waiting.filter((e) => e.expiresAt > now);
    return { matches, expired };
  }

  /** A peer left (disconnected, or asked again): forget its wait. */
  remove(peer: string): boolean {
    const i = this.waiting.findIndex((e) => e.peer === peer);
    if (i < 0) return false;
    this.waiting.splice(i, 1);
    return true;
  }

  /** A peer left the run: forget it entirely. */
  forget(peer: string): void {
    this.remove(peer);
    this.lastPartner.delete(peer);
  }

  /** When tick() next has something to do; null if nobody waits. */
  nextDeadline(): number | null {
    let t: number | null = null;
    for (const e of this.waiting) {
      const d = this.hasRepeatOnly(e) ? Math.min(e.repeatAt, e.expiresAt) : e.expiresAt;
      if (t === null || d < t) t = d;
    }
    return t;
  }

  private hasRepeatOnly(e: PoolEntry): boolean {
    return this.waiting.some((o) => o !== e && this.canPair(e.peer, o.peer));
  }

  private isRepeat(a: string, b: string): boolean {
    return this.lastPartner.get(a) === b || this.lastPartner.get(b) === a;
  }

  private index(n: number): number {
    return Math.min(n - 1, Math.floor(this.random() * n));
  }

  private match(newcomer: PoolEntry, other: PoolEntry): PoolMatch {
    this.waiting = this.waiting.filter((e) => e !== other && e !== newcomer);
    this.lastPartner.set(newcomer.peer, other.peer);
    this.lastPartner.set(other.peer, newcomer.peer);
    return { initiator: { peer: newcomer.peer, round: newcomer.round }, responder: { peer: other.peer, round: other.round } };
  }
}
