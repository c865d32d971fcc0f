import { describe, expect, it } from 'vitest';
import { trainLocal, type EvalPoint } from '../src/commands/train.ts';

describe('murmur train (the CPU main job before the coordinator)', () => {
  it('drives the validation loss on Moby Dick down from ln(256)', async () => {
    const points: EvalPoint[] = [];
    for await (const p of trainLocal({ preset: 'micro', steps: 60, batch: 8, lr: 3e-3, evalEvery: 20, evalBatches: 4, seed: 3 })) points.push(p);
    expect(points.map((p) => p.step)).toEqual([0, 20, 40, 60]);
    expect(points[0]!.valLoss).toBeGreaterThan(5.3); // untrained: about ln(256) = 5.55
    for (let i = 1; i < points.length; i++) expect(points[i]!.valLoss).toBeLessThan(points[i - 1]!.valLoss);
    expect(points.at(-1)!.valLoss).toBeLessThan(3.6); // byte unigram statistics alone give ~3.4-3.5
  });
});
