// GpuEngine: one model replica on one GPUDevice. A training step (forward, backward, clip,
// AdamW) is one command buffer replaying precreated dispatches, with no CPU readback; losses
// land in a GPU ring that is copied out and mapped asynchronously every `readEvery` steps.
// The outer step and the state transfers are here too; device acquisition and recovery from
// device loss belong to the caller (src/worker/trainer.ts), which rebuilds an engine.
import type { TrainConfig } from '../model/config.ts';
import type { Layout } from '../model/layout.ts';
import type { Batch } from '../data/batch.ts';
import { activationBytes, GpuGPT } from './gpt.ts';
import { DEFAULT_TUNING, encodeDispatches, Kernels, writeArray, type Dispatch, type Tuning } from './kernels.ts';
import { checkDeviceLimits, requirements } from './limits.ts';
import { buildOptim, HYPER_FIXED_LR_OFFSET, NO_FIXED_LR, outerUniformData, type OptimDispatches } from './optim.ts';
import { GpuState, STEP_STATE_LOSS_SCALE, STEP_STATE_SKIPPED, STEP_STATE_WORDS } from './state.ts';

export interface EngineOptions {
  layout: Layout;
  train: TrainConfig;
  /** Batch shape every step uses (evaluation batches must match it). */
  B: number;
  T: number;
  /** Steps between asynchronous loss read-backs (also the loss ring's length). */
  readEvery?: number;
  tuning?: Tuning;
  /**
   * f16 operands (issue 17): matrix products and attention round what they read to f16 and
   * accumulate in f32; master weights, AdamW, LayerNorm, softmax and the loss stay f32; the
   * loss is scaled dynamically (a step whose scaled gradients overflow is skipped and the scale
   * halves; after `growthInterval` good steps it doubles). src/train/cpu-trainer.ts's `half`
   * is the same step on the CPU.
   */
  half?: boolean;
  /** Starting loss scale with `half` (default 2^16). */
  lossScale?: number;
  /** Good steps in a row after which the loss scale doubles (default 2000). */
  growthInterval?: number;
}

/** The dynamic loss scaler's state on the GPU (f16 operands). */
export interface LossScaling { lossScale: number; skipped: number }

/** Every kind of state of a replica, laid out by the layout (Float32Array of layout.total). */
export interface EngineState {
  params: Float32Array;
  m: Float32Array;
  v: Float32Array;
  phi: Float32Array;
  outerM: Float32Array;
  /** Optimizer steps taken (the LR schedule's position). */
  step: number;
}

export interface OuterHyper { alpha: number; beta: number; gamma: number }

export interface StepStats { losses: number[]; gradNorms: number[] }

const COPY = () => GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ;

export class GpuEngine {
  readonly kernels: Kernels;
  readonly state: GpuState;
  readonly model: GpuGPT;
  readonly optim: OptimDispatches;
  readonly readEvery: number;
  /** Optimizer steps taken; mirrors StepState.step on the GPU. */
  step = 0;
  private readonly hist: GPUBuffer;
  private readonly evalAcc: GPUBuffer;
  private readonly stepList: Dispatch[];
  /** A step without the update: forward, loss, backward (enqueueStep(batch, false)). */
  private readonly gradList: Dispatch[];
  private readonly staging: GPUBuffer[] = [];
  private readonly freeStaging: GPUBuffer[] = [];
  private destroyed = false;
  /** The step counter when the last enqueueStep ran: its loss is in ring slot lossSlot mod readEvery. */
  private lossSlot = 0;
  /** The loss scale a fresh state starts from: 1, or with `half` the configured starting scale. */
  private readonly initialLossScale: number;

