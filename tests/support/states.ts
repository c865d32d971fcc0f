// Slow states for checkpoint and bootstrap tests: an honest one (φ trained for a few steps on
// the run's own data with the CPU trainer) and the attacks on it, with the validation loss the
// coordinator would measure (the same function its worker runs).
import { measureValLoss } from '../../server/checkpoint-eval-worker.ts';
import { datasetFromCorpus } from '../../src/data/dataset.ts';
import { stateCheckBatchCount, WindowSampler } from '../../src/data/sampler.ts';
import { trainConfig } from '../../src/model/config.ts';
import { buildLayout } from '../../src/model/layout.ts';
import type { RunInfo } from '../../src/protocol/messages.ts';
import type { StateFrame } from '../../src/protocol/state-frame.ts';
import { CpuTrainer } from '../../src/train/cpu-trainer.ts';

const corpus = datasetFromCorpus();

/** The validation loss of `phi` on `run`'s state check windows of the default corpus (Moby Dick's held-out chapters). */
export function valLoss(run: RunInfo, phi: Float32Array): number {
  const train = { batch: run.train.batch, seqLen: run.train.seqLen };
  return measureValLoss({ model: run.model, train, val: corpus.val, phi, batches: stateCheckBatchCount(run.model, train) });
}

/** φ after `steps` CPU steps on the corpus (lr 3e-3), momentum small; counters of a replica that far. */
export function honestState(run: RunInfo, steps: number, seed = 1): StateFrame {
  const layout = buildLayout(run.model);
  const cfg = trainConfig({ ...run.train, lr: 3e-3, warmupSteps: 5, totalSteps: steps }, run.model);
  const t = new CpuTrainer(layout, cfg, undefined, seed);
  const sampler = new WindowSampler(corpus.train, { seed, replica: 0 });
  for (let s = 0; s < steps; s++) t.trainStep(sampler.next(cfg.batch, cfg.seqLen));
  const momentum = new Float32Array(layout.total);
  for (let i = 0; i < momentum.length; i++) momentum[i] = 1e-4 * Math.sin(i);
  return {
    meta: { runId: run.id, step: steps, round: Math.floor(steps / run.train.H), floats: layout.total, valLoss: null, tokens: steps * cfg.batch * cfg.seqLen },
    phi: t.params.slice(), momentum,
  };
}

/** The same state with φ negated (every weight, LayerNorm gains included). */
export function negated(s: StateFrame): StateFrame {
  return { meta: { ...s.meta }, phi: s.phi.map((x) => -x), momentum: s.momentum.slice() };
}
