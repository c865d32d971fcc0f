// The bench scripts' options: `--name value` after the script's path, one reading for all of
// them (bench:torch, bench:profile, bench:gpu-check, bench:variants).
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The value after `--name`, or undefined when the option is not given. */
export function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`, 2);
  return i < 0 ? undefined : process.argv[i + 1];
}

/**
 * The value after `flag` (given with its dashes, as bench:sim and bench:stale read theirs), or
 * undefined when it is not given; the flag without a value, or followed by another flag, is an
 * error naming it.
 */
export function flagValue(flag: string): string | undefined {
  const args = process.argv.slice(2);
  const i = args.indexOf(flag);
  if (i < 0) return undefined;
  const v = args[i + 1];
  if (v === undefined || v.startsWith('--')) throw new Error(`${flag} needs a value`);
  return v;
}

/** `--name` as an integer of at least `min` (`dflt` when not given); anything else is an error naming the option. */
export function intArg(name: string, dflt: number, min = 1): number {
  const v = Number(arg(name) ?? dflt);
  if (!(Number.isInteger(v) && v >= min)) throw new Error(`--${name} must be an integer >= ${min}, got ${arg(name)}`);
  return v;
}

/** Where a bench writes its JSON: `--out`, else bench/results (beside the bundle on a device). */
export function resultsDir(): string {
  return arg('out') ?? join(fileURLToPath(new URL('.', import.meta.url)), 'results');
}
