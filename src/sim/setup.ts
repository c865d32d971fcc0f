// From a plain, JSON-able run description (what the CLI parses and the benchmark sends to worker
// threads) to a finished simulation. Everything a run depends on is in the spec, so a spec and
// its result can be stored side by side and replayed.
import { DEFAULT_TRAIN, preset, trainConfig, validateModelConfig, type ModelConfig, type TrainConfig } from '../model/config.ts';
import { RUN_VAL_BATCHES } from '../data/sampler.ts';
import { learningRate } from '../train/schedule.ts';
import type { NetworkModel, AllReduceKind } from '../train/network.ts';
import { parseStaleRule, type DilocoMomentum } from '../train/outer.ts';
import type { Corpus } from '../data/corpus.ts';
import { loadDefaultCorpus } from '../data/corpus.ts';
import type { ChurnConfig, Method, SimConfig } from './config.ts';
import { SIM_DEFAULTS, methodDefaults, validateSimConfig } from './config.ts';
import type { LearnerFactory } from './learner.ts';
import { gptFactory } from './gpt-learner.ts';
import { quadraticFactory } from './quadratic.ts';
import { makeStrategy } from './methods/index.ts';
import { Simulation, type EvalRow, type SimResult } from './simulator.ts';
import { parseSpeeds, type SpeedSpec } from './speeds.ts';

export interface SimSpec {
  method: Method;
  replicas: number;
  /** Defaults per method (NoLoCo paper): see methodDefaults. */
  H?: number;
  alpha?: number;
  beta?: number;
  gamma?: number;
  wait: number;
  /** DiLoCo's outer momentum (default heavy-ball, as the NoLoCo authors' baseline). */
  dilocoMomentum?: DilocoMomentum;
  /** Start phase offsets as a fraction of H (SimConfig.startSpread; default 0). */
  startSpread?: number;
  stepTime: number;
  speeds: string;
  jitter: number;
  seed: number;
  time?: number;
  steps?: number;
  /** Evaluations over the run (plus the one at t = 0). */
  evals: number;
  network: NetworkModel;
  allReduce: AllReduceKind;
  churn: ChurnConfig | null;
  /** NoLoCo: the probe judges every pair step (default true; SimConfig.probe). */
  probe?: boolean;
  /** Seconds one probe takes, measured (SimConfig.probeTime; default: modelled from the step time). */
  probeTime?: number;
  /** NoLoCo: the mesh's checks of a partner's payload (default true; SimConfig.checks). */
  checks?: boolean;
  /** NoLoCo: the consensus rule for a partner rounds behind, "none", "weight:K" or "solo:K" (SimConfig.stale; default none). */
  stale?: string;
  /** Also the loss of each replica's weights at its last outer step (SimConfig.roundLoss). */
  roundLoss?: boolean;
  /**
   * gpt: the CPU reference GPT; webgpu: the same model, data and schedule on the WGSL engine
   * (Dawn in Node: a GPU server's GPU, or SwiftShader); quadratic: a toy for fast what-ifs.
   */
  learner: LearnerKind;
  /**
   * What each replica reads. shared: random windows of the whole training text (the coordinator's
   * default with one train file). sharded: replica k only windows of the k-th of `replicas`
   * contiguous slices (a data-parallel split, as when a dataset has a file per volunteer; a
   * joiner under churn, with a fresh stream s, reads slice s mod n). Without communication a
   * sharded replica learns from its slice alone.
   */
  data: DataMode;
  preset: string;
  /** Changes to the preset's shape (a wider or deeper model than the preset, same tokenizer). */
  model?: { layers?: number; d?: number; heads?: number };
  batch: number;
  seqLen: number;
  /** Peak inner learning rate. */
  lr: number;
  /** Warm-up as a fraction of the budget (time or steps). */
  warmup: number;
  minLrFrac: number;
  /**
   * A run's own schedule instead of one over the budget: each replica's rate follows its own
   * inner step through `warmupSteps` and a cosine over `totalSteps`, as a live run's volunteers
   * do (src/train/schedule.ts). `warmup` is then unused.
   */
  schedule?: { warmupSteps: number; totalSteps: number };
  /** The inner AdamW's settings and gradient clip (default: a run's, DEFAULT_TRAIN). */
  optimizer?: Partial<Pick<TrainConfig, OptimizerKey>>;
  valBatches: number;
  valBatch: number;
}

type OptimizerKey = 'weightDecay' | 'beta1' | 'beta2' | 'eps' | 'gradClip';

/** A live run as far as the simulator can train like its volunteers (RunInfo's fields). */
export interface RunShape { preset: string; seed: number; train: TrainConfig }

/**
 * What a spec takes from a live run so that its replicas train as the run's volunteers do (the
 * one place bench:swarm and any other comparison get them): the run's model, seed (a replica's
 * starting weights and its data stream k, as volunteer k's), H and outer rule, batch, sequence
 * length, peak rate and its own schedule on each replica's step, AdamW and clip, and the
 * volunteers' validation windows (RUN_VAL_BATCHES batches of the run's batch).
 */
