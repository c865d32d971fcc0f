// Every WGSL source the engine compiles, imported as text (Vite / Vitest / bin/murmur.mjs all
// resolve `?raw`). Kept in one place so a new kernel is one line here.
import adamw from '../shaders/adamw.wgsl?raw';
import attentionBwd from '../shaders/attention.bwd.wgsl?raw';
import attentionFwd from '../shaders/attention.fwd.wgsl?raw';
import attentionTiled from '../shaders/attention.tiled.wgsl?raw';
import crossentropy from '../shaders/crossentropy.wgsl?raw';
import encoderBwd from '../shaders/encoder.bwd.wgsl?raw';
import encoderFwd from '../shaders/encoder.fwd.wgsl?raw';
import gradnorm from '../shaders/gradnorm.wgsl?raw';
import layernormBwd from '../shaders/layernorm.bwd.wgsl?raw';
import layernormFwd from '../shaders/layernorm.fwd.wgsl?raw';
import loss from '../shaders/loss.wgsl?raw';
import matmul from '../shaders/matmul.wgsl?raw';
import outer from '../shaders/outer.wgsl?raw';

export const SHADERS = {
  adamw,
  attentionBwd,
  attentionFwd,
  attentionTiled,
  crossentropy,
  encoderBwd,
  encoderFwd,
  gradnorm,
  layernormBwd,
  layernormFwd,
  loss,
  matmul,
  outer,
} as const;

export type ShaderName = keyof typeof SHADERS;
