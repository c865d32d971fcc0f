// Slow states for checkpoint and bootstrap tests: an honest one (φ trained for a few steps on
// the run's own data with the CPU trainer) and the attacks on it, with the validation loss the
// coordinator would measure (the same function its worker runs).
import { measureValLoss } from '../../server/checkpoint-eval-worker.ts';
import { datasetFromCorpus } from '../../src/data/dataset.ts';
import { stateCheckBatchCount, stateCheckBatches, WindowSampler } from '../../src/data/sampler.ts';
import { trainConfig } from '../../src/model/config.ts';
import { buildLayout } from '../../src/model/layout.ts';
import type { RunInfo } from '../../src/protocol/messages.ts';
import type { StateFrame } from '../../src/protocol/state-frame.ts';
import { CpuTrainer } from '../../src/train/cpu-trainer.ts';

const corpus = datasetFromCorpus();

/**
 * The seed of the coordinator's own check windows in tests (startServer fixes it, so its
 * measurements can be compared exactly; a real coordinator draws a secret one each time).
 */
export const CHECK_WINDOW_SEED = 424_242;

/**
 * The validation loss the coordinator measures of `phi` on `run` (its own windows, drawn from
 * CHECK_WINDOW_SEED) over the default corpus (Moby Dick's held-out chapters).
 */
export function valLoss(run: RunInfo, phi: Float32Array): number {
  const train = { batch: run.train.batch, seqLen: run.train.seqLen };
  return measureValLoss({ model: run.model, train, val: corpus.val, phi, batches: stateCheckBatchCount(run.model, train), seed: CHECK_WINDOW_SEED });
}

/**
 * The attack on public check windows: φ trained for `steps` CPU steps on the run's state check
 * windows alone (stateCheckBatches, a function of the run and its public validation text), small
 * momentum, plausible counters `step`.
 */
export function fittedToCheckWindows(run: RunInfo, steps: number, step: number): StateFrame {
  const layout = buildLayout(run.model);
  const cfg = trainConfig({ ...run.train, lr: 1e-2, warmupSteps: 5, totalSteps: steps }, run.model);
  const t = new CpuTrainer(layout, cfg, undefined, 9);
  const windows = stateCheckBatches(corpus.val, run.model, { batch: run.train.batch, seqLen: run.train.seqLen });
  for (let i = 0; i < steps; i++) t.trainStep(windows[i % windows.length]!);
  const momentum = new Float32Array(layout.total);
  for (let i = 0; i < momentum.length; i++) momentum[i] = 1e-4 * Math.sin(i);
  return { meta: { runId: run.id, step, round: Math.floor(step / run.train.H), floats: layout.total, valLoss: 0.01, tokens: 0 }, phi: t.params.slice(), momentum };
}

/**
 * The attack on the public validation text as a whole: φ trained for `steps` CPU steps (lr 3e-2)
 * on random windows of `text` alone, small momentum, plausible counters `step`.
 */
export function fittedToText(run: RunInfo, text: Uint8Array, steps: number, step: number): StateFrame {
  const layout = buildLayout(run.model);
  const cfg = trainConfig({ ...run.train, lr: 3e-2, warmupSteps: 5, totalSteps: steps }, run.model);
  const t = new CpuTrainer(layout, cfg, undefined, 3);
  const sampler = new WindowSampler(text, { seed: 5, replica: 0 });
  for (let i = 0; i < steps; i++) t.trainStep(sampler.next(cfg.batch, cfg.seqLen));
  const momentum = new Float32Array(layout.total);
  for (let i = 0; i < momentum.length; i++) momentum[i] = 1e-4 * Math.sin(i);
  return { meta: { runId: run.id, step, round: Math.floor(step / run.train.H), floats: layout.total, valLoss: 0.01, tokens: 0 }, phi: t.params.slice(), momentum };
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
