// GPU duty cycle: the fraction of wall time the volunteer's GPU spends on our work. Intensity
// is a target duty cycle; after each chunk of `w` ms of work we rest `w * (1 - d) / d` ms, so
// busy / (busy + rest) = d. This is what BOINC's "use at most N% of CPU time" and Folding@home's
// power slider do: the GPU cools and the fans slow down in the rests.
//
// A chunk is a few inner steps submitted together. It is sized to take about CHUNK_TARGET_MS so
// that the page and the desktop stay responsive (other GPU work interleaves between chunks), and
// "pause now" takes effect within about that time.

/** Lowest intensity offered: below 10% a chunk's fixed costs dominate and nothing is learned. */
export const MIN_INTENSITY = 0.1;
export const MAX_INTENSITY = 1;
/** Aim for chunks of ~250 ms of GPU work: long enough to amortise the round trip to the worker. */
export const CHUNK_TARGET_MS = 250;

export function clampIntensity(x: number, cap = MAX_INTENSITY): number {
  if (!Number.isFinite(x)) throw new Error(`intensity must be a number between ${MIN_INTENSITY} and 1, got ${x}`);
  const hi = Math.max(MIN_INTENSITY, Math.min(MAX_INTENSITY, Number.isFinite(cap) ? cap : MAX_INTENSITY));
  return Math.min(hi, Math.max(MIN_INTENSITY, x));
}

/** Rest after `workMs` of work so that the chunk's duty cycle is `intensity` (0 at full power). */
export function restMs(workMs: number, intensity: number): number {
  if (!(workMs >= 0)) return 0;
  if (!(intensity > 0)) throw new Error(`intensity must be positive, got ${intensity}`);
  if (intensity >= 1) return 0;
  return (workMs * (1 - intensity)) / intensity;
}

/**
 * Steps for the next chunk: about CHUNK_TARGET_MS of work at the measured speed, at least 1, at
 * most `remaining` (the steps left before the next outer step).
 */
export function chunkSteps(msPerStep: number | null, remaining: number, targetMs = CHUNK_TARGET_MS): number {
  if (remaining <= 0) return 0;
  // Unknown speed: one step, then we know.
  if (msPerStep === null || !(msPerStep > 0)) return 1;
  return Math.max(1, Math.min(remaining, Math.floor(targetMs / msPerStep)));
}

/**
 * Measured duty cycle over a sliding window of wall time: busy intervals are recorded as they
 * end; everything else in the window counts as idle.
 */
export class DutyMeter {
  private intervals: { start: number; end: number }[] = [];

  constructor(private readonly windowMs = 30_000) {}

  busy(start: number, end: number): void {
    if (end > start) this.intervals.push({ start, end });
  }

  /** busy / window over [now - windowMs, now], or over the time since the first record if shorter. */
  value(now: number): number {
    const from = now - this.windowMs;
    this.intervals = this.intervals.filter((i) => i.end > from);
    if (this.intervals.length === 0) return 0;
    const begin = Math.max(from, this.intervals[0]!.start);
    const span = now - begin;
    if (span <= 0) return 0;
    let busy = 0;
    for (const i of this.intervals) busy += Math.min(i.end, now) - Math.max(i.start, begin);
    return Math.min(1, busy / span);
  }

  reset(): void {
    this.intervals = [];
  }
}
