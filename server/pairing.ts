// The ready pool (DESIGN.md section 3): a peer that finished its H inner steps asks for a
// partner; if other peers of the run are waiting, it is matched with one of them chosen
// uniformly at random; otherwise it waits, and when its wait runs out it is told to take a
// solo outer step. The wait is the peer's own (a fraction of its inner-loop time), clamped so
// it is never zero — with no wait nobody is ever in the pool and every step is solo.
import type { PairedMsg } from '../src/protocol/messages.ts';
import type { Clock } from './clock.ts';

export interface ReadyPoolOptions {
  clock: Clock;
  /** Uniform in [0, 1): which waiting peer a newcomer is matched with. */
  rng: () => number;
  send: (peerId: string, msg: PairedMsg) => void;
  /** Lower clamp of a peer's wait. */
  minWaitMs?: number;
  /** Upper clamp: a stuck pool must not hold a peer for ever. */
  maxWaitMs?: number;
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
  /** Counters for the dashboard and the benchmark. */
  readonly stats = { pairs: 0, solos: 0 };

  constructor(private readonly o: ReadyPoolOptions) {
    this.minWaitMs = o.minWaitMs ?? 50;
    this.maxWaitMs = o.maxWaitMs ?? 120_000;
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
    const others = [...this.waiting.keys()];
    if (others.length > 0) {
      const partner = others[Math.min(others.length - 1, Math.floor(this.o.rng() * others.length))]!;
      const w = this.waiting.get(partner)!;
      this.remove(partner);
      this.stats.pairs++;
      // The newcomer initiates the WebRTC connection; the waiting peer answers.
      this.o.send(peer, { t: 'paired', round, partner, initiator: true });
      this.o.send(partner, { t: 'paired', round: w.round, partner: peer, initiator: false });
      return;
    }
    const wait = Math.min(this.maxWaitMs, Math.max(this.minWaitMs, waitMs));
    const timer = this.o.clock.setTimeout(() => {
      if (this.waiting.get(peer)?.timer !== timer) return;
      this.waiting.delete(peer);
      this.stats.solos++;
      this.o.send(peer, { t: 'paired', round, partner: null, initiator: false });
    }, wait);
    this.waiting.set(peer, { round, since: this.o.clock.now(), timer });
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
  }
}
