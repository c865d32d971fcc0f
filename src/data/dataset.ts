// Prepared datasets on disk (Node only): a directory holding train.bin and val.bin (raw uint8
// byte tokens) and manifest.json with sizes and sha256 hashes. Preparing writes everything into
// a temporary directory beside the target and renames it into place last, so a failure at any
// point leaves no dataset, half a dataset, or stray temporary files behind.
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CORPUS_SOURCE, DEFAULT_VAL_FRACTION, loadDefaultCorpus } from './corpus.ts';
import {
  DATASET_FORMAT, DATASET_VERSION, MAX_SOURCES, checkSplitHash, checkSplitSize, parseManifest,
  type Dataset, type Manifest, type SourceInfo,
} from './manifest.ts';
import { VOCAB, decodeStrict } from './tokenizer.ts';

export type { Dataset, Manifest } from './manifest.ts';

export interface PrepareOptions {
  /** Share of the text held out for validation, from the end. Default 0.05. */
  valFraction?: number;
  /** Context length the dataset must support: both splits need at least ctx+1 tokens. */
  ctx?: number;
  /** Replace `outDir` if it already holds a prepared dataset. */
  force?: boolean;
}

const MANIFEST = 'manifest.json';
const TRAIN_FILE = 'train.bin';
const VAL_FILE = 'val.bin';
const BOM = [0xef, 0xbb, 0xbf];

/** Reads UTF-8 text files, splits off the tail for validation and writes a dataset directory. */
export async function prepareDataset(files: string[], outDir: string, opts: PrepareOptions = {}): Promise<Manifest> {
  const valFraction = opts.valFraction ?? DEFAULT_VAL_FRACTION;
  if (typeof valFraction !== 'number' || !(valFraction > 0 && valFraction < 1)) {
    throw new Error(`valFraction must be a number between 0 and 1 (exclusive), got ${valFraction}`);
  }
  if (opts.ctx !== undefined && !(Number.isInteger(opts.ctx) && opts.ctx > 0)) {
    throw new Error(`ctx must be a positive integer, got ${opts.ctx}`);
  }
  if (files.length === 0) throw new Error('no input files given');
  // The manifest lists each input; a loader reads at most MAX_SOURCES of them.
  if (files.length > MAX_SOURCES) throw new Error(`${files.length} input files given; a dataset records at most ${MAX_SOURCES}: join them into fewer files first`);
  // Everything that can be wrong with the request is checked before the disk is touched.
  checkOutDir(outDir, opts.force ?? false);

  const sources: SourceInfo[] = [];
  const texts: Uint8Array[] = [];
  for (const file of files) {
    const raw = readInput(file);
    const text = hasBom(raw) ? raw.subarray(BOM.length) : raw;
    decodeStrict(text, file); // throws naming the file and byte offset (counted after any BOM)
    sources.push({ file, bytes: raw.length, sha256: sha256(raw) });
    texts.push(text);
  }
  const all = joinTexts(texts);
  if (all.length === 0) {
    throw new Error(`no text to prepare: ${files.length === 1 ? `${files[0]} is empty` : `all of ${files.join(', ')} are empty`}`);
  }
  const cut = splitPoint(all, valFraction);
  const train = all.slice(0, cut);
  const val = all.slice(cut);
  checkSplitLength('training', train.length, opts.ctx, valFraction);
  checkSplitLength('validation', val.length, opts.ctx, valFraction);

  const manifest = buildManifest(train, val, sources, valFraction, opts.ctx);
  saveDataset({ train, val, manifest }, outDir, { force: opts.force });
  return manifest;
}

