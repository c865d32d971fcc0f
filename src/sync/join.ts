// Joining a run mid-way, and serving its state afterwards: the same steps for the browser page
// and the headless volunteer. A newcomer copies φ, the outer momentum and the step counters
// from a random live peer over the mesh, else from the coordinator's newest checkpoint, else
// starts fresh (φ_0 from the run's seed). From then on it answers newcomers (mesh) and the
// coordinator's checkpoint requests (signaling) with the state of its LAST OUTER STEP: φ and m
// only change there, so a snapshot never holds a half-finished inner loop.
import { holdCounters, MAX_STATE_COUNTER, MAX_STEPS_PER_S, maxStepNow, type StateFrame } from '../protocol/state-frame.ts';
import type { StateLosses } from '../protocol/memorised.ts';
import { silentLogger, type Logger } from './components.ts';
import type { Mesh } from './mesh.ts';
import { joinRun, type JoinSource } from './replica.ts';
import type { SignalingClient } from './signaling-client.ts';
import type { BootState } from './types.ts';

/** φ, outer momentum and both counters, as of one outer step. */
export type OuterState = Omit<BootState, 'from'>;

/** What a serving peer hands out: its last outer state plus the figures a checkpoint records. */
export interface ServedState extends OuterState {
  /** Validation loss of φ if this peer measured one, else null. */
  valLoss: number | null;
  /** Tokens this peer has trained on since it joined. */
  tokens: number;
}

export interface RunJoinOptions {
  runId: string;
  /** Floats in φ and in the momentum (the layout's total); a checkpoint of another size is ignored. */
  floats: number;
  /** Other live peers of the run when we joined (from the welcome). */
  others: number;
  /** How long to look for a live peer to copy from, when others are online. Default 15 s. */
  timeoutMs?: number;
  /**
   * Losses of a candidate state on this newcomer's own windows of both texts (it may load the
   * candidate into the trainer; the caller loads what joinRunState returns, or its fresh state
   * back). With `maxLoss`, a source whose state measures worse, or far better on the validation
   * text than on the training text, is refused (state-check.ts).
   */
  measure?: (s: Omit<BootState, 'from'>) => Promise<StateLosses>;
  /** maxStateLoss(the coordinator's loss of its newest accepted checkpoint, vocab). */
  maxLoss?: number;
  /** The run's outer momentum α: with `measure`, φ + α·m is measured too (StateCheck.alpha). */
  outerMomentum?: number;
  /** The furthest inner step the coordinator would accept from this peer now (welcomeMaxStep). */
  maxStep?: () => number;
  /**
   * The step the run's live peers agree on and its inner steps per round (welcomeStepCap): the
   * counters of the state adopted are held to it (holdCounters: within one round of it either
   * way, else at it), its φ and momentum unchanged.
   */
  stepCap?: { step: number; H: number };
  logger?: Logger;
}

export const DEFAULT_BOOTSTRAP_TIMEOUT_MS = 15_000;

/**
 * RunJoinOptions.maxStep from a welcome: maxStepNow from its `stepBase` at its `stepRate`, on this
 * machine's clock from when the welcome arrived (`receivedAt`, performance.now()). Undefined when
 * the coordinator sent no `stepBase`.
 */
export function welcomeMaxStep(welcome: { stepBase?: number; stepRate: number }, receivedAt: number, now: () => number = () => performance.now()): (() => number) | undefined {
  const { stepBase, stepRate: rate } = welcome;
  if (stepBase === undefined) return undefined;
  return () => maxStepNow({ now: now(), joinedAt: receivedAt, stepBase, rate });
}

/**
 * ValidationSettings.roundsPerS from a welcome: the run's fastest step rate over its H, the most
 * outer rounds a second any of its peers could run (every round is H inner steps), the rate held to
 * MAX_STEPS_PER_S as the coordinator's own bound is (maxStepNow). 0 (unknown) for an H that is no
 * positive integer.
 */
export function welcomeRoundsPerS(welcome: { stepRate: number; run: { train: { H: number } } }): number {
  const { stepRate } = welcome, { H } = welcome.run.train;
  return Number.isInteger(H) && H >= 1 && stepRate > 0 ? Math.min(stepRate, MAX_STEPS_PER_S) / H : 0;
}

/**
 * ValidationSettings.runRound from a welcome: the furthest outer round any peer of the run could
 * be at now, ⌊welcomeMaxStep / H⌋ + 1. Every round takes H inner steps, and a partner at round r
 * has run r + 1 rounds' steps by its exchange of r; the + 1 and maxStepNow's STEP_SLACK (100
 * steps, 2 rounds at H = 50) cover a peer that ran on past its last report when we joined, which
 * stepBase (live peers' reported steps) has not seen. Timed as welcomeMaxStep is, on the clock
 * the welcome's receipt was taken on. Null when the coordinator sent no `stepBase` (leadRounds
 * and roundsPerS alone bound a lead then) or H is no positive integer. A state adopted is held to
 * round ⌊step / H⌋ at most when its step is held (holdCounters); a replica whose rounds outnumber
 * step / H after the run's H was raised is not covered (docs/design.md section 6, "Rounds ahead").
 */
export function welcomeRunRound(welcome: { stepBase?: number; stepRate: number; run: { train: { H: number } } }, receivedAt: number, now: () => number = () => performance.now()): (() => number) | null {
  const maxStep = welcomeMaxStep(welcome, receivedAt, now);
  const { H } = welcome.run.train;
  if (!maxStep || !(Number.isInteger(H) && H >= 1)) return null;
  return () => Math.floor(maxStep() / H) + 1;
}