  constructor(readonly device: GPUDevice, readonly opts: EngineOptions) {
    const { layout, B, T } = opts;
    const tuning = opts.tuning ?? DEFAULT_TUNING;
    this.readEvery = opts.readEvery ?? 10;
    if (!Number.isInteger(this.readEvery) || this.readEvery < 1) throw new RangeError(`readEvery must be a positive integer, got ${this.readEvery}`);
    // Fail before allocating anything if this device cannot hold the model.
    checkDeviceLimits(device.limits, requirements(layout, B, T, tuning).needs);
    this.initialLossScale = opts.half ? opts.lossScale ?? 2 ** 16 : 1;
    const growthInterval = opts.half ? opts.growthInterval ?? 2000 : 0;
    if (!(this.initialLossScale > 0 && Number.isFinite(this.initialLossScale))) throw new RangeError(`lossScale must be a positive finite number, got ${opts.lossScale}`);
    if (opts.half && !(Number.isInteger(growthInterval) && growthInterval >= 1)) throw new RangeError(`growthInterval must be a positive integer, got ${opts.growthInterval}`);
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    this.kernels = new Kernels(device, tuning, { half: opts.half });
    this.hist = device.createBuffer({ label: 'GpuEngine.hist', size: this.readEvery * 8, usage });
    this.evalAcc = device.createBuffer({ label: 'GpuEngine.evalAcc', size: 16, usage });
    let state: GpuState | undefined, model: GpuGPT | undefined;
    try {
      this.state = state = new GpuState(device, layout);
      this.model = model = new GpuGPT(this.kernels, layout, state, B, T);
      this.optim = buildOptim(this.kernels, state, model.losses, model.N, this.hist, this.readEvery, this.evalAcc, opts.train, growthInterval);
      state.writeStepState(0, this.initialLossScale);
    } catch (e) {
      // Free what was made before the failure: a half-built engine holds no GPU memory.
      model?.destroy();
      state?.destroy();
      this.kernels.destroy();
      this.hist.destroy();
      this.evalAcc.destroy();
      throw e;
    }
    this.gradList = [...model.forward, this.optim.lossTrain, ...model.backward];
    this.stepList = [...this.gradList, ...this.optim.update];
  }

  /** Bytes of GPU memory allocated: the seven state buffers plus activations. */
  get gpuBytes(): number {
    return 7 * this.state.bytes + activationBytes(this.opts.layout, this.opts.B, this.opts.T).total;
  }

  /** Kernel launches in one training step. */
  get dispatchesPerStep(): number {
    return this.stepList.length;
  }

  /** The dispatches of one training step, in order (for profilers; replaying them trains). */
  get stepDispatches(): readonly Dispatch[] {
    return this.stepList;
  }

  /** Writes every kind of state (and the step counter) to the GPU. */
  writeState(s: EngineState): void {
    const total = this.opts.layout.total;
    for (const [name, a] of Object.entries({ params: s.params, m: s.m, v: s.v, phi: s.phi, outerM: s.outerM })) {
      if (a.length !== total) throw new RangeError(`state.${name} has ${a.length} floats; this model's layout needs ${total}`);
    }
    if (!Number.isInteger(s.step) || s.step < 0) throw new RangeError(`state.step must be a non-negative integer, got ${s.step}`);
    const q = this.device.queue;
    writeArray(q, this.state.params, s.params);
    writeArray(q, this.state.m, s.m);
    writeArray(q, this.state.v, s.v);
    writeArray(q, this.state.phi, s.phi);
    writeArray(q, this.state.outerM, s.outerM);
    this.state.writeStepState(s.step, this.initialLossScale);
    this.step = s.step;
  }

  /** The loss scale and the steps skipped so far (f16 operands; without them, 1 and 0). */
  async lossScaling(): Promise<LossScaling> {
    this.assertLive();
    const [st] = await this.readBuffers([this.state.stepState], STEP_STATE_WORDS);
    return { lossScale: st[STEP_STATE_LOSS_SCALE], skipped: new Uint32Array(st.buffer)[STEP_STATE_SKIPPED] };
  }

  /** Reads every kind of state back (for checkpoints and tests). */
  async readState(): Promise<EngineState> {
    const [params, m, v, phi, outerM] = await this.readBuffers([this.state.params, this.state.m, this.state.v, this.state.phi, this.state.outerM]);
    return { params, m, v, phi, outerM, step: this.step };
  }

