// One outer round, the same for every loop that trains a replica against the mesh: the
// browser's TrainingController and the headless volunteer (src/volunteer) both run
// runOuterRound(). It imports only the wire protocol, so the page's controller (which sees only
// the UI's ports) may use it too; each caller adapts its trainer and mesh to RoundPorts.
//
// wait -> exchange (the mesh validates the partner's payload) -> probe (the partner's update
// judged by its effect on our loss, probe.ts) -> apply -> evaluate -> report.
//
// Where the page and the headless volunteer used to differ, the choice made here:
// - Pair-wait floor: 250 ms (the page's), not 50. The ready pool now holds a peer only while a
//   partner is due (docs/pairing.md), so a longer ceiling costs no idle time when nobody is due,
//   and it leaves a coordinator round trip on a loaded machine room to find the partner.
// - Divergence: both give up after MAX_DIVERGED_IN_A_ROW inner loops in a row diverged (the
//   headless rule). Retrying for ever burns a donor's GPU on a run whose lr is wrong; the
//   dashboard's NaN alert has already told the researcher.
// - Partner distance: the mesh's validator measures ‖φ_partner − φ_mine‖ before it clips a far
//   φ (the headless rule). After the clip the distance is capped at a few Δ norms and hides the
//   drift the dashboard plots it to show.
// - `accepted`: gone. The page set it from "the exchange paired", so it was always true; a round
//   is paired exactly when a validated partner payload came back (`partner` below).
import { lossToWire, probeLossToWire, type ReportFields } from '../protocol/messages.ts';
import type { ProbeJudge, ProbeLosses, ProbeVerdict } from './probe.ts';

/** Shortest ready-pool wait: a coordinator round trip with room for a loaded machine. */
export const MIN_PAIR_WAIT_MS = 250;
/** Longest: the coordinator clamps to its own bound too. */
export const MAX_PAIR_WAIT_MS = 60_000;
/** Inner loops in a row that may diverge (the trainer resets to φ) before the volunteer stops. */
export const MAX_DIVERGED_IN_A_ROW = 3;

/**
 * The most a ready peer waits in the pool: a fraction of its own inner-loop time (default 0.5,
 * docs/pairing.md; the pool holds it only while a partner is due), within
 * [MIN_PAIR_WAIT_MS, MAX_PAIR_WAIT_MS]: with no wait nobody is ever in the pool together.
 */
export function pairWaitMs(innerLoopMs: number, frac = 0.5, minMs = MIN_PAIR_WAIT_MS, maxMs = MAX_PAIR_WAIT_MS): number {
  if (!(innerLoopMs >= 0) || !(frac > 0)) throw new RangeError(`pairWaitMs: need innerLoopMs >= 0 and frac > 0, got ${innerLoopMs}, ${frac}`);
  return Math.min(maxMs, Math.max(minMs, frac * innerLoopMs));
}

/** The report's connectivity fields (issue 13), as the mesh's wiring measures them. */
export type LinkFields = Required<Pick<ReportFields, 'linkLocal' | 'linkRemote' | 'connectMs' | 'linkFailures' | 'linkError'>>;

/** What one exchange gave, as the round needs it. */
export interface RoundExchange<P> {
  /** The partner whose validated payload came back; null for a solo step. */
  partner: string | null;
  payload: P | null;
  /** ‖φ_partner − φ_mine‖ as the mesh's validator measured it, before any clip; null when solo. */
  partnerDist: number | null;
  /** Wire bytes of this exchange. */
  bytesIn: number;
  bytesOut: number;
  /** Why the step was solo (the mesh's reason); null after a pair. */
  solo: string | null;
  /** The link this exchange used and links that failed since the last report; absent: unknown. */
  link?: LinkFields;
  /** The coordinator said the partner is on probation: its update gets the strict margin. */
  probation?: boolean;
  /** The outer round the partner's payload says it is at (its claim). */
  partnerRound?: number;
}

export interface RoundPorts<P> {
  outerPayload(): P | Promise<P>;
  exchange(round: number, mine: P, waitMs: number): Promise<RoundExchange<P>>;
  /** The outer step with the partners' payloads: one for a pair, none for a solo step. */
  applyOuter(partners: P[]): void | Promise<void>;
  /**
   * The probe (probe.ts): loss of the solo and of the paired candidate state on the same few
   * private windows, drawn afresh. Absent: the partner's update is applied unjudged.
   */
  probe?(partner: P): Promise<ProbeLosses>;
  /** Reports `peer` to the coordinator as an offender (the mesh's offence path). */
  reportOffence?(peer: string, code: string, detail: string): void;
}

