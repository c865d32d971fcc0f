// The headless volunteer: joins a run on the coordinator and trains with the same pieces as the
// browser page (SignalingClient, the WebRTC mesh, the GPU Trainer), so a GPU server can donate
// without a browser and tests can run many peers. DOM-free; the WebSocket and WebRTC
// implementations are injected (components), as in the mesh.
//
//   welcome (run config, data assignment) -> download + verify data -> trainer -> mesh
//   -> join (state from a live peer, else the newest checkpoint, else fresh)
//   -> loop { H inner steps in chunks -> outer round with one partner or solo -> report }
import type { ValidationSettings } from '../sync/validate.ts';
import type { ReportFields, RunInfo, WelcomeMsg } from '../protocol/messages.ts';
import { maxStateLoss } from '../protocol/state-frame.ts';
import type { Signaling } from '../protocol/signaling.ts';
import { silentLogger, type Logger } from '../sync/components.ts';
import { createMesh, type Mesh } from '../sync/mesh.ts';
import { compressionForRun } from '../protocol/exchange-link.ts';
import type { RtcImplementation } from '../sync/links.ts';
import { joinRunState, serveRunState, welcomeMaxStep, welcomeRoundsPerS, welcomeRunRound, welcomeStepCap } from '../sync/join.ts';
import type { JoinSource } from '../sync/replica.ts';
import { SignalingClient, memorySessionStore, type SessionStore, type WebSocketCtor } from '../sync/signaling-client.ts';
import type { BootState, ExchangeResult } from '../sync/types.ts';
import { BACKENDS, createBackend, type BackendKind, type ReplicaBackend } from './backend.ts';
import { downloadAssignment } from './data.ts';
import { CoordinatorRefusedError, CoordinatorUnreachableError, DivergedError, VolunteerConfigError, VolunteerStoppedError } from './errors.ts';
import { runOuterRound, type ProbingReplica } from './round.ts';
import { ProbeJudge, type ProbeVerdict } from '../round/probe.ts';
import { MAX_DIVERGED_IN_A_ROW } from '../round/outer-round.ts';
import { runConfigHash } from './run-config.ts';
import { withPeerReplay } from './signaling.ts';

export interface VolunteerOptions {
  /** Coordinator base URL, http(s)://host:port. */
  url: string;
  /** Run id (the coordinator's default run if omitted). */
  run?: string;
  backend?: BackendKind;
  /** Stop after this many outer rounds (unbounded if omitted). */
  rounds?: number;
  /** Stop after the outer round that reaches this many inner steps (unbounded if omitted). */
  steps?: number;
  /** Data-window stream of this replica (default: the replica number the coordinator assigned). */
  seed?: number;
  /** Inner steps per trainer call: the loop checks for stop() and yields between chunks. */
  chunkSteps?: number;
  /**
   * Run this many times slower than the machine allows (>= 1; default 1): after each chunk the
   * volunteer rests (throttle − 1) × that chunk's compute time, as a page does at a lower
   * intensity. The swarm benchmark draws volunteers' speeds with it.
   */
  throttle?: number;
  /** Validation loss every this many outer rounds (and after the first); 0 never. Default 5. */
  evalEveryRounds?: number;
  /** Give up if the coordinator has not welcomed us within this long. Default 60 s. */
  joinTimeoutMs?: number;
  /** How long to look for a live peer to copy state from (when others are online). Default 15 s. */
  bootstrapTimeoutMs?: number;
  /** GPU only: measure kernel shapes (cached per adapter). Default true. */
  autotune?: boolean;
  /** Mesh neighbour bounds (default 4..8, the mesh's). */
  neighbours?: { min: number; max: number };
  /** The mesh's checks of a partner's payload, where they differ from DEFAULT_VALIDATION (tests' hostile peers). */
  validation?: Partial<ValidationSettings>;
  /**
   * Judge each partner's update by its effect on the loss (src/round/probe.ts). Default true;
   * false only to measure what the probe costs and changes.
   */
  probe?: boolean;
  /** Seed of the probe's private windows (default: random on this machine). */
  probeSeed?: number;
}

