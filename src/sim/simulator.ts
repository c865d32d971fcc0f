// N replicas in one process on a simulated clock. Replica i's inner step takes stepTime/speed_i;
// communication takes what the network model says. Methods are strategies (src/sim/methods):
// they decide what happens when replicas finish an inner loop; this file owns the clock, the
// replicas' time accounting, churn, and the evaluations.
//
// Determinism: every random choice comes from a generator seeded by (seed, purpose), events at
// equal times run in a fixed order, and replicas that finish an inner loop at the same instant
// are handed to the strategy together, in slot order. Same config -> identical results.
import { Rng } from '../model/rng.ts';
import { probeCandidates, type OuterHyper, type OuterMessage } from '../train/outer.ts';
import { PROBE_WINDOWS, ProbeJudge, type ProbeLosses, type ProbeVerdict } from '../round/probe.ts';
import { PartnerValidator, norm2 } from '../sync/validate.ts';
import type { Learner, LearnerFactory } from './learner.ts';
import type { Method, SimConfig } from './config.ts';
import { FORWARD_FRACTION_OF_STEP, validateSimConfig } from './config.ts';
import { EventQueue } from '../protocol/event-queue.ts';
import { averageWeights, sameWeights, weightSpread } from './metrics.ts';
import { drawSpeed } from './speeds.ts';

export type ReplicaState = 'run' | 'wait' | 'comm' | 'done' | 'off';

/** One slot in the run. When a volunteer leaves and another joins, the slot gets a new instance. */
export class Replica {
  /** Which data stream the current instance reads (slot for the first, fresh ones for joiners). */
  stream: number;
  speed: number;
  learner: Learner;
  /** (P) slow weights at the last outer step. */
  phi: Float32Array;
  /** (P) outer momentum. */
  mom: Float32Array;
  alive = true;
  /**
   * The instance holds training state. A joiner has none until it bootstraps (at once for NoLoCo
   * and local; after the all-reduce in flight for the barrier methods): until then it is neither
   * a donor nor evaluated, and its slot reads as empty in the metrics.
   */
  bootstrapped = true;
  /** Inner steps since the last outer step. */
  inLoop = 0;
  /** Seconds and steps drawn for the current inner loop (what a volunteer times as innerMs). */
  loopSeconds = 0;
  loopSteps = 0;
  state: ReplicaState = 'run';
  since = 0;
  /** Seconds spent computing, waiting for others, and communicating (all instances of the slot). */
  spent = { run: 0, wait: 0, comm: 0 };
  /** Bumped when an instance leaves: events scheduled for the old instance are dropped. */
  epoch = 0;
  /** The message sent at the last outer step (copies of phi and delta). */
  msg: OuterMessage | null = null;
  outerSteps = 0;
  soloSteps = 0;
  /** Inner steps at its last outer step: the step its φ stands at (learner.step runs ahead of it within a loop). */
  phiStep = 0;
  bytesSent = 0;
  /** This instance's probe judge (src/round/probe.ts); made at its first judged pair step. */
  judge: ProbeJudge | null = null;
  /** This instance's checks of partners' payloads (src/sync/validate.ts); made at its first outer step. */
  validator: PartnerValidator | null = null;
  readonly stepRng: Rng;

  constructor(readonly slot: number, stream: number, speed: number, learner: Learner, seed: number) {
    this.stream = stream;
    this.speed = speed;
    this.learner = learner;
    this.phi = learner.params.slice();
    this.mom = new Float32Array(learner.params.length);
    this.stepRng = new Rng(seed, 0x5e00 + slot);
  }

  get theta(): Float32Array { return this.learner.params; }
  /** Nominal seconds of one inner loop of `H` steps at this replica's speed. */
  loopTime(H: number, stepTime: number): number { return (H * stepTime) / this.speed; }
  /**
   * The inner loop just run, as a volunteer times it (its pairing wait is a fraction of this):
   * with jitter a slow loop waits longer, as on a real machine. Before any step, the nominal time.
   */
  lastLoopTime(H: number, stepTime: number): number {
    return this.loopSteps > 0 ? (this.loopSeconds * H) / this.loopSteps : this.loopTime(H, stepTime);
  }
}

