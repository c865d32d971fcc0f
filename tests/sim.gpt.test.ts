import { describe, expect, it } from 'vitest';
import { SPEC_DEFAULTS, prepare, runSpec, makeLr, learnerFactory, simConfig, specOfRun, type SimSpec } from '../src/sim/setup.ts';
import { preset, trainConfig } from '../src/model/config.ts';
import { datasetFromCorpus } from '../src/data/dataset.ts';
import { createBackend } from '../src/volunteer/backend.ts';
import type { RunInfo } from '../src/protocol/messages.ts';
import type { ProbeEvent } from '../src/sim/simulator.ts';
import { METHODS, type Method } from '../src/sim/config.ts';
import { shardOf } from '../src/sim/gpt-learner.ts';
import { runRecord } from '../src/sim/report.ts';

// The real learner (CPU reference GPT, micro preset) in runs of a few dozen tiny steps: the
// simulator's machinery with the real model and data, not the benchmark's outcomes.
function spec(method: Method, over: Partial<SimSpec> = {}): SimSpec {
  return {
    ...SPEC_DEFAULTS, method, seed: 3, replicas: 4, H: 4, time: 14, evals: 2,
    batch: 1, seqLen: 16, valBatches: 1, valBatch: 4, lr: 3e-3, ...over,
  };
}

