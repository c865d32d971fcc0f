// One outer round and the metric row that describes it, shared by every loop that trains a
// replica against the mesh (the headless volunteer here; the browser's controller has the same
// shape). DOM-free and trainer-agnostic: it sees only the Replica interface and the mesh.
import { MAX_LINK_ERROR, lossToWire, type ReportFields } from '../protocol/messages.ts';
import type { Mesh } from '../sync/mesh.ts';
import { outerRound, pairWaitMs, type Replica } from '../sync/replica.ts';
import type { ExchangeResult } from '../sync/types.ts';

export interface InnerLoopStats {
  /** Inner steps taken so far in the run (the LR schedule's position) after this loop. */
  step: number;
  /** Losses of this loop's steps. */
  losses: readonly number[];
  /** Tokens the loop trained on (steps × batch × seqLen). */
  tokens: number;
  /** Wall time of the inner loop, ms (what the pairing wait is a fraction of). */
  innerMs: number;
}

export interface RoundContext {
  /** Outer round number (0-based) this exchange is for. */
  round: number;
  inner: InnerLoopStats;
  /** The run's ready-pool wait as a fraction of the inner-loop time. */
  pairWaitFrac: number;
  adapter: string | null;
  /** Measures the validation loss after the outer step; null skips it this round. */
  evaluate: (() => Promise<number>) | null;
  now?: () => number;
}

export interface RoundOutcome {
  exchange: ExchangeResult;
  waitMs: number;
  report: ReportFields;
}

/** Link failures of each mesh already counted in a report: each report carries the new ones. */
const reportedFailures = new WeakMap<Mesh, number>();

/** The report's connectivity fields: the exchange's link, and links that failed since the last report. */
export function linkFields(mesh: Mesh, exchange: ExchangeResult): Pick<ReportFields, 'linkLocal' | 'linkRemote' | 'connectMs' | 'linkFailures' | 'linkError'> {
  const s = mesh.stats();
  const failures = s.linkFailures - (reportedFailures.get(mesh) ?? 0);
  reportedFailures.set(mesh, s.linkFailures);
  const error = exchange.linkError ?? (failures > 0 ? s.lastLinkError : null);
  return {
    linkLocal: exchange.link?.local ?? null,
    linkRemote: exchange.link?.remote ?? null,
    connectMs: exchange.link?.connectMs ?? null,
    linkFailures: Math.min(failures, 100_000),
    linkError: error === null ? null : error.slice(0, MAX_LINK_ERROR),
  };
}

/**
 * Exchanges φ/Δ with one partner from the coordinator's pool (or none in time: a solo step),
 * applies the NoLoCo outer step, optionally evaluates, and returns the report for this round.
 * tokens/s counts the whole round (inner loop, waiting and transfer), i.e. what the run gains.
 */
export async function runOuterRound(mesh: Mesh, replica: Replica, ctx: RoundContext): Promise<RoundOutcome> {
  const now = ctx.now ?? Date.now;
  const t0 = now();
  const waitMs = pairWaitMs(ctx.inner.innerMs, ctx.pairWaitFrac);
  const exchange = await outerRound(mesh, replica, ctx.round, waitMs);
  const valLoss = ctx.evaluate ? await ctx.evaluate() : null;
  const roundMs = ctx.inner.innerMs + (now() - t0);
  // A non-finite inner loss is reported as such (its name on the wire): the trainer recovered
  // from the divergence, but the dashboard's NaN alert must still see that it happened.
  const bad = ctx.inner.losses.find((l) => !Number.isFinite(l));
  const trainLoss = bad !== undefined ? lossToWire(bad)
    : ctx.inner.losses.length > 0 ? ctx.inner.losses.reduce((a, b) => a + b, 0) / ctx.inner.losses.length
    : null;
  const report: ReportFields = {
    time: now(),
    step: ctx.inner.step,
    round: ctx.round + 1,
    trainLoss,
    valLoss: lossToWire(valLoss),
    tokensPerS: roundMs > 0 ? ctx.inner.tokens / (roundMs / 1000) : 0,
    bytesIn: exchange.bytesReceived,
    bytesOut: exchange.bytesSent,
    partner: exchange.outcome === 'paired' ? exchange.partner : null,
    partnerDist: exchange.payload ? exchange.payload.phiDistance : null,
    adapter: ctx.adapter,
    ...linkFields(mesh, exchange),
  };
  return { exchange, waitMs, report };
}
