// The inner learning-rate schedule: linear warm-up, then cosine decay to a floor (nanoGPT's
// get_lr). Warm-up starts at lr/warmupSteps, not 0, so the very first step already moves.
import type { TrainConfig } from '../model/config.ts';

/** Learning rate for inner step `step` (0-based). */
export function learningRate(step: number, cfg: Pick<TrainConfig, 'lr' | 'warmupSteps' | 'totalSteps' | 'minLrFrac'>): number {
  if (!Number.isInteger(step) || step < 0) throw new Error(`learningRate: step must be a non-negative integer, got ${step}`);
  const { lr, warmupSteps, totalSteps, minLrFrac } = cfg;
  const minLr = lr * minLrFrac;
  if (step < warmupSteps) return (lr * (step + 1)) / warmupSteps;
  if (step >= totalSteps) return minLr;
  const progress = (step - warmupSteps) / (totalSteps - warmupSteps); // in [0, 1)
  return minLr + 0.5 * (1 + Math.cos(Math.PI * progress)) * (lr - minLr);
}
