// Partner validation: the last gate before a partner's φ and Δ reach the outer step. Frame-level
// checks (checksums, run, config hash, sizes) already happened in transfer.ts; this judges the
// values: sizes (finite, ||Δ|| against a median: neither next to nothing nor far above it,
// ||φ_j − φ_i|| against a bound) and two direction tests. Honest partners' Δ point the same way
// as ours: both descend the same loss from nearby φ (cosine 0.12 to 0.87 measured on `micro`,
// docs/design.md section 6), so a Δ pointing clearly against ours (a negated or reversed update)
// is rejected, and so is the Δ we sent the partner last time, sent back reversed (the mirror),
// and a Δ seen in the last 32 exchanges sent again (the replay, src/sync/replay.ts); anything
// subtler is the probe's to judge.

import { forgetOldest as forgetOldestPast } from '../protocol/bounded.ts';
import { REPLAY_BUCKETS, REPLAY_COSINE, REPLAY_KEPT, REPLAY_MARGIN, ReplayMemory } from './replay.ts';

export interface ValidationSettings {
  /** κ: ||Δ_j|| is scaled down to at most κ × the median of recently accepted Δ norms. */
  clipFactor: number;
  /**
   * The clip for a partner not yet proven: fewer than `provenExchanges` of its payloads accepted
   * here, or on probation at the coordinator. Its Δ counts at most this × the median until then.
   */
  strangerClipFactor: number;
  /** Accepted exchanges after which a partner's Δ is clipped at `clipFactor`, not the stranger's. */
  provenExchanges: number;
  /** ||Δ_j|| above this × the median is not noise but an attack or a bug: rejected outright. */
  rejectFactor: number;
  /**
   * ||Δ_j|| above this × the median from a partner that does not say it is ahead of us in rounds
   * (by at most leadRounds)
   * is refused and an offence too: peers at the same point of the LR schedule send Δ within about
   * 2× of each other, and only a peer further along the warm-up sends a much larger one honestly
   * (a fast peer that ran rounds alone while a slow one loaded: Δ about 0.2 against a Δ scale of
   * 0.0115 to 0.0173 in the browser test's run, up to 17×). Issue 15's Δ × −20 sat at 20× and, late in a run where its direction is nearly
   * orthogonal to ours, passed the direction check; clipped, it stayed within the probe's noise
   * four exchanges running and went unreported in a fresh-clone CI run.
   */
  normReportFactor: number;
  /**
   * The most rounds ahead of ours a partner's claim may be and still count as a lead (for
   * normReportFactor). A claim further ahead is a lie, judged as a claim of our own round: a
   * claim costs nothing to make, and round 2^32 − 1 bought any Δ up to rejectFactor × the median
   * a clip instead of a report, every round. Honest partners in the simulator's swarms
   * (bench/lead-claims.ts, 1,500 steps) were at most 31 rounds ahead, and none sent a Δ past
   * normReportFactor × the median (up to 4 rounds ahead did, in the warm-up, before the
   * simulator's first rounds all ran H steps).
   */
  leadRounds: number;
  /**
   * The most outer rounds a second any peer of the run could run: the run's fastest step rate
   * (the welcome's stepRate, server/report-bounds.ts) over its H (welcomeRoundsPerS). A partner's
   * round can rise from its claim at an exchange we accepted by at most this × the seconds since we
   * entered the pool for that exchange (it was still at that round then), plus one: a claim past
   * that is no lead however far inside leadRounds, as one past leadRounds is not, unless the run's
   * reach (runRound) is known and the claim is within it: a page reloaded keeps its peer id (the
   * session token in localStorage) and adopts a live peer's or a checkpoint's newer state, far past
   * its own pace. Such a partner is judged from then on as one never met, which is all a liar's
   * fresh id would get it. 0: unknown, only leadRounds bounds a lead.
   */
  roundsPerS: number;
  /**
   * The furthest outer round any peer of the run could be at now (welcomeRunRound: the welcome's
   * stepBase, the furthest inner step any peer could have been at when we joined, run on at its
   * stepRate and over H), or null: unknown (a welcome with no stepBase), and leadRounds and
   * roundsPerS alone bound a lead. It bounds every partner, one never met too: without it a fresh
   * id claimed our round + leadRounds whatever the run's age. Timed on its own clock (the one the
   * welcome's receipt was), so the validator's clock cannot skew it.
   */
  runRound: (() => number) | null;
  /**
   * ||φ_j − φ_i|| may exceed its value at our last accepted exchange with j by this × the Δ
   * scale per round since then (since round 0 if never): beyond that it is rejected.
   */
  phiFactor: number;
  /**
   * What reaches the outer step: a partner's φ is moved towards ours until ||φ_j − φ_i|| is at
   * most this × the Δ scale, as Δ is clipped. Honest pairs sit well inside it; a far partner
   * (a long-alone peer, or a stranger given room) then pulls us only a few Δ norms a round, so
   * our usual partners do not in turn see us jump and reject us.
   */
  phiClipFactor: number;
  /**
   * How far behind us along our own progress (the direction of our Δ of the round) a partner's φ
   * may sit, in Δ scales: a larger lag is cut to this before the outer step. The consensus term
   * pulls us γ/2 of the way to φ_j, so a φ_j set back 4 Δ norms (issue 15's anti-progress φ)
   * undoes 1.4 Δ norms of our progress a round while its Δ adds 0.7; cut to 1, the pull back is
   * 0.35. Only that one component is cut: the rest of φ_j − φ_i, and any lead, still mix.
   */
  phiLagFactor: number;
  /**
   * The lag report (issue 15's anti-progress φ, docs/design.md section 6). Per partner, a CUSUM of
   * its lag along its own Δ (how far φ_j sits behind ours along the progress it claims, in Δ
   * scales, as received): S ← max(0, S + min(lag, lagCap) − lagSlack). When S passes lagLimit
   * the payload is refused and reported as `phi-lag`: evidence, not a strike (a peer that fell
   * behind honestly lags too, for a while). φ − 4Δ lags about 3.4 every exchange and is reported
   * at its second; honest partners lag 0.04 (median), 2.3 at the 99th percentile, and one lag
   * alone is never reported (lagCap − lagSlack <= lagLimit).
   */
  lagSlack: number;
  lagCap: number;
  lagLimit: number;
  /**
   * A partner that says it is k rounds behind us has lagPerRound × min(k, lagRounds) more slack
   * in that payload's lag (see `lagAllowance`): an honest peer a few rounds behind sits behind us
   * along the progress by about that much. Capped, because the claim is the partner's own.
   */
  lagPerRound: number;
  lagRounds: number;
  /** Rounds of room at most for a peer never met (counted from round 0 otherwise). */
  strangerRounds: number;
  /** Recent norms kept for the medians (our own Δ norms enter too, so there is always one). */
  window: number;
  /**
   * A partner's Δ whose cosine with our own Δ of the round is below −max(antiCosine, 6/√n) is
   * rejected (n elements; 6/√n is six standard deviations of the cosine of two unrelated random
   * vectors, so short test tensors are not rejected by chance).
   */
  antiCosine: number;
  /**
   * Such a Δ is an offence (a strike and a report) at once when its cosine is below
   * −max(antiCosineReport, 6/√n), when the partner's previous payload to us was refused on
   * direction too, or when the partner is on probation (a new id: an attacker taking a new one
   * every few rounds has no previous payload); a single one between the two bounds from a proven
   * partner is refused (a solo step) and remembered.
   */
  antiCosineReport: number;
  /**
   * A partner's Δ whose cosine with the Δ we sent it at our last exchange is below
   * −max(mirrorCosine, 6/√samples) is that update sent back reversed (the camper's mirror): an
   * offence at once. Only a near copy: honest partners' next Δ sat at −0.13 at the least against
   * the one we sent them (micro, pairs every round, 400 rounds) and −0.415 once in a swarm of two
   * that fell rounds apart (H = 4, batch 2); the mirror sits at −0.99 (q8 rounding).
   */
  mirrorCosine: number;
  /**
   * A partner's Δ whose cosine with our own Δ of the round, or with the Δ we sent it at our last
   * exchange (the mirror check's sample), is above this is our update sent back (the partner took
   * our payload and returned it as its own): refused, a solo step. It moves nothing (the pair step of a copy is the solo step), but accepted it counted as
   * an exchange: a camper that never trains earned its way off the stranger's clip and, after
   * provenAccepted of them, the probe's leniency. Honest Δ sat at 0.93 at the most (two replicas
   * of micro that trained apart, tests/sync.validate.test.ts); a copy sits at 1 − 1e-4 after q8.
   */
  echoCosine: number;
  /**
   * A partner's Δ whose sketch (src/sync/replay.ts) has a cosine above this with the sketch of a
   * Δ we received or sent in the last 32 exchanges is that update again, not one computed this
   * round (a replay): refused and an offence ('delta-replay'), except our own Δ of this round
   * sent back, which is the echo ('delta-echo', no offence). Honest Δs reached 0.992 at the most
   * (bench/results/replay.json). The least bound: where our own Δs are more alike (H = 1) it is
   * raised (replayBound).
   */
  replayCosine: number;
  /**
   * A partner's Δ whose norm is below this × our measured Δ scale (measuredScale: the median and
   * our own floor, never minScale) is a claim of no training: refused and an offence at once
   * ('delta-null'). An honest partner does H inner steps at the run's learning rate, so its ||Δ||
   * is of the order of ours (the measured spread is at DEFAULT_VALIDATION). From a partner that
   * says it is behind us in rounds (earlier in the warm-up) the first in a row is no offence, a
   * solo step. 0: no such check.
   */
  nullFraction: number;
  /**
   * The least Δ scale a payload is judged by (deltaScale). 0, the default: none, and a payload is
   * refused ('no-scale') until we have one of our own. A test's hostile peer sets it high to
   * check nothing, as an attacker's own code would not: it takes every payload it is sent.
   */
  minScale: number;
}

