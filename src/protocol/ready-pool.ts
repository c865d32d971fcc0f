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
//    until that peer's due time plus a grace (a quarter of its cadence, or three times its
//    jitter up to half its cadence, whichever is more); with nobody due it leaves at once (a solo step with no idle
//    time). While some peer's cadence is still unknown (its first round), the
//    plain rule applies: wait the whole wait; but only for NEWCOMER_CADENCES typical cadences
//    after that peer joined or was last ready, so a silent connection holds nobody for long.
// 3. Small swarms. Two peers of equal speed keep whatever phase offset they started with, and a
//    wait shorter than the offset never bridges it. With rule 2 and a wait of half a loop one of
//    the two always sees the other due within its wait (offset d or L - d, one is <= L/2): it
//    waits once, they pair, finish their exchange together and stay in phase. So a pool wait
//    of 0.5 of the inner loop is the default, and the pool, not the wait, keeps idle time low.
//
// 4. Fairness (issue 15; docs/pairing.md, "Fairness"). A peer that never trains but always
//    waits must not collect more partners than anyone else. (a) A wait is capped at `capFrac`
//    of the run's typical cadence, whatever the peer asks for. (b) A peer pairs at most once per
//    `fairFrac` of its own observed cadence: the larger of its release-to-ready time and, when
//    the owner feeds step progress (`progress()`), the time its reported steps take for one
//    round; one whose steps never advanced waits UNPROVEN_TURNS typical cadences. (c) Steps are
//    claims, so the share rule (shareTurn) holds any peer to about the busiest other peer's
//    count of partners. (a) and (b) need step progress (`trackProgress`, the coordinator):
//    readies alone are claims a camper makes as fast as it likes. The typical cadence is the
//    median over groups (`groupOf`: the coordinator's client addresses) of one value each,
//    counting, when progress is fed, only peers whose steps advanced, and only trusted peers
//    (`trusted`) when there are any: one host's many ids are one vote. The cap never cuts a
//    peer's wait below `capFrac` of its own observed cadence.

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

/**
 * A pairing wait's bounds on the live clock (ms), the coordinator's defaults (server/peers.ts):
 * never zero, or nobody is ever in the pool together; at most two minutes, so a stuck pool never
 * holds a peer for ever. The simulator's clock has no unit (stepTime is 1 by default) and runs
 * unclamped.
 */
export const PAIR_WAIT_BOUNDS_MS = { min: 50, max: 120_000 } as const;

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
  /**
   * Live peers of the run, when the owner knows: alone, a peer leaves at once, and a live peer
   * the pool never heard of (the owner did not `join` it) makes every cadence 'unknown'.
   */
  liveCount?: () => number;
  /**
   * The group a peer belongs to for the typical cadence (the coordinator: its client address),
   * which counts one value per group; each peer is its own group without it.
   */
  groupOf?: (peer: string) => string;
  /**
   * Whether the owner trusts a peer (the coordinator: off probation); when any trusted peer has
   * a cadence, only trusted peers count towards the typical cadence. All count without it.
   */
  trusted?: (peer: string) => boolean;
  /**
   * Predict partners from their cadence (rule 2, the default). Off: the plain rule, every waiter
   * waits its whole wait; for callers whose peers have no inner loop to learn a cadence from.
   */
  predict?: boolean;
  /** Rule 4 (fairness: the cap, the turn and the share); off only to measure what it does. */
  fair?: boolean;
  /** Longest wait as a fraction of the run's typical cadence (0.75), once that is known (rule 4). */
  capFrac?: number;
  /** A peer pairs at most once per this fraction of its own observed cadence (0.5; rule 4). */
  fairFrac?: number;
  /** Pairings over the others' share a peer may be (3; rule 4, shareTurn). */
  shareMargin?: number;
  /**
   * The owner feeds step progress (`progress()`; the coordinator, from reports): a peer's cadence
   * is then also bounded below by its steps, and one whose steps never advanced counts as typical.
   */
  trackProgress?: boolean;
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
  /** Smoothed absolute deviation of that time from `period`: how much the peer's loop jitters. */
  dev: number;
  /** When the pool last paired it (rule 4 counts from there). */
  paired: number | null;
  /**
   * When it joined or was last ready: while its period is unknown, others count it as 'unknown'
   * (the plain wait) only for NEWCOMER_CADENCES typical cadences from here (nextDue).
   */
  heard: number;
  /** Smoothed time its reported steps take for one round; null until they advanced twice. */
  stepPeriod: number | null;
  /** Its last reported step that advanced, and when. */
  lastStep: { step: number; at: number } | null;
  /** Its pairings, decayed (the share rule), as of `scoreAt`. */
  score: number;
  scoreAt: number;
}