/** RunJoinOptions.stepCap from a welcome; undefined when the coordinator sent no `stepConsensus`. */
export function welcomeStepCap(welcome: { stepConsensus?: number; run: { train: { H: number } } }): { step: number; H: number } | undefined {
  return welcome.stepConsensus === undefined ? undefined : { step: welcome.stepConsensus, H: welcome.run.train.H };
}

/**
 * Where this peer's starting state comes from: a live peer, else the newest checkpoint, else
 * nothing (`state` null: keep the fresh init). Each source's state is checked first
 * (state-check.ts): a peer's that fails is reported and the next peer asked; a checkpoint that
 * cannot be downloaded, does not fit the layout or fails the checks is skipped with a warning.
 * Nothing a source serves fails the join.
 */
export function joinRunState(
  mesh: Pick<Mesh, 'bootstrap'>,
  signaling: Pick<SignalingClient, 'fetchCheckpointState'>,
  o: RunJoinOptions,
): Promise<{ source: JoinSource; state: BootState | null }> {
  const log = o.logger ?? silentLogger;
  // Steps are claims (a liar's φ may be good and its step anything the coordinator's bound
  // allows, down to 0): more than a round away from the peers' consensus the state takes theirs,
  // so the newcomer's learning-rate schedule, reports and served state follow the run's, not one
  // peer's word.
  const held = (r: { source: JoinSource; state: BootState | null }) => {
    if (!r.state || !o.stepCap) return r;
    // The consensus is the coordinator's word: never past the step its own bound allows this peer
    // (maxStep) or any state may carry (MAX_STATE_COUNTER). Unbounded, a welcome's 2^53 − 1 put
    // the state there after every check had passed, and the first outer round threw.
    const cap = Math.min(o.stepCap.step, o.maxStep?.() ?? MAX_STATE_COUNTER, MAX_STATE_COUNTER);
    const c = holdCounters({ step: r.state.innerStep, round: r.state.outerRound }, cap, o.stepCap.H);
    if (c.step === r.state.innerStep && c.round === r.state.outerRound) return r;
    log.info('the adopted state\'s step is more than a round from the run\'s consensus: holding it to theirs', { claimed: r.state.innerStep, round: r.state.outerRound, step: c.step, heldRound: c.round });
    return { ...r, state: { ...r.state, innerStep: c.step, outerRound: c.round } };
  };
  return joinRun(mesh, {
    // Alone in the run nobody can answer: skip the wait for a neighbour.
    timeoutMs: o.others > 0 ? o.timeoutMs ?? DEFAULT_BOOTSTRAP_TIMEOUT_MS : 1,
    // Each live peer asked at most once: peers that started together all decline ('no state
    // yet'), and waiting out the timeout for a peer that is not there helps nobody.
    tries: Math.max(1, Math.min(3, o.others)),
    // Every source is checked before adoption: sizes, finite values, its momentum against φ,
    // counters, and its measured loss, at φ and where the next outer step would carry φ.
    check: {
      floats: o.floats, ...(o.maxStep ? { maxStep: o.maxStep } : {}),
      ...(o.measure && o.maxLoss !== undefined ? { measure: o.measure, maxLoss: o.maxLoss } : {}),
      ...(o.outerMomentum !== undefined ? { alpha: o.outerMomentum } : {}),
    },
    onRefused: (source, err) => log.warn(`the ${source} failed the newcomer's checks (${err.message}); starting fresh`),
    checkpoint: async () => {
      let f: StateFrame | null;
      try {
        f = await signaling.fetchCheckpointState(o.floats);
      } catch (err) {
        log.warn('could not download the newest checkpoint; starting fresh', { error: (err as Error).message });
        return null;
      }
      if (!f) return null;
      if (f.meta.floats !== o.floats) {
        log.warn('the newest checkpoint does not fit this run\'s layout; starting fresh', { floats: f.meta.floats, want: o.floats });
        return null;
      }
      if (f.meta.runId !== o.runId) {
        log.warn('the newest checkpoint belongs to another run; starting fresh', { run: f.meta.runId, want: o.runId });
        return null;
      }
      return { phi: f.phi, momentum: f.momentum, outerRound: f.meta.round, innerStep: f.meta.step };
    },
  }).then(held);
}

/**
 * Serves `snapshot()` to newcomers over the mesh and to the coordinator's checkpoint requests.
 * `snapshot` must return the last outer state (copies: they are sent later), or null while
 * there is none. Returns the function that stops serving.
 */
export function serveRunState(
  mesh: Pick<Mesh, 'serveState'>,
  signaling: Pick<SignalingClient, 'setStateProvider'>,
  o: { runId: string; floats: number; logger?: Logger },
  snapshot: () => Promise<ServedState | null>,
): () => void {
  const log = o.logger ?? silentLogger;
  mesh.serveState(async () => {
    const s = await snapshot();
    if (!s) return null;
    log.info('a newcomer asked for our state: serving the last outer step', { step: s.innerStep, round: s.outerRound });
    return { phi: s.phi, momentum: s.momentum, outerRound: s.outerRound, innerStep: s.innerStep };
  });
  signaling.setStateProvider(async (): Promise<StateFrame> => {
    const s = await snapshot();
    if (!s) throw new Error('this peer has no state to serve yet');
    log.info('the coordinator asked for a checkpoint: uploading the last outer step', { step: s.innerStep, round: s.outerRound });
    return {
      // JSON has no NaN: a diverged loss is "not measured" in a checkpoint's header.
      meta: { runId: o.runId, step: s.innerStep, round: s.outerRound, floats: o.floats, valLoss: validLoss(s.valLoss), tokens: s.tokens },
      phi: s.phi, momentum: s.momentum,
    };
  });
  return () => {
    mesh.serveState(null);
    signaling.setStateProvider(null);
  };
}

function validLoss(v: number | null): number | null {
  return v !== null && Number.isFinite(v) && v >= 0 ? v : null;
}
