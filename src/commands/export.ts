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
    .argument('<checkpoint>', 'a checkpoint .safetensors file, or a checkpoint id / "latest" of --run in --data-dir')
    .requiredOption('--out <dir>', 'output folder (created if missing)')
    .option('--data-dir <dir>', 'coordinator data dir, for ids and "latest"', '.murmur')
    .option('--run <id>', 'run, for ids and "latest"', 'default')
    .action(async (checkpoint: string, o: { out: string; dataDir: string; run: string }) => {
      const { exportCheckpoint } = await import('../../server/export.ts');
      const { file, sha256 } = resolveCheckpoint(checkpoint, o.dataDir, o.run);
      const r = exportCheckpoint(file, resolve(o.out), sha256);
      process.stdout.write(`exported ${file} (step ${r.step}) to ${r.dir}\n` +
        `  python: from transformers import GPT2LMHeadModel; model = GPT2LMHeadModel.from_pretrained(${JSON.stringify(r.dir)})\n`);
    });
}

/** The checkpoint file `arg` names, with the sha256 its record gives when it is named by id or "latest". */
function resolveCheckpoint(arg: string, dataDir: string, run: string): { file: string; sha256?: string } {
  if (existsSync(arg) && statSync(arg).isFile()) return { file: resolve(arg) };
  const dir = resolve(dataDir, 'checkpoints', run);
  if (!existsSync(dir)) throw new Error(`"${arg}" is not a file, and ${dir} does not exist (set --data-dir / --run)`);
  const infos = readdirSync(dir).filter((f) => f.endsWith('.json')).map((f) => checkpointInfo(join(dir, f)))
    .sort((a, b) => b.createdAt - a.createdAt);
  const hit = arg === 'latest' ? infos[0] : infos.find((i) => i.id === arg);
  if (!hit) throw new Error(`no checkpoint "${arg}" in ${dir} (have: ${infos.map((i) => i.id).join(', ') || 'none'})`);
  return { file: join(dir, hit.file), sha256: hit.sha256 };
}

/** A checkpoint's `<id>.json`, checked against the schema the coordinator writes it by. */
export function checkpointInfo(file: string): CheckpointInfo {
  let v: unknown;
  try { v = JSON.parse(readFileSync(file, 'utf8')); } catch (err) { throw new Error(`${file} is not JSON: ${(err as Error).message.slice(0, 120)}`); }
  const problem = schemaProblem(CheckpointInfo, v, file);
  if (problem !== null) throw new Error(problem);
  return v as CheckpointInfo;
}
