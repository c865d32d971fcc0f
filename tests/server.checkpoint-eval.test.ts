// The windows a state is judged on, and the coordinator's measurement of them split across
// worker threads (src/data/sampler.ts stateCheckBatchCount, server/checkpoint-validate.ts,
// server/checkpoint-eval-worker.ts): the coordinator measured all four validation batches of
// every run, minutes of a core for `small` and `base`; it now measures as many as fit a FLOP
// budget (one for those two), split by sequence across threads, and a newcomer judges a
// candidate state on the same windows the coordinator's checkpoint loss came from.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CheckpointEvaluator, drawTrainWindows } from '../server/checkpoint-validate.ts';
import { MAX_TRAIN_VAL_GAP, memorisedError } from '../src/protocol/memorised.ts';
import { checkSequences, meanLoss, measureValLoss, type EvalRequest } from '../server/checkpoint-eval-worker.ts';
import { DirDatasetSource, prepareMobyDick } from '../server/datasets.ts';
import { datasetFromCorpus } from '../src/data/dataset.ts';
import { packedWindows, privateCheckBatches, RUN_VAL_BATCHES, runValidationBatches, STATE_CHECK_FLOPS, stateCheckBatchCount, stateCheckBatches, validationBatches } from '../src/data/sampler.ts';
import { preset, trainConfig, type PresetName } from '../src/model/config.ts';
import { forwardFlops } from '../src/model/flops.ts';
import { buildLayout } from '../src/model/layout.ts';
import { ReferenceGPT } from '../src/model/reference.ts';
import type { RunInfo } from '../src/protocol/messages.ts';
import { createBackend } from '../src/volunteer/backend.ts';
import { fittedToCheckWindows, honestState } from './support/states.ts';

const corpus = datasetFromCorpus();

function runOf(name: PresetName, id = 'eval'): RunInfo {
  const model = preset(name);
  return {
    id, name: id, dataset: 'moby-dick', preset: name, model, train: trainConfig({ H: 10 }, model),
    seed: 1, status: 'running', compression: 'none', pairWaitFrac: 0.3, createdAt: 0,
  } as unknown as RunInfo;
}

/** The mean of batch means over `batches`, as a trainer's evaluate computes it. */
function batchMean(run: RunInfo, phi: Float32Array, batches: ReturnType<typeof validationBatches>): number {
  const ref = new ReferenceGPT(buildLayout(run.model), 'f32');
  return batches.reduce((a, b) => a + ref.forward(phi, b), 0) / batches.length;
}

