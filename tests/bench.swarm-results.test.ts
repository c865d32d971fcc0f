// What the simulator predicts, the live swarm must show: bounds on bench/results/swarm.json, the
// `npm run bench:swarm` run recorded there (real `murmur volunteer` processes on one micro run over WebRTC,
// and beside each row the simulator on the same setup). One run's figures scatter (several
// hours' runs in docs/pairing.md), so these bounds are checked on the recorded results, as
// tests/bench.defence-results.test.ts checks the probe's: a rerun that breaks one fails here
// until the pool, the mesh or the simulator's model is fixed.
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './support/browser.ts';
import { measuredVal, type RoundLine } from '../bench/swarm-rounds.ts';

interface SwarmRow {
  n: number; speeds: string; rounds: number; mean_steps: number; val_step?: number | null;
  pair_fraction: number; sim_pair_fraction: number;
  final_val_loss: number | null; sim_val_loss?: number | null; local_val_loss: number | null;
  sim_val_loss_seeds?: number[]; sim_val_loss_sd?: number | null; sim_reached_step?: number | null;
  probe_judged: number; probe_rejected: number; sim_probe?: { judged: number; rejected: number } | null;
}
const results = (file: string) => (JSON.parse(readFileSync(join(ROOT, 'bench', 'results', file), 'utf8')) as { rows: SwarmRow[] }).rows;
const rows = results('swarm.json');
const pairingDoc = () => readFileSync(join(ROOT, 'docs', 'pairing.md'), 'utf8');

/** docs/pairing.md's targets: swarms of 2 and 4 pair at least 0.90 of their rounds, 8 at mixed speeds 0.80. */
const minPaired = (n: number) => (n <= 4 ? 0.9 : 0.8);
/** How far the simulator's paired fraction may sit from the volunteers'. */
const PAIRED_GAP = 0.1;
/**
 * How far its validation loss (nats a token) may sit from theirs at the same mean step. The runs of
 * 2026-12-06 had the simulator 0.03 to 0.09 above the volunteers at n = 4 and 8: the benchmark
 * ended its simulations short of the volunteers' step and read the last evaluation. Read at the
 * step, as the mean of two seeds, two runs (15:03, recorded here, and 17:55 in
 * swarm-1755.json) were within 0.039: −0.039, +0.020, +0.028 and −0.021, +0.004, +0.017.
 */
const LOSS_GAP = 0.05;
/** How far the simulator's share of pair steps the probe refused may sit from the volunteers'. */
const REFUSED_GAP = 0.01;

describe('bench:swarm results: the live swarm beside the simulator', () => {
  it('holds the three setups, each measured over real rounds', () => {
    expect(rows.map((r) => `${r.n} ${r.speeds}`)).toEqual(['2 equal', '4 equal', '8 uniform:1:4']);
    for (const r of rows) expect(r.rounds, `n = ${r.n}`).toBeGreaterThan(100 * r.n);
  });

  it('pairs as often as the targets ask, and as the simulator predicts', () => {
    for (const r of rows) {
      expect(r.pair_fraction, `n = ${r.n}`).toBeGreaterThanOrEqual(minPaired(r.n));
      expect(Math.abs(r.pair_fraction - r.sim_pair_fraction), `n = ${r.n}: ${r.pair_fraction} live, ${r.sim_pair_fraction} simulated`).toBeLessThanOrEqual(PAIRED_GAP);
    }
  });

  it('refuses as many honest updates as the simulator\'s probe does, within a percentage point', () => {
    for (const r of rows) {
      const sim = r.sim_probe;
      expect(sim, `n = ${r.n}: the simulator's probe recorded`).toBeTruthy();
      expect(sim!.judged, `n = ${r.n}`).toBeGreaterThan(100);
      const live = r.probe_rejected / r.probe_judged, simulated = sim!.rejected / sim!.judged;
      expect(Math.abs(live - simulated), `n = ${r.n}: ${r.probe_rejected}/${r.probe_judged} live, ${sim!.rejected}/${sim!.judged} simulated`).toBeLessThanOrEqual(REFUSED_GAP);
    }
  });

  it('reads the simulator\'s loss at the volunteers\' mean step, as the mean of its seeds', () => {
    // Before 2026-12-06 evening the simulated time ignored the jitter's mean factor and the probe,
    // and a run that ended short read its last evaluation: n = 8's loss at step 1,997 where the
    // volunteers stood at 2,450, which made the simulator look 0.05 too pessimistic.
    for (const r of rows) {
      const seeds = r.sim_val_loss_seeds;
      expect(seeds?.length, `n = ${r.n}: the simulator's seeds recorded`).toBeGreaterThanOrEqual(2);
      const mean = seeds!.reduce((a, b) => a + b, 0) / seeds!.length;
      expect(Math.abs(mean - r.sim_val_loss!), `n = ${r.n}: sim_val_loss ${r.sim_val_loss} is the seeds' mean ${mean}`).toBeLessThanOrEqual(1e-3);
      expect(r.sim_val_loss_sd, `n = ${r.n}: the seeds' spread`).toBeGreaterThanOrEqual(0);
      // Rows since 2026-12-07 read it at val_step, where the volunteers' losses were measured (at or before their last steps).
      const at = r.val_step ?? r.mean_steps;
      expect(at, `n = ${r.n}: val_step ${at} within the volunteers' mean step ${r.mean_steps}`).toBeLessThanOrEqual(r.mean_steps);
      expect(r.sim_reached_step, `n = ${r.n}: every seed's simulation got to the volunteers' mean step ${at}`).toBeGreaterThanOrEqual(at);
    }
  });

  it('learns what the simulator predicts, and more than one replica alone for the same steps', () => {
    for (const r of rows) {
      const live = r.final_val_loss!, sim = r.sim_val_loss!, alone = r.local_val_loss!;
      expect([live, sim, alone].every(Number.isFinite), `n = ${r.n}: every loss recorded`).toBe(true);
      expect(Math.abs(live - sim), `n = ${r.n}: ${live} live, ${sim} simulated`).toBeLessThanOrEqual(LOSS_GAP);
      expect(live, `n = ${r.n}: ${live} live, ${alone} alone`).toBeLessThan(alone);
    }
  });
});