export const DEFAULT_VALIDATION: ValidationSettings = {
  // Honest Δ norms of peers at the same LR differ by well under 2x; 3x leaves room for noisy
  // batches while bounding what one partner can move us.
  clipFactor: 3,
  // A partner's first exchanges are where the probe knows least (its margin rests on the cold
  // floor until it has a history): a Δ × −20 clipped to 3× was accepted there at +0.01 to +0.05
  // of probe loss and set a run back 0.3 (bench/results/probe.json, scale-on, seed 3). Until a
  // partner has 3 accepted exchanges (the coordinator's probation), its Δ counts at most 1.5×:
  // honest partners at the same LR sit under it, a reversed Δ then does about what one at the
  // honest norm does, which the probe tells from honest.
  strangerClipFactor: 1.5,
  provenExchanges: 3,
  // 30x the median is beyond any honest spread (even across LR warm-up); clipping alone would
  // let a peer that sends junk every round stay unnoticed.
  rejectFactor: 30,
  normReportFactor: 8,
  // Over twice the farthest honest lead measured (31 rounds over 1,500 steps; none past 8×): a fast
  // volunteer runs dozens of solo rounds while a slow one still loads (docs/design.md section 6).
  leadRounds: 64,
  // Set from the welcome where the mesh is made: validators without it keep leadRounds alone.
  roundsPerS: 0,
  // Set from the welcome where the mesh is made, as roundsPerS is.
  runRound: null,
  // An outer step moves φ by |m| <= β/(1−α)·||Δ|| (1.4 Δ norms at the defaults), so two
  // replicas training apart drift by at most ~3 Δ norms a round; 10 leaves room for larger α.
  phiFactor: 10,
  // The consensus term moves φ by γ/2 × the (clipped) distance, up to twice that with momentum:
  // at 5 Δ norms, at most ~3.5 a round.
  phiClipFactor: 5,
  phiLagFactor: 1,
  // One payload adds at most lagCap − lagSlack = 2.5: never a report alone. Two lags of 2.25 or
  // three of 1.85 are; φ − 4Δ lags 2 to 7 (bench/results/probe.json, phi_lag_theirs).
  lagSlack: 1,
  lagCap: 3.5,
  lagLimit: 2.5,
  // Six honest peers on micro (tests/sync.integration.test.ts, 19 runs, 983 exchanges) met
  // partners up to 6 rounds behind them; the lag along the partner's Δ grew with it: a mean of
  // 0.01 at our round, 0.30 one round behind, 0.82 two, 0.96 three, 2.59 four (6.29 at most).
  // Without the allowance their sums reached the limit (2.5) eight times, and a fresh-clone CI run
  // reported an honest peer at 3.10; with 0.5 a round for up to 2 rounds the most was 1.5. φ − 4Δ
  // claiming 2 rounds behind is still reported at its second payload at its median lag (3.37).
  // The simulator's honest swarms at H = 4 (bench/lead-claims.ts: n = 2 and 8, speeds U[1,4],
  // seeds 1-2, 3,000 steps, 1,725 checks) met partners up to 61 rounds behind; their median lag
  // was 1.71 two rounds behind and 1.3-1.5 three to six, with 10.1 at most in the LR warm-up.
  // At 0.5 a round the sums passed the limit 33 times (27 from partners 3 or more rounds behind,
  // each two lags of 3.5 or more in a row, allowance capped at 1); at 0.75 (a cap of 1.5) 8 times.
  // The cap is what a liar buys with a free claim: φ − 4Δ claiming 2 behind now adds 0.87 a
  // payload at its median lag and is reported at its third, not its second.
  lagPerRound: 0.75,
  lagRounds: 2,
  // A newcomer bootstraps φ from a live peer, so a never-met honest peer is close unless it
  // trained alone; 16 rounds of room (160 Δ norms) covers that without letting a stranger late
  // in a run send weights arbitrarily far away.
  strangerRounds: 16,
  window: 16,
  // Honest partners' Δ had cosines of 0.12 to 0.87 with ours (micro, H = 20, three replicas over
  // 30 rounds); a negated or reversed Δ has the negative of one of those. Two replicas whose φ
  // sit on either side of a valley could point against each other along it, but only along the
  // part of Δ that the φ distance spans: −0.2 leaves that room.
  antiCosine: 0.2,
  // Late in a run, with small batches and short H, honest Δ are mostly noise and their cosines
  // with ours scatter around 0.1 to 0.3: one of three honest `micro` volunteers (batch 4, H = 10)
  // sent a Δ at −0.209 (tests/volunteer.attacks.test.ts, the control) and was struck for it. A
  // negated Δ early in a run sits at −0.5 to −0.9; one late in a run, like that honest outlier,
  // near −0.2 to −0.4, but every round, so its second in a row is the report.
  antiCosineReport: 0.4,
  mirrorCosine: 0.8,
  echoCosine: 0.999,
  replayCosine: REPLAY_COSINE,
  // Honest partners' ||Δ|| over our Δ scale, simulated on `micro` with the run's own schedule
  // (2,475 checks; H = 4 to 50, batch 1 to 4, warm-up 4 to 400 steps, speeds 1:4, 1:8 and
  // lognormal σ = 1, so peers at different points of the warm-up): 0.18 at the least (0.10 of our
  // own Δ of the round), 0.95 to 1.06 at the median. Live, a volunteer left behind in the warm-up
  // had a Δ scale of 0.0115 to 0.0173 while its partner far along sent about 0.2 (the browser
  // test's run): seen from that partner, about 0.06. 1% of the scale is six times under that and
  // 18 under the simulated least; the camper's zero, or an honest Δ × 1e-4, sits far below it.
  nullFraction: 0.01,
  minScale: 0,
};