  /**
   * Runs `steps` training steps on batches from `next`; one submit each. Returns every step's
   * loss and pre-clip gradient norm, read back asynchronously every `readEvery` steps.
   */
  async train(steps: number, next: () => Batch): Promise<StepStats> {
    this.assertLive();
    if (!Number.isInteger(steps) || steps < 0) throw new RangeError(`steps must be a non-negative integer, got ${steps}`);
    const losses = new Array<number>(steps), gradNorms = new Array<number>(steps);
    const pending: Promise<void>[] = [];
    const cap = this.readEvery;
    let chunkStart = 0;
    for (let s = 0; s < steps; s++) {
      const batch = next();
      this.model.writeBatch(batch.tokens, batch.targets);
      const enc = this.device.createCommandEncoder({ label: 'GpuEngine.step' });
      this.encodeStep(enc, this.stepList);
      const chunkEnd = s + 1 - chunkStart === cap || s === steps - 1;
      let staging: GPUBuffer | undefined;
      if (chunkEnd) {
        staging = this.takeStaging(cap * 8);
        enc.copyBufferToBuffer(this.hist, 0, staging, 0, cap * 8);
      }
      this.device.queue.submit([enc.finish()]);
      this.step++;
      if (staging) {
        const first = chunkStart, count = s + 1 - chunkStart, firstGlobal = this.step - count, buf = staging;
        const read = buf.mapAsync(GPUMapMode.READ).then(() => {
          const h = new Float32Array(buf.getMappedRange(0, cap * 8));
          for (let i = 0; i < count; i++) {
            const slot = (firstGlobal + i) % cap;
            losses[first + i] = h[2 * slot];
            gradNorms[first + i] = h[2 * slot + 1];
          }
          buf.unmap();
          this.freeStaging.push(buf);
        });
        // Marked handled now: if the device is lost, every pending read rejects, and only the
        // one being awaited reports it (the caller rebuilds; the rest are moot).
        read.catch(() => {});
        pending.push(read);
        chunkStart = s + 1;
        // At most two chunks in flight: the CPU never runs far ahead of the GPU.
        if (pending.length >= 2) await pending.shift();
      }
    }
    await Promise.all(pending);
    return { losses, gradNorms };
  }

  /** Mean loss over `batches` (forward only; parameters untouched). */
  async evaluate(batches: readonly Batch[]): Promise<number> {
    this.assertLive();
    if (batches.length === 0) throw new RangeError('evaluate needs at least one batch');
    for (let i = 0; i < batches.length; i++) {
      const b = batches[i];
      if (b.B !== this.opts.B || b.T !== this.opts.T) {
        throw new RangeError(`evaluation batch ${i} is (B=${b.B}, T=${b.T}); this engine runs (B=${this.opts.B}, T=${this.opts.T})`);
      }
      this.model.writeBatch(b.tokens, b.targets);
      const enc = this.device.createCommandEncoder({ label: 'GpuEngine.evaluate' });
      if (i === 0) enc.clearBuffer(this.evalAcc);
      const pass = enc.beginComputePass({ label: 'GpuEngine.evaluate.pass' });
      encodeDispatches(pass, [...this.model.evalForward, this.optim.lossEval]);
      pass.end();
      this.device.queue.submit([enc.finish()]);
    }
    const [acc] = await this.readBuffers([this.evalAcc], 1);
    return acc[0] / batches.length;
  }

  /**
   * The probe (docs/design.md section 6.1): the loss of each candidate weight set on each batch,
   * [candidate][batch]. θ waits meanwhile in the partners' φ buffer, free between outer steps (a
   * pair step writes it before use, a solo step never reads it), and is copied back after, so
   * training state is unchanged and no extra buffer is needed.
   */
  async probeLosses(candidates: readonly Float32Array[], batches: readonly Batch[]): Promise<number[][]> {
    this.assertLive();
    const total = this.opts.layout.total;
    candidates.forEach((c, i) => {
      if (c.length !== total) throw new RangeError(`probe candidate ${i} has ${c.length} floats; this model's layout needs ${total}`);
    });
    const copy = (from: GPUBuffer, to: GPUBuffer, label: string) => {
      const enc = this.device.createCommandEncoder({ label });
      enc.copyBufferToBuffer(from, 0, to, 0, total * 4);
      this.device.queue.submit([enc.finish()]);
    };
    copy(this.state.params, this.state.partnerPhi, 'GpuEngine.probe.keepTheta');
    try {
      const out: number[][] = [];
      for (const c of candidates) {
        writeArray(this.device.queue, this.state.params, c);
        const losses: number[] = [];
        for (const b of batches) losses.push(await this.evaluate([b]));
        out.push(losses);
      }
      return out;
    } finally {
      copy(this.state.partnerPhi, this.state.params, 'GpuEngine.probe.restoreTheta');
    }
  }

