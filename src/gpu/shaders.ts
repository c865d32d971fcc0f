// Every WGSL source the engine compiles, imported as text (Vite / Vitest / bin/murmur.mjs all
// resolve `?raw`). Kept in one place so a new kernel is one line here. The kernels that read
// product and attention operands get half.wgsl (f16 rounding of operands) in front (the row
// attention kernels also attention-rows.wgsl, their shared reads), and those
// that share the optimizer's counters get step-state.wgsl (the StepState struct). The matrix
// products and the row attention forward get quad.wgsl (quadBroadcast, for QUAD) in front on
// devices with the `subgroups` feature and quad-off.wgsl on the others: SUBGROUP_SHADERS holds
// those texts. The LayerNorms get workgroup-sum.wgsl (their wide kernels' reduction) in front.
import adamw from '../shaders/adamw.wgsl?raw';
import attentionBlocked from '../shaders/attention.blocked.wgsl?raw';
import attentionBwd from '../shaders/attention.bwd.wgsl?raw';
import attentionRows from '../shaders/attention-rows.wgsl?raw';
import attentionFwd from '../shaders/attention.fwd.wgsl?raw';
import attentionTiled from '../shaders/attention.tiled.wgsl?raw';
import crossentropy from '../shaders/crossentropy.wgsl?raw';
import encoderBwd from '../shaders/encoder.bwd.wgsl?raw';
import encoderFwd from '../shaders/encoder.fwd.wgsl?raw';
import gradnorm from '../shaders/gradnorm.wgsl?raw';
import half from '../shaders/half.wgsl?raw';
import layernormBwd from '../shaders/layernorm.bwd.wgsl?raw';
import layernormFwd from '../shaders/layernorm.fwd.wgsl?raw';
import loss from '../shaders/loss.wgsl?raw';
import matmul from '../shaders/matmul.wgsl?raw';
import outer from '../shaders/outer.wgsl?raw';
import quad from '../shaders/quad.wgsl?raw';
import quadOff from '../shaders/quad-off.wgsl?raw';
import stepState from '../shaders/step-state.wgsl?raw';
import workgroupSum from '../shaders/workgroup-sum.wgsl?raw';

export const SHADERS = {
  adamw: stepState + adamw,
  attentionBlocked: half + attentionBlocked,
  attentionBwd: half + attentionRows + attentionBwd,
  attentionFwd: quadOff + half + attentionRows + attentionFwd,
  attentionTiled: half + attentionTiled,
  crossentropy: stepState + crossentropy,
  encoderBwd,
  encoderFwd,
  gradnorm: stepState + gradnorm,
  layernormBwd: workgroupSum + layernormBwd,
  layernormFwd: workgroupSum + layernormFwd,
  loss: stepState + loss,
  matmul: quadOff + half + matmul,
  outer,
} as const;

export type ShaderName = keyof typeof SHADERS;

/** The texts that differ on a device with the `subgroups` feature (Kernels.module picks them there). */
export const SUBGROUP_SHADERS: Partial<Record<ShaderName, string>> = {
  attentionFwd: quad + half + attentionRows + attentionFwd,
  matmul: quad + half + matmul,
};
