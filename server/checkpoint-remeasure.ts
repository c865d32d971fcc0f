// Checkpoints this coordinator did not measure on their run's state check windows, measured
// again when it starts (docs/design.md section 6). A data dir from before the coordinator
// measured uploads holds checkpoints whose val_loss is the uploading peer's CLAIM; one from
// before the state check windows holds losses measured on other windows. Either figure would be
// the bound every newcomer judges its bootstrap candidates by (maxStateLoss): a claim of 0.01
// makes every honest state look worse than the bound, and newcomers start from scratch. So such
// a checkpoint is not offered (CheckpointStore.current) until this has measured it with the
// coordinator's own evaluator; one whose file does not match its sha256, or that measures no
// better than guessing (above ln(vocab) + margin, or not finite), or far better on the
// validation text than on the training text (uploadMemorisedError), is never offered.
import type { FastifyBaseLogger } from 'fastify';
import { stateCheckBatchCount } from '../src/data/sampler.ts';
import { EvaluatorBusyError, measuredLossError, uploadMemorisedError, type CheckpointEvaluator } from './checkpoint-validate.ts';
import type { StateLosses } from '../src/protocol/memorised.ts';
import { measuredForRun, sameWindows, type CheckpointStore } from './checkpoints.ts';
import type { RunStore } from './runs.ts';

export interface RemeasureDeps {
  runs: RunStore;
  checkpoints: CheckpointStore;
  evaluator: CheckpointEvaluator;
  logger: FastifyBaseLogger;
}

export interface RemeasureResult {
  /** Checkpoints measured and offered from now on. */
  measured: number;
  /** Checkpoints left unoffered: unreadable, or measuring no better than guessing. */
  refused: number;
}

/**
 * Measures every checkpoint of every run that measuredForRun says is not measured, newest first,
 * one at a time through the coordinator's evaluator (waiting `retryMs` while an upload is being
 * measured). Resolves when all are done, or early once the evaluator is closed.
 */
export async function remeasureCheckpoints(d: RemeasureDeps, retryMs = 1000): Promise<RemeasureResult> {
  const out: RemeasureResult = { measured: 0, refused: 0 };
  for (const run of d.runs.list()) {
    for (const info of d.checkpoints.list(run.id).filter((c) => !measuredForRun(c, run))) {
      if (d.evaluator.closed) return out;
      const batches = stateCheckBatchCount(run.model, run.train);
      let loaded;
      try {
        loaded = await d.checkpoints.load(info);
      } catch (err) {
        out.refused++;
        d.logger.warn({ run: run.id, checkpoint: info.id, err: (err as Error).message }, 'checkpoint not offered: it cannot be read to be measured');
        continue;
      }
      let m: StateLosses | null = null;
      while (m === null) {
        try {
          m = await d.evaluator.measure(run, loaded.phi, batches);
        } catch (err) {
          if (d.evaluator.closed) return out;
          if (err instanceof EvaluatorBusyError) { await new Promise((r) => setTimeout(r, retryMs)); continue; }
          // Its run cannot be measured (no validation file, too short a text): this one stays
          // unoffered, and the other runs' checkpoints are still measured.
          out.refused++;
          d.logger.warn({ run: run.id, checkpoint: info.id, err: (err as Error).message }, 'checkpoint not offered: it could not be measured');
          break;
        }
      }
      if (m === null) continue;
      // The coordinator closed meanwhile: nothing to record (the database goes next).
      if (d.evaluator.closed) return out;
      // The run's windows changed meanwhile: this figure is the old windows', and the change
      // queued a pass after this one that measures the checkpoint on the new ones.
      const now = d.runs.get(run.id);
      if (!now || !sameWindows(run, now)) continue;
      const bad = measuredLossError(m.val, null, run.model.vocab) ?? uploadMemorisedError(m);
      if (bad) {
        out.refused++;
        d.logger.warn({ run: run.id, checkpoint: info.id, claimed: info.valLoss, reason: bad }, 'checkpoint not offered: it fails the coordinator\'s measurement');
        continue;
      }
      const loss = m.val;
      // Null: pruned by a newer upload, withdrawn or deleted meanwhile; nothing is left of it.
      if (!await d.checkpoints.remeasured(info, loss, batches, loaded)) continue;
      out.measured++;
      d.logger.info({ run: run.id, checkpoint: info.id, claimed: info.valLoss, valLoss: loss, valBatches: batches }, 'checkpoint measured again');
    }
  }
  return out;
}
