// `murmur export <checkpoint> --out <dir>`: a checkpoint's φ as config.json + model.safetensors in
// the Hugging Face GPT-2 layout, so a researcher continues in PyTorch with
//   GPT2LMHeadModel.from_pretrained(dir)
import type { Command } from 'commander';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CheckpointInfo } from '../protocol/api.ts';
import { schemaProblem } from '../protocol/check.ts';

export function register(program: Command): void {
  program.command('export')
    .description('write a checkpoint as a Hugging Face GPT2LMHeadModel folder (config.json + model.safetensors)')
    .argument('<checkpoint>', 'a checkpoint .safetensors file, a checkpoint id of --run in --data-dir, or "latest": the checkpoint the coordinator offers newcomers')
    .requiredOption('--out <dir>', 'output folder (created if missing)')
    .option('--data-dir <dir>', 'coordinator data dir, for ids and "latest"', '.murmur')
    .option('--run <id>', 'run, for ids and "latest"', 'default')
    .action(async (checkpoint: string, o: { out: string; dataDir: string; run: string }) => {
      const { exportCheckpoint } = await import('../../server/export.ts');
      const { file, record } = await resolveCheckpoint(checkpoint, o.dataDir, o.run);
      const r = exportCheckpoint(file, resolve(o.out), record);
      process.stdout.write(`exported ${file} (step ${r.step}) to ${r.dir}\n` +
        `  python: from transformers import GPT2LMHeadModel; model = GPT2LMHeadModel.from_pretrained(${JSON.stringify(r.dir)})\n`);
    });
}

/** A checkpoint's id as the coordinator makes it (server/checkpoints.ts). */
const CHECKPOINT_ID = /^s\d+-[0-9a-f]{8}$/;

/**
 * The checkpoint file `arg` names, with what its record says of it when it is named by id or
 * "latest". "latest" is the checkpoint the coordinator offers newcomers, as its database says
 * (offeredCheckpoint, server/export.ts), not the newest record: that may be one it does not offer
 * (not measured on the run's windows, or measured worse than allowed). By id only that
 * checkpoint's record is read: a damaged record of another checkpoint (one the coordinator names
 * as unreadable and leaves on disk) never stands in the way.
 */
export async function resolveCheckpoint(arg: string, dataDir: string, run: string): Promise<{ file: string; record?: { sha256: string; step: number } }> {
  if (existsSync(arg) && statSync(arg).isFile()) return { file: resolve(arg) };
  if (arg === 'latest') {
    const { offeredCheckpoint } = await import('../../server/export.ts');
    const { info, file } = offeredCheckpoint(resolve(dataDir), run);
    return { file, record: { sha256: info.sha256, step: info.step } };
  }
  const dir = resolve(dataDir, 'checkpoints', run);
  if (!existsSync(dir)) throw new Error(`"${arg}" is not a file, and ${dir} does not exist (set --data-dir / --run)`);
  const ids = () => readdirSync(dir).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -'.json'.length)).filter((id) => CHECKPOINT_ID.test(id)).sort();
  let hit: CheckpointInfo | undefined;
  if (CHECKPOINT_ID.test(arg) && existsSync(join(dir, `${arg}.json`))) {
    hit = checkpointInfo(join(dir, `${arg}.json`));
    if (hit.id !== arg) throw new Error(`${join(dir, `${arg}.json`)} is the record of checkpoint ${hit.id}, not ${arg}`);
  }
  if (!hit) throw new Error(`no checkpoint "${arg}" in ${dir} (have: ${ids().join(', ') || 'none'})`);
  return { file: join(dir, hit.file), record: { sha256: hit.sha256, step: hit.step } };
}

/** A checkpoint's `<id>.json`, checked against the schema the coordinator writes it by. */
export function checkpointInfo(file: string): CheckpointInfo {
  let v: unknown;
  try { v = JSON.parse(readFileSync(file, 'utf8')); } catch (err) { throw new Error(`${file} is not JSON: ${(err as Error).message.slice(0, 120)}`); }
  const problem = schemaProblem(CheckpointInfo, v, file);
  if (problem !== null) throw new Error(problem);
  return v as CheckpointInfo;
}
