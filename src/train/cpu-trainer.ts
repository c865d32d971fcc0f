// Inner training on the CPU with the reference model: forward, backward, clip, AdamW. It runs
// the simulator's replicas and headless `npm start` peers, so a step allocates nothing: every
// buffer (params, grads, m, v, activations) is made once and reused.
import type { Batch } from '../data/batch.ts';
import type { TrainConfig } from '../model/config.ts';
import type { Layout } from '../model/layout.ts';
import { initParams } from '../model/init.ts';
import { ReferenceGPT } from '../model/reference.ts';
import { adamwUpdate, clipGrads, gradNorm } from '../model/adamw.ts';
import { learningRate } from './schedule.ts';

export class CpuTrainer {
  readonly layout: Layout;
  readonly cfg: TrainConfig;
  /** Fast weights θ (layout.total floats). Updated in place; the buffer never changes. */
  readonly params: Float32Array;
  /** Gradients of the last step, after clipping. */
  readonly grads: Float32Array;
  /** AdamW moments; local to the replica, never exchanged. */
  readonly m: Float32Array;
  readonly v: Float32Array;
  /** Inner steps taken; the next step uses learningRate(step) and AdamW step `step + 1`. */
  step = 0;
  /** Global gradient norm of the last step, before clipping. */
  lastGradNorm = 0;
  /** Learning rate used by the last step. */
  lastLr = 0;
  private readonly model: ReferenceGPT;
  /**
   * Dynamic loss scaling (f16 operands only): the loss gradient is multiplied by `lossScale`
   * so that small gradients survive f16; a step whose gradients overflow is skipped (weights
   * and moments unchanged; the step still counts, so the schedule moves on as with PyTorch's
   * GradScaler and an LR scheduler) and the scale halves; after `growthInterval` good steps in
   * a row it doubles. PyTorch's GradScaler defaults.
   */
  lossScale: number;
  readonly growthInterval: number;
  /** Steps skipped because the scaled gradients overflowed. */
  skippedSteps = 0;
  private goodSteps = 0;

  /**
   * `params` is copied (default: initParams(layout, seed)). `half`: the matmul and attention
   * operands in f16, with f32 accumulation, master weights and AdamW, and dynamic loss scaling.
   */
  constructor(layout: Layout, cfg: TrainConfig, params?: Float32Array, seed = 0, opts: { half?: boolean; lossScale?: number; growthInterval?: number } = {}) {
    this.layout = layout;
    this.cfg = cfg;
    this.params = params ? copyChecked(params, layout, 'CpuTrainer params') : initParams(layout, seed);
    this.grads = new Float32Array(layout.total);
    this.m = new Float32Array(layout.total);
    this.v = new Float32Array(layout.total);
    this.model = new ReferenceGPT(layout, 'f32', { half: opts.half });
    this.lossScale = opts.half ? opts.lossScale ?? 2 ** 16 : 1;
    this.growthInterval = opts.growthInterval ?? 2000;
    if (!(this.lossScale > 0 && Number.isFinite(this.lossScale))) throw new Error(`CpuTrainer: lossScale must be a positive finite number, got ${opts.lossScale}`);
    if (!(Number.isInteger(this.growthInterval) && this.growthInterval >= 1)) throw new Error(`CpuTrainer: growthInterval must be a positive integer, got ${opts.growthInterval}`);
  }

  /** One inner step on `batch`; returns its loss (measured before the update, or before a skipped one). */
  trainStep(batch: Batch): number {
    const loss = this.model.forward(this.params, batch);
    if (!Number.isFinite(loss)) {
      throw new Error(`CpuTrainer: loss is ${loss} at step ${this.step}; parameters left unchanged (lower lr or check the data)`);
    }
    this.model.backward(this.params, this.grads, this.lossScale);
    if (this.model.half) {
      const inv = 1 / this.lossScale;
      let finite = true;
      for (let i = 0; i < this.grads.length; i++) {
        const g = this.grads[i]! * inv;
        if (!Number.isFinite(g)) { finite = false; break; }
        this.grads[i] = g;
      }
      if (!finite) {
        this.lossScale /= 2;
        this.goodSteps = 0;
        this.skippedSteps++;
        this.step++; // a skipped step still counts (schedule and AdamW's t), as on the GPU
        return loss;
      }
      if (++this.goodSteps >= this.growthInterval) { this.lossScale *= 2; this.goodSteps = 0; }
    }
    this.lastGradNorm = this.cfg.gradClip > 0 ? clipGrads(this.grads, this.cfg.gradClip) : gradNorm(this.grads);
    if (!Number.isFinite(this.lastGradNorm)) {
      throw new Error(`CpuTrainer: gradient norm is ${this.lastGradNorm} at step ${this.step}; parameters left unchanged`);
    }
    this.lastLr = learningRate(this.step, this.cfg);
    adamwUpdate(this.params, this.grads, this.m, this.v, this.layout, this.step + 1, this.lastLr, this.cfg);
    this.step++;
    return loss;
  }

  /** Token-weighted mean loss over `batches`; changes no training state. */
  evaluate(batches: Batch[]): number {
    if (batches.length === 0) throw new Error('CpuTrainer.evaluate: no batches given');
    let sum = 0, tokens = 0;
    for (const b of batches) {
      const n = b.B * b.T;
      sum += this.model.forward(this.params, b) * n;
      tokens += n;
    }
    return sum / tokens;
  }

  /** Replaces the weights (e.g. θ ← φ after an outer step); moments and step are kept. */
  setParams(p: Float32Array): void {
    if (p.length !== this.layout.total) {
      throw new Error(`CpuTrainer.setParams: got ${p.length} floats, the layout needs ${this.layout.total}`);
    }
    this.params.set(p);
  }
}

function copyChecked(p: Float32Array, layout: Layout, what: string): Float32Array {
  if (!(p instanceof Float32Array) || p.length !== layout.total) {
    throw new Error(`${what}: need a Float32Array of ${layout.total} floats, got ${p?.constructor?.name} of ${p?.length}`);
  }
  return p.slice();
}
