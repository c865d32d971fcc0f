// Deterministic batches for model tests (no dependency on the data pipeline).
import type { Batch } from '../../src/data/batch.ts';
import { Rng } from '../../src/model/rng.ts';

/** A (B, T) batch of random byte tokens whose targets are the next token of a longer stream. */
export function randomBatch(B: number, T: number, seed: number, vocab = 256): Batch {
  const rng = new Rng(seed, 7);
  const tokens = new Uint32Array(B * T), targets = new Uint32Array(B * T);
  for (let b = 0; b < B; b++) {
    let prev = rng.int(vocab);
    for (let t = 0; t < T; t++) {
      const next = rng.int(vocab);
      tokens[b * T + t] = prev;
      targets[b * T + t] = next;
      prev = next;
    }
  }
  return { B, T, tokens, targets };
}