  /** φ and Δ = θ - φ: what this replica sends its partner at an outer step. */
  async outerPayload(): Promise<{ phi: Float32Array; delta: Float32Array }> {
    this.assertLive();
    const enc = this.device.createCommandEncoder({ label: 'GpuEngine.outerPayload' });
    const pass = enc.beginComputePass({ label: 'GpuEngine.outerPayload.pass' });
    encodeDispatches(pass, [this.optim.outerDelta]);
    pass.end();
    this.device.queue.submit([enc.finish()]);
    const [phi, delta] = await this.readBuffers([this.state.phi, this.state.grads]);
    return { phi, delta };
  }

  /**
   * The outer step with `partners`' payloads (none: a solo step). Several partners are summed
   * here, so the kernel always sees one φ sum and one Δ sum. Returns the new φ and outer
   * momentum (the "last outer state" a lost device is rebuilt from).
   */
  async applyOuter(partners: readonly { phi: Float32Array; delta: Float32Array }[], h: OuterHyper): Promise<{ phi: Float32Array; outerM: Float32Array }> {
    this.assertLive();
    const total = this.opts.layout.total;
    partners.forEach((p, i) => {
      if (p.phi.length !== total || p.delta.length !== total) {
        throw new RangeError(`partner payload ${i} has phi ${p.phi.length} / delta ${p.delta.length} floats; this model's layout needs ${total}`);
      }
    });
    const q = this.device.queue;
    if (partners.length > 0) {
      const sum = (key: 'phi' | 'delta') => {
        if (partners.length === 1) return partners[0][key];
        const out = new Float32Array(total);
        for (const p of partners) { const a = p[key]; for (let i = 0; i < total; i++) out[i] += a[i]; }
        return out;
      };
      writeArray(q, this.state.partnerPhi, sum('phi'));
      writeArray(q, this.state.grads, sum('delta'));
    }
    q.writeBuffer(this.optim.outerUniform, 0, outerUniformData(total, partners.length, h.alpha, h.beta, h.gamma));
    const enc = this.device.createCommandEncoder({ label: 'GpuEngine.applyOuter' });
    const pass = enc.beginComputePass({ label: 'GpuEngine.applyOuter.pass' });
    encodeDispatches(pass, [this.optim.outerApply]);
    pass.end();
    q.submit([enc.finish()]);
    const [phi, outerM] = await this.readBuffers([this.state.phi, this.state.outerM]);
    return { phi, outerM };
  }

  // ---- step by step: the simulator's GPU replicas (src/sim/gpu-learner.ts) -----------------
  // Nothing here waits for the GPU: steps are queued, and the queue keeps writes and submits in
  // order, so a rate or a batch written before a step is the one that step uses.

  /** Later steps use `lr` (0 included) instead of the schedule; null goes back to the schedule. */
  setFixedLr(lr: number | null): void {
    this.assertLive();
    if (lr !== null && !(lr >= 0 && Number.isFinite(lr))) throw new RangeError(`fixed learning rate must be a finite number >= 0, got ${lr}`);
    this.device.queue.writeBuffer(this.optim.hyper, HYPER_FIXED_LR_OFFSET, new Float32Array([lr ?? NO_FIXED_LR]));
  }

  /**
   * Queues one step on `batch`: forward, loss, backward and, unless `update` is false, clip and
   * AdamW. Without the update the gradient stays in the gradient buffer for enqueueUpdate.
   */
  enqueueStep(batch: Batch, update = true): void {
    this.assertLive();
    const { B, T } = this.opts;
    if (batch.B !== B || batch.T !== T) throw new RangeError(`batch is (B=${batch.B}, T=${batch.T}); this engine runs (B=${B}, T=${T})`);
    this.model.writeBatch(batch.tokens, batch.targets);
    const enc = this.device.createCommandEncoder({ label: 'GpuEngine.enqueueStep' });
    this.encodeStep(enc, update ? this.stepList : this.gradList);
    this.device.queue.submit([enc.finish()]);
    this.lossSlot = this.step; // lossTrain writes ring slot (counter before the update) mod cap
    if (update) this.step++;
  }

  /** Queues clip and AdamW with the gradient buffer as it is, or with `grads` written to it first. */
  enqueueUpdate(grads?: Float32Array): void {
    this.assertLive();
    const total = this.opts.layout.total;
    if (grads) {
      if (grads.length !== total) throw new RangeError(`gradient has ${grads.length} floats; this model's layout needs ${total}`);
      writeArray(this.device.queue, this.state.grads, grads);
    }
    const enc = this.device.createCommandEncoder({ label: 'GpuEngine.enqueueUpdate' });
    const pass = enc.beginComputePass({ label: 'GpuEngine.enqueueUpdate.pass' });
    encodeDispatches(pass, this.optim.update);
    pass.end();
    this.device.queue.submit([enc.finish()]);
    this.step++;
  }

