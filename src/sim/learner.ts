// What the simulator needs from a replica's trainer, and nothing more: compute a gradient on the
// replica's own next batch, apply a gradient (its own or an all-reduced mean) with the inner
// optimiser, and evaluate weights. The GPT learner (CPU reference + AdamW), the same GPT on the
// WGSL engine (gpu-learner.ts) and the toy quadratic learner used by tests implement it, so every
// method is tested without a model.
//
// A device learner's weights live on the GPU while it trains. The simulator keeps the two copies
// straight with two calls: sync() before anything reads `params`, `grads` or `lastLoss` (the end
// of an inner loop, an evaluation), and push() when a loop starts, after a method may have
// changed `params` on the host (an outer step). Methods change `params` only between the two.

export interface Learner {
  /** (P) fast weights theta, trained in place. */
  readonly params: Float32Array;
  /** (P) gradient of the last computeGrads(). */
  readonly grads: Float32Array;
  /** Training loss of the last computeGrads() (NaN before the first). */
  readonly lastLoss: number;
  /** Inner optimiser steps taken (AdamW's t); a joiner inherits it from its donor. */
  step: number;
  /** Gradient at `params` on the next batch of this learner's own data stream, and its loss. */
  computeGrads(): void;
  /**
   * One inner-optimiser update (clipping included) at learning rate `lr` with `grads`: this
   * learner's own `grads` after computeGrads(), or another array (an all-reduced mean); step += 1.
   */
  applyGrads(grads: Float32Array, lr: number): void;
  /** Take over another learner's weights and optimiser state (moments, step): data-parallel joiners. */
  copyStateFrom(other: Learner): void;
  /** Device learners: bring params, grads and lastLoss up to date on the host. */
  sync?(): Promise<void>;
  /** Device learners: make the device hold the host's params (unless the device holds newer ones). */
  push?(): void;
  /** Frees what the learner holds (GPU buffers); it is not used again. */
  dispose?(): void;
  /**
   * The probe (src/round/probe.ts): the loss of each candidate weight set on `windows` fresh
   * windows of this learner's own data, drawn from a stream apart from its training batches;
   * [candidate][window]. Absent: the simulator takes pair steps unjudged.
   */
  probeLosses?(candidates: readonly Float32Array[], windows: number): number[][];
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
  evaluate(params: Float32Array): number | Promise<number>;
  /** A short description for logs and benchmark output. */
  describe(): string;
  /** Frees what the factory holds (a GPU device); called once every learner is disposed. */
  dispose?(): void;
}
