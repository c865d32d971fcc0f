// The consensus rules for a partner rounds behind (StaleRule, src/train/outer.ts; docs/design.md
// section 6, "Rounds behind") and the simulator's pair step, which takes them through the one
// function staleOuter. bench/stale.ts measures them; the live rule is `none`.
import { describe, expect, it } from 'vitest';
import { STALE_NONE, parseStaleRule, staleOuter, staleRuleName, type OuterHyper } from '../src/train/outer.ts';
import { SIM_DEFAULTS, methodDefaults, type SimConfig } from '../src/sim/config.ts';
import { Simulation } from '../src/sim/simulator.ts';
import { quadraticFactory } from '../src/sim/quadratic.ts';
import { makeStrategy } from '../src/sim/methods/index.ts';

const H: OuterHyper = { momentum: 0.5, lr: 0.7, consensus: 0.7 };

describe('staleOuter', () => {
  it('none leaves γ alone however far behind the partner is', () => {
    for (const k of [-3, 0, 1, 2, 7, 40, undefined]) expect(staleOuter(H, k, STALE_NONE)).toEqual(H);
  });

  it('weight:K keeps γ up to K rounds behind and scales it by K/k beyond', () => {
    const w = parseStaleRule('weight:1');
    expect(staleOuter(H, 1, w)).toEqual(H);
    expect(staleOuter(H, 2, w)!.consensus).toBeCloseTo(0.35, 12);
    expect(staleOuter(H, 7, w)!.consensus).toBeCloseTo(0.1, 12);
    expect(staleOuter(H, 7, w)!.momentum).toBe(0.5);
    expect(staleOuter(H, 7, w)!.lr).toBe(0.7);
    expect(staleOuter(H, 4, parseStaleRule('weight:2'))!.consensus).toBeCloseTo(0.35, 12);
    // A partner ahead of us, or one whose round is unknown, gets the full pull.
    expect(staleOuter(H, -5, w)).toEqual(H);
    expect(staleOuter(H, undefined, w)).toEqual(H);
  });

  it('solo:K takes no partner more than K rounds behind', () => {
    const s = parseStaleRule('solo:2');
    expect(staleOuter(H, 2, s)).toEqual(H);
    expect(staleOuter(H, 3, s)).toBeNull();
    expect(staleOuter(H, -9, s)).toEqual(H);
  });

  it('parses the names the bench and the simulator take, and names a bad one', () => {
    for (const n of ['none', 'weight:1', 'weight:3', 'solo:0', 'solo:4']) expect(staleRuleName(parseStaleRule(n))).toBe(n);
    expect(() => parseStaleRule('weight:0')).toThrow(/K >= 1/);
    expect(() => parseStaleRule('linear:2')).toThrow(/none, weight:K or solo:K/);
    expect(() => parseStaleRule('solo:-1')).toThrow(/whole number/);
  });
});

describe('the simulator takes the rule in its pair step', () => {
  const config = (over: Partial<SimConfig>): SimConfig => ({
    ...SIM_DEFAULTS, method: 'noloco-async', replicas: 8, H: 10, outer: methodDefaults('noloco-async').outer,
    speeds: { kind: 'uniform', lo: 1, hi: 4 }, seed: 3, time: 200, evalEvery: 50, churn: null, lr: () => 0.05, ...over,
  });
  const run = (over: Partial<SimConfig>) =>
    new Simulation(config(over), quadraticFactory({ dim: 32, seed: 3, noise: 2, bias: 0.2 }), makeStrategy('noloco-async')).run();

  it('with rounds drifting apart, solo:0 turns the pairs with a partner behind into solo steps and weight:1 changes the weights', async () => {
    const none = await run({});
    const solo = await run({ stale: parseStaleRule('solo:0') });
    const weighted = await run({ stale: parseStaleRule('weight:1') });
    expect(Math.max(...none.perReplica.map((r) => r.outerSteps)) - Math.min(...none.perReplica.map((r) => r.outerSteps))).toBeGreaterThan(2);
    expect(solo.final.soloFraction).toBeGreaterThan(none.final.soloFraction);
    expect(Array.from(weighted.finalWeights[0]!)).not.toEqual(Array.from(none.finalWeights[0]!));
  });

  it('with every replica at the same round, every rule is the live one', async () => {
    const equal = { speeds: { kind: 'equal' } as SimConfig['speeds'] };
    const none = await run(equal);
    const weighted = await run({ ...equal, stale: parseStaleRule('weight:1') });
    expect(weighted.finalWeights.map((w) => Array.from(w!))).toEqual(none.finalWeights.map((w) => Array.from(w!)));
  });
});