describe('simulator with the GPT learner', () => {
  it('every method trains the micro model on the default corpus', async () => {
    for (const method of METHODS) {
      const r = await runSpec(spec(method));
      expect(r.learner).toMatch(/GPT L2 d32/);
      expect(r.final.meanLoss).toBeLessThan(r.evals[0].meanLoss);
      expect(r.final.t).toBe(14);
      if (method === 'ddp') {
        const w = r.finalWeights as Float32Array[];
        for (const x of w) expect(x).toEqual(w[0]); // one identical AdamW update everywhere
      } else expect(r.final.spread).toBeGreaterThan(0);
    }
  });

  it('with equal speeds, noloco-async pairs every outer step of the GPT replicas', async () => {
    // The pool alone: with H = 4 the probe's 8 forward passes would be two thirds of a loop.
    const over = { speeds: 'equal', network: { latency: 0.05, upBps: 20e6, sigma: 0 }, probe: false };
    const a = await runSpec(spec('noloco-async', over));
    expect(a.perReplica.every((p) => p.outerSteps >= 3)).toBe(true);
    expect(a.final.soloFraction).toBe(0);
  });

  it('judges every NoLoCo pair step with the probe by default, charging its forward passes to the clock', async () => {
    const over = { speeds: 'equal', network: { latency: 0.05, upBps: 20e6, sigma: 0 } };
    const on = await runSpec(spec('noloco-async', over));
    const off = await runSpec(spec('noloco-async', { ...over, probe: false }));
    const outer = on.perReplica.reduce((a, p) => a + p.outerSteps, 0);
    console.log(`probe on: ${on.probe.judged} judged, ${on.probe.rejected} rejected of ${outer} outer steps; ${on.probe.secondsPerOuterRound.toFixed(3)} s per round`);
    expect(on.probe.on).toBe(true);
    expect(on.probe.judged).toBe(outer); // equal speeds: every outer step is a pair step
    // 2 candidates x 4 windows of a third of a step each, at speed 1 and stepTime 1.
    expect(on.probe.secondsPerOuterRound).toBeCloseTo(8 / 3, 6);
    expect(on.probe.fractionOfInnerLoop).toBeCloseTo(8 / 3 / 4, 6);
    expect(off.probe).toMatchObject({ on: false, judged: 0, rejected: 0, secondsPerOuterRound: 0 });
    // A measured probe time (bench:swarm's volunteers') is what each probe charges, at every speed.
    const measured = await runSpec(spec('noloco-async', { ...over, speeds: '1,1,2,2', probeTime: 0.25 }));
    const rounds = measured.perReplica.reduce((a, p) => a + p.outerSteps, 0);
    expect(measured.probe.judged).toBeGreaterThan(0);
    expect(measured.probe.secondsPerOuterRound).toBeCloseTo((0.25 * measured.probe.judged) / rounds, 9);
    expect(measured.probe.fractionOfInnerLoop).toBeCloseTo((0.25 / 4 + 0.25 / 2) / 2, 9); // loops of 4 s and 2 s
    await expect(runSpec(spec('noloco-async', { probeTime: -1 }))).rejects.toThrow(/probeTime must be >= 0/);
    expect(runRecord(spec('noloco-async'), on, 1).probe).toMatchObject({ on: true, judged: on.probe.judged });
    // Other methods have no pair step to judge.
    expect((await runSpec(spec('diloco'))).probe.on).toBe(false);
  });

  it('tells each judge how many rounds the partner\'s message is behind, as a volunteer\'s round does, and counts the reports by code', async () => {
    // Unequal speeds: the fast replicas run rounds ahead of the slow ones they pair with.
    const sim = await prepare(spec('noloco-async', { speeds: '1,1,3,3', time: 24, network: { latency: 0.05, upBps: 20e6, sigma: 0 } }));
    const seen: ProbeEvent[] = [];
    sim.onProbe = (e) => seen.push(e);
    const r = await sim.run().finally(() => sim.dispose());
    console.log(`probe events: ${seen.length}; behind ${seen.map((e) => e.behind).join(' ')}; offences ${JSON.stringify(r.probe.offences)}`);
    expect(seen.length).toBe(r.probe.judged);
    expect(seen.filter((e) => !e.verdict.accept).length).toBe(r.probe.rejected);
    expect(seen.every((e) => Number.isInteger(e.behind))).toBe(true);
    // Each pair's two judges see the same gap from either side.
    expect(seen.some((e) => e.behind! > 0) && seen.some((e) => e.behind! < 0)).toBe(true);
    const codes: Record<string, number> = {};
    for (const e of seen) if (e.verdict.offence) codes[e.verdict.offence.code] = (codes[e.verdict.offence.code] ?? 0) + 1;
    expect(r.probe.offences).toEqual(codes);
    expect(runRecord(spec('noloco-async'), r, 1).probe?.offences).toEqual(codes);
  });

  it('a replica of specOfRun(run) trains as the run\'s volunteer with its stream does: same start, data, rate, AdamW, clip and validation loss', async () => {
    // Every setting away from its default, so that one the simulator dropped would show.
    const model = preset('micro');
    const train = trainConfig({
      batch: 2, seqLen: 16, lr: 2e-3, warmupSteps: 3, totalSteps: 40, minLrFrac: 0.2, weightDecay: 0.05, beta1: 0.8, beta2: 0.99,
      eps: 1e-6, gradClip: 0.5, H: 5, outerMomentum: 0.3, outerLr: 0.9, consensus: 0.5,
    }, model);
    const run = { id: 'r', preset: 'micro', model, train, seed: 7 } as RunInfo;
    const s: SimSpec = { ...SPEC_DEFAULTS, method: 'noloco-async', replicas: 2, ...specOfRun(run) };
    const cfg = simConfig(s);
    expect([cfg.H, cfg.outer]).toEqual([5, { momentum: 0.3, lr: 0.9, consensus: 0.5 }]);
    const factory = await learnerFactory(s);
    const data = datasetFromCorpus();
    const stream = 1;
    // The headless volunteer's CPU trainer on the files the coordinator serves (src/volunteer/backend.ts).
    const volunteer = await createBackend('cpu', { run, train: data.train, val: data.val, stream, probeSeed: 1, checkSeed: 1, checkBatches: 1 });
    const replica = factory.create(stream, factory.initial);
    expect(await factory.evaluate(factory.initial)).toBeCloseTo(await volunteer.evaluate(), 6);
    const steps = 12; // through the warm-up and into the cosine
    await volunteer.train(steps);
    for (let k = 0; k < steps; k++) { replica.computeGrads(); replica.applyGrads(replica.grads, cfg.lr(replica.step, 0)); }
    const { delta } = await volunteer.outerPayload(); // θ − φ, φ the run's initial weights
    expect(replica.params.map((x, i) => x - factory.initial[i]!)).toEqual(delta);
  });

  it('the same seed replays exactly', async () => {
    const a = await runSpec(spec('noloco-async', { jitter: 0.3 }));
    const b = await runSpec(spec('noloco-async', { jitter: 0.3 }));
    expect(a.evals).toEqual(b.evals);
    expect(a.finalWeights).toEqual(b.finalWeights);
  });

  it('evaluating more often does not change training', async () => {
    const a = await runSpec(spec('diloco', { evals: 1 }));
    const b = await runSpec(spec('diloco', { evals: 7 }));
    expect(b.evals.length).toBeGreaterThan(a.evals.length);
    expect(a.finalWeights).toEqual(b.finalWeights);
  });

  it('runs the learning-rate schedule on the clock for a time budget, on steps otherwise', () => {
    const byTime = makeLr({ time: 100, lr: 1e-3, warmup: 0.1, minLrFrac: 0.1 });
    expect(byTime(0, 0)).toBeCloseTo(1e-5, 12); // first warm-up step of 100
    expect(byTime(999, 10)).toBeCloseTo(1e-3, 9); // the step count does not matter
    expect(byTime(0, 100)).toBeCloseTo(1e-4, 12); // floor at the end of the budget
    const bySteps = makeLr({ steps: 10, lr: 1e-3, warmup: 0.2, minLrFrac: 0.1 });
    expect(bySteps(0, 1e9)).toBeCloseTo(5e-4, 12);
    expect(bySteps(10, 0)).toBeCloseTo(1e-4, 12);
    // A run's own schedule: each replica's step, whatever the budget and the clock.
    const byRun = makeLr({ time: 100, lr: 1e-3, warmup: 0.5, minLrFrac: 0.1, schedule: { warmupSteps: 10, totalSteps: 1000 } });
    expect(byRun(0, 99)).toBeCloseTo(1e-4, 12);
    expect(byRun(10, 0)).toBeCloseTo(1e-3, 12);
    expect(byRun(505, 0)).toBeCloseTo(5.5e-4, 12); // half-way down the cosine
    expect(byRun(5000, 0)).toBeCloseTo(1e-4, 12);
    expect(() => makeLr({ time: 1, lr: 1e-3, warmup: 0, minLrFrac: 0.1, schedule: { warmupSteps: -1, totalSteps: 10 } })).toThrow(/warmupSteps must be an integer >= 0/);
  });

  it('sharded data: stream k reads only the k-th contiguous slice, and it changes what local learns', async () => {
    const train = Uint8Array.from({ length: 103 }, (_, i) => i);
    expect(shardOf(train, 1, 5, 8)).toBe(train);
    expect(Array.from(shardOf(train, 4, 1, 8))).toEqual(Array.from({ length: 25 }, (_, i) => 25 + i));
    expect(Array.from(shardOf(train, 4, 6, 8))).toEqual(Array.from({ length: 25 }, (_, i) => 50 + i)); // a joiner's stream 6 -> slice 2
    expect(() => shardOf(train, 10, 0, 10)).toThrow(/10 shards of 103 training tokens hold 10 each, fewer than one window \(seqLen \+ 1 = 11\)/);
    const shared = await runSpec(spec('local'));
    const sharded = await runSpec(spec('local', { data: 'sharded' }));
    expect(sharded.learner).toMatch(/data in 4 shards/);
    expect(sharded.final.meanLoss).not.toBe(shared.final.meanLoss);
    await expect(runSpec(spec('local', { data: 'striped' as never }))).rejects.toThrow(/unknown data mode "striped"; use shared or sharded/);
  });

  it('a spec can widen the preset; the record keeps the inner rate it ran at', async () => {
    const wide = spec('local', { model: { d: 48 }, lr: 2.5e-3 });
    const r = await runSpec(wide);
    const micro = await runSpec(spec('local', { lr: 2.5e-3 }));
    expect(r.learner).toMatch(/GPT L2 d48 h2/);
    expect(Number(/\((\d+) params\)/.exec(r.learner)![1])).toBeGreaterThan(Number(/\((\d+) params\)/.exec(micro.learner)![1]));
    expect(r.final.meanLoss).not.toBe(micro.final.meanLoss);
    expect(runRecord(wide, r, 0).lr).toBe(2.5e-3);
    await expect(runSpec(spec('local', { model: { d: 33 } }))).rejects.toThrow(/d=33 is not divisible by heads=2/);
    await expect(runSpec(spec('local', { model: { vocab: 300 } as never }))).rejects.toThrow(/only layers, d and heads can change, got "vocab"/);
  });
});
