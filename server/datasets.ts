// Token files a run trains and validates on, as the coordinator serves them. Each dataset is a
// prepared dataset directory (src/data/dataset.ts: train.bin, val.bin, manifest.json with sha256
// hashes) at `<dataDir>/datasets/<name>/`; `murmur prepare <text files> --out <dataDir>/datasets/<name>`
// adds one. The server needs only `DatasetSource`, a list of files with their hashes (the ETag).
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ID_PATTERN, type DataFileRef } from '../src/protocol/messages.ts';
import { datasetFromCorpus, recoverDataset, saveDataset } from '../src/data/dataset.ts';
import { parseManifest } from '../src/data/manifest.ts';

export interface DatasetFile {
  name: string;
  role: 'train' | 'val';
  dtype: 'u8' | 'u16' | 'u32';
  tokens: number;
  bytes: number;
  sha256: string;
}

export interface DatasetManifest {
  name: string;
  /** How text became tokens; 'bytes' = UTF-8 bytes, vocab 256. */
  tokenizer: string;
  vocab: number;
  files: DatasetFile[];
}

/** What the server needs from the data pipeline. */
export interface DatasetSource {
  /** The manifest of a dataset, or null when there is no such dataset. */
  manifest(name: string): DatasetManifest | null;
  /** Absolute path of one listed file (only names from the manifest are ever resolved). */
  filePath(dataset: string, file: string): string;
}

const ID = new RegExp(ID_PATTERN);

/** Prepared dataset directories under `root`; manifests are re-read when they change. */
export class DirDatasetSource implements DatasetSource {
  private readonly cache = new Map<string, { mtimeMs: number; m: DatasetManifest }>();

  constructor(readonly root: string) {}

  manifest(name: string): DatasetManifest | null {
    if (!ID.test(name)) return null;
    const path = join(this.root, name, 'manifest.json');
    // A `murmur prepare --force` killed between its renames left the previous dataset aside.
    if (!existsSync(path) && recoverDataset(join(this.root, name)).length === 0) return null;
    if (!existsSync(path)) return null;
    const mtimeMs = statSync(path).mtimeMs;
    const hit = this.cache.get(name);
    if (hit && hit.mtimeMs === mtimeMs) return hit.m;
    // parseManifest rejects anything but plain file names, so no manifest can point outside.
    let json: unknown;
    try { json = JSON.parse(readFileSync(path, 'utf8')); } catch (err) { throw new Error(`${path} is not JSON: ${(err as Error).message.slice(0, 120)}`); }
    const pm = parseManifest(json, path);
    const file = (role: 'train' | 'val', s: typeof pm.train): DatasetFile => ({
      name: s.file, role, dtype: 'u8', tokens: s.tokens, bytes: s.tokens, sha256: s.sha256,
    });
    const m: DatasetManifest = { name, tokenizer: pm.tokenizer, vocab: pm.vocab, files: [file('train', pm.train), file('val', pm.val)] };
    this.cache.set(name, { mtimeMs, m });
    return m;
  }

  filePath(dataset: string, file: string): string {
    return join(this.root, dataset, file);
  }
}

/** The URLs a volunteer fetches a dataset's files from, for run `runId`. */
export function fileRefs(runId: string, m: DatasetManifest): { train: DataFileRef[]; val: DataFileRef } {
  const ref = (f: DatasetFile): DataFileRef => ({
    name: f.name, url: `/api/runs/${runId}/data/${f.name}`, sha256: f.sha256, bytes: f.bytes, dtype: f.dtype,
  });
  const train = m.files.filter((f) => f.role === 'train').map(ref);
  const val = m.files.find((f) => f.role === 'val');
  if (train.length === 0 || !val) throw new Error(`dataset ${m.name} needs at least one train file and one val file`);
  return { train, val: ref(val) };
}

/** Name of the default run's dataset. */
export const DEFAULT_DATASET = 'moby-dick';

/**
 * Writes `<root>/moby-dick/` from the installed corpus package (src/data/corpus.ts: last
 * chapters held out) unless it is there already. saveDataset writes all or nothing.
 */
export function prepareMobyDick(root: string): void {
  const dir = join(root, DEFAULT_DATASET);
  recoverDataset(dir); // a prepare killed between its renames left the dataset aside
  if (existsSync(join(dir, 'manifest.json'))) return;
  saveDataset(datasetFromCorpus(), dir);
}
