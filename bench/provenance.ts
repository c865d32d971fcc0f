// What a bench's results file says of where it came from, and how it is written: the commit
// (bench:sim, bench:stale), and the file whole or not at all.
import { execSync } from 'node:child_process';
import { renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The commit the results came from (with "+dirty" when src or bench had changes), or null outside git. */
export function gitCommit(): string | null {
  try {
    const head = execSync('git rev-parse --short HEAD', { cwd: root, encoding: 'utf8' }).trim();
    const dirty = execSync('git status --porcelain -- src bench ":(exclude)bench/results"', { cwd: root, encoding: 'utf8' }).trim() !== '';
    return head + (dirty ? '+dirty' : '');
  } catch {
    return null;
  }
}

/** Writes `text` to `path` through a temporary file and a rename: a reader never sees half of it. */
export function atomicWrite(path: string, text: string): void {
  writeFileSync(path + '.tmp', text);
  renameSync(path + '.tmp', path);
}