  /** Writes θ only (the other state stays). */
  writeParams(params: Float32Array): void {
    this.assertLive();
    const total = this.opts.layout.total;
    if (params.length !== total) throw new RangeError(`params have ${params.length} floats; this model's layout needs ${total}`);
    writeArray(this.device.queue, this.state.params, params);
  }

  /** Sets the optimizer step counter (AdamW's t and the schedule's position). */
  setStep(step: number): void {
    this.assertLive();
    if (!Number.isInteger(step) || step < 0) throw new RangeError(`step must be a non-negative integer, got ${step}`);
    this.state.writeStepState(step, this.initialLossScale);
    this.step = step;
  }

  /** Copies θ, the AdamW moments and the step counter from another engine on the same device. */
  copyTrainingStateFrom(other: GpuEngine): void {
    this.assertLive();
    other.assertLive();
    if (other.device !== this.device) throw new Error('GpuEngine.copyTrainingStateFrom: the engines are on different devices');
    if (other.state.bytes !== this.state.bytes) throw new RangeError(`GpuEngine.copyTrainingStateFrom: state of ${other.state.bytes} bytes into ${this.state.bytes}`);
    const enc = this.device.createCommandEncoder({ label: 'GpuEngine.copyTrainingStateFrom' });
    for (const k of ['params', 'm', 'v', 'stepState'] as const) enc.copyBufferToBuffer(other.state[k], 0, this.state[k], 0, this.state[k].size);
    this.device.queue.submit([enc.finish()]);
    this.step = other.step;
  }

  /** θ, the loss of the last queued step and, if asked, the gradient buffer, read back together. */
  async readTraining(withGrads: boolean): Promise<{ params: Float32Array; grads: Float32Array | null; loss: number }> {
    this.assertLive();
    const cap = this.readEvery;
    const [[params, grads], [hist]] = await Promise.all([
      this.readBuffers(withGrads ? [this.state.params, this.state.grads] : [this.state.params]),
      this.readBuffers([this.hist], 2 * cap),
    ]);
    return { params, grads: grads ?? null, loss: hist[2 * (this.lossSlot % cap)] };
  }

  /** Clears the gradient and residual-gradient buffers and records `list` in one compute pass. */
  private encodeStep(enc: GPUCommandEncoder, list: readonly Dispatch[]): void {
    enc.clearBuffer(this.state.grads);
    enc.clearBuffer(this.model.dres);
    const pass = enc.beginComputePass({ label: `${enc.label}.pass` });
    encodeDispatches(pass, list);
    pass.end();
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.model.destroy();
    this.state.destroy();
    this.kernels.destroy();
    for (const b of [this.hist, this.evalAcc, ...this.optim.owned, ...this.staging]) b.destroy();
  }

  private assertLive(): void {
    if (this.destroyed) throw new Error('GpuEngine: used after destroy()');
  }

  private takeStaging(bytes: number): GPUBuffer {
    const b = this.freeStaging.pop();
    if (b) return b;
    const nb = this.device.createBuffer({ label: `GpuEngine.staging[${this.staging.length}]`, size: bytes, usage: COPY() });
    this.staging.push(nb);
    return nb;
  }

  /** Copies each buffer's first `floats` floats (default: the layout's total) out, in one submit. */
  private async readBuffers(bufs: GPUBuffer[], floats = this.opts.layout.total): Promise<Float32Array[]> {
    const bytes = Math.ceil(floats / 4) * 16;
    const enc = this.device.createCommandEncoder({ label: 'GpuEngine.read' });
    const outs = bufs.map((b) => {
      const s = this.device.createBuffer({ label: `GpuEngine.read.${b.label}`, size: bytes, usage: COPY() });
      enc.copyBufferToBuffer(b, 0, s, 0, Math.min(bytes, b.size));
      return s;
    });
    this.device.queue.submit([enc.finish()]);
    try {
      return await Promise.all(outs.map(async (s) => {
        await s.mapAsync(GPUMapMode.READ);
        return new Float32Array(s.getMappedRange().slice(0, floats * 4));
      }));
    } finally {
      for (const s of outs) s.destroy();
    }
  }
}
