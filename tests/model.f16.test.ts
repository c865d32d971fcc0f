// f16 operands (issue 17): IEEE binary16 rounding on the CPU, and a training run whose matmul
// and attention inputs are rounded to f16 (f32 accumulation, master weights and AdamW, dynamic
// loss scaling) against the same run in f32. SwiftShader has no `shader-f16`, so this is where
// the suite checks the numerics a GPU's f16 path must reproduce.
import { describe, expect, it } from 'vitest';
import { F16_MAX, f16round, roundF16 } from '../src/model/half.ts';
import { preset, trainConfig, type PresetName } from '../src/model/config.ts';
import { buildLayout } from '../src/model/layout.ts';
import { initParams } from '../src/model/init.ts';
import { CpuTrainer } from '../src/train/cpu-trainer.ts';
import { loadDefaultCorpus } from '../src/data/corpus.ts';
import { WindowSampler } from '../src/data/sampler.ts';
import type { Batch } from '../src/data/batch.ts';

describe('f16round', () => {
  it('rounds to the nearest binary16 value, ties to even, overflow to infinity', () => {
    const cases: [number, number][] = [
      [0, 0], [1, 1], [-2, -2], [1 / 3, 0.333251953125], [0.1, 0.0999755859375],
      [F16_MAX, F16_MAX], [65519, F16_MAX], [65520, Infinity], [-65520, -Infinity], [1e6, Infinity],
      [1 + 2 ** -11, 1], // half an ulp above 1: the tie goes to the even 1
      [1 + 3 * 2 ** -11, 1 + 2 ** -9], // one and a half ulps: the tie goes to the even 1 + 2 ulps
      [1 + 2 ** -11 + 2 ** -20, 1 + 2 ** -10], // just over half an ulp rounds up
      [2 ** -14, 2 ** -14], // the smallest normal
      [2 ** -24, 2 ** -24], // the smallest subnormal
      [2 ** -25, 0], // half of it: the tie goes to the even 0
      [3 * 2 ** -25, 2 ** -23], // one and a half: the tie goes to the even 2 × 2^-24
      [1e-9, 0], [Infinity, Infinity], [-Infinity, -Infinity],
    ];
    for (const [x, want] of cases) expect(f16round(x), `f16round(${x})`).toBe(want);
    expect(f16round(NaN)).toBeNaN();
  });

  it('matches the spacing of binary16 at every exponent', () => {
    for (let e = -14; e <= 15; e++) {
      const ulp = 2 ** (e - 10);
      const x = 2 ** e * 1.5;
      expect(f16round(x + 0.25 * ulp)).toBe(x);
      expect(f16round(x + 0.75 * ulp)).toBe(x + ulp);
    }
  });

  it('rounds arrays in place', () => {
    const a = Float32Array.from([1 / 3, 70000, -1e-9]);
    roundF16(a, a);
    expect([...a]).toEqual([0.333251953125, Infinity, -0]);
  });
});

describe('training with f16 operands', () => {
  const corpus = loadDefaultCorpus();
  const run = (name: PresetName, B: number, T: number, steps: number, half: boolean, opts: { lossScale?: number } = {}, seed = 1) => {
    const model = preset(name);
    const layout = buildLayout(model);
    const cfg = trainConfig({ batch: B, seqLen: T, lr: 3e-3, warmupSteps: 5, totalSteps: steps }, model);
    const trainer = new CpuTrainer(layout, cfg, initParams(layout, seed), 0, { half, ...opts });
    const sampler = new WindowSampler(corpus.train, { seed: 3 + seed, replica: 0 });
    const batches: Batch[] = Array.from({ length: steps }, () => sampler.next(B, T));
    const losses = batches.map((b) => trainer.trainStep(b));
    // Held-out windows, the same for both runs: one batch of B is too noisy a yardstick.
    const val = new WindowSampler(corpus.val, { seed: 5, replica: 0 });
    return { trainer, losses, after: trainer.evaluate(Array.from({ length: 8 }, () => val.next(8, T))) };
  };

  it('micro: the loss after 50 steps is within 1% of the f32 run\'s', () => {
    const f32 = run('micro', 4, 32, 50, false);
    const f16 = run('micro', 4, 32, 50, true);
    // The f16 run is not the f32 run: the rounding reached the products.
    expect(f16.losses.slice(1)).not.toEqual(f32.losses.slice(1));
    expect(f16.trainer.skippedSteps).toBe(0);
    console.log(`micro: loss after 50 steps f32 ${f32.after.toFixed(4)}, f16 operands ${f16.after.toFixed(4)}`);
    expect(Math.abs(f16.after - f32.after) / f32.after).toBeLessThan(0.01);
    expect(f16.after).toBeLessThan(f16.losses[0]! - 1); // and it learned
  });

  it('tiny: the loss after 50 steps, averaged over 4 seeds, is within 1% of the f32 runs\'', () => {
    // One tiny run at B = 2 is too noisy a yardstick for 1%: the same f32 run with its first
    // step skipped ends 1.5% lower. So both sides are averaged over 4 seeds (weights and data).
    const seeds = [1, 2, 3, 4];
    const pairs = seeds.map((seed) => [run('tiny', 2, 64, 50, false, {}, seed), run('tiny', 2, 64, 50, true, {}, seed)] as const);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const f32 = mean(pairs.map(([a]) => a.after)), f16 = mean(pairs.map(([, b]) => b.after));
    console.log(`tiny: loss after 50 steps per seed (f32, f16 operands): ${pairs.map(([a, b]) => `${a.after.toFixed(4)} ${b.after.toFixed(4)}`).join('; ')}; means ${f32.toFixed(4)} ${f16.toFixed(4)}`);
    for (const [, b] of pairs) expect(b.trainer.skippedSteps).toBeLessThanOrEqual(2); // the starting scale's overflow, at most
    expect(Math.abs(f16 - f32) / f32).toBeLessThan(0.01);
  });

  it('a step whose scaled gradients overflow f16 is skipped and the scale halves', () => {
    // 2^40 times the loss gradient does not fit in f16: the first steps overflow.
    const r = run('micro', 2, 16, 30, true, { lossScale: 2 ** 40 });
    expect(r.trainer.skippedSteps).toBeGreaterThan(0);
    expect(r.trainer.lossScale).toBe(2 ** (40 - r.trainer.skippedSteps));
    expect(r.trainer.step).toBe(30); // a skipped step still counts
    // A skipped step leaves the weights as they were.
    const model = preset('micro');
    const layout = buildLayout(model);
    const t = new CpuTrainer(layout, trainConfig({ batch: 2, seqLen: 16 }, model), initParams(layout, 1), 0, { half: true, lossScale: 2 ** 40 });
    const before = t.params.slice();
    t.trainStep(new WindowSampler(corpus.train, { seed: 3, replica: 0 }).next(2, 16));
    expect(t.skippedSteps).toBe(1);
    expect(t.params).toEqual(before);
  });

  it('refuses a loss scale that is not a positive finite number', () => {
    const model = preset('micro');
    const layout = buildLayout(model);
    expect(() => new CpuTrainer(layout, trainConfig({}, model), undefined, 0, { half: true, lossScale: 0 })).toThrow(/lossScale must be a positive finite number/);
    expect(() => new CpuTrainer(layout, trainConfig({}, model), undefined, 0, { half: true, growthInterval: 0.5 })).toThrow(/growthInterval must be a positive integer/);
  });
});
