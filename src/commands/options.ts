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

export function atLeastOne(v: string, name: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 1) throw new Error(`${name} must be a number >= 1, got "${v}"`);
  return n;
}

export function positiveNum(v: string, name: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, got "${v}"`);
  return n;
}

/** What `singleReplicaOptions` parses. */
export interface SingleReplicaOptions {
  preset: string;
  steps: number;
  batch: number;
  seqLen?: number;
  lr: number;
  evalEvery: number;
  evalBatches: number;
  seed: number;
  data?: string;
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

/** An integer option within [min, max]. */
export function intInRange(v: string, name: string, min: number, max: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be an integer in [${min}, ${max}], got "${v}"`);
  return n;
}

/** Where a coordinator keeps its state and listens (`serve`, `start`). */
export function coordinatorOptions(cmd: Command): Command {
  return cmd
    .option('--data-dir <dir>', 'where the SQLite file, secrets, datasets and checkpoints live', '.murmur')
    .option('--port <n>', 'TCP port (0 picks a free one)', '8787')
    .option('--host <addr>', 'address to bind; use 0.0.0.0 to accept volunteers from other machines', '127.0.0.1');
}
