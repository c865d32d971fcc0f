// The volunteer page's backend: the coordinator (run description, signaling, reports) plus the
// training worker and the WebRTC mesh, which the entry file supplies as factories. Nothing here
// runs before join(), which the TrainingController calls only after consent and Start.
//
//   join: welcome -> worker (fresh init) -> mesh -> the run's state (a live peer's, else the
//   newest checkpoint's, else keep the fresh init; src/sync/join.ts) loaded into the worker
//   -> serve our last outer state to newcomers (mesh) and to checkpoint requests (coordinator)
import { buildLayout } from '../../model/layout.ts';
import { RunReply } from '../../protocol/api.ts';
import { schemaProblem } from '../../protocol/check.ts';
import { fetchRetrying, READ_RETRIES, type RetryOptions } from '../../protocol/retry-fetch.ts';
import { lossToWire, type RunInfo, type WelcomeMsg } from '../../protocol/messages.ts';
import { maxStateLoss } from '../../protocol/state-frame.ts';
import { DEFAULT_DEADLINE, exchangeLink } from '../../protocol/exchange-link.ts';
import { consoleLogger, type Logger } from '../../sync/components.ts';
import { joinRunState, serveRunState, welcomeMaxStep, welcomeStepCap } from '../../sync/join.ts';
import type { Mesh } from '../../sync/mesh.ts';
import { SignalingClient, type SessionStore, type WebSocketCtor } from '../../sync/signaling-client.ts';
import type { GpuProbe, MeshPort, RunSummary, SessionStart, TrainerPort, VolunteerBackend, VolunteerSession } from '../ports.ts';
import { browserProbeEnv, probeGpu } from './gpu-probe.ts';
import { ServingTrainer } from './serving-trainer.ts';

export function summarizeRun(run: RunInfo, host: string): RunSummary {
  const layout = buildLayout(run.model);
  const link = exchangeLink(run.compression, layout.total);
  return {
    id: run.id,
    name: run.name,
    dataset: run.dataset === 'moby-dick' ? 'Moby-Dick by Herman Melville (public domain), one byte per token' : run.dataset,
    preset: run.preset,
    params: layout.params,
    tokensPerStep: run.train.batch * run.train.seqLen,
    H: run.train.H,
    pairWaitFrac: run.pairWaitFrac,
    // φ and Δ as the run's compression puts them on the wire (int8: φ in f16, Δ in blockwise int8).
    bytesPerExchange: link.bytes,
    linkBytesPerS: link.leastBytesPerS,
    exchangeWaitS: DEFAULT_DEADLINE.maxMs / 1000,
    firstLinkBytesPerS: link.firstBytesPerS,
    firstExchangeWaitS: DEFAULT_DEADLINE.initialMs / 1000,
    icePolicy: run.icePolicy ?? 'all',
    operator: `the operator of ${host}`,
    resultsUrl: '/dashboard',
  };
}

/** GPU limits the run's model needs: one flat state buffer must fit a storage binding. */
export function requiredLimits(run: RunInfo): Record<string, number> {
  const bytes = buildLayout(run.model).total * 4;
  return { maxStorageBufferBindingSize: bytes, maxBufferSize: bytes };
}

export interface TrainerFactoryArgs {
  run: RunInfo;
  welcome: WelcomeMsg;
  baseUrl: string;
  /**
   * Aborted when the join is given up (Stop, the coordinator ending the session): the data
   * download stops, a worker already started is ended, and the factory rejects with its reason.
   */
  signal?: AbortSignal;
}
export interface MeshFactoryArgs {
  run: RunInfo;
  signaling: SignalingClient;
  welcome: WelcomeMsg;
  /** Other live peers of the run right now (kept from the welcome on, before the mesh exists). */
  otherPeers(): number;
  /** When the welcome arrived (performance.now()): the run's reach is timed from it (welcomeRunRound). */
  welcomedAt: number;
}

/** The run's mesh as the backend needs it: the controller's port, plus joining and serving state. */
export type RunMesh = MeshPort & Pick<Mesh, 'bootstrap' | 'serveState' | 'destroy'>;

