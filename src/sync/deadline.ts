// Adaptive deadlines for tensor transfers: a receive may take a multiple of what the link's
// measured rate says the bytes need, within fixed bounds. The mesh owns one estimator; the
// exchange and the state bootstrap arm their timers with it.
import { compressionForRun, exchangePayloadBytes } from './compress.ts';
import type { DeadlineSettings } from './types.ts';

export const DEFAULT_DEADLINE: DeadlineSettings = {
  // 4x the expected time absorbs a GC pause or a burst of cross traffic on an honest link.
  multiple: 4,
  // Data channels need a few round trips to ramp up; below 2 s honest peers on slow home links
  // would time out on small models.
  minMs: 2_000,
  // A partner that needs more than a minute costs more than a solo step.
  maxMs: 60_000,
  // First exchange: no measurement yet.
  initialMs: 15_000,
};

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
   * it needs longer, its rate is taken. Never shortens a deadline; the next completed receive
   * pulls the average back.
   */
  miss(bytes: number, deadlineMs: number, received = 0, elapsedMs = deadlineMs): void {
    if (!(bytes > 0)) return;
    const { multiple, maxMs } = this.settings;
    const doubled = (multiple * bytes) / Math.min(maxMs, 2 * Math.max(1, deadlineMs));
    const partial = received > 0 ? received / Math.max(1, elapsedMs) : Infinity;
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

/** The home uplink a run's exchange is measured against: 10 Mbit/s, 1.25 MB/s each way. */
export const HOME_UPLINK_BYTES_PER_S = 1_250_000;
/** Link rates an exchange's time is quoted at, bytes/s each way: 1, 10 and 100 Mbit/s. */
export const REFERENCE_LINKS: readonly number[] = [125_000, HOME_UPLINK_BYTES_PER_S, 12_500_000];
/** The run settings (RunInfo.compression), least compressed first. */
const COMPRESSIONS = ['none', 'fp16', 'bf16', 'int8'] as const;

/** What a run's exchange asks of each volunteer's link. */
export interface ExchangeLink {
  compression: string;
  /** φ and Δ in the run's encodings, sent and received every outer round (exchangePayloadBytes). */
  bytes: number;
  /** The least rate, bytes/s each way, at which an exchange ends inside the receive's longest wait (maxMs, 60 s). */
  leastBytesPerS: number;
  /** Below this rate a volunteer's first exchange (initialMs, 15 s, before it measured a rate) misses and is solo. */
  firstBytesPerS: number;
  /** Seconds one exchange takes at each of REFERENCE_LINKS. */
  secondsAt: { bytesPerS: number; seconds: number }[];
}

/**
 * The link a run's exchange needs: `elements` is its layout's total (buildLayout(model).total),
 * `compression` its setting. Slower than leastBytesPerS, a volunteer never finishes an exchange
 * and every round is solo (src/sync/deadline.ts DEFAULT_DEADLINE, docs/design.md).
 */
export function exchangeLink(compression: string, elements: number, deadline: Pick<DeadlineSettings, 'maxMs' | 'initialMs'> = DEFAULT_DEADLINE): ExchangeLink {
  const bytes = exchangePayloadBytes(compressionForRun(compression), elements);
  return {
    compression,
    bytes,
    leastBytesPerS: Math.ceil((bytes * 1000) / deadline.maxMs),
    firstBytesPerS: Math.ceil((bytes * 1000) / deadline.initialMs),
    secondsAt: REFERENCE_LINKS.map((bytesPerS) => ({ bytesPerS, seconds: bytes / bytesPerS })),
  };
}

/** A rate for people: "1.45 MB/s (11.6 Mbit/s)". */
export function formatRate(bytesPerS: number): string {
  return `${(bytesPerS / 1e6).toFixed(2)} MB/s (${((bytesPerS * 8) / 1e6).toFixed(1)} Mbit/s)`;
}

/**
 * Null when a run's exchange fits a home uplink (HOME_UPLINK_BYTES_PER_S) inside the longest
 * wait; else a warning that names the rate it needs and the least compression that would fit,
 * if one does. Advice only: a lab whose volunteers have fast links may want such a run.
 */
export function linkWarning(run: { preset: string; compression: string }, elements: number, deadline: Pick<DeadlineSettings, 'maxMs' | 'initialMs'> = DEFAULT_DEADLINE): string | null {
  const need = exchangeLink(run.compression, elements, deadline);
  if (need.leastBytesPerS <= HOME_UPLINK_BYTES_PER_S) return null;
  const fits = COMPRESSIONS.map((c) => exchangeLink(c, elements, deadline)).find((l) => l.leastBytesPerS <= HOME_UPLINK_BYTES_PER_S);
  const least = exchangeLink('int8', elements, deadline);
  return `each outer round a volunteer of this ${run.preset} run (compression ${run.compression}) sends and receives ${need.bytes} bytes; ` +
    `to finish inside the ${deadline.maxMs / 1000} s a volunteer waits for its partner it needs ${formatRate(need.leastBytesPerS)} each way, ` +
    `more than a ${formatRate(HOME_UPLINK_BYTES_PER_S)} home uplink: volunteers on slower links train solo every round. ` +
    (fits ? `Compression ${fits.compression} needs ${formatRate(fits.leastBytesPerS)}.`
      : `No compression fits such a link (int8 needs ${formatRate(least.leastBytesPerS)}); a smaller preset does.`);
}
