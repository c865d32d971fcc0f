// The whole GPU training step against the CPU reference trainer (CpuTrainer: reference.ts +
// clip + AdamW + schedule): 20 steps of `micro` from the same initial weights on the same
// batches. Losses must agree within 1e-3 relative at every step; final parameters within
// 2e-3 of the largest parameter change (|θ_gpu - θ_cpu|∞ / |θ_cpu - θ_0|∞), the gap that f32
// summation order leaves after AdamW's normalisation of tiny gradients.
// Also checks the engine's contract: one submit per step and no per-step readback.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { preset, trainConfig } from '../src/model/config.ts';
import { initParams } from '../src/model/init.ts';
import { buildLayout } from '../src/model/layout.ts';
import { CpuTrainer } from '../src/train/cpu-trainer.ts';
import { GpuEngine } from '../src/gpu/engine.ts';
import type { Tuning } from '../src/gpu/kernels.ts';
import { getTestDevice, withGpuScope } from './support/gpu.ts';
import { randomBatch } from './support/batches.ts';

const model = preset('micro');
const layout = buildLayout(model);
const B = 4, T = 32, STEPS = 20;
const cfg = trainConfig({ batch: B, seqLen: T, lr: 3e-3, warmupSteps: 5, totalSteps: 100 }, model);
const batches = Array.from({ length: 4 }, (_, i) => randomBatch(B, T, 100 + i));

let device: GPUDevice;
let engine: GpuEngine;
beforeAll(async () => {
  device = await getTestDevice();
  engine = await withGpuScope(device, () => new GpuEngine(device, { layout, train: cfg, B, T, readEvery: 8 }));
});
afterAll(() => engine?.destroy());

const zeros = () => new Float32Array(layout.total);
/** The largest |GPU - CPU| parameter gap, and the largest change the CPU made from theta0. */
const paramGap = (gpu: Float32Array, cpu: Float32Array, theta0: Float32Array) => {
  let diff = 0, change = 0;
  for (let i = 0; i < cpu.length; i++) {
    diff = Math.max(diff, Math.abs(gpu[i] - cpu[i]));
    change = Math.max(change, Math.abs(cpu[i] - theta0[i]));
  }
  return { diff, change };
};

describe('GpuEngine vs CpuTrainer on micro', () => {
  it(`${STEPS} steps: losses within 1e-3 relative, parameters within 2e-3 of the largest change`, async () => {
    const theta0 = initParams(layout, 3);
    const cpu = new CpuTrainer(layout, cfg, theta0);
    const cpuLosses: number[] = [];
    for (let s = 0; s < STEPS; s++) cpuLosses.push(cpu.trainStep(batches[s % batches.length]));

    await withGpuScope(device, async () => {
      engine.writeState({ params: theta0, m: zeros(), v: zeros(), phi: theta0, outerM: zeros(), step: 0 });
      // Count submits and map requests while training: the contract is one submit per step and
      // read-backs only every readEvery (8) steps.
      const queue = device.queue;
      const submit = queue.submit.bind(queue);
      let submits = 0;
      queue.submit = (cbs: Iterable<GPUCommandBuffer>) => { submits++; submit(cbs); };
      const mapAsync = GPUBuffer.prototype.mapAsync;
      let maps = 0;
      GPUBuffer.prototype.mapAsync = function (this: GPUBuffer, ...args: Parameters<GPUBuffer['mapAsync']>) { maps++; return mapAsync.apply(this, args); };
      let stats;
      try {
        let s = 0;
        stats = await engine.train(STEPS, () => batches[s++ % batches.length]);
      } finally {
        queue.submit = submit;
        GPUBuffer.prototype.mapAsync = mapAsync;
      }
      expect(submits).toBe(STEPS);
      expect(maps).toBe(Math.ceil(STEPS / 8));
      expect(engine.step).toBe(STEPS);

      for (let s = 0; s < STEPS; s++) {
        expect(Math.abs(stats.losses[s] - cpuLosses[s]) / cpuLosses[s], `step ${s}: gpu ${stats.losses[s]} cpu ${cpuLosses[s]}`).toBeLessThan(1e-3);
      }
      expect(cpuLosses[STEPS - 1]).toBeLessThan(cpuLosses[0] - 0.3); // it did learn something
      const st = await engine.readState();
      const { diff, change } = paramGap(st.params, cpu.params, theta0);
      console.log(`[engine] max |θ_gpu - θ_cpu| = ${diff.toExponential(2)}, max change ${change.toExponential(2)}, ratio ${(diff / change).toExponential(2)}; dispatches/step ${engine.dispatchesPerStep}`);
      expect(diff / change).toBeLessThan(2e-3);
      // AdamW moments agree too (m is a plain average of clipped gradients).
      let mdiff = 0, mscale = 0;
      for (let i = 0; i < layout.total; i++) { mdiff = Math.max(mdiff, Math.abs(st.m[i] - cpu.m[i])); mscale = Math.max(mscale, Math.abs(cpu.m[i])); }
      expect(mdiff / mscale).toBeLessThan(1e-3);
    });
  });

  it('evaluate matches the reference loss and leaves the weights alone', async () => {
    await withGpuScope(device, async () => {
      const theta = initParams(layout, 8);
      engine.writeState({ params: theta, m: zeros(), v: zeros(), phi: theta, outerM: zeros(), step: 0 });
      const cpu = new CpuTrainer(layout, cfg, theta);
      const got = await engine.evaluate(batches.slice(0, 3));
      expect(Math.abs(got - cpu.evaluate(batches.slice(0, 3))) / got).toBeLessThan(1e-5);
      expect((await engine.readState()).params).toEqual(theta);
    });
  });
});

