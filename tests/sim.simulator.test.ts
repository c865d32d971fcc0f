import { describe, expect, it, vi } from 'vitest';
import { ReadyPool } from '../src/protocol/ready-pool.ts';
import { quadraticFactory } from '../src/sim/quadratic.ts';
import { Simulation, type SimResult } from '../src/sim/simulator.ts';
import { makeStrategy } from '../src/sim/methods/index.ts';
import { METHODS, SIM_DEFAULTS, methodDefaults, validateSimConfig, type Method, type SimConfig } from '../src/sim/config.ts';
import { EventQueue } from '../src/protocol/event-queue.ts';
import { parseSpeeds } from '../src/sim/speeds.ts';
import { shuffle, weightSpread } from '../src/sim/metrics.ts';
import { Rng } from '../src/model/rng.ts';

// The toy quadratic learner keeps these runs at milliseconds; the GPT learner has its own test.
function config(method: Method, over: Partial<SimConfig> = {}): SimConfig {
  const d = methodDefaults(method);
  return {
    ...SIM_DEFAULTS, method, replicas: 8, H: 10, outer: d.outer, speeds: { kind: 'uniform', lo: 1, hi: 4 },
    seed: 1, time: 200, evalEvery: 50, churn: null, lr: () => 0.05, ...over,
  };
}

function run(method: Method, over: Partial<SimConfig> = {}, dim = 32): Promise<SimResult> {
  const cfg = config(method, over);
  return new Simulation(cfg, quadraticFactory({ dim, seed: cfg.seed, noise: 2, bias: 0.2 }), makeStrategy(method)).run();
}

const FLAT_NET = { latency: 0.05, upBps: 20e6, sigma: 0 };

describe('simulated clock', () => {
  it('orders events by time, then priority, then insertion', () => {
    const q = new EventQueue<{ time: number; priority: number; id: string }>();
    for (const e of [
      { time: 2, priority: 0, id: 'c' }, { time: 1, priority: 4, id: 'b2' }, { time: 1, priority: 0, id: 'a' },
      { time: 1, priority: 4, id: 'b3' }, { time: 0.5, priority: 9, id: 'first' },
    ]) q.push(e);
    const out: string[] = [];
    while (q.size) out.push(q.pop()!.id);
    expect(out).toEqual(['first', 'a', 'b2', 'b3', 'c']);
    expect(() => q.push({ time: Number.NaN, priority: 0, id: 'x' })).toThrow(/finite/);
  });

  it('a local replica of speed s does floor(T * s / stepTime) steps, never idle', async () => {
    // step times 0.5 and 0.125 s are exact in binary, so the clock does not drift
    const res = await run('local', { speeds: { kind: 'list', values: [1, 4] }, replicas: 2, time: 100, stepTime: 0.5 });
    expect(res.perReplica.map((r) => r.steps)).toEqual([200, 800]);
    expect(res.final.idleFraction).toBe(0);
    expect(res.final.bytesPerReplica).toBe(0);
  });
});