export function specOfRun(run: RunShape): Pick<SimSpec, 'preset' | 'seed' | 'H' | 'alpha' | 'beta' | 'gamma' | 'batch' | 'seqLen' | 'lr' | 'minLrFrac' | 'schedule' | 'optimizer' | 'valBatches' | 'valBatch'> {
  const t = run.train;
  return {
    preset: run.preset, seed: run.seed, H: t.H, alpha: t.outerMomentum, beta: t.outerLr, gamma: t.consensus,
    batch: t.batch, seqLen: t.seqLen, lr: t.lr, minLrFrac: t.minLrFrac, schedule: { warmupSteps: t.warmupSteps, totalSteps: t.totalSteps },
    optimizer: { weightDecay: t.weightDecay, beta1: t.beta1, beta2: t.beta2, eps: t.eps, gradClip: t.gradClip },
    valBatches: RUN_VAL_BATCHES, valBatch: t.batch,
  };
}

export const LEARNERS = ['gpt', 'webgpu', 'quadratic'] as const;
export type LearnerKind = (typeof LEARNERS)[number];

export const DATA_MODES = ['shared', 'sharded'] as const;
export type DataMode = (typeof DATA_MODES)[number];

export const SPEC_DEFAULTS: Omit<SimSpec, 'method' | 'seed'> = {
  replicas: SIM_DEFAULTS.replicas,
  wait: SIM_DEFAULTS.wait,
  stepTime: SIM_DEFAULTS.stepTime,
  speeds: 'uniform:1:4',
  jitter: 0,
  time: 600,
  evals: 10,
  network: SIM_DEFAULTS.network,
  allReduce: SIM_DEFAULTS.allReduce,
  churn: null,
  learner: 'gpt',
  data: 'shared',
  preset: 'micro',
  // micro on the CPU reference: 2 x 32 tokens is ~10 ms a step on one core.
  batch: 2,
  seqLen: 32,
  // A 35K-parameter model takes a higher rate than the 6e-4 meant for bigger ones; 2e-3 is the
  // better of {2e-3, 6e-3} for the data-parallel and local baselines in bench/sim.ts.
  lr: 2e-3,
  warmup: 0.05,
  minLrFrac: DEFAULT_TRAIN.minLrFrac,
  valBatches: 4,
  valBatch: 16,
};

/** Steps of the clock-driven schedule: the cosine is evaluated at this resolution over the budget. */
const SCHEDULE_RESOLUTION = 1000;

/**
 * Inner learning rate. With a time budget the schedule runs on the simulated clock, so every
 * method warms up and decays to its floor over the same wall time whatever its step count;
 * with a step budget it runs on each replica's own step.
 */
export function makeLr(spec: Pick<SimSpec, 'time' | 'steps' | 'lr' | 'warmup' | 'minLrFrac' | 'schedule'>): (step: number, t: number) => number {
  if (spec.schedule !== undefined) {
    const { warmupSteps, totalSteps } = spec.schedule;
    if (!(Number.isInteger(warmupSteps) && warmupSteps >= 0 && Number.isInteger(totalSteps) && totalSteps >= 1)) {
      throw new RangeError(`sim schedule: warmupSteps must be an integer >= 0 and totalSteps one >= 1, got ${warmupSteps} and ${totalSteps}`);
    }
    const cfg = { lr: spec.lr, warmupSteps, totalSteps, minLrFrac: spec.minLrFrac };
    return (step) => learningRate(step, cfg);
  }
  if (spec.time !== undefined) {
    const T = spec.time;
    const cfg = { lr: spec.lr, warmupSteps: Math.max(1, Math.round(spec.warmup * SCHEDULE_RESOLUTION)), totalSteps: SCHEDULE_RESOLUTION, minLrFrac: spec.minLrFrac };
    return (_step, t) => learningRate(Math.min(SCHEDULE_RESOLUTION, Math.floor((t / T) * SCHEDULE_RESOLUTION)), cfg);
  }
  const S = spec.steps!;
  const cfg = { lr: spec.lr, warmupSteps: Math.max(1, Math.round(spec.warmup * S)), totalSteps: S, minLrFrac: spec.minLrFrac };
  return (step) => learningRate(step, cfg);
}

/** The slowest speed a distribution is likely to give, to size evaluation intervals in step mode. */
function slowSpeed(s: SpeedSpec): number {
  switch (s.kind) {
    case 'uniform': return s.lo;
    case 'lognormal': return Math.exp(-2 * s.sigma);
    case 'equal': return 1;
    case 'list': return Math.min(...s.values);
  }
}

