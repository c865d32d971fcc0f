// Hugging Face export of a checkpoint file (used by `murmur export`; the dashboard download
// builds the same two files in routes/checkpoints.ts).
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeCheckpoint } from './checkpoints.ts';
import { writeFilesAtomic } from './fsutil.ts';
import { hfGpt2Config, hfModelSafetensors } from '../src/model/hf-export.ts';

export function exportCheckpoint(file: string, outDir: string): { dir: string; step: number } {
  const c = decodeCheckpoint(readFileSync(file));
  mkdirSync(outDir, { recursive: true });
  const step = Number(c.metadata.step ?? 0);
  const bytes = hfModelSafetensors(c.layout, c.phi, { murmur_step: String(step), murmur_run: JSON.parse(c.metadata.run ?? '{}').id ?? '' });
  // Both files or neither: a researcher never finds a model without its config (or an old one).
  writeFilesAtomic([
    [join(outDir, 'model.safetensors'), bytes],
    [join(outDir, 'config.json'), new TextEncoder().encode(JSON.stringify(hfGpt2Config(c.model), null, 2) + '\n')],
  ]);
  return { dir: outDir, step };
}
