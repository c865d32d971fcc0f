// The recorded probe calibration (bench/results/probe-calibration.json, `npm run
// bench:probe-calibration`) holds what docs/design.md section 6.1 says of the judge's noise unit:
// replayed over the same honest exchanges, the default judge refuses fewer honest updates than the
// judge before it (spreadHistory 0) and at most 1% of them, still refuses nearly every update that
// costs 5 times the honest scatter and reports its sender, and gives up little of what it refused at
// 3 times. Beside it the same judge with the slow CUSUM off (slowLimit Infinity, the judge before
// 2026-12-07): the honest reports split by the sum that made them, and harms under the fast
// CUSUM's slack (0.2 and 0.3 honest scatters), with what section 6.1 quotes of them. A change of
// the default without a rerun fails here too.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DEFAULT_PROBE } from '../src/round/probe.ts';

const DESIGN = readFileSync(new URL('../docs/design.md', import.meta.url), 'utf8').replace(/\s+/g, ' ');

interface Detection { harm_units: number; harm: number; exchanges: number; refused_share: number; reported_at: (number | null)[]; reported_by: ('fast' | 'slow' | 'gross' | null)[] }
interface Slow { slow_slack: number; slow_cap: number; slow_limit: number | null }
interface Counts { judged: number; refused: number; refused_rate: number; probe_harm: number; probe_gross: number; probe_harm_fast: number; probe_harm_slow: number; probe_harm_gross: number }
interface Variant extends Slow, Counts { spread_history: number; default: boolean; detection: Detection[] }
interface Row { n: number; seed: number; judged: number; honest_scatter: number; run_refused: number; run_offences: Record<string, number>; variants: Variant[] }
interface ByN extends Slow { n: number; default: boolean; harm_units: number; judges: number; reported: number; reported_slow: number; reported_fast: number; median_reported_at: number | null; exchanges: number; refused_share: number }
interface Results {
  when: string; complete: boolean; seeds: number[]; default_spread_history: number; default_slow: Slow;
  pooled: (Slow & Counts & { spread_history: number; default: boolean })[]; detection_by_n: ByN[]; rows: Row[];
}

const results = JSON.parse(readFileSync(new URL('../bench/results/probe-calibration.json', import.meta.url), 'utf8')) as Results;
const DEFAULT_SLOW: Slow = { slow_slack: DEFAULT_PROBE.slowSlack, slow_cap: DEFAULT_PROBE.slowCap, slow_limit: DEFAULT_PROBE.slowLimit };
const OFF: Slow = { ...DEFAULT_SLOW, slow_limit: null };
const sameSlow = (a: Slow, b: Slow) => a.slow_slack === b.slow_slack && a.slow_cap === b.slow_cap && a.slow_limit === b.slow_limit;
/** A row's replay with `spread` and the slow CUSUM `slow` (the default one unless given). */
const variant = (r: Row, spread: number, slow: Slow = DEFAULT_SLOW) => {
  const v = r.variants.find((x) => x.spread_history === spread && sameSlow(x, slow));
  if (!v) throw new Error(`row n = ${r.n} seed ${r.seed} has no replay with spreadHistory ${spread} and slow CUSUM ${JSON.stringify(slow)}`);
  return v;
};
const pooled = (spread: number, slow: Slow = DEFAULT_SLOW) => {
  const p = results.pooled.find((x) => x.spread_history === spread && sameSlow(x, slow));
  if (!p) throw new Error(`no pooled replay with spreadHistory ${spread} and slow CUSUM ${JSON.stringify(slow)}`);
  return p;
};
const byN = (n: number, units: number, slow: Slow = DEFAULT_SLOW) => {
  const d = results.detection_by_n.find((x) => x.n === n && x.harm_units === units && sameSlow(x, slow));
  if (!d) throw new Error(`no detection at n = ${n}, ${units} scatters, slow CUSUM ${JSON.stringify(slow)}`);
  return d;
};

