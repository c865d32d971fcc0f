// Start phases in the simulator (SimConfig.startSpread): a replica that starts later still runs a
// whole first round of H inner steps, as a volunteer does (src/volunteer/volunteer.ts, the page's
// training controller: every round trains H steps from its state). Begun part-way into its first
// loop, a replica sent a first Δ of a step or two at the warm-up's least rate, and the live
// validator reported an honest partner at its own round for a Δ 13.8× that scale
// (bench/lead-claims.ts, setup 3, seed 1; docs/design.md section 6, "Rounds ahead").
import { describe, expect, it, vi } from 'vitest';
import { CLAIM_SETUPS, claimSpec } from '../bench/claim-setups.ts';
import { SIM_DEFAULTS, methodDefaults, type SimConfig } from '../src/sim/config.ts';
import { makeStrategy } from '../src/sim/methods/index.ts';
import { quadraticFactory } from '../src/sim/quadratic.ts';
import { prepare } from '../src/sim/setup.ts';
import { Simulation, type Replica } from '../src/sim/simulator.ts';
import { PartnerValidator } from '../src/sync/validate.ts';

describe('start phases', () => {
  it('a replica started late runs all H steps of its first round, its phase taken as a later start', async () => {
    const H = 10, stepTime = 0.5;
    const cfg: SimConfig = {
      ...SIM_DEFAULTS, method: 'noloco-async', replicas: 8, H, outer: methodDefaults('noloco-async').outer,
      speeds: { kind: 'uniform', lo: 1, hi: 4 }, seed: 1, time: 40, evalEvery: 20, churn: null, lr: () => 0.05,
      stepTime, jitter: 0, startSpread: 1,
    };
    const sim = new Simulation(cfg, quadraticFactory({ dim: 8, seed: 1, noise: 2, bias: 0.2 }), makeStrategy('noloco-async'));
    // The first message each slot sends (prepareMessage): when, and after how many inner steps.
    const first = new Map<number, { t: number; steps: number; speed: number }>();
    const observe = sim.observeOwn.bind(sim);
    vi.spyOn(sim, 'observeOwn').mockImplementation((r: Replica) => {
      if (!first.has(r.slot)) first.set(r.slot, { t: sim.now, steps: r.learner.step, speed: r.speed });
      observe(r);
    });
    await sim.run();
    expect(first.size).toBe(8);
    const late: number[] = [];
    for (const { t, steps, speed } of first.values()) {
      expect(steps).toBe(H);
      // With no jitter the first loop ends H steps after a start delayed by whole steps of its own.
      const delaySteps = (t * speed) / stepTime - H;
      expect(Math.abs(delaySteps - Math.round(delaySteps))).toBeLessThan(1e-6);
      expect(Math.round(delaySteps)).toBeGreaterThanOrEqual(0);
      expect(Math.round(delaySteps)).toBeLessThan(H);
      late.push(Math.round(delaySteps));
    }
    // The phases are still spread: the replicas did not all start together.
    expect(new Set(late).size).toBeGreaterThan(1);
  });

  it('the honest swarm that had one partner reported for its Δ at our own round (setup 3, seed 1) reports none', async () => {
    // bench/lead-claims.ts found it at 0.585 s: slot 5 (speed 1.48) had run 1 inner step of its
    // first loop, ||Δ|| 0.0558, and refused slot 1's 0.770 from round 0 as delta-norm, an offence.
    const sim = await prepare(claimSpec(CLAIM_SETUPS[3], 1, 60));
    const offences: string[] = [];
    const check = PartnerValidator.prototype.check;
    const spy = vi.spyOn(PartnerValidator.prototype, 'check').mockImplementation(function (this: PartnerValidator, ...args) {
      const v = check.apply(this, args);
      if (!v.ok && v.offence) offences.push(`${args[2].peer} at round ${args[2].round}: ${v.reason}: ${v.detail}`);
      return v;
    });
    try {
      const res = await sim.run();
      expect(res.checks.checked).toBeGreaterThan(0);
    } finally {
      spy.mockRestore();
      sim.dispose();
    }
    expect(offences).toEqual([]);
  });
});
