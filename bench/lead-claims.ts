// Rounds-ahead claims of honest partners (docs/design.md section 6, "Rounds ahead"): how far ahead
// of the judge a partner says it is, and how large its Δ is against the judge's Δ scale then, in
// honest simulated swarms on the micro GPT (bench/lag-claims.ts's setups). A lead matters to the
// checks only where ||Δ_j|| is past normReportFactor × the scale (src/sync/validate.ts), so those
// leads are counted apart.
// Usage: npx tsx bench/lead-claims.ts [--steps N] [--seeds 1,2] [--only 1,2] (setups by index)
import { prepare } from '../src/sim/setup.ts';
import { DEFAULT_VALIDATION, norm2, PartnerValidator } from '../src/sync/validate.ts';
import { claimOptions, claimSpec } from './claim-setups.ts';

const { steps: STEPS, seeds: SEEDS, setups: SETUPS } = claimOptions(3000);

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

for (const [i, setup] of SETUPS) {
  const { n, speeds, H } = setup;
  for (const seed of SEEDS) {
    const sim = await prepare(claimSpec(setup, seed, STEPS));
    current = { checked: 0, ahead: 0, maxLead: 0, big: 0, maxBigLead: 0, maxRatio: 0 };
    try { await sim.run(); } finally { sim.dispose(); }
    console.log(JSON.stringify({ setup: i, n, speeds, H, seed, steps: STEPS, ...current, maxRatio: +current.maxRatio.toFixed(2) }));
  }
}
