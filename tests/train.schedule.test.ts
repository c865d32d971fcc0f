// The inner learning-rate schedule: linear warm-up, cosine decay, constant floor.
import { describe, expect, it } from 'vitest';
import { learningRate } from '../src/train/schedule.ts';

const cfg = { lr: 1, warmupSteps: 10, totalSteps: 110, minLrFrac: 0.1 };

describe('learningRate', () => {
  it('warms up linearly from lr/warmup to lr', () => {
    expect(learningRate(0, cfg)).toBeCloseTo(0.1, 15);
    expect(learningRate(4, cfg)).toBeCloseTo(0.5, 15);
    expect(learningRate(9, cfg)).toBeCloseTo(1, 15);
  });

  it('follows a cosine from lr down to lr*minLrFrac, then stays there', () => {
    expect(learningRate(10, cfg)).toBeCloseTo(1, 15);
    expect(learningRate(60, cfg)).toBeCloseTo(0.55, 15); // half way: 0.1 + 0.5 * 0.9
    expect(learningRate(35, cfg)).toBeCloseTo(0.1 + 0.9 * 0.5 * (1 + Math.cos(Math.PI / 4)), 15);
    expect(learningRate(110, cfg)).toBeCloseTo(0.1, 15);
    expect(learningRate(10_000, cfg)).toBeCloseTo(0.1, 15);
    for (let s = 10; s < 120; s++) expect(learningRate(s + 1, cfg)).toBeLessThanOrEqual(learningRate(s, cfg));
  });

  it('works without warm-up and rejects a bad step', () => {
    expect(learningRate(0, { ...cfg, warmupSteps: 0 })).toBe(1);
    expect(() => learningRate(-1, cfg)).toThrow(/non-negative integer/);
    expect(() => learningRate(1.5, cfg)).toThrow(/non-negative integer/);
  });
});