/**
 * What happens when replicas finish their inner loops; see src/sim/methods. The simulator has
 * synced the learners (Learner.sync) of the replicas it hands to onLoopsDone.
 */
export interface Strategy {
  readonly method: Method;
  /** Inner steps per loop: H, or 1 for data-parallel (it syncs every step). */
  loopLength(sim: Simulation): number;
  /** One inner step's computation (default: a local optimiser step). */
  work?(sim: Simulation, r: Replica): void;
  /** Replicas that finished a loop at sim.now, in slot order. */
  onLoopsDone(sim: Simulation, rs: Replica[]): void;
  /** A replica left or hit the step budget: release anything that waits for it. */
  onGone(sim: Simulation, r: Replica): void;
  /** A new instance took a vacant slot; bootstrap it and start it (or hold it). */
  onJoin(sim: Simulation, r: Replica): void;
}

export interface EvalRow {
  /** Simulated seconds. */
  t: number;
  /** Mean inner steps per present replica. */
  meanStep: number;
  /** Per slot: inner steps, validation loss of its current weights (null while the slot is empty or its joiner has not bootstrapped). */
  steps: (number | null)[];
  losses: (number | null)[];
  meanLoss: number;
  /**
   * With SimConfig.roundLoss (methods with outer steps): per slot, the validation loss of the
   * weights it held at the end of its last outer round (φ; the initial weights before its first),
   * what a volunteer reports, and their mean over present replicas; and the inner step each of
   * those φ stands at (the step at its last outer step, up to H behind `steps`), and their mean:
   * the step to read meanRoundLoss at, as a volunteer's report gives the step of its outer round.
   * Absent otherwise.
   */
  roundLosses?: (number | null)[];
  meanRoundLoss?: number;
  roundSteps?: (number | null)[];
  meanRoundStep?: number;
  /** Validation loss of the present replicas' averaged weights. */
  avgModelLoss: number;
  /** Mean over present replicas of the training loss of each one's last inner step. */
  trainLoss: number;
  /** RMS distance of the replicas' weights from their mean, per parameter. */
  spread: number;
  /** Of the replicas' present time so far: waiting for others, communicating. */
  idleFraction: number;
  commFraction: number;
  /** Outer steps taken alone / all outer steps (NoLoCo). */
  soloFraction: number;
  bytesPerReplica: number;
  /** Synchronisation events so far: pair exchanges plus all-reduces. */
  exchanges: number;
  present: number;
}

export interface ReplicaSummary {
  slot: number;
  speed: number;
  steps: number;
  outerSteps: number;
  soloSteps: number;
  idleFraction: number;
  commFraction: number;
  bytesSent: number;
}

export interface SimResult {
  method: Method;
  replicas: number;
  H: number;
  wait: number;
  seed: number;
  learner: string;
  /** Simulated seconds at the end. */
  simTime: number;
  evals: EvalRow[];
  final: EvalRow;
  perReplica: ReplicaSummary[];
  joins: number;
  leaves: number;
  /** The probe (NoLoCo with SimConfig.probe): pair steps judged and rejected, and its cost. */
  probe: ProbeSummary;
  checks: CheckSummary;
  warnings: string[];
  /** Each slot's weights at the end (null for an empty slot or a joiner not yet bootstrapped). */
  finalWeights: (Float32Array | null)[];
}

/** The mesh's checks of partners' payloads over a run (SimConfig.checks). */
export interface CheckSummary {
  on: boolean;
  /** Payloads checked, refused (a solo step instead), and by reason. */
  checked: number;
  refused: number;
  reasons: Record<string, number>;
  /** Accepted payloads whose Δ was clipped, and whose φ was moved in (distance or lag). */
  deltaClipped: number;
  phiMoved: number;
}

export interface ProbeSummary {
  /** On in this run (NoLoCo with SimConfig.probe and a learner that can evaluate candidates). */
  on: boolean;
  /** Pair steps judged, and those rejected (a solo step taken instead). */
  judged: number;
  rejected: number;
  /** Reports the judges would have sent the coordinator, by code (probe-gross is a strike). */
  offences: Record<string, number>;
  /** Simulated seconds the probe charged, per outer round (solo rounds included) and as a fraction of an inner loop. */
  secondsPerOuterRound: number;
  fractionOfInnerLoop: number;
}

