// Training windows and the fixed validation set. Every replica draws its own random windows
// from the whole training text, seeded by (run seed, replica id): replicas see different data
// (the point of averaging their progress) yet any replica's stream can be replayed exactly.
// Validation windows are evenly spaced and use no randomness, so every replica and the server
// score the same text and their losses can be compared; a state is judged on windows drawn from
// a seed only its judge knows (privateCheckBatches), which no peer serving it can fit.
import type { ModelConfig } from '../model/config.ts';
import { forwardFlops } from '../model/flops.ts';
import { Rng } from '../model/rng.ts';
import type { Batch } from './batch.ts';

export interface SamplerOptions {
  /** The run's seed. */
  seed: number;
  /** This replica's id; Rng(seed, replica) streams are independent. */
  replica: number;
}

/** A seed nobody else can know: this machine's own randomness (the probe's private windows). */
export function randomSeed(): number {
  return globalThis.crypto.getRandomValues(new Uint32Array(1))[0]! >>> 1;
}

/** Draws B windows of T+1 tokens at uniformly random starts (with replacement). */
export class WindowSampler {
  private readonly rng: Rng;
  private drawn = 0;

  constructor(private readonly data: Uint8Array, opts: SamplerOptions) {
    if (!Number.isInteger(opts.seed) || !Number.isInteger(opts.replica) || opts.replica < 0) {
      throw new RangeError(`WindowSampler needs an integer seed and a replica id >= 0, got seed ${opts.seed}, replica ${opts.replica}`);
    }
    this.rng = new Rng(opts.seed, opts.replica);
  }

  /** Windows drawn so far (B per call): how far into its stream this replica is. */
  get windows(): number {
    return this.drawn;
  }

  /**
   * The next batch. Pass `out` (a Batch of the same B, T) to refill its arrays instead of
   * allocating, e.g. for a staging buffer that is uploaded every step.
   */
  next(B: number, T: number, out?: Batch): Batch {
    checkShape(B, T);
    const N = this.data.length;
    if (N < T + 1) throw new RangeError(tooShort('training', N, T));
    const batch = out ?? emptyBatch(B, T);
    if (batch.B !== B || batch.T !== T || batch.tokens.length !== B * T || batch.targets.length !== B * T) {
      throw new RangeError(`reused batch is (${batch.B}, ${batch.T}) but next() was asked for (${B}, ${T})`);
    }
    for (let b = 0; b < B; b++) fillWindow(batch, b, this.data, this.rng.int(N - T));
    this.drawn += B;
    return batch;
  }
}

/**
 * Validation batches of a run: every replica and the coordinator evaluate on these same windows
 * (the run's batch × seqLen, RUN_VAL_BATCHES of them), so their losses compare exactly.
 */
export const RUN_VAL_BATCHES = 4;

export function runValidationBatches(tokens: Uint8Array, train: { batch: number; seqLen: number }): Batch[] {
  return validationBatches(tokens, train.batch, train.seqLen, RUN_VAL_BATCHES);
}

/**
 * Forward FLOPs (src/model/flops.ts) that a state check spends at most, where one of the run's
 * batches fits: about 20 s of one core with the CPU reference model (3 GFLOPS on this project's
 * 2-core machine, bench/results/checkpoint.json).
 */
export const STATE_CHECK_FLOPS = 64e9;

/**
 * How many validation batches a STATE is judged on: by the coordinator before an upload becomes
 * a checkpoint (server/checkpoint-validate.ts, on its CPUs) and by a newcomer before it adopts a
 * bootstrap state, against that checkpoint's loss (src/sync/state-check.ts). As many of the run's
 * batches as fit `budget` forward FLOPs, at least one and at most RUN_VAL_BATCHES: all of them
 * for `micro` and `tiny`, one for `small` and `base`, whose four took minutes of a core. A
 * function of the run alone, so both sides measure as many windows of the same text (each its
 * own: privateCheckBatches).
 */
export function stateCheckBatchCount(model: ModelConfig, train: { batch: number; seqLen: number }, budget = STATE_CHECK_FLOPS): number {
  const fit = Math.floor(budget / forwardFlops(model, train.batch, train.seqLen));
  return Math.max(1, Math.min(RUN_VAL_BATCHES, fit));
}

