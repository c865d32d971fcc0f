// A toy learner: noisy quadratic loss 0.5*|theta - c - b_s - xi|^2 per batch, where c is the true
// target, b_s a fixed per-stream bias (each replica's data differs a little) and xi fresh noise.
// Validation is 0.5*mean((theta - c)^2). Cheap enough to run every method for thousands of steps
// in a unit test, and it has what the methods differ on: noise that averaging removes and biases
// that pull replicas apart. Plain SGD, so the optimiser state is just the step.
import { Rng } from '../model/rng.ts';
import type { Learner, LearnerFactory } from './learner.ts';

export interface QuadraticOptions {
  dim: number;
  seed: number;
  /** Per-batch gradient noise std. */
  noise?: number;
  /** Std of each stream's fixed bias. */
  bias?: number;
}

export function quadraticFactory(o: QuadraticOptions): LearnerFactory {
  const noise = o.noise ?? 1, bias = o.bias ?? 0.1;
  const target = new Float32Array(o.dim);
  const init = new Float32Array(o.dim);
  const r = new Rng(o.seed, 0x9a);
  for (let k = 0; k < o.dim; k++) { target[k] = r.normal(); init[k] = target[k] + 3 * r.normal(); }
  return {
    size: o.dim,
    paramCount: o.dim,
    messageBytes: 4 * o.dim,
    initial: init,
    describe: () => `quadratic toy (dim ${o.dim}, noise ${noise}, bias ${bias})`,
    evaluate(params) {
      let s = 0;
      for (let k = 0; k < o.dim; k++) { const d = params[k] - target[k]; s += d * d; }
      return (0.5 * s) / o.dim;
    },
    create(stream, params): Learner {
      const rng = new Rng(o.seed, 0x1000 + stream);
      const b = new Float32Array(o.dim);
      for (let k = 0; k < o.dim; k++) b[k] = bias * rng.normal();
      const theta = params.slice();
      const grads = new Float32Array(o.dim);
      const learner: Learner & { lastLoss: number } = {
        params: theta,
        grads,
        lastLoss: Number.NaN,
        step: 0,
        computeGrads() {
          let loss = 0;
          for (let k = 0; k < o.dim; k++) {
            const g = theta[k] - target[k] - b[k] - noise * rng.normal();
            grads[k] = g;
            loss += 0.5 * g * g;
          }
          learner.lastLoss = loss / o.dim;
        },
        applyGrads(g, lr) {
          for (let k = 0; k < o.dim; k++) theta[k] -= lr * g[k];
          learner.step++;
        },
        copyStateFrom(other) { theta.set(other.params); learner.step = other.step; },
      };
      return learner;
    },
  };
}