/** Weight of the newest interval in the smoothed cadence. */
const CADENCE_EWMA = 0.5;
/** How fast a peer's jitter estimate (mean absolute deviation of its cadence) follows. */
const DEV_EWMA = 0.25;
/**
 * A waiter gives a due partner this many of the partner's own deviations of grace (at most half
 * its cadence: the jitter is the peer's to inflate, and a wider grace is idle time for others),
 * and counts on an overdue one until it is this many deviations late (or half a cadence): a
 * loaded machine or a throttled tab is late by its jitter, not by a fixed share of its loop.
 */
const DEV_GRACE = 3;
/**
 * With step progress fed, a peer whose steps never advanced pairs at most once per this many
 * typical cadences: a trainer's steps advance within a round or two of joining, so only a peer
 * that does not train stays here, and it must not take the partners of peers that do.
 */
const UNPROVEN_TURNS = 2;
/**
 * A live peer whose cadence is still unknown (it joined, or was ready once) makes others wait
 * their plain wait for this many typical cadences after it joined or was last ready; after that
 * it is not due. A trainer is ready one loop after its first ready, so two cadences cover its
 * second; a newcomer whose bootstrap runs longer than that costs only solo steps the others take
 * at once. A connection that joins and then only heartbeats (or was ready once, long ago) made
 * every ready wait its whole wait for as long as it stayed: with one such peer, a lone honest
 * peer on a 300 ms loop waited about 300 ms every round instead of 1 to 6 ms.
 */
const NEWCOMER_CADENCES = 2;
/** The share rule's memory, in typical cadences (see shareTurn). */
const SHARE_CADENCES = 16;
/**
 * How many pairings over the share a peer may be: honest peers of equal speed drift a pairing
 * or two apart (who met the third peer last), and a margin of one would hold them back for it.
 */
const SHARE_MARGIN = 1;
/** Departed peers whose last pairing time the pool keeps (a bound: ids are free to make). */
const DEPARTED_KEPT = 4096;

export class ReadyPool {
  private waiting: Waiting[] = [];
  private readonly cadence = new Map<string, Cadence>();
  private readonly lastPartner = new Map<string, string>();
  private readonly canPair: (a: string, b: string) => boolean;
  private readonly minWaitMs: number;
  private readonly maxWaitMs: number;
  private readonly repeatHoldFrac: number;
  private readonly graceFrac: number;
  private readonly capFrac: number;
  private readonly fairFrac: number;
  /** Counters for the dashboard and the benchmark; `leftAtOnce` of the solos had nobody due. */
  readonly stats = { pairs: 0, solos: 0, leftAtOnce: 0 };
  /**
   * What the pool's decisions cost. `scans`: walks over every peer's cadence (the typical
   * cadence, the busiest peers' shares), kept until a cadence, a score or the set of peers
   * changes, so a ready costs a few however many peers wait. `pairs`: pairs of waiters weighed.
   * With a walk per pair of waiters, 128 waiting peers made each ready cost a quarter of a
   * second of the coordinator's event loop, and strangers send readies.
   */
  readonly work = { scans: 0, pairs: 0 };
  /** Bumped when a cadence's period or step period, or the set of peers, changes. */
  private cadenceVersion = 0;
  /** Bumped when a pairing score, or the set of peers, changes. */
  private scoreVersion = 0;
  private typicalKept: { version: number; value: number | null } | null = null;
  /** The two peers with the most pairings (decayed alike, so their order holds at any time). */
  private busiestKept: { version: number; tau: number; first: [string, Cadence] | null; second: [string, Cadence] | null } | null = null;
  /** How many times the pool paired each live peer. */
  readonly partnersOf = new Map<string, number>();
  /**
   * When peers that left were last paired: one that reconnects under the same id (its session)
   * gets its turn back from there, not at once. The oldest go first past DEPARTED_KEPT.
   */
  private readonly departed = new Map<string, number>();

