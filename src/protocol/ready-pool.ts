// The ready pool (docs/design.md section 3; the rule and its reasons: docs/pairing.md), the one copy
// of it: the coordinator (server/pairing.ts) wraps it with real timers, the tests' signal hub
// with its own, and the simulator runs it on its simulated clock. It is pure logic: time comes
// from the injected `now`, randomness from `random`, and the owner calls tick() at
// nextDeadline(), so its rules are tested with a fake clock.
//
// A peer that finished its inner loop enters with the longest it will wait (`waitMs`, from its
// own inner-loop time).
// 1. Someone pairable already waits: pair with one of them chosen uniformly at random. A repeat
//    of the peer's last partner is held off while another peer is due soon (see 3), so peers
//    that finish together do not split the run into fixed pairs.
// 2. Nobody waits: the pool predicts when each other peer will next be ready from its cadence
//    (the interval between its readies) and the peer waits only if one is due within its wait,
//    until that peer's due time plus a grace; with nobody due it leaves at once (a solo step
//    with no idle time). While some peer's cadence is still unknown (its first round), the
//    plain rule applies: wait the whole wait.
// 3. Small swarms. Two peers of equal speed keep whatever phase offset they started with, and a
//    wait shorter than the offset never bridges it. With rule 2 and a wait of half a loop one of
//    the two always sees the other due within its wait (offset d or L - d, one is <= L/2): it
//    waits once, they pair, finish their exchange together and stay in phase. So a pool wait
//    of 0.5 of the inner loop is the default, and the pool, not the wait, keeps idle time low.
//
// Issue 15 will add: a cap on a waiter at a fraction of the run's typical inner-loop time, and
// pairing a peer at most once per its observed cadence; `Cadence` is where that state lives.

/**
 * A run's default `pairWaitFrac`: the longest a ready peer waits, as a fraction of its inner-loop
 * time. A ceiling, not a wait: the pool holds a peer only while a partner is due (rule 2). It
 * must cover half a whole round (inner loop, exchange, evaluation: more than half the inner
 * loop) plus the jitter of a loaded machine, or rule 3 fails (docs/pairing.md, "Why a whole loop").
 */
export const DEFAULT_PAIR_WAIT_FRAC = 1;

export interface PoolMatch {
  /** The later arrival: it initiates the WebRTC connection. */
  initiator: { peer: string; round: number };
  responder: { peer: string; round: number };
}

export interface PoolSolo { peer: string; round: number }

/** What a call decided: pairs to announce and peers to send to a solo step. */
export interface PoolEvents { matches: PoolMatch[]; solos: PoolSolo[] }

export interface ReadyPoolOptions {
  /** The clock, ms. */
  now: () => number;
  /** Uniform in [0, 1): who meets whom among the waiting. */
  random: () => number;
  /** Veto a pairing (one peer reported the other as an offender); must be symmetric. */
  canPair?: (a: string, b: string) => boolean;
  /** Lower clamp of a wait: never zero, or nobody is ever in the pool together. */
  minWaitMs?: number;
  /** Upper clamp: a stuck pool must not hold a peer for ever. */
  maxWaitMs?: number;
  /** A repeat of the last partner waits this fraction of the wait for another peer (0.25). */
  repeatHoldFrac?: number;
  /** A peer waiting for a due partner stays until its due time plus this fraction of that
   *  partner's cadence (0.25): the jitter of a loop and the latency of a loaded machine. */
  graceFrac?: number;
  /** Live peers of the run, when the owner knows: alone, a peer leaves at once. */
  liveCount?: () => number;
  /**
   * Predict partners from their cadence (rule 2, the default). Off: the plain rule, every waiter
   * waits its whole wait; for callers whose peers have no inner loop to learn a cadence from.
   */
  predict?: boolean;
}

interface Waiting {
  peer: string;
  round: number;
  since: number;
  /** Gives up (solo) at this time. */
  until: number;
  /** A repeat with the last partner is accepted from this time on. */
  repeatAt: number;
}

/**
 * A peer's rhythm as the pool sees it: when the pool last let it go (paired or solo) and how
 * long it then takes to be ready again (its exchange and inner loop, not its waits).
 */
interface Cadence {
  released: number | null;
  /** Smoothed time from release to the next ready; null until it came back once. */
  period: number | null;
}