export interface VolunteerBackendInit {
  baseUrl: string;
  runId: string;
  /** How a refused read of the run is asked again (tests pass their own sleep). */
  readRetry?: RetryOptions;
  WebSocket: WebSocketCtor;
  session?: SessionStore;
  fetch?: typeof fetch;
  /** Starts the training worker for this run (data download, GPU device, fresh init from the run's seed). */
  createTrainer(args: TrainerFactoryArgs): Promise<TrainerPort>;
  /** Joins the run's WebRTC mesh. */
  createMesh(args: MeshFactoryArgs): Promise<RunMesh>;
  /** How long to look for a live peer to copy the run's state from (when others are online). Default 15 s. */
  bootstrapTimeoutMs?: number;
  /** Where join and serve events go; default the console, prefixed [murmur]. */
  logger?: Logger;
}

export class CoordinatorVolunteerBackend implements VolunteerBackend {
  private run: RunInfo | null = null;

  constructor(private readonly init: VolunteerBackendInit) {}

  private async runInfo(): Promise<RunInfo> {
    if (this.run) return this.run;
    const f = this.init.fetch ?? fetch;
    // A read charged to this address (server/read-budget.ts): a 429 is waited out as it says.
    const res = await fetchRetrying(f, `${this.init.baseUrl}/api/runs/${encodeURIComponent(this.init.runId)}`, {}, { retries: READ_RETRIES, ...this.init.readRetry });
    if (!res.ok) throw new Error(`the coordinator did not describe run "${this.init.runId}" (HTTP ${res.status})`);
    const body: unknown = await res.json();
    // The run a volunteer would train on: the page says what is wrong rather than train on it.
    const problem = schemaProblem(RunReply, body, 'run');
    if (problem !== null) throw new Error(`the coordinator described run "${this.init.runId}" in a form this page cannot read: ${problem}`);
    return (this.run = body as RunReply);
  }

  async describeRun(): Promise<RunSummary> {
    return summarizeRun(await this.runInfo(), new URL(this.init.baseUrl).host);
  }

  async probeGpu(): Promise<GpuProbe> {
    return probeGpu(browserProbeEnv(), requiredLimits(await this.runInfo()));
  }

