// Drives one volunteer's training: consent, GPU check, the chunked duty-cycled loop in the
// worker, outer steps with a partner, pause / finish-step-then-pause / stop, and the back-off
// policy. Holds every figure the volunteer page shows; the element only renders them.
//
// The loop, in wall-clock terms:
//   chunk of k inner steps (~250 ms of GPU work) -> rest work*(1-d)/d -> ... -> after H steps,
//   the outer step: φ,Δ out to a partner (or solo), φ,Δ in, NoLoCo update -> report -> ...
// Commands take effect between chunks: "pause now" within one chunk; "finish this step, then
// pause" after the current outer step, so the partner is not left waiting and no local progress
// is lost; stop after the chunk, then the GPU device is released.
import { clampIntensity, chunkSteps, DutyMeter, restMs } from '../core/duty.ts';
import { initialPolicy, LEVEL_FACTOR, nextRecheck, stepPolicy, type PolicyState, type Source } from '../core/policy.ts';
import { ConsentStore, type ConsentRecord } from '../core/consent.ts';
import { failingLinks, newPeerLinkState, notePeerLinks } from '../core/connectivity.ts';
import {
  sleep, systemClock, type Clock, type GpuProbe, type OuterPayload, type RunSummary, type SensorPort, type SessionStart, type VolunteerBackend, type VolunteerSession,
} from '../ports.ts';
import { MAX_DIVERGED_IN_A_ROW, MIN_PAIR_WAIT_MS, runOuterRound } from '../../round/outer-round.ts';
import { ProbeJudge } from '../../round/probe.ts';
import { Observable, type Task } from './observable.ts';

export type Phase =
  | 'idle' // not started (before consent, or consent given but Start not pressed)
  | 'starting' // connecting to the coordinator, acquiring the GPU in the worker
  | 'training' // running chunks
  | 'waiting-peers' // outer step: in the ready pool, waiting for a partner
  | 'paused' // by the volunteer or by the policy
  | 'stopping'
  | 'stopped'
  | 'error';

export type PauseReason = 'user' | Source;

export { MIN_PAIR_WAIT_MS };

export interface Figures {
  /** Inner steps of this replica's state: from the adopted state's step on (run-wide, like the peers'). */
  step: number;
  /** Outer steps of this replica's state (with a partner or solo), counted on from the adopted state's. */
  rounds: number;
  /** Last finite training loss. */
  loss: number | null;
  valLoss: number | null;
  /** Tokens per second of wall time, rests included (what intensity lowers). */
  tokensPerS: number;
  /** Measured fraction of wall time the GPU worked for us over the last 30 s. */
  duty: number;
  partner: string | null;
  peersOnline: number;
  bytesUp: number;
  bytesDown: number;
  /** GPU time spent on training (ms). */
  donatedMs: number;
  tokensTrained: number;
  /** Outer steps taken with a partner's validated φ and Δ. */
  exchangesAccepted: number;
  soloRounds: number;
  /** Inner steps left before the next outer step. */
  stepsToOuter: number;
  /** Times the loss blew up and the worker went back to the last outer state. */
  divergences: number;
  /** Times the GPU device was lost and the worker rebuilt it (the round's steps trained again). */
  gpuResets: number;
  /** Why the last outer step was solo, in words (from the mesh); null after a pair. */
  soloReason: string | null;
  /** Why this volunteer's WebRTC links keep failing (it trains alone), null while they work. */
  linksFailing: string | null;
}

export interface TrainingOptions {
  backend: VolunteerBackend;
  sensors: SensorPort;
  consent: ConsentStore;
  clock?: Clock;
  /** Largest intensity allowed (the embedding site's cap); default 1. */
  maxIntensity?: number;
  /** Initial intensity; default 0.5, a cool and quiet start that still contributes. */
  intensity?: number;
  /** Validation loss every this many outer steps (0: never). */
  evalEveryRounds?: number;
  /** Minimum time between two metric reports outside outer steps. */
  reportEveryMs?: number;
}

const emptyFigures = (): Figures => ({
  step: 0, rounds: 0, loss: null, valLoss: null, tokensPerS: 0, duty: 0, partner: null, peersOnline: 0,
  bytesUp: 0, bytesDown: 0, donatedMs: 0, tokensTrained: 0, exchangesAccepted: 0, soloRounds: 0, stepsToOuter: 0, divergences: 0, gpuResets: 0, soloReason: null, linksFailing: null,
});

