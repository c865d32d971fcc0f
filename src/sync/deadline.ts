// Adaptive deadlines for tensor transfers: a receive may take a multiple of what the link's
// measured rate says the bytes need, within fixed bounds. The mesh owns one estimator; the
// exchange and the state bootstrap arm their timers with it. The bounds (DEFAULT_DEADLINE) and what
// they ask of a run's links are src/protocol/exchange-link.ts.
import type { DeadlineSettings } from '../protocol/exchange-link.ts';

/**
 * The most one miss lengthens the deadline by, whatever the partner's partial rate says: an honest
 * partner that needed up to this many times the deadline it missed fits the next one, a slower
 * one the one after; a partner that trickles a byte and stalls buys 4x, not maxMs.
 */
export const MISS_GROWTH = 4;

/** Measures transfers and turns the expected size of the next one into a deadline. */
export class DeadlineEstimator {
  private bytesPerMs: number | null = null;

  constructor(readonly settings: DeadlineSettings) {}

  deadlineMs(bytes: number): number {
    const { multiple, minMs, maxMs, initialMs } = this.settings;
    const raw = this.bytesPerMs === null ? initialMs : (multiple * bytes) / this.bytesPerMs;
    return Math.min(maxMs, Math.max(minMs, raw));
  }

  /** A completed receive of `bytes` that took `ms`. */
  observe(bytes: number, ms: number): void {
    const rate = bytes / Math.max(1, ms);
    // An exponential average: follows a link that got slower within a few rounds.
    this.bytesPerMs = this.bytesPerMs === null ? rate : 0.7 * this.bytesPerMs + 0.3 * rate;
  }

  /**
   * A receive of `bytes` missed its deadline of `deadlineMs`, with `received` of them in after
   * `elapsedMs`. Only completed receives are observed, so without this one fast exchange set the
   * deadline for every partner, and an honest slower one missed it for good: a miss at least
   * doubles the deadline for that size (up to maxMs), and where the partner's partial rate says
   * it needs longer, its rate is taken, up to MISS_GROWTH times the deadline it missed. That rate
   * is the partner's to choose: one that sent a single byte of 19.2 MB and stopped set the
   * deadline of every later exchange, whoever the partner, to maxMs at once. Never shortens a
   * deadline; the next completed receive pulls the average back.
   */
  miss(bytes: number, deadlineMs: number, received = 0, elapsedMs = deadlineMs): void {
    if (!(bytes > 0)) return;
    const { multiple, maxMs } = this.settings;
    const missed = Math.max(1, deadlineMs);
    const rateFor = (ms: number) => (multiple * bytes) / Math.min(maxMs, ms);
    const doubled = rateFor(2 * missed);
    const partial = received > 0 ? Math.max(received / Math.max(1, elapsedMs), rateFor(MISS_GROWTH * missed)) : Infinity;
    this.bytesPerMs = Math.min(this.bytesPerMs ?? Infinity, doubled, partial);
  }

  /**
   * How long we keep sending to a peer that waits under its own deadline, at most maxMs (a
   * little more: its timer starts when our first bytes reach it). Past this no honest receiver
   * is still waiting, and a send that has not ended is one to a peer that does not read.
   */
  sendDeadlineMs(): number {
    return this.settings.maxMs + this.settings.minMs;
  }
}
