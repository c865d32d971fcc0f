// The Trainer: one replica's whole training state on one GPU. It owns the device, the engine,
// the data stream and the last outer state, and is what the page talks to through comlink
// (src/worker/worker.ts) and what the headless volunteer runs directly in Node on Dawn. It has
// no DOM dependency: the GPU entry point and the autotune cache are injected.
//
// Device loss: after every outer step (and at init/load) the Trainer keeps φ, the outer
// momentum and the step counter on the CPU. If the device is lost for any reason but
// dispose(), it acquires a new one, rebuilds every pipeline and buffer, restarts from that
// state (θ = φ, AdamW moments zero: they are local and cheap to rebuild), and trains again the
// inner steps it had taken since, on fresh windows of its stream; then the interrupted call runs
// again. A lost device costs the caller time and nothing else: the step counter, the LR
// schedule and the Δ of the round all stay what the caller counted (a replica that went back
// H - 1 steps without saying so would report steps it never sent, and pair with less work).
import { randomSeed, WindowSampler } from '../data/sampler.ts';
import type { Batch } from '../data/batch.ts';
import { trainConfig, validateModelConfig, type ModelConfig, type TrainConfig } from '../model/config.ts';
import { initParams } from '../model/init.ts';
import { buildLayout, type Layout } from '../model/layout.ts';
import { autotune, matmulRates, tunedEngine, type TuningStore } from '../gpu/autotune.ts';
import { acquireDevice, describeAdapter, type AcquiredDevice } from '../gpu/device.ts';
import { GpuEngine } from '../gpu/engine.ts';
import { DeviceLostError } from '../gpu/errors.ts';
import { DEFAULT_TUNING, type Tuning } from '../gpu/kernels.ts';
import { requirements } from '../gpu/limits.ts';
import { probeCandidates, validateOuterHyper } from '../train/outer.ts';
import {
  STATE_FORMAT, STATE_VERSION, type LoadState, type OuterPayload, type OuterSnapshot, type PartnerInput, type TrainerConfig,
  type TrainerEvent, type TrainerInfo, type TrainerState,
} from './types.ts';

export interface TrainerOptions {
  /** The WebGPU entry point; default navigator.gpu. Node passes nodeGpu. */
  gpu?: () => GPU | Promise<GPU>;
  /** Where autotuned kernel shapes are cached (IndexedDB in a browser, a file in Node). */
  tuningStore?: TuningStore;
  /** Hint shown when there is no adapter (Node says which packages give it a driver). */
  noAdapterHint?: string;
  /** Device losses in a row (with no successful call between) before giving up; default 3. */
  maxRebuilds?: number;
}

interface Setup {
  model: ModelConfig;
  train: TrainConfig;
  layout: Layout;
  readEvery: number;
  autotune: boolean;
  sampler: WindowSampler;
  /**
   * The probe's windows (docs/design.md section 6.1): from this replica's own training data but
   * a stream seeded at random on this device, so no partner can know or fit them.
   */
  probeSampler: WindowSampler;
}

/** How long a failed GPU call waits for its device's lost promise before it counts as a plain error. */
const LOSS_SETTLE_MS = 2000;
/** The wait before the second attempt at a new device; it doubles for each attempt after. */
const REBUILD_BACKOFF_MS = 1000;

