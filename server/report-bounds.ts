// What a metric report may claim. The schema only says a field is a number; a peer could still
// report step 2^53-1, loss 0, 10^12 tokens/s or 2^53 bytes (enough to overflow SUM over a bucket
// and break the dashboard for good). Every field is bounded here by what could be physically
// true for this peer on this run since it joined; a report past a bound is refused with an error
// naming the field and the bound, and nothing is stored. Plot time is the coordinator's receive
// time (a client's clock is not trusted at all), so these bounds use only the server's clock.
import { stepFlopsFloor } from '../src/model/flops.ts';
import { buildLayout } from '../src/model/layout.ts';
import { MAX_LOSS, MIN_LOSS, type ReportFields, type RunInfo, type WireLoss } from '../src/protocol/messages.ts';
import { MAX_STEPS_PER_S, maxStepNow } from '../src/protocol/state-frame.ts';

/** Fastest link any volunteer could have (10 Gbit/s), and whole exchanges a report may cover at once. */
export const MAX_LINK_BYTES_PER_S = 1.25e9;
export const EXCHANGES_PER_REPORT = 4;

/**
 * The most arithmetic any volunteer's device could do a second (FLOP/s): twice the fp32 peak of the
 * fastest GPU on sale in 2026 (an RTX 5090, about 105 TFLOPS; an H200 has 67), and about 19 times
 * what Murmur's engine ran on an H200 (10.7 TFLOPS on `base`, docs/benchmarks.md). The engine
 * computes in f32; an engine on tensor cores would raise it.
 */
export const MAX_DEVICE_FLOPS = 2e14;

/**
 * The fastest a run could step (steps a second) on any device: MAX_DEVICE_FLOPS over the least
 * arithmetic of one of its steps (stepFlopsFloor: its model at its batch and sequence length),
 * at most MAX_STEPS_PER_S. The coordinator judges reports and uploads by it and names it in
 * each welcome (`stepRate`), so a newcomer judges a bootstrap state the same way.
 */
export function stepRate(run: Pick<RunInfo, 'model' | 'train'>): number {
  const floor = stepFlopsFloor(run.model, run.train.batch, run.train.seqLen);
  return floor > 0 ? Math.min(MAX_STEPS_PER_S, MAX_DEVICE_FLOPS / floor) : MAX_STEPS_PER_S;
}

/** What the coordinator knows about a peer's connection when it checks a report. */
export interface ReportContext {
  run: RunInfo;
  now: number;
  /** When this connection joined. */
  joinedAt: number;
  /** The furthest step this peer could have started from when it joined (checkpoint, live peers, its own history). */
  stepBase: number;
  /** When this connection's previous accepted report arrived (joinedAt before the first). */
  lastReportAt: number;
}

const floatsByModel = new Map<string, number>();

/** Parameter count of a run's model (cached: the layout is the same for every report). */
function paramCount(run: RunInfo): number {
  const key = JSON.stringify(run.model);
  let n = floatsByModel.get(key);
  if (n === undefined) {
    n = buildLayout({ ...run.model }).total;
    floatsByModel.set(key, n);
  }
  return n;
}

function lossError(name: string, v: WireLoss): string | null {
  if (v === null || typeof v === 'string') return null; // null, or "NaN"/"Infinity": the dashboard's alert
  // Volunteers send a loss past MAX_LOSS as "Infinity" (lossToWire): a number past it is no report of ours.
  return v >= MIN_LOSS && v <= MAX_LOSS ? null : `${name} ${v} is outside [${MIN_LOSS}, ${MAX_LOSS}]: a diverged loss travels as "Infinity"`;
}

/** Null when the report could be true; otherwise what is impossible about it. */
export function reportError(r: ReportFields & { seq: number }, x: ReportContext): string | null {
  const sinceJoin = Math.max(0, x.now - x.joinedAt) / 1000;
  const rate = stepRate(x.run);
  const maxStep = maxStepNow({ ...x, rate });
  if (r.step > maxStep) {
    return `step ${r.step} is more than this peer could have trained: at most ${maxStep} (from step ${x.stepBase} at ${rateText(rate)} steps/s, this run's fastest, for the ${sinceJoin.toFixed(1)} s since it joined)`;
  }
  if (r.round > r.step + 1) return `round ${r.round} is ahead of step ${r.step}: every outer round takes at least one inner step`;
  const loss = lossError('trainLoss', r.trainLoss) ?? lossError('valLoss', r.valLoss)
    ?? lossError('probeSolo', r.probeSolo ?? null) ?? lossError('probePaired', r.probePaired ?? null);
  if (loss) return loss;
  const { batch, seqLen } = x.run.train;
  const maxTps = Math.ceil(rate * batch * seqLen);
  if (r.tokensPerS > maxTps) return `tokensPerS ${r.tokensPerS} exceeds ${maxTps} (${rateText(rate)} steps/s, this run's fastest, of ${batch}×${seqLen} tokens)`;
  const sinceLast = Math.max(0, x.now - x.lastReportAt) / 1000;
  const maxBytes = Math.ceil(EXCHANGES_PER_REPORT * 8 * paramCount(x.run) + MAX_LINK_BYTES_PER_S * sinceLast);
  for (const k of ['bytesIn', 'bytesOut'] as const) {
    if (r[k] > maxBytes) return `${k} ${r[k]} exceeds ${maxBytes}: ${EXCHANGES_PER_REPORT} exchanges of this model plus ${sinceLast.toFixed(1)} s at 10 Gbit/s since the last report`;
  }
  return null;
}

function rateText(rate: number): string {
  return rate >= 100 ? rate.toFixed(0) : rate.toPrecision(3);
}