export class TrainingController extends Observable {
  phase: Phase = 'idle';
  run: Task<RunSummary> = { status: 'pending' };
  gpu: Task<GpuProbe> = { status: 'pending' };
  consentRecord: ConsentRecord | null = null;
  figures: Figures = emptyFigures();
  /** Where the current (or last) session's state came from; null before the first join. */
  joinedFrom: SessionStart | null = null;
  /** This volunteer's id in the run for the current (or last) session; null before the first join. */
  peerId: string | null = null;
  /** Why training is paused (empty while it runs). */
  pauseReasons: PauseReason[] = [];
  /** Set by "finish this step, then pause" until that happens. */
  pauseAfterStep = false;
  error: string | null = null;
  intensity: number;
  readonly maxIntensity: number;
  pauseWhenHidden = true;
  policy: PolicyState = initialPolicy();

  private readonly clock: Clock;
  private readonly duty = new DutyMeter(30_000);
  private session: VolunteerSession | null = null;
  private userPaused = false;
  private stopRequested = false;
  private loop: Promise<void> | null = null;
  private wakeUp: () => void = () => {};
  private msPerStep: number | null = null;
  private rateWindow: { t: number; tokens: number }[] = [];
  private lastReportAt = 0;
  private reportedBytes = { in: 0, out: 0 };
  private offSensors: (() => void) | null = null;

  constructor(private readonly opts: TrainingOptions) {
    super();
    this.clock = opts.clock ?? systemClock;
    this.maxIntensity = clampIntensity(opts.maxIntensity ?? 1);
    this.intensity = clampIntensity(opts.intensity ?? 0.5, this.maxIntensity);
  }

  /** Loads the run description and probes the GPU; nothing is sent about the visitor. */
  async init(): Promise<void> {
    this.offSensors ??= this.opts.sensors.subscribe(() => this.onSensors());
    this.onSensors();
    const [run, gpu] = await Promise.allSettled([this.opts.backend.describeRun(), this.opts.backend.probeGpu()]);
    this.run = run.status === 'fulfilled' ? { status: 'complete', value: run.value } : { status: 'error', error: errText(run.reason) };
    this.gpu = gpu.status === 'fulfilled' ? { status: 'complete', value: gpu.value } : { status: 'error', error: errText(gpu.reason) };
    if (this.run.status === 'complete') this.consentRecord = this.opts.consent.get(this.run.value.id);
    this.notify();
  }

  get canHelp(): boolean {
    return this.gpu.status === 'complete' && this.gpu.value.ok && this.run.status === 'complete';
  }

  get consentRemembered(): boolean {
    return this.opts.consent.persistent;
  }

  /** The explicit opt-in. Never starts training by itself. */
  giveConsent(): void {
    if (this.run.status !== 'complete') throw new Error('cannot record consent before the run description has loaded');
    this.consentRecord = this.opts.consent.grant(this.run.value.id);
    this.notify();
  }

  /** Withdraws consent; stops training if it runs. */
  async revokeConsent(): Promise<void> {
    this.opts.consent.revoke();
    this.consentRecord = null;
    this.notify();
    await this.stop();
  }

  get running(): boolean {
    return this.loop !== null;
  }

  /** Starts training. Requires consent and a usable GPU. */
  start(): void {
    if (!this.consentRecord) throw new Error('training needs the volunteer\'s consent first: press "I agree" before Start');
    if (!this.canHelp) throw new Error('this device cannot train: the GPU check did not pass');
    if (this.loop) return;
    this.stopRequested = false;
    this.userPaused = false;
    this.pauseAfterStep = false;
    this.error = null;
    // A new session: its mesh counts bytes from 0 (a report carries what moved since the last),
    // and nothing of the last session's round is this one's.
    this.reportedBytes = { in: 0, out: 0 };
    this.figures.bytesDown = this.figures.bytesUp = 0;
    this.lastReportAt = 0;
    this.roundLosses = [];
    this.nonFinite = null;
    this.divergedInARow = 0;
    this.endedBy = null;
    this.phase = 'starting';
    this.notify();
    // Rates and the duty cycle change while nothing else happens (rests, pauses): refresh them.
    const ticker = setInterval(() => { this.refresh(); this.notify(); }, 1000);
    this.loop = this.runLoop().finally(() => { clearInterval(ticker); this.loop = null; this.notify(); });
  }

  /** Pause after the chunk in flight (at most ~one chunk of GPU work). */
  pauseNow(): void {
    this.userPaused = true;
    this.pauseAfterStep = false;
    this.poke();
  }

  /** Finish the current outer step (its remaining inner steps and the exchange), then pause. */
  pauseAfterOuterStep(): void {
    if (this.userPaused) return;
    this.pauseAfterStep = true;
    this.poke();
  }

