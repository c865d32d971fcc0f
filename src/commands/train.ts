// `murmur train`: one replica on the CPU reference, no network. The quickest way to see the
// model learn the default corpus (or a prepared dataset), and the oracle for what a volunteer's
// GPU should report for the same config and seed.
import type { Command } from 'commander';
import { singleReplicaOptions, type SingleReplicaOptions } from './options.ts';
import { preset } from '../model/config.ts';
import { trainConfig } from '../model/config.ts';
import { buildLayout } from '../model/layout.ts';
import { CpuTrainer } from '../train/cpu-trainer.ts';
import { datasetFromCorpus, loadDataset } from '../data/dataset.ts';
import { WindowSampler, validationBatches } from '../data/sampler.ts';

export type TrainOptions = SingleReplicaOptions & {
  /** A run's schedule instead of the default one over `steps` (a warm-up of a tenth, at most
   *  100 steps, then a cosine to the floor at the last step): a baseline for a swarm trains
   *  alone on the schedule its volunteers follow. */
  schedule?: { warmupSteps: number; totalSteps: number };
};

export interface EvalPoint { step: number; trainLoss: number; valLoss: number; ms: number }

/** Trains and yields a point at every evaluation (step 0 included). */
export async function* trainLocal(o: TrainOptions): AsyncGenerator<EvalPoint> {
  const model = preset(o.preset);
  const T = o.seqLen ?? model.ctx;
  const cfg = trainConfig({ batch: o.batch, seqLen: T, lr: o.lr, ...(o.schedule ?? { totalSteps: o.steps, warmupSteps: Math.min(100, Math.ceil(o.steps / 10)) }) }, model);
  const layout = buildLayout(model);
  const data = o.data ? loadDataset(o.data) : datasetFromCorpus();
  const sampler = new WindowSampler(data.train, { seed: o.seed, replica: 0 });
  const val = validationBatches(data.val, o.batch, T, o.evalBatches);
  const trainer = new CpuTrainer(layout, cfg, undefined, o.seed);
  const t0 = performance.now();
  let recent = 0, n = 0;
  yield { step: 0, trainLoss: NaN, valLoss: trainer.evaluate(val), ms: 0 };
  for (let s = 1; s <= o.steps; s++) {
    recent += trainer.trainStep(sampler.next(o.batch, T));
    n++;
    if (s % o.evalEvery === 0 || s === o.steps) {
      yield { step: s, trainLoss: recent / n, valLoss: trainer.evaluate(val), ms: performance.now() - t0 };
      recent = 0; n = 0;
    }
    // Let timers and signals run between steps.
    if (s % 8 === 0) await new Promise((r) => setImmediate(r));
  }
}

export function register(program: Command): void {
  singleReplicaOptions(program
    .command('train')
    .description('train one replica on the CPU reference and print train/validation loss'), { batch: 4, evalBatches: 8 })
    .action(async (o: TrainOptions) => {
      const layout = buildLayout(preset(o.preset));
      console.log(`murmur train: preset ${o.preset} (${(layout.params / 1e6).toFixed(2)}M params), ` +
        `${o.steps} steps of ${o.batch}x${o.seqLen ?? layout.config.ctx} tokens on the CPU reference, ` +
        `data ${o.data ?? 'Moby Dick (default)'}`);
      console.log('  step   train loss   val loss   elapsed');
      for await (const p of trainLocal(o)) {
        const tl = Number.isNaN(p.trainLoss) ? '      -' : p.trainLoss.toFixed(4).padStart(7);
        console.log(`${String(p.step).padStart(6)}   ${tl}      ${p.valLoss.toFixed(4)}   ${(p.ms / 1000).toFixed(1)}s`);
      }
    });
}
