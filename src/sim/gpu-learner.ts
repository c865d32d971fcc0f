// The simulator's replicas on the WGSL engine (Dawn in Node): the model, initial weights, data
// streams and validation set of the CPU learner (gpt-learner.ts), trained by the kernels a
// volunteer's GPU runs. Every replica is a GpuEngine on one shared device; a further engine
// sized for the validation batches scores weights.
//
// Weights stay on the GPU during an inner loop: steps are queued without waiting, each with the
// simulator's learning rate for that step (the engine's fixed-rate override, since the schedule
// runs on the simulated clock). sync() reads θ, the gradient and the last loss back; push()
// uploads θ after the simulator's outer step changed it on the host.
import type { Batch } from '../data/batch.ts';
import { WindowSampler } from '../data/sampler.ts';
import { GpuEngine } from '../gpu/engine.ts';
import { DEFAULT_TUNING } from '../gpu/kernels.ts';
import { requirements } from '../gpu/limits.ts';
import { describeAdapter } from '../gpu/device.ts';
import { acquireNodeDevice } from '../gpu/node-gpu.ts';
import type { Learner, LearnerFactory } from './learner.ts';
import { gptRun, type GptLearnerOptions } from './gpt-learner.ts';

export interface GpuLearnerOptions extends GptLearnerOptions {
  /** Run on this device (the caller owns it); default: acquire one in Node and free it on dispose(). */
  device?: GPUDevice;
}

class GpuLearner implements Learner {
  readonly params: Float32Array;
  readonly grads: Float32Array;
  lastLoss = Number.NaN;
  private readonly sampler: WindowSampler;
  private batch: Batch | undefined;
  /** The engine holds work (steps, an update, a copied state) the host copies do not show yet. */
  private deviceNewer = false;
  /** A step ran since the last sync: the loss ring holds its loss (a copied state brings none). */
  private stepped = false;
  /** The gradient buffer holds a gradient not yet applied (data-parallel reads it back). */
  private gradPending = false;

  constructor(readonly engine: GpuEngine, private readonly B: number, private readonly T: number,
    params: Float32Array, data: Uint8Array, seed: number, readonly stream: number) {
    this.params = params.slice();
    this.grads = new Float32Array(params.length);
    this.sampler = new WindowSampler(data, { seed, replica: stream });
    engine.writeParams(this.params);
  }

  get step(): number { return this.engine.step; }
  set step(n: number) { this.engine.setStep(n); }

  computeGrads(): void {
    this.batch = this.sampler.next(this.B, this.T, this.batch);
    this.engine.enqueueStep(this.batch, false);
    this.deviceNewer = true;
    this.stepped = true;
    this.gradPending = true;
  }

  applyGrads(grads: Float32Array, lr: number): void {
    this.engine.setFixedLr(lr);
    // Our own gradient is still in the engine's gradient buffer; anything else is uploaded.
    this.engine.enqueueUpdate(grads === this.grads ? undefined : grads);
    this.deviceNewer = true;
    this.gradPending = false;
  }

  copyStateFrom(other: Learner): void {
    if (!(other instanceof GpuLearner)) throw new Error('GpuLearner.copyStateFrom: the donor is not a GPU learner');
    this.engine.copyTrainingStateFrom(other.engine);
    this.deviceNewer = true;
  }

  async sync(): Promise<void> {
    if (!this.deviceNewer) return;
    // Only a gradient not yet applied is worth the read (NoLoCo and local never look at it).
    const { params, grads, loss } = await this.engine.readTraining(this.gradPending);
    this.params.set(params);
    if (grads) this.grads.set(grads);
    this.deviceNewer = false;
    if (!this.stepped) return;
    this.stepped = false;
    this.lastLoss = loss;
    if (!Number.isFinite(loss)) throw new Error(`replica stream ${this.stream}: loss is ${loss} at or before step ${this.step}; lower the learning rate`);
  }

  push(): void {
    // Newer work on the device means the host copy was not touched since (methods change
    // params only after a sync), so there is nothing to upload.
    if (!this.deviceNewer) this.engine.writeParams(this.params);
  }

  dispose(): void {
    this.engine.destroy();
  }
}

/** A factory of GPU replicas; acquires a Dawn device unless `o.device` is given. */
export async function gpuFactory(o: GpuLearnerOptions): Promise<LearnerFactory> {
  const run = gptRun(o);
  const { layout, val } = run;
  const B = o.train.batch, T = o.train.seqLen;
  let device = o.device, adapter = 'the given device', owned = false;
  if (!device) {
    // Limits for the larger of the training and the validation batch.
    const req = requirements(layout, Math.max(B, o.valBatch), T, DEFAULT_TUNING);
    const acquired = await acquireNodeDevice({ requiredLimits: req.requested, label: 'sim.device' });
    device = acquired.device;
    adapter = describeAdapter(acquired.info);
    owned = true;
  }
  const dev = device;
  let evaluator: GpuEngine;
  try {
    evaluator = new GpuEngine(dev, { layout, train: o.train, B: o.valBatch, T });
  } catch (e) {
    if (owned) dev.destroy();
    throw e;
  }
  return {
    size: layout.total,
    paramCount: layout.params,
    messageBytes: 4 * layout.total,
    initial: run.initial,
    describe: () => run.describe(` on WebGPU (${adapter})`),
    create(stream, params) {
      const data = run.dataOf(stream);
      const engine = new GpuEngine(dev, { layout, train: o.train, B, T });
      try {
        return new GpuLearner(engine, B, T, params, data, o.seed, stream);
      } catch (e) {
        engine.destroy();
        throw e;
      }
    },
    evaluate(params) {
      evaluator.writeParams(params);
      return evaluator.evaluate(val); // equal-shape batches: the mean is the token-weighted mean
    },
    dispose() {
      evaluator.destroy();
      if (owned) dev.destroy();
    },
  };
}