/** Reads a prepared dataset, checking every split's size and sha256 against the manifest. */
export function loadDataset(dir: string): Dataset {
  recoverDataset(dir);
  const manifestPath = path.join(dir, MANIFEST);
  let text: string;
  try {
    text = fs.readFileSync(manifestPath, 'utf8');
  } catch (err) {
    if (code(err) === 'ENOENT') {
      throw new Error(`${dir} is not a prepared dataset: it has no ${MANIFEST} (create one with \`murmur prepare\`)`, { cause: err });
    }
    throw new Error(`cannot read ${manifestPath}: ${(err as Error).message}`, { cause: err });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${manifestPath} is not valid JSON (${(err as Error).message}); prepare the dataset again`, { cause: err });
  }
  const manifest = parseManifest(json, manifestPath);
  const read = (info: Manifest['train']): Uint8Array => {
    const p = path.join(dir, info.file);
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(fs.readFileSync(p));
    } catch (err) {
      throw new Error(`${dir}: cannot read ${info.file} (${code(err) ?? (err as Error).message}); prepare the dataset again`, { cause: err });
    }
    checkSplitSize(bytes.length, info, dir);
    checkSplitHash(sha256(bytes), info, dir);
    return bytes;
  };
  return { train: read(manifest.train), val: read(manifest.val), manifest };
}

/**
 * The default run's dataset (Moby Dick, last chapters held out) in the same shape as a
 * prepared one, so training and evaluation never need to know which they were given.
 */
export function datasetFromCorpus(): Dataset {
  const { train, val, meta } = loadDefaultCorpus();
  // The source hash covers the book as laid out (train, the chapter break, val).
  const book = createHash('sha256').update(train).update('\n\n\n').update(val).digest('hex');
  return { train, val, manifest: buildManifest(train, val, [{ file: CORPUS_SOURCE, bytes: meta.bytes, sha256: book }], DEFAULT_VAL_FRACTION) };
}

/** The manifest of two splits: the one place its fields and hashes are filled in. */
function buildManifest(train: Uint8Array, val: Uint8Array, sources: SourceInfo[], valFraction: number, ctx?: number): Manifest {
  return {
    format: DATASET_FORMAT,
    version: DATASET_VERSION,
    vocab: VOCAB,
    tokenizer: 'bytes',
    train: { file: TRAIN_FILE, tokens: train.length, sha256: sha256(train) },
    val: { file: VAL_FILE, tokens: val.length, sha256: sha256(val) },
    sources,
    valFraction,
    ...(ctx !== undefined ? { ctx } : {}),
    created: new Date().toISOString(),
  };
}

/** Writes `ds` as a dataset directory: all or nothing (temp dir, fsync, rename). */
export function saveDataset(ds: Dataset, outDir: string, opts: { force?: boolean } = {}): void {
  // Checked as loadDataset (and the coordinator) will read it back: nothing is written that
  // they would refuse.
  parseManifest(JSON.parse(JSON.stringify(ds.manifest)), `cannot write dataset to ${outDir}: its manifest would not load`, 'nothing written');
  const target = path.resolve(outDir);
  const replacing = checkOutDir(target, opts.force ?? false);
  const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const tmp = `${target}.tmp-${tag}`;
  let madeParent: string | undefined;
  let old: string | null = null;
  try {
    madeParent = fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.mkdirSync(tmp);
    writeSynced(path.join(tmp, ds.manifest.train.file), ds.train);
    writeSynced(path.join(tmp, ds.manifest.val.file), ds.val);
    writeSynced(path.join(tmp, MANIFEST), new TextEncoder().encode(JSON.stringify(ds.manifest, null, 2) + '\n'));
    fsyncPath(tmp);
    if (replacing) {
      // rename() cannot replace a non-empty directory: move the old one aside first.
      const aside = `${target}.old-${tag}`;
      fs.renameSync(target, aside);
      old = aside;
    }
    fs.renameSync(tmp, target);
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    if (old) fs.renameSync(old, target); // put the previous dataset back
    if (madeParent) fs.rmSync(madeParent, { recursive: true, force: true });
    throw new Error(`cannot write dataset to ${outDir}: ${(err as Error).message}`, { cause: err });
  }
  // The dataset is in place from here on; what follows only tidies up.
  fsyncPath(path.dirname(target));
  if (old) fs.rmSync(old, { recursive: true, force: true });
}

/**
 * Puts right what a prepare killed part way left beside `target` (saveDataset: write
 * `<name>.tmp-<pid>-<hex>`, move the old dataset aside to `<name>.old-<pid>-<hex>`, rename the
 * new one in, remove the old). Killed between the two renames, `<name>` is missing and the
 * previous dataset is whole in its `.old-` folder: it is put back, as if the replace had never
 * begun. Temps (each as big as a dataset) are removed, and asides once a dataset is in place.
 * What a prepare still running left (its pid alive) is not touched. Returns the names it moved
 * or removed.
 */
export function recoverDataset(target: string): string[] {
  const dir = path.dirname(path.resolve(target));
  const base = path.basename(path.resolve(target));
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (err) {
    if (code(err) === 'ENOENT') return [];
    throw err;
  }
  const stale = (kind: 'tmp' | 'old') => names.filter((n) => {
    const m = /^(\d+)-[0-9a-f]{8}$/.exec(n.startsWith(`${base}.${kind}-`) ? n.slice(`${base}.${kind}-`.length) : '');
    return m !== null && (Number(m[1]) === process.pid || !alive(Number(m[1])));
  });
  const done: string[] = [];
  const asides = stale('old');
  if (!fs.existsSync(path.join(dir, base))) {
    const whole = asides.filter((n) => isDatasetDir(path.join(dir, n)))
      .sort((a, b) => fs.statSync(path.join(dir, b)).mtimeMs - fs.statSync(path.join(dir, a)).mtimeMs);
    if (whole[0] !== undefined) {
      fs.renameSync(path.join(dir, whole[0]), path.join(dir, base));
      done.push(`${whole[0]} -> ${base}`);
    }
  }
  const leftovers = fs.existsSync(path.join(dir, base)) ? [...stale('tmp'), ...asides.filter((n) => !done.some((d) => d.startsWith(`${n} `)))] : stale('tmp');
  for (const n of leftovers) {
    fs.rmSync(path.join(dir, n), { recursive: true, force: true });
    done.push(`${n} removed`);
  }
  return done;
}

/** Whether process `pid` runs (EPERM: it does, as another user). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return code(err) === 'EPERM';
  }
}

/**
 * Refuses an existing output unless forced, and even then only replaces a directory that is
 * empty or holds a dataset, so a mistyped --out never deletes unrelated files. Returns whether
 * there is something to replace. What a killed prepare left is put right first (recoverDataset).
 */
function checkOutDir(outDir: string, force: boolean): boolean {
  recoverDataset(outDir);
  let st: fs.Stats;
  try {
    st = fs.lstatSync(outDir);
  } catch (err) {
    if (code(err) === 'ENOENT') return false;
    throw new Error(`cannot check output ${outDir}: ${(err as Error).message}`, { cause: err });
  }
  if (!force) throw new Error(`output ${outDir} already exists; choose another directory or pass --force to replace it`);
  if (!st.isDirectory()) throw new Error(`refusing to replace ${outDir}: it is not a directory`);
  const entries = fs.readdirSync(outDir);
  if (entries.length > 0 && !isDatasetDir(outDir)) {
    throw new Error(`refusing to replace ${outDir}: it is not a Murmur dataset (no valid ${MANIFEST} with format "${DATASET_FORMAT}")`);
  }
  return true;
}

/** True when `dir` holds a manifest its schema accepts (the one loadDataset reads it by). */
function isDatasetDir(dir: string): boolean {
  const file = path.join(dir, MANIFEST);
  try {
    parseManifest(JSON.parse(fs.readFileSync(file, 'utf8')), file);
    return true;
  } catch {
    return false;
  }
}

function readInput(file: string): Uint8Array {
  try {
    return new Uint8Array(fs.readFileSync(file));
  } catch (err) {
    const why: Record<string, string> = {
      ENOENT: 'file not found',
      EISDIR: 'it is a directory, not a text file',
      EACCES: 'permission denied',
      EPERM: 'permission denied',
    };
    const c = code(err);
    throw new Error(`cannot read input ${file}: ${(c && why[c]) || (err as Error).message}`, { cause: err });
  }
}

/**
 * Concatenates documents with one blank line between them, so the model sees a document
 * boundary as a paragraph break and never a word glued across two files.
 */
function joinTexts(texts: Uint8Array[]): Uint8Array {
  const parts: Uint8Array[] = [];
  const nl = new Uint8Array([0x0a, 0x0a]);
  for (const t of texts) {
    if (t.length === 0) continue;
    if (parts.length > 0) {
      const prev = parts[parts.length - 1];
      parts.push(nl.subarray(prev[prev.length - 1] === 0x0a ? 1 : 0));
    }
    parts.push(t);
  }
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

/**
 * Byte index where validation starts: the line start nearest to the requested share, searched
 * within half the validation length either way; otherwise the nearest character boundary, so
 * both splits stay valid UTF-8.
 */
export function splitPoint(text: Uint8Array, valFraction: number): number {
  const n = text.length;
  const target = Math.min(n - 1, Math.max(1, Math.round(n * (1 - valFraction))));
  const reach = Math.floor((n - target) / 2);
  for (let d = 0; d <= reach; d++) {
    for (const p of [target - d, target + d]) {
      // p is a line start when the byte before it is a newline.
      if (p > 0 && p < n && text[p - 1] === 0x0a) return p;
    }
  }
  let p = target;
  while (p > 0 && (text[p] & 0xc0) === 0x80) p--; // step off UTF-8 continuation bytes
  return p;
}

function checkSplitLength(which: string, tokens: number, ctx: number | undefined, valFraction: number): void {
  const need = (ctx ?? 1) + 1;
  if (tokens >= need) return;
  const fix = which === 'validation'
    ? `raise --val-fraction (now ${valFraction})${ctx ? ' or lower --ctx' : ''}, or add more text`
    : `lower --val-fraction (now ${valFraction})${ctx ? ' or lower --ctx' : ''}, or add more text`;
  throw new Error(
    `the ${which} text is ${tokens} tokens but ${ctx ? `a context of ${ctx}` : 'training'} needs at least ${need}; ${fix}`,
  );
}

function writeSynced(file: string, bytes: Uint8Array): void {
  const fd = fs.openSync(file, 'wx');
  try {
    let off = 0;
    while (off < bytes.length) off += fs.writeSync(fd, bytes, off, bytes.length - off);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** fsync a directory so the entries just created or renamed in it survive a crash. */
function fsyncPath(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function hasBom(b: Uint8Array): boolean {
  return b.length >= 3 && b[0] === BOM[0] && b[1] === BOM[1] && b[2] === BOM[2];
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function code(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}
