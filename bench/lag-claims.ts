// Rounds-behind claims of honest partners (docs/design.md section 6, "Rounds behind"): what a
// judge's partners say their round is, exchange after exchange, in honest simulated swarms on the
// micro GPT (bench:probe-calibration's setups). Counted per (judge, partner): claims that went
// down from an earlier claim to the same judge (what src/round/probe.ts takes as a lie), claims
// that did not go up, and gross harms from a partner behindRounds or more behind (the excused ones).
// Usage: npx tsx bench/lag-claims.ts [--steps N] [--seeds 1,2] [--only 1,2] (setups by index)
import { DEFAULT_PROBE } from '../src/round/probe.ts';
import { prepare } from '../src/sim/setup.ts';
import type { ProbeEvent } from '../src/sim/simulator.ts';
import { claimOptions, claimSpec } from './claim-setups.ts';

const { steps: STEPS, seeds: SEEDS, setups: SETUPS } = claimOptions(3000);

for (const [i, setup] of SETUPS) {
  const { n, speeds, H } = setup;
  for (const seed of SEEDS) {
    const sim = await prepare(claimSpec(setup, seed, STEPS));
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
    console.log(JSON.stringify({ setup: i, n, speeds, H, startSpread: 1, seed, steps: STEPS, judged, claimsDown: down, claimsNotUp: flat, behind2plus: behindN, maxBehind, gross, grossBehind, mostExcusedPerPair: most }));
  }
}
