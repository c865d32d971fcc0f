// The Node side of the autotune cache: one JSON file of {adapter key: Tuning}. Kept apart from
// autotune.ts so browser bundles never import node:fs.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { DEFAULT_TUNING, type Tuning } from './kernels.ts';
import { autotune, tunedEngine, tuningKey, type TuningStore } from './autotune.ts';
import { GpuEngine, type EngineOptions } from './engine.ts';
import type { AdapterSummary } from './device.ts';
import { tuningProblem } from './tuning-schema.ts';

/** Default cache file: $MURMUR_CACHE_DIR/autotune.json, else .murmur/autotune.json under the cwd. */
export function defaultTuningFile(): string {
  return join(process.env.MURMUR_CACHE_DIR ?? join(process.cwd(), '.murmur'), 'autotune.json');
}

/**
 * The kernel shapes a Node run uses on `device`: the autotuner's for this adapter, cached in the
 * file store as a volunteer's are; or, with `defaults` (the benches' --default-tuning), the
 * untuned DEFAULT_TUNING.
 */
export async function nodeTuning(device: GPUDevice, info: AdapterSummary, defaults = false): Promise<Tuning> {
  return defaults ? DEFAULT_TUNING : (await autotune(device, info, { store: fileStore() })).tuning;
}

/**
 * A GpuEngine for `opts` on `device` as a Node volunteer's trainer builds one: on a GPU, each of
 * the model's products runs the shape measured fastest at its own size (tunedEngine), cached in
 * the file store; with `defaults`, or on a software adapter, the engine on `opts.tuning` as it is.
 */
export async function nodeEngine(device: GPUDevice, info: AdapterSummary, opts: EngineOptions, defaults = false): Promise<GpuEngine> {
  if (defaults) return new GpuEngine(device, opts);
  return (await tunedEngine(device, info, opts, { store: fileStore(), key: tuningKey(info) })).engine;
}

export function fileStore(path = defaultTuningFile()): TuningStore {
  const readAll = async (): Promise<Record<string, Tuning>> => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(await readFile(path, 'utf8'));
    } catch {
      return {}; // missing or unreadable: measure again
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      console.warn(`${path} is not a JSON object; ignoring the autotune cache`);
      return {};
    }
    // Each entry is checked on its own: a bad one is measured again, the others still count.
    const all: Record<string, Tuning> = {};
    for (const [key, t] of Object.entries(parsed)) {
      const problem = tuningProblem(t, key);
      if (problem === null) all[key] = t as Tuning;
      else console.warn(`${path}: ${problem}; ignoring this entry`);
    }
    return all;
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
