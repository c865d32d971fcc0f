// What a newcomer checks before it adopts a bootstrap state, a live peer's or the newest
// checkpoint's (docs/design.md section 3, "Joining mid-run"): the sizes, every float finite, a
// momentum no honest replica exceeds against its φ (stateMomentumError), counters a replica can go on from (src/protocol/state-frame.ts stateCounterError: never a
// round at 0xffffffff that overflows on the next exchange; and no step beyond the coordinator's
// bound on this peer's reports, maxStepNow from the welcome's stepBase), and, when the caller can measure
// one, the state's validation loss on the run's fixed windows at most `maxLoss` (the
// coordinator's own measurement of its newest accepted checkpoint plus STATE_LOSS_MARGIN,
// maxStateLoss), and the same bound where the next outer step would carry φ with no new update
// (φ + α·m, section 1.1): a good φ with a momentum that undoes it is refused; and at both, a loss
// on the training text no more than MAX_TRAIN_VAL_GAP above the validation loss (memorisedError:
// the validation text is public, and a state fitted to it passes the bound). A failing source is a
// StateCheckError naming why; the caller tries the next.
import { stateCounterError, stateMomentumError } from '../protocol/state-frame.ts';
import { memorisedError, type StateLosses } from '../protocol/memorised.ts';
import { StateAheadError, StateCheckError } from './errors.ts';
import type { BootState } from './types.ts';
import { allFinite } from './validate.ts';

export type Candidate = Omit<BootState, 'from'>;

export interface StateCheck {
  /** Floats in φ and in the momentum (the layout's total). */
  floats: number;
  /**
   * Mean loss of the candidate's φ on this newcomer's own windows of the validation text and of
   * its training shard (StateLosses). It may load the candidate into the trainer to measure it:
   * the caller loads the state it finally adopts.
   */
  measure?: (s: Candidate) => Promise<StateLosses>;
  /** The worst validation loss a state may have (maxStateLoss). Ignored without `measure`. */
  maxLoss?: number;
  /**
   * The run's outer momentum α (train.outerMomentum): with `measure`, the loss is measured also
   * at φ + α·m, where the next outer step carries φ before any new update (m ← α·m; φ ← φ + m),
   * under the same `maxLoss`. A momentum within MAX_MOMENTUM_RATIO of φ may still point
   * backwards (a reversed one, tens of times an honest size): only its effect on the loss tells.
   */
  alpha?: number;
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
  const momentum = stateMomentumError(s.phi, s.momentum);
  if (momentum) throw new StateCheckError(`state from ${source}: ${momentum}`);
  const counters = stateCounterError({ step: s.innerStep, round: s.outerRound });
  if (counters) throw new StateCheckError(`state from ${source}: ${counters}`);
  const maxStep = c.maxStep?.();
  if (maxStep !== undefined && s.innerStep > maxStep) {
    throw new StateAheadError(`state from ${source} is at step ${s.innerStep}, beyond any this run has reached (the coordinator's bound is ${maxStep})`);
  }
  const { measure, maxLoss, alpha } = c;
  if (!measure || maxLoss === undefined) return;
  const judge = async (x: Candidate, where: string) => {
    let m: StateLosses;
    try {
      m = await measure(x);
    } catch (err) {
      throw new StateCheckError(`state from ${source} could not be evaluated${where}: ${(err as Error).message}`, { cause: err });
    }
    const loss = m.val;
    if (!(loss <= maxLoss)) {
      throw new StateCheckError(`state from ${source} has validation loss ${Number.isFinite(loss) ? loss.toFixed(4) : loss}${where}, worse than the bound ${maxLoss.toFixed(4)}`);
    }
    // The validation text is public: a state fitted to all of it passes the bound on any windows
    // of it, and only the training text (this newcomer's own shard) shows it.
    const memorised = memorisedError(m);
    if (memorised) throw new StateCheckError(`state from ${source}${where}: ${memorised}`);
  };
  // Where the next outer step would carry φ first, φ itself last: a caller that measures in its
  // trainer is then left holding the state as served, and adopting it needs no second load. A
  // zero momentum carries φ nowhere: nothing more to measure.
  if (alpha !== undefined && s.momentum.some((x) => x !== 0)) {
    const carried = new Float32Array(s.phi.length);
    for (let i = 0; i < carried.length; i++) carried[i] = s.phi[i]! + alpha * s.momentum[i]!;
    await judge({ ...s, phi: carried }, ' where the next outer step would carry φ (φ + α·m)');
  }
  await judge(s, '');
}