export type RejectReason = 'size' | 'non-finite' | 'no-scale' | 'delta-null' | 'delta-norm' | 'delta-direction' | 'delta-echo' | 'delta-replay' | 'phi-distance' | 'phi-lag';

export type Verdict =
  | {
    ok: true;
    /** The partner's Δ, scaled in place when clipped. */
    delta: Float32Array;
    deltaNorm: number;
    clipped: boolean;
    /** ||φ_j − φ_i|| as received. */
    phiDistance: number;
    /** The partner's φ was moved towards ours in place (phiClipFactor). */
    phiClipped: boolean;
    /** cos(Δ_j, Δ_i) as received; null without our own Δ or when either is zero. */
    cosine: number | null;
    /** cos(φ_j − φ_i, Δ_i) as received: where the partner's φ sits along our progress; null as for `cosine`. */
    phiCosine: number | null;
    /** How far φ_j sat behind ours along our Δ, in Δ scales, as received (negative: ahead); null as for `cosine`. */
    phiLag: number | null;
    /**
     * That lag, or the one along the partner's own Δ, was more than phiLagFactor and φ_j was moved
     * forward along that Δ to it, in place.
     */
    phiLagClipped: boolean;
    /** How far φ_j sat behind ours along the partner's own Δ, in Δ scales, as received; null for a zero Δ. */
    phiLagTheirs: number | null;
    /** The partner's lag CUSUM after this payload (see lagLimit). */
    lagSum: number;
  }
  | {
    ok: false; reason: RejectReason; detail: string;
    /**
     * False for a Δ refused on direction that is not yet an offence (a single one between
     * −antiCosine and −antiCosineReport), for a first null Δ from a partner behind us in rounds
     * ('delta-null'), for a payload we had no Δ scale to judge by ('no-scale') and for our own Δ
     * sent back ('delta-echo'): a solo step, no strike, no report.
     */
    offence: boolean;
  };

/** Who sent a payload and in which of our outer rounds it arrived. */
export interface PartnerContext {
  peer: string;
  /** Our outer round (the run's count, carried over on join): rounds apart are measured in it. */
  round: number;
  /**
   * The round the partner says it is at. It widens the φ-distance room by the rounds it says it
   * trained since our last accepted exchange (or since round 0, for a peer never met: a fresh tab
   * meeting a peer far along), capped at strangerRounds whatever it claims; and it gives a partner
   * behind us its lag allowance.
   */
  peerRound?: number;
  /** The coordinator said the partner is on probation (a new id): its Δ gets the stranger's clip. */
  probation?: boolean;
  /**
   * When we entered the pool for this exchange, on the validator's clock (ms; default: now). The
   * pairing came after it, so the partner was still at its claimed round then and began its next
   * round no earlier: its later claims are bounded from this time (roundsPerS).
   */
  readyAt?: number;
}

/**
 * Peers a per-peer record holds at most (here: partners for the φ-distance rule, a forgotten one
 * judged as never met; the mesh's bans and strikes), the oldest dropped first (`forgetOldest`).
 */
export const MAX_REMEMBERED = 1024;

/** Drops the oldest entries of `record` (the first set; re-set one to make it the newest) past `max`. */
export function forgetOldest(record: Map<string, unknown> | Set<string>, max = MAX_REMEMBERED): void {
  forgetOldestPast(record, max);
}