export interface VolunteerComponents {
  /** `WebSocket` from the 'ws' package in Node. */
  WebSocket: WebSocketCtor;
  /** @roamhq/wrtc in Node. */
  rtc: RtcImplementation;
  fetch?: typeof fetch;
  session?: SessionStore;
  logger?: Logger;
  /** Makes the trainer (default: createBackend); tests wrap it, e.g. to play a hostile peer. */
  createBackend?: typeof createBackend;
}

export interface RoundEvent {
  report: ReportFields;
  exchange: ExchangeResult;
  waitMs: number;
  /** The probe's verdict on this round's partner; null: no partner (or the probe is off). */
  probe: ProbeVerdict | null;
}

export interface VolunteerSummary {
  peerId: string | null;
  run: string | null;
  backend: BackendKind;
  joinedFrom: JoinSource | null;
  rounds: number;
  /** Rounds with a partner's validated payload (the probe may still have rejected it). */
  paired: number;
  /** Of those, partners' updates the probe rejected (a solo step taken instead). */
  probeRejected?: number;
  steps: number;
  /** Why the loop ended: a limit, stop(), the coordinator's refusal. */
  reason: string;
  /** Reports still unacknowledged when we left (lost unless the peer comes back). */
  unsentReports: number;
  /** WebRTC links that opened and that failed to open, and why the last failure happened. */
  linksOpened?: number;
  linkFailures?: number;
  lastLinkError?: string | null;
}

export interface Volunteer {
  /** Resolves once welcomed, trained-ready and joined; rejects if any of it failed. */
  readonly joined: Promise<{ peerId: string; run: RunInfo; source: JoinSource; adapter: string; matmul?: string }>;
  /** Resolves when the loop ended and everything was released; rejects on a fatal error. */
  readonly done: Promise<VolunteerSummary>;
  onRound(fn: (e: RoundEvent) => void): () => void;
  /** Ends the loop at the next chunk boundary, destroys the mesh, disposes the trainer. Safe twice. */
  stop(reason?: string): Promise<VolunteerSummary>;
}