describe('every method runs', () => {
  for (const method of METHODS) {
    it(`${method}: a short run trains, evaluates and accounts its time`, async () => {
      const res = await run(method);
      expect(res.evals.length).toBe(5); // t = 0, 50, 100, 150, and the end (200)
      expect(res.evals[0].t).toBe(0);
      expect(res.final.t).toBe(200);
      expect(res.final.meanLoss).toBeLessThan(res.evals[0].meanLoss);
      expect(res.final.losses.every((x) => x !== null && Number.isFinite(x))).toBe(true);
      const f = res.final;
      expect(f.idleFraction + f.commFraction).toBeLessThanOrEqual(1);
      if (method === 'local') expect(f.exchanges).toBe(0);
      else expect(f.exchanges).toBeGreaterThan(0);
    });
  }

  it('with roundLoss, also scores each replica\'s weights at its last outer step (φ), and training is unchanged', async () => {
    const factory = () => quadraticFactory({ dim: 32, seed: 1, noise: 2, bias: 0.2 });
    const plain = await run('noloco-async');
    const cfg = config('noloco-async', { roundLoss: true });
    const f = factory();
    const sim = new Simulation(cfg, f, makeStrategy('noloco-async'));
    const withRound = await sim.run();
    expect(withRound.finalWeights).toEqual(plain.finalWeights);
    expect(plain.final.roundLosses).toBeUndefined();
    expect(withRound.evals[0]!.roundLosses).toEqual(withRound.evals[0]!.losses); // φ = θ = the init at t = 0
    const phis = sim.replicas.map((r) => r.phi);
    const expected = await Promise.all(phis.map((p) => f.evaluate(p)));
    expect(withRound.final.roundLosses).toEqual(expected);
    expect(withRound.final.meanRoundLoss).toBeCloseTo(expected.reduce((a, b) => a + b, 0) / expected.length, 12);
    // Mid-loop the fast weights are somewhere else: the two losses differ.
    expect(withRound.final.roundLosses).not.toEqual(withRound.final.losses);
    // Each φ stands at the step of its replica's last outer step (H × outer steps here: no churn,
    // every loop H steps), behind the fast weights' step mid-loop: the step its loss is read at.
    const H = cfg.H;
    expect(withRound.final.roundSteps).toEqual(withRound.perReplica.map((r) => r.outerSteps * H));
    for (const row of withRound.evals) {
      for (let i = 0; i < row.steps.length; i++) {
        const behind = row.steps[i]! - row.roundSteps![i]!;
        expect(behind, `slot ${i} at t = ${row.t}`).toBeGreaterThanOrEqual(0);
        expect(behind, `slot ${i} at t = ${row.t}`).toBeLessThanOrEqual(H);
      }
      expect(row.meanRoundStep).toBeCloseTo(row.roundSteps!.reduce((a, b) => a! + b!, 0)! / row.roundSteps!.length, 12);
    }
    expect(withRound.final.meanRoundStep).toBeLessThan(withRound.final.meanStep);
    // Methods with no outer step have no φ of a round.
    expect((await run('local', { roundLoss: true })).final.roundLosses).toBeUndefined();
  });

  it('ddp keeps every replica identical and pays an all-reduce every step', async () => {
    const res = await run('ddp');
    const w = res.finalWeights as Float32Array[];
    for (const x of w) expect(x).toEqual(w[0]);
    expect(res.final.spread).toBe(0);
    // one all-reduce per applied step, plus possibly one still in flight at the end
    expect(res.final.exchanges - res.perReplica[0].steps).toBeGreaterThanOrEqual(0);
    expect(res.final.exchanges - res.perReplica[0].steps).toBeLessThanOrEqual(1);
    expect(res.final.commFraction).toBeGreaterThan(0);
    // free communication takes no time
    const free = await run('ddp', { network: { latency: 0, upBps: 1e30, sigma: 0 } });
    expect(free.final.commFraction).toBeLessThan(1e-9);
    expect(free.perReplica[0].steps).toBeGreaterThan(res.perReplica[0].steps);
  });

  it('diloco replicas share phi after every outer step; a barrier makes fast replicas idle', async () => {
    const res = await run('diloco', { steps: 30, time: undefined, evalEvery: 1000 });
    const w = res.finalWeights as Float32Array[];
    for (const x of w) expect(x).toEqual(w[0]); // 30 = 3 loops: they end on an outer step
    expect(res.perReplica.every((r) => r.steps === 30 && r.outerSteps === 3)).toBe(true);
    expect(res.final.idleFraction).toBeGreaterThan(0.1);
  });

  it('noloco-async: a tiny wait leaves the pool empty, so every step is solo', async () => {
    const res = await run('noloco-async', { wait: 1e-9 });
    expect(res.final.soloFraction).toBe(1);
    expect(res.final.bytesPerReplica).toBe(0);
    const waited = await run('noloco-async', { wait: 0.3 });
    expect(waited.final.soloFraction).toBeLessThan(0.5);
  });
});

describe('the ready pool on the simulated clock', () => {
  // A volunteer's pool wait is a fraction of the inner loop it just timed (runOuterRound): a
  // slow loop waits longer. The simulator once used the nominal loop time, which with jitter is
  // shorter than the mean loop (the lognormal's mean correction) and predicted too few pairs.
  async function waits(jitter: number): Promise<{ wait: number; loop: number }[]> {
    const cfg = config('noloco-async', { replicas: 2, speeds: { kind: 'list', values: [1, 1] }, stepTime: 0.5, jitter, wait: 0.8, time: 100 });
    const sim = new Simulation(cfg, quadraticFactory({ dim: 8, seed: 1, noise: 2, bias: 0.2 }), makeStrategy('noloco-async'));
    const seen: { wait: number; loop: number }[] = [];
    const enter = ReadyPool.prototype.enter;
    const spy = vi.spyOn(ReadyPool.prototype, 'enter').mockImplementation(function (this: ReadyPool, peer: string, round: number, waitS: number) {
      seen.push({ wait: waitS, loop: sim.replicas[Number(peer)]!.loopSeconds });
      return enter.call(this, peer, round, waitS);
    });
    try { await sim.run(); } finally { spy.mockRestore(); }
    return seen;
  }

  it('a replica waits `wait` times the inner loop it just ran', async () => {
    const steady = await waits(0);
    expect(steady.length).toBeGreaterThan(10);
    for (const w of steady) expect(w.wait).toBeCloseTo(0.8 * 10 * 0.5, 9);
    const jittered = await waits(0.6);
    expect(new Set(jittered.map((w) => w.wait.toFixed(6))).size).toBeGreaterThan(5);
    for (const w of jittered) expect(w.wait).toBeCloseTo(0.8 * w.loop, 9);
  });
});