export class Trainer {
  private setup?: Setup;
  private gpu?: AcquiredDevice;
  private engine?: GpuEngine;
  private tuning: Tuning = DEFAULT_TUNING;
  private tuningFromCache = false;
  /** φ, outer momentum and step at the last outer step: what a lost device restarts from. */
  private lastOuter?: OuterSnapshot;
  private batch?: Batch;
  private listener: ((e: TrainerEvent) => unknown) | null = null;
  private lost: DeviceLostError | null = null;
  private rebuilds = 0;
  /** The step counter a rebuild in progress must get back to (null: the engine's at the loss). */
  private resumeAt: number | null = null;
  private disposed = false;
  /** Public calls run one at a time (comlink lets the page issue them concurrently). */
  private tail: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: TrainerOptions = {}) {}

  /** Receives autotune, device-lost and rebuilt events (a comlink proxy from the page). */
  setEventListener(listener: ((e: TrainerEvent) => unknown) | null): void {
    this.listener = listener;
  }

  /** Acquires the GPU, autotunes (cached), builds the engine and initialises the weights from `seed`. */
  init(config: TrainerConfig, seed: number): Promise<TrainerInfo> {
    return this.serial(async () => {
      if (this.setup) throw new Error('Trainer.init: already initialised; dispose() it and make a new Trainer');
      if (!Number.isInteger(seed)) throw new RangeError(`Trainer.init: seed must be an integer, got ${seed}`);
      const setup = makeSetup(config, seed);
      this.setup = setup;
      try {
        await this.build();
        const theta = initParams(setup.layout, seed);
        const zeros = new Float32Array(setup.layout.total);
        this.engine!.writeState({ params: theta, m: zeros, v: zeros, phi: theta, outerM: zeros, step: 0 });
        this.lastOuter = { phi: theta.slice(), outerM: zeros.slice(), step: 0 };
      } catch (e) {
        this.teardown();
        this.setup = undefined;
        throw e;
      }
      return this.info();
    });
  }

  /**
   * Replaces the replica's state with `state`: a full export, or only the outer state of a
   * peer or checkpoint (θ = φ, AdamW moments zero). It becomes the last outer state.
   */
  load(state: LoadState | TrainerState): Promise<TrainerInfo> {
    return this.serial(async () => {
      const setup = this.requireSetup('load');
      const s = checkState(state, setup);
      await this.live(false); // what was trained since the last outer step is replaced anyway
      this.engine!.writeState(s);
      this.lastOuter = { phi: s.phi.slice(), outerM: s.outerM.slice(), step: s.step };
      return this.info();
    });
  }

  /** `steps` inner steps on this replica's data stream; returns each step's loss. */
  train(steps: number): Promise<number[]> {
    return this.serial(async () => {
      const setup = this.requireSetup('train');
      if (!Number.isInteger(steps) || steps < 0) throw new RangeError(`Trainer.train: steps must be a non-negative integer, got ${steps}`);
      const losses = await this.withRecovery(() => this.engine!.train(steps, () => this.nextBatch()).then((s) => s.losses));
      await this.checkFinite(losses, 'train');
      return losses;
    });
  }

  /** Mean loss over `batches` (each of the training shape B x T); changes nothing. */
  evaluate(batches: Batch[]): Promise<number> {
    return this.serial(async () => {
      const setup = this.requireSetup('evaluate');
      for (const b of batches) checkBatch(b, setup.model.vocab);
      return this.withRecovery(() => this.engine!.evaluate(batches));
    });
  }

  /** φ and Δ = θ - φ for this replica's partner (each array owns its buffer: transferable). */
  outerPayload(): Promise<OuterPayload> {
    return this.serial(async () => {
      this.requireSetup('outerPayload');
      return this.withRecovery(() => this.engine!.outerPayload());
    });
  }

  /**
   * φ, outer momentum and step of the last outer step (copies, no GPU read): what this peer
   * serves to a newcomer, who loads it with load().
   */
  outerState(): Promise<OuterSnapshot> {
    return this.serial(async () => {
      this.requireSetup('outerState');
      const o = this.lastOuter!;
      return { phi: o.phi.slice(), outerM: o.outerM.slice(), step: o.step };
    });
  }

  /**
   * The outer step with the partners' payloads; none is a solo step. Hyper-parameters come from
   * the train config (α = outerMomentum, β = outerLr, γ = consensus; γ = 0 gives DiLoCo's rule).
   */
  applyOuter(partners: PartnerInput[] = []): Promise<void> {
    return this.serial(async () => {
      const setup = this.requireSetup('applyOuter');
      const total = setup.layout.total;
      const arrays = partners.map((p, i) => {
        const phi = floats(p?.phi, total, `Trainer.applyOuter: partner ${i}'s phi`);
        const delta = floats(p?.delta, total, `Trainer.applyOuter: partner ${i}'s delta`);
        const bad = firstNonFinite(phi) ?? firstNonFinite(delta);
        if (bad !== undefined) throw new RangeError(`Trainer.applyOuter: partner ${i}'s payload has a non-finite value at float ${bad}; refusing it`);
        return { phi, delta };
      });
      const { outerMomentum: alpha, outerLr: beta, consensus: gamma } = setup.train;
      const out = await this.withRecovery(() => this.engine!.applyOuter(arrays, { alpha, beta, gamma }));
      this.lastOuter = { phi: out.phi, outerM: out.outerM, step: this.engine!.step };
    });
  }

  /**
   * The probe (docs/design.md section 6.1), after outerPayload and before applyOuter: the loss of
   * the solo and of the paired candidate state on `windows` fresh private windows, per window.
   * The candidates are computed on the CPU from the last outer state (the same rule as the
   * kernel); training state is unchanged.
   */
  probe(partner: PartnerInput, windows: number): Promise<{ solo: number[]; paired: number[] }> {
    return this.serial(async () => {
      const setup = this.requireSetup('probe');
      if (!(Number.isInteger(windows) && windows >= 1)) throw new RangeError(`Trainer.probe: windows must be a positive integer, got ${windows}`);
      const total = setup.layout.total;
      const phi = floats(partner?.phi, total, "Trainer.probe: the partner's phi");
      const delta = floats(partner?.delta, total, "Trainer.probe: the partner's delta");
      const { B, T } = { B: setup.train.batch, T: setup.train.seqLen };
      const batches = Array.from({ length: windows }, () => setup.probeSampler.next(B, T));
      return this.withRecovery(async () => {
        const own = await this.engine!.outerPayload();
        const o = this.lastOuter!;
        const { outerMomentum: momentum, outerLr: lr, consensus } = setup.train;
        const c = probeCandidates(o.phi, o.outerM, own, { phi, delta }, { momentum, lr, consensus });
        const [solo, paired] = await this.engine!.probeLosses([c.solo, c.paired], batches);
        return { solo: solo!, paired: paired! };
      });
    });
  }

  exportState(): Promise<TrainerState> {
    return this.serial(async () => {
      const setup = this.requireSetup('exportState');
      const s = await this.withRecovery(() => this.engine!.readState());
      return {
        format: STATE_FORMAT, version: STATE_VERSION, model: { ...setup.model }, train: { ...setup.train }, step: s.step,
        params: s.params, m: s.m, v: s.v, phi: s.phi, outerM: s.outerM,
      };
    });
  }

  getInfo(): Promise<TrainerInfo> {
    return this.serial(async () => {
      this.requireSetup('getInfo');
      await this.live(true);
      return this.info();
    });
  }

  /** The current GPUDevice (diagnostics and tests); undefined before init or after dispose. */
  get device(): GPUDevice | undefined {
    return this.gpu?.device;
  }

  /** Frees the GPU; safe to call twice. The Trainer cannot be used afterwards. */
  dispose(): void {
    this.disposed = true;
    this.teardown();
  }

  // ---- internals ----

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(() => {
      if (this.disposed) throw new Error('Trainer: used after dispose()');
      return fn();
    });
    this.tail = run.catch(() => {});
    return run;
  }

  private requireSetup(what: string): Setup {
    if (!this.setup) throw new Error(`Trainer.${what}: call init(config, seed) first`);
    return this.setup;
  }

  private info(): TrainerInfo {
    const { layout } = this.setup!;
    const g = this.gpu!;
    return {
      adapter: describeAdapter(g.info), isSoftware: g.info.isSoftware, params: layout.params, total: layout.total,
      dispatchesPerStep: this.engine!.dispatchesPerStep, gpuBytes: this.engine!.gpuBytes, tuning: this.tuning, tuningFromCache: this.tuningFromCache,
      matmulRates: matmulRates(this.tuning, g.info), step: this.engine!.step,
    };
  }

  /** Acquires a device and builds the engine (init and every rebuild). */
  private async build(): Promise<void> {
    const setup = this.setup!;
    const gpu = this.opts.gpu ? await this.opts.gpu() : undefined;
    const req = requirements(setup.layout, setup.train.batch, setup.train.seqLen, DEFAULT_TUNING);
    const acquired = await acquireDevice({ gpu, requiredLimits: req.requested, label: 'Trainer.device', noAdapterHint: this.opts.noAdapterHint });
    if (this.disposed) { acquired.device.destroy(); this.checkNotDisposed(); }
    this.gpu = acquired;
    this.lost = null;
    void acquired.lost.then((err) => {
      if (this.disposed || this.gpu !== acquired) return; // our own dispose or an old device
      this.lost = err;
      this.emit({ type: 'device-lost', message: err.message });
    });
    const engineOpts = { layout: setup.layout, train: setup.train, B: setup.train.batch, T: setup.train.seqLen, readEvery: setup.readEvery };
    if (setup.autotune) {
      const r = await autotune(acquired.device, acquired.info, { store: this.opts.tuningStore });
      // On a GPU, also each of this model's products at its own size (once per model and machine).
      const t = await tunedEngine(acquired.device, acquired.info, { ...engineOpts, tuning: r.tuning }, { store: this.opts.tuningStore, key: r.key });
      this.engine = t.engine;
      this.tuning = t.tuning;
      this.tuningFromCache = r.fromCache && t.tuned === 0;
      this.emit({ type: 'autotune', fromCache: this.tuningFromCache, tuning: t.tuning });
    } else {
      this.engine = new GpuEngine(acquired.device, { ...engineOpts, tuning: this.tuning });
    }
    if (this.disposed) { this.teardown(); this.checkNotDisposed(); }
  }

  /**
   * dispose() came while a call waited (a rebuild's backoff, a device being acquired or tuned):
   * the call fails, and nothing it was building is kept (a device acquired after dispose() was
   * held, and trained on, by a trainer nobody would dispose again).
   */
  private checkNotDisposed(): void {
    if (this.disposed) throw new Error('Trainer: disposed while the call was running (a lost device was being rebuilt)');
  }

  private teardown(): void {
    this.engine?.destroy();
    this.engine = undefined;
    const g = this.gpu;
    this.gpu = undefined;
    g?.device.destroy();
  }

  /** The next training batch of this replica's stream (its buffers reused). */
  private nextBatch(): Batch {
    const { batch: B, seqLen: T } = this.setup!.train;
    return (this.batch = this.setup!.sampler.next(B, T, this.batch));
  }

  /** Diverged: go back to the last shared weights rather than keep training on NaNs. */
  private async checkFinite(losses: readonly number[], what: string): Promise<void> {
    const bad = losses.findIndex((l) => !Number.isFinite(l));
    if (bad < 0) return;
    const at = this.engine!.step - losses.length + bad;
    await this.restoreLastOuter();
    throw new Error(`Trainer.${what}: loss is ${losses[bad]} at step ${at}; ` +
      `the weights were reset to the last outer state (step ${this.lastOuter!.step}). Lower the learning rate or check the data.`);
  }

  /**
   * Rebuilds on a new device if the current one was lost, back at the step counter the replica
   * had before the loss (or before the call the loss interrupted: `resumeAt`), by training again
   * from the last outer state; `redo` false: only the last outer state (load() replaces it all).
   * A loss during the rebuild or the retraining, or a new device that cannot be had (a driver
   * that reset offers no adapter for a moment), starts it over after a wait that doubles:
   * `maxRebuilds` attempts in a row, then the call fails with the last attempt's error.
   */
  private async live(redo = true): Promise<void> {
    while (this.lost) {
      const max = this.opts.maxRebuilds ?? 3;
      const cause = this.lost;
      if (this.rebuilds >= max) throw new DeviceLostError(cause.reason, `gave up after ${max} rebuilds`);
      this.rebuilds++;
      if (this.rebuilds > 1) await new Promise((r) => setTimeout(r, REBUILD_BACKOFF_MS * 2 ** (this.rebuilds - 2)));
      this.checkNotDisposed();
      const target = (this.resumeAt ??= this.engine?.step ?? this.lastOuter!.step);
      this.teardown();
      try {
        await this.build();
      } catch (e) {
        if (this.disposed) throw e;
        this.lost = cause; // still without a device: the next attempt, or the next call, tries again
        if (this.rebuilds < max) continue;
        throw e;
      }
      await this.restoreLastOuter();
      const n = redo ? target - this.lastOuter!.step : 0;
      if (n > 0) {
        try {
          await this.checkFinite((await this.engine!.train(n, () => this.nextBatch())).losses, 'train (retraining after a lost device)');
        } catch (e) {
          if (await this.lostBy(e)) continue; // lost again while retraining: rebuild once more
          this.resumeAt = null;
          throw e;
        }
      }
      this.resumeAt = null;
      this.emit({ type: 'rebuilt', step: this.engine!.step, attempt: this.rebuilds, retrained: n });
    }
  }

  /** θ = φ from the last outer step, AdamW moments zero, the step counter of that outer step. */
  private async restoreLastOuter(): Promise<void> {
    const o = this.lastOuter!;
    const zeros = new Float32Array(this.setup!.layout.total);
    this.engine!.writeState({ params: o.phi, m: zeros, v: zeros, phi: o.phi, outerM: o.outerM, step: o.step });
  }

  /**
   * Runs fn; if the device was lost before or during it, rebuilds (back at the step counter the
   * call started from) and runs it again.
   */
  private async withRecovery<T>(fn: () => Promise<T>): Promise<T> {
    for (;;) {
      await this.live();
      const start = this.engine!.step;
      try {
        const r = await fn();
        this.rebuilds = 0; // maxRebuilds counts losses in a row, not over a volunteer's whole day
        return r;
      } catch (e) {
        if (!(await this.lostBy(e))) throw e;
        this.resumeAt = start; // the steps this call had queued are run again by the call itself
      }
    }
  }

  /**
   * Whether `e` came of a lost device. A lost device rejects the pending maps first and settles
   * its lost promise a moment later: a GPU failure waits for that (LOSS_SETTLE_MS at most);
   * our own argument checks (RangeError, TypeError) are thrown at once.
   */
  private async lostBy(e: unknown): Promise<boolean> {
    if (this.lost) return true;
    const g = this.gpu;
    if (!g || e instanceof RangeError || e instanceof TypeError) return false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([g.lost, new Promise((r) => { timer = setTimeout(r, LOSS_SETTLE_MS); })]);
    clearTimeout(timer);
    return this.lost !== null;
  }

  private emit(e: TrainerEvent): void {
    // A listener's failure is not the trainer's; a comlink proxy's answer is a promise that
    // rejects when the page has gone.
    try { void Promise.resolve(this.listener?.(e)).catch(() => {}); } catch { /* as above */ }
  }
}

