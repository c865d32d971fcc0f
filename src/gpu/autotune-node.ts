// The Node side of the autotune cache: one JSON file of {adapter key: Tuning}. Kept apart from
// autotune.ts so browser bundles never import node:fs.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Tuning } from './kernels.ts';
import type { TuningStore } from './autotune.ts';

/** Default cache file: $MURMUR_CACHE_DIR/autotune.json, else .murmur/autotune.json under the cwd. */
export function defaultTuningFile(): string {
  return join(process.env.MURMUR_CACHE_DIR ?? join(process.cwd(), '.murmur'), 'autotune.json');
}

export function fileStore(path = defaultTuningFile()): TuningStore {
  const readAll = async (): Promise<Record<string, Tuning>> => {
    try {
      const parsed = JSON.parse(await readFile(path, 'utf8'));
      return parsed && typeof parsed === 'object' ? parsed : {};
    } catch {
      return {}; // missing or unreadable: measure again
    }
  };
  return {
    async load(key) { return (await readAll())[key]; },
    async save(key, tuning) {
      const all = await readAll();
      all[key] = tuning;
      await mkdir(dirname(path), { recursive: true });
      // Write then rename, so a crash never leaves half a file.
      const tmp = `${path}.${process.pid}.tmp`;
      await writeFile(tmp, JSON.stringify(all, null, 2));
      await rename(tmp, path);
    },
  };
}
