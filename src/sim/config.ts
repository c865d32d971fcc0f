// Simulator configuration: one documented place for every knob, with the NoLoCo paper's
// settings as defaults for each method.
import type { DilocoMomentum, OuterHyper, StaleRule } from '../train/outer.ts';
import { pairStabilityWarnings, validateOuterHyper } from '../train/outer.ts';
import type { AllReduceKind, NetworkModel } from '../train/network.ts';
import { HOME_LINK, validateNetwork } from '../train/network.ts';
import type { SpeedSpec } from './speeds.ts';
import { validateSpeeds } from './speeds.ts';
import { DEFAULT_PAIR_WAIT_FRAC } from '../protocol/ready-pool.ts';
import { DEFAULT_TRAIN } from '../model/config.ts';

export const METHODS = ['noloco-async', 'noloco-lockstep', 'diloco', 'ddp', 'local'] as const;
export type Method = (typeof METHODS)[number];

export function parseMethod(s: string): Method {
  if (!(METHODS as readonly string[]).includes(s)) throw new Error(`unknown method "${s}"; choose one of ${METHODS.join(', ')}`);
  return s as Method;
}

export interface ChurnConfig {
  /** Mean time a replica stays before it leaves (exponential), simulated seconds. */
  session: number;
  /** Mean time until a replacement joins a vacated slot (exponential), simulated seconds. */
  offline: number;
}

export interface SimConfig {
  method: Method;
  replicas: number;
  /** Inner steps per outer step (ignored by ddp, which syncs every step, and by local). */
  H: number;
  /** Outer optimiser; DiLoCo ignores `consensus` (it is 0 by definition). */
  outer: OuterHyper;
  /** DiLoCo's outer momentum (other methods ignore it): every table names the one that ran. */
  dilocoMomentum: DilocoMomentum;
  /**
   * noloco-async: how long a replica that finished its inner loop waits in the ready pool for a
   * partner, as a fraction of its own inner-loop time (H steps at its speed). Never zero: with no
   * wait nobody is ever in the pool and every outer step is solo (docs/design.md section 3).
   */
  wait: number;
  /**
   * Phase offsets at the start: replica i starts its first inner loop (of H steps, as every
   * round) a uniform fraction in [0, startSpread) of its own loop time late, in whole steps. 0 (the
   * default) starts everyone in step; real volunteers start whenever their page or process is
   * ready, so compare them with 1.
   */
  startSpread: number;
  /** Seconds per inner step at speed 1; a replica of speed s takes stepTime / s. */
  stepTime: number;
  speeds: SpeedSpec;
  /** Log-normal sigma of each inner step's duration around stepTime / speed (0 = steady). */
  jitter: number;
  /** Seeds speeds, pairings, network draws, churn, data streams and initial weights. */
  seed: number;
  /** Simulated-time budget in seconds (every method gets the same wall time). */
  time?: number;
  /** Step budget: a replica stops after this many inner steps. */
  steps?: number;
  /** Simulated seconds between evaluations (a final one is always made at the end). */
  evalEvery: number;
  network: NetworkModel;
  /** The collective DiLoCo and ddp pay for. */
  allReduce: AllReduceKind;
  churn: ChurnConfig | null;
  /** Inner learning rate for a replica at optimiser step `step` and simulated time `time`. */
  lr: (step: number, time: number) => number;
  /**
   * NoLoCo: judge every pair step by its effect on the replica's loss before taking it (the
   * probe, src/round/probe.ts; docs/design.md section 6.1), as volunteers do, and charge its
   * forward passes to the replica's clock. On by default so benchmarks measure the defended
   * system; learners that cannot evaluate candidates (the quadratic toy, the WGSL learner) skip it.
   */
  probe: boolean;
  /**
   * Seconds one probe takes, the same for every replica: a measured time (bench:swarm gives its
   * volunteers' median, which their throttle does not slow). Absent: 2 candidates × PROBE_WINDOWS
   * forward passes of FORWARD_FRACTION_OF_STEP of a step each, at the replica's speed.
   */
  probeTime?: number;
  /**
   * NoLoCo: check each partner's φ and Δ as the mesh does before the probe sees them (the one
   * PartnerValidator, src/sync/validate.ts; docs/design.md section 6): Δ clipped to a few times the
   * honest scale, a φ far away or behind us along our progress moved in, and a refusal (direction,
   * norm, distance, lag) a solo step. On by default, as for the probe: volunteers do it every round.
   */
  checks: boolean;
  /**
   * NoLoCo: how the consensus treats a partner whose message is rounds behind (StaleRule in
   * src/train/outer.ts; docs/design.md section 6, "Rounds behind"). Absent: none, the live rule.
   */
  stale?: StaleRule;
  /**
   * Also evaluate, at every evaluation, the weights each replica held at the end of its last
   * outer round (φ), what a volunteer measures and reports after its outer step, where the
   * other losses are of the current fast weights, part-way into an inner loop (EvalRow
   * `roundLosses`). Methods with outer steps only; off by default (one more forward pass
   * over the validation set per replica).
   */
  roundLoss?: boolean;
}

