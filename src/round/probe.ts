// The probe: a partner's update judged by what it does to the loss (docs/design.md section 6.1).
// After the exchange and before the outer step, the volunteer evaluates two candidate states on
// a few private windows of its own training data, drawn afresh every round so no partner can fit
// them: the solo step (its own Δ only) and the paired step (with the partner's φ and Δ). The
// paired step is taken unless its probe loss is worse than the solo one by more than a margin
// calibrated from this peer's own noise; then the round is a solo step and the partner gets a
// strike. A CUSUM over each partner's excess harm reports a steady small harm as an offence, a
// slow one with a small slack a steadier and smaller one (evidence both), a gross harm is
// reported at once.
//
// Pure and backend-independent: the caller evaluates the candidates (src/volunteer/backend.ts on
// the CPU or the GPU, the simulator's learners) and hands over one loss per probe window.

/** Probe windows a volunteer evaluates each candidate on: 2 × this many forward passes a round. */
export const PROBE_WINDOWS = 4;

export interface ProbeSettings {
  /** Margin in noise units for a partner in good standing, and for one on probation. */
  z: number;
  zProbation: number;
  /**
   * A partner this judge reported is held to zProbation for its next this many exchanges with
   * us (counted afresh at each report). Not for good: a CUSUM report comes between honest
   * partners too (about once per hundred exchanges in a swarm of two), and with the strict
   * margin for good every long-lived honest pair ended at z = 2 (bench:swarm: 3.2% and 2.8% of
   * honest updates refused at n = 2 and 4, against 0.4% at n = 8, where reports were rare).
   */
  strictExchanges: number;
  /**
   * The smallest noise, relative to the solo probe loss: a floor under the per-window standard
   * error (4 windows say little about their own spread).
   */
  relFloor: number;
  /**
   * The floor before the history is trusted (the first exchanges): early in a run an honest
   * pair step is often far better or somewhat worse than solo (bench/results/probe.json: −0.65
   * to +0.135 in the first rounds, the worse ones with a partner a round behind), so a cold
   * start judges only large harms. At 1% it rejected 12 of 1,315 honest exchanges, most of a
   * run's rejections: with every peer on probation then (z = 2) the margin was 2% of the loss.
   */
  coldFloor: number;
  /**
   * The largest noise unit, relative to the solo probe loss: no judge is looser than a cold
   * start. What sets the unit (the spread of accepted exchanges with other partners, the spread
   * of partners' mean effects, the windows' standard error) is partly what partners sent: a
   * colluding identity whose accepted updates scatter by ±2 units (harmless on average, so no
   * CUSUM sees it) widened the unit without bound, each spread the next one's margin (1.2e4 × the
   * loss in 600 exchanges, tests/round.probe.test.ts), and then any update passes. Honest units
   * sat at 0.5% to 0.9% of the loss once trusted (bench:probe-calibration).
   */
  ceiling: number;
  /** Exchanges kept for the baseline and spread of (paired − solo). */
  history: number;
  /** History needed before its spread is trusted over the cold floor. */
  minHistory: number;
  /**
   * Accepted exchanges whose residuals (each one's (paired − solo) less the baseline of the
   * `history` exchanges before it: what `excess` was, or would have been) set the noise unit once
   * there are minHistory of them. The spread of the last `history` differences alone, from 8
   * numbers, came out at about 0.7 of the honest scatter as often as not, and 3 such units were
   * 2 of the real ones: 1.3% to 2.3% of honest updates refused in the simulator on the micro GPT
   * (bench:probe-calibration), 3.1% in a bench:swarm run. 0: that spread of the `history`
   * differences for good (the judge before 2026-12-06, kept for the benchmark's side by side).
   */
  spreadHistory: number;
  /** CUSUM allowance per exchange, most one exchange adds, and threshold, in noise units. */
  cusumSlack: number;
  cusumCap: number;
  cusumLimit: number;
  /**
   * The slow CUSUM's allowance, most one exchange adds or takes away, and threshold, in noise
   * units: S ← max(0, S + clamp(excess/σ, ±slowCap) − slowSlack), reported past slowLimit (as
   * `probe-harm`, evidence). It sees the steady small harm the fast one lets through: 0.2 to 0.45
   * σ an exchange is under its slack of 0.5, accepted every time, and 30 to 45 σ in 100
   * exchanges. Seeded (tests/round.probe.test.ts), a steady 0.3 σ was reported at a median of
   * 52 exchanges and a 95th percentile of 97 where the honest excess runs under a unit (σ at the
   * floor; the fast one alone missed it within 300 in 78 of 100 seeds), and of 30 and 85 with
   * both where σ is the honest scatter itself. On the same honest noise it alarmed once in 192
   * exchanges where the fast one did once in 105 (once in about 420 and 340 on noise of exactly
   * one unit). Infinity: none.
   */
  slowSlack: number;
  slowCap: number;
  slowLimit: number;
  /** An excess beyond this many margins is a gross harm: reported at once. */
  gross: number;
  /**
   * Before the history is trusted, only an excess beyond this share of the solo loss is
   * reported (honest pair steps of a run's first rounds were up to 5% worse than solo,
   * bench/results/probe.json; a Δ × −20 or a negated Δ then costs 10% to 40%).
   */
  coldGross: number;
  /**
   * Accepted exchanges with a partner after which its gross harm is reported as evidence
   * (`probe-harm`, no strike), not as `probe-gross` (a strike; two are the coordinator's veto).
   * The update is refused either way. An honest pair that drifted apart over solo rounds reaches
   * a gross excess now and then (after a first report it is judged at z = 2, so gross is 5 noise
   * units), and two such strikes vetoed the only pair of a run of two (bench:swarm, 0.468 paired).
   */
  provenAccepted: number;
  /**
   * A gross harm from a partner that says it is at least this many rounds behind us is evidence
   * too (`probe-harm`): a peer that fell behind (a slow starter while a fast one ran solo rounds
   * through the warm-up) pulls us back grossly, honestly, and two such strikes vetoed the only
   * pair of a swarm of two for good (bench:swarm, the browser test's run). The claim buys an
   * attacker no update: it is still refused, and the partner judged strictly after.
   */
  behindRounds: number;
  /**
   * The claim is the partner's own word, so it excuses at most this many gross harms of one
   * partner (per record); past them a gross harm is a strike again, however far behind it says it
   * is. A claim below a round the same partner claimed to us before excuses nothing (an honest
   * peer's round only goes up: it counts its outer rounds from the state it joined with) and is
   * itself reported as evidence. Measured in honest simulated swarms (bench/lag-claims.ts,
   * docs/design.md section 6, "Rounds behind"): none there; 4 is twice the most one live honest
   * run needed (the browser test's, 2 in all), since the price of too few is an honest pair parted.
   */
  behindExcuses: number;
}

