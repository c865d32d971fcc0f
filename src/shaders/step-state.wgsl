// StepState: the optimizer's counters, one small storage buffer shared by loss.wgsl,
// crossentropy.wgsl, gradnorm.wgsl and adamw.wgsl (src/gpu/state.ts STEP_STATE_WORDS words).
// gradnorm.wgsl's finalize writes it once per step; the others read it.
//   step        optimizer steps taken (the schedule's position; AdamW's t is step + 1)
//   lr .. decayKeep  what AdamW needs for this step: rate, pre-clip gradient norm, clip factor
//               (times 1 / lossScale), bias corrections, weight-decay factor
//   skip        1: this step's scaled gradients overflowed f16 and AdamW leaves everything as is
//   lossScale   dynamic loss scale (f16 operands; 1 otherwise): the loss gradient is scaled by it
//   goodSteps   steps since the scale last changed; skipped: steps skipped so far
// src/gpu/shaders.ts puts this file in front of each kernel that uses it.
struct StepState {
  step: u32, lr: f32, gradNorm: f32, clipScale: f32,
  stepSize: f32, bc2Sqrt: f32, decayKeep: f32, skip: u32,
  lossScale: f32, goodSteps: u32, skipped: u32, pad: u32,
}
