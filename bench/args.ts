// The bench scripts' options: `--name value` after the script's path, one reading for all of
// them (bench:torch, bench:profile, bench:gpu-check, bench:variants).
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The value after `--name`, or undefined when the option is not given. */
export function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`, 2);
  return i < 0 ? undefined : process.argv[i + 1];
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
