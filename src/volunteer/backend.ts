// The two trainers a headless volunteer can run, behind one small interface that is also the
// mesh's Replica (src/sync/replica.ts):
// - 'gpu': the browser's own Trainer class (src/worker/trainer.ts) called directly on Dawn in
//   Node: WGSL forward/backward/AdamW and the outer step all run on the GPU;
// - 'cpu': the CPU reference (src/train/cpu-trainer.ts) with the pure NoLoCo outer math
//   (src/train/outer.ts), for many-peer tests where a software GPU would be too slow.
// Both start from initParams(layout, run.seed), so fresh replicas of one run share φ_0.
import type { Batch } from '../data/batch.ts';
import type { TrainerEvent } from '../worker/types.ts';
import { privateCheckBatches, randomSeed, validationBatches, WindowSampler } from '../data/sampler.ts';
import { trainConfig, type TrainConfig } from '../model/config.ts';
import { initParams } from '../model/init.ts';
import { buildLayout, type Layout } from '../model/layout.ts';
import type { RunInfo } from '../protocol/messages.ts';
import type { StateLosses } from '../protocol/memorised.ts';
import type { Replica } from '../sync/replica.ts';
import type { OuterPayload, PartnerPayload } from '../sync/types.ts';
import { CpuTrainer } from '../train/cpu-trainer.ts';
import { nolocoOuterStep, probeCandidates, type OuterMessage } from '../train/outer.ts';
import { PROBE_WINDOWS, type ProbeLosses } from '../round/probe.ts';
import { BackendError, DivergedError } from './errors.ts';
import { VAL_BATCHES } from './run-config.ts';

export type BackendKind = 'gpu' | 'cpu';
export const BACKENDS: readonly BackendKind[] = ['gpu', 'cpu'];

/** φ and the outer momentum at the last outer step: what newcomers and checkpoints get. */
export interface SlowState {
  phi: Float32Array; // (P,)
  momentum: Float32Array; // (P,)
}

export interface ReplicaBackend extends Replica {
  readonly kind: BackendKind;
  /** Adapter description for reports ("google swiftshader (...)", "cpu reference"). */
  readonly adapter: string;
  /** GPU only: what the autotuned matmul shapes ran, against the GPU's fp32 peak where known (describeRates). */
  readonly matmul?: string;
  /** Floats per state buffer (layout.total). */
  readonly total: number;
  /**
   * `steps` inner AdamW steps on this replica's windows; the loss of each. A non-finite loss
   * rejects with DivergedError after θ was reset to φ (step counter at the last outer step).
   */
  train(steps: number): Promise<number[]>;
  /** Mean loss over the run's fixed validation batches (θ = φ right after an outer step). */
  evaluate(): Promise<number>;
  /**
   * Mean loss over this volunteer's state check windows: as many as the coordinator measures its
   * checkpoints on, drawn from a seed of its own (src/data/sampler.ts privateCheckBatches), of the
   * validation text and as many of its own training shard: how a newcomer judges a candidate
   * state, on windows no peer serving it can know (src/sync/state-check.ts).
   */
  checkLoss(): Promise<StateLosses>;
  outerPayload(): Promise<OuterPayload>;
  /**
   * The probe (src/round/probe.ts), between outerPayload and applyOuter: the loss of the solo
   * and the paired candidate state on PROBE_WINDOWS fresh windows of this replica's own data
   * that no partner can predict. Changes no training state.
   */
  probe(partner: PartnerPayload): Promise<ProbeLosses>;
  applyOuter(partners: PartnerPayload[]): Promise<void>;
  slowState(): Promise<SlowState>;
  /** Starts from a peer's or a checkpoint's state: θ = φ, AdamW moments zero, schedule at innerStep. */
  load(s: SlowState & { innerStep: number }): Promise<void>;
  /** Frees the GPU device (or nothing); safe to call twice. */
  dispose(): void;
}

export interface BackendInit {
  run: RunInfo;
  /** Training tokens of this replica's shards. */
  train: Uint8Array;
  /** The run's held-out tokens. */
  val: Uint8Array;
  /** Data-window stream of this replica (its replica number unless overridden). */
  stream: number;
  /** GPU only: measure kernel shapes for this adapter (cached on disk). */
  autotune?: boolean;
  /** Seed of the probe's private windows; default: random on this machine (tests and benchmarks fix it). */
  probeSeed?: number;
  /** Validation batches of a state check; default stateCheckBatchCount of the run (tests override it). */
  checkBatches?: number;
  /** Seed of the state check's windows; default: random on this machine (tests fix it). */
  checkSeed?: number;
  /** GPU only: the trainer's events (autotune, a lost device and its rebuild). */
  onEvent?: (e: TrainerEvent) => void;
}

/** A state check's windows (privateCheckBatches, one seed): of the validation text and of this replica's training shard. */
interface CheckWindows { val: Batch[]; train: Batch[] }