/**
 * The mirror check's sample of the Δ we last sent each partner: this many coordinates, a fixed
 * stride from an offset drawn per validator (a partner cannot tell which), so the cosine it
 * estimates is within about 1/√4096 = 0.016 of the whole vector's; 16 KB a partner.
 */
const MIRROR_SAMPLES = 4096;
/** Partners whose last Δ from us the mirror check keeps (4 MB at most). */
const MIRROR_KEPT = 256;

export class PartnerValidator {
  private deltaNorms: number[] = [];
  /** Our own latest ||Δ_i||: the scale's floor (see deltaScale). */
  private ownNorm = 0;
  /**
   * Per partner: our round and ||φ_j − φ_i|| at the last exchange we accepted from it; the highest
   * round it claimed at one, as far as that could be true (reach), and when we entered the pool
   * for the exchange that raised it (peerAt, the validator's clock).
   */
  private met = new Map<string, { round: number; peerRound: number | null; peerAt: number; distance: number; scale: number; accepted: number }>();
  /** Partners whose last payload to us was refused on direction (bounded as `met`). */
  private againstUs = new Set<string>();
  /** Partners whose last payload to us was refused as null (delta-null; bounded as `met`). */
  private nullFrom = new Set<string>();
  /** Per partner: the CUSUM of its lag along its own Δ (bounded as `met`). */
  private lagSums = new Map<string, number>();
  /** Per partner: our round and a sample of the Δ we sent it then (the mirror check). */
  private sent = new Map<string, { round: number; sample: Float32Array }>();
  /** The sampled coordinates: offset + k × stride. */
  private readonly sampleStride: number;
  private readonly sampleOffset: number;
  /** Sketches of the Δs we received and sent lately, whoever from (the replay check). */
  private readonly replay: ReplayMemory;
  /** The round of our Δ last remembered (sending), so a round's is sketched once. */
  private sentRound: number | null = null;
  /** Sketch cosines of our recent Δs with the most alike earlier one of ours (replayBound). */
  private readonly ownLikeness: number[] = [];

  /**
   * `random` (uniform in [0, 1)) draws which coordinates the mirror check samples; `now` (ms) is
   * the clock a partner's rounds are timed by (roundsPerS): the mesh's.
   */
  constructor(
    readonly elements: number,
    readonly settings: ValidationSettings = DEFAULT_VALIDATION,
    random: () => number = Math.random,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.sampleStride = Math.max(1, Math.floor(elements / MIRROR_SAMPLES));
    this.sampleOffset = Math.min(this.sampleStride - 1, Math.floor(random() * this.sampleStride));
    if (!(settings.replayCosine > 0 && settings.replayCosine <= 1)) throw new RangeError(`validation: replayCosine must be in (0, 1], got ${settings.replayCosine}`);
    this.replay = new ReplayMemory({ buckets: REPLAY_BUCKETS, kept: REPLAY_KEPT, cosine: settings.replayCosine }, random);
    for (const k of ['clipFactor', 'strangerClipFactor', 'rejectFactor', 'normReportFactor', 'phiFactor', 'phiClipFactor', 'phiLagFactor', 'lagSlack', 'lagCap', 'lagLimit', 'strangerRounds', 'antiCosine', 'antiCosineReport', 'mirrorCosine', 'echoCosine'] as const) {
      if (!(settings[k] > 0)) throw new RangeError(`validation: ${k} must be > 0, got ${settings[k]}`);
    }
    if (settings.lagCap - settings.lagSlack > settings.lagLimit) throw new RangeError('validation: lagCap − lagSlack must be <= lagLimit (one lag alone is no report)');
    if (settings.antiCosineReport < settings.antiCosine) throw new RangeError('validation: antiCosineReport must be >= antiCosine');
    if (settings.mirrorCosine > 1) throw new RangeError(`validation: mirrorCosine must be <= 1 (a cosine), got ${settings.mirrorCosine}`);
    if (settings.echoCosine > 1) throw new RangeError(`validation: echoCosine must be <= 1 (a cosine), got ${settings.echoCosine}`);
    if (settings.rejectFactor < settings.clipFactor) throw new RangeError('validation: rejectFactor must be >= clipFactor');
    if (settings.normReportFactor < settings.clipFactor || settings.normReportFactor > settings.rejectFactor) throw new RangeError('validation: normReportFactor must be within [clipFactor, rejectFactor]');
    if (settings.strangerClipFactor > settings.clipFactor) throw new RangeError('validation: strangerClipFactor must be <= clipFactor');
    if (!(Number.isInteger(settings.provenExchanges) && settings.provenExchanges >= 0)) throw new RangeError('validation: provenExchanges must be an integer >= 0');
    if (!(Number.isInteger(settings.window) && settings.window >= 1)) throw new RangeError(`validation: window must be a positive integer`);
    if (!(settings.nullFraction >= 0 && settings.nullFraction < 1)) throw new RangeError(`validation: nullFraction must be in [0, 1), got ${settings.nullFraction}`);
    if (!(settings.lagPerRound >= 0)) throw new RangeError(`validation: lagPerRound must be >= 0, got ${settings.lagPerRound}`);
    if (!(Number.isInteger(settings.lagRounds) && settings.lagRounds >= 0)) throw new RangeError(`validation: lagRounds must be an integer >= 0, got ${settings.lagRounds}`);
    if (!(Number.isInteger(settings.leadRounds) && settings.leadRounds >= 0)) throw new RangeError(`validation: leadRounds must be an integer >= 0, got ${settings.leadRounds}`);
    if (!(settings.roundsPerS >= 0 && Number.isFinite(settings.roundsPerS))) throw new RangeError(`validation: roundsPerS must be finite and >= 0 (0: unknown), got ${settings.roundsPerS}`);
    if (settings.runRound !== null && typeof settings.runRound !== 'function') throw new RangeError(`validation: runRound must be a function of no arguments or null (unknown), got ${typeof settings.runRound}`);
  }

  /** How many coordinates the mirror check samples. */
  private get sampled(): number {
    return Math.ceil((this.elements - this.sampleOffset) / this.sampleStride);
  }

  /** Keeps a sample of the Δ we send `peer` in `round` (the mirror check). */
  private remember(peer: string, round: number, own: Float32Array): void {
    const sample = this.sent.get(peer)?.sample ?? new Float32Array(this.sampled);
    for (let k = 0, i = this.sampleOffset; i < this.elements; k++, i += this.sampleStride) sample[k] = own[i];
    this.sent.delete(peer);
    this.sent.set(peer, { round, sample });
    forgetOldest(this.sent, MIRROR_KEPT);
  }