/** One judged pair step, for an observer (Simulation.onProbe): what a volunteer's judge saw and said. */
export interface ProbeEvent {
  t: number;
  /** The judging replica's slot, and the partner's id as that judge keys it. */
  slot: number;
  partner: string;
  /** Outer rounds the partner's message is behind the judge's. */
  behind: number | undefined;
  losses: ProbeLosses;
  verdict: ProbeVerdict;
}

interface SimEvent { time: number; priority: number; step?: { r: Replica; epoch: number }; fn?: () => void | Promise<void> }

/** Among events at one instant: inner steps, then communication, pool timeouts, churn, evaluation, end. */
export const PRIORITY = { step: 0, comm: 1, timeout: 2, churn: 3, eval: 4, end: 5 } as const;

export class Simulation {
  now = 0;
  readonly replicas: Replica[] = [];
  readonly pairRng: Rng;
  readonly netRng: Rng;
  private readonly churnRng: Rng;
  private readonly speedRng: Rng;
  private readonly queue = new EventQueue<SimEvent>();
  private arrivals: Replica[] = [];
  private evals: EvalRow[] = [];
  private stopped = false;
  private speedsDrawn = 0;
  private nextStream: number;
  exchanges = 0;
  joins = 0;
  leaves = 0;
  readonly warnings: string[];

  constructor(readonly cfg: SimConfig, readonly factory: LearnerFactory, readonly strategy: Strategy) {
    this.warnings = validateSimConfig(cfg);
    if (strategy.method !== cfg.method) throw new Error(`strategy ${strategy.method} does not match config method ${cfg.method}`);
    this.pairRng = new Rng(cfg.seed, 0x9a1e);
    this.netRng = new Rng(cfg.seed, 0x4e7);
    this.checkRng = new Rng(cfg.seed, 0xc7ec);
    this.churnRng = new Rng(cfg.seed, 0xc4a);
    this.speedRng = new Rng(cfg.seed, 0x59d);
    for (let i = 0; i < cfg.replicas; i++) {
      const speed = drawSpeed(cfg.speeds, this.speedsDrawn++, this.speedRng);
      this.replicas.push(new Replica(i, i, speed, factory.create(i, factory.initial), cfg.seed));
    }
    this.nextStream = cfg.replicas;
  }

  // ---- scheduling -------------------------------------------------------------------------

  /** Runs `fn` at simulated time `time` (the run waits for it if it returns a promise). */
  at(time: number, priority: number, fn: () => void | Promise<void>): void {
    this.queue.push({ time, priority, fn });
  }

  /** Runs `fn` at `time` only if replica r's current instance is still there. */
  atFor(r: Replica, time: number, priority: number, fn: () => void): void {
    const epoch = r.epoch;
    this.at(time, priority, () => { if (r.epoch === epoch && r.alive) fn(); });
  }

  get H(): number { return this.cfg.H; }

  /** Replicas present and still training (not left, not at the step budget). */
  active(): Replica[] { return this.replicas.filter((r) => r.alive && r.state !== 'done'); }

  setState(r: Replica, s: ReplicaState): void {
    if (r.state === 'run' || r.state === 'wait' || r.state === 'comm') r.spent[r.state] += this.now - r.since;
    r.state = s;
    r.since = this.now;
  }

  /** Starts a fresh inner loop (after an outer step, a join, or at the start). */
  startLoop(r: Replica): void {
    r.inLoop = 0;
    r.loopSeconds = 0;
    r.loopSteps = 0;
    r.learner.push?.(); // an outer step or a bootstrap may have changed the weights on the host
    this.continueLoop(r);
  }

  /** Gives slot r a new learner (its bootstrap), freeing the one it had. */
  replaceLearner(r: Replica, learner: Learner): void {
    if (r.learner !== learner) r.learner.dispose?.();
    r.learner = learner;
    r.bootstrapped = true;
  }