describe('bench:swarm reads the volunteers\' loss at the step it was measured', () => {
  const line = (step: number, valLoss: number | null): RoundLine => ({
    report: { step, valLoss } as RoundLine['report'],
    exchange: { outcome: 'paired', reason: null, pairMs: 0, elapsedMs: 0 },
  });
  it('gives the mean of each volunteer\'s last measured loss and the mean step of the rounds that measured them', () => {
    // Volunteers measure every few rounds: their last rounds are past their last measurement.
    const rounds = [
      [line(20, 3.0), line(40, null), line(60, 2.5), line(80, null), line(100, null)],
      [line(20, null), line(40, 2.9), line(60, null), line(80, 2.3)],
      [line(20, null)], // none measured: left out of both
    ];
    expect(measuredVal(rounds)).toEqual({ loss: 2.4, step: 70 });
    expect(measuredVal([[line(20, null)]])).toBeNull();
  });
});

describe('what the docs say of these results is what they hold', () => {
  it('docs/design.md section 1.2\'s gap between the simulator\'s loss and the volunteers\' holds in every row', () => {
    const design = readFileSync(join(ROOT, 'docs/design.md'), 'utf8');
    const m = /Read at the step, it is within (\d\.\d+) nats a token of the volunteers/.exec(design.replace(/\s+/g, ' '));
    expect(m, 'docs/design.md section 1.2 states the gap').not.toBeNull();
    const gaps = rows.map((r) => Math.abs(r.final_val_loss! - r.sim_val_loss!));
    expect(Math.max(...gaps), `gaps ${gaps.map((g) => g.toFixed(4)).join(', ')}`).toBeLessThanOrEqual(Number(m![1]));
  });

  it('pairing.md\'s tables of the recorded runs print what swarm.json (12-07 08:15), swarm-1503.json (15:03) and swarm-1755.json (17:55) hold', () => {
    const files: Record<string, string> = { '12-07 08:15': 'swarm.json', '15:03': 'swarm-1503.json', '17:55': 'swarm-1755.json' };
    const lines = pairingDoc().split('\n').filter((l) => /^\| (12-07 08:15|15:03|17:55) \|/.test(l));
    expect(lines.length).toBe(9);
    const fixed = (x: number, cell: string) => x.toFixed((cell.split('.')[1] ?? '').length);
    for (const line of lines) {
      const [run, n, , steps, paired, simPaired, val, , simVal, local, refused, simRefused] = line.split('|').slice(1, -1).map((c) => c.trim());
      const r = results(files[run!]!).find((x) => String(x.n) === n)!;
      const what = `${run} n = ${n}`;
      expect(r, what).toBeTruthy();
      const [simMean, simSd] = simVal!.split(' ± ');
      const count = (c: string) => c.split(' ')[0]!.replace(/,/g, '');
      expect([steps!.replace(/,/g, ''), paired, simPaired, val, simMean, simSd, local, count(refused!), count(simRefused!)], what).toEqual([
        String(r.mean_steps), fixed(r.pair_fraction, paired!), fixed(r.sim_pair_fraction, simPaired!), fixed(r.final_val_loss!, val!),
        fixed(r.sim_val_loss!, simMean!), fixed(r.sim_val_loss_sd!, simSd!), fixed(r.local_val_loss!, local!),
        `${r.probe_rejected}/${r.probe_judged}`, `${r.sim_probe!.rejected}/${r.sim_probe!.judged}`,
      ]);
    }
  });
});
