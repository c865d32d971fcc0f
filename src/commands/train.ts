// `murmur train`: one replica on the CPU reference, no network. The quickest way to see the
// model learn the default corpus (or a prepared dataset), and the oracle for what a volunteer's
// GPU should report for the same config and seed.
import type { Command } from 'commander';
import { preset } from '../model/config.ts';
import { trainConfig } from '../model/config.ts';
import { buildLayout } from '../model/layout.ts';
import { CpuTrainer } from '../train/cpu-trainer.ts';
import { datasetFromCorpus, loadDataset } from '../data/dataset.ts';
import { WindowSampler, validationBatches } from '../data/sampler.ts';

export interface TrainOptions {
  preset: string;
  steps: number;
  batch: number;
  seqLen?: number;
  lr: number;
  evalEvery: number;
  evalBatches: number;
  seed: number;
  data?: string;
}

export interface EvalPoint { step: number; trainLoss: number; valLoss: number; ms: number }

/** Trains and yields a point at every evaluation (step 0 included). */
export async function* trainLocal(o: TrainOptions): AsyncGenerator<EvalPoint> {
  const model = preset(o.preset);
  const T = o.seqLen ?? model.ctx;
  const cfg = trainConfig({ batch: o.batch, seqLen: T, lr: o.lr, totalSteps: o.steps, warmupSteps: Math.min(100, Math.ceil(o.steps / 10)) }, model);
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
  program
    .command('train')
    .description('train one replica on the CPU reference and print train/validation loss')
    .option('--preset <name>', 'model preset (micro, tiny, small, base)', 'tiny')
    .option('--steps <n>', 'inner steps', (v) => positiveInt(v, '--steps'), 300)
    .option('--batch <n>', 'sequences per step', (v) => positiveInt(v, '--batch'), 4)
    .option('--seq-len <n>', 'tokens per sequence (default: the preset context)', (v) => positiveInt(v, '--seq-len'))
    .option('--lr <x>', 'peak learning rate', (v) => positiveNum(v, '--lr'), 2e-3)
    .option('--eval-every <n>', 'steps between validation evaluations', (v) => positiveInt(v, '--eval-every'), 25)
    .option('--eval-batches <n>', 'fixed validation batches', (v) => positiveInt(v, '--eval-batches'), 8)
    .option('--seed <n>', 'run seed', (v) => Number.parseInt(v, 10), 1)
    .option('--data <dir>', 'a dataset made by `murmur prepare` (default: Moby Dick)')
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

function positiveInt(v: string, name: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got "${v}"`);
  return n;
}
function positiveNum(v: string, name: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, got "${v}"`);
  return n;
}