/**
 * Why these numbers (docs/design.md section 6.1; measured in bench/results/probe.json): after
 * the first rounds an honest pair's (paired − solo) on 4 windows scatters within about one noise
 * unit, so z = 3 rejected none of 185 honest exchanges; a partner on probation gets 2. A short
 * history (8) follows a run's fast early phase. The CUSUM adds at most cusumCap − slack = 3 an
 * exchange, so no single honest outlier is reported, a partner rejected twice is reported at its
 * second exchange and a steady harm of 2 units at its third; 2.5 margins is reported at once. The
 * price of that speed is false alarms: such a CUSUM alarms on pure noise about once in 340
 * exchanges, and between honest volunteers in a swarm of two about once per hundred (the noise
 * from 4 windows runs low). So a CUSUM report is evidence, not a strike (isSoftOffence). The
 * slack was 1 until a Δ × −20 attacker in a fresh-clone CI run cost 1.2 to 2.8 units an exchange
 * and went unreported. The slow CUSUM (slack 0.1, at most ±2.5 an exchange, limit 11) adds up what
 * is left under that slack: (11 + 0.3) / (0.3 − 0.1) ≈ 57 exchanges of a steady 0.3 σ, and on noise
 * of exactly one unit an alarm about once in 420 exchanges, fewer than the fast one's 340.
 */