export async function createBackend(kind: BackendKind, init: BackendInit): Promise<ReplicaBackend> {
  const { run } = init;
  let cfg: TrainConfig;
  try {
    cfg = trainConfig(run.train, run.model);
  } catch (err) {
    throw new BackendError(`run ${run.id} has a train config this volunteer cannot use: ${(err as Error).message}`, { cause: err });
  }
  const val = validationBatches(init.val, cfg.batch, cfg.seqLen, VAL_BATCHES);
  const seed = init.checkSeed ?? randomSeed();
  const check: CheckWindows = {
    val: privateCheckBatches(init.val, run.model, cfg, seed, init.checkBatches),
    train: privateCheckBatches(init.train, run.model, cfg, seed, init.checkBatches),
  };
  if (kind === 'gpu') return GpuBackend.create(init, cfg, val, check);
  if (kind === 'cpu') return new CpuBackend(init, cfg, val, check);
  throw new BackendError(`unknown backend "${String(kind)}"; choose one of ${BACKENDS.join(', ')}`);
}

/** The browser's Trainer on Dawn: tensors leave the GPU only as φ/Δ at an outer step. */
class GpuBackend implements ReplicaBackend {
  readonly kind = 'gpu';
  private constructor(
    private readonly trainer: import('../worker/trainer.ts').Trainer,
    readonly adapter: string,
    readonly matmul: string,
    readonly total: number,
    private readonly run: RunInfo,
    private readonly val: Batch[],
    private readonly check: CheckWindows,
  ) {}

  static async create(init: BackendInit, cfg: TrainConfig, val: Batch[], check: CheckWindows): Promise<GpuBackend> {
    // Loaded lazily: the CPU backend must not need the native Dawn addon.
    const { createNodeTrainer } = await import('../worker/node.ts');
    const { describeRates } = await import('../gpu/autotune.ts');
    const trainer = createNodeTrainer();
    if (init.onEvent) trainer.setEventListener(init.onEvent);
    try {
      const info = await trainer.init({
        model: init.run.model, train: cfg, data: init.train, replica: init.stream, autotune: init.autotune ?? true,
        ...(init.probeSeed !== undefined ? { probeSeed: init.probeSeed } : {}),
      }, init.run.seed);
      return new GpuBackend(trainer, info.adapter, describeRates(info.matmulRates), info.total, init.run, val, check);
    } catch (err) {
      trainer.dispose();
      throw new BackendError(`the GPU trainer could not start: ${(err as Error).message}`, { cause: err });
    }
  }

  async train(steps: number): Promise<number[]> {
    try {
      return await this.trainer.train(steps);
    } catch (err) {
      // The Trainer already went back to its last outer state (θ = φ, moments zero).
      if (err instanceof Error && /\bloss is (NaN|-?Infinity)\b.*reset/.test(err.message)) throw new DivergedError(err.message, { cause: err });
      throw err;
    }
  }

  evaluate(): Promise<number> {
    return this.trainer.evaluate(this.val);
  }

  async checkLoss(): Promise<StateLosses> {
    return { val: await this.trainer.evaluate(this.check.val), train: await this.trainer.evaluate(this.check.train) };
  }

  async outerPayload(): Promise<OuterPayload> {
    const p = await this.trainer.outerPayload();
    return { phi: new Float32Array(p.phi), delta: new Float32Array(p.delta) };
  }

  probe(partner: PartnerPayload): Promise<ProbeLosses> {
    return this.trainer.probe({ phi: partner.phi, delta: partner.delta }, PROBE_WINDOWS);
  }

  applyOuter(partners: PartnerPayload[]): Promise<void> {
    // The Trainer takes whole ArrayBuffers of exactly P floats; the mesh's arrays may be views.
    return this.trainer.applyOuter(partners.map((p) => ({ phi: p.phi.slice().buffer, delta: p.delta.slice().buffer })));
  }

  async slowState(): Promise<SlowState> {
    // The Trainer keeps the last outer state on the CPU: no GPU read, no stall of training.
    const s = await this.trainer.outerState();
    return { phi: s.phi, momentum: s.outerM };
  }

  async load(s: SlowState & { innerStep: number }): Promise<void> {
    const zeros = new ArrayBuffer(this.total * 4);
    await this.trainer.load({
      format: 'murmur-trainer-state', version: 1, model: this.run.model, train: trainConfig(this.run.train, this.run.model), step: s.innerStep,
      params: s.phi.slice().buffer, m: zeros, v: zeros.slice(0), phi: s.phi.slice().buffer, outerM: s.momentum.slice().buffer,
    });
  }

  dispose(): void {
    this.trainer.dispose();
  }
}

/** The CPU reference model with the simulator's outer math (exactly what the GPU kernel computes). */
class CpuBackend implements ReplicaBackend {
  readonly kind = 'cpu';
  readonly adapter = 'cpu reference (f32 TypeScript)';
  readonly total: number;
  private readonly layout: Layout;
  private readonly trainer: CpuTrainer;
  private readonly sampler: WindowSampler;
  /** The probe's private windows: this replica's data, a stream seeded at random here. */
  private readonly probeSampler: WindowSampler;
  /** (P) φ_i and outer momentum m_i. */
  private readonly phi: Float32Array;
  private readonly momentum: Float32Array;
  private sent: OuterMessage | null = null;
  private batch: Batch | undefined;
  /** Inner steps at the last outer step (or load): where a divergence resets the schedule to. */
  private stepAtOuter = 0;

