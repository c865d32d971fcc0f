// CpuTrainer: the reference model + clip + AdamW + schedule as one inner step.
import { describe, expect, it } from 'vitest';
import { preset, trainConfig } from '../src/model/config.ts';
import { buildLayout } from '../src/model/layout.ts';
import { initParams } from '../src/model/init.ts';
import { CpuTrainer } from '../src/train/cpu-trainer.ts';
import { learningRate } from '../src/train/schedule.ts';
import { randomBatch } from './support/batches.ts';

const model = preset('micro');
const layout = buildLayout(model);
const cfg = trainConfig({ batch: 4, lr: 3e-3, warmupSteps: 10, totalSteps: 100 }, model);

describe('CpuTrainer', () => {
  it('starts near ln(256) and drives the loss down over 100 steps on a repeated batch', () => {
    const trainer = new CpuTrainer(layout, cfg, undefined, 1);
    const batch = randomBatch(4, 32, 2);
    const losses: number[] = [];
    for (let s = 0; s < 100; s++) losses.push(trainer.trainStep(batch));
    // Random init gives near-uniform predictions over 256 bytes: loss ~ ln 256 = 5.545.
    expect(Math.abs(losses[0]! - Math.log(256))).toBeLessThan(0.05);
    // 128 random tokens are memorised: the loss falls well below the uniform level.
    expect(losses[99]!).toBeLessThan(2);
    expect(losses[99]!).toBeLessThan(losses[50]!);
    expect(trainer.step).toBe(100);
    expect(trainer.lastLr).toBe(learningRate(99, cfg));
  });

  it('is deterministic and starts from initParams(layout, seed) or a copy of the given params', () => {
    const batch = randomBatch(2, 16, 3);
    const a = new CpuTrainer(layout, cfg, undefined, 9), b = new CpuTrainer(layout, cfg, initParams(layout, 9));
    expect(a.params).toEqual(initParams(layout, 9));
    for (let s = 0; s < 3; s++) expect(a.trainStep(batch)).toBe(b.trainStep(batch));
    expect(a.params).toEqual(b.params);
    const given = initParams(layout, 4);
    const c = new CpuTrainer(layout, cfg, given);
    c.trainStep(batch);
    expect(given).toEqual(initParams(layout, 4)); // the caller's buffer is not trained in place
  });

  it('evaluate returns the token-weighted mean loss and changes no training state', () => {
    const trainer = new CpuTrainer(layout, cfg, undefined, 5);
    trainer.trainStep(randomBatch(4, 32, 4));
    const before = [trainer.params.slice(), trainer.m.slice(), trainer.v.slice()];
    const x = randomBatch(2, 32, 5), y = randomBatch(1, 8, 6);
    const lx = trainer.evaluate([x]), ly = trainer.evaluate([y]);
    expect(trainer.evaluate([x, y])).toBeCloseTo((lx * 64 + ly * 8) / 72, 12);
    expect([trainer.params, trainer.m, trainer.v]).toEqual(before);
    expect(trainer.step).toBe(1);
    expect(() => trainer.evaluate([])).toThrow(/no batches/);
  });

  it('setParams replaces the weights in place and keeps the moments', () => {
    const trainer = new CpuTrainer(layout, cfg, undefined, 5);
    trainer.trainStep(randomBatch(2, 8, 7));
    const buf = trainer.params, m = trainer.m.slice();
    const phi = initParams(layout, 77);
    trainer.setParams(phi);
    expect(trainer.params).toBe(buf);
    expect(trainer.params).toEqual(phi);
    expect(trainer.m).toEqual(m);
    expect(() => trainer.setParams(new Float32Array(3))).toThrow(/needs/);
  });

  it('rejects a bad batch with a clear error and leaves the parameters unchanged', () => {
    const trainer = new CpuTrainer(layout, cfg, undefined, 5);
    const before = trainer.params.slice();
    const bad = randomBatch(2, 8, 8);
    bad.tokens[3] = 256;
    expect(() => trainer.trainStep(bad)).toThrow(/token 256 at index 3 is outside the vocabulary/);
    expect(() => trainer.trainStep(randomBatch(1, 33, 8))).toThrow(/T must be an integer in 1\.\.32/);
    expect(() => trainer.trainStep({ ...randomBatch(2, 8, 8), B: 3 })).toThrow(/tokens must be a Uint32Array of B\*T=24/);
    expect(trainer.params).toEqual(before);
    expect(trainer.step).toBe(0);
  });
});