  async join(signal?: AbortSignal): Promise<VolunteerSession> {
    signal?.throwIfAborted();
    const signaling = new SignalingClient({
      url: this.init.baseUrl, run: this.init.runId, WebSocket: this.init.WebSocket, session: this.init.session,
      client: { kind: 'browser', version: 'murmur-web' },
    });
    // What ends the join before it is done: Stop (the caller's signal) or the coordinator (a
    // refusal before the welcome, the end of the session after it). Every wait below ends with it,
    // the download and the worker's start included, and the catch releases what was started.
    const interrupt = new AbortController();
    const onAbort = () => interrupt.abort(signal!.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    const interrupted = new Promise<never>((_, reject) => interrupt.signal.addEventListener('abort', () => reject(interrupt.signal.reason), { once: true }));
    interrupted.catch(() => {});
    const step = <T>(p: Promise<T>): Promise<T> => Promise.race([p, interrupted]);
    // Peer lists arrive from the welcome on; the trainer takes a while to start, so listen now.
    let others: string[] = [];
    const offPeersList = signaling.on('peers', (e) => { others = e.peers.filter((p) => p !== signaling.peerId); });
    // A researcher may change the pool wait while we train (the coordinator refuses changes to
    // training and wire settings while peers train).
    let pairWaitFrac: number | null = null;
    const offConfig = signaling.on('config', (r) => { pairWaitFrac = r.pairWaitFrac; });
    // The coordinator ends the session (the run stopped, another tab took it over, a refusal):
    // before the session is handed over that fails the join; after, the controller is told.
    let welcome: WelcomeMsg | null = null;
    let endedBy: string | null = null;
    const onEnd = new Set<(reason: string) => void>();
    const offStopped = signaling.on('stopped', (e) => {
      endedBy = e.reason;
      interrupt.abort(new Error(welcome ? `the coordinator ended this volunteer's session: ${e.reason}` : `the coordinator refused this volunteer: ${e.reason}`));
      for (const fn of [...onEnd]) fn(e.reason);
    });
    const offAll = () => { offPeersList(); offConfig(); offStopped(); signal?.removeEventListener('abort', onAbort); };
    /** When the welcome arrived: the coordinator's bound on our steps starts there. */
    let welcomedAt = 0;
    const log = this.init.logger ?? consoleLogger('[murmur]', true);
    let trainer: TrainerPort | null = null;
    let mesh: RunMesh | null = null;
    let start: SessionStart;
    let run: RunInfo;
    let floats: number;
    try {
      const w = welcome = await step(new Promise<WelcomeMsg>((resolve) => {
        const off = signaling.on('welcome', (m) => { off(); welcomedAt = performance.now(); others = m.peers.filter((p) => p !== m.peerId); resolve(m); });
        signaling.start();
      }));
      run = w.run;
      floats = buildLayout(run.model).total;
      // The factory honours the signal itself (the download is aborted, a worker it started is
      // ended): raced from outside, a trainer it finished later would hold the GPU unowned.
      trainer = await this.init.createTrainer({ run, welcome: w, baseUrl: this.init.baseUrl, signal: interrupt.signal });
      interrupt.signal.throwIfAborted();
      mesh = await step(this.init.createMesh({ run, signaling, welcome: w, otherPeers: () => others.length, welcomedAt }));
      // The run's current state: a live peer's, else the newest checkpoint's, else the fresh init;
      // each candidate measured in the trainer before it is adopted (src/sync/state-check.ts).
      const t0 = trainer;
      /** The trainer's fresh init, kept before the first candidate overwrites it (none: never loaded). */
      let fresh: Awaited<ReturnType<TrainerPort['outerState']>> | undefined;
      /** The φ last loaded to be measured (undefined: none): adopting it needs no second load. */
      let inTrainer: Float32Array | undefined, loadedStep = -1;
      const maxStep = welcomeMaxStep(w, welcomedAt);
      const stepCap = welcomeStepCap(w);
      const joined = await step(joinRunState(mesh, signaling, {
        runId: run.id, floats, others: others.length, timeoutMs: this.init.bootstrapTimeoutMs, logger: log,
        maxLoss: maxStateLoss(w.checkpoint?.valLoss ?? null, run.model.vocab), outerMomentum: run.train.outerMomentum,
        // No state our reports could not go on from: the coordinator would refuse every one of them.
        ...(maxStep ? { maxStep } : {}), ...(stepCap ? { stepCap } : {}),
        measure: async (c) => {
          interrupt.signal.throwIfAborted();
          fresh ??= await t0.outerState();
          inTrainer = c.phi;
          loadedStep = c.innerStep;
          await t0.load({ phi: c.phi, momentum: c.momentum, innerStep: c.innerStep });
          return t0.checkLoss();
        },
      }));
      const s = joined.state;
      // Loaded already unless its counters were held (joinRunState): the trainer's schedule follows the step.
      if (s && (s.phi !== inTrainer || s.innerStep !== loadedStep)) await step(trainer.load({ phi: s.phi, momentum: s.momentum, innerStep: s.innerStep }));
      else if (!s && inTrainer && fresh) await step(trainer.load(fresh));
      interrupt.signal.throwIfAborted();
      start = { source: joined.source, from: joined.source === 'peer' ? s!.from : null, step: s?.innerStep ?? 0, round: s?.outerRound ?? 0 };
      log.info('joined the run', { run: run.id, ...start });
    } catch (e) {
      offAll();
      mesh?.destroy();
      await trainer?.dispose().catch(() => {});
      signaling.stop(signal?.aborted ? 'the volunteer stopped' : 'could not start training');
      throw interrupt.signal.aborted ? interrupt.signal.reason : e;
    }
    // The join is over: Stop now goes through close(), not the signal.
    signal?.removeEventListener('abort', onAbort);
    const t = new ServingTrainer(trainer, start, run.train.batch * run.train.seqLen);
    const m = mesh;
    // From now on newcomers copy our last outer state, and the coordinator can checkpoint it.
    const stopServing = serveRunState(m, signaling, { runId: run.id, floats, logger: log }, () => t.snapshot());
    return {
      peerId: welcome!.peerId,
      start,
      pairWaitFrac: () => pairWaitFrac ?? run.pairWaitFrac,
      trainer: t,
      mesh: m,
      report: (r) => {
        // JSON cannot carry NaN: a non-finite loss travels as "NaN"/"Infinity" (WireLoss), so
        // the dashboard's NaN alert sees a diverged replica.
        signaling.report({ ...r, trainLoss: lossToWire(r.trainLoss), valLoss: lossToWire(r.valLoss) });
      },
      onEnd(fn) {
        if (endedBy !== null) { fn(endedBy); return () => {}; }
        onEnd.add(fn);
        return () => { onEnd.delete(fn); };
      },
      close: async () => {
        offAll();
        onEnd.clear();
        stopServing();
        m.destroy();
        await t.dispose();
        signaling.stop('the volunteer stopped');
      },
    };
  }
}
