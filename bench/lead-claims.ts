// Rounds-ahead claims of honest partners (docs/design.md section 6, "Rounds ahead"): how far ahead
// of the judge a partner says it is, and how large its Δ is against the judge's Δ scale then, in
// honest simulated swarms on the micro GPT (bench/lag-claims.ts's setups). A lead matters to the
// checks only where ||Δ_j|| is past normReportFactor × the scale (src/sync/validate.ts), so those
// leads are counted apart.
// Each judge bounds a lead by the swarm's pace as a volunteer's mesh does by the run's (roundsPerS):
// here the fastest speed's nominal pace, one round of H steps of STEP_S seconds, on the simulated
// clock. `impossible` counts honest claims that bound refused a lead; `maxPace`, the most rounds a
// second any honest claim rose by past the one accepted before it (the + 1 of the bound left out),
// as a fraction of that pace. A run's own pace (stepRate over H) sits far above its peers' real one.
// Each judge bounds every claim by the swarm's reach too (runRound, welcomeRunRound): a welcome at
// time 0 with stepBase 0 and the fastest speed's step rate. `byRun`, `byPace` and `byLeadRounds`
// count honest claims each bound refused a lead; `runMargin`, the least rounds any honest lead
// sat under the run's reach (with that lead, `runMarginLead`). `offences` counts the payloads the
// validator refused as an offence (each a false report: every partner is honest), by reason in
// `offenceReasons`, each named on stderr. Writes bench/results/lead-claims.json.
// Usage: npx tsx bench/lead-claims.ts [--steps N] [--seeds 1,2] [--only 1,2] (setups by index)
import { prepare } from '../src/sim/setup.ts';
import { writeFileSync } from 'node:fs';
import { welcomeRunRound } from '../src/sync/join.ts';
import { DEFAULT_VALIDATION, norm2, PartnerValidator } from '../src/sync/validate.ts';
import { claimOptions, claimSpec, STEP_S } from './claim-setups.ts';

const { steps: STEPS, seeds: SEEDS, setups: SETUPS } = claimOptions(3000);

interface Tally {
  checked: number; ahead: number; maxLead: number; big: number; maxBigLead: number; maxRatio: number; impossible: number; maxPace: number;
  byRun: number; byPace: number; byLeadRounds: number; runMargin: number; runMarginLead: number;
  offences: number; offenceReasons: Record<string, number>;
}
let current: Tally | null = null;
/** The simulated clock (s) and pace (rounds/s) of the swarm running now. */
let clock = { now: () => 0, pace: 0, H: 1 };
/** Per judge and partner: the claim and time of the last exchange the judge accepted. */
const accepted = new WeakMap<PartnerValidator, Map<string, { claim: number; t: number }>>();
const check = PartnerValidator.prototype.check;
PartnerValidator.prototype.check = function (this: PartnerValidator, own, partner, at, ownDelta) {
  let mine = accepted.get(this);
  if (!mine) {
    // The simulator's judge, timed as the mesh's is: on the swarm's clock at the swarm's pace.
    const { now, pace, H } = clock;
    const runRound = welcomeRunRound({ stepBase: 0, stepRate: 1 / STEP_S, run: { train: { H } } }, 0, () => now() * 1000);
    Object.assign(this, { settings: { ...this.settings, roundsPerS: pace, runRound }, now: () => now() * 1000 });
    accepted.set(this, mine = new Map());
  }
  const lead = (at.peerRound ?? at.round) - at.round;
  const ratio = norm2(partner.delta) / this.deltaScale;
  const t = clock.now();
  const before = mine.get(at.peer);
  const v = check.call(this, own, partner, at, ownDelta);
  if (current) {
    current.checked++;
    if (lead > 0) current.ahead++;
    current.maxLead = Math.max(current.maxLead, lead);
    current.maxRatio = Math.max(current.maxRatio, ratio);
    if (ratio > DEFAULT_VALIDATION.normReportFactor) { current.big++; current.maxBigLead = Math.max(current.maxBigLead, lead); }
    if (!v.ok && v.detail.includes('impossible')) current.impossible++;
    if (!v.ok && v.offence) {
      // Every partner here is honest: an offence is a false report, named on stderr with the case.
      current.offences++;
      current.offenceReasons[v.reason] = (current.offenceReasons[v.reason] ?? 0) + 1;
      console.error(`honest offence at ${t.toFixed(3)} s: ${at.peer} judged at our round ${at.round}: ${v.reason}: ${v.detail}`);
    }
    if (!v.ok && v.detail.includes('the furthest any peer of the run')) current.byRun++;
    if (!v.ok && v.detail.includes('at an exchange we accepted')) current.byPace++;
    if (!v.ok && v.detail.includes('an honest partner could be, so no lead')) current.byLeadRounds++;
    const runRound = this.settings.runRound?.();
    if (lead > 0 && runRound != null && runRound - at.peerRound! < current.runMargin) {
      current.runMargin = runRound - at.peerRound!;
      current.runMarginLead = lead;
    }
    if (lead > 0 && before && at.peerRound !== undefined && t > before.t) {
      current.maxPace = Math.max(current.maxPace, (at.peerRound - before.claim - 1) / (t - before.t) / clock.pace);
    }
  }
  if (v.ok && at.peerRound !== undefined) mine.set(at.peer, { claim: Math.max(at.peerRound, before?.claim ?? 0), t });
  return v;
};

const rows: object[] = [];
for (const [i, setup] of SETUPS) {
  const { n, speeds, H } = setup;
  for (const seed of SEEDS) {
    const sim = await prepare(claimSpec(setup, seed, STEPS));
    clock = { now: () => sim.now, pace: 1 / (STEP_S * H), H };
    current = { checked: 0, ahead: 0, maxLead: 0, big: 0, maxBigLead: 0, maxRatio: 0, impossible: 0, maxPace: 0, byRun: 0, byPace: 0, byLeadRounds: 0, runMargin: Infinity, runMarginLead: 0, offences: 0, offenceReasons: {} };
    try { await sim.run(); } finally { sim.dispose(); }
    const row = { setup: i, n, speeds, H, seed, steps: STEPS, ...current, maxRatio: +current.maxRatio.toFixed(2), maxPace: +current.maxPace.toFixed(3) };
    rows.push(row);
    console.log(JSON.stringify(row));
  }
}
writeFileSync(new URL('./results/lead-claims.json', import.meta.url), JSON.stringify({ steps: STEPS, seeds: SEEDS, setups: SETUPS.map(([i]) => i), rows }, null, 2) + '\n');