/** Weight of the newest interval in the smoothed cadence. */
const CADENCE_EWMA = 0.5;

export class ReadyPool {
  private waiting: Waiting[] = [];
  private readonly cadence = new Map<string, Cadence>();
  private readonly lastPartner = new Map<string, string>();
  private readonly canPair: (a: string, b: string) => boolean;
  private readonly minWaitMs: number;
  private readonly maxWaitMs: number;
  private readonly repeatHoldFrac: number;
  private readonly graceFrac: number;
  /** Counters for the dashboard and the benchmark; `leftAtOnce` of the solos had nobody due. */
  readonly stats = { pairs: 0, solos: 0, leftAtOnce: 0 };

  constructor(private readonly o: ReadyPoolOptions) {
    this.canPair = o.canPair ?? (() => true);
    this.minWaitMs = o.minWaitMs ?? 50;
    this.maxWaitMs = o.maxWaitMs ?? 120_000;
    this.repeatHoldFrac = o.repeatHoldFrac ?? 0.25;
    this.graceFrac = o.graceFrac ?? 0.25;
  }

  get size(): number {
    return this.waiting.length;
  }

  has(peer: string): boolean {
    return this.waiting.some((w) => w.peer === peer);
  }

  /** `peer` is ready for outer round `round` and will wait at most `waitMs` for a partner. */
  enter(peer: string, round: number, waitMs: number): PoolEvents {
    if (!(waitMs >= 0)) throw new RangeError(`ReadyPool.enter: waitMs must be a number >= 0, got ${waitMs}`);
    const now = this.o.now();
    this.remove(peer); // a repeated ready replaces the earlier one: one wait per peer
    this.observe(peer, now);
    const wait = Math.min(this.maxWaitMs, Math.max(this.minWaitMs, waitMs));
    const me: Waiting = { peer, round, since: now, until: now + wait, repeatAt: now };
    const events: PoolEvents = { matches: [], solos: [] };

    const candidates = this.waiting.filter((w) => this.canPair(peer, w.peer));
    const fresh = candidates.filter((w) => !this.isRepeat(peer, w.peer));
    if (fresh.length > 0) {
      events.matches.push(this.match(me, fresh[this.index(fresh.length)]!));
      return events;
    }
    const due = this.nextDue(peer, now);
    if (candidates.length > 0) {
      // Only the last partner waits: take it unless someone else is due within the hold-off.
      // With cadences known, hold for anyone due within the whole wait: groups that pair among
      // themselves at different phases (two pairs of equal speed) merge into one phase that way,
      // once, instead of repeating the same pairs for ever.
      const hold = this.repeatHoldFrac <= 0 ? now
        : due === 'unknown' ? now + this.repeatHoldFrac * wait
        : due !== null && due.at <= now + wait ? Math.min(now + wait, due.at + due.grace)
        : now;
      if (hold <= now) {
        events.matches.push(this.match(me, candidates[this.index(candidates.length)]!));
        return events;
      }
      me.repeatAt = hold;
      this.waiting.push(me);
      return events;
    }
    if (due === 'unknown') {
      this.waiting.push(me);
    } else if (due !== null && due.at <= me.until) {
      me.until = Math.min(me.until, due.at + due.grace);
      this.waiting.push(me);
    } else {
      // Nobody is due within our wait: waiting would only be idle time.
      this.release(peer, now);
      this.stats.solos++;
      this.stats.leftAtOnce++;
      events.solos.push({ peer, round });
    }
    return events;
  }

  /** Advance to now: repeat hold-offs that ended pair up, waits that ended go solo. */
  tick(): PoolEvents {
    const now = this.o.now();
    const events: PoolEvents = { matches: [], solos: [] };
    for (const w of [...this.waiting]) {
      if (!this.waiting.includes(w) || w.until <= now) continue;
      const others = this.waiting.filter((o) => o !== w && o.until > now && this.pairableAt(w, o) <= now);
      if (others.length === 0) continue;
      this.waiting = this.waiting.filter((o) => o !== w);
      events.matches.push(this.match(w, others[this.index(others.length)]!));
    }
    for (const w of this.waiting.filter((x) => x.until <= now)) {
      this.release(w.peer, now);
      this.stats.solos++;
      events.solos.push({ peer: w.peer, round: w.round });
    }
    this.waiting = this.waiting.filter((w) => w.until > now);
    return events;
  }

