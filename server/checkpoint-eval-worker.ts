// The coordinator's own measurement of an uploaded state (server/checkpoint-validate.ts), in a
// worker thread so the event loop keeps serving peers: the mean loss of φ on the run's fixed
// validation windows (src/data/sampler.ts runValidationBatches), with the CPU reference model.
import { parentPort, workerData } from 'node:worker_threads';
import { runValidationBatches } from '../src/data/sampler.ts';
import type { ModelConfig } from '../src/model/config.ts';
import { buildLayout } from '../src/model/layout.ts';
import { ReferenceGPT } from '../src/model/reference.ts';

export interface EvalRequest {
  model: ModelConfig;
  train: { batch: number; seqLen: number };
  /** The run's held-out tokens (one byte per token). */
  val: Uint8Array;
  phi: Float32Array;
}

export type EvalReply = { ok: true; loss: number; ms: number } | { ok: false; error: string };

/** Mean validation loss of `phi`: every batch has B×T tokens, so the mean of batch means. */
export function measureValLoss(r: EvalRequest): number {
  const layout = buildLayout(r.model);
  if (r.phi.length !== layout.total) throw new Error(`φ has ${r.phi.length} floats; the model needs ${layout.total}`);
  const batches = runValidationBatches(r.val, r.train);
  const ref = new ReferenceGPT(layout, 'f32');
  let sum = 0;
  for (const b of batches) sum += ref.forward(r.phi, b);
  return sum / batches.length;
}

// Only in the worker the evaluator starts (a test runner's own thread must not answer).
if (parentPort && (workerData as { murmurEval?: boolean } | null)?.murmurEval) parentPort.once('message', (r: EvalRequest) => {
  const t0 = performance.now();
  let reply: EvalReply;
  try {
    reply = { ok: true, loss: measureValLoss(r), ms: performance.now() - t0 };
  } catch (err) {
    reply = { ok: false, error: (err as Error).message };
  }
  parentPort!.postMessage(reply);
});