export interface InnerLoopStats {
  /** Inner steps taken so far in the run (the LR schedule's position) after this loop. */
  step: number;
  /** Losses of this loop's steps. */
  losses: readonly number[];
  /** Tokens the loop trained on (steps × batch × seqLen). */
  tokens: number;
  /** Time of the inner loop, ms (what the pairing wait is a fraction of). */
  innerMs: number;
}

export interface RoundInput {
  /** Outer round number (0-based) this exchange is for. */
  round: number;
  inner: InnerLoopStats;
  /** The run's ready-pool wait as a fraction of the inner-loop time. */
  pairWaitFrac: number;
  adapter: string | null;
  /** Measures the validation loss after the outer step; null skips it this round. */
  evaluate: (() => Promise<number>) | null;
  /** This peer's judge of its partners' updates, kept across rounds; null: no probe. */
  judge?: ProbeJudge | null;
  now?: () => number;
}

export interface RoundOutcome<P> {
  exchange: RoundExchange<P>;
  waitMs: number;
  /** The report's losses as numbers (non-finite kept as such), for callers that hold figures. */
  trainLoss: number | null;
  /** The validation loss measured this round; null if not measured. */
  valLoss: number | null;
  report: ReportFields;
  /** The probe's verdict on this round's partner; null when there was none or no probe. */
  probe: ProbeVerdict | null;
}

/**
 * Exchanges φ/Δ with one partner from the coordinator's pool (or none in time: a solo step),
 * applies the NoLoCo outer step, optionally evaluates, and returns the report for this round.
 * tokens/s counts the whole round (inner loop, waiting and transfer), i.e. what the run gains.
 */
export async function runOuterRound<P>(ports: RoundPorts<P>, input: RoundInput): Promise<RoundOutcome<P>> {
  const now = input.now ?? Date.now;
  const t0 = now();
  const waitMs = pairWaitMs(input.inner.innerMs, input.pairWaitFrac);
  const mine = await ports.outerPayload();
  const exchange = await ports.exchange(input.round, mine, waitMs);
  let partners = exchange.payload ? [exchange.payload] : [];
  let probe: ProbeVerdict | null = null;
  let probeMs: number | null = null;
  if (exchange.payload && exchange.partner && ports.probe && input.judge) {
    const p0 = now();
    const behind = exchange.partnerRound === undefined ? undefined : input.round - exchange.partnerRound;
    probe = input.judge.judge(exchange.partner, await ports.probe(exchange.payload), { probation: exchange.probation === true, behind, round: input.round });
    probeMs = now() - p0;
    if (!probe.accept) partners = [];
    if (probe.offence) ports.reportOffence?.(exchange.partner, probe.offence.code, probe.offence.detail);
  }
  await ports.applyOuter(partners);
  // A rejected update is a solo step: the report names no partner, so the coordinator does not
  // count the round as an accepted exchange with it.
  const applied = partners.length > 0;
  const valLoss = input.evaluate ? await input.evaluate() : null;
  const roundMs = input.inner.innerMs + (now() - t0);
  // A non-finite inner loss is reported as such (its name on the wire): the trainer recovered
  // from the divergence, but the dashboard's NaN alert must still see that it happened.
  const losses = input.inner.losses;
  const bad = losses.find((l) => !Number.isFinite(l));
  const trainLoss = bad !== undefined ? bad
    : losses.length > 0 ? losses.reduce((a, b) => a + b, 0) / losses.length
    : null;
  const report: ReportFields = {
    time: now(),
    step: input.inner.step,
    round: input.round + 1,
    trainLoss: lossToWire(trainLoss),
    valLoss: lossToWire(valLoss),
    tokensPerS: roundMs > 0 ? input.inner.tokens / (roundMs / 1000) : 0,
    bytesIn: exchange.bytesIn,
    bytesOut: exchange.bytesOut,
    partner: applied ? exchange.partner : null,
    partnerDist: applied ? exchange.partnerDist : null,
    adapter: input.adapter,
    ...exchange.link,
    ...(probe ? { probeMs, probeSolo: probeLossToWire(probe.solo), probePaired: probeLossToWire(probe.paired), probeRejected: !probe.accept } : {}),
  };
  return { exchange, waitMs, trainLoss, valLoss, report, probe };
}
