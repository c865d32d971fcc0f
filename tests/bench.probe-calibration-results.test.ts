// The recorded probe calibration (bench/results/probe-calibration.json, `npm run
// bench:probe-calibration`) holds what docs/design.md section 6.1 says of the judge's noise unit:
// replayed over the same honest exchanges, the default judge refuses fewer honest updates than the
// judge before it (spreadHistory 0) and at most 1% of them, still refuses nearly every update that
// costs 5 times the honest scatter and reports its sender, and gives up little of what it refused at
// 3 times. A change of the default without a rerun fails here too.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DEFAULT_PROBE } from '../src/round/probe.ts';

interface Detection { harm_units: number; harm: number; exchanges: number; refused_share: number; reported_at: (number | null)[] }
interface Variant { spread_history: number; default: boolean; judged: number; refused: number; refused_rate: number; probe_harm: number; probe_gross: number; detection: Detection[] }
interface Row { n: number; seed: number; judged: number; honest_scatter: number; run_refused: number; run_offences: Record<string, number>; variants: Variant[] }
interface Results { default_spread_history: number; pooled: { spread_history: number; judged: number; refused: number; refused_rate: number }[]; rows: Row[] }

const results = JSON.parse(readFileSync(new URL('../bench/results/probe-calibration.json', import.meta.url), 'utf8')) as Results;
const variant = (r: Row, spread: number) => {
  const v = r.variants.find((x) => x.spread_history === spread);
  if (!v) throw new Error(`row n = ${r.n} seed ${r.seed} has no replay with spreadHistory ${spread}`);
  return v;
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
    const now = results.pooled.find((p) => p.spread_history === DEFAULT_PROBE.spreadHistory)!;
    const before = results.pooled.find((p) => p.spread_history === 0)!;
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
});