export function simConfig(spec: SimSpec): SimConfig {
  const d = methodDefaults(spec.method);
  const speeds = parseSpeeds(spec.speeds);
  if (!(Number.isInteger(spec.evals) && spec.evals >= 1)) throw new Error(`evals must be a positive integer, got ${spec.evals}`);
  const horizon = spec.time ?? ((spec.steps ?? 1) * spec.stepTime) / slowSpeed(speeds);
  return {
    method: spec.method,
    replicas: spec.replicas,
    H: spec.H ?? d.H,
    outer: {
      momentum: spec.alpha ?? d.outer.momentum,
      lr: spec.beta ?? d.outer.lr,
      consensus: spec.method === 'diloco' ? (spec.gamma ?? 0) : (spec.gamma ?? d.outer.consensus),
    },
    wait: spec.wait,
    dilocoMomentum: spec.dilocoMomentum ?? SIM_DEFAULTS.dilocoMomentum,
    startSpread: spec.startSpread ?? SIM_DEFAULTS.startSpread,
    stepTime: spec.stepTime,
    speeds,
    jitter: spec.jitter,
    seed: spec.seed,
    time: spec.time,
    steps: spec.steps,
    evalEvery: horizon / spec.evals,
    network: spec.network,
    allReduce: spec.allReduce,
    churn: spec.churn,
    lr: makeLr(spec),
    probe: spec.probe ?? SIM_DEFAULTS.probe,
    ...(spec.probeTime !== undefined && { probeTime: spec.probeTime }),
    checks: spec.checks ?? SIM_DEFAULTS.checks,
    ...(spec.stale !== undefined && { stale: parseStaleRule(spec.stale) }),
    roundLoss: spec.roundLoss ?? false,
  };
}

/** The spec's model: its preset with any shape changes applied, checked. */
export function simModel(spec: Pick<SimSpec, 'preset' | 'model'>): ModelConfig {
  for (const k of Object.keys(spec.model ?? {})) {
    if (!['layers', 'd', 'heads'].includes(k)) throw new Error(`sim model: only layers, d and heads can change, got "${k}"`);
  }
  const m: ModelConfig = { ...preset(spec.preset), ...(spec.model ?? {}) };
  validateModelConfig(m);
  return m;
}

let corpusCache: Corpus | null = null;

export async function learnerFactory(spec: SimSpec): Promise<LearnerFactory> {
  if (spec.learner === 'quadratic') return quadraticFactory({ dim: 256, seed: spec.seed, noise: 2, bias: 0.2 });
  if (!LEARNERS.includes(spec.learner)) throw new Error(`unknown learner "${String(spec.learner)}"; use ${LEARNERS.join(', ')}`);
  corpusCache ??= loadDefaultCorpus();
  const model = simModel(spec);
  const train = trainConfig({ ...pickOptimizer(spec.optimizer), batch: spec.batch, seqLen: spec.seqLen, lr: spec.lr }, model);
  const data = spec.data ?? 'shared';
  if (!DATA_MODES.includes(data)) throw new Error(`unknown data mode "${String(data)}"; use ${DATA_MODES.join(' or ')}`);
  const o = {
    model, train, seed: spec.seed, data: corpusCache, valBatches: spec.valBatches, valBatch: spec.valBatch,
    shards: data === 'sharded' ? spec.replicas : 1,
  };
  if (spec.learner === 'gpt') return gptFactory(o);
  // Loaded only here: the CPU paths never load Dawn or the WGSL sources.
  const { gpuFactory } = await import('./gpu-learner.ts');
  return gpuFactory(o);
}

/** The optimizer fields a spec gives, nothing else (a stored spec's extra keys change no training setting). */
function pickOptimizer(o: SimSpec['optimizer']): Partial<Pick<TrainConfig, OptimizerKey>> {
  const out: Partial<Pick<TrainConfig, OptimizerKey>> = {};
  for (const k of ['weightDecay', 'beta1', 'beta2', 'eps', 'gradClip'] as const) {
    const v = o?.[k];
    if (v === undefined) continue;
    if (!(Number.isFinite(v) && v >= 0)) throw new Error(`sim optimizer: ${k} must be a finite number >= 0, got ${v}`);
    out[k] = v;
  }
  return out;
}

/** Warnings for the spec (bad hyper-parameters for the method, etc.); throws on an invalid one. Builds nothing. */
export function checkSpec(spec: SimSpec): string[] {
  return validateSimConfig(simConfig(spec));
}

/** The simulation of `spec`, ready to run (the caller disposes it). */
export async function prepare(spec: SimSpec): Promise<Simulation> {
  const cfg = simConfig(spec);
  const factory = await learnerFactory(spec);
  try {
    return new Simulation(cfg, factory, makeStrategy(spec.method));
  } catch (e) {
    factory.dispose?.();
    throw e;
  }
}

export async function runSpec(spec: SimSpec, onEval?: (row: EvalRow) => void): Promise<SimResult> {
  const sim = await prepare(spec);
  try {
    return await sim.run(onEval);
  } finally {
    sim.dispose();
  }
}
