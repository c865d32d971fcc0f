// What the simulator needs from a replica's trainer, and nothing more: compute a gradient on the
// replica's own next batch, apply a gradient (its own or an all-reduced mean) with the inner
// optimiser, and evaluate weights. The GPT learner (CPU reference + AdamW) and the toy quadratic
// learner used by tests both implement it, so every method is tested without a model.

export interface Learner {
  /** (P) fast weights theta, trained in place. */
  readonly params: Float32Array;
  /** (P) gradient of the last computeGrads(). */
  readonly grads: Float32Array;
  /** Inner optimiser steps taken (AdamW's t); a joiner inherits it from its donor. */
  step: number;
  /** Gradient at `params` on the next batch of this learner's own data stream; returns the loss. */
  computeGrads(): number;
  /** One inner-optimiser update with `grads` (clipping included) at learning rate `lr`; step += 1. */
  applyGrads(grads: Float32Array, lr: number): void;
  /** Take over another learner's optimiser state (moments and step): data-parallel joiners. */
  copyOptimizerFrom(other: Learner): void;
}

/** Creates learners that share one model, one starting point and one validation set. */
export interface LearnerFactory {
  /** Floats in every state array (layout.total for the GPT). */
  readonly size: number;
  /** Real parameters, padding excluded: the denominator of the weight spread. */
  readonly paramCount: number;
  /** Bytes of one weight-shaped tensor on the wire (f32). */
  readonly messageBytes: number;
  /** (P) the weights every replica starts from (NoLoCo and DiLoCo start replicas together). */
  readonly initial: Float32Array;
  /** A learner for data stream `stream` (its own batches) starting at a copy of `params`. */
  create(stream: number, params: Float32Array): Learner;
  /** Validation loss of `params` on the fixed held-out set. */
  evaluate(params: Float32Array): number;
  /** A short description for logs and benchmark output. */
  describe(): string;
}