describe('determinism and the equal-speed identity', () => {
  it('the same seed gives identical results; another seed does not', async () => {
    for (const method of ['noloco-async', 'diloco'] as Method[]) {
      const a = await run(method, { jitter: 0.2 });
      const b = await run(method, { jitter: 0.2 });
      expect(a.evals).toEqual(b.evals);
      expect(a.finalWeights).toEqual(b.finalWeights);
      const c = await run(method, { jitter: 0.2, seed: 2 });
      expect(c.final.meanLoss).not.toBe(a.final.meanLoss);
    }
  });

  it('with equal speeds, noloco-async pairs every outer step as lockstep does, without its barrier', async () => {
    // The pool is not lockstep's shuffle (it holds a repeat partner off while others are due, so
    // weights differ), but peers of equal speed stay in phase and every step is a pair.
    const over = { speeds: { kind: 'equal' as const }, network: FLAT_NET, time: 400 };
    const a = await run('noloco-async', over);
    const l = await run('noloco-lockstep', over);
    expect(a.perReplica.reduce((s, r) => s + r.outerSteps, 0)).toBeGreaterThan(8 * 10);
    expect(a.final.soloFraction).toBe(0);
    expect(l.final.soloFraction).toBe(0);
    expect(a.final.meanLoss).toBeLessThan(a.evals[0]!.meanLoss);
  });
});

describe('churn', () => {
  const churn = { session: 60, offline: 10 };
  it('replicas leave and join; joiners keep shared state consistent', async () => {
    for (const method of METHODS) {
      const res = await run(method, { churn, time: 400 });
      expect(res.leaves).toBeGreaterThan(0);
      expect(res.joins).toBeGreaterThan(0);
      expect(res.final.present).toBeGreaterThan(0);
      expect(Number.isFinite(res.final.meanLoss)).toBe(true);
      if (method === 'ddp') {
        const w = res.finalWeights.filter((x): x is Float32Array => x !== null);
        for (const x of w) expect(x).toEqual(w[0]);
      }
    }
  });

  it('joiners held during one all-reduce bootstrap from its members, not from each other', async () => {
    // A slow link makes every all-reduce long, and short sessions make volunteers come and go
    // during it: several joiners wait for the same all-reduce. One that copied another held
    // joiner would take the state its slot's departed instance left, and ddp's replicas would
    // no longer be identical.
    for (const seed of [1, 2, 3, 4]) {
      const res = await run('ddp', { seed, churn: { session: 20, offline: 2 }, time: 300, network: { latency: 0.5, upBps: 1e3, sigma: 0 }, replicas: 8 });
      expect(res.joins).toBeGreaterThan(10);
      const w = res.finalWeights.filter((x): x is Float32Array => x !== null);
      for (const x of w) expect(x).toEqual(w[0]);
    }
  });

  it('a noloco joiner starts from a live replica, not from scratch', async () => {
    const res = await run('noloco-async', { churn, time: 400 });
    // no replica is back at step 0 territory: joiners inherit their donor's step
    const steps = res.final.steps.filter((x): x is number => x !== null);
    expect(Math.min(...steps)).toBeGreaterThan(50);
  });
});

describe('config and helpers', () => {
  it('rejects a zero wait and a missing budget, warns on an unstable pair', () => {
    expect(() => validateSimConfig(config('noloco-async', { wait: 0 }))).toThrow(/wait must be a positive fraction/);
    expect(() => validateSimConfig(config('local', { time: undefined }))).toThrow(/time budget or a step budget/);
    const w = validateSimConfig(config('noloco-lockstep', { outer: { momentum: 0.5, lr: 0.7, consensus: 0.3 } }));
    expect(w.join('\n')).toMatch(/pair stability condition/);
    expect(validateSimConfig(config('noloco-async'))).toEqual([]);
  });

  it('parses speed distributions and names bad ones', () => {
    expect(parseSpeeds('uniform:1:4')).toEqual({ kind: 'uniform', lo: 1, hi: 4 });
    expect(parseSpeeds('1,2,4')).toEqual({ kind: 'list', values: [1, 2, 4] });
    expect(parseSpeeds('equal')).toEqual({ kind: 'equal' });
    expect(() => parseSpeeds('uniform:0:4')).toThrow(/0 < lo <= hi/);
    expect(() => parseSpeeds('gauss:1')).toThrow(/unknown distribution/);
  });

  it('weight spread is the per-parameter RMS distance from the mean', () => {
    // values 1 and 3 around mean 2 in both params: each replica is at distance 1 per parameter
    expect(weightSpread([Float32Array.from([1, 1, 0]), Float32Array.from([3, 3, 0])], 2)).toBeCloseTo(1, 12);
    expect(weightSpread([Float32Array.from([5])], 1)).toBe(0);
  });

  it('shuffle draws nothing for one element and is a permutation', () => {
    const rng = new Rng(3), probe = new Rng(3);
    expect(shuffle([7], rng)).toEqual([7]);
    expect(rng.nextU32()).toBe(probe.nextU32());
    expect(shuffle([1, 2, 3, 4, 5], rng).sort()).toEqual([1, 2, 3, 4, 5]);
  });
});