  constructor(init: BackendInit, private readonly cfg: TrainConfig, private readonly val: Batch[], private readonly check: CheckWindows) {
    this.layout = buildLayout(init.run.model);
    this.total = this.layout.total;
    const theta = initParams(this.layout, init.run.seed);
    this.trainer = new CpuTrainer(this.layout, cfg, theta);
    this.phi = theta.slice();
    this.momentum = new Float32Array(this.total);
    this.sampler = new WindowSampler(init.train, { seed: init.run.seed, replica: init.stream });
    this.probeSampler = new WindowSampler(init.train, { seed: init.probeSeed ?? randomSeed(), replica: init.stream });
  }

  async train(steps: number): Promise<number[]> {
    const losses: number[] = [];
    for (let i = 0; i < steps; i++) {
      this.batch = this.sampler.next(this.cfg.batch, this.cfg.seqLen, this.batch);
      try {
        losses.push(this.trainer.trainStep(this.batch));
      } catch (err) {
        // As the GPU Trainer does: back to the last shared weights rather than train on NaNs.
        this.trainer.setParams(this.phi);
        this.trainer.m.fill(0);
        this.trainer.v.fill(0);
        this.trainer.step = this.stepAtOuter;
        throw new DivergedError(`${(err as Error).message}; the weights were reset to the last outer state (step ${this.stepAtOuter})`, { cause: err });
      }
      // One step of a small model is milliseconds: let signals and heartbeats through between them.
      await new Promise((r) => setImmediate(r));
    }
    return losses;
  }

  async evaluate(): Promise<number> {
    return this.lossOfPhi(this.val);
  }

  async checkLoss(): Promise<StateLosses> {
    return { val: this.lossOfPhi(this.check.val), train: this.lossOfPhi(this.check.train) };
  }

  /** Mean loss of φ on `batches`; θ is put back. */
  private lossOfPhi(batches: Batch[]): number {
    const keep = this.trainer.params.slice();
    this.trainer.setParams(this.phi);
    try {
      return this.trainer.evaluate(batches);
    } finally {
      this.trainer.setParams(keep);
    }
  }

  async outerPayload(): Promise<OuterPayload> {
    const theta = this.trainer.params;
    const delta = new Float32Array(this.total);
    for (let k = 0; k < delta.length; k++) delta[k] = theta[k] - this.phi[k];
    this.sent = { phi: this.phi.slice(), delta };
    return { phi: this.sent.phi, delta: this.sent.delta };
  }

  async probe(partner: PartnerPayload): Promise<ProbeLosses> {
    if (!this.sent) throw new BackendError('probe called before outerPayload: the candidates need this replica\'s own φ and Δ');
    const { outerMomentum: momentum, outerLr: lr, consensus, batch, seqLen } = this.cfg;
    const c = probeCandidates(this.phi, this.momentum, this.sent, { phi: partner.phi, delta: partner.delta }, { momentum, lr, consensus });
    const windows = Array.from({ length: PROBE_WINDOWS }, () => this.probeSampler.next(batch, seqLen));
    const keep = this.trainer.params.slice();
    try {
      const losses = (params: Float32Array) => {
        this.trainer.setParams(params);
        return windows.map((w) => this.trainer.evaluate([w]));
      };
      return { solo: losses(c.solo), paired: losses(c.paired) };
    } finally {
      this.trainer.setParams(keep);
    }
  }

  async applyOuter(partners: PartnerPayload[]): Promise<void> {
    if (!this.sent) throw new BackendError('applyOuter called before outerPayload: the outer step needs this replica\'s own φ and Δ');
    const group: OuterMessage[] = [this.sent, ...partners.map((p) => ({ phi: p.phi, delta: p.delta }))];
    const { outerMomentum: momentum, outerLr: lr, consensus } = this.cfg;
    nolocoOuterStep({ phi: this.phi, momentum: this.momentum, theta: this.trainer.params }, group, { momentum, lr, consensus });
    this.sent = null;
    this.stepAtOuter = this.trainer.step;
  }

  async slowState(): Promise<SlowState> {
    return { phi: this.phi.slice(), momentum: this.momentum.slice() };
  }

  async load(s: SlowState & { innerStep: number }): Promise<void> {
    if (s.phi.length !== this.total || s.momentum.length !== this.total) {
      throw new BackendError(`state has ${s.phi.length}/${s.momentum.length} floats; this run's layout needs ${this.total}`);
    }
    this.phi.set(s.phi);
    this.momentum.set(s.momentum);
    this.trainer.setParams(s.phi);
    this.trainer.m.fill(0);
    this.trainer.v.fill(0);
    this.trainer.step = this.stepAtOuter = s.innerStep;
  }

  dispose(): void { /* nothing held outside the heap */ }
}