  private continueLoop(r: Replica): void {
    if (this.cfg.steps !== undefined && r.learner.step >= this.cfg.steps) {
      this.setState(r, 'done');
      this.strategy.onGone(this, r);
      return;
    }
    if (r.state !== 'run') this.setState(r, 'run');
    let dt = this.cfg.stepTime / r.speed;
    if (this.cfg.jitter > 0) dt *= Math.exp(this.cfg.jitter * r.stepRng.normal());
    r.loopSeconds += dt;
    r.loopSteps++;
    this.queue.push({ time: this.now + dt, priority: PRIORITY.step, step: { r, epoch: r.epoch } });
  }

  private onStep(r: Replica): void {
    if (this.strategy.work) this.strategy.work(this, r);
    else {
      r.learner.computeGrads();
      r.learner.applyGrads(r.learner.grads, this.cfg.lr(r.learner.step, this.now));
    }
    r.inLoop++;
    if (r.inLoop >= this.strategy.loopLength(this)) this.arrivals.push(r);
    else this.continueLoop(r);
  }

  // ---- communication helpers shared by methods ---------------------------------------------

  /** Marks the start of a sync of `seconds` for the given replicas, each sending `bytesEach`. */
  beginComm(rs: readonly Replica[], bytesEach: number): void {
    for (const r of rs) { this.setState(r, 'comm'); r.bytesSent += bytesEach; }
    this.exchanges++;
  }

  /** Counts an outer step on r (solo when it had no partner). */
  private probeTotals = { judged: 0, rejected: 0, seconds: 0, offences: {} as Record<string, number> };

  /** Called with every judged pair step (bench:probe-calibration records them); null: none. */
  onProbe: ((e: ProbeEvent) => void) | null = null;

  private checkTotals = { checked: 0, refused: 0, deltaClipped: 0, phiMoved: 0, reasons: {} as Record<string, number> };
  /** Draws which coordinates each validator's mirror check samples (deterministic per seed). */
  private readonly checkRng: Rng;

  /** Whether partners' payloads are checked as the mesh checks them (NoLoCo with SimConfig.checks). */
  get checking(): boolean {
    return this.cfg.checks && (this.cfg.method === 'noloco-async' || this.cfg.method === 'noloco-lockstep');
  }

  /** r's own Δ of the round, the honest scale its checks compare partners with (every round, paired or not, as the mesh does). */
  observeOwn(r: Replica): void {
    if (!this.checking || !r.msg) return;
    this.validatorOf(r).observeOwn(norm2(r.msg.delta));
  }

  /** r's validator, made at its first use (its mirror-check sample drawn from the run's seed). */
  private validatorOf(r: Replica): PartnerValidator {
    return (r.validator ??= new PartnerValidator(r.phi.length, undefined, () => this.checkRng.uniform()));
  }

  /**
   * `partner`'s message as r's mesh would pass it on (src/sync/validate.ts): a copy, its Δ clipped
   * and its φ moved in where the checks say; null when they refuse it (a solo step). `behind`: how
   * many rounds the partner's message is behind r's.
   */
  checkPartner(r: Replica, partnerId: string, partner: OuterMessage, behind: number): OuterMessage | null {
    if (!this.checking || !r.msg) return partner;
    const theirs = { phi: partner.phi.slice(), delta: partner.delta.slice() };
    const v = this.validatorOf(r).check(r.msg.phi, theirs, { peer: partnerId, round: r.outerSteps, peerRound: r.outerSteps - behind }, r.msg.delta);
    this.checkTotals.checked++;
    if (!v.ok) {
      this.checkTotals.refused++;
      this.checkTotals.reasons[v.reason] = (this.checkTotals.reasons[v.reason] ?? 0) + 1;
      return null;
    }
    if (v.clipped) this.checkTotals.deltaClipped++;
    if (v.phiClipped || v.phiLagClipped) this.checkTotals.phiMoved++;
    return { phi: theirs.phi, delta: v.delta };
  }

  /** Whether pair steps are judged: the config asks for it and the learners can evaluate. */
  get probing(): boolean {
    return this.cfg.probe && (this.cfg.method === 'noloco-async' || this.cfg.method === 'noloco-lockstep')
      && this.replicas.length > 0 && typeof this.replicas[0]!.learner.probeLosses === 'function';
  }

