// What an uploaded state must be before it becomes a checkpoint (docs/design.md section 6).
// A peer's upload is a claim: its φ may be garbage, its counters anything the frame schema
// allows, its val_loss a number it made up. So the coordinator checks it itself:
//   1. layout and run: the run's float count, the run's id;                      (400, request kept)
//   2. every float finite;                                                       (400, request kept)
//   3. counters: step and round within MAX_STATE_COUNTER, round <= step + 1, and the step no
//      further than this peer could have trained since it joined (report-bounds.ts); and the
//      momentum's norm at most MAX_MOMENTUM_RATIO times φ's (stateMomentumError), before any
//      measurement: a good φ with a huge momentum passes 4 and ruins whoever adopts it;
//   4. the validation loss MEASURED here, on windows of the validation text drawn from a seed only
//      the coordinator knows, as many as the run's state check windows (src/data/sampler.ts
//      privateCheckBatches), with the CPU reference model in worker threads, finite and at most
//      STATE_LOSS_MARGIN above the newest accepted checkpoint's (maxStateLoss). Not the run's
//      own check windows: those are public, and a state fitted to them alone became the bound.
//   5. the loss MEASURED on as many windows of the training text, drawn from the same secret seed,
//      at most MAX_TRAIN_VAL_GAP above the validation loss (uploadMemorisedError): the validation text
//      is public too, and a state fitted to all of it passes 4 on any windows of it.
// 3 to 5 judge the peer: the request is used up and a `checkpoint-failed` event names why.
// Only a state that passed all five is stored, with the measured loss, never the claimed one.
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import type { RunInfo } from '../src/protocol/messages.ts';
import { maxStateLoss, stateCounterError, stateMomentumError, type StateFrame } from '../src/protocol/state-frame.ts';
import { memorisedError, type StateLosses } from '../src/protocol/memorised.ts';
import { Rng } from '../src/model/rng.ts';
import { buildLayout } from '../src/model/layout.ts';
import type { DatasetSource } from './datasets.ts';
import { RUN_VAL_BATCHES, randomSeed, stateCheckBatchCount } from '../src/data/sampler.ts';
import { meanLoss, type EvalReply, type EvalRequest, type EvalSlice } from './checkpoint-eval-worker.ts';
import { cpuBudget } from './cpu-budget.ts';

/** Checks 1 and 2: null when the frame fits the run and holds only finite floats. */
export function uploadShapeError(run: RunInfo, frame: StateFrame): string | null {
  const total = buildLayout(run.model).total;
  if (frame.meta.runId !== run.id) return `state is for run ${frame.meta.runId}, the request was for ${run.id}`;
  if (frame.meta.floats !== total) return `state has ${frame.meta.floats} floats; run ${run.id} (${run.preset}) needs ${total}`;
  for (const [name, a] of [['φ', frame.phi], ['momentum', frame.momentum]] as const) {
    for (let i = 0; i < a.length; i++) {
      if (!Number.isFinite(a[i]!)) return `state holds a non-finite value in ${name} at float ${i}; not saved`;
    }
  }
  return null;
}

/** Check 3: null when the counters could be true of this peer; `maxStep` from report-bounds. */
export function uploadCounterError(frame: StateFrame, maxStep: number): string | null {
  const bad = stateCounterError(frame.meta);
  if (bad) return `counters: ${bad}`;
  if (frame.meta.step > maxStep) return `counters: step ${frame.meta.step} is more than this peer could have trained (at most ${maxStep})`;
  return null;
}

/** Check 3 on the momentum: null when no larger against φ than an honest replica's can be. */
export function uploadMomentumError(frame: StateFrame): string | null {
  const bad = stateMomentumError(frame.phi, frame.momentum);
  return bad && `momentum: ${bad}`;
}

/** Check 4 on a measured loss: null when acceptable against the newest accepted checkpoint. */
export function measuredLossError(loss: number, newest: number | null, vocab: number): string | null {
  if (!Number.isFinite(loss)) return `the coordinator measured a validation loss of ${loss}`;
  const max = maxStateLoss(newest, vocab);
  if (loss > max) {
    return `the coordinator measured a validation loss of ${loss.toFixed(4)}, above the bound ${max.toFixed(4)} (${newest === null ? 'no accepted checkpoint yet: ln(vocab)' : `newest accepted checkpoint ${newest.toFixed(4)}`} + margin)`;
  }
  return null;
}

/** The coordinator's memorisation check (check 5): memorisedError, said as its measurement. */
export function uploadMemorisedError(m: StateLosses): string | null {
  const bad = memorisedError(m);
  return bad && `the coordinator ${bad}`;
}