  resume(): void {
    this.userPaused = false;
    this.pauseAfterStep = false;
    this.poke();
  }

  async stop(): Promise<void> {
    if (!this.loop) return;
    this.stopRequested = true;
    this.phase = 'stopping';
    this.onStop();
    this.poke();
    await this.loop;
  }

  /** Ends a join() still in progress (see runLoop). */
  private onStop: () => void = () => {};
  /** Why the coordinator ended the session, if it did (the loop then ends in an error saying so). */
  private endedBy: string | null = null;

  setIntensity(x: number): void {
    this.intensity = clampIntensity(x, this.maxIntensity);
    this.poke();
  }

  setPauseWhenHidden(on: boolean): void {
    this.pauseWhenHidden = on;
    this.onSensors();
  }

  /** Intensity after the policy's back-off; 0 while the policy pauses. */
  get effectiveIntensity(): number {
    return this.intensity * LEVEL_FACTOR[this.policy.level];
  }

  get sensorSupport(): { battery: boolean; pressure: boolean } {
    return this.opts.sensors.support();
  }

  dispose(): void {
    this.offSensors?.();
    this.offSensors = null;
    void this.stop();
  }

  // ---- internals ----

  private poke(): void {
    this.wakeUp();
    this.updatePauseReasons();
    this.notify();
  }

  private onSensors(): void {
    this.policy = stepPolicy(this.policy, this.opts.sensors.read(), { pauseWhenHidden: this.pauseWhenHidden }, this.clock.now());
    this.poke();
  }

  private updatePauseReasons(): void {
    const reasons: PauseReason[] = [];
    if (this.userPaused) reasons.push('user');
    if (this.policy.level === 0) reasons.push(...this.policy.reasons);
    this.pauseReasons = reasons;
  }

  /** Sleeps until `ms` passed or a command / sensor change woke us. */
  private async rest(ms: number): Promise<void> {
    if (ms <= 0) return;
    await Promise.race([sleep(this.clock, ms), new Promise<void>((r) => { this.wakeUp = r; })]);
  }