  /** Simulated seconds r's probe takes: SimConfig.probeTime, or 2 candidates × PROBE_WINDOWS forward passes at r's speed; 0 when off. */
  probeSeconds(r: Replica): number {
    if (!this.probing) return 0;
    return this.cfg.probeTime ?? (2 * PROBE_WINDOWS * FORWARD_FRACTION_OF_STEP * this.cfg.stepTime) / r.speed;
  }

  /**
   * The probe on r's pair step with `partner`'s message (docs/design.md section 6.1): true to
   * take the pair step, false for a solo step. `behind`: how many outer rounds the partner's
   * message is behind r's, as a volunteer's round tells its judge (src/round/outer-round.ts).
   * Charges its time to the probe totals.
   */
  probePair(r: Replica, partnerId: string, partner: OuterMessage, behind?: number, outer: OuterHyper = this.cfg.outer): boolean {
    if (!this.probing || !r.msg) return true;
    const c = probeCandidates(r.phi, r.mom, r.msg, partner, outer);
    const [solo, paired] = r.learner.probeLosses!([c.solo, c.paired], PROBE_WINDOWS);
    r.judge ??= new ProbeJudge();
    const losses = { solo: solo!, paired: paired! };
    const v = r.judge.judge(partnerId, losses, { behind, round: r.outerSteps });
    this.probeTotals.judged++;
    this.probeTotals.seconds += this.probeSeconds(r);
    if (!v.accept) this.probeTotals.rejected++;
    if (v.offence) this.probeTotals.offences[v.offence.code] = (this.probeTotals.offences[v.offence.code] ?? 0) + 1;
    this.onProbe?.({ t: this.now, slot: r.slot, partner: partnerId, behind, losses, verdict: v });
    return v.accept;
  }

  countOuter(r: Replica, solo: boolean): void {
    r.outerSteps++;
    r.phiStep = r.learner.step;
    if (solo) r.soloSteps++;
  }

  // ---- churn --------------------------------------------------------------------------------

  private scheduleLeave(r: Replica): void {
    const c = this.cfg.churn!;
    this.atFor(r, this.now + exponential(this.churnRng, c.session), PRIORITY.churn, () => this.leave(r));
  }

  private leave(r: Replica): void {
    if (this.replicas.filter((x) => x.alive).length <= 1) { this.scheduleLeave(r); return; } // never empty the run
    this.setState(r, 'off');
    r.alive = false;
    r.epoch++;
    this.leaves++;
    this.strategy.onGone(this, r);
    this.at(this.now + exponential(this.churnRng, this.cfg.churn!.offline), PRIORITY.churn, () => this.join(r));
  }

  private join(r: Replica): void {
    r.stream = this.nextStream++;
    r.speed = drawSpeed(this.cfg.speeds, this.speedsDrawn++, this.speedRng);
    r.alive = true;
    r.bootstrapped = false;
    r.inLoop = 0;
    r.msg = null;
    this.joins++;
    r.state = 'off';
    this.setState(r, 'wait');
    this.strategy.onJoin(this, r);
    this.scheduleLeave(r);
  }

  /** A random present, bootstrapped replica other than r (the bootstrap donor), or null if there is none. */
  pickDonor(r: Replica): Replica | null {
    const live = this.replicas.filter((x) => x.alive && x.bootstrapped && x !== r && x.state !== 'off');
    return live.length === 0 ? null : live[this.churnRng.int(live.length)];
  }

  /**
   * A joiner takes phi, outer momentum and step from the donor and starts from theta = phi with
   * fresh inner-optimiser moments (they are local and never exchanged).
   */
  bootstrapFrom(r: Replica, donor: Replica | null): void {
    const phi = donor ? donor.phi : this.factory.initial;
    this.replaceLearner(r, this.factory.create(r.stream, phi));
    r.learner.step = donor ? donor.learner.step : 0;
    r.phi = phi.slice();
    r.mom = donor ? donor.mom.slice() : new Float32Array(phi.length);
    r.phiStep = donor ? donor.phiStep : 0;
  }

  // ---- the run ------------------------------------------------------------------------------