/** Over the rows with n >= 4 (a swarm of two judges its only partner by that partner's own history): harmed exchanges refused, and judges that reported. */
function pooledDetection(spread: number, units: number) {
  let exchanges = 0, refused = 0, reported = 0, judges = 0;
  for (const r of results.rows.filter((x) => x.n >= 4)) {
    const d = variant(r, spread).detection.find((x) => x.harm_units === units)!;
    exchanges += d.exchanges;
    refused += d.refused_share * d.exchanges;
    reported += d.reported_at.filter((x) => x !== null).length;
    judges += d.reported_at.length;
  }
  return { refusedShare: refused / exchanges, reportedShare: reported / judges, judges };
}

describe('bench/results/probe-calibration.json', () => {
  it('was recorded with the default judge, over honest swarms of 2, 4 and 8', () => {
    expect(results.complete, 'a run cut short (complete: false)').toBe(true);
    expect(results.default_spread_history).toBe(DEFAULT_PROBE.spreadHistory);
    expect(new Set(results.rows.map((r) => r.n))).toEqual(new Set([2, 4, 8]));
    for (const r of results.rows) {
      // Replayed with the default settings, the judges said what they said in the run.
      const d = variant(r, DEFAULT_PROBE.spreadHistory);
      expect(d.default).toBe(true);
      expect(d.judged, `n = ${r.n} seed ${r.seed}`).toBe(r.judged);
      expect(d.refused, `n = ${r.n} seed ${r.seed}`).toBe(r.run_refused);
      expect(d.probe_gross, `n = ${r.n} seed ${r.seed}: an honest partner struck`).toBe(r.run_offences['probe-gross'] ?? 0);
      expect(r.judged).toBeGreaterThan(200);
    }
  });

  it('the default judge refuses at most 1% of honest updates, fewer than the judge before it on the same exchanges', () => {
    const now = pooled(DEFAULT_PROBE.spreadHistory), before = pooled(0);
    console.log(`honest updates refused: ${now.refused}/${now.judged} now, ${before.refused}/${before.judged} before`);
    expect(now.judged).toBe(before.judged);
    expect(now.refused_rate).toBeLessThanOrEqual(0.01);
    expect(now.refused).toBeLessThan(before.refused);
  });

  it('still refuses a harm of 5 honest scatters and reports its sender, and gives up at most a tenth of the refusals at 3', () => {
    const five = pooledDetection(DEFAULT_PROBE.spreadHistory, 5);
    const three = pooledDetection(DEFAULT_PROBE.spreadHistory, 3), threeBefore = pooledDetection(0, 3);
    console.log(`5 scatters: ${(100 * five.refusedShare).toFixed(1)}% refused, reported by ${(100 * five.reportedShare).toFixed(0)}% of ${five.judges} judges; 3 scatters: ${(100 * three.refusedShare).toFixed(1)}% refused (before ${(100 * threeBefore.refusedShare).toFixed(1)}%)`);
    expect(five.judges).toBeGreaterThanOrEqual(10);
    expect(five.refusedShare).toBeGreaterThanOrEqual(0.9);
    expect(five.reportedShare).toBeGreaterThanOrEqual(0.9);
    expect(three.refusedShare).toBeGreaterThanOrEqual(threeBefore.refusedShare - 0.1);
  });

  it('replays the slow CUSUM off beside the default judge, each honest report counted by the sum that made it', () => {
    expect(results.default_slow).toEqual(DEFAULT_SLOW);
    for (const r of results.rows) {
      const what = `n = ${r.n} seed ${r.seed}`;
      const now = variant(r, DEFAULT_PROBE.spreadHistory), off = variant(r, DEFAULT_PROBE.spreadHistory, OFF);
      expect(r.variants.filter((v) => v.default), what).toEqual([now]);
      // The default judge's replay gives back the run's reports, CUSUM and gross-as-evidence together.
      expect(now.probe_harm, what).toBe(r.run_offences['probe-harm'] ?? 0);
      expect(off.judged, what).toBe(now.judged);
      expect(off.probe_harm_slow, `${what}: the slow CUSUM off reported`).toBe(0);
      for (const v of r.variants) {
        expect(v.probe_harm_fast + v.probe_harm_slow + v.probe_harm_gross, what).toBe(v.probe_harm);
        expect(v.detection.map((d) => d.harm_units), what).toEqual([0.2, 0.3, 1, 2, 3, 5]);
        for (const d of v.detection) expect(d.reported_by.map((x) => x === null), what).toEqual(d.reported_at.map((x) => x === null));
      }
      for (const d of off.detection) expect(d.reported_by, `${what}, ${d.harm_units} scatters`).not.toContain('slow');
    }
  });

  it('docs/design.md section 6.1 quotes these numbers', () => {
    const thousands = (x: number) => x.toLocaleString('en-US');
    const pct = (a: number, b: number) => `${(100 * a / b).toFixed(2)}%`;
    const now = pooled(DEFAULT_PROBE.spreadHistory), before = pooled(0), off = pooled(DEFAULT_PROBE.spreadHistory, OFF);
    const three = pooledDetection(DEFAULT_PROBE.spreadHistory, 3), threeBefore = pooledDetection(0, 3);
    const five = pooledDetection(DEFAULT_PROBE.spreadHistory, 5), fiveBefore = pooledDetection(0, 5);
    const seeds = results.seeds.length === 2 ? 'two seeds' : `seed ${results.seeds.join(', ')}`;
    const claims = [
      // The margin: the noise unit from 32 residuals against the spread of 8 differences.
      `(\`npm run bench:probe-calibration\`, n = 2, 4 and 8, ${seeds}, bench/results/probe-calibration.json of ${results.when.slice(0, 10)}), the judge before refused ${before.refused} of ${thousands(before.judged)} honest updates (${pct(before.refused, before.judged)}) and this one ${now.refused} (${pct(now.refused, now.judged)})`,
      `of updates costing 3 honest scatters it refuses ${(100 * three.refusedShare).toFixed(1)}% where the judge before refused ${(100 * threeBefore.refusedShare).toFixed(1)}%, and of 5 scatters ${(100 * five.refusedShare).toFixed(1)}% against ${(100 * fiveBefore.refusedShare).toFixed(1)}%, ${Math.round(five.reportedShare * five.judges)} of ${five.judges} judges reporting the sender (the judge before ${Math.round(fiveBefore.reportedShare * fiveBefore.judges)})`,
      // The slow CUSUM: honest reports with and without it, and harms under the fast one's slack.
      `over the same ${thousands(now.judged)} honest exchanges the fast CUSUM reported ${now.probe_harm_fast} times and the slow one ${now.probe_harm_slow}; with the slow one off the fast one reported ${off.probe_harm_fast} times, and ${off.refused} honest updates were refused against ${now.refused}`,
      ...[0.2, 0.3].map((k) => `${k} honest scatters: ${[2, 4, 8].map((n) => {
        const d = byN(n, k), o = byN(n, k, OFF);
        return `at n = ${n}, ${d.reported} of ${d.judges} judges reported it${d.reported ? ` (${d.reported_slow} by the slow sum), at a median of ${d.median_reported_at} exchanges` : ''} (${d.exchanges} harmed exchanges in all), ${o.reported} of ${o.judges} with the slow CUSUM off`;
      }).join('; ')}`),
      (() => {
        const others = results.pooled.filter((p) => p.spread_history === DEFAULT_PROBE.spreadHistory && p.slow_limit !== null && !p.default);
        return `the other settings replayed beside it (${others.map((p) => `slack ${p.slow_slack}, cap ${p.slow_cap}, limit ${p.slow_limit}`).join('; ')}) made ${others.reduce((a, p) => a + p.probe_harm_slow, 0)} honest slow reports`;
      })(),
    ];
    for (const claim of claims) expect(DESIGN, 'docs/design.md section 6.1').toContain(claim);
  });
});