describe('the windows a state is judged on', () => {
  it('all four validation batches for micro and tiny, one for small and base, whose batches exceed the budget', () => {
    const count = (p: PresetName) => stateCheckBatchCount(preset(p), trainConfig({}, preset(p)));
    expect(['micro', 'tiny', 'small', 'base'].map((p) => count(p as PresetName))).toEqual([RUN_VAL_BATCHES, RUN_VAL_BATCHES, 1, 1]);
    // The budget decides: small's batch (8 x 256) fits it once, base's not at all (still one).
    const small = preset('small'), base = preset('base');
    expect(forwardFlops(small, 8, 256)).toBeLessThan(STATE_CHECK_FLOPS);
    expect(2 * forwardFlops(small, 8, 256)).toBeGreaterThan(STATE_CHECK_FLOPS);
    expect(forwardFlops(base, 8, 512)).toBeGreaterThan(STATE_CHECK_FLOPS);
  });

  it('fits as many batches as the budget allows, at least one, at most RUN_VAL_BATCHES', () => {
    const m = preset('micro'), t = { batch: 8, seqLen: 32 };
    const one = forwardFlops(m, 8, 32);
    expect(stateCheckBatchCount(m, t, 0)).toBe(1);
    expect(stateCheckBatchCount(m, t, one * 1.5)).toBe(1);
    expect(stateCheckBatchCount(m, t, one * 2)).toBe(2);
    expect(stateCheckBatchCount(m, t, one * 3.99)).toBe(3);
    expect(stateCheckBatchCount(m, t, one * 1e6)).toBe(RUN_VAL_BATCHES);
  });

  it('are the run\'s validation batches when all fit, and spread over the whole text when fewer do', () => {
    const run = runOf('micro');
    expect(stateCheckBatches(corpus.val, run.model, run.train)).toEqual(runValidationBatches(corpus.val, run.train));
    const [one] = stateCheckBatches(corpus.val, run.model, run.train, 1);
    expect(one).toEqual(validationBatches(corpus.val, 8, 32, 1)[0]);
    // Its last window ends at the text's end, as the four batches' last one does.
    const last = runValidationBatches(corpus.val, run.train)[RUN_VAL_BATCHES - 1]!;
    expect(one!.targets.subarray(7 * 32)).toEqual(last.targets.subarray(7 * 32));
  });

  it('the coordinator\'s own windows: as many as the check\'s, drawn from its seed over the whole text; a state fitted to the public ones is found out there', () => {
    const run = runOf('micro');
    const train = { batch: run.train.batch, seqLen: run.train.seqLen };
    const pub = stateCheckBatches(corpus.val, run.model, train);
    const [a, b] = [privateCheckBatches(corpus.val, run.model, train, 11), privateCheckBatches(corpus.val, run.model, train, 12)];
    expect(a.length).toBe(pub.length);
    expect(a.map((x) => [x.B, x.T])).toEqual(pub.map((x) => [x.B, x.T]));
    expect(privateCheckBatches(corpus.val, run.model, train, 11)).toEqual(a); // a seed gives its windows
    expect(a).not.toEqual(b);
    expect(a).not.toEqual(pub);
    // Before: the coordinator measured the public windows, where this state scored 0.03.
    const fitted = fittedToCheckWindows(run, 400, 70).phi;
    const onPublic = measureValLoss({ model: run.model, train, val: corpus.val, phi: fitted, batches: pub.length });
    const onOwn = measureValLoss({ model: run.model, train, val: corpus.val, phi: fitted, batches: pub.length, seed: 11 });
    console.log(`a state fitted to the public check windows: ${onPublic.toFixed(3)} there, ${onOwn.toFixed(3)} on the coordinator's own (ln 256 = ${Math.log(256).toFixed(3)})`);
    expect(onPublic).toBeLessThan(1);
    expect(onOwn).toBeGreaterThan(Math.log(256) - 1);
  });

  it('one sequence at a time gives the loss of the whole batches (the split across threads changes nothing but float order)', () => {
    const run = runOf('micro');
    const frame = honestState(run, 20);
    const req = (batches: number): EvalRequest => ({ model: run.model, train: run.train, val: corpus.val, phi: frame.phi, batches });
    expect(checkSequences(req(2))).toHaveLength(16);
    for (const n of [1, RUN_VAL_BATCHES]) {
      const whole = batchMean(run, frame.phi, stateCheckBatches(corpus.val, run.model, run.train, n));
      expect(Math.abs(measureValLoss(req(n)) - whole)).toBeLessThan(1e-6 * whole);
    }
    // Different windows, a different loss: the count is not ignored.
    expect(measureValLoss(req(1))).not.toBe(measureValLoss(req(RUN_VAL_BATCHES)));
  });
});