  async run(onEval?: (row: EvalRow) => void): Promise<SimResult> {
    const cfg = this.cfg;
    // Start phases come from their own generator so a spread of 0 replays earlier runs exactly.
    const phaseRng = new Rng(cfg.seed, 0x57a7);
    for (const r of this.replicas) {
      r.since = 0;
      // A start phase is a later start, not a shorter first loop: a volunteer's every round is H
      // inner steps from its state (src/volunteer/volunteer.ts, the page's training controller).
      // Begun part-way, a replica's first Δ was a step or two at the warm-up's least rate, its Δ
      // scale a tenth of an honest partner's at the same round, and bench/lead-claims.ts saw the
      // live validator report that partner (13.8× the scale, setup 3, seed 1).
      const skipped = cfg.startSpread > 0 ? Math.floor(phaseRng.uniform() * cfg.startSpread * this.strategy.loopLength(this)) : 0;
      if (skipped === 0) { this.startLoop(r); continue; }
      this.setState(r, 'off');
      this.atFor(r, (skipped * cfg.stepTime) / r.speed, PRIORITY.step, () => this.startLoop(r));
    }
    if (cfg.churn) for (const r of this.replicas) this.scheduleLeave(r);
    const scheduleEval = (k: number) => {
      const t = k * cfg.evalEvery;
      if (cfg.time !== undefined && t >= cfg.time) return;
      this.at(t, PRIORITY.eval, async () => {
        const row = await this.evaluate();
        this.evals.push(row);
        onEval?.(row);
        scheduleEval(k + 1);
      });
    };
    scheduleEval(0);
    if (cfg.time !== undefined) this.at(cfg.time, PRIORITY.end, () => { this.stopped = true; });

    for (;;) {
      const next = this.queue.peek();
      if (this.arrivals.length > 0 && (!next || next.time > this.now || !next.step)) {
        const rs = this.arrivals.sort((a, b) => a.slot - b.slot);
        this.arrivals = [];
        await syncAll(rs);
        this.strategy.onLoopsDone(this, rs);
        continue;
      }
      if (!next || this.stopped) break;
      if (cfg.time === undefined && this.replicas.every((r) => !r.alive || r.state === 'done')) break;
      this.queue.pop();
      this.now = next.time;
      if (next.step) {
        const { r, epoch } = next.step;
        if (r.epoch === epoch && r.alive && r.state === 'run') this.onStep(r);
      } else {
        const p = next.fn!();
        if (p) await p;
      }
    }
    for (const r of this.replicas) if (r.alive) this.setState(r, r.state); // close open intervals
    const final = await this.evaluate();
    if (this.evals.at(-1)?.t !== final.t) { this.evals.push(final); onEval?.(final); }
    else this.evals[this.evals.length - 1] = final;
    return {
      method: cfg.method, replicas: cfg.replicas, H: cfg.H, wait: cfg.wait, seed: cfg.seed,
      learner: this.factory.describe(),
      simTime: this.now, evals: this.evals, final,
      perReplica: this.replicas.map((r) => {
        const live = r.spent.run + r.spent.wait + r.spent.comm;
        return {
          slot: r.slot, speed: r.speed, steps: r.learner.step, outerSteps: r.outerSteps, soloSteps: r.soloSteps,
          idleFraction: live > 0 ? r.spent.wait / live : 0, commFraction: live > 0 ? r.spent.comm / live : 0,
          bytesSent: r.bytesSent,
        };
      }),
      joins: this.joins, leaves: this.leaves, warnings: this.warnings,
      probe: this.probeSummary(),
      checks: { on: this.checking, ...this.checkTotals, reasons: { ...this.checkTotals.reasons } },
      finalWeights: this.replicas.map((r) => (present(r) ? r.theta.slice() : null)),
    };
  }

  private probeSummary(): ProbeSummary {
    const rounds = this.replicas.reduce((a, r) => a + r.outerSteps, 0);
    const perRound = rounds > 0 ? this.probeTotals.seconds / rounds : 0;
    // Against one inner loop of H steps: the modelled share is the same at every speed; a given
    // probeTime's is its mean over the replicas' nominal loops.
    const fixed = this.cfg.probeTime;
    const fraction = !this.probing ? 0 : fixed === undefined ? (2 * PROBE_WINDOWS * FORWARD_FRACTION_OF_STEP) / this.cfg.H
      : this.replicas.reduce((a, r) => a + fixed / r.loopTime(this.cfg.H, this.cfg.stepTime), 0) / this.replicas.length;
    return {
      on: this.probing, judged: this.probeTotals.judged, rejected: this.probeTotals.rejected, offences: { ...this.probeTotals.offences },
      secondsPerOuterRound: perRound,
      fractionOfInnerLoop: fraction,
    };
  }

