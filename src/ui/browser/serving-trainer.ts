// The page's account of its last outer step. The controller drives the trainer; newcomers and
// the coordinator's checkpoint requests read from it at any time. This wrapper counts the
// outer rounds the trainer completed (from the round the session started at) and keeps the
// last validation loss, so a snapshot pairs φ and m with the round and step they belong to.
import type { ServedState } from '../../sync/join.ts';
import type { GpuEvent, OuterPayload, OuterState, ProbeLosses, SessionStart, StateLosses, TrainerPort } from '../ports.ts';

export class ServingTrainer implements TrainerPort {
  private round: number;
  private valLoss: number | null = null;
  /** The latest applyOuter in flight (settled when none is). */
  private applying: Promise<unknown> = Promise.resolve();

  /** The probe's candidates, when the trainer can evaluate them (TrainerPort.probe). */
  readonly probe?: (partner: OuterPayload) => Promise<ProbeLosses>;
  /** The worker's GPU events, when the trainer has them (TrainerPort.onGpuEvent). */
  readonly onGpuEvent?: (fn: (e: GpuEvent) => void) => () => void;

  constructor(private readonly t: TrainerPort, private readonly start: SessionStart, private readonly tokensPerStep: number) {
    this.round = start.round;
    if (t.probe) this.probe = (partner) => t.probe!(partner);
    if (t.onGpuEvent) this.onGpuEvent = (fn) => t.onGpuEvent!(fn);
  }

  train(steps: number): Promise<ArrayLike<number>> {
    return this.t.train(steps);
  }

  async evaluate(): Promise<number> {
    const v = await this.t.evaluate();
    this.valLoss = v;
    return v;
  }

  checkLoss(): Promise<StateLosses> {
    return this.t.checkLoss();
  }

  outerPayload(): Promise<OuterPayload> {
    return this.t.outerPayload();
  }

  applyOuter(partners: OuterPayload[]): Promise<void> {
    const done = this.t.applyOuter(partners).then(() => { this.round++; });
    this.applying = done.catch(() => {});
    return done;
  }

  outerState(): Promise<OuterState> {
    return this.t.outerState();
  }

  load(): Promise<void> {
    // The counters would no longer match the weights: a new state means a new session.
    return Promise.reject(new Error('ServingTrainer.load: a session loads its state once, when it joins; rejoin to start from another state'));
  }

  dispose(): Promise<void> {
    return this.t.dispose();
  }

  /**
   * The last outer state with its round: waits out an outer step in flight, then asks the
   * worker, which answers after any step it is running (its calls run in order). Costs a copy
   * of φ and m in the worker, never a GPU read.
   */
  async snapshot(): Promise<ServedState> {
    let p: Promise<unknown>;
    do { p = this.applying; await p; } while (p !== this.applying);
    // No await between reading the round and asking the worker: no outer step can slip in.
    const round = this.round;
    const s = await this.t.outerState();
    return {
      phi: s.phi, momentum: s.momentum, innerStep: s.innerStep, outerRound: round,
      valLoss: this.valLoss, tokens: Math.max(0, s.innerStep - this.start.step) * this.tokensPerStep,
    };
  }
}
