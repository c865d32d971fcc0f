// The optimizer kernels against the TypeScript math, within 1e-6 (max |gpu - ts| / max |ts|):
//   gradnorm.wgsl + adamw.wgsl  vs  gradNorm / clipGrads (src/model/adamw.ts),
//                                   learningRate (src/train/schedule.ts), adamwUpdate,
//                                   and the dynamic loss scaling of f16 operands
//   outer.wgsl                  vs  nolocoOuterStep / dilocoOuterStep (src/train/outer.ts)
import { afterAll, describe, expect } from 'vitest';
import { preset, trainConfig, type TrainConfig } from '../src/model/config.ts';
import { buildLayout } from '../src/model/layout.ts';
import { adamwUpdate, clipGrads, gradNorm } from '../src/model/adamw.ts';
import { learningRate } from '../src/train/schedule.ts';
import { Kernels, writeArray } from '../src/gpu/kernels.ts';
import { buildOptim } from '../src/gpu/optim.ts';
import { GpuState, STEP_STATE_LOSS_SCALE, STEP_STATE_SKIPPED, STEP_STATE_WORDS } from '../src/gpu/state.ts';
import { GpuEngine } from '../src/gpu/engine.ts';
import { dilocoOuterStep, meanInto, nolocoOuterStep, outerMessage } from '../src/train/outer.ts';
import { gpuTest, readF32, readU32 } from './support/gpu.ts';
import { randomArray, relErr, runDispatches } from './support/engine.ts';

const model = preset('micro');
const layout = buildLayout(model);
const TOL = 1e-6;

const owned: { destroy(): void }[] = [];
afterAll(() => { for (const o of owned) o.destroy(); });

/** Random state with zero padding (as real grads have), v > 0. */
function randomState(seed: number, gradScale: number) {
  const pad = (a: Float32Array) => {
    const keep = new Uint8Array(layout.total);
    for (const t of layout.tensors) keep.fill(1, t.offset, t.offset + t.size);
    for (let i = 0; i < a.length; i++) if (!keep[i]) a[i] = 0;
    return a;
  };
  return {
    params: pad(randomArray(layout.total, seed)),
    grads: pad(randomArray(layout.total, seed + 1, gradScale)),
    m: pad(randomArray(layout.total, seed + 2, 0.01)),
    v: pad(randomArray(layout.total, seed + 3, 1e-4).map(Math.abs)),
  };
}