/**
 * The run's public check windows (stateCheckBatchCount batches of the run's batch × seqLen,
 * spread over the whole validation text like runValidationBatches'; the same when the count is
 * RUN_VAL_BATCHES). A function of public data, so nobody judges a state on them: a peer could fit
 * them (tests and benchmarks use them as fixed windows). `count` overrides the count.
 */
export function stateCheckBatches(tokens: Uint8Array, model: ModelConfig, train: { batch: number; seqLen: number }, count = stateCheckBatchCount(model, train)): Batch[] {
  return validationBatches(tokens, train.batch, train.seqLen, count);
}

/**
 * The windows a state is judged on, by the coordinator before an upload becomes a checkpoint
 * (server/checkpoint-validate.ts) and by a newcomer before it adopts a candidate: as many as
 * stateCheckBatches', drawn at random over the whole validation text from `seed`, which only the
 * judge knows (randomSeed: fresh per measurement for the coordinator, per volunteer for a
 * newcomer). The run's own check windows are a function of public data, so a state fitted to
 * them alone (400 CPU steps on `micro`) measured 0.03 there and 7.3 elsewhere in the same text,
 * and as the newest checkpoint it set a bound no honest upload could meet. These it cannot fit
 * without fitting the whole text.
 */
export function privateCheckBatches(tokens: Uint8Array, model: ModelConfig, train: { batch: number; seqLen: number }, seed: number, count = stateCheckBatchCount(model, train)): Batch[] {
  const sampler = new WindowSampler(tokens, { seed, replica: 0 });
  return Array.from({ length: count }, () => sampler.next(train.batch, train.seqLen));
}

/**
 * Windows of T+1 tokens laid end to end in `packed` (read from wherever a judge drew them: the
 * coordinator reads its training windows straight from the dataset's files), one sequence each.
 */
export function packedWindows(packed: Uint8Array, T: number): Batch[] {
  checkShape(1, T);
  if (packed.length % (T + 1) !== 0) throw new RangeError(`packed windows: ${packed.length} tokens are not whole windows of ${T + 1}`);
  const out: Batch[] = [];
  for (let off = 0; off < packed.length; off += T + 1) {
    const b = emptyBatch(1, T);
    fillWindow(b, 0, packed, off);
    out.push(b);
  }
  return out;
}

/**
 * `count` batches of B windows of T+1 tokens, their starts spread evenly from the first to the
 * last possible one (windows overlap when the text is short). Deterministic.
 */
export function validationBatches(tokens: Uint8Array, B: number, T: number, count: number): Batch[] {
  checkShape(B, T);
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`validation batch count must be a positive integer, got ${count}`);
  const N = tokens.length;
  if (N < T + 1) throw new RangeError(tooShort('validation', N, T));
  const windows = B * count;
  const lastStart = N - T - 1;
  const batches: Batch[] = [];
  for (let k = 0; k < count; k++) {
    const batch = emptyBatch(B, T);
    for (let b = 0; b < B; b++) {
      const w = k * B + b;
      // Integer arithmetic (exact below 2^53) so every platform picks the same starts.
      const start = windows === 1 ? 0 : Math.floor((w * lastStart) / (windows - 1));
      fillWindow(batch, b, tokens, start);
    }
    batches.push(batch);
  }
  return batches;
}

/** Row b of batch <- data[start .. start+T) as tokens, data[start+1 .. start+T] as targets. */
function fillWindow(batch: Batch, b: number, data: Uint8Array, start: number): void {
  const T = batch.T;
  const row = b * T;
  for (let t = 0; t < T; t++) {
    batch.tokens[row + t] = data[start + t];
    batch.targets[row + t] = data[start + t + 1];
  }
}

function emptyBatch(B: number, T: number): Batch {
  return { B, T, tokens: new Uint32Array(B * T), targets: new Uint32Array(B * T) };
}

function checkShape(B: number, T: number): void {
  if (!Number.isInteger(B) || B < 1 || !Number.isInteger(T) || T < 1) {
    throw new RangeError(`batch shape must be positive integers, got B=${B}, T=${T}`);
  }
}

function tooShort(which: string, N: number, T: number): string {
  return `${which} text is ${N} tokens, shorter than one window of T+1 = ${T + 1}; use a shorter context or more text`;
}
