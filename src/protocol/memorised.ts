// The memorisation rule shared by the coordinator (check 5 of an upload, server/checkpoint-validate.ts)
// and a newcomer judging a bootstrap candidate (src/sync/state-check.ts): a state is measured on
// windows of the validation text AND of the training text, and one far better on the first has
// been fitted to it (the validation text is public as a whole).
import { STATE_LOSS_MARGIN } from './state-frame.ts';

/**
 * How far a state's loss on the training text may lie above its loss on the validation text, for
 * the coordinator (check 5 of an upload) and a newcomer alike. Both texts are chapters of one
 * book, so an honest state scores them alike: on `micro` trained 50 to 2,000 steps, train minus
 * validation measured -0.13 to +0.09 over sixteen pairs of windows (a model that overfits its
 * training text only lowers it). A state trained on the public validation text instead opens the
 * gap it fits: 0.31 after 4,000 micro steps, more for a model large enough to learn the text by
 * heart. It needs the gap to do harm: a bound of its validation loss plus STATE_LOSS_MARGIN
 * shuts honest states out only when that loss is more than the margin below theirs while its
 * training loss is no better than theirs. Hence the same figure (docs/design.md section 6).
 */
export const MAX_TRAIN_VAL_GAP = STATE_LOSS_MARGIN;

/** A state's mean loss on windows of each text, as its judge measured them. */
export interface StateLosses {
  val: number;
  train: number;
}

/** The memorisation check: null when the state scores the training text about as well as the validation text. */
export function memorisedError(m: StateLosses): string | null {
  if (!(m.train - m.val > MAX_TRAIN_VAL_GAP)) return null;
  return `measured ${m.train.toFixed(4)} on the training text and ${m.val.toFixed(4)} on the validation text: ${(m.train - m.val).toFixed(4)} apart, more than ${MAX_TRAIN_VAL_GAP} (a state fitted to the public validation text; an honest one scores both alike)`;
}