describe('the coordinator measuring across worker threads', () => {
  let dir: string;
  let datasets: DirDatasetSource;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'murmur-eval-'));
    prepareMobyDick(dir);
    datasets = new DirDatasetSource(dir);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('gives, bit for bit, the losses one thread computes, with the sequences split unevenly across 3 threads', async () => {
    const run = runOf('micro');
    const frame = honestState(run, 20);
    const expected = measureValLoss({ model: run.model, train: run.train, val: corpus.val, phi: frame.phi, batches: RUN_VAL_BATCHES, seed: 7 });
    // The training windows: 32 drawn from the same seed out of the training file, read from disk.
    const file = join(dir, 'moby-dick', 'train.bin');
    const windows = drawTrainWindows([{ path: file, bytes: corpus.train.length }], 32, run.train.seqLen, 7);
    const ref = new ReferenceGPT(buildLayout(run.model), 'f32');
    const trainLoss = meanLoss(packedWindows(windows, run.train.seqLen).map((b) => ref.forward(frame.phi, b)));
    for (const threads of [1, 3]) {
      const ev = new CheckpointEvaluator(datasets, { threads, windowSeed: () => 7 });
      expect(await ev.measure(run, frame.phi)).toEqual({ val: expected, train: trainLoss });
      // 64 sequences (4 batches of 8 of each text): 3 workers took 21, 21 and 22 of them.
      expect(ev.stats).toMatchObject({ evaluations: 1, lastThreads: threads, lastSequences: 64 });
      await ev.close();
    }
    // An honest state scores both texts alike (the book's own chapters).
    expect(Math.abs(trainLoss - expected)).toBeLessThan(MAX_TRAIN_VAL_GAP);
  });

  it('draws training windows uniformly over every start of every file, exactly as stored, the same for the same seed', () => {
    const a = join(dir, 'a.bin'), b = join(dir, 'b.bin');
    writeFileSync(a, Uint8Array.from({ length: 40 }, (_, i) => i));
    writeFileSync(b, Uint8Array.from({ length: 400 }, (_, i) => 100 + (i % 100)));
    const files = [{ path: a, bytes: 40 }, { path: b, bytes: 400 }, { path: join(dir, 'short.bin'), bytes: 3 }];
    const T = 7;
    const w = drawTrainWindows(files, 2000, T, 11);
    expect(drawTrainWindows(files, 2000, T, 11)).toEqual(w);
    expect(drawTrainWindows(files, 2000, T, 12)).not.toEqual(w);
    let fromA = 0;
    for (let k = 0; k < 2000; k++) {
      const win = w.subarray(k * (T + 1), (k + 1) * (T + 1));
      // Each window is T+1 consecutive stored tokens of one file.
      for (let i = 1; i <= T; i++) expect(win[i]).toBe(win[0]! < 100 ? win[0]! + i : 100 + ((win[0]! - 100 + i) % 100));
      if (win[0]! < 100) fromA++;
    }
    // a has 33 starts, b 393, the 3-token file none: a's share is 33/426 = 7.7%.
    expect(fromA / 2000).toBeGreaterThan(0.05);
    expect(fromA / 2000).toBeLessThan(0.11);
    expect(() => drawTrainWindows([files[2]!], 1, T, 1)).toThrow(/no training file holds a window of 8 tokens/);
  });

  it('names a state far better on the validation text than on the training text', () => {
    expect(memorisedError({ val: 2.0, train: 2.0 + MAX_TRAIN_VAL_GAP })).toBeNull();
    expect(memorisedError({ val: 2.0, train: 1.2 })).toBeNull();
    expect(memorisedError({ val: 1.0, train: 1.0 + MAX_TRAIN_VAL_GAP + 0.01 })).toMatch(/measured 1\.5100 on the training text and 1\.0000 on the validation text: 0\.5100 apart, more than 0\.5/);
  });

  it('a worker that fails fails the measurement with its reason, stops the others and frees the evaluator', async () => {
    const run = runOf('micro');
    const ev = new CheckpointEvaluator(datasets, { threads: 2 });
    await expect(ev.measure(run, new Float32Array(10))).rejects.toThrow(/evaluation failed: φ has 10 floats; the model needs \d+/);
    expect(ev.busy).toBe(false);
    const frame = honestState(run, 5);
    expect(Number.isFinite((await ev.measure(run, frame.phi)).val)).toBe(true);
    await ev.close();
  });

  it('refuses a batch count outside 1 ..= RUN_VAL_BATCHES, and stays free', async () => {
    const ev = new CheckpointEvaluator(datasets, { threads: 1 });
    const frame = honestState(runOf('micro'), 1);
    for (const n of [0, 5, 1.5]) await expect(ev.measure(runOf('micro'), frame.phi, n)).rejects.toThrow(/validation batches must be an integer in \[1, 4\]/);
    expect(ev.busy).toBe(false);
    await ev.close();
  });

    it('refuses a thread count that is not a positive integer', () => {
    for (const threads of [0, -1, 1.5, 1000]) expect(() => new CheckpointEvaluator(datasets, { threads })).toThrow(/evaluation threads must be an integer in \[1, 256\]/);
  });
});

describe('a newcomer judges a candidate on check windows of its own', () => {
  it('checkLoss is φ\'s loss on as many windows as the coordinator measures, drawn from the volunteer\'s seed; evaluate the run\'s four batches', async () => {
    const run = runOf('micro');
    const frame = honestState(run, 20);
    const init = { run, train: corpus.train, val: corpus.val, stream: 0, probeSeed: 1, checkSeed: 5 };
    const coordinator = (batches: number, seed?: number) => measureValLoss({ model: run.model, train: run.train, val: corpus.val, phi: frame.phi, batches, ...(seed === undefined ? {} : { seed }) });
    for (const checkBatches of [1, undefined]) {
      const b = await createBackend('cpu', { ...init, ...(checkBatches ? { checkBatches } : {}) });
      await b.load({ phi: frame.phi, momentum: frame.momentum, innerStep: frame.meta.step });
      const n = checkBatches ?? stateCheckBatchCount(run.model, run.train);
      const { val: check, train } = await b.checkLoss();
      expect(Math.abs(check - coordinator(n, 5))).toBeLessThan(1e-6 * check);
      // And as many windows of its own training shard, from the same seed.
      const ownTrain = measureValLoss({ model: run.model, train: run.train, val: corpus.train, phi: frame.phi, batches: n, seed: 5 });
      expect(Math.abs(train - ownTrain)).toBeLessThan(1e-6 * train);
      expect(train).not.toBe(check);
      const all = await b.evaluate();
      expect(Math.abs(all - coordinator(RUN_VAL_BATCHES))).toBeLessThan(1e-6 * all);
      if (n !== RUN_VAL_BATCHES) expect(check).not.toBe(all);
      b.dispose();
    }
  });
});
