// Optimizer-side dispatches: loss reduction, global grad norm + clip + LR schedule, AdamW, and
// the outer (NoLoCo / DiLoCo) step. Built once per engine; the per-call uniforms are the outer
// step's partner count and hyper-parameters, written when an outer step happens, and the fixed
// learning rate the simulator writes before each step (GpuEngine.setFixedLr).
import type { TrainConfig } from '../model/config.ts';
import { type Dispatch, type Kernels, type Ref, UniformData } from './kernels.ts';
import type { GpuState } from './state.ts';

export interface OptimDispatches {
  /** Mean loss of the step into the history ring (before the step counter advances). */
  lossTrain: Dispatch;
  /** Mean loss of an evaluation batch added into evalAcc[0]. */
  lossEval: Dispatch;
  /** Grad norm partials, finalize (step++, lr, clip, bias corrections), AdamW. */
  update: Dispatch[];
  /** Δ = θ - φ into the grads buffer (for outerPayload). */
  outerDelta: Dispatch;
  /** The outer step; its uniform (outerUniform) is written per call. */
  outerApply: Dispatch;
  outerUniform: GPUBuffer;
  /** gradnorm.wgsl's Hyper; its fixedLr float (at HYPER_FIXED_LR_OFFSET) is rewritten per step by setFixedLr. */
  hyper: GPUBuffer;
  /** Buffers made here (destroyed with the engine). */
  owned: GPUBuffer[];
}

/** Byte offset of Hyper.fixedLr in gradnorm.wgsl's uniform. */
export const HYPER_FIXED_LR_OFFSET = 9 * 4;
/** Hyper.fixedLr meaning "follow the schedule" (any rate >= 0, zero included, is a fixed rate). */
export const NO_FIXED_LR = -1;

/** Bytes of the uniform of outer.wgsl. */
const OUTER_UNIFORM_BYTES = 32;

/**
 * `growthInterval`: dynamic loss scaling (f16 operands) doubles the scale after that many good
 * steps in a row; 0 turns loss scaling off (the scale stays as StepState holds it, 1).
 */
export function buildOptim(k: Kernels, s: GpuState, losses: Ref, N: number, hist: GPUBuffer, cap: number, evalAcc: GPUBuffer, cfg: TrainConfig, growthInterval = 0): OptimDispatches {
  const n = s.layout.total;
  const lossU = k.uniform('GpuOptim.loss.uniform', new UniformData().u32(N, cap, 0, 0));
  const lossTrain = k.dispatch('GpuOptim.lossTrain', k.pipeline('loss', 'train'), [losses, s.stepState, hist, lossU], [1, 1, 1]);
  const lossEval = k.dispatch('GpuOptim.lossEval', k.pipeline('loss', 'evaluate'), [losses, null, evalAcc, lossU], [1, 1, 1]);

  // One partial sum per invocation of the partial pass; it and AdamW read vec4s (n / 4 of them).
  if (n % 4 !== 0) throw new RangeError(`the optimizer kernels read vec4s: the layout's ${n} floats are not a multiple of 4`);
  const [partialGroups] = k.strideGrid(n / 4);
  const nPartials = partialGroups * k.tuning.stride.wg;
  const partials = k.device.createBuffer({ label: 'GpuOptim.partials', size: nPartials * 4, usage: GPUBufferUsage.STORAGE });
  const normU = k.uniform('GpuOptim.gradnorm.uniform', new UniformData().u32(n, nPartials, cap, 0));
  const hyperData = new UniformData()
    .f32(cfg.lr, cfg.warmupSteps, cfg.totalSteps, cfg.minLrFrac)
    .f32(cfg.beta1, cfg.beta2, cfg.eps, cfg.weightDecay)
    .f32(cfg.gradClip, NO_FIXED_LR, growthInterval, 0).bytes();
  const hyper = k.device.createBuffer({ label: 'GpuOptim.hyper', size: hyperData.byteLength, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  k.device.queue.writeBuffer(hyper, 0, hyperData);
  const adamU = k.uniform('GpuOptim.adamw.uniform', new UniformData().u32(n).f32(cfg.beta1, cfg.beta2, cfg.eps));
  const update = [
    k.dispatch('GpuOptim.gradnorm.partial', k.pipeline('gradnorm', 'partial', { PARTIAL_WG: k.tuning.stride.wg }), [s.grads, partials, null, null, normU, null], [partialGroups, 1, 1]),
    k.dispatch('GpuOptim.gradnorm.finalize', k.pipeline('gradnorm', 'finalize'), [null, partials, s.stepState, hist, normU, hyper], [1, 1, 1]),
    k.dispatch('GpuOptim.adamw', k.stridePipeline('adamw', 'main'), [s.params, s.grads, s.m, s.v, s.decayMask, s.stepState, adamU], k.strideGrid(n / 4)),
  ];

  const outerUniform = k.device.createBuffer({ label: 'GpuOptim.outer.uniform', size: OUTER_UNIFORM_BYTES, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  const outerDeltaU = k.uniform('GpuOptim.outerDelta.uniform', new UniformData().u32(n, 0).f32(0, 0, 0).u32(0, 0, 0));
  const outerDelta = k.dispatch('GpuOptim.outerDelta', k.stridePipeline('outer', 'delta'), [s.params, s.phi, null, null, s.grads, outerDeltaU], k.strideGrid(n));
  const outerApply = k.dispatch('GpuOptim.outerApply', k.stridePipeline('outer', 'apply'), [s.params, s.phi, s.outerM, s.partnerPhi, s.grads, outerUniform], k.strideGrid(n));
  return { lossTrain, lossEval, update, outerDelta, outerApply, outerUniform, hyper, owned: [partials, outerUniform, hyper] };
}

/** The outer step's uniform: partners (0 = solo) and alpha, beta, gamma. */
export function outerUniformData(n: number, partners: number, alpha: number, beta: number, gamma: number): ArrayBuffer {
  return new UniformData().u32(n, partners).f32(alpha, beta, gamma).u32(0, 0, 0).bytes();
}
