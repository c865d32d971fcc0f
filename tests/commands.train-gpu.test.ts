// `murmur train-gpu`: the Node Trainer (Dawn) on the default corpus, as the CLI runs it.
import { describe, expect, it } from 'vitest';
import { trainGpu, type GpuEvalPoint } from '../src/commands/train-gpu.ts';

describe('murmur train-gpu', () => {
  it('trains micro on Moby Dick and reports train and validation loss at each evaluation', async () => {
    const points: GpuEvalPoint[] = [];
    for await (const p of trainGpu({ preset: 'micro', steps: 6, batch: 2, seqLen: 16, lr: 3e-3, evalEvery: 3, evalBatches: 1, seed: 1, autotune: false })) points.push(p);
    expect(points.map((p) => p.step)).toEqual([0, 3, 6]);
    expect(points[0].trainLoss).toBeNaN();
    expect(Math.abs(points[0].valLoss - Math.log(256))).toBeLessThan(0.1);
    for (const p of points.slice(1)) {
      expect(Number.isFinite(p.trainLoss)).toBe(true);
      expect(Number.isFinite(p.valLoss)).toBe(true);
    }
    expect(points[2].valLoss).toBeLessThan(points[0].valLoss);
    expect(points[0].info.adapter).toMatch(/swiftshader/i);
    // The default shapes were not measured, and the report says so.
    expect(points[0].info.matmulRates).toEqual({ peak: null, rows: [] });
  });
});