  /** cos(Δ_j, the Δ we last sent `peer`) on the sampled coordinates; null when none was sent or either is zero there. */
  private mirrorCosine(peer: string, delta: Float32Array): { cosine: number; round: number } | null {
    const last = this.sent.get(peer);
    if (!last) return null;
    let dot = 0, dd = 0, ss = 0;
    for (let k = 0, i = this.sampleOffset; i < this.elements; k++, i += this.sampleStride) {
      const d = delta[i], o = last.sample[k];
      dot += d * o; dd += d * d; ss += o * o;
    }
    return dd > 0 && ss > 0 ? { cosine: dot / Math.sqrt(dd * ss), round: last.round } : null;
  }

  /**
   * The furthest round a partner could honestly be at `now`, and why: the least of our round +
   * leadRounds, the furthest round any peer of the run could be at (runRound), and, when we know
   * the run's pace (roundsPerS) and accepted a claim from this partner before, that claim + 1 + the
   * rounds it could have run since we entered the pool for that exchange. `rejoin`: where that pace
   * bound is the least and the run's reach is known, the least of the other two: how far a partner
   * that left and came back (a reload keeps its id, server/peers.ts, and it adopts a newer state)
   * could be, judged then as a partner never met (see check).
   */
  private reach(known: { peerRound: number | null; peerAt: number } | undefined, round: number, now: number): { round: number; why: string; rejoin: number | null } {
    let bound = { round: round + this.settings.leadRounds, why: `past the ${this.settings.leadRounds} an honest partner could be` };
    const run = this.settings.runRound?.();
    const runKnown = run !== undefined && Number.isFinite(run);
    if (runKnown && run < bound.round) {
      bound = { round: Math.max(0, Math.floor(run)), why: `impossible, at most round ${Math.max(0, Math.floor(run))}: the furthest any peer of the run could be at now (the welcome's stepBase run on at its stepRate, over H)` };
    }
    const rate = this.settings.roundsPerS;
    if (rate > 0 && known?.peerRound != null) {
      const seconds = Math.max(0, now - known.peerAt) / 1000;
      const most = known.peerRound + 1 + Math.floor(rate * seconds);
      if (most < bound.round) {
        return {
          round: most, rejoin: runKnown ? bound.round : null,
          why: `impossible, at most round ${most}: round ${known.peerRound} at an exchange we accepted ${seconds.toFixed(3)} s ago, + 1, + ${fmt(rate)} rounds/s (the run's fastest) × ${seconds.toFixed(3)} s`,
        };
      }
    }
    return { ...bound, rejoin: null };
  }

  /**
   * Our Δ of `round` as it goes to a partner: remembered for the replay check (src/sync/replay.ts)
   * whether or not the partner's payload ever comes. Remembered only beside a payload we judged,
   * our Δ of an exchange the partner stalled was not: it could send that Δ back as its own a round
   * later and be accepted, and the accepted exchange cleared its stall count. Once per round (one
   * exchange a round): check passes the same Δ again. Only the round is kept, not the Δ: a model's
   * worth of floats held a round longer.
   */
  sending(ownDelta: Float32Array, round: number): void {
    if (this.sentRound === round) return;
    const s = this.replay.sketch(ownDelta);
    const like = this.replay.nearestOwn(s, round);
    if (like !== null) push(this.ownLikeness, like, this.settings.window);
    this.replay.remember(s, round, null);
    this.sentRound = round;
  }

  /**
   * The replay bound now: replayCosine, or REPLAY_MARGIN times closer to 1 than the most alike of
   * our own recent Δs were to an earlier one of ours, where that is higher. An honest partner
   * trains as we do, so its Δs are about as alike as ours: at H = 1 consecutive honest Δs reached
   * 0.999 as sketches, and the fixed bound refused them as replays. A partner cannot move it: it
   * is measured on our own updates alone. At H = 4 (ours alike up to 0.992) it stays replayCosine.
   */
  get replayBound(): number {
    const like = this.ownLikeness.length > 0 ? Math.max(...this.ownLikeness) : -1;
    return Math.max(this.settings.replayCosine, 1 - (1 - like) / REPLAY_MARGIN);
  }

  /** Our own ||Δ_i|| of this round: the honest scale every partner is compared with. */
  observeOwn(deltaNorm: number): void {
    if (!Number.isFinite(deltaNorm)) return;
    push(this.deltaNorms, deltaNorm, this.settings.window);
    this.ownNorm = deltaNorm;
  }

  /**
   * The lower median of recently accepted Δ norms (ours included), never below our own latest
   * ||Δ_i|| / clipFactor; 0 before any. The lower median keeps partners from pushing it up; the
   * floor keeps them from pulling it down: a partner's norm enters the window with no lower bound
   * (before the probe judges its payload), and eight accepted partners in a row sending a tiny Δ
   * took the scale from 6.2e-2 to 6.5e-8 (the next honest partner was struck, 30× over it), a zero
   * Δ to 0, where every size check is off. Honest partners at our point of the LR schedule send Δ
   * within about 2× of ours, so the floor binds only below what they send (docs/design.md section 6).
   */
  get deltaScale(): number {
    return Math.max(this.measuredScale, this.settings.minScale);
  }

  /**
   * The Δ scale from what we measured alone (deltaScale without minScale): what the null check
   * compares a partner's ||Δ|| with, so a validator told to take any size (minScale) still takes
   * an honest Δ.
   */
  get measuredScale(): number {
    return Math.max(median(this.deltaNorms), this.ownNorm / this.settings.clipFactor);
  }

