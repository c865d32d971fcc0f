// Rounds-behind claims of honest partners (docs/design.md section 6, "Rounds behind"): what a
// judge's partners say their round is, exchange after exchange, in honest simulated swarms on the
// micro GPT (bench:probe-calibration's setups). Counted per (judge, partner): claims that went
// down from an earlier claim to the same judge (what src/round/probe.ts takes as a lie), claims
// that did not go up, and gross harms from a partner behindRounds or more behind (the excused ones).
// Usage: npx tsx bench/lag-claims.ts [--steps N] [--seeds 1,2] [--only 1,2] (setups by index)
import { RUN_VAL_BATCHES } from '../src/data/sampler.ts';
import { DEFAULT_PROBE } from '../src/round/probe.ts';
import { SPEC_DEFAULTS, prepare, type SimSpec } from '../src/sim/setup.ts';
import type { ProbeEvent } from '../src/sim/simulator.ts';

const arg = (name: string) => { const i = process.argv.indexOf(name); return i >= 0 ? process.argv[i + 1] : undefined; };
const STEPS = Number(arg('--steps') ?? 3000);
const SEEDS = (arg('--seeds') ?? '1,2').split(',').map(Number);
const STEP_S = 0.0155;
/**
 * bench:probe-calibration's n = 2 and n = 8; the browser test's run (H = 4, batch 2, rate 6e-4,
 * a warm-up of 100 steps) with n = 2 and 8 at speeds from U[1,4], where the fast ones run many
 * more rounds than the slow ones and their partners sit rounds behind them.
 */
const SETUPS = [
  { n: 2, speeds: 'equal', H: 20, batch: 4, lr: 3e-3, warmup: 10, startSpread: 1 },
  { n: 2, speeds: 'uniform:1:4', H: 4, batch: 2, lr: 6e-4, warmup: 100, startSpread: 1 },
  { n: 8, speeds: 'uniform:1:4', H: 4, batch: 2, lr: 6e-4, warmup: 100, startSpread: 1 },
  { n: 8, speeds: 'uniform:1:4', H: 20, batch: 4, lr: 3e-3, warmup: 10, startSpread: 1 },
] as const;
const ONLY = arg('--only')?.split(',').map(Number);

for (const [i, { n, speeds, H, batch, lr, warmup, startSpread }] of SETUPS.entries()) {
  if (ONLY && !ONLY.includes(i)) continue;
  for (const seed of SEEDS) {
    const fastest = speeds === 'equal' ? 1 : 4;
    const spec: SimSpec = {
      ...SPEC_DEFAULTS, method: 'noloco-async', seed, replicas: n, H, speeds, stepTime: STEP_S * fastest,
      jitter: 0.5, wait: 0.5, startSpread, time: STEPS * STEP_S, evals: 2,
      learner: 'gpt', preset: 'micro', batch, seqLen: 32, lr, schedule: { warmupSteps: warmup, totalSteps: 100_000 },
      valBatches: RUN_VAL_BATCHES, valBatch: 4,
    };
    const sim = await prepare(spec);
    const last = new Map<string, number>();
    const excused = new Map<string, number>();
    let judged = 0, down = 0, flat = 0, behindN = 0, maxBehind = 0, gross = 0, grossBehind = 0;
    sim.onProbe = (e: ProbeEvent) => {
      judged++;
      const r = sim.replicas.find((x) => x.slot === e.slot)!;
      const behind = e.behind ?? 0;
      const claim = r.outerSteps - behind;
      const key = `${e.slot}:${e.partner}`;
      const before = last.get(key);
      if (before !== undefined && claim < before) down++;
      if (before !== undefined && claim <= before) flat++;
      last.set(key, Math.max(claim, before ?? claim));
      if (behind >= DEFAULT_PROBE.behindRounds) behindN++;
      maxBehind = Math.max(maxBehind, behind);
      const grossNow = e.verdict.offence !== null && /gross harm|^paired/.test(e.verdict.offence.detail) && !/cusum/.test(e.verdict.offence.detail);
      if (grossNow) gross++;
      if (grossNow && behind >= DEFAULT_PROBE.behindRounds) {
        grossBehind++;
        excused.set(key, (excused.get(key) ?? 0) + 1);
      }
    };
    try { await sim.run(); } finally { sim.dispose(); }
    const most = Math.max(0, ...excused.values());
    console.log(JSON.stringify({ setup: i, n, speeds, H, startSpread, seed, steps: STEPS, judged, claimsDown: down, claimsNotUp: flat, behind2plus: behindN, maxBehind, gross, grossBehind, mostExcusedPerPair: most }));
  }
}
