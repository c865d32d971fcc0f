// The probe's judge (src/round/probe.ts) on made-up losses: honest noise is accepted, a harmful
// update is rejected and reported, a steady harm under the margin is reported by the CUSUM
// within 3 exchanges, a steady harm under the fast CUSUM's slack by the slow one, and a partner
// on probation gets the strict margin.
import { describe, expect, it } from 'vitest';
import { Rng } from '../src/model/rng.ts';
import { DEFAULT_PROBE, PARTNERS_KEPT, PROBE_WINDOWS, ProbeError, ProbeJudge, type ProbeLosses } from '../src/round/probe.ts';
import { runOuterRound, type RoundPorts } from '../src/round/outer-round.ts';
import { isSoftOffence } from '../src/protocol/messages.ts';

/**
 * One exchange's probe losses: windows of differing difficulty shared by both candidates, a
 * per-round effect of the partner (`effect`, plus honest round-to-round scatter `scatter`) and
 * a little per-window noise on the difference.
 */
function exchange(rng: Rng, effect: number, scatter = 0.004, base = 2.5): ProbeLosses {
  const round = effect + scatter * rng.normal();
  const solo: number[] = [], paired: number[] = [];
  for (let k = 0; k < PROBE_WINDOWS; k++) {
    const s = base + 0.05 * rng.normal();
    solo.push(s);
    paired.push(s + round + 0.002 * rng.normal());
  }
  return { solo, paired };
}

/** A judge that has seen `n` honest exchanges with four honest partners. */
function warmJudge(rng: Rng, n = 40): ProbeJudge {
  const j = new ProbeJudge();
  for (let i = 0; i < n; i++) j.judge(`honest${i % 4}`, exchange(rng, -0.002));
  return j;
}