/**
 * NoLoCo paper settings: NoLoCo's are a run's defaults (DEFAULT_TRAIN: H=50, alpha=0.5,
 * beta=gamma=0.7), read from there so the two cannot drift; DiLoCo H=100, alpha=0.3, beta=0.7.
 */
export function methodDefaults(method: Method): { H: number; outer: OuterHyper } {
  if (method === 'diloco') return { H: 100, outer: { momentum: 0.3, lr: 0.7, consensus: 0 } };
  return { H: DEFAULT_TRAIN.H, outer: { momentum: DEFAULT_TRAIN.outerMomentum, lr: DEFAULT_TRAIN.outerLr, consensus: DEFAULT_TRAIN.consensus } };
}

export const SIM_DEFAULTS = {
  replicas: 8,
  wait: DEFAULT_PAIR_WAIT_FRAC,
  dilocoMomentum: 'heavy-ball' as DilocoMomentum,
  startSpread: 0,
  // One second per step at speed 1: the unit the pilot used (replica i's step takes
  // 1/speed_i). It sets how large communication is against compute; see bench/sim.ts.
  stepTime: 1,
  jitter: 0,
  network: HOME_LINK,
  allReduce: 'tree' as AllReduceKind,
  probe: true,
  checks: true,
};

/**
 * What one probe forward pass costs against a training step (forward, backward and AdamW): about
 * a third, the backward being twice the forward. The simulator charges the probe 2 candidates ×
 * PROBE_WINDOWS windows of this.
 */
export const FORWARD_FRACTION_OF_STEP = 1 / 3;

/** Throws on a config that cannot run; returns warnings for one that runs but is suspect. */
export function validateSimConfig(c: SimConfig): string[] {
  const need = (ok: boolean, msg: string) => { if (!ok) throw new Error(`sim config: ${msg}`); };
  need(Number.isInteger(c.replicas) && c.replicas >= 1, `replicas must be a positive integer, got ${c.replicas}`);
  need(Number.isInteger(c.H) && c.H >= 1, `H must be a positive integer, got ${c.H}`);
  need(Number.isFinite(c.stepTime) && c.stepTime > 0, `stepTime must be > 0 seconds, got ${c.stepTime}`);
  need(Number.isFinite(c.jitter) && c.jitter >= 0, `jitter must be >= 0, got ${c.jitter}`);
  need(Number.isFinite(c.startSpread) && c.startSpread >= 0 && c.startSpread <= 1, `startSpread must be in [0, 1], got ${c.startSpread}`);
  need(Number.isFinite(c.wait) && c.wait > 0,
    `wait must be a positive fraction of the inner-loop time, got ${c.wait} (with no wait nobody is ever in the pool and every outer step is solo)`);
  need(c.time !== undefined || c.steps !== undefined, 'give a time budget or a step budget');
  if (c.probeTime !== undefined) need(Number.isFinite(c.probeTime) && c.probeTime >= 0, `probeTime must be >= 0 seconds, got ${c.probeTime}`);
  if (c.time !== undefined) need(Number.isFinite(c.time) && c.time > 0, `time budget must be > 0 seconds, got ${c.time}`);
  if (c.steps !== undefined) need(Number.isInteger(c.steps) && c.steps >= 1, `step budget must be a positive integer, got ${c.steps}`);
  need(Number.isFinite(c.evalEvery) && c.evalEvery > 0, `evalEvery must be > 0 seconds, got ${c.evalEvery}`);
  need(Number.isInteger(c.seed), `seed must be an integer, got ${c.seed}`);
  if (c.churn) {
    need(c.churn.session > 0 && Number.isFinite(c.churn.session), `churn session must be > 0 seconds, got ${c.churn.session}`);
    need(c.churn.offline > 0 && Number.isFinite(c.churn.offline), `churn offline time must be > 0 seconds, got ${c.churn.offline}`);
  }
  validateNetwork(c.network);
  validateSpeeds(c.speeds);
  const warnings: string[] = [];
  if (c.method === 'noloco-async' || c.method === 'noloco-lockstep') {
    validateOuterHyper(c.outer);
    warnings.push(...pairStabilityWarnings(c.outer));
    if (c.replicas === 1) warnings.push('one replica has no partner: every NoLoCo outer step will be solo');
  }
  if (c.method === 'diloco') {
    validateOuterHyper({ ...c.outer, consensus: 0 });
    if (c.outer.consensus !== 0) warnings.push(`diloco ignores consensus=${c.outer.consensus} (its replicas share phi, gamma is 0)`);
  }
  return warnings;
}