  /** When tick() next has something to do; null if nobody waits. */
  nextDeadline(): number | null {
    let t: number | null = null;
    for (const w of this.waiting) {
      let d = w.until;
      for (const o of this.waiting) if (o !== w) d = Math.min(d, this.pairableAt(w, o));
      if (t === null || d < t) t = d;
    }
    return t;
  }

  /** From when two waiting peers may pair: a repeat only once both hold-offs ended. */
  private pairableAt(a: Waiting, b: Waiting): number {
    if (!this.canPair(a.peer, b.peer)) return Infinity;
    return this.isRepeat(a.peer, b.peer) ? Math.max(a.repeatAt, b.repeatAt) : Math.max(a.since, b.since);
  }

  /** Stop a peer's wait (it asked again, or its connection closed). True if it was waiting. */
  remove(peer: string): boolean {
    const n = this.waiting.length;
    this.waiting = this.waiting.filter((w) => w.peer !== peer);
    return this.waiting.length < n;
  }

  /** A peer left the run: forget its wait and its cadence. */
  forget(peer: string): void {
    this.remove(peer);
    this.cadence.delete(peer);
    this.lastPartner.delete(peer);
  }

  /** Forget every wait (the run stopped); cadences stay. */
  clear(): void {
    this.waiting = [];
  }

  private observe(peer: string, now: number): void {
    const c = this.cadence.get(peer);
    if (!c) { this.cadence.set(peer, { released: null, period: null }); return; }
    if (c.released === null) return;
    const interval = now - c.released;
    c.period = c.period === null ? interval : (1 - CADENCE_EWMA) * c.period + CADENCE_EWMA * interval;
    c.released = null;
  }

  private release(peer: string, now: number): void {
    const c = this.cadence.get(peer);
    if (c) c.released = now;
  }

  /**
   * The earliest time another pairable peer (not waiting) is expected ready, with the grace a
   * waiter allows it; 'unknown' while some peer's cadence is not known yet; null if nobody is
   * expected. A peer overdue by more than half its cadence is not counted on (it paused, or
   * left without saying).
   */
  private nextDue(peer: string, now: number): { at: number; grace: number } | 'unknown' | null {
    const live = this.o.liveCount?.();
    if (live !== undefined && live <= 1) return null;
    if (this.o.predict === false) return 'unknown';
    let best: { at: number; grace: number } | null = null;
    let seen = 0;
    for (const [other, c] of this.cadence) {
      if (other === peer) continue;
      seen++;
      if (!this.canPair(peer, other) || this.has(other)) continue;
      if (c.period === null) return 'unknown';
      if (c.released === null) continue; // on its way back from a wait we did not see end
      let at = c.released + c.period;
      if (at < now) {
        if (now - at > c.period / 2) continue;
        at = now;
      }
      const grace = Math.max(this.minWaitMs, this.graceFrac * c.period);
      if (best === null || at < best.at) best = { at, grace };
    }
    // Someone live has not been ready yet (a newcomer), or we know of nobody at all: we cannot
    // tell who is due, so the plain rule applies.
    if (live !== undefined ? live - 1 > seen : seen === 0) return 'unknown';
    return best;
  }

  private isRepeat(a: string, b: string): boolean {
    return this.lastPartner.get(a) === b || this.lastPartner.get(b) === a;
  }

  /** A uniform index below n; one candidate takes no draw, so a replay's generator stays in step. */
  private index(n: number): number {
    if (n <= 1) return 0;
    return Math.min(n - 1, Math.floor(this.o.random() * n));
  }

  private match(newcomer: Waiting, other: Waiting): PoolMatch {
    this.waiting = this.waiting.filter((w) => w !== other && w !== newcomer);
    this.lastPartner.set(newcomer.peer, other.peer);
    this.lastPartner.set(other.peer, newcomer.peer);
    const now = this.o.now();
    this.release(newcomer.peer, now);
    this.release(other.peer, now);
    this.stats.pairs++;
    return { initiator: { peer: newcomer.peer, round: newcomer.round }, responder: { peer: other.peer, round: other.round } };
  }
}
