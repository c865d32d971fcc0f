// The real learner for the simulator: the CPU reference GPT with AdamW (src/model), each replica
// reading its own random windows of the training text (WindowSampler with its own stream) and
// all scored on one fixed validation set. Gradients and the update are separate calls so
// data-parallel can average gradients across replicas before one identical AdamW update.
import type { ModelConfig, TrainConfig } from '../model/config.ts';
import type { Layout } from '../model/layout.ts';
import { buildLayout } from '../model/layout.ts';
import { initParams } from '../model/init.ts';
import { ReferenceGPT } from '../model/reference.ts';
import { adamwUpdate, clipGrads, gradNorm } from '../model/adamw.ts';
import type { Batch } from '../data/batch.ts';
import { WindowSampler, validationBatches } from '../data/sampler.ts';
import type { Learner, LearnerFactory } from './learner.ts';

export interface GptLearnerOptions {
  model: ModelConfig;
  /** batch, seqLen, AdamW settings and gradClip are used; the schedule comes from the simulator. */
  train: TrainConfig;
  /** Seeds the initial weights and every replica's data stream. */
  seed: number;
  data: { train: Uint8Array; val: Uint8Array };
  /**
   * Split the training text into this many contiguous slices; data stream k reads slice
   * k mod shards. 1 (default): every stream reads all of it.
   */
  shards?: number;
  /** Validation batches of `valBatch` sequences of train.seqLen tokens. */
  valBatches: number;
  valBatch: number;
}

/** Mixed into the run seed for the probe's window streams (apart from every training stream). */
const PROBE_STREAM = 0x9e0be5;

class GptLearner implements Learner {
  readonly params: Float32Array;
  readonly grads: Float32Array;
  readonly m: Float32Array;
  readonly v: Float32Array;
  step = 0;
  lastLoss = Number.NaN;
  private readonly model: ReferenceGPT;
  private readonly sampler: WindowSampler;
  /** The probe's windows: this learner's data, a stream of its own (a volunteer seeds it at random). */
  private readonly probeSampler: WindowSampler;
  private batch: Batch | undefined;

  constructor(private readonly layout: Layout, private readonly cfg: TrainConfig, params: Float32Array,
    data: Uint8Array, seed: number, readonly stream: number) {
    this.params = params.slice();
    this.grads = new Float32Array(layout.total);
    this.m = new Float32Array(layout.total);
    this.v = new Float32Array(layout.total);
    this.model = new ReferenceGPT(layout, 'f32');
    this.sampler = new WindowSampler(data, { seed, replica: stream });
    this.probeSampler = new WindowSampler(data, { seed: (seed ^ PROBE_STREAM) >>> 1, replica: stream });
  }

  probeLosses(candidates: readonly Float32Array[], windows: number): number[][] {
    const batches = Array.from({ length: windows }, () => this.probeSampler.next(this.cfg.batch, this.cfg.seqLen));
    return candidates.map((c) => batches.map((b) => this.model.forward(c, b)));
  }

  computeGrads(): void {
    this.batch = this.sampler.next(this.cfg.batch, this.cfg.seqLen, this.batch);
    const loss = this.model.forward(this.params, this.batch);
    if (!Number.isFinite(loss)) throw new Error(`replica stream ${this.stream}: loss is ${loss} at step ${this.step}; lower the learning rate`);
    this.model.backward(this.params, this.grads);
    this.lastLoss = loss;
  }

  applyGrads(grads: Float32Array, lr: number): void {
    // Data-parallel hands every replica the same mean gradient: clip a private copy.
    if (grads !== this.grads) this.grads.set(grads);
    const norm = this.cfg.gradClip > 0 ? clipGrads(this.grads, this.cfg.gradClip) : gradNorm(this.grads);
    if (!Number.isFinite(norm)) throw new Error(`replica stream ${this.stream}: gradient norm is ${norm} at step ${this.step}`);
    adamwUpdate(this.params, this.grads, this.m, this.v, this.layout, this.step + 1, lr, this.cfg);
    this.step++;
  }

  copyStateFrom(other: Learner): void {
    if (!(other instanceof GptLearner)) throw new Error('GptLearner.copyStateFrom: the donor is not a GPT learner');
    this.params.set(other.params);
    this.m.set(other.m);
    this.v.set(other.v);
    this.step = other.step;
  }
}

/**
 * The part of the training text data stream `stream` reads when it is split into `shards`
 * contiguous slices of equal length (the remainder unused): slice stream mod shards. A view, not
 * a copy. Throws when a slice cannot hold one window of seqLen + 1 tokens.
 */
export function shardOf(train: Uint8Array, shards: number, stream: number, seqLen: number): Uint8Array {
  if (!(Number.isInteger(shards) && shards >= 1)) throw new RangeError(`shards must be a positive integer, got ${shards}`);
  if (shards === 1) return train;
  const len = Math.floor(train.length / shards);
  if (len < seqLen + 1) throw new RangeError(`${shards} shards of ${train.length} training tokens hold ${len} each, fewer than one window (seqLen + 1 = ${seqLen + 1})`);
  const k = stream % shards;
  return train.subarray(k * len, (k + 1) * len);
}

/** What the CPU and the GPU learners of one run share: layout, starting weights, validation set. */
export interface GptRun {
  layout: Layout;
  initial: Float32Array;
  val: Batch[];
  shards: number;
  /** The training text data stream `stream` reads. */
  dataOf(stream: number): Uint8Array;
  /** "GPT L2 d32 h2 ctx32 (N params)<where>, batch BxT, ..., val ..." */
  describe(where: string): string;
}

/** Checks the options (seqLen against ctx, the shard split) and builds what every learner shares. */
export function gptRun(o: GptLearnerOptions): GptRun {
  const layout = buildLayout(o.model);
  if (o.train.seqLen > o.model.ctx) throw new Error(`seqLen ${o.train.seqLen} exceeds the model's ctx ${o.model.ctx}`);
  const shards = o.shards ?? 1;
  shardOf(o.data.train, shards, 0, o.train.seqLen); // checks the split once, before any run
  const m = o.model, T = o.train.seqLen;
  return {
    layout,
    initial: initParams(layout, o.seed),
    val: validationBatches(o.data.val, o.valBatch, T, o.valBatches),
    shards,
    dataOf: (stream) => shardOf(o.data.train, shards, stream, T),
    describe: (where) => `GPT L${m.layers} d${m.d} h${m.heads} ctx${m.ctx} (${layout.params} params)${where}, ` +
      `batch ${o.train.batch}x${T}${shards > 1 ? `, data in ${shards} shards` : ''}, val ${o.valBatches}x${o.valBatch}x${T} tokens`,
  };
}

export function gptFactory(o: GptLearnerOptions): LearnerFactory {
  const run = gptRun(o);
  const { layout, val } = run;
  const evaluator = new ReferenceGPT(layout, 'f32');
  return {
    size: layout.total,
    paramCount: layout.params,
    // The wire format sends the flat buffer as laid out (padding included).
    messageBytes: 4 * layout.total,
    initial: run.initial,
    describe: () => run.describe(''),
    create: (stream, params) => new GptLearner(layout, o.train, params, run.dataOf(stream), o.seed, stream),
    evaluate(params) {
      let sum = 0;
      for (const b of val) sum += evaluator.forward(params, b);
      return sum / val.length; // equal-shape batches: the token-weighted mean
    },
  };
}