describe('ProbeJudge', () => {
  it('accepts honest noise: at most 2% of 2000 honest exchanges rejected, none reported', () => {
    const rng = new Rng(15, 1);
    const j = new ProbeJudge();
    let rejected = 0, reported = 0;
    for (let i = 0; i < 2000; i++) {
      const v = j.judge(`honest${i % 6}`, exchange(rng, -0.002));
      if (!v.accept) rejected++;
      if (v.offence) reported++;
    }
    console.log(`honest fake losses: ${rejected}/2000 rejected (${(rejected / 20).toFixed(2)}%), ${reported} reported`);
    expect(rejected / 2000).toBeLessThanOrEqual(0.02);
    expect(reported).toBe(0);
  });

  it('sets its noise unit from the residuals of up to spreadHistory exchanges: an honest scatter over the floor is neither under-read nor refused more than 2% of the time', () => {
    // Honest pair steps that scatter 0.012 round to round (the micro GPT's, bench:probe-calibration),
    // over the relative floor (0.004 × 2.0). Judged by the spread of its last 8 differences alone
    // (spreadHistory 0, the judge before), the unit came out under 0.8 of the excess's real spread
    // in more than half the exchanges, and 3.7% to 4.9% of these updates were refused.
    expect(DEFAULT_PROBE.spreadHistory).toBeGreaterThanOrEqual(4 * DEFAULT_PROBE.history);
    for (const partners of [1, 6]) {
      const rng = new Rng(15, 30 + partners);
      const j = new ProbeJudge();
      let refused = 0;
      const units: number[] = [], excesses: number[] = [];
      for (let i = 0; i < 4000; i++) {
        const v = j.judge(`honest${i % partners}`, exchange(rng, -0.02, 0.012, 2.0));
        if (!v.accept) refused++;
        if (i >= 100) { units.push(v.noise); excesses.push(v.excess); }
      }
      const spread = Math.sqrt(excesses.reduce((a, x) => a + x * x, 0) / excesses.length);
      const under = units.filter((u) => u < 0.8 * spread).length / units.length;
      console.log(`honest scatter 0.012 from ${partners} partner(s): ${refused}/4000 refused, the unit under 0.8 of the excess's spread (${spread.toFixed(4)}) in ${(100 * under).toFixed(1)}% of exchanges`);
      expect(refused / 4000, `${partners} partner(s)`).toBeLessThanOrEqual(0.02);
      expect(under, `${partners} partner(s)`).toBeLessThanOrEqual(0.25);
    }
    expect(() => new ProbeJudge({ spreadHistory: 3 })).toThrow(/spreadHistory must be 0 or an integer >= minHistory \(4\); got 3/);
  });

  it('never widens its noise unit past the ceiling (a cold start\'s), however a colluder\'s accepted updates scatter', () => {
    // A colluding identity sends updates that help and harm by turns, ±2 of the current units:
    // harmless on average, so its CUSUM never reports it, and every one under the margin. Were
    // its accepted exchanges free to set the spread, each unit would set the next one's margin:
    // without the ceiling the unit reached 1.2e4 × the loss in 600 exchanges, and then any
    // update, an attacker's included, passes.
    const rng = new Rng(7, 1);
    const j = new ProbeJudge();
    for (let i = 0; i < 60; i++) j.judge(`honest${i % 2}`, exchange(rng, -0.02, 0.012, 2.0));
    let unit = 0.012, most = 0;
    for (let i = 0; i < 600; i++) {
      j.judge('colluder', exchange(rng, -0.02 + (i % 2 ? 2 : -2) * unit, 0, 2.0));
      if (i % 3 === 0) j.judge(`honest${i % 2}`, exchange(rng, -0.02, 0.012, 2.0));
      const v = j.judge('victim', exchange(rng, -0.02, 0.012, 2.0));
      unit = v.noise;
      most = Math.max(most, v.noise / v.solo);
    }
    console.log(`a ±2-unit colluder: the noise unit reached ${(100 * most).toFixed(2)}% of the loss`);
    expect(most).toBeLessThanOrEqual(DEFAULT_PROBE.ceiling + 1e-12);
    // At the ceiling, a harm of 10% of the loss is still refused, and reported as gross.
    const harm = j.judge('attacker', exchange(rng, 0.2, 0, 2.0));
    expect(harm.accept).toBe(false);
    expect(harm.offence?.code).toBe('probe-gross');
    expect(() => new ProbeJudge({ ceiling: 0.01 })).toThrow(/ceiling must be >= coldFloor \(0.02\); got 0.01/);
  });

  it('rejects a negated Δ (the paired step far worse than solo) and reports it at once', () => {
    const rng = new Rng(15, 2);
    const j = warmJudge(rng);
    const v = j.judge('attacker', exchange(rng, 0.3));
    expect(v.accept).toBe(false);
    expect(v.excess).toBeGreaterThan(v.margin);
    expect(v.offence?.code).toBe('probe-gross');
    expect(v.offence?.detail).toMatch(/paired .* vs solo .* on 4 probe windows/);
    expect(j.strikes('attacker')).toBe(1);
  });

  it('a gross harm from a partner with provenAccepted accepted exchanges is refused and reported as evidence (probe-harm), not a strike', () => {
    const rng = new Rng(15, 20);
    // 25 accepted exchanges with each of four honest partners.
    const j = warmJudge(rng, 4 * 25);
    const v = j.judge('honest0', exchange(rng, 0.3));
    expect(v.accept).toBe(false);
    expect(v.excess).toBeGreaterThan(DEFAULT_PROBE.gross * v.margin);
    expect(v.offence?.code).toBe('probe-harm');
    expect(v.offence?.detail).toMatch(/a gross harm from a partner with 25 accepted exchanges: paired/);
    // A partner with fewer (an attacker new here) is struck for the same harm.
    expect(j.judge('attacker', exchange(rng, 0.3)).offence?.code).toBe('probe-gross');
    expect(() => new ProbeJudge({ provenAccepted: 1.5 })).toThrow(/provenAccepted/);
  });

  it('a gross harm from a partner that says it is behindRounds or more behind us is refused and reported as evidence (probe-harm), not a strike', () => {
    const rng = new Rng(15, 21);
    const j = warmJudge(rng, 4 * 10);
    expect(DEFAULT_PROBE.behindRounds).toBe(2);
    const far = j.judge('slow-starter', exchange(rng, 0.3), { behind: 40 });
    expect(far.accept).toBe(false);
    expect(far.excess).toBeGreaterThan(DEFAULT_PROBE.gross * far.margin);
    expect(far.offence?.code).toBe('probe-harm');
    expect(far.offence?.detail).toMatch(/a gross harm from a partner 40 rounds behind us: paired/);
    // One round behind, at our round, ahead, or a claim that is no count: a strike, as before.
    for (const [k, behind] of [1, 0, -3, 2.5, Number.NaN].entries()) expect(j.judge(`p${k}`, exchange(rng, 0.3), { behind }).offence?.code).toBe('probe-gross');
    expect(() => new ProbeJudge({ behindRounds: 0 })).toThrow(/behindRounds/);
  });

  it('a partner that always says it is far behind is struck once its behindExcuses gross harms are spent (the old judge never struck it)', () => {
    const rng = new Rng(15, 22);
    const j = warmJudge(rng, 4 * 10);
    expect(DEFAULT_PROBE.behindExcuses).toBe(4);
    // A liar that claims, every exchange, to be 5 rounds behind whatever our round is: its claims
    // go up with ours, so only the cap stops it.
    const codes: string[] = [];
    for (let round = 10; round < 18; round++) {
      const v = j.judge('liar', exchange(rng, 0.3), { behind: 5, round });
      expect(v.accept).toBe(false);
      codes.push(v.offence!.code);
      if (codes.length === 5) expect(v.offence!.detail).toMatch(/it says it is 5 rounds behind us, but its 4 gross harms excused for being behind are spent/);
    }
    expect(codes).toEqual(['probe-harm', 'probe-harm', 'probe-harm', 'probe-harm', 'probe-gross', 'probe-gross', 'probe-gross', 'probe-gross']);
    expect(j.strikes('liar')).toBe(8);
    // The cap is per partner: another one's first gross harm while behind is still evidence.
    expect(j.judge('slow-starter', exchange(rng, 0.3), { behind: 40, round: 18 }).offence?.code).toBe('probe-harm');
    // 0: no excuse at all.
    const strict = new ProbeJudge({ behindExcuses: 0 });
    for (let i = 0; i < 4 * 10; i++) strict.judge(`h${i % 4}`, exchange(rng, 0));
    expect(strict.judge('slow-starter', exchange(rng, 0.3), { behind: 40, round: 50 }).offence?.code).toBe('probe-gross');
    expect(() => new ProbeJudge({ behindExcuses: -1 })).toThrow(/behindExcuses/);
    expect(() => new ProbeJudge({ behindExcuses: 1.5 })).toThrow(/behindExcuses/);
  });

  it('a claimed round below one the same partner claimed before excuses nothing: a gross harm is a strike, and the lie alone is evidence', () => {
    const rng = new Rng(15, 23);
    const j = warmJudge(rng, 4 * 10);
    // An honest exchange at its round 8 (our 10), then one where it says it is at round 3.
    expect(j.judge('liar', exchange(rng, 0), { behind: 2, round: 10 }).offence).toBeNull();
    const gross = j.judge('liar', exchange(rng, 0.3), { behind: 8, round: 11 });
    expect(gross.offence?.code).toBe('probe-gross');
    expect(gross.offence?.detail).toMatch(/it says it is at round 3, below the round 8 it claimed to us before: no slack for being behind/);
    // A harmless update with a lying round: refused and reported as evidence (no strike code).
    const lie = j.judge('liar', exchange(rng, 0), { behind: 9, round: 12 });
    expect(lie.accept).toBe(false);
    expect(lie.offence?.code).toBe('probe-harm');
    expect(lie.offence?.detail).toMatch(/it says it is at round 3, below the round 8 it claimed to us before/);
    // The same round again, or a higher one, is no lie; nor is a claim we cannot count.
    const h = new ProbeJudge();
    for (let i = 0; i < 4 * 10; i++) h.judge(`h${i % 4}`, exchange(rng, 0));
    for (const [round, behind] of [[10, 2], [11, 3], [13, 3], [14, Number.NaN], [15, 2]] as const) {
      expect(h.judge('honest', exchange(rng, 0), { behind, round }).offence).toBeNull();
    }
  });

  it('before it has any history (the cold start) rejects large harms but reports only a gross one', () => {
    const rng = new Rng(15, 3);
    const j = new ProbeJudge();
    // An honest pair step of a run's first rounds was up to 4% worse than solo (a partner a round
    // behind): taken, even from a partner on probation (every peer is, at a run's start).
    const early = j.judge('honest', exchange(rng, 0.09), { probation: true });
    expect(early.accept, JSON.stringify(early)).toBe(true);
    expect(early.noise).toBeCloseTo(DEFAULT_PROBE.coldFloor * early.solo, 6);
    // 10% worse: rejected, not reported (the cold start reports at once only a gross harm).
    const v = new ProbeJudge().judge('honest', exchange(rng, 0.25));
    expect(v.accept).toBe(false);
    expect(v.offence).toBeNull();
    expect(j.judge('attacker', exchange(rng, 1.0)).offence?.code).toBe('probe-gross');
    // Once the history is trusted, a far smaller harm is reported at once.
    const warm = warmJudge(rng);
    expect(warm.judge('attacker', exchange(rng, 0.12)).offence?.code).toBe('probe-gross');
  });

  it('reports a steady harm under the margin through the CUSUM within 3 exchanges', () => {
    const rng = new Rng(15, 4);
    const j = warmJudge(rng);
    // The noise unit the warm judge uses, and a harm of 2.5 of them: each exchange is accepted
    // (under the margin of 3) but the harm adds up.
    const unit = j.judge('probe-of-noise', exchange(rng, -0.002)).noise;
    const verdicts = [];
    for (let i = 0; i < 3; i++) {
      const v = j.judge('drifter', exchange(rng, -0.002 + 2.5 * unit, 0));
      verdicts.push(v);
      if (v.offence) break;
    }
    console.log('steady harm of 2.5 noise units:', verdicts.map((v) => `excess ${(v.excess / v.noise).toFixed(2)} noise, cusum ${v.cusum.toFixed(2)}, ${v.offence?.code ?? '-'}`).join('; '));
    expect(verdicts.at(-1)!.offence?.code).toBe('probe-harm');
    expect(verdicts.length).toBeLessThanOrEqual(3);
    // The exchange that makes the CUSUM report is under the margin, but not applied.
    expect(verdicts.at(-1)!.excess).toBeLessThan(verdicts.at(-1)!.margin);
    expect(verdicts.at(-1)!.accept).toBe(false);
  });

  it('does not let a partner calibrate its own judge: a steady harm inside the honest scatter, alternating with an honest partner, is reported within 3 of its exchanges', () => {
    // Three volunteers: this one meets the honest b and the attacker k in turn. k's update costs
    // 0.018 of probe loss every time, about 1.8 noise units as b's exchanges set them: under the margin
    // each time, so accepted. Were k's accepted exchanges part of the history, they would raise
    // the baseline and widen the noise k is judged with, and k would never be reported.
    const rng = new Rng(15, 9);
    const j = new ProbeJudge();
    for (let i = 0; i < DEFAULT_PROBE.minHistory; i++) expect(j.judge('b', exchange(rng, -0.002, 0.012)).accept).toBe(true);
    const seen: string[] = [];
    let reportedAt = -1;
    for (let i = 0; i < 12 && reportedAt < 0; i++) {
      const v = j.judge('k', exchange(rng, 0.018, 0.003));
      seen.push(`${v.accept ? 'accepted' : 'rejected'} excess ${(v.excess / v.noise).toFixed(2)} noise, cusum ${v.cusum.toFixed(2)}${v.offence ? ` ${v.offence.code}` : ''}`);
      if (v.offence) reportedAt = i + 1;
      const h = j.judge('b', exchange(rng, -0.002, 0.012));
      expect(h.offence).toBeNull();
    }
    console.log(`steady harm beside an honest partner: ${seen.join('; ')}`);
    expect(reportedAt, seen.join('; ')).toBeGreaterThan(0);
    expect(reportedAt, seen.join('; ')).toBeLessThanOrEqual(3);
  });

  it('reports a steady harm under the fast CUSUM\'s slack (0.3 noise units, accepted every time) through the slow CUSUM, as soft evidence; the fast one alone never does', () => {
    // Beside three honest partners, a drifter whose update costs 0.3 of the judge's noise units
    // every time, with none of the honest scatter: under the fast CUSUM's slack of 0.5, so it
    // adds nothing there, and far under the margin, so it is accepted every time.
    const run = (settings: Partial<typeof DEFAULT_PROBE>) => {
      const rng = new Rng(15, 40);
      const j = new ProbeJudge(settings);
      for (let i = 0; i < 40; i++) j.judge(`honest${i % 3}`, exchange(rng, -0.002));
      const unit = j.judge('probe-of-noise', exchange(rng, -0.002)).noise;
      let harm = 0;
      for (let i = 1; i <= 150; i++) {
        const v = j.judge('drifter', exchange(rng, -0.002 + 0.3 * unit, 0));
        expect(j.judge(`honest${i % 3}`, exchange(rng, -0.002)).offence).toBeNull();
        if (v.offence) return { at: i, v, harm };
        expect(v.accept).toBe(true);
        harm += v.excess / v.noise;
      }
      return { at: null, v: null, harm };
    };
    // Without the slow CUSUM (the judge before it): 150 exchanges, every one taken, none reported.
    const fastOnly = run({ slowLimit: Infinity });
    console.log(`a steady harm of 0.3 noise units, fast CUSUM alone: reported at ${fastOnly.at ?? 'never'}, ${fastOnly.harm.toFixed(1)} noise units accepted over 150 exchanges`);
    expect(fastOnly.at).toBeNull();
    expect(fastOnly.harm).toBeGreaterThan(30);
    const now = run({});
    console.log(`with the slow CUSUM: reported at exchange ${now.at} after ${now.harm.toFixed(1)} noise units: ${now.v?.offence?.detail}`);
    expect(now.at).not.toBeNull();
    // (slowLimit + slack) / (0.3 − slowSlack) = 55 exchanges, give or take the baseline's scatter.
    expect(now.at!).toBeLessThanOrEqual(80);
    expect(now.v!.offence!.code).toBe('probe-harm');
    expect(now.v!.offence!.detail).toMatch(/; slow cusum \d+\.\d+ > 11 \(a steady harm over 0.1 noise units an exchange\)$/);
    // Soft evidence through the mesh's offence path (no strike), and the exchange that makes
    // the report is not applied; both CUSUMs start again from 0.
    expect(isSoftOffence(`${now.v!.offence!.code}: ${now.v!.offence!.detail}`)).toBe(true);
    expect(now.v!.accept).toBe(false);
    expect(now.v!.excess).toBeLessThan(now.v!.margin);
    expect([now.v!.cusum, now.v!.slowCusum]).toEqual([0, 0]);
  });

  it('the slow CUSUM alarms on honest noise no more often than the fast one, and reports a steady 0.3-unit harm within a bounded number of exchanges (seeded)', () => {
    // Two kinds of honest noise. `scatter`: pair steps that scatter 0.012 round to round over a
    // loss of 2.0 (the micro GPT's, bench:probe-calibration), above the relative floor, so the
    // noise unit is the judge's estimate of that scatter and an excess runs about 1 unit either
    // way. `floor`: a scatter of 0.004 under the floor (0.4% of 2.5), so an honest excess runs
    // about 0.4 units (the unit is the largest of its estimates; honest units in the
    // simulator sat at 0.5% to 0.9% of the loss, over a floor of 0.4%).
    const kinds = { scatter: { effect: -0.02, scatter: 0.012, base: 2.0 }, floor: { effect: -0.002, scatter: 0.004, base: 2.5 } };
    type Kind = keyof typeof kinds;
    const honest = (rng: Rng, kind: Kind, harm = 0) => exchange(rng, kinds[kind].effect + harm, kinds[kind].scatter, kinds[kind].base);
    const fastOnly = { slowLimit: Infinity }, slowOnly = { cusumLimit: Infinity };
    // Each detector alone on the same honest exchanges (the same seed).
    const alarms = (settings: Partial<typeof DEFAULT_PROBE>, kind: Kind, partners: number, n: number) => {
      const rng = new Rng(16, partners);
      const j = new ProbeJudge(settings);
      let reports = 0;
      for (let i = 0; i < n; i++) if (j.judge(`honest${i % partners}`, honest(rng, kind)).offence) reports++;
      return reports;
    };
    const n = 20_000;
    for (const partners of [1, 3]) {
      const fast = alarms(fastOnly, 'scatter', partners, n), slow = alarms(slowOnly, 'scatter', partners, n);
      console.log(`honest scatter over the floor, ${partners} partner(s), ${n} exchanges: the fast CUSUM reported ${fast} (one in ${Math.round(n / fast)}), the slow one ${slow} (one in ${Math.round(n / Math.max(1, slow))})`);
      expect(slow, `${partners} partner(s)`).toBeLessThanOrEqual(fast);
      expect(slow, `${partners} partner(s)`).toBeLessThanOrEqual(n / 150);
    }
    // What weighing down a partner whose slow CUSUM is high would cost honest pairs: the share
    // of honest updates that would have been refused besides, were every accepted one that
    // harmed (excess > 0) refused while its sender's slow CUSUM was over half its limit.
    for (const partners of [1, 3]) {
      const rng = new Rng(16, partners);
      const j = new ProbeJudge();
      const before = new Map<string, number>();
      let refused = 0, more = 0;
      for (let i = 0; i < n; i++) {
        const p = `honest${i % partners}`;
        const v = j.judge(p, honest(rng, 'scatter'));
        if (!v.accept) refused++;
        else if (v.excess > 0 && (before.get(p) ?? 0) > DEFAULT_PROBE.slowLimit / 2) more++;
        before.set(p, v.slowCusum);
      }
      console.log(`honest scatter over the floor, ${partners} partner(s): ${refused} of ${n} refused (${(100 * refused / n).toFixed(2)}%); refusing accepted harms while the slow CUSUM is over half its limit would refuse ${more} more (${(100 * more / n).toFixed(2)}%)`);
      expect(more / n, `${partners} partner(s)`).toBeGreaterThan(0.01);
    }
    const floorAlarms = [alarms(fastOnly, 'floor', 3, n), alarms(slowOnly, 'floor', 3, n)];
    console.log(`honest scatter under the floor, 3 partners, ${n} exchanges: the fast CUSUM reported ${floorAlarms[0]}, the slow one ${floorAlarms[1]}`);
    // Both far under one in 340 (the fast CUSUM's rate on noise of exactly one unit).
    expect(floorAlarms[1]).toBeLessThanOrEqual(n / 1000);
    // A drifter beside three honest partners, its update 0.3 of the judge's noise units worse
    // than theirs and scattering as theirs do: at which of its exchanges is it first reported?
    // Never within 300: counted as 301.
    const q = (a: readonly number[], p: number) => [...a].sort((x, y) => x - y)[Math.ceil(p * a.length) - 1]!;
    const detect = (settings: Partial<typeof DEFAULT_PROBE>, kind: Kind) => {
      const at: number[] = [];
      for (let seed = 1; seed <= 100; seed++) {
        const rng = new Rng(seed, 41);
        const j = new ProbeJudge(settings);
        for (let i = 0; i < 60; i++) j.judge(`honest${i % 3}`, honest(rng, kind));
        const unit = j.judge('probe-of-noise', honest(rng, kind)).noise;
        let found = 301;
        for (let i = 1; i <= 300 && found > 300; i++) {
          if (j.judge('drifter', honest(rng, kind, 0.3 * unit)).offence) found = i;
          j.judge(`honest${i % 3}`, honest(rng, kind));
        }
        at.push(found);
      }
      const never = at.filter((x) => x > 300).length;
      return { median: q(at, 0.5), p95: q(at, 0.95), most: Math.max(...at), never, text: `median ${q(at, 0.5)}, 95th percentile ${q(at, 0.95)}, at most ${Math.max(...at)}${never ? ` (never within 300 in ${never})` : ''}` };
    };
    const measured: Record<string, ReturnType<typeof detect>> = {};
    for (const kind of ['floor', 'scatter'] as const) {
      for (const [name, settings] of [['default', {}], ['slow alone', slowOnly], ['fast alone', fastOnly]] as const) measured[`${kind} ${name}`] = detect(settings, kind);
      console.log(`a steady 0.3-unit harm, honest scatter ${kind === 'floor' ? 'under' : 'over'} the floor, 100 seeds, reported at: the default judge ${measured[`${kind} default`]!.text}; the slow CUSUM alone ${measured[`${kind} slow alone`]!.text}; the fast one alone (the judge before) ${measured[`${kind} fast alone`]!.text}`);
    }
    // Under the floor the fast CUSUM alone missed it within 300 exchanges in most seeds; the slow
    // one reports it in every seed, near (11 + 0.3) / (0.3 − 0.1) ≈ 57 exchanges.
    expect(measured['floor fast alone']!.never).toBeGreaterThanOrEqual(70);
    expect(measured['floor default']!.never).toBe(0);
    expect(measured['floor default']!.median).toBeLessThanOrEqual(55);
    expect(measured['floor default']!.p95).toBeLessThanOrEqual(100);
    // Over it, the fast CUSUM's false alarms (one in about 105 exchanges, above) come sooner with
    // the harm added and report it too; the two together report it sooner than either.
    expect(measured['scatter default']!.never).toBe(0);
    expect(measured['scatter default']!.median).toBeLessThanOrEqual(31);
    expect(measured['scatter default']!.p95).toBeLessThanOrEqual(90);
    expect(measured['scatter default']!.p95).toBeLessThan(measured['scatter fast alone']!.p95);
  });

  it('reports a partner rejected twice in a row (each rejection adds at least z − slack to its CUSUM)', () => {
    const rng = new Rng(15, 5);
    const j = warmJudge(rng);
    const unit = j.judge('probe-of-noise', exchange(rng, -0.002)).noise;
    const a = j.judge('attacker', exchange(rng, -0.002 + 3.5 * unit, 0));
    const b = j.judge('attacker', exchange(rng, -0.002 + 3.5 * unit, 0));
    expect([a.accept, b.accept]).toEqual([false, false]);
    expect(a.offence).toBeNull();
    expect(b.offence?.code).toBe('probe-harm');
  });

  it('judges a partner it has reported with the strict margin for its next strictExchanges exchanges, counted afresh at each report', () => {
    const rng = new Rng(15, 10);
    const j = warmJudge(rng);
    const unit = j.judge('probe-of-noise', exchange(rng, -0.002)).noise;
    // Gross at once: reported.
    expect(j.judge('k', exchange(rng, 0.3)).offence?.code).toBe('probe-gross');
    // Then a harm of 2.5 noise units, under the margin of 3 a partner in good standing gets, is
    // over the strict margin of 2 for k, and still under it for a partner never reported.
    const after = j.judge('k', exchange(rng, -0.002 + 2.5 * unit, 0));
    const other = j.judge('b', exchange(rng, -0.002 + 2.5 * unit, 0));
    expect(after.margin).toBeCloseTo(DEFAULT_PROBE.zProbation * after.noise, 10);
    expect(after.accept).toBe(false);
    expect(other.accept).toBe(true);
    // Its next exchanges, honest ones, are judged strictly until strictExchanges have passed
    // since the report; then k is in good standing again (a CUSUM report between honest
    // partners is no reason to judge them at z = 2 for the rest of a long run).
    const zs: number[] = [];
    for (let i = 1; i < DEFAULT_PROBE.strictExchanges + 3; i++) {
      const v = j.judge('k', exchange(rng, -0.002));
      zs.push(Math.round(v.margin / v.noise));
    }
    expect(zs).toEqual([...Array<number>(DEFAULT_PROBE.strictExchanges - 1).fill(DEFAULT_PROBE.zProbation), ...Array<number>(3).fill(DEFAULT_PROBE.z)]);
    // A new report starts the count again.
    expect(j.judge('k', exchange(rng, 0.3)).offence).not.toBeNull();
    const again = j.judge('k', exchange(rng, -0.002));
    expect(again.margin / again.noise).toBeCloseTo(DEFAULT_PROBE.zProbation, 10);
  });

  it('judges a partner on probation with the strict margin', () => {
    const rng = new Rng(15, 6);
    const j = warmJudge(rng);
    const unit = j.judge('probe-of-noise', exchange(rng, -0.002)).noise;
    const losses = exchange(rng, -0.002 + 2.5 * unit, 0);
    const trusted = warmJudge(new Rng(15, 6)).judge('p', losses);
    const onProbation = j.judge('p', losses, { probation: true });
    expect(trusted.accept).toBe(true);
    expect(onProbation.accept).toBe(false);
    expect(onProbation.margin).toBeCloseTo((DEFAULT_PROBE.zProbation / DEFAULT_PROBE.z) * trusted.margin, 2);
  });

  it('keeps records of at most PARTNERS_KEPT partners, dropping the one met longest ago', () => {
    const rng = new Rng(15, 12);
    const j = warmJudge(rng);
    // A reported partner, then a stream of ids (a long run's churn, or an attacker rejoining).
    expect(j.judge('k', exchange(rng, 0.3)).offence).not.toBeNull();
    const stream = 1500;
    expect(PARTNERS_KEPT).toBeLessThan(stream / 2);
    for (let i = 0; i < stream; i++) {
      j.judge(`id${i}`, exchange(rng, -0.002));
      // k is met again now and then: its record, and the strict margin with it, stay (its 8
      // meetings here are the strictExchanges after its report).
      if (i % 200 === 0) {
        const v = j.judge('k', exchange(rng, -0.002));
        expect(v.margin).toBeCloseTo(DEFAULT_PROBE.zProbation * v.noise, 10);
      }
    }
    expect(j.tracked).toBe(PARTNERS_KEPT);
    expect(j.strikes('k')).toBeGreaterThan(0);
    // The first ids of the stream were met longest ago: gone.
    expect(j.strikes('id0')).toBe(0);
    expect(j.judge('id0', exchange(rng, 0.3)).offence?.code).toBe('probe-gross');
    expect(j.tracked).toBe(PARTNERS_KEPT);
  });

  it('rejects a paired step whose loss is not finite, and never blames a partner for our own NaN', () => {
    const j = new ProbeJudge();
    const bad = j.judge('nan', { solo: [2.5, 2.6], paired: [Number.NaN, 2.6] });
    expect(bad.accept).toBe(false);
    expect(bad.offence?.code).toBe('probe-gross');
    const ours = j.judge('honest', { solo: [Number.NaN, 2.6], paired: [2.5, 2.6] });
    expect(ours.accept).toBe(true);
    expect(ours.offence).toBeNull();
  });

  it('refuses mismatched windows and bad settings with errors naming the problem', () => {
    const j = new ProbeJudge();
    expect(() => j.judge('p', { solo: [1, 2], paired: [1] })).toThrow(ProbeError);
    expect(() => j.judge('p', { solo: [], paired: [] })).toThrow(/same positive number of windows/);
    expect(() => new ProbeJudge({ z: 0 })).toThrow(/z, zProbation/);
    expect(() => new ProbeJudge({ cusumCap: 0.5 })).toThrow(/cusumCap > cusumSlack/);
    expect(() => new ProbeJudge({ slowSlack: 0 })).toThrow(/slow CUSUM needs slowCap > slowSlack > 0 and slowLimit > 0; got slowSlack 0,/);
    expect(() => new ProbeJudge({ slowCap: 0.1 })).toThrow(/slowCap 0.1/);
    expect(() => new ProbeJudge({ minHistory: 10, history: 5 })).toThrow(/minHistory <= history/);
  });
});

