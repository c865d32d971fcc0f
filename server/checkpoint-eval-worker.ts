// The coordinator's own measurement of an uploaded state (server/checkpoint-validate.ts), in
// worker threads so the event loop keeps serving peers: the mean loss of φ on the run's state
// check windows (src/data/sampler.ts stateCheckBatches), with the CPU reference model. The
// windows are split by sequence across the workers; each returns its sequences' losses and the
// evaluator takes their mean in window order, so the result is the same for any number of
// workers (measureValLoss, one thread, gives it bit for bit).
import { parentPort, workerData } from 'node:worker_threads';
import type { Batch } from '../src/data/batch.ts';
import { packedWindows, privateCheckBatches, stateCheckBatches } from '../src/data/sampler.ts';
import type { ModelConfig } from '../src/model/config.ts';
import { buildLayout } from '../src/model/layout.ts';
import { ReferenceGPT } from '../src/model/reference.ts';

export interface EvalRequest {
  model: ModelConfig;
  train: { batch: number; seqLen: number };
  /** The run's held-out tokens (one byte per token); the evaluator's are in shared memory. */
  val: Uint8Array;
  /** The state's φ; the evaluator's is in shared memory, which the workers only read. */
  phi: Float32Array;
  /** Validation batches judged (stateCheckBatchCount of the run). */
  batches: number;
  /** The coordinator's secret seed of its own windows (privateCheckBatches); absent, the run's public check windows. */
  seed?: number;
  /**
   * Windows of the TRAINING text (T+1 tokens each, end to end; packedWindows), measured after the
   * validation windows: a state fitted to the public validation text scores far better there
   * than here, an honest one about the same (src/protocol/state-frame.ts memorisedError). Absent: validation only.
   */
  trainWindows?: Uint8Array;
}

/** One worker's share: the losses of sequences [from, to) of the request's windows. */
export interface EvalSlice extends EvalRequest { from: number; to: number }

export type EvalReply = { ok: true; losses: number[]; ms: number } | { ok: false; error: string };

/**
 * The request's windows, one sequence each (views into the batches), in order: the validation
 * windows (batches × batch of them), then the training windows if any.
 */
export function checkSequences(r: EvalRequest): Batch[] {
  const out: Batch[] = [];
  const batches = r.seed === undefined ? stateCheckBatches(r.val, r.model, r.train, r.batches) : privateCheckBatches(r.val, r.model, r.train, r.seed, r.batches);
  for (const b of batches) {
    for (let i = 0; i < b.B; i++) {
      const rows = [i * b.T, (i + 1) * b.T] as const;
      out.push({ B: 1, T: b.T, tokens: b.tokens.subarray(...rows), targets: b.targets.subarray(...rows) });
    }
  }
  if (r.trainWindows) out.push(...packedWindows(r.trainWindows, r.train.seqLen));
  return out;
}

/** Mean next-token loss of each sequence in [from, to) of the request's windows. */
export function sequenceLosses(r: EvalRequest, from: number, to: number): number[] {
  const layout = buildLayout(r.model);
  if (r.phi.length !== layout.total) throw new Error(`φ has ${r.phi.length} floats; the model needs ${layout.total}`);
  const seqs = checkSequences(r);
  if (!(Number.isInteger(from) && Number.isInteger(to) && 0 <= from && from < to && to <= seqs.length)) {
    throw new Error(`sequences [${from}, ${to}) are outside the ${seqs.length} of this check`);
  }
  const ref = new ReferenceGPT(layout, 'f32');
  return seqs.slice(from, to).map((s) => ref.forward(r.phi, s));
}

/** The mean of per-sequence losses, summed in window order (every window has T tokens). */
export function meanLoss(losses: readonly number[]): number {
  let sum = 0;
  for (const l of losses) sum += l;
  return sum / losses.length;
}

/** Mean validation loss of `phi` on the check windows, in this thread. */
export function measureValLoss(r: EvalRequest): number {
  return meanLoss(sequenceLosses(r, 0, r.batches * r.train.batch));
}

// Only in a worker the evaluator starts (a test runner's own thread must not answer).
if (parentPort && (workerData as { murmurEval?: boolean } | null)?.murmurEval) parentPort.once('message', (r: EvalSlice) => {
  const t0 = performance.now();
  let reply: EvalReply;
  try {
    reply = { ok: true, losses: sequenceLosses(r, r.from, r.to), ms: performance.now() - t0 };
  } catch (err) {
    reply = { ok: false, error: (err as Error).message };
  }
  parentPort!.postMessage(reply);
});
