import { describe, expect, it } from 'vitest';
import { trainLocal, type EvalPoint } from '../src/commands/train.ts';
import { preset, trainConfig } from '../src/model/config.ts';
import { buildLayout } from '../src/model/layout.ts';
import { CpuTrainer } from '../src/train/cpu-trainer.ts';
import { datasetFromCorpus } from '../src/data/dataset.ts';
import { WindowSampler, validationBatches } from '../src/data/sampler.ts';

describe('murmur train (the CPU main job before the coordinator)', () => {
  it('drives the validation loss on Moby Dick down from ln(256)', async () => {
    const points: EvalPoint[] = [];
    for await (const p of trainLocal({ preset: 'micro', steps: 60, batch: 8, lr: 3e-3, evalEvery: 20, evalBatches: 4, seed: 3 })) points.push(p);
    expect(points.map((p) => p.step)).toEqual([0, 20, 40, 60]);
    expect(points[0]!.valLoss).toBeGreaterThan(5.3); // untrained: about ln(256) = 5.55
    for (let i = 1; i < points.length; i++) expect(points[i]!.valLoss).toBeLessThan(points[i - 1]!.valLoss);
    expect(points.at(-1)!.valLoss).toBeLessThan(3.6); // byte unigram statistics alone give ~3.4-3.5
  });

  it('trains on a run\'s schedule when given one, exactly as a trainer with that config', async () => {
    const schedule = { warmupSteps: 3, totalSteps: 100_000 };
    const o = { preset: 'micro', steps: 12, batch: 2, lr: 3e-3, evalEvery: 12, evalBatches: 2, seed: 5 };
    const last = async (x: Parameters<typeof trainLocal>[0]) => { let v = NaN; for await (const p of trainLocal(x)) v = p.valLoss; return v; };
    const withRun = await last({ ...o, schedule });
    // The same steps by hand: the run's warm-up and cosine, the same data stream and init.
    const model = preset('micro');
    const trainer = new CpuTrainer(buildLayout(model), trainConfig({ batch: 2, seqLen: 32, lr: 3e-3, ...schedule }, model), undefined, 5);
    const data = datasetFromCorpus();
    const sampler = new WindowSampler(data.train, { seed: 5, replica: 0 });
    for (let s = 0; s < 12; s++) trainer.trainStep(sampler.next(2, 32));
    expect(withRun).toBe(trainer.evaluate(validationBatches(data.val, 2, 32, 2)));
    // The default decays over the 12 steps: a different trajectory.
    expect(await last(o)).not.toBe(withRun);
  });
});
