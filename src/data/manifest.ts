// The manifest of a prepared dataset, and checks that need no file system, so the server,
// Node peers and browsers all read and verify datasets the same way.
import { VOCAB } from './tokenizer.ts';

export const DATASET_FORMAT = 'murmur-dataset';
export const DATASET_VERSION = 1;

/** One tokenised split as stored: raw uint8 tokens in `file`. */
export interface SplitInfo {
  file: string;
  tokens: number;
  /** Lowercase hex sha256 of the file's bytes. */
  sha256: string;
}

/** One input text as it was read (before the UTF-8 BOM, if any, was dropped). */
export interface SourceInfo {
  file: string;
  bytes: number;
  sha256: string;
}

export interface Manifest {
  format: typeof DATASET_FORMAT;
  version: typeof DATASET_VERSION;
  vocab: typeof VOCAB;
  tokenizer: 'bytes';
  train: SplitInfo;
  val: SplitInfo;
  sources: SourceInfo[];
  /** Share of the text held out for validation (as requested; the cut moves to a line end). */
  valFraction: number;
  /** Longest context the splits were checked against (each split holds at least ctx+1 tokens). */
  ctx?: number;
  /** ISO-8601 time of preparation. Not part of the data's identity; the hashes are. */
  created: string;
}

/** A dataset in memory: what training and evaluation read, whatever it was loaded from. */
export interface Dataset {
  /** (N_train,) byte tokens. */
  train: Uint8Array;
  /** (N_val,) byte tokens. */
  val: Uint8Array;
  manifest: Manifest;
}

/** Checks an untrusted parsed manifest.json; `where` names it in errors. */
export function parseManifest(json: unknown, where: string): Manifest {
  const fail = (what: string): never => {
    throw new Error(`${where}: ${what}; prepare the dataset again with \`murmur prepare\``);
  };
  if (typeof json !== 'object' || json === null || Array.isArray(json)) fail('not a JSON object');
  const m = json as Record<string, unknown>;
  if (m.format !== DATASET_FORMAT) fail(`format is ${JSON.stringify(m.format)}, expected "${DATASET_FORMAT}"`);
  if (m.version !== DATASET_VERSION) fail(`version ${JSON.stringify(m.version)} is not supported (this Murmur reads version ${DATASET_VERSION})`);
  if (m.vocab !== VOCAB) fail(`vocab is ${JSON.stringify(m.vocab)}, expected ${VOCAB}`);
  if (m.tokenizer !== 'bytes') fail(`tokenizer is ${JSON.stringify(m.tokenizer)}, expected "bytes"`);
  for (const key of ['train', 'val'] as const) checkEntry(m[key], `${key}`, 'tokens', fail, true);
  if (!Array.isArray(m.sources)) fail('sources is not a list');
  (m.sources as unknown[]).forEach((s, i) => checkEntry(s, `sources[${i}]`, 'bytes', fail, false));
  if (typeof m.valFraction !== 'number' || !(m.valFraction > 0 && m.valFraction < 1)) fail('valFraction is not a number in (0, 1)');
  if (m.ctx !== undefined && !(Number.isInteger(m.ctx) && (m.ctx as number) > 0)) fail('ctx is not a positive integer');
  if (typeof m.created !== 'string') fail('created is not a string');
  return m as unknown as Manifest;
}

function checkEntry(
  v: unknown,
  name: string,
  sizeKey: 'tokens' | 'bytes',
  fail: (what: string) => never,
  localFile: boolean,
): void {
  if (typeof v !== 'object' || v === null) fail(`${name} is missing`);
  const e = v as Record<string, unknown>;
  if (typeof e.file !== 'string' || e.file === '') fail(`${name}.file is not a file name`);
  // Split files live inside the dataset directory: a path here could read anything on disk.
  if (localFile && !/^[A-Za-z0-9._-]+$/.test(e.file as string)) fail(`${name}.file ${JSON.stringify(e.file)} is not a plain file name`);
  if (localFile && (e.file === '.' || e.file === '..')) fail(`${name}.file is not a plain file name`);
  if (!Number.isSafeInteger(e[sizeKey]) || (e[sizeKey] as number) < 0) fail(`${name}.${sizeKey} is not a size`);
  if (typeof e.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(e.sha256)) fail(`${name}.sha256 is not a sha256 hex digest`);
}

/** Lowercase hex sha256 via WebCrypto (browsers and Node alike). */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * Throws unless `bytes` are exactly the split the manifest describes; for data that arrives
 * over the network (Node code on disk uses loadDataset, which does the same synchronously).
 */
export async function verifySplit(bytes: Uint8Array, info: SplitInfo, where: string): Promise<void> {
  checkSplitSize(bytes.length, info, where);
  checkSplitHash(await sha256Hex(bytes), info, where);
}

export function checkSplitSize(size: number, info: SplitInfo, where: string): void {
  if (size !== info.tokens) {
    throw new Error(`${where}: ${info.file} has ${size} bytes but the manifest says ${info.tokens} tokens; the file is truncated or replaced, prepare the dataset again`);
  }
}

export function checkSplitHash(sha256: string, info: SplitInfo, where: string): void {
  if (sha256 !== info.sha256) {
    throw new Error(`${where}: ${info.file} is corrupted: sha256 ${sha256.slice(0, 12)}… does not match the manifest's ${info.sha256.slice(0, 12)}…; prepare the dataset again`);
  }
}