function makeSetup(config: TrainerConfig, seed: number): Setup {
  if (!config || typeof config !== 'object') throw new TypeError('Trainer.init: config must be an object');
  const model = { ...config.model };
  validateModelConfig(model);
  const train = trainConfig(config.train ?? {}, model);
  validateOuterHyper({ momentum: train.outerMomentum, lr: train.outerLr, consensus: train.consensus });
  if (!(config.data instanceof Uint8Array)) throw new TypeError('Trainer.init: config.data must be a Uint8Array of training tokens');
  if (config.data.length < train.seqLen + 1) {
    throw new RangeError(`Trainer.init: the training data has ${config.data.length} tokens, fewer than one window of seqLen + 1 = ${train.seqLen + 1}`);
  }
  for (let i = 0; i < config.data.length; i++) {
    if (config.data[i] >= model.vocab) throw new RangeError(`Trainer.init: data token ${config.data[i]} at ${i} is outside the vocabulary (size ${model.vocab})`);
  }
  const readEvery = config.readEvery ?? 10;
  if (!Number.isInteger(readEvery) || readEvery < 1) throw new RangeError(`Trainer.init: readEvery must be a positive integer, got ${readEvery}`);
  const replica = config.replica ?? 0;
  return {
    model, train, layout: buildLayout(model), readEvery, autotune: config.autotune ?? true,
    sampler: new WindowSampler(config.data, { seed, replica }),
    probeSampler: new WindowSampler(config.data, { seed: config.probeSeed ?? randomSeed(), replica }),
  };
}

