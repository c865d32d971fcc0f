// npm run bench:stale [-- --seeds N] [--rules none,weight:1,solo:2] [--setups quad8,quad16] [--gpt]
//                      [--time S] [--tag NAME]
//   bench/results/stale.json (or stale-TAG.json) and a table per setup.
//
// Weighting the consensus by how stale the partner is (docs/design.md section 6, "Rounds
// behind"): NoLoCo with the ready pool on replicas of unequal speeds, whose rounds drift apart
// (a replica of speed 4 takes four rounds to one of speed 1), under each consensus rule for a
// partner k rounds behind (StaleRule in src/train/outer.ts, the one function the simulator's
// pair step calls): none (the live rule), weight:K (γ·K/k beyond K rounds), solo:K (a solo step
// beyond K). Every rule runs on the same seeds (speeds, pairings, data, initial weights), so the
// comparison is per seed: the table gives each rule's final validation loss over the replicas
// (mean, worst replica, max − min), their mean over seeds, and the per-seed difference from
// `none` with its seed-to-seed sd. It reports; it does not assert.
//   quad8:  the quadratic toy (src/sim/quadratic.ts), 8 replicas, speeds U[1,4], 600 simulated s
//   quad16: the same toy, 16 replicas, speeds U[1,8], start phases spread over a loop, jitter 0.3
//   gpt:    (--gpt) the micro GPT on the CPU reference, 8 replicas, speeds U[1,4], 300 simulated s
import { mkdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import { SPEC_DEFAULTS, runSpec, type SimSpec } from '../src/sim/setup.ts';
import { parseStaleRule, staleRuleName } from '../src/train/outer.ts';
import { mean, sd, table } from '../src/sim/report.ts';
import type { SimResult } from '../src/sim/simulator.ts';
import { atomicWrite, gitCommit } from './provenance.ts';
import { flagValue } from './args.ts';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const arg = flagValue;
const NSEEDS = Number(arg('--seeds') ?? 6);
if (!(Number.isInteger(NSEEDS) && NSEEDS >= 1)) throw new Error(`--seeds must be a positive integer, got ${arg('--seeds')}`);
const RULES = (arg('--rules') ?? 'none,weight:1,weight:2,solo:2').split(',').map((s) => staleRuleName(parseStaleRule(s)));
if (RULES[0] !== 'none') throw new Error('--rules must start with none (the live rule every other is compared with)');
const TAG = arg('--tag');
if (TAG !== undefined && !/^[\w.-]+$/.test(TAG)) throw new Error(`--tag "${TAG}": use letters, digits, dot, dash or underscore`);
const TIME = arg('--time') === undefined ? undefined : Number(arg('--time'));
if (TIME !== undefined && !(TIME > 0)) throw new Error(`--time must be a positive number of simulated seconds, got ${arg('--time')}`);

const quad: Omit<SimSpec, 'seed'> = { ...SPEC_DEFAULTS, method: 'noloco-async', learner: 'quadratic', replicas: 8, speeds: 'uniform:1:4', time: 600, evals: 4, lr: 0.05 };
const SETUPS: Record<string, Omit<SimSpec, 'seed'>> = {
  quad8: quad,
  quad16: { ...quad, replicas: 16, speeds: 'uniform:1:8', startSpread: 1, jitter: 0.3 },
  gpt: { ...SPEC_DEFAULTS, method: 'noloco-async', learner: 'gpt', replicas: 8, speeds: 'uniform:1:4', time: 300, evals: 2 },
};
const NAMES = (arg('--setups') ?? (args.includes('--gpt') ? 'quad8,quad16,gpt' : 'quad8,quad16')).split(',');
for (const n of NAMES) if (!SETUPS[n]) throw new Error(`unknown setup "${n}"; choose from ${Object.keys(SETUPS).join(', ')}`);
const SEEDS = Array.from({ length: NSEEDS }, (_, i) => i + 1);

interface Row {
  setup: string; rule: string; seed: number;
  /** Final validation loss of each replica's current weights: mean, worst, max − min. */
  mean: number; worst: number; range: number;
  /** The same of each replica's φ at its last outer step. */
  phi_mean: number; phi_worst: number;
  solo_fraction: number; steps: number; outer_rounds: number[];
  wall_s: number;
}

function row(setup: string, rule: string, seed: number, r: SimResult, wall: number): Row {
  const l = r.final.losses.filter((x): x is number => x !== null);
  const p = (r.final.roundLosses ?? []).filter((x): x is number => x !== null);
  return {
    setup, rule, seed, mean: mean(l), worst: Math.max(...l), range: Math.max(...l) - Math.min(...l),
    phi_mean: mean(p), phi_worst: Math.max(...p), solo_fraction: r.final.soloFraction, steps: r.final.meanStep,
    outer_rounds: r.perReplica.map((x) => x.outerSteps), wall_s: wall,
  };
}

const f4 = (x: number) => x.toFixed(4);
const signed = (x: number) => (x >= 0 ? '+' : '') + x.toFixed(4);

function summary(rows: Row[], setup: string): { text: string; rules: Record<string, unknown> } {
  const base = new Map(rows.filter((r) => r.setup === setup && r.rule === 'none').map((r) => [r.seed, r]));
  const out: Record<string, unknown> = {};
  const lines = RULES.map((rule) => {
    const g = rows.filter((r) => r.setup === setup && r.rule === rule);
    const diff = (k: 'mean' | 'worst' | 'range') => g.map((r) => r[k] - base.get(r.seed)![k]);
    const s = {
      seeds: g.length,
      mean: mean(g.map((r) => r.mean)), mean_sd: sd(g.map((r) => r.mean)),
      worst: mean(g.map((r) => r.worst)), worst_sd: sd(g.map((r) => r.worst)),
      range: mean(g.map((r) => r.range)),
      phi_mean: mean(g.map((r) => r.phi_mean)), phi_worst: mean(g.map((r) => r.phi_worst)),
      solo: mean(g.map((r) => r.solo_fraction)),
      d_mean: mean(diff('mean')), d_mean_sd: sd(diff('mean')),
      d_worst: mean(diff('worst')), d_worst_sd: sd(diff('worst')),
      worst_better_seeds: diff('worst').filter((d) => d < 0).length,
    };
    out[rule] = s;
    return [rule, `${f4(s.mean)} ± ${f4(s.mean_sd)}`, `${f4(s.worst)} ± ${f4(s.worst_sd)}`, f4(s.range), f4(s.phi_worst), `${(100 * s.solo).toFixed(1)}%`,
      rule === 'none' ? '-' : `${signed(s.d_mean)} ± ${f4(s.d_mean_sd)}`, rule === 'none' ? '-' : `${signed(s.d_worst)} ± ${f4(s.d_worst_sd)}`,
      rule === 'none' ? '-' : `${s.worst_better_seeds}/${g.length}`];
  });
  const text = table(['rule', 'mean ± sd', 'worst ± sd', 'max−min', 'worst φ', 'solo', 'Δmean vs none', 'Δworst vs none', 'worst better'], lines);
  return { text, rules: out };
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const commit = gitCommit();
  const rows: Row[] = [];
  const total = NAMES.length * SEEDS.length * RULES.length;
  console.log(`bench:stale: setups ${NAMES.join(', ')}; rules ${RULES.join(', ')}; seeds ${SEEDS.join(',')} (${total} runs, one at a time)`);
  for (const setup of NAMES) {
    for (const seed of SEEDS) {
      for (const rule of RULES) {
        const spec: SimSpec = { ...SETUPS[setup], ...(TIME !== undefined && { time: TIME }), seed, stale: rule, roundLoss: true };
        const w0 = performance.now();
        const r = await runSpec(spec);
        const x = row(setup, rule, seed, r, (performance.now() - w0) / 1000);
        rows.push(x);
        console.log(`  [${rows.length}/${total}] ${setup} seed ${seed} ${rule.padEnd(9)} mean ${f4(x.mean)} worst ${f4(x.worst)} range ${f4(x.range)} solo ${(100 * x.solo_fraction).toFixed(1)}% rounds ${Math.min(...x.outer_rounds)}..${Math.max(...x.outer_rounds)} (${x.wall_s.toFixed(1)} s)`);
      }
    }
  }
  const summaries: Record<string, unknown> = {};
  for (const setup of NAMES) {
    const s = summary(rows, setup);
    summaries[setup] = s.rules;
    const sp = SETUPS[setup];
    console.log(`\n${setup}: ${sp.learner}, ${sp.replicas} replicas, speeds ${sp.speeds}, ${TIME ?? sp.time} simulated s, ${SEEDS.length} seeds; final validation loss over replicas (Δ: per-seed difference from none, mean ± sd)\n${s.text}`);
  }
  const outDir = join(here, 'results');
  mkdirSync(outDir, { recursive: true });
  const file = join(outDir, TAG ? `stale-${TAG}.json` : 'stale.json');
  const result = {
    generated: new Date().toISOString(), commit, wall_s: Math.round((performance.now() - t0) / 1000),
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version },
    seeds: SEEDS, rules: RULES,
    setups: Object.fromEntries(NAMES.map((n) => [n, { ...SETUPS[n], ...(TIME !== undefined && { time: TIME }) }])),
    summary: summaries, runs: rows,
  };
  atomicWrite(file, JSON.stringify(result, null, 1) + '\n');
  console.log(`\nwrote ${relative(process.cwd(), file)} in ${result.wall_s} s`);
}

main().catch((e) => { console.error(`bench:stale failed: ${(e as Error).message}`); process.exit(1); });
