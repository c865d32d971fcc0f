// Issue 15's bounds, checked on the results its benchmarks wrote (bench/results/probe.json from
// `npm run bench:probe`, bench/results/swarm.json from `npm run bench:swarm`). A single run's
// final loss scatters too widely for a test to bound it (tests/volunteer.attacks.test.ts, its
// header), so the loss bound is stated and checked here, over the seeds the benchmark ran; a
// rerun whose numbers break a bound fails this test until the defence is fixed.
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './support/browser.ts';

interface ProbeRow {
  scenario: string; seed: number; rounds: number; H: number; honest_final_val_loss: number;
  honest_judged: number; honest_rejected: number; reported_at: (number | null)[]; reported_at_harmful?: (number | null)[];
}
interface SwarmRow { n: number; speeds: string; probe_judged: number; probe_rejected: number }
const read = (file: string) => JSON.parse(readFileSync(join(ROOT, 'bench', 'results', file), 'utf8')) as { rows: unknown[] };
const probe = read('probe.json').rows as ProbeRow[];
const swarm = read('swarm.json').rows as SwarmRow[];

/** The control every attack is read against (bench/probe.ts CONTROL), and the honest-only rows. */
const CONTROL = 'honest-on';
const HONEST = new Set(['honest-on', 'honest-off', 'duo-on']);
/** The bound: within 0.05 of the control, or the control's own seed spread if larger. */
const LOSS_BOUND = 0.05;
/** A direction attack is reported within this many of its exchanges. */
const REPORT_WITHIN = 3;
/** Honest-only runs: at most this share of exchanges rejected. */
const MAX_HONEST_REJECTED = 0.02;

/** The setting: 60 rounds of H = 20. */
const rows = probe.filter((r) => r.rounds === 60 && r.H === 20);
const control = new Map(rows.filter((r) => r.scenario === CONTROL).map((r) => [r.seed, r.honest_final_val_loss]));
const attacks = [...new Set(rows.map((r) => r.scenario))].filter((s) => !HONEST.has(s) && s.endsWith('-on'));

describe('bench:probe results (issue 15, the probe on)', () => {
  it('has a control over several seeds and every attack the issue lists', () => {
    expect(control.size).toBeGreaterThanOrEqual(5);
    expect(attacks.sort()).toEqual(['attack-on', 'combined-on', 'mirror-on', 'nan-on', 'phibias-on', 'rejoin-on', 'scale-on', 'scale100-on']);
  });

  it(`every attack leaves the honest volunteers' mean final loss within max(${LOSS_BOUND}, the control's seed spread) of the control, over the same seeds`, () => {
    const losses = [...control.values()];
    const spread = Math.max(...losses) - Math.min(...losses);
    const bound = Math.max(LOSS_BOUND, spread);
    for (const a of attacks) {
      const diffs = rows.filter((r) => r.scenario === a && control.has(r.seed)).map((r) => r.honest_final_val_loss - control.get(r.seed)!);
      expect(diffs.length, a).toBeGreaterThanOrEqual(5);
      const mean = diffs.reduce((x, y) => x + y, 0) / diffs.length;
      console.log(`${a}: ${mean >= 0 ? '+' : ''}${mean.toFixed(3)} against the control over ${diffs.length} seeds (bound ${bound.toFixed(3)}: the control's spread ${spread.toFixed(3)})`);
      expect(mean, `${a}: mean of ${diffs.map((d) => d.toFixed(3)).join(', ')}`).toBeLessThanOrEqual(bound);
    }
  });

  it(`every honest volunteer that met an attacker reported it within ${REPORT_WITHIN} of its exchanges with it that did harm or could have`, () => {
    // reported_at_harmful: as tests/volunteer.attacks.test.ts counts (harmfulExchanges). A row
    // from before that field has only reported_at, which counts every exchange: never less.
    for (const r of rows.filter((x) => attacks.includes(x.scenario))) {
      const at = r.reported_at_harmful ?? r.reported_at;
      expect(at!.length, `${r.scenario} seed ${r.seed}`).toBeGreaterThan(0);
      for (const k of at!) expect(k, `${r.scenario} seed ${r.seed}: ${JSON.stringify(at)}`).not.toBeNull();
      expect(Math.max(...at!.map(Number)), `${r.scenario} seed ${r.seed}: ${JSON.stringify(at)}`).toBeLessThanOrEqual(REPORT_WITHIN);
    }
  });

  it(`honest-only rows reject at most ${MAX_HONEST_REJECTED * 100}% of honest exchanges, and so does every row's honest pair`, () => {
    const share = (rs: ProbeRow[]) => rs.reduce((a, r) => a + r.honest_rejected, 0) / rs.reduce((a, r) => a + r.honest_judged, 0);
    for (const s of [...HONEST].filter((x) => x.endsWith('-on'))) {
      const rs = rows.filter((r) => r.scenario === s && r.honest_judged > 0);
      expect(rs.length, s).toBeGreaterThan(0);
      expect(share(rs), s).toBeLessThanOrEqual(MAX_HONEST_REJECTED);
    }
    expect(share(rows.filter((r) => r.honest_judged > 0))).toBeLessThanOrEqual(MAX_HONEST_REJECTED);
  });
});

describe('bench:swarm results (honest volunteers only, the probe on)', () => {
  it(`every swarm rejects at most ${MAX_HONEST_REJECTED * 100}% of the updates its probe judged`, () => {
    expect(swarm.length).toBeGreaterThanOrEqual(3);
    for (const r of swarm) {
      expect(r.probe_judged, `n = ${r.n}`).toBeGreaterThan(0);
      expect(r.probe_rejected / r.probe_judged, `n = ${r.n}: ${r.probe_rejected} of ${r.probe_judged}`).toBeLessThanOrEqual(MAX_HONEST_REJECTED);
    }
  });
});
