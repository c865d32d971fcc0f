// What a newcomer checks before it adopts a bootstrap state, a live peer's or the newest
// checkpoint's (docs/design.md section 3, "Joining mid-run"): the sizes, every float finite,
// counters a replica can go on from (src/protocol/state-frame.ts stateCounterError: never a
// round at 0xffffffff that overflows on the next exchange; and no step beyond the coordinator's
// bound on this peer's reports, maxStepNow from the welcome's stepBase), and, when the caller can measure
// one, the state's validation loss on the run's fixed windows at most `maxLoss` (the
// coordinator's own measurement of its newest accepted checkpoint plus STATE_LOSS_MARGIN,
// maxStateLoss). A failing source is a StateCheckError naming why; the caller tries the next.
import { stateCounterError } from '../protocol/state-frame.ts';
import { StateAheadError, StateCheckError } from './errors.ts';
import type { BootState } from './types.ts';
import { allFinite } from './validate.ts';

export type Candidate = Omit<BootState, 'from'>;

export interface StateCheck {
  /** Floats in φ and in the momentum (the layout's total). */
  floats: number;
  /**
   * Mean validation loss of the candidate's φ on the run's validation windows. It may load the
   * candidate into the trainer to measure it: the caller loads the state it finally adopts.
   */
  measure?: (s: Candidate) => Promise<number>;
  /** The worst validation loss a state may have (maxStateLoss). Ignored without `measure`. */
  maxLoss?: number;
  /**
   * The furthest inner step a state may carry: what the coordinator would accept from this peer
   * now (maxStepNow from the welcome's stepBase). A state beyond it would have every report of
   * ours refused as impossible, and ourselves closed for it.
   */
  maxStep?: () => number;
}

/** Resolves when `s` may be adopted; rejects with StateCheckError saying what is wrong. */
export async function checkState(s: Candidate, c: StateCheck, source: string): Promise<void> {
  if (s.phi.length !== c.floats || s.momentum.length !== c.floats) {
    throw new StateCheckError(`state from ${source} has ${s.phi.length}/${s.momentum.length} floats; the run needs ${c.floats}`);
  }
  if (!allFinite(s.phi) || !allFinite(s.momentum)) throw new StateCheckError(`state from ${source} has non-finite values`);
  const counters = stateCounterError({ step: s.innerStep, round: s.outerRound });
  if (counters) throw new StateCheckError(`state from ${source}: ${counters}`);
  const maxStep = c.maxStep?.();
  if (maxStep !== undefined && s.innerStep > maxStep) {
    throw new StateAheadError(`state from ${source} is at step ${s.innerStep}, beyond any this run has reached (the coordinator's bound is ${maxStep})`);
  }
  if (!c.measure || c.maxLoss === undefined) return;
  let loss: number;
  try {
    loss = await c.measure(s);
  } catch (err) {
    throw new StateCheckError(`state from ${source} could not be evaluated: ${(err as Error).message}`, { cause: err });
  }
  if (!(loss <= c.maxLoss)) {
    throw new StateCheckError(`state from ${source} has validation loss ${Number.isFinite(loss) ? loss.toFixed(4) : loss}, worse than the bound ${c.maxLoss.toFixed(4)}`);
  }
}
