// AdamW over the flat parameter buffer, with PyTorch's exact semantics (torch.optim.AdamW,
// foreach=False): decoupled decay p -= lr*wd*p first, then the bias-corrected Adam step
// p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps). The GPU kernel is checked against this.
import type { TrainConfig } from './config.ts';
import type { Layout } from './layout.ts';

/** L2 norm of the whole flat buffer (padding is zero in grads, so it adds nothing). */
export function gradNorm(grads: Float32Array): number {
  let s = 0;
  for (let i = 0; i < grads.length; i++) { const g = grads[i]!; s += g * g; }
  return Math.sqrt(s);
}

/**
 * Scales `grads` in place so that their global norm is at most `maxNorm`; returns the norm
 * before clipping. Like torch.nn.utils.clip_grad_norm_: the factor is maxNorm / (norm + 1e-6)
 * and is applied only when it is below 1.
 */
export function clipGrads(grads: Float32Array, maxNorm: number): number {
  if (!(maxNorm > 0)) throw new Error(`clipGrads: maxNorm must be a positive number, got ${maxNorm}`);
  const norm = gradNorm(grads);
  const coef = maxNorm / (norm + 1e-6);
  if (coef < 1) for (let i = 0; i < grads.length; i++) grads[i]! *= coef;
  return norm;
}

export type AdamWConfig = Pick<TrainConfig, 'beta1' | 'beta2' | 'eps' | 'weightDecay'>;

/** One AdamW step on every tensor of `layout` (padding is left alone). `step` counts from 1. */
export function adamwUpdate(
  params: Float32Array, // (layout.total)
  grads: Float32Array, // (layout.total)
  m: Float32Array, // (layout.total) first moment, updated in place
  v: Float32Array, // (layout.total) second moment, updated in place
  layout: Layout,
  step: number,
  lr: number,
  cfg: AdamWConfig,
): void {
  if (!Number.isInteger(step) || step < 1) throw new Error(`adamwUpdate: step counts from 1, got ${step}`);
  checkLength(params, 'params', layout);
  checkLength(grads, 'grads', layout);
  checkLength(m, 'm', layout);
  checkLength(v, 'v', layout);
  const { beta1: b1, beta2: b2, eps, weightDecay: wd } = cfg;
  const stepSize = lr / (1 - Math.pow(b1, step));
  const bc2Sqrt = Math.sqrt(1 - Math.pow(b2, step));
  const tensors = layout.tensors;
  for (let ti = 0; ti < tensors.length; ti++) {
    const t = tensors[ti]!;
    const keep = t.decay ? 1 - lr * wd : 1;
    const end = t.offset + t.size;
    for (let i = t.offset; i < end; i++) {
      const g = grads[i]!;
      const mi = b1 * m[i]! + (1 - b1) * g;
      const vi = b2 * v[i]! + (1 - b2) * g * g;
      m[i] = mi;
      v[i] = vi;
      params[i] = params[i]! * keep - stepSize * mi / (Math.sqrt(vi) / bc2Sqrt + eps);
    }
  }
}

function checkLength(buf: Float32Array, name: string, layout: Layout): void {
  if (buf.length !== layout.total) throw new Error(`adamwUpdate: ${name} has ${buf.length} floats, the layout needs ${layout.total}`);
}
