// What a run's exchange asks of a volunteer's link, in one place: the receive deadline's bounds
// (DEFAULT_DEADLINE), the run's wire encodings and their bytes (compressionForRun,
// exchangePayloadBytes), and the rates those make (exchangeLink, linkWarning). Pure arithmetic on
// the wire format, no codec: the mesh (src/sync) arms its timers and encodes its tensors with
// these, the coordinator (server/) warns a run's creator with them, and the pages state them.
import { CodedError } from './errors.ts';
import { payloadBytes } from './frame.ts';
import { COMPRESSIONS } from './messages.ts';
import { formatRate } from './units.ts';

export interface DeadlineSettings {
  /** The deadline is this multiple of the expected transfer time (bytes / measured throughput). */
  multiple: number;
  /** Never shorter: connection jitter and GC pauses must not turn honest partners into solo steps. */
  minMs: number;
  /** Never longer: a partner that slow costs more than the exchange is worth. */
  maxMs: number;
  /** Before any transfer was measured. */
  initialMs: number;
}

/** The receive deadline's bounds (src/sync/deadline.ts DeadlineEstimator measures within them). */
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

/** Run setting: which encodings peers use. Off (f32 both) until the simulator shows no loss regression. */
export interface CompressionSetting {
  phi: 'f32' | 'f16' | 'bf16';
  /** q8 only for Δ: its error feedback lives with the sender across rounds; φ has no such memory. */
  delta: 'f32' | 'f16' | 'bf16' | 'q8';
}

/** Bytes a peer sends its partner in one exchange, φ and Δ in the run's encodings (each way; frame headers aside). */
export function exchangePayloadBytes(c: CompressionSetting, elements: number): number {
  return payloadBytes(c.phi, elements) + payloadBytes(c.delta, elements);
}

/**
 * The coordinator's run setting (RunInfo.compression) as mesh encodings: 'none' sends f32;
 * 'fp16' and 'bf16' halve both tensors; 'int8' sends φ as f16 and Δ as blockwise int8 with
 * error feedback (0.38x the bytes of f32 per exchange). Any other name throws ERR_COMPRESSION.
 */
export function compressionForRun(name: string): CompressionSetting {
  switch (name) {
    case 'none': return { phi: 'f32', delta: 'f32' };
    case 'fp16': return { phi: 'f16', delta: 'f16' };
    case 'bf16': return { phi: 'bf16', delta: 'bf16' };
    case 'int8': return { phi: 'f16', delta: 'q8' };
    default: throw new CodedError('ERR_COMPRESSION', `unknown compression "${name}"; expected none, fp16, bf16 or int8`);
  }
}

/** The home uplink a run's exchange is measured against: 10 Mbit/s, 1.25 MB/s each way. */
export const HOME_UPLINK_BYTES_PER_S = 1_250_000;
/** Link rates an exchange's time is quoted at, bytes/s each way: 1, 10 and 100 Mbit/s. */
export const REFERENCE_LINKS: readonly number[] = [125_000, HOME_UPLINK_BYTES_PER_S, 12_500_000];

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
 * and every round is solo; slower than firstBytesPerS, its first exchange is (DEFAULT_DEADLINE,
 * docs/design.md).
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