  /** Frees every replica's learner and the factory's resources (GPU buffers, the device). */
  dispose(): void {
    for (const r of this.replicas) r.learner.dispose?.();
    this.factory.dispose?.();
  }

  /** Metrics of the present replicas at sim.now (time fractions include intervals still open). */
  async evaluate(): Promise<EvalRow> {
    const here = this.replicas.filter(present);
    await syncAll(here);
    const seen: { w: Float32Array; loss: number }[] = [];
    const lossOf = async (w: Float32Array) => {
      // Data-parallel replicas hold identical weights: evaluate each distinct vector once.
      const hit = seen.find((s) => sameWeights(s.w, w));
      if (hit) return hit.loss;
      const loss = await this.factory.evaluate(w);
      seen.push({ w, loss });
      return loss;
    };
    const losses: (number | null)[] = [];
    for (const r of this.replicas) losses.push(present(r) ? await lossOf(r.theta) : null);
    let roundLosses: (number | null)[] | undefined;
    if (this.cfg.roundLoss && OUTER_METHODS.has(this.cfg.method)) {
      roundLosses = [];
      for (const r of this.replicas) roundLosses.push(present(r) ? await lossOf(r.phi) : null);
    }
    const thetas = here.map((r) => r.theta);
    const avg = averageWeights(thetas);
    const avgModelLoss = await lossOf(avg);
    let run = 0, wait = 0, comm = 0, outer = 0, solo = 0, bytes = 0;
    for (const r of this.replicas) {
      const open = r.alive ? this.now - r.since : 0;
      run += r.spent.run + (r.state === 'run' ? open : 0);
      wait += r.spent.wait + (r.state === 'wait' ? open : 0);
      comm += r.spent.comm + (r.state === 'comm' ? open : 0);
      outer += r.outerSteps;
      solo += r.soloSteps;
      bytes += r.bytesSent;
    }
    const total = run + wait + comm;
    const presentLosses = losses.filter((x): x is number => x !== null);
    return {
      t: this.now,
      meanStep: mean(here.map((r) => r.learner.step)),
      steps: this.replicas.map((r) => (present(r) ? r.learner.step : null)),
      losses,
      meanLoss: mean(presentLosses),
      ...(roundLosses && {
        roundLosses, meanRoundLoss: mean(roundLosses.filter((x): x is number => x !== null)),
        roundSteps: this.replicas.map((r) => (present(r) ? r.phiStep : null)), meanRoundStep: mean(here.map((r) => r.phiStep)),
      }),
      avgModelLoss,
      trainLoss: mean(here.map((r) => r.learner.lastLoss).filter(Number.isFinite)),
      spread: weightSpread(thetas, this.factory.paramCount),
      idleFraction: total > 0 ? wait / total : 0,
      commFraction: total > 0 ? comm / total : 0,
      soloFraction: outer > 0 ? solo / outer : 0,
      bytesPerReplica: bytes / this.replicas.length,
      exchanges: this.exchanges,
      present: here.length,
    };
  }
}

/** The methods whose replicas take outer steps (and so hold a φ of their last round). */
const OUTER_METHODS: ReadonlySet<Method> = new Set<Method>(['noloco-async', 'noloco-lockstep', 'diloco']);

/** In the run and holding training state: what the metrics count. */
function present(r: Replica): boolean {
  return r.alive && r.bootstrapped;
}

/** Brings every device learner's host copies up to date (CPU learners have nothing to do). */
async function syncAll(rs: readonly Replica[]): Promise<void> {
  const pending = rs.map((r) => r.learner.sync?.()).filter((p) => p !== undefined);
  if (pending.length > 0) await Promise.all(pending);
}

function mean(xs: number[]): number {
  return xs.length === 0 ? Number.NaN : xs.reduce((a, b) => a + b, 0) / xs.length;
}

function exponential(rng: Rng, meanValue: number): number {
  let u = 0;
  while (u === 0) u = rng.uniform();
  return -Math.log(u) * meanValue;
}