  constructor(private readonly o: ReadyPoolOptions) {
    this.canPair = o.canPair ?? (() => true);
    this.minWaitMs = o.minWaitMs ?? PAIR_WAIT_BOUNDS_MS.min;
    this.maxWaitMs = o.maxWaitMs ?? PAIR_WAIT_BOUNDS_MS.max;
    this.repeatHoldFrac = o.repeatHoldFrac ?? 0.25;
    this.graceFrac = o.graceFrac ?? 0.25;
    this.capFrac = o.capFrac ?? 0.75;
    this.fairFrac = o.fairFrac ?? 0.5;
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
    let wait = Math.min(this.maxWaitMs, Math.max(this.minWaitMs, waitMs));
    const typical = this.typicalCadence();
    // Rule 4: what a peer asks for is its own claim; the run's typical loop bounds it.
    // Only a typical cadence from step progress is a loop time: readies alone can be as fast as
    // a test's peers with no inner loop, and a cap from them would cut every wait to the minimum.
    // Never below `capFrac` of the peer's own cadence: a peer slower than the run (or a run
    // whose typical cadence is wrong) must still wait long enough to meet a partner due.
    if (typical !== null && this.o.trackProgress && this.o.fair !== false) {
      wait = Math.min(wait, Math.max(this.minWaitMs, this.capFrac * Math.max(typical, this.observedCadence(peer) ?? 0)));
    }
    const me: Waiting = { peer, round, since: now, until: now + wait, repeatAt: now };
    const events: PoolEvents = { matches: [], solos: [] };

    if (this.eligibleAt(peer) > now) {
      // Paired too recently for its cadence: it may wait for its turn (tick() pairs it then),
      // but only when someone could be there to meet it.
      const due = this.nextDue(peer, now);
      if (this.waiting.some((w) => this.canPair(peer, w.peer)) || due === 'unknown' || (due !== null && due.at <= me.until)) {
        this.waiting.push(me);
      } else {
        this.leaveAtOnce(me, now, events);
      }
      return events;
    }
    const candidates = this.waiting.filter((w) => this.canPair(peer, w.peer) && this.eligibleAt(w.peer) <= now);
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
      // The hold ends by the time the last partner would give up: a repeat beats a solo step.
      const held = Math.min(hold, ...candidates.map((c) => c.until));
      if (held <= now) {
        events.matches.push(this.match(me, candidates[this.index(candidates.length)]!));
        return events;
      }
      me.repeatAt = held;
      this.waiting.push(me);
      return events;
    }
    // A waiter whose turn (rule 4) comes within our wait is as good as a peer due then.
    let turn = Infinity;
    for (const w of this.waiting) if (this.canPair(peer, w.peer)) turn = Math.min(turn, this.eligibleAt(w.peer));
    if (due === 'unknown' || turn <= me.until) {
      this.waiting.push(me);
    } else if (due !== null && due.at <= me.until) {
      me.until = Math.min(me.until, due.at + due.grace);
      this.waiting.push(me);
    } else {
      // Nobody is due within our wait: waiting would only be idle time.
      this.leaveAtOnce(me, now, events);
    }
    return events;
  }

  /** A solo step with no wait: nobody could be there to meet the peer in time. */
  private leaveAtOnce(w: Waiting, now: number, events: PoolEvents): void {
    this.release(w.peer, now);
    this.stats.solos++;
    this.stats.leftAtOnce++;
    events.solos.push({ peer: w.peer, round: w.round });
  }

  /** Advance to now: repeat hold-offs that ended pair up, waits that ended go solo. */
  tick(): PoolEvents {
    const now = this.o.now();
    const events: PoolEvents = { matches: [], solos: [] };
    let turns = this.turns();
    for (const w of [...this.waiting]) {
      // A wait that ends now still takes a partner pairable now (a held repeat) over a solo step.
      if (!this.waiting.includes(w) || w.until < now) continue;
      if (turns.version !== this.scoreVersion) turns = this.turns(); // a match moved the shares
      const others = this.waiting.filter((o) => o !== w && o.until >= now && this.pairableAt(w, o, turns.at) <= now);
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
    if (this.waiting.length === 0) return null;
    let t = Infinity;
    for (const w of this.waiting) t = Math.min(t, w.until);
    // Two waiters pair no earlier than the later of their turns and arrivals: walked in that
    // order, no pair after the first whose later one comes at or past the best found can beat it.
    // So the walk is over the few waiters that could pair before someone's wait ends, not every
    // pair of waiters (a ready costs this walk, and strangers send readies).
    const turns = this.turns();
    const by = this.waiting.map((w) => ({ w, from: Math.max(turns.at.get(w.peer)!, w.since) })).sort((x, y) => x.from - y.from);
    for (let j = 1; j < by.length && by[j]!.from < t; j++) {
      for (let i = 0; i < j; i++) t = Math.min(t, this.pairableAt(by[i]!.w, by[j]!.w, turns.at));
    }
    return t;
  }

  /** Every waiter's turn (eligibleAt) now, for a walk over pairs of waiters; valid until a match (scoreVersion). */
  private turns(): { version: number; at: Map<string, number> } {
    return { version: this.scoreVersion, at: new Map(this.waiting.map((w) => [w.peer, this.eligibleAt(w.peer)])) };
  }

  /** From when two waiting peers may pair: a repeat only once both hold-offs ended. */
  private pairableAt(a: Waiting, b: Waiting, turns: Map<string, number>): number {
    this.work.pairs++;
    if (!this.canPair(a.peer, b.peer)) return Infinity;
    const turn = Math.max(turns.get(a.peer)!, turns.get(b.peer)!);
    return Math.max(turn, this.isRepeat(a.peer, b.peer) ? Math.max(a.repeatAt, b.repeatAt) : Math.max(a.since, b.since));
  }

  /**
   * `peer` reported inner step `step` (the coordinator, from its reports), in a run of
   * `stepsPerRound` inner steps per outer round: its step progress bounds its cadence (rule 4).
   */
  progress(peer: string, step: number, stepsPerRound: number): void {
    if (!(step >= 0) || !(stepsPerRound >= 1)) return;
    const now = this.o.now();
    const c = this.cadenceOf(peer);
    const last = c.lastStep;
    if (last !== null && step <= last.step) return; // no progress: nothing learned
    c.lastStep = { step, at: now };
    if (last === null) return;
    const perRound = ((now - last.at) / (step - last.step)) * stepsPerRound;
    c.stepPeriod = c.stepPeriod === null ? perRound : (1 - CADENCE_EWMA) * c.stepPeriod + CADENCE_EWMA * perRound;
    this.cadenceVersion++;
  }

  /**
   * The run's typical cadence: the median over groups (`groupOf`) of the slowest observed
   * cadence in each; when progress is fed, only peers whose steps advanced count, and only
   * trusted peers (`trusted`) when any has a cadence. Null until one is known.
   */
  typicalCadence(): number | null {
    if (this.typicalKept?.version !== this.cadenceVersion) this.typicalKept = { version: this.cadenceVersion, value: this.scanTypical() };
    return this.typicalKept.value;
  }

  private scanTypical(): number | null {
    this.work.scans++;
    // One value per group, as the run's step votes are one per address (stepVotes): a median per
    // peer id was three ids' from one host, and their claimed ~900 steps/s cut every honest wait
    // to the minimum. A group's value is its slowest peer's: a cap errs towards the longer wait.
    // New ids are free, so when any trusted peer has a cadence only trusted ones count.
    const trusted = new Map<string, number>(), all = new Map<string, number>();
    for (const [peer, c] of this.cadence) {
      const x = this.o.trackProgress ? (c.stepPeriod === null ? null : Math.max(c.period ?? 0, c.stepPeriod)) : c.period;
      if (x === null) continue;
      const group = this.o.groupOf?.(peer) ?? peer;
      for (const m of (this.o.trusted?.(peer) ?? true) ? [all, trusted] : [all]) m.set(group, Math.max(m.get(group) ?? 0, x));
    }
    const xs = [...(trusted.size > 0 ? trusted : all).values()];
    if (xs.length === 0) return null;
    xs.sort((a, b) => a - b);
    const m = xs.length >> 1;
    return xs.length % 2 === 1 ? xs[m]! : (xs[m - 1]! + xs[m]!) / 2;
  }

  /** A peer's own cadence as the pool observed it (rule 4); null when nothing is known. */
  observedCadence(peer: string): number | null {
    const c = this.cadence.get(peer);
    if (!c) return null;
    // Steps that stopped advancing count from the last advance: training for a while and then
    // only waiting does not keep a fast cadence.
    const stalled = c.lastStep === null ? 0 : this.o.now() - c.lastStep.at;
    const steps = !this.o.trackProgress ? null : c.stepPeriod === null ? this.typicalCadence() : Math.max(c.stepPeriod, stalled);
    if (c.period === null && steps === null) return null;
    return Math.max(c.period ?? 0, steps ?? 0);
  }

  /** From when a peer may be paired again: once per `fairFrac` of its observed cadence. */
  private eligibleAt(peer: string): number {
    if (this.o.predict === false || this.o.fair === false) return -Infinity;
    const c = this.cadence.get(peer);
    if (!c || c.paired === null) return -Infinity;
    // Without step progress a peer's cadence is only its readies, which a camper makes as fast
    // as it likes and an honest peer's vary from round to round (a slow exchange, then quick
    // ones): a turn from them would hold back only honest peers. The share rule still applies.
    if (!this.o.trackProgress) return this.shareTurn(peer, c);
    const cadence = this.observedCadence(peer);
    if (cadence === null) return -Infinity;
    // The allowance for a loop's jitter is for peers whose steps show they train; one whose
    // steps never advanced waits a whole typical cadence.
    const typical = this.typicalCadence();
    const frac = this.o.trackProgress && c.stepPeriod === null && typical !== null ? UNPROVEN_TURNS : this.fairFrac;
    return Math.max(c.paired + frac * cadence, this.shareTurn(peer, c));
  }

  /**
   * The share rule: a peer's pairings, decayed over SHARE_CADENCES typical cadences, may exceed
   * the busiest other peer's by at most SHARE_MARGIN. Its steps and readies are its own claims (a
   * peer can report fake steps up to report-bounds' physical limit); its share of partners is not.
   * Returns from when it is back within its share (all scores decay alike, so only the margin of
   * margin shrinks: score·e^(−x) ≤ median·e^(−x) + M from x = ln((score − median) / M)).
   */
  private shareTurn(peer: string, c: Cadence): number {
    const typical = this.typicalCadence();
    if (typical === null || !(typical > 0) || c.score === 0) return -Infinity;
    const now = this.o.now();
    const tau = SHARE_CADENCES * typical;
    const score = (x: Cadence) => x.score * Math.exp(-(now - x.scoreAt) / tau);
    // "No more partners than anyone else": the busiest other peer sets the share, so the
    // fastest honest peer of a mixed swarm is held back only to the next fastest.
    const { first, second } = this.busiest(tau);
    const other = first !== null && first[0] !== peer ? first : second;
    if (other === null) return -Infinity;
    const excess = score(c) - score(other[1]);
    const margin = this.o.shareMargin ?? SHARE_MARGIN;
    return excess <= margin ? -Infinity : now + tau * Math.log(excess / margin);
  }

  /**
   * The two peers with the highest decayed pairing score. Every score decays by the same factor,
   * so their order is that of ln(score) + scoreAt / tau at any time.
   */
  private busiest(tau: number): { first: [string, Cadence] | null; second: [string, Cadence] | null } {
    if (this.busiestKept?.version === this.scoreVersion && this.busiestKept.tau === tau) return this.busiestKept;
    this.work.scans++;
    const key = (x: Cadence) => Math.log(x.score) + x.scoreAt / tau;
    let first: [string, Cadence] | null = null, second: [string, Cadence] | null = null;
    for (const e of this.cadence) {
      if (first === null || key(e[1]) > key(first[1])) { second = first; first = e; }
      else if (second === null || key(e[1]) > key(second[1])) second = e;
    }
    this.busiestKept = { version: this.scoreVersion, tau, first, second };
    return this.busiestKept;
  }

  private cadenceOf(peer: string): Cadence {
    let c = this.cadence.get(peer);
    if (!c) {
      const now = this.o.now();
      c = { released: null, period: null, dev: 0, paired: this.departed.get(peer) ?? null, heard: now, stepPeriod: null, lastStep: null, score: 0, scoreAt: now };
      this.cadence.set(peer, c);
      this.departed.delete(peer);
      this.cadenceVersion++;
      this.scoreVersion++;
    }
    return c;
  }

  /**
   * A peer joined the run (the owner that passes `liveCount` says so): until it is ready twice
   * its cadence is unknown, and others wait their plain wait for it only for a while (nextDue).
   */
  join(peer: string): void {
    this.cadenceOf(peer).heard = this.o.now();
  }

  /** The owner's `trusted` or `groupOf` changed for some peer: the typical cadence is taken again. */
  regroup(): void {
    this.cadenceVersion++;
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
    const paired = this.cadence.get(peer)?.paired;
    if (paired != null) {
      this.departed.delete(peer);
      this.departed.set(peer, paired);
      while (this.departed.size > DEPARTED_KEPT) this.departed.delete(this.departed.keys().next().value!);
    }
    if (this.cadence.delete(peer)) { this.cadenceVersion++; this.scoreVersion++; }
    this.lastPartner.delete(peer);
    this.partnersOf.delete(peer);
  }

  /** Forget every wait (the run stopped); cadences stay. */
  clear(): void {
    this.waiting = [];
  }

  private observe(peer: string, now: number): void {
    const c = this.cadence.get(peer);
    if (!c) { this.cadenceOf(peer); return; }
    c.heard = now;
    if (c.released === null) return;
    const interval = now - c.released;
    if (c.period !== null) c.dev = (1 - DEV_EWMA) * c.dev + DEV_EWMA * Math.abs(interval - c.period);
    c.period = c.period === null ? interval : (1 - CADENCE_EWMA) * c.period + CADENCE_EWMA * interval;
    c.released = null;
    this.cadenceVersion++;
  }

  private release(peer: string, now: number): void {
    const c = this.cadence.get(peer);
    if (c) c.released = now;
  }

  /**
   * The earliest time another pairable peer (not waiting) is expected ready, with the grace a
   * waiter allows it; 'unknown' while some peer's cadence is not known yet (for a bounded time:
   * NEWCOMER_CADENCES); null if nobody is expected. A peer overdue by more than half its cadence
   * (or three times its jitter, if more) is not counted on (it paused, or left without saying).
   */
  private nextDue(peer: string, now: number): { at: number; grace: number } | 'unknown' | null {
    const live = this.o.liveCount?.();
    if (live !== undefined && live <= 1) return null;
    if (this.o.predict === false) return 'unknown';
    let best: { at: number; grace: number } | null = null;
    let seen = 0;
    const waiting = new Set(this.waiting.map((w) => w.peer));
    const typical = this.typicalCadence();
    // Without a typical cadence nobody's loop is known yet: every wait is the plain one anyway.
    const newcomerFor = typical === null ? Infinity : NEWCOMER_CADENCES * typical;
    for (const [other, c] of this.cadence) {
      if (other === peer) continue;
      seen++;
      if (!this.canPair(peer, other) || waiting.has(other)) continue;
      if (c.period === null) {
        // Joined, or ready once, and silent since: after a while it is not due, and a peer
        // with nobody else is as good as alone.
        if (now - c.heard <= newcomerFor) return 'unknown';
        continue;
      }
      if (c.released === null) continue; // on its way back from a wait we did not see end
      let at = c.released + c.period;
      if (at < now) {
        if (now - at > Math.min(c.period, Math.max(c.period / 2, DEV_GRACE * c.dev))) continue;
        at = now;
      }
      const grace = Math.max(this.minWaitMs, this.graceFrac * c.period, Math.min(DEV_GRACE * c.dev, c.period / 2));
      if (best === null || at < best.at) best = { at, grace };
    }
    // Someone live the pool never heard of (its owner does not `join` peers), or we know of
    // nobody at all: we cannot tell who is due, so the plain rule applies.
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
    for (const p of [newcomer.peer, other.peer]) {
      const c = this.cadence.get(p);
      if (c) {
        c.paired = now;
        const typical = this.typicalCadence();
        c.score = (typical === null || !(typical > 0) ? c.score : c.score * Math.exp(-(now - c.scoreAt) / (SHARE_CADENCES * typical))) + 1;
        c.scoreAt = now;
        this.scoreVersion++;
      }
      this.partnersOf.set(p, (this.partnersOf.get(p) ?? 0) + 1);
    }
    this.stats.pairs++;
    return { initiator: { peer: newcomer.peer, round: newcomer.round }, responder: { peer: other.peer, round: other.round } };
  }
}
