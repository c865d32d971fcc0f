// What an uploaded state must be before it becomes a checkpoint (docs/design.md section 6).
// A peer's upload is a claim: its φ may be garbage, its counters anything the frame schema
// allows, its val_loss a number it made up. So the coordinator checks it itself:
//   1. layout and run: the run's float count, the run's id;                      (400, request kept)
//   2. every float finite;                                                       (400, request kept)
//   3. counters: step and round within MAX_STATE_COUNTER, round <= step + 1, and the step no
//      further than this peer could have trained since it joined (report-bounds.ts);
//   4. the validation loss MEASURED here, on the run's held-out windows with the CPU reference
//      model in a worker thread, finite and at most STATE_LOSS_MARGIN above the newest accepted
//      checkpoint's (maxStateLoss).
// 3 and 4 judge the peer: the request is used up and a `checkpoint-failed` event names why.
// Only a state that passed all four is stored, with the measured loss, never the claimed one.
import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import type { RunInfo } from '../src/protocol/messages.ts';
import { maxStateLoss, stateCounterError, type StateFrame } from '../src/protocol/state-frame.ts';
import { buildLayout } from '../src/model/layout.ts';
import type { DatasetSource } from './datasets.ts';
import type { EvalReply, EvalRequest } from './checkpoint-eval-worker.ts';

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

/** Check 4 on a measured loss: null when acceptable against the newest accepted checkpoint. */
export function measuredLossError(loss: number, newest: number | null, vocab: number): string | null {
  if (!Number.isFinite(loss)) return `the coordinator measured a validation loss of ${loss}`;
  const max = maxStateLoss(newest, vocab);
  if (loss > max) {
    return `the coordinator measured a validation loss of ${loss.toFixed(4)}, above the bound ${max.toFixed(4)} (${newest === null ? 'no accepted checkpoint yet: ln(vocab)' : `newest accepted checkpoint ${newest.toFixed(4)}`} + margin)`;
  }
  return null;
}

export class EvaluatorBusyError extends Error {
  override name = 'EvaluatorBusyError';
}

/**
 * Measures validation losses in a worker thread, one at a time for the whole coordinator: an
 * evaluation of a `tiny` state takes seconds of one core (bench/checkpoint.ts), so a second
 * upload while one is measured is refused (EvaluatorBusyError) rather than queued.
 */
export class CheckpointEvaluator {
  private running: Worker | null = null;
  private closed = false;
  /** run -> its validation tokens, read once (the dataset's files are content-addressed). */
  private readonly valCache = new Map<string, { sha: string; tokens: Uint8Array }>();
  /** Evaluations done and the wall time of the last (for logs and the benchmark). */
  readonly stats = { evaluations: 0, refused: 0, lastMs: 0 };

  constructor(private readonly datasets: DatasetSource) {}

  get busy(): boolean {
    return this.running !== null;
  }

  /** The run's held-out tokens, as volunteers download them. */
  valTokens(run: RunInfo): Uint8Array {
    const m = this.datasets.manifest(run.dataset);
    const f = m?.files.find((x) => x.role === 'val');
    if (!m || !f) throw new Error(`run ${run.id}: dataset ${run.dataset} has no validation file to measure on`);
    const hit = this.valCache.get(run.id);
    if (hit && hit.sha === f.sha256) return hit.tokens;
    const b = readFileSync(this.datasets.filePath(run.dataset, f.name));
    const tokens = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
    this.valCache.set(run.id, { sha: f.sha256, tokens });
    return tokens;
  }

  /** Mean validation loss of `phi` for `run`, measured in a worker thread. */
  async measure(run: RunInfo, phi: Float32Array): Promise<number> {
    if (this.closed) throw new Error('the coordinator is closing');
    if (this.running) {
      this.stats.refused++;
      throw new EvaluatorBusyError('the coordinator is measuring another checkpoint; this upload is not evaluated (the next scheduled request will ask again)');
    }
    // Copies the worker owns (transferred, not cloned a second time).
    const val = new Uint8Array(this.valTokens(run)), copy = new Float32Array(phi);
    const req: EvalRequest = { model: run.model, train: { batch: run.train.batch, seqLen: run.train.seqLen }, val, phi: copy };
    const w = new Worker(new URL('./checkpoint-eval-worker.ts', import.meta.url), {
      workerData: { murmurEval: true },
      execArgv: ['--import', new URL('../scripts/node-register.mjs', import.meta.url).href],
    });
    this.running = w;
    try {
      const reply = await new Promise<EvalReply>((resolve, reject) => {
        w.once('message', resolve);
        w.once('error', reject);
        w.once('exit', (code) => reject(new Error(`the evaluation worker exited with code ${code} before answering`)));
        w.postMessage(req, [val.buffer, copy.buffer]);
      });
      if (!reply.ok) throw new Error(`evaluation failed: ${reply.error}`);
      this.stats.evaluations++;
      this.stats.lastMs = reply.ms;
      return reply.loss;
    } finally {
      this.running = null;
      void w.terminate();
    }
  }

  /** Stops an evaluation in progress (its upload then fails); later calls are refused. */
  async close(): Promise<void> {
    this.closed = true;
    await this.running?.terminate();
  }
}
