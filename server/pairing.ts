// The ready pool (DESIGN.md section 3): a peer that finished its H inner steps asks for a
// partner and waits in the pool; ready peers are paired uniformly at random; a peer still
// unpaired when its own wait runs out is told to take a solo outer step. The wait is the peer's
// (a fraction of its inner-loop time), clamped so it is never zero: with no wait nobody is ever
// in the pool and every step is solo.
//
// Matching runs on a short gather tick (gatherMs) after the pool holds two or more peers, and
// pairs a random shuffle of everyone then waiting. Matching each newcomer at once with the one
// peer already waiting would pair by arrival order, so peers of similar speed would keep
// meeting each other and gossip would mix slowly; the tick costs at most gatherMs of idle time.
//
// A pair that `canPair` vetoes (one reported the other as an offender) is never formed: each
// peer in the shuffle takes the first later peer it may meet, so a vetoed peer keeps waiting
// for someone else (or goes solo when its wait ends). Peers with a veto inside the pool choose
// first (a stable sort keeps the shuffle otherwise), so they are not left over when a
// veto-free peer could have met them.
import type { PairedMsg } from '../src/protocol/messages.ts';
import type { Clock } from './clock.ts';

export interface ReadyPoolOptions {
  clock: Clock;
  /** Uniform in [0, 1): the shuffle that decides who meets whom. */
  rng: () => number;
  send: (peerId: string, msg: PairedMsg) => void;
  /** Lower clamp of a peer's wait. */
  minWaitMs?: number;
  /** Upper clamp: a stuck pool must not hold a peer for ever. */
  maxWaitMs?: number;
  /** Delay between the pool holding two peers and matching it. */
  gatherMs?: number;
  /** Veto a pairing (one peer reported the other); must be symmetric. */
  canPair?: (a: string, b: string) => boolean;
}

interface Waiting {
  round: number;
  since: number;
  timer: unknown;
}

export class ReadyPool {
  private readonly waiting = new Map<string, Waiting>();
  private readonly minWaitMs: number;
  private readonly maxWaitMs: number;
  private readonly gatherMs: number;
  private matchTimer: unknown = null;
  /** Counters for the dashboard and the benchmark. */
  readonly stats = { pairs: 0, solos: 0 };

  constructor(private readonly o: ReadyPoolOptions) {
    this.minWaitMs = o.minWaitMs ?? 50;
    this.maxWaitMs = o.maxWaitMs ?? 120_000;
    this.gatherMs = o.gatherMs ?? 20;
  }

  get size(): number {
    return this.waiting.size;
  }

  has(peer: string): boolean {
    return this.waiting.has(peer);
  }

  /** `peer` is ready for outer round `round` and will wait at most `waitMs` for a partner. */
  ready(peer: string, round: number, waitMs: number): void {
    // A repeated ready replaces the earlier one (the peer moved on to a newer round).
    this.remove(peer);
    const wait = Math.min(this.maxWaitMs, Math.max(this.minWaitMs, waitMs));
    const timer = this.o.clock.setTimeout(() => {
      if (this.waiting.get(peer)?.timer !== timer) return;
      this.waiting.delete(peer);
      this.stats.solos++;
      this.o.send(peer, { t: 'paired', round, partner: null, initiator: false });
    }, wait);
    this.waiting.set(peer, { round, since: this.o.clock.now(), timer });
    if (this.waiting.size >= 2 && this.matchTimer === null) {
      this.matchTimer = this.o.clock.setTimeout(() => {
        this.matchTimer = null;
        this.match();
      }, this.gatherMs);
    }
  }

  /** Pairs a uniformly random shuffle of the waiting peers; an odd one out keeps waiting. */
  match(): void {
    const ids = [...this.waiting.keys()];
    for (let i = ids.length - 1; i > 0; i--) {
      const j = Math.min(i, Math.floor(this.o.rng() * (i + 1)));
      [ids[i], ids[j]] = [ids[j]!, ids[i]!];
    }
    const canPair = this.o.canPair ?? (() => true);
    const vetoed = new Set(ids.filter((a) => ids.some((b) => b !== a && !canPair(a, b))));
    if (vetoed.size > 0) ids.sort((x, y) => Number(vetoed.has(y)) - Number(vetoed.has(x)));
    const taken = new Set<string>();
    for (let i = 0; i < ids.length; i++) {
      const a = ids[i]!;
      if (taken.has(a)) continue;
      const b = ids.slice(i + 1).find((x) => !taken.has(x) && canPair(a, x));
      if (b === undefined) continue;
      taken.add(a).add(b);
      const wa = this.waiting.get(a)!, wb = this.waiting.get(b)!;
      this.remove(a);
      this.remove(b);
      this.stats.pairs++;
      // Exactly one side initiates the WebRTC connection.
      this.o.send(a, { t: 'paired', round: wa.round, partner: b, initiator: true });
      this.o.send(b, { t: 'paired', round: wb.round, partner: a, initiator: false });
    }
  }

  /** Forget a peer (it left, or asked again). Safe for peers that are not waiting. */
  remove(peer: string): void {
    const w = this.waiting.get(peer);
    if (!w) return;
    this.o.clock.clearTimeout(w.timer);
    this.waiting.delete(peer);
  }

  clear(): void {
    for (const p of [...this.waiting.keys()]) this.remove(p);
    this.o.clock.clearTimeout(this.matchTimer);
    this.matchTimer = null;
  }
}