  private async runLoop(): Promise<void> {
    let session: VolunteerSession | null = null;
    let offEnd = () => {};
    let offGpu = () => {};
    try {
      // Stop must work while we are still connecting (the coordinator may be unreachable and the
      // client retries for ever; the data download may wait its turn for minutes): it aborts the
      // join, which releases what it started (the connection, the download, the worker) before
      // it settles, so "Stopped" is true when the page says it and a new Start joins alone.
      const abort = new AbortController();
      this.onStop = () => abort.abort(new Error('stopped by the volunteer'));
      if (this.stopRequested) return;
      try {
        session = await this.opts.backend.join(abort.signal);
      } catch (e) {
        if (this.stopRequested) return;
        throw e;
      }
      this.session = session;
      if (this.stopRequested) return;
      // The coordinator may end the session (the run stopped, another tab took it over): the
      // loop stops, and the page says why instead of training on alone with reports unsent.
      offEnd = session.onEnd?.((reason) => { this.endedBy = reason; this.stopRequested = true; this.poke(); }) ?? offEnd;
      // A lost GPU costs time, not counts: the worker trains the round's steps again on a new
      // device (src/worker/trainer.ts). The page says it happened; the figures stay as they are.
      offGpu = session.trainer.onGpuEvent?.((e) => {
        if (e.type === 'rebuilt') { this.figures.gpuResets++; this.notify(); }
      }) ?? offGpu;
      // The replica continues the run's counters from the state it adopted: its reports and the
      // rounds it pairs for line up with the peers it copied from.
      this.joinedFrom = session.start;
      this.peerId = session.peerId;
      this.figures.step = session.start.step;
      this.figures.rounds = session.start.round;
      const run = (this.run as { value: RunSummary }).value;
      let inRound = 0;
      this.figures.stepsToOuter = run.H;
      this.phase = 'training';
      this.notify();
      while (!this.stopRequested) {
        // Sensors that only improve with time (hysteresis) need a re-check without an event.
        if (nextRecheck(this.policy, this.clock.now()) === 0) this.onSensors();
        this.updatePauseReasons();
        if (this.pauseReasons.length > 0) {
          this.setPhase('paused');
          await this.rest(nextRecheck(this.policy, this.clock.now()) ?? 60_000);
          continue;
        }
        this.setPhase('training');
        const k = chunkSteps(this.msPerStep, run.H - inRound);
        const t0 = this.clock.now();
        let losses: ArrayLike<number>;
        try {
          losses = await session.trainer.train(k);
        } catch (e) {
          if (!isDivergence(e)) throw e;
          // The worker went back to the last outer state: the steps of this round are gone.
          // Tell the coordinator (the dashboard raises its NaN alert) and train on, unless the
          // run keeps diverging (the same limit as the headless volunteer: src/round).
          this.nonFinite = NaN;
          this.figures.divergences++;
          this.roundLosses = [];
          if (++this.divergedInARow >= MAX_DIVERGED_IN_A_ROW) {
            this.report(session, null, null);
            throw new Error(`${errText(e)}; ${this.divergedInARow} inner loops in a row diverged, giving up (the run's learning rate needs lowering)`);
          }
          this.figures.step -= inRound;
          this.figures.tokensTrained -= inRound * run.tokensPerStep;
          inRound = 0;
          this.figures.stepsToOuter = run.H;
          this.report(session, null, null);
          this.notify();
          continue;
        }
        const t1 = this.clock.now();
        this.divergedInARow = 0;
        for (let i = 0; i < losses.length; i++) this.roundLosses.push(losses[i]!);
        this.afterChunk(run, k, losses, t0, t1);
        inRound += k;
        this.figures.stepsToOuter = run.H - inRound;
        if (inRound >= run.H) {
          await this.outerStep(session, run);
          inRound = 0;
          this.figures.stepsToOuter = run.H;
          if (this.pauseAfterStep) { this.pauseAfterStep = false; this.userPaused = true; }
        } else if (t1 - this.lastReportAt >= (this.opts.reportEveryMs ?? 10_000)) {
          this.report(session, null, null);
        }
        this.notify();
        const d = this.effectiveIntensity;
        if (d > 0 && !this.stopRequested) await this.rest(restMs(t1 - t0, d));
      }
      if (this.endedBy !== null) throw new Error(`the coordinator ended this session: ${this.endedBy}`);
    } catch (e) {
      this.error = errText(e);
      this.phase = 'error';
      this.notify();
    } finally {
      offEnd();
      offGpu();
      this.onStop = () => {};
      this.session = null;
      if (session) await session.close().catch((e) => console.warn(`[murmur] closing the session failed: ${errText(e)}`));
      if (this.phase !== 'error') this.phase = 'stopped';
      // Nothing of the mesh is current once the session is closed.
      this.figures.partner = null;
      this.figures.peersOnline = 0;
      this.figures.soloReason = null;
      this.figures.duty = 0;
      this.figures.tokensPerS = 0;
      this.rateWindow = [];
      this.duty.reset();
    }
  }

  private setPhase(p: Phase): void {
    if (this.phase !== p) { this.phase = p; this.notify(); }
  }

  private afterChunk(run: RunSummary, k: number, losses: ArrayLike<number>, t0: number, t1: number): void {
    const f = this.figures;
    const work = t1 - t0;
    this.msPerStep = this.msPerStep === null ? work / k : 0.7 * this.msPerStep + 0.3 * (work / k);
    this.duty.busy(t0, t1);
    if (this.rateWindow.length === 0) this.rateWindow.push({ t: t0, tokens: f.tokensTrained });
    f.step += k;
    f.tokensTrained += k * run.tokensPerStep;
    f.donatedMs += work;
    for (let i = 0; i < losses.length; i++) {
      const l = losses[i]!;
      // The volunteer's figure keeps the last good value; the dashboard must see the NaN.
      if (Number.isFinite(l)) f.loss = l;
      else this.nonFinite ??= l;
    }
    this.rateWindow.push({ t: t1, tokens: f.tokensTrained });
    this.refresh(t1);
    this.syncMesh();
  }

  /** Time-dependent figures: wall-clock tokens/s (rests and pauses count) and measured duty. */
  refresh(now = this.clock.now()): void {
    const f = this.figures;
    // Keep one point at or before the window start so the rate spans the whole window.
    const cut = now - 30_000;
    while (this.rateWindow.length > 1 && this.rateWindow[1]!.t <= cut) this.rateWindow.shift();
    const first = this.rateWindow[0], last = this.rateWindow[this.rateWindow.length - 1];
    f.tokensPerS = first && last && now > first.t ? (last.tokens - first.tokens) / ((now - first.t) / 1000) : 0;
    f.duty = this.duty.value(now);
  }

  /** First non-finite loss since the last report: sent so the dashboard raises its NaN alert. */
  private nonFinite: number | null = null;
  /** Losses of the current round's inner steps (the round report's mean). */
  private roundLosses: number[] = [];
  private divergedInARow = 0;

  /** This volunteer's link outcomes, folded the way the dashboard folds every peer's. */
  private readonly links = newPeerLinkState();