export const DEFAULT_PROBE: ProbeSettings = {
  z: 3, zProbation: 2, strictExchanges: 8, relFloor: 0.004, coldFloor: 0.02, ceiling: 0.02, history: 8, minHistory: 4, spreadHistory: 32,
  cusumSlack: 0.5, cusumCap: 3.5, cusumLimit: 4, slowSlack: 0.1, slowCap: 2.5, slowLimit: 11, gross: 2.5, coldGross: 0.1, provenAccepted: 20, behindRounds: 2,
  behindExcuses: 4,
};

/**
 * The history keeps this many times (spreadHistory + history) exchanges, so the leave-one-partner-
 * out baseline and spread find enough of every other partner's.
 */
const HISTORY_KEPT = 4;

/**
 * Partners a judge keeps records of. A long run meets many ids (and an attacker can rejoin under
 * new ones), so the oldest-met records go first; a partner met again after that starts fresh, as
 * a new id would. 512 records are about 50 KB.
 */
export const PARTNERS_KEPT = 512;

export interface ProbeLosses {
  /** Loss of the solo candidate on each probe window. */
  solo: readonly number[];
  /** Loss of the paired candidate on the same windows, in the same order. */
  paired: readonly number[];
}

export interface ProbeVerdict {
  /** Take the paired step (true) or the solo step (false: over the margin, or reported now). */
  accept: boolean;
  /** Mean probe loss of each candidate. */
  solo: number;
  paired: number;
  /** (paired − solo) less this peer's honest baseline; what the margin is compared with. */
  excess: number;
  /** The noise unit and the margin (z × noise) this exchange was judged with. */
  noise: number;
  margin: number;
  /** The partner's CUSUM after this exchange (0 after a report). */
  cusum: number;
  /** The partner's slow CUSUM after this exchange (0 after a report). */
  slowCusum: number;
  /** Set when the partner is to be reported to the coordinator now. */
  offence: { code: 'probe-harm' | 'probe-gross'; detail: string } | null;
}

interface PartnerRecord {
  cusum: number;
  slow: number;
  strikes: number;
  /** Exchanges left that are judged with the strict margin (strictExchanges from a report). */
  strictLeft: number;
  exchanges: number;
  /** Mean (paired − solo) of this partner's accepted exchanges: the spread across partners. */
  meanDiff: number;
  accepted: number;
  /** The highest round this partner has claimed to us (our round less how far behind it said it was); null: none yet. */
  claimed: number | null;
  /** Gross harms of this partner excused as evidence because it said it was behind us (at most behindExcuses). */
  excused: number;
}

function mean(a: readonly number[]): number {
  let s = 0;
  for (const x of a) s += x;
  return s / a.length;
}

function median(a: readonly number[]): number {
  const s = [...a].sort((x, y) => x - y);
  const h = s.length >> 1;
  return s.length % 2 ? s[h]! : (s[h - 1]! + s[h]!) / 2;
}

/** Median absolute deviation scaled to a normal's standard deviation. */
function robustSpread(a: readonly number[], centre: number): number {
  return 1.4826 * median(a.map((x) => Math.abs(x - centre)));
}

/**
 * Residuals of the last `n` entries of `diffs` that have `history` entries before them: each one
 * less the median of those before it, the excess it was (or would have been) judged by.
 */
function residuals(diffs: readonly number[], history: number, n: number): number[] {
  const out: number[] = [];
  for (let i = Math.max(history, diffs.length - n); i < diffs.length; i++) out.push(diffs[i]! - median(diffs.slice(i - history, i)));
  return out;
}

export class ProbeError extends Error {
  override name = 'ProbeError';
}

/** One peer's judge of its partners' updates: keeps the history the margin is calibrated from. */
export class ProbeJudge {
  readonly settings: ProbeSettings;
  /**
   * (paired − solo) of recently accepted exchanges and whose they were, oldest first; bounded
   * (HISTORY_KEPT × (spreadHistory + history)).
   */
  private readonly diffs: { partner: string; diff: number }[] = [];
  private readonly partners = new Map<string, PartnerRecord>();