/**
 * `count` windows of T+1 tokens from the run's training files, drawn from `seed` uniformly over
 * every start in every file, read straight from disk (a dataset's training text may be far
 * larger than memory should hold for this), end to end (packedWindows).
 */
export function drawTrainWindows(files: { path: string; bytes: number }[], count: number, T: number, seed: number): Uint8Array {
  const usable = files.filter((f) => f.bytes >= T + 1);
  const starts = usable.reduce((a, f) => a + (f.bytes - T), 0);
  if (starts === 0) throw new Error(`no training file holds a window of ${T + 1} tokens`);
  const rng = new Rng(seed, 1);
  const out = new Uint8Array(new SharedArrayBuffer(count * (T + 1)));
  const fds = new Map<string, number>();
  try {
    for (let w = 0; w < count; w++) {
      let at = Math.floor(rng.uniform() * starts);
      const f = usable.find((x) => (at < x.bytes - T ? true : ((at -= x.bytes - T), false)))!;
      let fd = fds.get(f.path);
      if (fd === undefined) fds.set(f.path, (fd = openSync(f.path, 'r')));
      const dst = out.subarray(w * (T + 1), (w + 1) * (T + 1));
      if (readSync(fd, dst, 0, T + 1, at) !== T + 1) throw new Error(`training file ${f.path} is shorter than its manifest says`);
    }
  } finally {
    for (const fd of fds.values()) closeSync(fd);
  }
  return out;
}

export class EvaluatorBusyError extends Error {
  override name = 'EvaluatorBusyError';
}

/** Floats copied between yields to the event loop (16 MiB, a few ms). */
const COPY_SLICE = 4 << 20;

/** dst.set(src) in slices that yield to the event loop between them. */
async function copyYielding(dst: Float32Array, src: Float32Array): Promise<void> {
  for (let off = 0; off < src.length; off += COPY_SLICE) {
    if (off > 0) await new Promise<void>((r) => setImmediate(r));
    dst.set(src.subarray(off, off + COPY_SLICE), off);
  }
}

/**
 * Worker threads for one evaluation by default: every CPU the process may use but one (for the
 * event loop), at most 8; `cpus` is cpuBudget() (cores, at most a container's CPU quota).
 */
export function defaultEvalThreads(cpus = cpuBudget()): number {
  return Math.max(1, Math.min(8, cpus - 1));
}

export interface EvaluatorOptions {
  /** Worker threads an evaluation is split across (default defaultEvalThreads()). */
  threads?: number;
  /** The seed of each measurement's windows (default randomSeed: secret, fresh each time); tests fix it. */
  windowSeed?: () => number;
}

/**
 * Measures validation losses in worker threads, one evaluation at a time for the whole
 * coordinator, split by sequence across `threads` workers (checkpoint-eval-worker.ts). It
 * measures the run's state check windows (stateCheckBatchCount: all four validation batches of
 * `micro` and `tiny`, one of `small` and `base`), seconds to a minute or two of the CPUs
 * (bench/checkpoint.ts); a second upload while one is measured is refused (EvaluatorBusyError)
 * rather than queued. φ and the validation tokens go to the workers in shared memory, once.
 */
export class CheckpointEvaluator {
  private running: Worker[] | null = null;
  private isClosed = false;
  readonly threads: number;
  private readonly windowSeed: () => number;
  /** run -> its validation tokens in shared memory, read once (the dataset's files are content-addressed). */
  private readonly valCache = new Map<string, { sha: string; tokens: Uint8Array }>();
  /** Evaluations done and the wall time of the last (for logs and the benchmark). */
  readonly stats = { evaluations: 0, refused: 0, lastMs: 0, lastThreads: 0, lastSequences: 0 };

  constructor(private readonly datasets: DatasetSource, opts: EvaluatorOptions = {}) {
    const threads = opts.threads ?? defaultEvalThreads();
    if (!(Number.isInteger(threads) && threads >= 1 && threads <= 256)) throw new RangeError(`evaluation threads must be an integer in [1, 256], got ${threads}`);
    this.threads = threads;
    this.windowSeed = opts.windowSeed ?? randomSeed;
  }

  get busy(): boolean {
    return this.running !== null;
  }

  /** Whether close() was called: every later measure() is refused. */
  get closed(): boolean {
    return this.isClosed;
  }