  /**
   * Judge a partner's payload against our own φ and (when given) our own Δ of the round, the one
   * we send it. Records its norms when accepted.
   */
  check(ownPhi: Float32Array, partner: { phi: Float32Array; delta: Float32Array }, at: PartnerContext, ownDelta?: Float32Array): Verdict {
    if (!(Number.isInteger(at?.round) && at.round >= 0)) throw new RangeError(`validation: round must be an integer >= 0, got ${at?.round}`);
    if (at.readyAt !== undefined && !Number.isFinite(at.readyAt)) throw new RangeError(`validation: readyAt must be a finite time in ms, got ${at.readyAt}`);
    const n = this.elements;
    if (ownPhi.length !== n || partner.phi.length !== n || partner.delta.length !== n) {
      return { ok: false, reason: 'size', offence: true, detail: `expected ${n} elements, got φ ${partner.phi.length}, Δ ${partner.delta.length}` };
    }
    if (ownDelta !== undefined && ownDelta.length !== n) throw new RangeError(`validation: our own Δ has ${ownDelta.length} elements, expected ${n}`);
    let dd = 0, pd = 0, dot = 0, oo = 0, pdot = 0, jdot = 0;
    const { phi, delta } = partner;
    for (let i = 0; i < n; i++) {
      const d = delta[i], p = phi[i];
      // One test for NaN and ±Inf in both tensors: any non-finite makes (d - d) or (p - p) NaN.
      if ((d - d) + (p - p) !== 0) {
        const which = Number.isFinite(d) ? 'φ' : 'Δ';
        return { ok: false, reason: 'non-finite', offence: true, detail: `${which}[${i}] = ${which === 'Δ' ? d : p}` };
      }
      dd += d * d;
      const diff = p - ownPhi[i];
      pd += diff * diff;
      jdot += diff * d;
      if (ownDelta) { const o = ownDelta[i]; dot += d * o; oo += o * o; pdot += diff * o; }
    }
    const deltaNorm = Math.sqrt(dd);
    const phiDistance = Math.sqrt(pd);
    const scale = this.deltaScale;
    // Compared before this round's Δ to it replaces the last one.
    const mirror = this.mirrorCosine(at.peer, delta);
    if (ownDelta) this.remember(at.peer, at.round, ownDelta);
    // The Δ we send this round is one a partner may send back later (src/sync/replay.ts).
    if (ownDelta) this.sending(ownDelta, at.round);
    // Every bound below is a multiple of the Δ scale. With none yet (our own Δ of our first round
    // was zero: a first inner loop that diverged and was reset to φ, or whose steps all
    // overflowed) a payload of any finite size would pass unclipped, φ anywhere: refused, a solo
    // step, no offence (the partner cannot know our scale).
    if (!(scale > 0)) {
      return { ok: false, reason: 'no-scale', offence: false, detail: `no Δ scale to judge the payload by yet (our own ||Δ|| is ${fmt(this.ownNorm)}): a solo step` };
    }
    // A Δ of next to nothing: a claim of no training (the camper's, which never trains and says
    // it did). Averaged with ours it halves our progress of the round, and its Δ tells the
    // direction and echo checks nothing (a zero Δ has no cosine).
    // Only a partner that says it is behind us in rounds can honestly be this far below: one that
    // started fresh beside peers far along is at the start of the warm-up, where the learning rate
    // is a small fraction of ours (H = 4 and 400 warm-up steps: its first round's rates average
    // 0.6% of the peak). Its first such refusal is a solo step, no strike; the
    // next in a row is one (its rate grows every round; a camper's zero does not).
    const claim = claimedRound(at.peerRound);
    // An honest peer's round only goes up (it counts its outer rounds on from the state it joined
    // with), so a claim below one this partner made at an exchange we accepted is a lie: it buys
    // no slack for being behind (here, the lag allowance, the drift room of its rounds).
    let known = this.met.get(at.peer);
    const before = known?.peerRound ?? null;
    const backwards = claim !== null && before !== null && claim < before;
    const lie = backwards ? ` (it says it is at round ${claim}, below the round ${before} it claimed to us before: no slack for being behind)` : '';
    const nullBound = this.settings.nullFraction * this.measuredScale;
    if (deltaNorm < nullBound) {
      const again = this.nullFrom.has(at.peer);
      const behind = claim !== null && claim < at.round && !backwards;
      this.nullFrom.delete(at.peer);
      this.nullFrom.add(at.peer);
      forgetOldest(this.nullFrom);
      return {
        ok: false, reason: 'delta-null', offence: again || !behind,
        detail: `||Δ|| = ${fmt(deltaNorm)} < ${this.settings.nullFraction} × our Δ scale ${fmt(this.measuredScale)}: the partner's update is next to nothing${behind ? ` (it says it is at round ${claim}, behind our ${at.round}${again ? ', and its last one was too' : ''})` : lie}`,
      };
    }
    this.nullFrom.delete(at.peer);
    if (deltaNorm > this.settings.rejectFactor * scale) {
      return { ok: false, reason: 'delta-norm', offence: true, detail: `||Δ|| = ${fmt(deltaNorm)} > ${this.settings.rejectFactor} × median ${fmt(scale)}` };
    }
    // A partner that says it is ahead of us in rounds may be further along the LR warm-up: its
    // larger Δ is clipped (a claim buys no more; past rejectFactor it is an offence whatever it says).
    // Only a lead an honest partner could have (leadRounds, and the rounds it could have run since
    // we last accepted its claim: reach): one further ahead is a lie, no lead.
    const now = this.now();
    const readyAt = Math.min(at.readyAt ?? now, now);
    const reach = this.reach(known, at.round, now);
    const lead = claim === null ? 0 : claim - at.round;
    // A claim past this partner's own pace but within what any peer of the run could be at: it
    // may have reloaded its page (the id survives) and adopted a newer state. Its lead counts, and
    // from here on it is judged as a partner never met (the stranger's clip and φ room, its count
    // of accepted exchanges started over): a liar gains nothing a fresh id would not give it.
    const rejoined = lead > 0 && claim! > reach.round && reach.rejoin !== null && claim! <= reach.rejoin;
    const ahead = lead > 0 && (claim! <= reach.round || rejoined);
    if (rejoined) known = undefined;
    if (deltaNorm > this.settings.normReportFactor * scale && !ahead) {
      const past = lead > 0 ? `, ${lead} rounds ahead: ${reach.why}, so no lead` : '';
      return {
        ok: false, reason: 'delta-norm', offence: true,
        detail: `||Δ|| = ${fmt(deltaNorm)} > ${this.settings.normReportFactor} × median ${fmt(scale)} from a partner that is not ahead of our round ${at.round} (it says ${claim ?? 'nothing'}${past})`,
      };
    }
    // The mirror: the Δ we sent this partner at our last exchange, sent back reversed (issue 15's
    // camper, which never trains, does that). Checked against our Δ of the round alone it can
    // pass: ours moved on since, and a first mild refusal is forgiven. An honest partner's Δ is
    // its own descent from a φ that took ours in, never our update turned around.
    const mirrorFloor = -Math.max(this.settings.mirrorCosine, 6 / Math.sqrt(this.sampled));
    if (mirror !== null && mirror.cosine < mirrorFloor) {
      return {
        ok: false, reason: 'delta-direction', offence: true,
        detail: `cos(Δ_j, the Δ we sent it at round ${mirror.round}) = ${fmt(mirror.cosine)} < ${fmt(mirrorFloor)}: the partner sent our update back reversed`,
      };
    }
    // The Δ we sent this partner at our last exchange, sent back as it was (the echo of an earlier
    // round; see echoCosine): its cosine with our Δ of the round tells nothing.
    if (mirror !== null && mirror.cosine > this.settings.echoCosine) {
      return {
        ok: false, reason: 'delta-echo', offence: false,
        detail: `cos(Δ_j, the Δ we sent it at round ${mirror.round}) = ${mirror.cosine.toFixed(6)} > ${this.settings.echoCosine}: the partner sent our own update back`,
      };
    }
    const cosine = ownDelta && dd > 0 && oo > 0 && Number.isFinite(dot / Math.sqrt(oo)) ? dot / (deltaNorm * Math.sqrt(oo)) : null;
    const phiCosine = ownDelta && pd > 0 && oo > 0 && Number.isFinite(pdot / Math.sqrt(oo)) ? pdot / (phiDistance * Math.sqrt(oo)) : null;
    // Our own update of this round sent back as the partner's (see echoCosine). No offence: two
    // replicas that trained identically (one data stream, one state) would send it honestly.
    if (cosine !== null && cosine > this.settings.echoCosine) {
      return {
        ok: false, reason: 'delta-echo', offence: false,
        detail: `cos(Δ_j, Δ_i) = ${cosine.toFixed(6)} > ${this.settings.echoCosine}: the partner sent our own update of this round back`,
      };
    }
    const floor = -Math.max(this.settings.antiCosine, 6 / Math.sqrt(n));
    if (cosine !== null && cosine < floor) {
      const again = this.againstUs.has(at.peer);
      this.againstUs.delete(at.peer);
      this.againstUs.add(at.peer);
      forgetOldest(this.againstUs);
      const strong = -Math.max(this.settings.antiCosineReport, 6 / Math.sqrt(n));
      return {
        ok: false, reason: 'delta-direction', offence: again || cosine < strong || at.probation === true,
        detail: `cos(Δ_j, Δ_i) = ${fmt(cosine)} < ${fmt(floor)}: the partner's update points against ours${again ? ' (its last one did too)' : at.probation ? ' (a partner on probation)' : ''}`,
      };
    }
    this.againstUs.delete(at.peer);
    // Replicas that train apart drift apart: a bound that ignores rounds apart (as a median of
    // recent partner distances did) cuts off an honest peer that was alone for a while. Since we
    // last accepted j, each of us moved at most a few Δ norms per round; a peer never met shares
    // only the run's φ_0 with us (round 0). A round count that went back counts as rounds apart.
    // The drift built up at the rate of its time: the larger of the Δ scales then and now.
    const last = known ?? { round: 0, distance: 0, scale };
    const apart = known
      ? Math.max(1, Math.abs(at.round - last.round))
      : Math.min(Math.max(1, at.round, claim ?? 0), this.settings.strangerRounds);
    const roomScale = Math.max(scale, last.scale);
    // The partner's side of the drift: the rounds it says it trained since our last accepted
    // exchange (capped as a stranger's), at the pace of its own Δ. A fast peer alone runs dozens
    // of quick solo rounds while a slow one still loads, through the LR warm-up where its Δ grows
    // ten-fold: two honest volunteers (micro, H = 4, batch 2) struck each other twice on the φ
    // distance within a second, for good, when only our rounds at our Δ scale counted. Its Δ is
    // its claim too, but one over rejectFactor × our scale was refused above; and what a far φ
    // does once accepted is bounded by the φ clip (phiClipFactor), then judged by the probe.
    const theirs = known?.peerRound != null && claim !== null && !backwards ? Math.min(Math.abs(claim - known.peerRound), this.settings.strangerRounds) : 0;
    const theirRoom = Math.max(roomScale, deltaNorm) * theirs;
    const byTheirs = theirRoom > roomScale * apart;
    const bound = last.distance + this.settings.phiFactor * Math.max(roomScale * apart, theirRoom);
    if (phiDistance > bound) {
      const room = byTheirs
        ? `its ||Δ|| ${fmt(Math.max(roomScale, deltaNorm))} × ${theirs} of its rounds since`
        : `Δ scale ${fmt(roomScale)} × ${apart} rounds apart${known ? '' : ' (never met)'}`;
      return {
        ok: false, reason: 'phi-distance', offence: true,
        detail: `||φ_j − φ_i|| = ${fmt(phiDistance)} > ${fmt(bound)} = ${fmt(last.distance)} at round ${last.round} + ${this.settings.phiFactor} × ${room}`,
      };
    }
    // A Δ we have seen before: the partner's own of an earlier round, another peer's, or ours
    // (the free rider's replay; see replayCosine). Compared before it is remembered.
    const sketch = this.replay.sketch(delta);
    const seen = this.replay.nearest(sketch);
    const replayBound = this.replayBound;
    if (seen !== null && seen.cosine > replayBound) {
      const { entry } = seen;
      const bound = replayBound === this.settings.replayCosine
        ? `${replayBound}`
        : `${replayBound.toFixed(5)} (our own Δs were alike up to ${Math.max(...this.ownLikeness).toFixed(5)})`;
      const ours = entry.peer === null;
      const whose = ours ? 'the Δ we sent' : entry.peer === at.peer ? 'the Δ this partner sent us' : `the Δ ${entry.peer} sent us`;
      const echo = ours && entry.round === at.round;
      return {
        ok: false, reason: echo ? 'delta-echo' : 'delta-replay', offence: !echo,
        detail: `sketch cosine ${seen.cosine.toFixed(5)} > ${bound} with ${whose} at our round ${entry.round} (norm ratio ${fmt(deltaNorm / entry.sketch.norm)}): ${echo ? 'the partner sent our own update of this round back' : 'the partner replayed an earlier update instead of computing one'}`,
      };
    }
    this.replay.remember(sketch, at.round, at.peer);
    // The lag along the partner's own Δ, as received: the anti-progress φ's signature (its φ set
    // back along the progress it claims), added up per partner; see lagLimit.
    const phiLagTheirs = dd > 0 && Number.isFinite(jdot / deltaNorm) ? -jdot / deltaNorm / scale : null;
    const allowance = backwards ? 0 : lagAllowance(this.settings, at.round, at.peerRound);
    const lagSum = Math.max(0, (this.lagSums.get(at.peer) ?? 0) + Math.min(phiLagTheirs ?? 0, this.settings.lagCap) - this.settings.lagSlack - allowance);
    this.lagSums.delete(at.peer);
    if (lagSum > this.settings.lagLimit) {
      this.lagSums.set(at.peer, 0);
      return {
        ok: false, reason: 'phi-lag', offence: true,
        detail: `φ_j sat ${fmt(phiLagTheirs!)} Δ scales behind ours along its own Δ; lag sum ${fmt(lagSum)} > ${this.settings.lagLimit} (slack ${this.settings.lagSlack}${allowance > 0 ? ` + ${fmt(allowance)} for rounds behind` : ''} a payload)${lie}`,
      };
    }
    this.lagSums.set(at.peer, lagSum);
    forgetOldest(this.lagSums);
    let phiClipped = false;
    let phiScale = 1;
    const phiClip = this.settings.phiClipFactor * scale;
    if (phiDistance > phiClip) {
      phiScale = phiClip / phiDistance;
      for (let i = 0; i < n; i++) phi[i] = ownPhi[i] + (phi[i] - ownPhi[i]) * phiScale;
      phiClipped = true;
    }
    // The lag clip, along the partner's Δ w first, then along ours u = Δ_i/||Δ_i|| (last, so ours
    // ends within phiLagFactor): φ_j − φ_i's component along −w, −u (after the clip above, which
    // scaled it by phiScale) is what the consensus term would pull us back along its progress and
    // ours. φ − 4Δ sits about 3.4 Δ scales behind along w and 1.1 along u (bench/results/probe.json).
    const ownNorm = Math.sqrt(oo);
    const phiLag = ownDelta && oo > 0 && Number.isFinite(pdot / ownNorm) ? -pdot / ownNorm / scale : null;
    let phiLagClipped = false;
    // Both lags as they stand now, in Δ scales.
    const lagW = phiLagTheirs === null ? null : phiLagTheirs * phiScale;
    let lagU = phiLag === null ? null : phiLag * phiScale;
    if (lagW !== null && lagW > this.settings.phiLagFactor) {
      const k = ((lagW - this.settings.phiLagFactor) * scale) / deltaNorm;
      for (let i = 0; i < n; i++) phi[i] += k * delta[i];
      // Moving φ_j forward along w moves it along u by k (Δ_j · u).
      if (lagU !== null) lagU -= (k * dot) / ownNorm / scale;
      phiLagClipped = true;
    }
    if (lagU !== null && lagU > this.settings.phiLagFactor) {
      const k = ((lagU - this.settings.phiLagFactor) * scale) / ownNorm;
      for (let i = 0; i < n; i++) phi[i] += k * ownDelta![i];
      phiLagClipped = true;
    }
    let clipped = false;
    let accepted = deltaNorm;
    const proven = (known?.accepted ?? 0) >= this.settings.provenExchanges && at.probation !== true;
    const clip = (proven ? this.settings.clipFactor : this.settings.strangerClipFactor) * scale;
    if (deltaNorm > clip) {
      const s = clip / deltaNorm;
      for (let i = 0; i < n; i++) delta[i] *= s;
      clipped = true;
      accepted = clip;
    }
    // Record the clipped norm: a peer sending the largest unclipped Δ every round cannot ratchet
    // the median up by more than its share of the window.
    push(this.deltaNorms, accepted, this.settings.window);
    // The consensus step pulls the pair closer: what it leaves is within this plus a round's room.
    this.met.delete(at.peer);
    // The claim as far as it could be true (reach): a lie accepted with an honest Δ buys no
    // reach for the next.
    const held = claim === null ? null : Math.min(claim, rejoined ? reach.rejoin! : reach.round);
    const rose = held !== null && (before === null || held > before);
    const peerRound = rose ? held : before;
    this.met.set(at.peer, { round: at.round, peerRound, peerAt: rose ? readyAt : known?.peerAt ?? readyAt, distance: phiDistance, scale, accepted: (known?.accepted ?? 0) + 1 });
    forgetOldest(this.met);
    return { ok: true, delta, deltaNorm, clipped, phiDistance, phiClipped, cosine, phiCosine, phiLag, phiLagClipped, phiLagTheirs, lagSum };
  }
}