  constructor(settings: Partial<ProbeSettings> = {}) {
    this.settings = { ...DEFAULT_PROBE, ...settings };
    const s = this.settings;
    if (!(Number.isInteger(s.strictExchanges) && s.strictExchanges >= 0)) throw new ProbeError(`probe strictExchanges must be an integer >= 0; got ${s.strictExchanges}`);
    if (!(s.z > 0 && s.zProbation > 0 && s.relFloor > 0 && s.coldFloor >= s.relFloor && s.cusumLimit > 0 && s.cusumSlack >= 0 && s.cusumCap > s.cusumSlack && s.gross >= 1)) {
      throw new ProbeError(`probe settings need z, zProbation, relFloor, cusumLimit > 0, coldFloor >= relFloor, cusumCap > cusumSlack >= 0 and gross >= 1; got ${JSON.stringify(s)}`);
    }
    if (!(s.slowSlack > 0 && s.slowCap > s.slowSlack && s.slowLimit > 0)) {
      throw new ProbeError(`probe slow CUSUM needs slowCap > slowSlack > 0 and slowLimit > 0; got slowSlack ${s.slowSlack}, slowCap ${s.slowCap}, slowLimit ${s.slowLimit}`);
    }
    if (!(s.ceiling >= s.coldFloor)) throw new ProbeError(`probe ceiling must be >= coldFloor (${s.coldFloor}); got ${s.ceiling}`);
    if (!(Number.isInteger(s.provenAccepted) && s.provenAccepted >= 0)) throw new ProbeError(`probe provenAccepted must be an integer >= 0; got ${s.provenAccepted}`);
    if (!(Number.isInteger(s.behindRounds) && s.behindRounds >= 1)) throw new ProbeError(`probe behindRounds must be an integer >= 1; got ${s.behindRounds}`);
    if (!(Number.isInteger(s.behindExcuses) && s.behindExcuses >= 0)) throw new ProbeError(`probe behindExcuses must be an integer >= 0; got ${s.behindExcuses}`);
    if (!(Number.isInteger(s.history) && Number.isInteger(s.minHistory) && s.minHistory >= 2 && s.history >= s.minHistory)) {
      throw new ProbeError(`probe history must be integers with 2 <= minHistory <= history; got ${s.minHistory}, ${s.history}`);
    }
    if (!(Number.isInteger(s.spreadHistory) && (s.spreadHistory === 0 || s.spreadHistory >= s.minHistory))) {
      throw new ProbeError(`probe spreadHistory must be 0 or an integer >= minHistory (${s.minHistory}); got ${s.spreadHistory}`);
    }
  }

  /** Strikes (rejected exchanges) held against `partner` so far. */
  strikes(partner: string): number {
    return this.partners.get(partner)?.strikes ?? 0;
  }

  /** Partners this judge keeps records of (at most PARTNERS_KEPT). */
  get tracked(): number {
    return this.partners.size;
  }

