// The manifest of a prepared dataset, and checks that need no file system, so the server,
// Node peers and browsers all read and verify datasets the same way.
import Type, { type Static } from 'typebox';
import { schemaProblem } from '../protocol/check.ts';
import { VOCAB } from './tokenizer.ts';

export const DATASET_FORMAT = 'murmur-dataset';
export const DATASET_VERSION = 1;

const Size = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
const Sha256 = Type.String({ pattern: '^[0-9a-f]{64}$' });

/** One tokenised split as stored: raw uint8 tokens in `file`, inside the dataset directory. */
const SplitInfo = Type.Object({
  // A plain file name: a path here could read anything on disk.
  file: Type.String({ pattern: '^[A-Za-z0-9._-]+$', maxLength: 255 }),
  tokens: Size,
  /** Lowercase hex sha256 of the file's bytes. */
  sha256: Sha256,
}, { additionalProperties: false });
export type SplitInfo = Static<typeof SplitInfo>;

/** One input text as it was read (before the UTF-8 BOM, if any, was dropped). */
const SourceInfo = Type.Object({
  file: Type.String({ minLength: 1, maxLength: 4096 }),
  bytes: Size,
  sha256: Sha256,
}, { additionalProperties: false });
export type SourceInfo = Static<typeof SourceInfo>;

/** Most input files one dataset records (its manifest lists each). */
export const MAX_SOURCES = 100_000;

/** manifest.json of a prepared dataset. */
const Manifest = Type.Object({
  format: Type.Literal(DATASET_FORMAT),
  version: Type.Literal(DATASET_VERSION),
  vocab: Type.Literal(VOCAB),
  tokenizer: Type.Literal('bytes'),
  train: SplitInfo,
  val: SplitInfo,
  sources: Type.Array(SourceInfo, { maxItems: MAX_SOURCES }),
  /** Share of the text held out for validation (as requested; the cut moves to a line end). */
  valFraction: Type.Number({ exclusiveMinimum: 0, exclusiveMaximum: 1 }),
  /** Longest context the splits were checked against (each split holds at least ctx+1 tokens). */
  ctx: Type.Optional(Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER })),
  /** ISO-8601 time of preparation. Not part of the data's identity; the hashes are. */
  created: Type.String({ maxLength: 64 }),
}, { additionalProperties: false });
export type Manifest = Static<typeof Manifest>;

/** A dataset in memory: what training and evaluation read, whatever it was loaded from. */
export interface Dataset {
  /** (N_train,) byte tokens. */
  train: Uint8Array;
  /** (N_val,) byte tokens. */
  val: Uint8Array;
  manifest: Manifest;
}

/**
 * Checks an untrusted parsed manifest.json against its schema; `where` names it in errors, and
 * `fix` says what to do about it. The writer checks by it too before it saves: a dataset is never
 * written that its loader refuses.
 */
export function parseManifest(json: unknown, where: string, fix = 'prepare the dataset again with `murmur prepare`'): Manifest {
  const fail = (what: string): never => {
    throw new Error(`${where}: ${what}; ${fix}`);
  };
  // Another format or version is worded as such, not as a field that is off.
  const m = json !== null && typeof json === 'object' && !Array.isArray(json) ? (json as Record<string, unknown>) : {};
  if (m.format !== undefined && m.format !== DATASET_FORMAT) fail(`format is ${JSON.stringify(m.format)}, expected "${DATASET_FORMAT}"`);
  if (m.version !== undefined && m.version !== DATASET_VERSION) fail(`version ${JSON.stringify(m.version)} is not supported (this Murmur reads version ${DATASET_VERSION})`);
  const problem = schemaProblem(Manifest, json, 'manifest');
  if (problem !== null) fail(problem);
  const manifest = json as Manifest;
  for (const key of ['train', 'val'] as const) {
    if (manifest[key].file === '.' || manifest[key].file === '..') fail(`manifest.${key}.file is not a plain file name`);
  }
  return manifest;
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