  /** The run's held-out tokens, as volunteers download them (in shared memory). */
  valTokens(run: RunInfo): Uint8Array {
    const m = this.datasets.manifest(run.dataset);
    const f = m?.files.find((x) => x.role === 'val');
    if (!m || !f) throw new Error(`run ${run.id}: dataset ${run.dataset} has no validation file to measure on`);
    const hit = this.valCache.get(run.id);
    if (hit && hit.sha === f.sha256) return hit.tokens;
    const b = readFileSync(this.datasets.filePath(run.dataset, f.name));
    const tokens = new Uint8Array(new SharedArrayBuffer(b.byteLength));
    tokens.set(b);
    this.valCache.set(run.id, { sha: f.sha256, tokens });
    return tokens;
  }

  /** The run's training files, where the memorisation check reads its windows. */
  private trainFiles(run: RunInfo): { path: string; bytes: number }[] {
    const m = this.datasets.manifest(run.dataset);
    const files = m?.files.filter((x) => x.role === 'train') ?? [];
    if (!m || files.length === 0) throw new Error(`run ${run.id}: dataset ${run.dataset} has no training file to measure on`);
    return files.map((f) => ({ path: this.datasets.filePath(run.dataset, f.name), bytes: f.bytes }));
  }

  /**
   * Mean loss of `phi` for `run` on as many validation windows as its state check has, drawn
   * from `seed` (privateCheckBatches), and on as many windows of the training text drawn from
   * the same seed (drawTrainWindows), measured in worker threads; `batches` overrides how many
   * batches of them (the benchmark's "before").
   */
  async measure(run: RunInfo, phi: Float32Array, batches = stateCheckBatchCount(run.model, run.train), seed = this.windowSeed()): Promise<StateLosses> {
    if (this.isClosed) throw new Error('the coordinator is closing');
    if (this.running) {
      this.stats.refused++;
      throw new EvaluatorBusyError('the coordinator is measuring another checkpoint; this upload is not evaluated (the next scheduled request will ask again)');
    }
    if (!(Number.isInteger(batches) && batches >= 1 && batches <= RUN_VAL_BATCHES)) throw new RangeError(`validation batches must be an integer in [1, ${RUN_VAL_BATCHES}], got ${batches}`);
    const t0 = performance.now();
    const train = { batch: run.train.batch, seqLen: run.train.seqLen };
    const valSequences = batches * train.batch;
    const sequences = 2 * valSequences;
    const k = Math.min(this.threads, sequences);
    const workers: Worker[] = [];
    this.running = workers;
    try {
      const val = this.valTokens(run);
      const trainWindows = drawTrainWindows(this.trainFiles(run), valSequences, train.seqLen, seed);
      // A copy the workers share (the caller's array is the upload's, and may be reused), made in
      // slices: a whole `base` φ (184 MiB) in one go held the event loop for 80 ms or more.
      const shared = new Float32Array(new SharedArrayBuffer(phi.byteLength));
      await copyYielding(shared, phi);
      if (this.isClosed) throw new Error('the coordinator is closing');
      const req: EvalRequest = { model: run.model, train, val, phi: shared, batches, seed, trainWindows };
      const parts: Promise<number[]>[] = [];
      for (let i = 0; i < k; i++) {
        const from = Math.floor((i * sequences) / k), to = Math.floor(((i + 1) * sequences) / k);
        const w = new Worker(new URL('./checkpoint-eval-worker.ts', import.meta.url), {
          workerData: { murmurEval: true },
          execArgv: ['--import', new URL('../scripts/node-register.mjs', import.meta.url).href],
        });
        workers.push(w);
        const part = new Promise<number[]>((resolve, reject) => {
          w.once('message', (reply: EvalReply) => (reply.ok ? resolve(reply.losses) : reject(new Error(`evaluation failed: ${reply.error}`))));
          w.once('error', reject);
          w.once('exit', (code) => reject(new Error(`the evaluation worker exited with code ${code} before answering`)));
          const slice: EvalSlice = { ...req, from, to };
          w.postMessage(slice);
        });
        // Handled now: if a later Worker cannot start, the ones already started are terminated
        // below and their rejections must not go unhandled (that would end the process).
        part.catch(() => {});
        parts.push(part);
      }
      const losses = (await Promise.all(parts)).flat();
      if (losses.length !== sequences) throw new Error(`evaluation returned ${losses.length} losses for ${sequences} sequences`);
      this.stats.evaluations++;
      this.stats.lastMs = performance.now() - t0;
      this.stats.lastThreads = k;
      this.stats.lastSequences = sequences;
      return { val: meanLoss(losses.slice(0, valSequences)), train: meanLoss(losses.slice(valSequences)) };
    } finally {
      this.running = null;
      for (const w of workers) void w.terminate();
    }
  }

  /** Stops an evaluation in progress (its upload then fails); later calls are refused. */
  async close(): Promise<void> {
    this.isClosed = true;
    await Promise.all((this.running ?? []).map((w) => w.terminate()));
  }
}