  /**
   * Judges one exchange with `partner` and records it. `behind`: how many rounds behind us the
   * partner says it is; `round`: our round, so that behind gives the round it claims.
   */
  judge(partner: string, losses: ProbeLosses, opts: { probation?: boolean; behind?: number; round?: number } = {}): ProbeVerdict {
    const { solo, paired } = losses;
    if (solo.length === 0 || solo.length !== paired.length) {
      throw new ProbeError(`probe needs the same positive number of windows for both candidates; got ${solo.length} solo and ${paired.length} paired`);
    }
    const s = this.settings;
    const soloMean = mean(solo), pairedMean = mean(paired);
    const rec = this.partners.get(partner) ?? { cusum: 0, slow: 0, strikes: 0, strictLeft: 0, exchanges: 0, meanDiff: 0, accepted: 0, claimed: null, excused: 0 };
    // Re-inserted on every exchange, so the map's order is the order partners were last met.
    this.partners.delete(partner);
    this.partners.set(partner, rec);
    if (this.partners.size > PARTNERS_KEPT) this.partners.delete(this.partners.keys().next().value!);
    rec.exchanges++;
    // The round the partner claims, against the highest it claimed to us before: an honest peer's
    // round only goes up, so one below it is a lie, and it excuses nothing.
    const claim = Number.isInteger(opts.round) && Number.isInteger(opts.behind) ? opts.round! - opts.behind! : null;
    const earlier = rec.claimed;
    const lied = claim !== null && earlier !== null && claim < earlier;
    if (claim !== null) rec.claimed = earlier === null ? claim : Math.max(earlier, claim);
    const liedDetail = lied ? `it says it is at round ${claim}, below the round ${earlier} it claimed to us before` : '';
    // A non-finite paired loss is the worst harm there is; a non-finite solo loss is our own
    // divergence, which the partner cannot be blamed for: take its step if it is finite.
    if (!Number.isFinite(soloMean) || !Number.isFinite(pairedMean)) {
      const harmed = !Number.isFinite(pairedMean) && Number.isFinite(soloMean);
      if (harmed) {
        rec.strikes++;
        rec.strictLeft = s.strictExchanges;
      }
      return {
        accept: !harmed, solo: soloMean, paired: pairedMean, excess: harmed ? Infinity : 0, noise: NaN, margin: NaN, cusum: rec.cusum, slowCusum: rec.slow,
        offence: harmed ? { code: 'probe-gross', detail: `probe loss of the paired step is ${pairedMean} (solo ${soloMean.toFixed(4)})` } : null,
      };
    }
    const d = paired.map((p, k) => p - solo[k]!);
    const diff = mean(d);
    // Noise: the windows' own standard error, this peer's recent honest exchanges, the spread of
    // partners' mean effects, and a floor relative to the loss.
    const se = d.length > 1 ? Math.sqrt(d.reduce((a, x) => a + (x - diff) ** 2, 0) / (d.length - 1) / d.length) : 0;
    // What honest exchanges look like is learnt from the other partners' accepted exchanges: a
    // partner's own accepted harms would raise the baseline and widen the spread it is judged
    // with. Until there are enough of those (and in a swarm of two, where there are none), every
    // accepted exchange is the history, as a cold start would judge still more loosely.
    const others = this.diffs.filter((e) => e.partner !== partner);
    const pool = (others.length >= s.minHistory ? others : this.diffs).map((e) => e.diff);
    const past = pool.slice(-s.history);
    const trusted = past.length >= s.minHistory;
    const floor = (trusted ? s.relFloor : s.coldFloor) * Math.abs(soloMean);
    const baseline = trusted ? median(past) : 0;
    // The noise unit is the spread of the excesses honest exchanges had (residuals against the
    // baseline of their time, around 0: a baseline that lags a trend counts as noise too), from
    // up to spreadHistory of them; until there are minHistory, the spread of the history itself.
    const resid = s.spreadHistory > 0 ? residuals(pool, s.history, s.spreadHistory) : [];
    const history = !trusted ? 0 : resid.length >= s.minHistory ? robustSpread(resid, 0) : robustSpread(past, baseline);
    const means = [...this.partners].filter(([id, r]) => id !== partner && r.accepted >= 2).map(([, r]) => r.meanDiff);
    const across = means.length >= 3 ? robustSpread(means, median(means)) : 0;
    const noise = Math.min(Math.max(se, history, across, floor), s.ceiling * Math.abs(soloMean));
    // A partner on probation at the coordinator, or one this judge reported lately (its harm was
    // gross or added up), gets the strict margin: the one-step probe sees only part of what an
    // accepted harm does (the outer momentum carries it into the next steps).
    const z = opts.probation || rec.strictLeft > 0 ? s.zProbation : s.z;
    if (rec.strictLeft > 0) rec.strictLeft--;
    const margin = z * noise;
    const excess = diff - baseline;
    // In a run's first rounds an honest pair step can be far worse than solo (a partner's φ a
    // round behind; bench/results/probe.json): a cold start judges with its wide floor and
    // reports at once only a harm no honest partner came near; the CUSUM, capped per exchange,
    // needs two such exchanges in a row.
    rec.cusum = Math.max(0, rec.cusum + Math.min(excess / noise, s.cusumCap) - s.cusumSlack);
    // The slow CUSUM adds up what is left under the fast one's slack: a steady harm of 0.2 to
    // 0.45 σ is accepted every time and never reaches the fast limit, yet over 100 exchanges it
    // costs 20 to 45 σ. Only once the history is trusted (a cold start's σ is the wide floor,
    // and a run's first honest pair steps are often worse than solo), and clamped both ways, so
    // no one exchange, a rejected outlier or a helpful one sent to wipe the sum, moves it by
    // more than slowCap. It weighs nothing down before its report: the accepted update is taken
    // whole (docs/design.md section 6.1 says why).
    if (trusted) rec.slow = Math.max(0, rec.slow + Math.max(-s.slowCap, Math.min(excess / noise, s.slowCap)) - s.slowSlack);
    let offence: ProbeVerdict['offence'] = null;
    const numbers = `paired ${pairedMean.toFixed(4)} vs solo ${soloMean.toFixed(4)} on ${d.length} probe windows: excess ${excess.toFixed(4)}, margin ${margin.toFixed(4)}`;
    if (trusted ? excess > s.gross * margin : excess > Math.max(s.gross * margin, s.coldGross * Math.abs(soloMean))) {
      const behind = Number.isInteger(opts.behind) && opts.behind! >= s.behindRounds ? opts.behind! : 0;
      const spent = behind > 0 && rec.excused >= s.behindExcuses;
      if (rec.accepted >= s.provenAccepted) offence = { code: 'probe-harm', detail: `a gross harm from a partner with ${rec.accepted} accepted exchanges: ${numbers}` };
      else if (behind > 0 && !lied && !spent) {
        rec.excused++;
        offence = { code: 'probe-harm', detail: `a gross harm from a partner ${behind} rounds behind us: ${numbers}` };
      }
      else if (lied) offence = { code: 'probe-gross', detail: `${numbers}; ${liedDetail}: no slack for being behind` };
      else if (spent) offence = { code: 'probe-gross', detail: `${numbers}; it says it is ${behind} rounds behind us, but its ${s.behindExcuses} gross harms excused for being behind are spent` };
      else offence = { code: 'probe-gross', detail: numbers };
    }
    else if (rec.cusum > s.cusumLimit) offence = { code: 'probe-harm', detail: `${numbers}; cusum ${rec.cusum.toFixed(2)} > ${s.cusumLimit}` };
    else if (rec.slow > s.slowLimit) offence = { code: 'probe-harm', detail: `${numbers}; slow cusum ${rec.slow.toFixed(2)} > ${s.slowLimit} (a steady harm over ${s.slowSlack} noise units an exchange)` };
    else if (lied) offence = { code: 'probe-harm', detail: `${numbers}; ${liedDetail}` };
    if (offence) {
      rec.cusum = 0;
      rec.slow = 0;
      rec.strictLeft = s.strictExchanges;
    }
    // Under the margin, an update is taken, unless it is the one that makes this peer report the
    // partner: a harm the CUSUM has added up to an offence is not applied once more.
    const accept = excess <= margin && offence === null;
    // The history is what honest exchanges look like: accepted ones only (a rejected harm in it
    // would widen the margin for the next attacker; the cold floor is wide enough that honest
    // exchanges of a run's first rounds are taken, bench/results/probe.json).
    if (accept) {
      this.diffs.push({ partner, diff });
      if (this.diffs.length > HISTORY_KEPT * (s.spreadHistory + s.history)) this.diffs.shift();
    }
    if (accept) rec.meanDiff += (diff - rec.meanDiff) / ++rec.accepted;
    else rec.strikes++;
    return { accept, solo: soloMean, paired: pairedMean, excess, noise, margin, cusum: rec.cusum, slowCusum: rec.slow, offence };
  }
}