describe('grad norm + clip + schedule + AdamW kernels', () => {
  const cases: { name: string; step: number; gradScale: number; cfg: TrainConfig }[] = [
    { name: 'warm-up step 0, clipped', step: 0, gradScale: 0.1, cfg: trainConfig({ warmupSteps: 10, totalSteps: 100, lr: 1e-3 }, model) },
    { name: 'cosine step 57, not clipped', step: 57, gradScale: 1e-4, cfg: trainConfig({ warmupSteps: 10, totalSteps: 100, lr: 1e-3 }, model) },
    { name: 'past the schedule, no clipping configured', step: 150, gradScale: 0.1, cfg: trainConfig({ warmupSteps: 10, totalSteps: 100, gradClip: 0 }, model) },
  ];
  for (const c of cases) {
    gpuTest(c.name, async (device) => {
      const k = new Kernels(device), s = new GpuState(device, layout);
      owned.push(k, s);
      const hist = device.createBuffer({ label: 'test.hist', size: 64, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
      const acc = device.createBuffer({ label: 'test.acc', size: 16, usage: GPUBufferUsage.STORAGE });
      owned.push(hist, acc);
      const o = buildOptim(k, s, k.dummy, 1, hist, 8, acc, c.cfg);
      owned.push(...o.owned.map((b) => ({ destroy: () => b.destroy() })));
      const x = randomState(c.step + 1, c.gradScale);
      for (const [buf, a] of [[s.params, x.params], [s.grads, x.grads], [s.m, x.m], [s.v, x.v]] as const) writeArray(device.queue, buf, a);
      s.writeStepState(c.step);
      await runDispatches(device, o.update);

      const grads = x.grads.slice();
      const norm = c.cfg.gradClip > 0 ? clipGrads(grads, c.cfg.gradClip) : gradNorm(grads);
      const lr = learningRate(c.step, c.cfg);
      const params = x.params.slice(), m = x.m.slice(), v = x.v.slice();
      adamwUpdate(params, grads, m, v, layout, c.step + 1, lr, c.cfg);

      const st = await readF32(device, s.stepState, 8);
      expect((await readU32(device, s.stepState, 1))[0]).toBe(c.step + 1);
      expect(Math.abs(st[1] - lr) / lr).toBeLessThan(TOL);
      expect(Math.abs(st[2] - norm) / norm).toBeLessThan(TOL);
      expect(relErr(await readF32(device, s.m, layout.total), m)).toBeLessThan(TOL);
      expect(relErr(await readF32(device, s.v, layout.total), v)).toBeLessThan(TOL);
      expect(relErr(await readF32(device, s.params, layout.total), params)).toBeLessThan(TOL);
      expect((await readF32(device, hist, 16))[(c.step % 8) * 2 + 1]).toBeCloseTo(norm, 5);
    });
  }
});

describe('dynamic loss scaling in the optimizer kernels (f16 operands)', () => {
  const cfg = trainConfig({ warmupSteps: 10, totalSteps: 100, lr: 1e-3 }, model);
  /** One update on gradients scaled by `scale` (plus `poison` at one float), from step 20. */
  const update = async (device: GPUDevice, scale: number, growthInterval: number, poison?: number) => {
    const k = new Kernels(device), s = new GpuState(device, layout);
    owned.push(k, s);
    const hist = device.createBuffer({ label: 'test.hist', size: 64, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
    const acc = device.createBuffer({ label: 'test.acc', size: 16, usage: GPUBufferUsage.STORAGE });
    owned.push(hist, acc);
    const o = buildOptim(k, s, k.dummy, 1, hist, 8, acc, cfg, growthInterval);
    owned.push(...o.owned.map((b) => ({ destroy: () => b.destroy() })));
    const x = randomState(5, 0.1);
    const scaled = x.grads.map((g) => g * scale);
    if (poison !== undefined) scaled[layout.tensors[1]!.offset] = poison;
    for (const [buf, a] of [[s.params, x.params], [s.grads, scaled], [s.m, x.m], [s.v, x.v]] as const) writeArray(device.queue, buf, a);
    s.writeStepState(20, scale);
    await runDispatches(device, o.update);
    const words = await readU32(device, s.stepState, STEP_STATE_WORDS);
    const f = new Float32Array(words.buffer);
    return {
      x, hist: await readF32(device, hist, 16), step: words[0], gradNorm: f[2], skip: words[7], lossScale: f[STEP_STATE_LOSS_SCALE], goodSteps: words[9], skipped: words[STEP_STATE_SKIPPED],
      params: await readF32(device, s.params, layout.total), m: await readF32(device, s.m, layout.total), v: await readF32(device, s.v, layout.total),
    };
  };

  gpuTest('gradients scaled by 2^10 give the unscaled update; the scale doubles after growthInterval good steps', async (device) => {
    for (const growthInterval of [2000, 1]) {
      const r = await update(device, 1024, growthInterval);
      const grads = r.x.grads.slice();
      const norm = clipGrads(grads, cfg.gradClip);
      const params = r.x.params.slice(), m = r.x.m.slice(), v = r.x.v.slice();
      adamwUpdate(params, grads, m, v, layout, 21, learningRate(20, cfg), cfg);
      expect(r.step).toBe(21);
      expect(r.skip).toBe(0);
      expect(Math.abs(r.gradNorm - norm) / norm).toBeLessThan(TOL);
      expect(r.hist[(20 % 8) * 2 + 1]).toBeCloseTo(norm, 5);
      expect(relErr(r.m, m)).toBeLessThan(TOL);
      expect(relErr(r.v, v)).toBeLessThan(TOL);
      expect(relErr(r.params, params)).toBeLessThan(TOL);
      expect([r.lossScale, r.goodSteps]).toEqual(growthInterval === 1 ? [2048, 0] : [1024, 1]);
    }
  });

  for (const poison of [Infinity, NaN]) {
    gpuTest(`${poison === Infinity ? 'an infinity' : 'a NaN'} among the scaled gradients skips the step: weights and moments stay, the scale halves, the step counts`, async (device) => {
      const r = await update(device, 1024, 2000, poison);
      expect(r.params).toEqual(r.x.params);
      expect(r.m).toEqual(r.x.m);
      expect(r.v).toEqual(r.x.v);
      expect([r.step, r.skip, r.lossScale, r.goodSteps, r.skipped]).toEqual([21, 1, 512, 0, 1]);
    });
  }

  gpuTest('without loss scaling a scale word of 1 changes nothing (growthInterval 0)', async (device) => {
    const r = await update(device, 1, 0);
    expect([r.skip, r.lossScale, r.goodSteps, r.skipped]).toEqual([0, 1, 0, 0]);
  });
});

describe('outer step kernel vs src/train/outer.ts (NoLoCo and DiLoCo)', () => {
  const cfg = trainConfig({ batch: 1, seqLen: 8 }, model);
  // partners: 0 = solo, 1 = a NoLoCo pair, 2 = a group of three; diloco: gamma = 0 with the
  // mean over all replicas (dilocoOuterStep on the all-reduced delta).
  const cases = [
    { name: 'NoLoCo solo step', partners: 0, diloco: false },
    { name: 'NoLoCo pair', partners: 1, diloco: false },
    { name: 'NoLoCo group of three', partners: 2, diloco: false },
    { name: 'DiLoCo over four replicas (gamma = 0)', partners: 3, diloco: true },
  ];
  for (const c of cases) {
    gpuTest(`${c.name}: φ, m, θ and the payload`, async (device) => {
      const engine = new GpuEngine(device, { layout, train: cfg, B: 1, T: 8 });
      owned.push(engine);
      const theta = randomArray(layout.total, 11), phi = randomArray(layout.total, 12), m = randomArray(layout.total, 13, 0.1);
      engine.writeState({ params: theta, m: new Float32Array(layout.total), v: new Float32Array(layout.total), phi, outerM: m, step: 7 });
      const payload = await engine.outerPayload();
      const mine = outerMessage(phi, theta);
      expect(payload.phi).toEqual(mine.phi);
      expect(relErr(payload.delta, mine.delta)).toBeLessThan(TOL);
      const partners = Array.from({ length: c.partners }, (_, j) => ({ phi: randomArray(layout.total, 20 + j), delta: randomArray(layout.total, 30 + j, 0.05) }));
      const h = { momentum: 0.5, lr: 0.7, consensus: c.diloco ? 0 : 0.7 };
      const got = await engine.applyOuter(partners, { alpha: h.momentum, beta: h.lr, gamma: h.consensus });

      const want = { phi: phi.slice(), momentum: m.slice(), theta: theta.slice() };
      if (c.diloco) dilocoOuterStep(want, meanInto(new Float32Array(layout.total), [mine.delta, ...partners.map((p) => p.delta)]), h);
      else nolocoOuterStep(want, [mine, ...partners], h);
      expect(relErr(got.phi, want.phi)).toBeLessThan(TOL);
      expect(relErr(got.outerM, want.momentum)).toBeLessThan(TOL);
      const st = await engine.readState();
      expect(relErr(st.params, want.theta)).toBeLessThan(TOL); // θ <- φ
      expect(st.params).toEqual(st.phi);
      expect(st.step).toBe(7);
    });
  }
});