describe('the outer round with the probe', () => {
  /** One round against a partner whose update has `effect` on our probe loss. */
  async function round(judge: ProbeJudge, effect: number, rng: Rng, probation = false, partnerRound?: number) {
    const applied: string[][] = [];
    const reported: { peer: string; code: string }[] = [];
    const ports: RoundPorts<string> = {
      outerPayload: () => 'mine',
      exchange: async () => ({ partner: 'p-1', payload: 'theirs', partnerDist: 1, bytesIn: 10, bytesOut: 10, solo: null, ...(probation ? { probation: true } : {}), ...(partnerRound === undefined ? {} : { partnerRound }) }),
      applyOuter: (partners) => { applied.push(partners); },
      probe: async () => exchange(rng, effect),
      reportOffence: (peer, code) => { reported.push({ peer, code }); },
    };
    const out = await runOuterRound(ports, {
      round: 3, inner: { step: 40, losses: [2.5], tokens: 100, innerMs: 50 }, pairWaitFrac: 0.5, adapter: null, evaluate: null, judge,
    });
    return { out, applied, reported };
  }

  it('applies an accepted update and reports the probe\'s figures', async () => {
    const rng = new Rng(15, 7);
    const { out, applied, reported } = await round(warmJudge(rng), -0.002, rng);
    expect(applied).toEqual([['theirs']]);
    expect(reported).toEqual([]);
    expect(out.report).toMatchObject({ partner: 'p-1', partnerDist: 1, probeRejected: false });
    expect(out.report.probeMs).toBeGreaterThanOrEqual(0);
    expect(out.report.probePaired).toBeCloseTo(out.probe!.paired, 10);
  });

  it('takes a solo step for a harmful update, names no partner in the report and reports the partner', async () => {
    const rng = new Rng(15, 8);
    const { out, applied, reported } = await round(warmJudge(rng), 0.3, rng);
    expect(applied).toEqual([[]]);
    expect(reported).toEqual([{ peer: 'p-1', code: 'probe-gross' }]);
    expect(out.report).toMatchObject({ partner: null, partnerDist: null, probeRejected: true });
    expect(out.report.probePaired!).toBeGreaterThan(out.report.probeSolo!);
  });

  it('passes the coordinator\'s probation on to the judge', async () => {
    const rng = new Rng(15, 9);
    const judge = warmJudge(rng);
    const { out } = await round(judge, -0.002, rng, true);
    expect(out.probe!.margin / out.probe!.noise).toBeCloseTo(DEFAULT_PROBE.zProbation, 10);
  });

  it('passes how many rounds behind us the partner says it is on to the judge (our round 3, its round 0: evidence, not a strike)', async () => {
    const rng = new Rng(15, 10);
    const behind = await round(warmJudge(rng), 0.3, rng, false, 0);
    expect(behind.reported).toEqual([{ peer: 'p-1', code: 'probe-harm' }]);
    expect(behind.out.probe!.offence!.detail).toMatch(/3 rounds behind us/);
    expect((await round(warmJudge(rng), 0.3, rng, false, 3)).reported).toEqual([{ peer: 'p-1', code: 'probe-gross' }]);
  });

  it('passes our round on too, so a partner\'s claims to us are held against each other (round 3 then round 1: a strike)', async () => {
    const rng = new Rng(15, 11);
    const judge = warmJudge(rng);
    expect((await round(judge, 0, rng, false, 3)).reported).toEqual([]);
    const lie = await round(judge, 0.3, rng, false, 1);
    expect(lie.reported).toEqual([{ peer: 'p-1', code: 'probe-gross' }]);
    expect(lie.out.probe!.offence!.detail).toMatch(/it says it is at round 1, below the round 3 it claimed to us before/);
  });

  it('applies the update unjudged when the round has no judge (the probe off)', async () => {
    const ports: RoundPorts<string> = {
      outerPayload: () => 'mine',
      exchange: async () => ({ partner: 'p-1', payload: 'theirs', partnerDist: 1, bytesIn: 10, bytesOut: 10, solo: null }),
      applyOuter: () => {},
      probe: async () => { throw new Error('must not be called'); },
    };
    const out = await runOuterRound(ports, { round: 0, inner: { step: 10, losses: [2.5], tokens: 100, innerMs: 50 }, pairWaitFrac: 0.5, adapter: null, evaluate: null });
    expect(out.probe).toBeNull();
    expect(out.report.partner).toBe('p-1');
    expect('probeMs' in out.report).toBe(false);
  });
});