/**
 * The extra lag slack for a partner that says it is behind us in rounds: lagPerRound a round, for
 * at most lagRounds of them. Nothing for one at or ahead of our round, or with no valid claim.
 */
export function lagAllowance(settings: Pick<ValidationSettings, 'lagPerRound' | 'lagRounds'>, round: number, peerRound: number | undefined): number {
  const claim = claimedRound(peerRound);
  if (claim === null || !Number.isInteger(round)) return 0;
  return settings.lagPerRound * Math.min(Math.max(0, round - claim), settings.lagRounds);
}

/** The round a partner says it is at, when that is a count (an integer >= 0); null otherwise. */
function claimedRound(peerRound: number | undefined): number | null {
  return Number.isInteger(peerRound) && peerRound! >= 0 ? peerRound! : null;
}

/** ||x||_2 in double precision. */
export function norm2(x: Float32Array): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * x[i];
  return Math.sqrt(s);
}

/** True if every value is finite. */
export function allFinite(x: Float32Array): boolean {
  for (let i = 0; i < x.length; i++) if (x[i] - x[i] !== 0) return false;
  return true;
}

function push(list: number[], x: number, max: number): void {
  list.push(x);
  if (list.length > max) list.shift();
}

/**
 * The lower median (for an even count, the smaller middle value). Our own norms fill half the
 * window when every round is paired; with the lower median a partner that always sends the
 * largest unclipped Δ cannot pull the scale above our own, where the averaged median would let
 * it grow 1.5x per round.
 */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[(s.length - 1) >> 1];
}

function fmt(x: number): string {
  return x.toPrecision(3);
}