  /** The probe's judge: one per session, its margin calibrated from this session's exchanges. */
  private judges = new WeakMap<VolunteerSession, ProbeJudge>();
  private judgeFor(session: VolunteerSession): ProbeJudge {
    let j = this.judges.get(session);
    if (!j) this.judges.set(session, (j = new ProbeJudge()));
    return j;
  }

  private async outerStep(session: VolunteerSession, run: RunSummary): Promise<void> {
    const f = this.figures;
    // docs/design.md section 3: wait a fraction of our own inner-loop time (wall time, rests included).
    const innerLoopMs = (this.msPerStep ?? 100) * run.H / Math.max(this.effectiveIntensity, 0.1);
    const every = this.opts.evalEveryRounds ?? 5;
    const gpu = this.gpu.status === 'complete' && this.gpu.value.ok ? this.gpu.value.name : null;
    // The one outer round (src/round/outer-round.ts), as the headless volunteer runs it; the page
    // keeps its figures and phase.
    const out = await runOuterRound({
      outerPayload: async () => {
        const mine = await session.trainer.outerPayload();
        this.syncMesh();
        this.setPhase('waiting-peers');
        return mine;
      },
      exchange: (round, mine, waitMs) => session.mesh.exchange(round, mine, waitMs),
      applyOuter: (partners) => session.trainer.applyOuter(partners),
      ...(session.trainer.probe ? { probe: (partner: OuterPayload) => session.trainer.probe!(partner) } : {}),
      ...(session.mesh.reportOffence ? { reportOffence: (peer: string, code: string, detail: string) => session.mesh.reportOffence!(peer, code, detail) } : {}),
    }, {
      round: f.rounds,
      inner: { step: f.step, losses: this.roundLosses, tokens: run.H * run.tokensPerStep, innerMs: innerLoopMs },
      pairWaitFrac: session.pairWaitFrac?.() ?? run.pairWaitFrac,
      adapter: gpu,
      evaluate: every > 0 && (f.rounds + 1) % every === 0 ? () => session.trainer.evaluate() : null,
      judge: this.judgeFor(session),
      now: () => this.clock.now(),
    });
    this.roundLosses = [];
    // A partner's update the probe rejected was a solo step.
    f.partner = out.report.partner;
    if (f.partner) f.exchangesAccepted++;
    else f.soloRounds++;
    f.rounds++;
    if (out.valLoss !== null) f.valLoss = out.valLoss;
    this.syncMesh();
    notePeerLinks(this.links, out.report);
    f.linksFailing = failingLinks(this.links);
    this.lastReportAt = out.report.time;
    session.report({ ...out.report, trainLoss: out.trainLoss, valLoss: out.valLoss });
    // The round report carried the exchange's bytes; reports between rounds carry the rest.
    this.reportedBytes = { in: f.bytesDown, out: f.bytesUp };
    this.nonFinite = null;
    this.setPhase('training');
  }

  private syncMesh(): void {
    const s = this.session?.mesh.stats();
    if (!s) return;
    this.figures.peersOnline = s.peers;
    this.figures.bytesDown = s.bytesIn;
    this.figures.bytesUp = s.bytesOut;
    this.figures.soloReason = this.figures.partner ? null : s.lastSolo ?? null;
  }

  private report(session: VolunteerSession, partner: string | null, partnerDist: number | null): void {
    const f = this.figures;
    const now = this.clock.now();
    this.lastReportAt = now;
    const gpu = this.gpu.status === 'complete' && this.gpu.value.ok ? this.gpu.value.name : null;
    session.report({
      time: now,
      step: f.step,
      round: f.rounds,
      trainLoss: this.nonFinite ?? f.loss,
      valLoss: f.valLoss,
      tokensPerS: f.tokensPerS,
      // Counters are cumulative on the mesh; each report carries what moved since the last one.
      bytesIn: f.bytesDown - this.reportedBytes.in,
      bytesOut: f.bytesUp - this.reportedBytes.out,
      partner,
      partnerDist,
      adapter: gpu,
    });
    this.nonFinite = null;
    this.reportedBytes = { in: f.bytesDown, out: f.bytesUp };
  }
}

/**
 * The trainer's "loss is NaN at step N; the weights were reset to the last outer state" (it has
 * recovered by itself), as opposed to a lost device or a bug.
 */
export function isDivergence(e: unknown): boolean {
  return e instanceof Error && (e.name === 'DivergedError' || /\bloss is (NaN|-?Infinity)\b.*reset/.test(e.message));
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export type { OuterPayload };
