// A checkpoint exported in the Hugging Face GPT-2 layout, loaded into the PyTorch model of
// tests/fixtures, gives the validation loss Murmur's own evaluation gives (within 1e-4).
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeCheckpoint } from '../server/checkpoints.ts';
import { exportCheckpoint } from '../server/export.ts';
import { buildLayout } from '../src/model/layout.ts';
import { preset, trainConfig } from '../src/model/config.ts';
import { ReferenceGPT } from '../src/model/reference.ts';
import { CpuTrainer } from '../src/train/cpu-trainer.ts';
import { datasetFromCorpus } from '../src/data/dataset.ts';
import { WindowSampler, validationBatches } from '../src/data/sampler.ts';
import type { RunInfo } from '../src/protocol/messages.ts';

describe('Hugging Face export', () => {
  it('evaluates in PyTorch to the validation loss Murmur computes', () => {
    const model = preset('micro');
    const layout = buildLayout(model);
    const train = trainConfig({ batch: 4, lr: 3e-3, warmupSteps: 2, totalSteps: 40 }, model);
    const data = datasetFromCorpus();
    // Trained weights, not the initialisation: a wrong tensor name or transpose must show.
    const trainer = new CpuTrainer(layout, train, undefined, 3);
    const sampler = new WindowSampler(data.train, { seed: 3, replica: 0 });
    for (let s = 0; s < 40; s++) trainer.trainStep(sampler.next(4, model.ctx));
    const phi = trainer.params.slice();

    const val = validationBatches(data.val, 4, model.ctx, 6);
    const ref = new ReferenceGPT(layout, 'f32');
    const murmurLoss = val.reduce((a, b) => a + ref.forward(phi, b), 0) / val.length;

    const run = { id: 'x', name: 'x', dataset: 'moby-dick', preset: 'micro', model, train, compression: 'none', pairWaitFrac: 0.3, seed: 3, status: 'running', createdAt: 0, updatedAt: 0 } as RunInfo;
    const dir = mkdtempSync(join(tmpdir(), 'murmur-export-'));
    try {
      const ck = join(dir, 'ck.safetensors');
      writeFileSync(ck, encodeCheckpoint(run, { meta: { runId: 'x', step: 40, round: 0, floats: layout.total, valLoss: murmurLoss, tokens: 40 * 4 * 32 }, phi, momentum: new Float32Array(layout.total) }, null, 1));
      exportCheckpoint(ck, join(dir, 'hf'));
      writeFileSync(join(dir, 'val.json'), JSON.stringify({ B: 4, T: model.ctx, batches: val.map((b) => ({ tokens: [...b.tokens], targets: [...b.targets] })) }));
      const out = execFileSync('/usr/bin/python3', ['tests/fixtures/eval_export.py', join(dir, 'hf'), join(dir, 'val.json')], { encoding: 'utf8' });
      const torchLoss = JSON.parse(out).loss as number;
      console.log(`export: Murmur val loss ${murmurLoss.toFixed(6)}, PyTorch ${torchLoss.toFixed(6)}`);
      expect(murmurLoss).toBeLessThan(5.0); // it did learn something
      expect(Math.abs(torchLoss - murmurLoss)).toBeLessThan(1e-4);
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  it('refuses a checkpoint whose run metadata has no valid id, naming the field', () => {
    const model = preset('micro');
    const layout = buildLayout(model);
    const train = trainConfig({ batch: 4, lr: 3e-3, warmupSteps: 2, totalSteps: 40 }, model);
    const run = { id: 'x', name: 'x', dataset: 'moby-dick', preset: 'micro', model, train, compression: 'none', pairWaitFrac: 0.3, seed: 3, status: 'running', createdAt: 0, updatedAt: 0 } as RunInfo;
    const frame = { meta: { runId: 'x', step: 1, round: 0, floats: layout.total, valLoss: null, tokens: 0 }, phi: new Float32Array(layout.total), momentum: new Float32Array(layout.total) };
    const dir = mkdtempSync(join(tmpdir(), 'murmur-export-'));
    try {
      const ck = join(dir, 'ck.safetensors');
      writeFileSync(ck, encodeCheckpoint({ ...run, id: 42 } as unknown as RunInfo, frame, null, 1));
      expect(() => exportCheckpoint(ck, join(dir, 'hf'))).toThrow('checkpoint metadata run.id must be string, got 42');
      writeFileSync(ck, encodeCheckpoint({ ...run, id: 'x'.repeat(500) }, frame, null, 1));
      expect(() => exportCheckpoint(ck, join(dir, 'hf'))).toThrow(/^checkpoint metadata run\.id does not match /);
      writeFileSync(ck, encodeCheckpoint(run, frame, null, 1));
      expect(exportCheckpoint(ck, join(dir, 'hf')).step).toBe(1);
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  it('refuses a checkpoint whose step is not a whole number, or not the step its record says, naming both', () => {
    const model = preset('micro');
    const layout = buildLayout(model);
    const train = trainConfig({ batch: 4, lr: 3e-3, warmupSteps: 2, totalSteps: 40 }, model);
    const run = { id: 'x', name: 'x', dataset: 'moby-dick', preset: 'micro', model, train, compression: 'none', pairWaitFrac: 0.3, seed: 3, status: 'running', createdAt: 0, updatedAt: 0 } as RunInfo;
    const frame = (step: unknown) => ({ meta: { runId: 'x', step: step as number, round: 0, floats: layout.total, valLoss: null, tokens: 0 }, phi: new Float32Array(layout.total), momentum: new Float32Array(layout.total) });
    const dir = mkdtempSync(join(tmpdir(), 'murmur-export-'));
    try {
      const ck = join(dir, 'ck.safetensors');
      const out = join(dir, 'hf');
      for (const bad of ['ten', 1.5, -3]) {
        writeFileSync(ck, encodeCheckpoint(run, frame(bad), null, 1));
        expect(() => exportCheckpoint(ck, out)).toThrow(`${ck}: checkpoint metadata step ${JSON.stringify(String(bad))} is not a whole number; not exported`);
      }
      const bytes = encodeCheckpoint(run, frame(20), null, 1);
      writeFileSync(ck, bytes);
      const sha256 = createHash('sha256').update(bytes).digest('hex');
      expect(() => exportCheckpoint(ck, out, { sha256, step: 10 })).toThrow(`${ck} says step 20 in its metadata, but its record says step 10; not exported`);
      expect(existsSync(out)).toBe(false);
      expect(exportCheckpoint(ck, out, { sha256, step: 20 }).step).toBe(20);
    } finally {
      rmSync(dir, { recursive: true });
    }
  });
});