function checkBatch(b: Batch, vocab: number): void {
  if (!(b?.tokens instanceof Uint32Array) || !(b.targets instanceof Uint32Array)) throw new TypeError('evaluate: each batch needs Uint32Array tokens and targets');
  for (let i = 0; i < b.tokens.length; i++) {
    if (b.tokens[i] >= vocab || b.targets[i] >= vocab) throw new RangeError(`evaluate: token or target at ${i} is outside the vocabulary (size ${vocab})`);
  }
}

function checkState(state: LoadState, setup: Setup) {
  if (!state || state.format !== STATE_FORMAT) throw new TypeError(`Trainer.load: not a ${STATE_FORMAT} object`);
  if (state.version !== STATE_VERSION) throw new RangeError(`Trainer.load: state version ${state.version} is not supported (expected ${STATE_VERSION})`);
  for (const k of ['vocab', 'ctx', 'layers', 'd', 'heads'] as const) {
    if (state.model?.[k] !== setup.model[k]) {
      throw new RangeError(`Trainer.load: the state is for a model with ${k}=${state.model?.[k]}, this trainer runs ${k}=${setup.model[k]}`);
    }
  }
  if (!Number.isInteger(state.step) || state.step < 0) throw new RangeError(`Trainer.load: step must be a non-negative integer, got ${state.step}`);
  const total = setup.layout.total;
  const arr = (k: 'params' | 'm' | 'v' | 'phi' | 'outerM', fallback?: () => Float32Array) => {
    if (state[k] === undefined && fallback) return fallback();
    const a = floats(state[k], total, `Trainer.load: ${k}`);
    const bad = firstNonFinite(a);
    if (bad !== undefined) throw new RangeError(`Trainer.load: ${k} has a non-finite value at float ${bad}`);
    return a;
  };
  const phi = arr('phi'), outerM = arr('outerM');
  const zeros = () => new Float32Array(total);
  return { params: arr('params', () => phi), m: arr('m', zeros), v: arr('v', zeros), phi, outerM, step: state.step };
}

/** A Float32Array view of `x` (a Float32Array or its ArrayBuffer) of exactly `total` floats. */
function floats(x: Float32Array | ArrayBuffer | undefined, total: number, what: string): Float32Array {
  const a = x instanceof Float32Array ? x : x instanceof ArrayBuffer ? new Float32Array(x) : undefined;
  if (!a || a.length !== total) {
    const got = a ? `${a.length} floats` : x === undefined ? 'nothing' : (x as object)?.constructor?.name ?? typeof x;
    throw new RangeError(`${what} must be a Float32Array (or ArrayBuffer) of ${total} floats, got ${got}`);
  }
  return a;
}

function firstNonFinite(a: Float32Array): number | undefined {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return i;
  return undefined;
}
