// The honest simulated swarms the trust checks are calibrated on (docs/design.md section 6:
// "Rounds behind", "Rounds ahead", "Replayed updates"): bench:probe-calibration's n = 2 and n = 8,
// and the browser test's run (H = 4, batch 2, rate 6e-4, a warm-up of 100 steps) with n = 2 and 8
// at speeds from U[1,4], where the fast ones run many more rounds than the slow ones. One place
// for bench/lag-claims.ts, bench/lead-claims.ts and bench/replay.ts, and their shared options.
import { RUN_VAL_BATCHES } from '../src/data/sampler.ts';
import { SPEC_DEFAULTS, type SimSpec } from '../src/sim/setup.ts';
import { flagValue } from './args.ts';

/** Seconds a simulated inner step takes at the fastest speed. */
export const STEP_S = 0.0155;

export const CLAIM_SETUPS = [
  { n: 2, speeds: 'equal', H: 20, batch: 4, lr: 3e-3, warmup: 10 },
  { n: 2, speeds: 'uniform:1:4', H: 4, batch: 2, lr: 6e-4, warmup: 100 },
  { n: 8, speeds: 'uniform:1:4', H: 4, batch: 2, lr: 6e-4, warmup: 100 },
  { n: 8, speeds: 'uniform:1:4', H: 20, batch: 4, lr: 3e-3, warmup: 10 },
] as const;
export type ClaimSetup = (typeof CLAIM_SETUPS)[number];

/** --steps N (default `steps`), --seeds 1,2 and --only 0,2 (setups by index): the setups to run. */
export function claimOptions(steps: number): { steps: number; seeds: number[]; setups: [number, ClaimSetup][] } {
  const only = flagValue('--only')?.split(',').map(Number);
  return {
    steps: Number(flagValue('--steps') ?? steps),
    seeds: (flagValue('--seeds') ?? '1,2').split(',').map(Number),
    setups: [...CLAIM_SETUPS.entries()].filter(([i]) => !only || only.includes(i)),
  };
}

/** The simulator's spec for one setup and seed, `steps` inner steps of the fastest replica long. */
export function claimSpec(s: ClaimSetup, seed: number, steps: number): SimSpec {
  const fastest = s.speeds === 'equal' ? 1 : 4;
  return {
    ...SPEC_DEFAULTS, method: 'noloco-async', seed, replicas: s.n, H: s.H, speeds: s.speeds, stepTime: STEP_S * fastest,
    jitter: 0.5, wait: 0.5, startSpread: 1, time: steps * STEP_S, evals: 2,
    learner: 'gpt', preset: 'micro', batch: s.batch, seqLen: 32, lr: s.lr, schedule: { warmupSteps: s.warmup, totalSteps: 100_000 },
    valBatches: RUN_VAL_BATCHES, valBatch: 4,
  };
}
