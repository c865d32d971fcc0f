// The coordinator's ready pool: the one pool rule (src/protocol/ready-pool.ts, docs/pairing.md)
// on the server's clock. This file owns only what is the server's: one timer armed at the
// pool's next deadline, and the `paired` messages it sends.
import type { PairedMsg } from '../src/protocol/messages.ts';
import { ReadyPool as PoolRule, type PoolEvents } from '../src/protocol/ready-pool.ts';
import type { Clock } from '../src/protocol/clock.ts';

export interface ReadyPoolOptions {
  clock: Clock;
  /** Uniform in [0, 1): who meets whom among the waiting. */
  rng: () => number;
  send: (peerId: string, msg: PairedMsg) => void;
  /** Lower clamp of a peer's wait. */
  minWaitMs?: number;
  /** Upper clamp: a stuck pool must not hold a peer for ever. */
  maxWaitMs?: number;
  /** Veto a pairing (one peer reported the other); must be symmetric. */
  canPair?: (a: string, b: string) => boolean;
  /** Live peers of the run: a peer alone leaves at once. Each is introduced with join(). */
  liveCount?: () => number;
  /** A peer's group for the run's typical cadence, one value per group (its client address). */
  groupOf?: (peer: string) => string;
  /** Whether a peer is trusted (off probation): the typical cadence counts only those, when any has one. */
  trusted?: (peer: string) => boolean;
  /** Cadence prediction (src/protocol/ready-pool.ts); off: every waiter waits its whole wait. */
  predict?: boolean;
  /** Step progress is fed from reports (`progress`): rule 4 of the pool then checks cadences by steps. */
  trackProgress?: boolean;
  /** Rule 4 (fairness); off only to measure what it does. */
  fair?: boolean;
}

export class ReadyPool {
  private readonly rule: PoolRule;
  private timer: unknown = null;

  constructor(private readonly o: ReadyPoolOptions) {
    this.rule = new PoolRule({
      now: () => o.clock.now(), random: o.rng, canPair: o.canPair, minWaitMs: o.minWaitMs, maxWaitMs: o.maxWaitMs, liveCount: o.liveCount, predict: o.predict,
      trackProgress: o.trackProgress, fair: o.fair, groupOf: o.groupOf, trusted: o.trusted,
    });
  }

  /** Counters for the dashboard and the benchmark. */
  get stats(): { pairs: number; solos: number; leftAtOnce: number } {
    return this.rule.stats;
  }

  get size(): number {
    return this.rule.size;
  }

  has(peer: string): boolean {
    return this.rule.has(peer);
  }

  /** `peer` is ready for outer round `round` and will wait at most `waitMs` for a partner. */
  ready(peer: string, round: number, waitMs: number): void {
    this.announce(this.rule.enter(peer, round, waitMs));
  }

  /** `peer` reported inner step `step` in a run of `stepsPerRound` inner steps per round. */
  progress(peer: string, step: number, stepsPerRound: number): void {
    this.rule.progress(peer, step, stepsPerRound);
  }

  /** `peer` joined the run: others wait for its first readies only for a while. */
  join(peer: string): void {
    this.rule.join(peer);
  }

  /** `groupOf` or `trusted` changed for some peer. */
  regroup(): void {
    this.rule.regroup();
  }

  /** The run's typical cadence in ms (the pool rule's), null until one is known. */
  typicalCadence(): number | null {
    return this.rule.typicalCadence();
  }

  /** How many times the pool paired `peer` while it was live. */
  partnersOf(peer: string): number {
    return this.rule.partnersOf.get(peer) ?? 0;
  }

  /** Stop a peer's wait (it asked again, or its connection closed). */
  remove(peer: string): void {
    this.rule.remove(peer);
    this.arm();
  }

  /** A peer left the run: its wait and its cadence go. */
  forget(peer: string): void {
    this.rule.forget(peer);
    this.arm();
  }

  clear(): void {
    this.rule.clear();
    this.arm();
  }

  private announce(e: PoolEvents): void {
    for (const m of e.matches) {
      // Exactly one side initiates the WebRTC connection. Each is told the round its partner
      // entered with: the round that partner's messages of this pairing carry.
      this.o.send(m.initiator.peer, { t: 'paired', round: m.initiator.round, partner: m.responder.peer, partnerRound: m.responder.round, initiator: true });
      this.o.send(m.responder.peer, { t: 'paired', round: m.responder.round, partner: m.initiator.peer, partnerRound: m.initiator.round, initiator: false });
    }
    for (const s of e.solos) this.o.send(s.peer, { t: 'paired', round: s.round, partner: null, initiator: false });
    this.arm();
  }

  private arm(): void {
    this.o.clock.clearTimeout(this.timer);
    this.timer = null;
    const at = this.rule.nextDeadline();
    if (at === null) return;
    this.timer = this.o.clock.setTimeout(() => {
      this.timer = null;
      this.announce(this.rule.tick());
    }, Math.max(0, at - this.o.clock.now()));
  }
}
