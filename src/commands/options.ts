// Parsers for numeric command-line options: each names the option and the bad value.
import type { Command } from 'commander';

export function positiveInt(v: string, name: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got "${v}"`);
  return n;
}

export function nonNegativeInt(v: string, name: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got "${v}"`);
  return n;
}

export function positiveNum(v: string, name: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, got "${v}"`);
  return n;
}

/** The options every single-replica training command takes (`train`, `train-gpu`). */
export function singleReplicaOptions(cmd: Command, defaults: { batch: number; evalBatches: number }): Command {
  return cmd
    .option('--preset <name>', 'model preset (micro, tiny, small, base)', 'tiny')
    .option('--steps <n>', 'inner steps', (v) => positiveInt(v, '--steps'), 300)
    .option('--batch <n>', 'sequences per step', (v) => positiveInt(v, '--batch'), defaults.batch)
    .option('--seq-len <n>', 'tokens per sequence (default: the preset context)', (v) => positiveInt(v, '--seq-len'))
    .option('--lr <x>', 'peak learning rate', (v) => positiveNum(v, '--lr'), 2e-3)
    .option('--eval-every <n>', 'steps between validation evaluations', (v) => positiveInt(v, '--eval-every'), 25)
    .option('--eval-batches <n>', 'fixed validation batches', (v) => positiveInt(v, '--eval-batches'), defaults.evalBatches)
    .option('--seed <n>', 'run seed', (v) => Number.parseInt(v, 10), 1)
    .option('--data <dir>', 'a dataset made by `murmur prepare` (default: Moby Dick)');
}