describe('GpuEngine on an awkward model (scalar-load paths, ragged tiles)', () => {
  it('d=30, heads=3 (head size 10), vocab=253, B=1, T=13: 3 steps match CpuTrainer', async () => {
    const m = { vocab: 253, ctx: 16, layers: 1, d: 30, heads: 3 };
    const lay = buildLayout(m);
    const c = trainConfig({ batch: 1, seqLen: 13, lr: 1e-2, warmupSteps: 1, totalSteps: 10 }, m);
    const bs = [randomBatch(1, 13, 5, 253), randomBatch(1, 13, 6, 253)];
    const theta0 = initParams(lay, 4);
    const cpu = new CpuTrainer(lay, c, theta0);
    const want = [0, 1, 2].map((s) => cpu.trainStep(bs[s % 2]));
    await withGpuScope(device, async () => {
      const e = new GpuEngine(device, { layout: lay, train: c, B: 1, T: 13, readEvery: 2 });
      try {
        const z = new Float32Array(lay.total);
        e.writeState({ params: theta0, m: z, v: z, phi: theta0, outerM: z, step: 0 });
        let s = 0;
        const got = await e.train(3, () => bs[s++ % 2]);
        for (let i = 0; i < 3; i++) expect(Math.abs(got.losses[i] - want[i]) / want[i]).toBeLessThan(1e-3);
        const st = await e.readState();
        const { diff, change } = paramGap(st.params, cpu.params, theta0);
        expect(diff / change).toBeLessThan(2e-3);
      } finally {
        e.destroy();
      }
    });
  });
});

describe('GpuEngine with the kernels a GPU picks (register-blocked attention, wide LayerNorm, K split on every product kind, prefetched tiles)', () => {
  // The H200's matmul tuning (bench/results/torch-h200.json) with the attention and LayerNorm
  // kernels a GPU may pick, nn and nt with K in 2 ranges and tn's tiles prefetched: the same 20 steps as the default
  // kernels above, within the same bounds.
  const gpuTuning: Tuning = {
    matmul: {
      nn: { wgX: 16, wgY: 4, tm: 8, vec4: true, splitK: 2 },
      nt: { wgX: 4, wgY: 16, tm: 8, vec4: true, splitK: 2 },
      tn: { wgX: 16, wgY: 8, tm: 8, vec4: true, tile: true, splitK: 8, prefetch: true },
    },
    stride: { wg: 256, groups: 1024 },
    attention: 'blocked',
    layernorm: 'wide',
  };
  it(`${STEPS} steps: losses within 1e-3 relative, parameters within 2e-3 of the largest change`, async () => {
    const theta0 = initParams(layout, 3);
    const cpu = new CpuTrainer(layout, cfg, theta0);
    const cpuLosses = Array.from({ length: STEPS }, (_, s) => cpu.trainStep(batches[s % batches.length]));
    await withGpuScope(device, async () => {
      const e = new GpuEngine(device, { layout, train: cfg, B, T, readEvery: 8, tuning: gpuTuning });
      try {
        e.writeState({ params: theta0, m: zeros(), v: zeros(), phi: theta0, outerM: zeros(), step: 0 });
        let s = 0;
        const got = await e.train(STEPS, () => batches[s++ % batches.length]);
        for (let i = 0; i < STEPS; i++) {
          expect(Math.abs(got.losses[i] - cpuLosses[i]) / cpuLosses[i], `step ${i}: gpu ${got.losses[i]} cpu ${cpuLosses[i]}`).toBeLessThan(1e-3);
        }
        const st = await e.readState();
        const { diff, change } = paramGap(st.params, cpu.params, theta0);
        expect(diff / change).toBeLessThan(2e-3);
      } finally {
        e.destroy();
      }
    });
  });
});
