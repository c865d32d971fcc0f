// `murmur train-gpu`: one replica on the WGSL engine in Node (Dawn; SwiftShader when there is no
// GPU driver), no network: the headless volunteer's Trainer on the default corpus or a prepared
// dataset, printing train/validation loss like `murmur train` does for the CPU reference.
import type { Command } from 'commander';
import { singleReplicaOptions, type SingleReplicaOptions } from './options.ts';
import { preset, trainConfig } from '../model/config.ts';
import { datasetFromCorpus, loadDataset } from '../data/dataset.ts';
import { validationBatches } from '../data/sampler.ts';
import { createNodeTrainer } from '../worker/node.ts';
import { describeRates } from '../gpu/autotune.ts';
import type { TrainerInfo } from '../worker/types.ts';

export interface TrainGpuOptions extends SingleReplicaOptions {
  autotune: boolean;
}

export interface GpuEvalPoint { step: number; trainLoss: number; valLoss: number; ms: number; info: TrainerInfo }

/** Trains on the GPU engine and yields a point at every evaluation (step 0 included). */
export async function* trainGpu(o: TrainGpuOptions): AsyncGenerator<GpuEvalPoint> {
  const model = preset(o.preset);
  const T = o.seqLen ?? model.ctx;
  const train = trainConfig({ batch: o.batch, seqLen: T, lr: o.lr, totalSteps: o.steps, warmupSteps: Math.min(100, Math.ceil(o.steps / 10)) }, model);
  const data = o.data ? loadDataset(o.data) : datasetFromCorpus();
  const val = validationBatches(data.val, o.batch, T, o.evalBatches);
  const trainer = createNodeTrainer();
  try {
    const info = await trainer.init({ model, train, data: data.train, autotune: o.autotune, readEvery: Math.min(o.evalEvery, 50) }, o.seed);
    const t0 = performance.now();
    yield { step: 0, trainLoss: NaN, valLoss: await trainer.evaluate(val), ms: 0, info };
    for (let s = 0; s < o.steps;) {
      const n = Math.min(o.evalEvery, o.steps - s);
      const losses = await trainer.train(n);
      s += n;
      yield { step: s, trainLoss: losses.reduce((a, b) => a + b, 0) / n, valLoss: await trainer.evaluate(val), ms: performance.now() - t0, info };
    }
  } finally {
    trainer.dispose();
  }
}

export function register(program: Command): void {
  singleReplicaOptions(program
    .command('train-gpu')
    .description('train one replica on the WGSL engine (Dawn in Node) and print train/validation loss'), { batch: 8, evalBatches: 4 })
    .option('--no-autotune', 'use the default kernel shapes instead of measuring (cached per adapter)')
    .action(async (o: TrainGpuOptions) => {
      console.log(`murmur train-gpu: preset ${o.preset}, ${o.steps} steps of ${o.batch}x${o.seqLen ?? preset(o.preset).ctx} tokens, ` +
        `data ${o.data ?? 'Moby Dick (default)'}`);
      for await (const p of trainGpu(o)) {
        if (p.step === 0) {
          console.log(`  ${p.info.adapter}; ${(p.info.params / 1e6).toFixed(2)}M params; ${p.info.dispatchesPerStep} dispatches/step; ` +
            `${(p.info.gpuBytes / 2 ** 20).toFixed(0)} MiB of GPU buffers`);
          console.log(`  matmul: ${describeRates(p.info.matmulRates)}`);
          console.log('  step   train loss   val loss   elapsed   ms/step');
        }
        const tl = Number.isNaN(p.trainLoss) ? '      -' : p.trainLoss.toFixed(4).padStart(7);
        const per = p.step > 0 ? (p.ms / p.step).toFixed(0).padStart(7) : '      -';
        console.log(`${String(p.step).padStart(6)}   ${tl}      ${p.valLoss.toFixed(4)}   ${(p.ms / 1000).toFixed(1).padStart(6)}s   ${per}`);
      }
    });
}