export function validateVolunteerOptions(o: VolunteerOptions): Required<Pick<VolunteerOptions, 'backend' | 'chunkSteps' | 'evalEveryRounds' | 'joinTimeoutMs' | 'bootstrapTimeoutMs'>> {
  let u: URL;
  try {
    u = new URL(o.url);
  } catch {
    throw new VolunteerConfigError(`--url must be the coordinator's http(s) URL, e.g. http://127.0.0.1:8787; got "${o.url}"`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new VolunteerConfigError(`--url must start with http:// or https://, got "${o.url}"`);
  const backend = o.backend ?? 'gpu';
  if (!BACKENDS.includes(backend)) throw new VolunteerConfigError(`--backend must be one of ${BACKENDS.join(', ')}, got "${backend}"`);
  const posInt = (name: string, v: number | undefined) => {
    if (v !== undefined && !(Number.isInteger(v) && v > 0)) throw new VolunteerConfigError(`${name} must be a positive integer, got ${v}`);
  };
  posInt('rounds', o.rounds);
  posInt('steps', o.steps);
  posInt('chunkSteps', o.chunkSteps);
  if (o.throttle !== undefined && !(Number.isFinite(o.throttle) && o.throttle >= 1)) throw new VolunteerConfigError(`throttle must be a number >= 1, got ${o.throttle}`);
  if (o.seed !== undefined && !(Number.isInteger(o.seed) && o.seed >= 0)) throw new VolunteerConfigError(`seed must be a non-negative integer, got ${o.seed}`);
  if (o.probeSeed !== undefined && !(Number.isInteger(o.probeSeed) && o.probeSeed >= 0)) throw new VolunteerConfigError(`probeSeed must be a non-negative integer, got ${o.probeSeed}`);
  const evalEveryRounds = o.evalEveryRounds ?? 5;
  if (!(Number.isInteger(evalEveryRounds) && evalEveryRounds >= 0)) throw new VolunteerConfigError(`evalEveryRounds must be a non-negative integer, got ${evalEveryRounds}`);
  return { backend, chunkSteps: o.chunkSteps ?? 10, evalEveryRounds, joinTimeoutMs: o.joinTimeoutMs ?? 60_000, bootstrapTimeoutMs: o.bootstrapTimeoutMs ?? 15_000 };
}

/** Starts a headless volunteer; see Volunteer for its lifecycle. Throws synchronously on bad options. */
export function runVolunteer(opts: VolunteerOptions, components: VolunteerComponents): Volunteer {
  return new HeadlessVolunteer(opts, components);
}

class HeadlessVolunteer implements Volunteer {
  readonly joined: Promise<{ peerId: string; run: RunInfo; source: JoinSource; adapter: string; matmul?: string }>;
  readonly done: Promise<VolunteerSummary>;
  private readonly settings: ReturnType<typeof validateVolunteerOptions>;
  private readonly log: Logger;
  private readonly signaling: SignalingClient;
  /** What the mesh gets: the client with the peer list replayed to late subscribers. */
  private readonly meshSignaling: Signaling;
  private readonly roundListeners = new Set<(e: RoundEvent) => void>();
  private mesh: Mesh | null = null;
  private backend: ReplicaBackend | null = null;
  private stopReason: string | null = null;
  private wake: (() => void) | null = null;
  private summary: VolunteerSummary;
  /** Inner steps taken and outer rounds completed. */
  private step = 0;
  private round = 0;
  /** Inner steps at the last outer step: φ is from then, so a snapshot is labelled with it. */
  private stepAtOuter = 0;
  /** The run's pool wait as last changed by the coordinator (null: as in the welcome). */
  private pairWaitFrac: number | null = null;
  /**
   * Set from the moment an outer round starts replacing φ until its counters moved (φ update,
   * evaluation, counters); settles then. Not during the pool wait and the exchange: φ and the
   * counters still agree there, and a newcomer asking for our state must not wait out our pool
   * wait (its state offer times out long before a generous wait ends).
   */
  private outerInFlight: Promise<void> | null = null;
  private lastValLoss: number | null = null;
  private tokens = 0;
  private stopServing: () => void = () => {};

  constructor(private readonly opts: VolunteerOptions, private readonly c: VolunteerComponents) {
    this.settings = validateVolunteerOptions(opts);
    this.log = c.logger ?? silentLogger;
    this.summary = { peerId: null, run: opts.run ?? null, backend: this.settings.backend, joinedFrom: null, rounds: 0, paired: 0, steps: 0, reason: '', unsentReports: 0 };
    this.signaling = new SignalingClient({
      url: opts.url, run: opts.run, WebSocket: c.WebSocket, fetch: c.fetch, session: c.session ?? memorySessionStore(),
      client: { kind: 'node', version: 'murmur-volunteer' },
    });
    this.meshSignaling = withPeerReplay(this.signaling);
    // Before the welcome, awaitWelcome turns this into a CoordinatorRefusedError instead.
    this.signaling.on('stopped', (e) => { if (this.summary.peerId) this.requestStop(`coordinator: ${e.reason}`); });
    // A researcher changed the run: the pool wait applies from the next round (training and wire
    // settings cannot change while peers train: the coordinator refuses that).
    this.signaling.on('config', (r) => { this.pairWaitFrac = r.pairWaitFrac; });
    this.signaling.on('close', (e) => {
      if (this.stopping) return;
      // Before the first welcome there is no training to go on with: the join timeout speaks then.
      if (this.summary.peerId) this.log.warn('coordinator connection lost; training goes on, reports are buffered', { reason: e.reason });
      else this.log.debug('coordinator connection closed before the welcome', { reason: e.reason });
    });
    let joinedResolve!: (v: { peerId: string; run: RunInfo; source: JoinSource; adapter: string; matmul?: string }) => void;
    let joinedReject!: (e: unknown) => void;
    this.joined = new Promise((res, rej) => { joinedResolve = res; joinedReject = rej; });
    this.joined.catch(() => { /* reported through done as well */ });
    this.done = this.main(joinedResolve, joinedReject);
  }

  onRound(fn: (e: RoundEvent) => void): () => void {
    this.roundListeners.add(fn);
    return () => this.roundListeners.delete(fn);
  }

  async stop(reason = 'stopped by the volunteer'): Promise<VolunteerSummary> {
    this.requestStop(reason);
    return this.done.catch(() => this.summary);
  }

  private requestStop(reason: string): void {
    this.stopReason ??= reason;
    this.wake?.();
  }

  private get stopping(): boolean {
    return this.stopReason !== null;
  }

  private async main(
    joinedResolve: (v: { peerId: string; run: RunInfo; source: JoinSource; adapter: string; matmul?: string }) => void,
    joinedReject: (e: unknown) => void,
  ): Promise<VolunteerSummary> {
    try {
      let welcome: WelcomeMsg;
      let source: JoinSource;
      try {
        welcome = await this.awaitWelcome();
        const welcomedAt = performance.now();
        this.summary.peerId = welcome.peerId;
        this.summary.run = welcome.run.id;
        source = await this.prepare(welcome, welcomedAt);
      } catch (err) {
        joinedReject(err);
        throw err;
      }
      joinedResolve({ peerId: welcome.peerId, run: welcome.run, source, adapter: this.backend!.adapter, ...(this.backend!.matmul ? { matmul: this.backend!.matmul } : {}) });
      await this.loop(welcome.run);
      this.summary.reason = this.stopReason ?? 'limit reached';
      return this.summary;
    } catch (err) {
      this.summary.reason = `failed: ${(err as Error).message}`;
      throw err;
    } finally {
      await this.release();
    }
  }

  /** Connects and waits for the welcome (or a refusal, or the join timeout). */
  private awaitWelcome(): Promise<WelcomeMsg> {
    const s = this.signaling;
    const ms = this.settings.joinTimeoutMs;
    return new Promise<WelcomeMsg>((resolve, reject) => {
      const finish = (f: () => void) => { clearTimeout(timer); offs.forEach((o) => o()); this.wake = null; f(); };
      const offs = [
        s.on('welcome', (w) => finish(() => resolve(w))),
        s.on('stopped', (e) => finish(() => reject(new CoordinatorRefusedError(e.reason)))),
        s.on('error', (e) => { if (e.fatal) this.log.warn('coordinator error', { code: e.code, message: e.message }); }),
      ];
      const timer = setTimeout(() => finish(() => reject(new CoordinatorUnreachableError(this.opts.url, ms, s.lastCloseReason))), ms);
      this.wake = () => finish(() => reject(new VolunteerStoppedError(this.stopReason ?? 'stop()')));
      s.start();
    });
  }

  /**
   * Data, trainer, mesh, initial state; returns where the state came from. `welcomedAt`: when the
   * welcome arrived (performance.now()), where the coordinator's bound on our steps starts.
   */
  private async prepare(welcome: WelcomeMsg, welcomedAt: number): Promise<JoinSource> {
    const { run, assignment } = welcome;
    // stop() ends the download: a coordinator sending nothing or a trickle held a volunteer at
    // its join, and Ctrl-C only said "leaving after the current chunk".
    const stopped = new AbortController();
    this.wake = () => stopped.abort(new VolunteerStoppedError(this.stopReason ?? 'stop()'));
    if (this.stopping) this.wake();
    let data: { train: Uint8Array; val: Uint8Array };
    try {
      // With the welcome's session: a live peer's data comes from the peers' share of the
      // coordinator's download budget, not behind anonymous downloads.
      data = await downloadAssignment(this.opts.url, assignment, this.c.fetch, {
        signal: stopped.signal, session: welcome.session,
        onWait: (w) => this.log.info('the coordinator asks this address to wait before downloading the data', { status: w.status, waitMs: w.waitMs, reason: w.reason }),
      });
    } catch (err) {
      throw stopped.signal.aborted ? stopped.signal.reason : err;
    } finally {
      this.wake = null;
    }
    this.log.info('data verified', { train: data.train.length, val: data.val.length });
    this.backend = await (this.c.createBackend ?? createBackend)(this.settings.backend, {
      run, train: data.train, val: data.val, stream: this.opts.seed ?? assignment.replica, autotune: this.opts.autotune,
      ...(this.opts.probeSeed !== undefined ? { probeSeed: this.opts.probeSeed } : {}),
      // A lost GPU is rebuilt by the trainer, which trains the round's steps again: the counts
      // here stay right, and the log says why the round took longer.
      onEvent: (e) => {
        if (e.type === 'device-lost') this.log.warn('the GPU device was lost; the trainer rebuilds it from the last outer state', { message: e.message });
        else if (e.type === 'rebuilt') this.log.info('GPU device rebuilt', { step: e.step, attempt: e.attempt, retrained: e.retrained });
      },
    });
    this.log.info('trainer ready', {
      backend: this.backend.kind, adapter: this.backend.adapter, floats: this.backend.total, ...(this.backend.matmul ? { matmul: this.backend.matmul } : {}),
    });
    this.mesh = createMesh({
      runId: run.id, configHash: runConfigHash(run), elements: this.backend.total, compression: compressionForRun(run.compression),
      ...(this.opts.neighbours ? { neighbours: this.opts.neighbours } : {}),
      // A partner's claimed lead counts only as far as the run's pace and age allow (validate.ts,
      // roundsPerS and runRound).
      validation: { roundsPerS: welcomeRoundsPerS(welcome), runRound: welcomeRunRound(welcome, welcomedAt), ...this.opts.validation },
    })({ signaling: this.meshSignaling, rtc: this.c.rtc, logger: this.log });
    const others = welcome.peers.filter((p) => p !== welcome.peerId).length;
    const floats = this.backend.total;
    // A candidate state is measured in the trainer itself; if none is adopted, the fresh init goes back.
    const backend = this.backend;
    const fresh = await backend.slowState();
    /** The φ last loaded to be measured (undefined: none): adopting it needs no second load. */
    let inTrainer: Float32Array | undefined, loadedStep = -1;
    const maxLoss = maxStateLoss(welcome.checkpoint?.valLoss ?? null, run.model.vocab);
    // No state our reports could not go on from: the coordinator would refuse every one of them.
    const maxStep = welcomeMaxStep(welcome, welcomedAt);
    const stepCap = welcomeStepCap(welcome);
    const joined = await joinRunState(this.mesh, this.signaling, {
      runId: run.id, floats, others, timeoutMs: this.settings.bootstrapTimeoutMs, logger: this.log, maxLoss,
      outerMomentum: run.train.outerMomentum,
      ...(maxStep ? { maxStep } : {}), ...(stepCap ? { stepCap } : {}),
      measure: async (s) => {
        inTrainer = s.phi;
        loadedStep = s.innerStep;
        await backend.load({ phi: s.phi, momentum: s.momentum, innerStep: s.innerStep });
        const loss = await backend.checkLoss();
        this.log.info('candidate state measured', { round: s.outerRound, valLoss: loss.val, trainLoss: loss.train, bound: maxLoss });
        return loss;
      },
    });
    // Loaded already unless its counters were held (joinRunState): the trainer's schedule follows the step.
    if (joined.state) await this.adopt(joined.state, joined.state.phi === inTrainer && joined.state.innerStep === loadedStep);
    else if (inTrainer) await backend.load({ ...fresh, innerStep: 0 });
    this.summary.joinedFrom = joined.source;
    this.log.info('joined the run', { source: joined.source, from: joined.state?.from ?? null, step: this.step, round: this.round });
    // From now on we serve newcomers (over the mesh) and checkpoints (over HTTP).
    this.stopServing = serveRunState(this.mesh, this.signaling, { runId: run.id, floats, logger: this.log }, () => this.outerSnapshot());
    return joined.source;
  }

  /**
   * The last outer state with the counters that belong to it. An outer round replaces φ before
   * it bumps the counters (and evaluates in between), so wait out a φ update in flight, and read
   * again if one began during the read.
   */
  private async outerSnapshot() {
    for (;;) {
      if (this.outerInFlight) { await this.outerInFlight; continue; }
      const round = this.round, step = this.stepAtOuter;
      const s = await this.backend!.slowState();
      if (this.outerInFlight || this.round !== round) continue;
      return { phi: s.phi, momentum: s.momentum, outerRound: round, innerStep: step, valLoss: this.lastValLoss, tokens: this.tokens };
    }
  }

  /** Takes `s` as our state; `loaded`: the trainer holds it already (it was just measured). */
  private async adopt(s: Omit<BootState, 'from'>, loaded = false): Promise<void> {
    if (!loaded) await this.backend!.load({ phi: s.phi, momentum: s.momentum, innerStep: s.innerStep });
    this.step = this.stepAtOuter = s.innerStep;
    this.round = s.outerRound;
  }

  private async loop(run: RunInfo): Promise<void> {
    const backend = this.backend!, mesh = this.mesh!;
    const { H, batch, seqLen } = run.train;
    const chunk = Math.min(this.settings.chunkSteps, H);
    const every = this.settings.evalEveryRounds;
    const startRound = this.round, startStep = this.step;
    let diverged = 0;
    // One judge for the whole run: the margin is calibrated from this peer's own history.
    const judge = this.opts.probe === false ? null : new ProbeJudge();
    for (;;) {
      if (this.stopping) return;
      if (this.opts.rounds !== undefined && this.round - startRound >= this.opts.rounds) return;
      if (this.opts.steps !== undefined && this.step - startStep >= this.opts.steps) return;
      const t0 = performance.now();
      const losses: number[] = [];
      try {
        while (losses.length < H) {
          if (this.stopping) return; // an unfinished inner loop is dropped, not half-exchanged
          const c0 = performance.now();
          losses.push(...await backend.train(Math.min(chunk, H - losses.length)));
          const rest = ((this.opts.throttle ?? 1) - 1) * (performance.now() - c0);
          await new Promise((r) => (rest > 0 ? setTimeout(r, rest) : setImmediate(r)));
        }
      } catch (err) {
        if (!(err instanceof DivergedError)) throw err;
        // θ is back at φ: run this inner loop again; a run that keeps diverging needs a person.
        if (++diverged >= MAX_DIVERGED_IN_A_ROW) throw new DivergedError(`${err.message}; ${diverged} inner loops in a row diverged, giving up (lower the run's lr)`, { cause: err });
        this.log.warn('loss diverged; the inner loop restarts from the last outer state', { error: err.message, inARow: diverged });
        this.step = this.stepAtOuter;
        continue;
      }
      diverged = 0;
      this.step += H;
      this.tokens += H * batch * seqLen;
      const innerMs = performance.now() - t0;
      const done = this.summary.rounds + 1;
      const evaluate = every > 0 && (done === 1 || done % every === 0) ? () => backend.evaluate() : null;
      let roundDone: (() => void) | null = null;
      const replica: ProbingReplica = {
        outerPayload: () => backend.outerPayload(),
        probe: (partner) => backend.probe(partner),
        applyOuter: (partners) => {
          this.outerInFlight = new Promise<void>((r) => { roundDone = r; });
          return backend.applyOuter(partners);
        },
      };
      let out;
      try {
        out = await runOuterRound(mesh, replica, {
          round: this.round, inner: { step: this.step, losses, tokens: H * batch * seqLen, innerMs },
          pairWaitFrac: this.pairWaitFrac ?? run.pairWaitFrac, adapter: backend.adapter, evaluate, judge,
        });
        this.round++;
        this.stepAtOuter = this.step;
      } finally {
        this.outerInFlight = null;
        (roundDone as (() => void) | null)?.();
      }
      this.summary.rounds++;
      this.summary.steps = this.step;
      if (out.exchange.outcome === 'paired') this.summary.paired++;
      if (out.probe && !out.probe.accept) this.summary.probeRejected = (this.summary.probeRejected ?? 0) + 1;
      if (typeof out.report.valLoss === 'number') this.lastValLoss = out.report.valLoss;
      this.signaling.report(out.report);
      this.log.info('outer round', {
        round: out.report.round, step: out.report.step, loss: out.report.trainLoss, val: out.report.valLoss,
        partner: out.report.partner, solo: out.exchange.reason, waitMs: Math.round(out.waitMs),
        ...(out.probe ? { probeRejected: !out.probe.accept, probeExcess: out.probe.excess, probeMargin: out.probe.margin } : {}),
      });
      for (const fn of this.roundListeners) {
        try { fn({ report: out.report, exchange: out.exchange, waitMs: out.waitMs, probe: out.probe }); } catch (err) { this.log.error('round listener threw', { error: String(err) }); }
      }
    }
  }

  /** Lets the last reports reach the coordinator (briefly), then releases everything. */
  private async release(): Promise<void> {
    this.stopReason ??= 'volunteer finished';
    const s = this.signaling;
    const deadline = Date.now() + 3_000;
    while (s.connected && s.pendingReports > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    this.summary.unsentReports = s.pendingReports;
    const links = this.mesh?.stats();
    if (links) Object.assign(this.summary, { linksOpened: links.linksOpened, linkFailures: links.linkFailures, lastLinkError: links.lastLinkError });
    this.stopServing();
    this.mesh?.destroy();
    this.mesh = null;
    this.backend?.dispose();
    this.backend = null;
    s.stop(this.stopReason);
  }
}

