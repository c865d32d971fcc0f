// Rounds-ahead claims of honest partners (docs/design.md section 6, "Rounds ahead"): how far ahead
// of the judge a partner says it is, and how large its Δ is against the judge's Δ scale then, in
// honest simulated swarms on the micro GPT (bench/lag-claims.ts's setups). A lead matters to the
// checks only where ||Δ_j|| is past normReportFactor × the scale (src/sync/validate.ts), so those
// leads are counted apart.
// Usage: npx tsx bench/lead-claims.ts [--steps N] [--seeds 1,2] [--only 1,2] (setups by index)
import { RUN_VAL_BATCHES } from '../src/data/sampler.ts';
import { SPEC_DEFAULTS, prepare, type SimSpec } from '../src/sim/setup.ts';
import { DEFAULT_VALIDATION, norm2, PartnerValidator } from '../src/sync/validate.ts';

const arg = (name: string) => { const i = process.argv.indexOf(name); return i >= 0 ? process.argv[i + 1] : undefined; };
const STEPS = Number(arg('--steps') ?? 3000);
const SEEDS = (arg('--seeds') ?? '1,2').split(',').map(Number);
const STEP_S = 0.0155;
const SETUPS = [
  { n: 2, speeds: 'equal', H: 20, batch: 4, lr: 3e-3, warmup: 10, startSpread: 1 },
  { n: 2, speeds: 'uniform:1:4', H: 4, batch: 2, lr: 6e-4, warmup: 100, startSpread: 1 },
  { n: 8, speeds: 'uniform:1:4', H: 4, batch: 2, lr: 6e-4, warmup: 100, startSpread: 1 },
  { n: 8, speeds: 'uniform:1:4', H: 20, batch: 4, lr: 3e-3, warmup: 10, startSpread: 1 },
] as const;
const ONLY = arg('--only')?.split(',').map(Number);

let current: { checked: number; ahead: number; maxLead: number; big: number; maxBigLead: number; maxRatio: number } | null = null;
const check = PartnerValidator.prototype.check;
PartnerValidator.prototype.check = function (this: PartnerValidator, own, partner, at, ownDelta) {
  const lead = (at.peerRound ?? at.round) - at.round;
  const ratio = norm2(partner.delta) / this.deltaScale;
  if (current) {
    current.checked++;
    if (lead > 0) current.ahead++;
    current.maxLead = Math.max(current.maxLead, lead);
    current.maxRatio = Math.max(current.maxRatio, ratio);
    if (ratio > DEFAULT_VALIDATION.normReportFactor) { current.big++; current.maxBigLead = Math.max(current.maxBigLead, lead); }
  }
  return check.call(this, own, partner, at, ownDelta);
};

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
    current = { checked: 0, ahead: 0, maxLead: 0, big: 0, maxBigLead: 0, maxRatio: 0 };
    try { await sim.run(); } finally { sim.dispose(); }
    console.log(JSON.stringify({ setup: i, n, speeds, H, seed, steps: STEPS, ...current, maxRatio: +current.maxRatio.toFixed(2) }));
  }
}