describe('the mesh\'s checks in the simulator (SimConfig.checks)', () => {
  const norm = (x: Float32Array) => Math.sqrt(x.reduce((a, v) => a + v * v, 0));

  it('checks every NoLoCo pair step\'s payload, and none with the checks off or without pair steps', async () => {
    const on = await run('noloco-async', { network: FLAT_NET }, 256);
    const off = await run('noloco-async', { network: FLAT_NET, checks: false }, 256);
    const pairHalves = on.perReplica.reduce((a, p) => a + p.outerSteps - p.soloSteps, 0);
    console.log(`checks: ${JSON.stringify(on.checks)} over ${pairHalves} pair steps`);
    expect(on.checks.on).toBe(true);
    expect(on.checks.checked).toBeGreaterThan(0);
    // A pair step whose partner's payload was checked, each side its own (the last ones may still be in flight at the end).
    expect(on.checks.checked).toBeLessThanOrEqual(pairHalves + on.checks.refused);
    expect(on.checks.checked).toBeGreaterThanOrEqual(pairHalves - on.replicas);
    expect(off.checks).toMatchObject({ on: false, checked: 0, refused: 0 });
    expect((await run('diloco', { network: FLAT_NET })).checks.on).toBe(false);
  });

  it('counts a pair step whose payload the checks refused as a solo step, as the mesh reports it (\'rejected\')', async () => {
    const cfg = config('noloco-async', { network: FLAT_NET, speeds: { kind: 'equal' }, replicas: 4, time: 60 });
    const sim = new Simulation(cfg, quadraticFactory({ dim: 32, seed: cfg.seed, noise: 2, bias: 0.2 }), makeStrategy('noloco-async'));
    vi.spyOn(sim, 'checkPartner').mockReturnValue(null); // every payload refused
    const res = await sim.run();
    expect(res.final.exchanges).toBeGreaterThan(0); // the pool paired them
    expect(res.final.soloFraction).toBe(1);
  });

  it('refuses a payload the mesh refuses and clips one it clips, on a copy, as a volunteer\'s mesh does', async () => {
    const cfg = config('noloco-async', { network: FLAT_NET, time: 60 });
    const sim = new Simulation(cfg, quadraticFactory({ dim: 256, seed: cfg.seed, noise: 2, bias: 0.2 }), makeStrategy('noloco-async'));
    await sim.run();
    const [r, other] = sim.replicas;
    const sent = { phi: other!.msg!.phi.slice(), delta: other!.msg!.delta.map((x) => 100 * x) };
    const before = sent.delta.slice();
    // Δ × 100, past the 30× bound: refused (a solo step), as 'delta-norm'.
    expect(sim.checkPartner(r!, 'attacker', sent, 0)).toBeNull();
    expect(sent.delta).toEqual(before);
    // A Δ three times ours from a partner never met (the other replica's, scaled: ours scaled is our
    // update sent back, refused as delta-echo): passed on clipped to the stranger's 1.5× the
    // honest scale; what was sent is not touched.
    const k = (3 * norm(r!.msg!.delta)) / norm(other!.msg!.delta);
    const big = { phi: r!.msg!.phi.slice(), delta: other!.msg!.delta.map((x) => k * x) };
    const passed = sim.checkPartner(r!, 'stranger', big, 0);
    expect(passed).not.toBeNull();
    expect(norm(passed!.delta)).toBeLessThan(0.99 * norm(big.delta));
    expect(norm(big.delta)).toBeCloseTo(3 * norm(r!.msg!.delta), 3);
    const res = (sim as unknown as { checkTotals: { refused: number; reasons: Record<string, number>; deltaClipped: number } }).checkTotals;
    expect(res.reasons['delta-norm']).toBeGreaterThanOrEqual(1);
    expect(res.deltaClipped).toBeGreaterThanOrEqual(1);
    // With the checks off the payload goes on as sent.
    const offSim = new Simulation({ ...cfg, checks: false }, quadraticFactory({ dim: 256, seed: cfg.seed, noise: 2, bias: 0.2 }), makeStrategy('noloco-async'));
    await offSim.run();
    const raw = { phi: offSim.replicas[1]!.msg!.phi, delta: offSim.replicas[1]!.msg!.delta.map((x) => 100 * x) };
    expect(offSim.checkPartner(offSim.replicas[0]!, 'attacker', raw, 0)).toBe(raw);
  });
});
