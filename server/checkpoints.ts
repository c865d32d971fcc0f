// Checkpoints: one replica's slow state (φ, outer momentum) plus counters and config, in
// safetensors so any reader opens it. Layout of `<dataDir>/checkpoints/<run>/<id>.safetensors`:
//   tensors   phi.<HF name>       e.g. phi.transformer.h.0.attn.c_attn.weight  (C, 3C)
//             momentum.<HF name>  same shapes
//   metadata  format "murmur-checkpoint", version "1", run / model / train (JSON), step,
//             round, tokens, val_loss ("" if unknown), peer, created_at, layout (sha256 of the
//             layout signature)
// and beside it `<id>.json` with {id, runId, step, round, valLoss, tokens, peerId, sha256, bytes,
// file, createdAt}. Both are written atomically, the .json second, and the SQLite row last: a
// checkpoint is "completed" once its row exists. On start, `reconcile` finishes or undoes
// whatever a crash interrupted.
//
// What the downloads serve is derived once, when the checkpoint is saved, into files beside it
// (`<id>.state.bin`: the bootstrap state frame; `<id>.hf-model.bin` and `<id>.hf-config.bin`:
// the Hugging Face export), and streamed from disk: a request never reads, hashes or decodes a
// whole checkpoint. A checkpoint saved before these files existed gets them on first request,
// derived once however many requests wait for them.
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, createReadStream, existsSync, fstatSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, statSync, unlinkSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import type { Db } from './db.ts';
import { removeStaleTemps, writeFileAtomicAsync } from './fsutil.ts';
import type { ModelConfig } from '../src/model/config.ts';
import { buildLayout, layoutSignature, view, type Layout } from '../src/model/layout.ts';
import { concatBytes, readSafetensors, safetensorsLength, safetensorsParts, tensorF32, type SafeTensorIn } from '../src/model/safetensors.ts';
import { ID_PATTERN, WireModelConfig, type CheckpointRef, type RunInfo } from '../src/protocol/messages.ts';
import { CheckpointInfo } from '../src/protocol/api.ts';
import { schemaProblem } from '../src/protocol/check.ts';
import { decodeStateMeta, encodeStateFrame, type StateFrame } from '../src/protocol/state-frame.ts';
import { HfGpt2ConfigModel, hfGpt2Config, hfModelSafetensors } from '../src/model/hf-export.ts';
import { stateCheckBatchCount } from '../src/data/sampler.ts';

/** The files derived from a checkpoint for downloads, by kind. */
export const DERIVED = {
  state: (id: string) => `${id}.state.bin`,
  hfModel: (id: string) => `${id}.hf-model.bin`,
  hfConfig: (id: string) => `${id}.hf-config.bin`,
} as const;
export type DerivedKind = keyof typeof DERIVED;

export const CHECKPOINT_FORMAT = 'murmur-checkpoint';
export const CHECKPOINT_VERSION = '1';

export type { CheckpointInfo };

export interface LoadedCheckpoint {
  info: CheckpointInfo;
  model: ModelConfig;
  layout: Layout;
  phi: Float32Array;
  momentum: Float32Array;
  metadata: Record<string, string>;
}

interface Row {
  id: string; run_id: string; step: number; round: number; val_loss: number | null; tokens: number;
  peer_id: string | null; sha256: string; bytes: number; file: string; created_at: number; val_batches: number | null;
}

const fromRow = (r: Row): CheckpointInfo => ({
  id: r.id, runId: r.run_id, step: r.step, round: r.round, valLoss: r.val_loss, tokens: r.tokens,
  peerId: r.peer_id, sha256: r.sha256, bytes: r.bytes, file: r.file, createdAt: r.created_at,
  ...(r.val_batches !== null ? { valBatches: r.val_batches } : {}),
});

/** Whether a checkpoint's loss is the coordinator's measurement on `run`'s state check windows. */
export function measuredForRun(info: CheckpointInfo, run: RunInfo): boolean {
  return info.valBatches === stateCheckBatchCount(run.model, run.train);
}

/**
 * Whether two versions of a run measure a state on the same windows (its batch and sequence
 * length). A change forgets every measurement of its checkpoints (forgetMeasurements), and a
 * measurement taken on the run as it was before one is never recorded as the run's: the count of
 * batches alone, all measuredForRun compares, is often the same on the new windows.
 */
export function sameWindows(a: RunInfo, b: RunInfo): boolean {
  return a.train.batch === b.train.batch && a.train.seqLen === b.train.seqLen;
}

export function layoutHash(layout: Layout): string {
  return createHash('sha256').update(layoutSignature(layout)).digest('hex');
}

/** Encodes a checkpoint file (φ and momentum under HF names, config and counters as metadata). */
export function encodeCheckpoint(run: RunInfo, frame: StateFrame, peerId: string | null, createdAt: number): Uint8Array {
  return concatBytes(encodeCheckpointParts(run, frame, peerId, createdAt));
}

/** encodeCheckpoint as the file's pieces (header, then views of the frame's tensors): no copy. */
export function encodeCheckpointParts(run: RunInfo, frame: StateFrame, peerId: string | null, createdAt: number): Uint8Array[] {
  const layout = buildLayout(run.model);
  if (frame.meta.floats !== layout.total) {
    throw new Error(`state has ${frame.meta.floats} floats; run ${run.id} (${run.preset}) needs ${layout.total}`);
  }
  const tensors: SafeTensorIn[] = [];
  for (const [prefix, flat] of [['phi.', frame.phi], ['momentum.', frame.momentum]] as const) {
    for (const t of layout.tensors) tensors.push({ name: prefix + t.name, shape: t.shape, data: view(flat, t) });
  }
  const { meta } = frame;
  return safetensorsParts(tensors, {
    format: CHECKPOINT_FORMAT,
    version: CHECKPOINT_VERSION,
    run: JSON.stringify(run),
    model: JSON.stringify(run.model),
    train: JSON.stringify(run.train),
    step: String(meta.step),
    round: String(meta.round),
    tokens: String(meta.tokens),
    val_loss: meta.valLoss === null ? '' : String(meta.valLoss),
    peer: peerId ?? '',
    created_at: String(createdAt),
    layout: layoutHash(layout),
  });
}

/** Reads a checkpoint file from bytes: checks its magic, version and layout, returns flat state. */
export function decodeCheckpoint(bytes: Uint8Array): Omit<LoadedCheckpoint, 'info'> {
  const f = readSafetensors(bytes);
  const md = f.metadata;
  if (md.format !== CHECKPOINT_FORMAT) throw new Error(`not a Murmur checkpoint (metadata format=${JSON.stringify(md.format)})`);
  if (md.version !== CHECKPOINT_VERSION) throw new Error(`checkpoint version ${md.version}; this build reads version ${CHECKPOINT_VERSION}`);
  let v: unknown;
  try { v = JSON.parse(md.model ?? 'null'); } catch { throw new Error('checkpoint metadata model is not JSON'); }
  // The same schema a run's model travels under: a layout is never built from fields it names wrongly.
  const problem = schemaProblem(WireModelConfig, v, 'checkpoint metadata model');
  if (problem !== null) throw new Error(problem);
  const model = v as ModelConfig;
  const layout = buildLayout(model);
  if (md.layout !== layoutHash(layout)) throw new Error('checkpoint layout hash does not match its model config');
  const phi = new Float32Array(layout.total);
  const momentum = new Float32Array(layout.total);
  for (const [prefix, flat] of [['phi.', phi], ['momentum.', momentum]] as const) {
    for (const t of layout.tensors) {
      const v = tensorF32(f, prefix + t.name);
      if (v.length !== t.size) throw new Error(`checkpoint tensor ${prefix}${t.name} has ${v.length} values, expected ${t.size}`);
      flat.set(v, t.offset);
    }
  }
  return { model, layout, phi, momentum, metadata: md };
}

export function sha256Hex(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Bytes hashed between yields to the event loop (~5-10 ms of SHA-256). */
const HASH_SLICE = 4 << 20;

/**
 * sha256Hex of a buffer, or of pieces taken in order, in slices that yield to the event loop
 * between them: for checkpoint-sized data.
 */
export async function sha256HexYielding(data: Uint8Array | Uint8Array[]): Promise<string> {
  const h = createHash('sha256');
  let since = 0;
  for (const b of Array.isArray(data) ? data : [data]) {
    for (let off = 0; off < b.length; off += HASH_SLICE) {
      const end = Math.min(b.length, off + HASH_SLICE);
      h.update(b.subarray(off, end));
      since += end - off;
      if (since >= HASH_SLICE) { since = 0; await new Promise<void>((r) => setImmediate(r)); }
    }
  }
  return h.digest('hex');
}

/** How long a checkpoint whose derivation failed answers with that failure before one is tried again. */
export const DERIVE_RETRY_MS = 60_000;
const DERIVE_FAILURES_KEPT = 256;

/** A checkpoint's id as save() makes it: `s<step>-<8 hex>`. */
const CHECKPOINT_ID = /^s\d+-[0-9a-f]{8}$/;
/** Names of a checkpoint's data files (`s<step>-<8 hex>` and what follows): the file itself and its derived ones. */
const CHECKPOINT_FILE = /^(s\d+-[0-9a-f]{8})\.(?:safetensors|state\.bin|hf-model\.bin|hf-config\.bin)$/;
const RUN_DIR = new RegExp(ID_PATTERN);

/** The name of a checkpoint's data file: the only `file` a row or record may give. */
export const checkpointFileName = (id: string): string => `${id}.safetensors`;

function derivedFiles(id: string): string[] {
  return Object.values(DERIVED).map((name) => name(id));
}

/**
 * Every file a checkpoint may have: its record, its data, its derived downloads. All named from
 * its id (never from the `file` a row gives), and none for an id that is not one save() makes.
 */
function checkpointFiles(info: Pick<CheckpointInfo, 'id'>): string[] {
  if (!CHECKPOINT_ID.test(info.id)) return [];
  return [`${info.id}.json`, checkpointFileName(info.id), ...derivedFiles(info.id)];
}

/**
 * What is wrong with a checkpoint's row or record, or null: its schema, and a `file` that is not
 * the one its id names. A database or record restored from someone else's backup is read through
 * this before any of its fields becomes a path.
 */
function infoProblem(v: unknown, what: string): string | null {
  const problem = schemaProblem(CheckpointInfo, v, what);
  if (problem !== null) return problem;
  const info = v as CheckpointInfo;
  if (!CHECKPOINT_ID.test(info.id)) return `${what}.id ${JSON.stringify(info.id)} is not a checkpoint id (s<step>-<8 hex>)`;
  if (info.file !== checkpointFileName(info.id)) return `${what}.file ${JSON.stringify(info.file)} is not ${checkpointFileName(info.id)}`;
  return null;
}

/** The size of the plain file at `path`, or null when there is none (gone, a folder). */
function fileSize(path: string): number | null {
  try {
    const st = statSync(path);
    return st.isFile() ? st.size : null;
  } catch {
    return null;
  }
}

/** sha256 of a file, streamed: a checkpoint is never read into memory whole to be checked. */
async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Bytes read from the start of a derived file to tell whether it is whole: its header, and all of a config. */
const DERIVED_HEAD = 1 << 20;

/**
 * Whether a derived file holds all its header says it holds (a config: whether it parses as one).
 * They are written without fsync, so after the machine crashed one can hold only its first part,
 * not only nothing; served, a cut export would go out under its immutable ETag.
 */
function derivedWhole(path: string, kind: DerivedKind): boolean {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const size = fstatSync(fd).size;
    const head = new Uint8Array(Math.min(size, DERIVED_HEAD));
    if (readSync(fd, head, 0, head.length, 0) !== head.length) return false;
    if (kind === 'state') {
      return size === decodeStateMeta(head).bytes;
    }
    if (kind === 'hfModel') return size === safetensorsLength(head);
    const config: unknown = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(head));
    return size <= DERIVED_HEAD && schemaProblem(HfGpt2ConfigModel, config, 'config.json') === null;
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** A checkpoint deleted while a download was deriving its files: the download answers 404. */
export class CheckpointGoneError extends Error {
  readonly statusCode = 404;
  constructor(info: Pick<CheckpointInfo, 'id' | 'runId'>) {
    super(`checkpoint "${info.id}" of run ${info.runId} was deleted`);
  }
}

/** Removes `names` from `dir`; one already gone is fine. */
function removeFiles(dir: string, names: readonly string[]): void {
  for (const f of names) {
    try { unlinkSync(join(dir, f)); } catch (err) { if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err; }
  }
}

export class CheckpointStore {
  /** Derivations under way (checkpoints saved before derived files existed): one per checkpoint. */
  private readonly deriving = new Map<string, Promise<void>>();
  /** The derivation queued last: derivations run one after another (derived()). */
  private deriveQueue: Promise<void> = Promise.resolve();
  /** Derivations that failed lately, by checkpoint id (at most DERIVE_FAILURES_KEPT). */
  private readonly deriveFailed = new Map<string, { at: number; err: Error }>();
  /**
   * Checkpoint files checked against their sha256, by id: each once (a stored checkpoint's file
   * never changes), however many downloads wait for it. At most one per stored checkpoint.
   */
  private readonly hashed = new Map<string, Promise<string | null>>();

  constructor(
    private readonly db: Db,
    readonly root: string,
    /** Newest checkpoints kept per run. */
    readonly keep: number,
  ) {
    mkdirSync(root, { recursive: true });
  }

  /** A run's checkpoint folder; a run id that is not one (a row from a hostile database) is refused. */
  dir(runId: string): string {
    if (!RUN_DIR.test(runId)) throw new Error(`checkpoint run id ${JSON.stringify(runId.slice(0, 80))} is not a run id; refused as a folder under ${this.root}`);
    return join(this.root, runId);
  }

  /**
   * Writes a checkpoint durably, then prunes to the newest `keep`; `createdAt` is raised past the
   * run's newest checkpoint's when it is not later (a clock set back). The hashing yields and the file
   * I/O is asynchronous, so the coordinator keeps serving peers meanwhile. `valBatches`: how many
   * validation batches the coordinator measured frame.meta.valLoss on (absent: not measured).
   */
  async save(run: RunInfo, frame: StateFrame, peerId: string | null, createdAt: number, valBatches?: number): Promise<CheckpointInfo> {
    const dir = this.dir(run.id);
    mkdirSync(dir, { recursive: true });
    // Never older than the run's newest checkpoint: the list, pruning and the checkpoint offered
    // go by createdAt, and a clock set back (an NTP step) made the one just saved the oldest,
    // pruned as it was acknowledged, while an older one stayed the bound and the offer.
    const newest = this.latest(run.id);
    if (newest !== null && createdAt <= newest.createdAt) createdAt = newest.createdAt + 1;
    const parts = encodeCheckpointParts(run, frame, peerId, createdAt);
    const size = parts.reduce((n, p) => n + p.length, 0);
    const id = `s${frame.meta.step}-${randomBytes(4).toString('hex')}`;
    const file = `${id}.safetensors`;
    const info: CheckpointInfo = {
      id, runId: run.id, step: frame.meta.step, round: frame.meta.round, valLoss: frame.meta.valLoss,
      tokens: frame.meta.tokens, peerId, sha256: await sha256HexYielding(parts), bytes: size, file, createdAt,
      ...(valBatches !== undefined ? { valBatches } : {}),
    };
    try {
      await writeFileAtomicAsync(join(dir, file), parts);
      await this.writeDerived(info, run.model, buildLayout(run.model), frame.phi, frame.momentum);
      await writeFileAtomicAsync(join(dir, `${id}.json`), new TextEncoder().encode(JSON.stringify(info, null, 2) + '\n'));
      // The row last, in here too: one that cannot be written (SQLite finding the disk full) must
      // not leave a record that the next start indexes as a checkpoint the upload was refused.
      this.insert(info);
    } catch (err) {
      // A full disk (or any failed write) leaves nothing behind: no row, no record, and none of
      // the checkpoint-sized files written before the failure, which nothing would ever remove.
      removeFiles(dir, checkpointFiles(info));
      throw err;
    }
    this.prune(run.id);
    return info;
  }

  list(runId: string): CheckpointInfo[] {
    return (this.db.prepare('SELECT * FROM checkpoints WHERE run_id = ? ORDER BY created_at DESC, step DESC').all(runId) as Row[]).map(fromRow);
  }

  get(runId: string, id: string): CheckpointInfo | null {
    const r = this.db.prepare('SELECT * FROM checkpoints WHERE run_id = ? AND id = ?').get(runId, id) as Row | undefined;
    return r ? fromRow(r) : null;
  }

  latest(runId: string): CheckpointInfo | null {
    return this.list(runId)[0] ?? null;
  }

  /**
   * The newest checkpoint whose loss the coordinator measured on the run's state check windows:
   * the one offered to newcomers and the bound for the next upload. A checkpoint saved by an
   * older coordinator (the peer's claimed loss, or other windows) counts once measured again.
   */
  current(run: RunInfo): CheckpointInfo | null {
    return this.list(run.id).find((c) => measuredForRun(c, run)) ?? null;
  }

  /**
   * Records the coordinator's measurement of a stored checkpoint (server/checkpoint-remeasure.ts):
   * its row, its `.json` and its bootstrap state frame carry the measured loss from now on. The
   * safetensors file keeps the metadata it was saved with (its sha256 is the checkpoint's
   * identity). Null, with nothing left behind, when the checkpoint was deleted before or while
   * this ran (pruned by a newer upload, withdrawn, or by the admin).
   */
  async remeasured(info: CheckpointInfo, valLoss: number, valBatches: number, l: LoadedCheckpoint): Promise<CheckpointInfo | null> {
    if (this.db.prepare('UPDATE checkpoints SET val_loss = ?, val_batches = ? WHERE id = ?').run(valLoss, valBatches, info.id).changes === 0) return null;
    const next: CheckpointInfo = { ...info, valLoss, valBatches };
    const dir = this.dir(info.runId);
    const written = [DERIVED.state(info.id), `${info.id}.json`];
    // Written as the checkpoint's derivation: after one under way (whose frame would say the
    // claimed loss), and a state download that finds no file waits for this one.
    const before = this.deriving.get(info.id) ?? Promise.resolve();
    const p: Promise<void> = before.catch(() => {}).then(async () => {
      await writeFileAtomicAsync(join(dir, written[0]!), this.stateFrame(next, l.layout, l.phi, l.momentum), 0o644, false);
      await writeFileAtomicAsync(join(dir, written[1]!), new TextEncoder().encode(JSON.stringify(next, null, 2) + '\n'));
    }).finally(() => { if (this.deriving.get(info.id) === p) this.deriving.delete(info.id); });
    this.deriving.set(info.id, p);
    await p;
    if (this.get(info.runId, info.id)) return next;
    removeFiles(dir, written);
    return null;
  }

  /**
   * Marks every checkpoint of a run (or the one `id`) as not measured on its windows (its batch or
   * sequence length changed): none is offered until measured again.
   */
  forgetMeasurements(runId: string, id?: string): void {
    if (id === undefined) this.db.prepare('UPDATE checkpoints SET val_batches = NULL WHERE run_id = ?').run(runId);
    else this.db.prepare('UPDATE checkpoints SET val_batches = NULL WHERE run_id = ? AND id = ?').run(runId, id);
  }

  /**
   * The checkpoint's data file. A `file` other than the one its id names, or a path that leaves
   * the run's folder, is refused: a row is never a way to name another file.
   */
  path(info: CheckpointInfo): string {
    const dir = resolve(this.dir(info.runId));
    const path = resolve(dir, info.file);
    if (!CHECKPOINT_ID.test(info.id) || info.file !== checkpointFileName(info.id) || !dir.startsWith(resolve(this.root) + sep) || !path.startsWith(dir + sep)) {
      throw new Error(`checkpoint ${JSON.stringify(info.id)} of run ${JSON.stringify(info.runId)} names file ${JSON.stringify(info.file)}, not its own ${checkpointFileName(info.id)} in ${dir}; refused`);
    }
    return path;
  }

  /**
   * What is wrong with a checkpoint's file on disk, or null when it is whole: its size against
   * the row (each time; a stat), and its sha256 (once per checkpoint, streamed). For the file
   * download, which streams the file as it is: a damaged one would go out under the checkpoint's
   * sha256 as its ETag, or stall short of its content-length.
   */
  async damage(info: CheckpointInfo): Promise<string | null> {
    const path = this.path(info);
    const size = await stat(path).then((st) => (st.isFile() ? st.size : null), () => null);
    if (size === null) return `${path} is missing`;
    if (size !== info.bytes) return `${path} is ${size} bytes on disk but ${info.bytes} in its record (truncated or replaced)`;
    let p = this.hashed.get(info.id);
    if (!p) {
      p = sha256File(path).then((got) => (got === info.sha256 ? null : `${path} has sha256 ${got}, but its record says ${info.sha256} (damaged on disk)`));
      this.hashed.set(info.id, p);
      // A read that failed (EIO, a file removed meanwhile) is tried again by the next download.
      p.catch(() => { if (this.hashed.get(info.id) === p) this.hashed.delete(info.id); });
    }
    return p;
  }

  /**
   * Takes a damaged checkpoint out of the index: its row goes, its files and record stay on disk
   * for the operator (each start names the record as unreadable until they are removed). False
   * when another request withdrew it first.
   */
  withdrawDamaged(info: CheckpointInfo): boolean {
    this.hashed.delete(info.id);
    return this.db.prepare('DELETE FROM checkpoints WHERE id = ?').run(info.id).changes > 0;
  }

  /**
   * Path of a derived download file of a checkpoint, derived now if it was saved before derived
   * files existed (concurrent callers share the one derivation). What a remeasure writes
   * (remeasured(): the bootstrap state alone) is waited for too, and a file it did not write is
   * derived after it.
   */
  async derived(info: CheckpointInfo, kind: DerivedKind): Promise<string> {
    const path = join(this.dir(info.runId), DERIVED[kind](info.id));
    for (;;) {
      // Empty: what an unsynced file can be after the machine crashed. Derive it again.
      if (existsSync(path) && statSync(path).size > 0) return path;
      // One that failed (a corrupt file, a full disk) is not tried again for a while: each try
      // reads and hashes the whole checkpoint, and any anonymous client can ask.
      const failed = this.deriveFailed.get(info.id);
      if (failed && Date.now() - failed.at < DERIVE_RETRY_MS) throw failed.err;
      let p = this.deriving.get(info.id);
      const own = !p;
      if (!p) {
        // One checkpoint at a time: each derivation holds the checkpoint read whole, φ and m, and the
        // files it writes, a few times the checkpoint's size (387 MB on `base`), and anonymous
        // downloads of every checkpoint that lacks its files (after an upgrade, or a crash) would
        // otherwise all derive at once, before the download budget is asked.
        const task = this.deriveQueue.then(() => {
          if (!this.get(info.runId, info.id)) throw new CheckpointGoneError(info);
          return this.load(info);
        }).then((l) => this.writeDerived(info, l.model, l.layout, l.phi, l.momentum));
        this.deriveQueue = task.catch(() => {});
        p = task.then(() => { this.deriveFailed.delete(info.id); }, (err: Error) => {
          if (err instanceof CheckpointGoneError) throw err;
          if (this.deriveFailed.size >= DERIVE_FAILURES_KEPT) this.deriveFailed.delete(this.deriveFailed.keys().next().value!);
          this.deriveFailed.set(info.id, { at: Date.now(), err });
          throw err;
        }).finally(() => this.deriving.delete(info.id));
        this.deriving.set(info.id, p);
      }
      await p;
      // Deleted while it was derived (by the admin, a newer upload's prune, a withdrawal): what the
      // derivation wrote after the delete removed the rest goes too, and the download is a 404.
      if (!this.get(info.runId, info.id)) {
        removeFiles(this.dir(info.runId), derivedFiles(info.id));
        throw new CheckpointGoneError(info);
      }
      // Our own derivation wrote every file; a remeasure's rewrite of the state alone did not, and
      // an export asked for meanwhile is derived now (it was answered with a missing file).
      if (own) return path;
    }
  }

  private async writeDerived(info: CheckpointInfo, model: ModelConfig, layout: Layout, phi: Float32Array, momentum: Float32Array): Promise<void> {
    const dir = this.dir(info.runId);
    // Not fsynced: they are made again from the checkpoint if lost or cut short by a crash (see
    // derived() and reconcile()).
    await writeFileAtomicAsync(join(dir, DERIVED.state(info.id)), this.stateFrame(info, layout, phi, momentum), 0o644, false);
    const hf = hfModelSafetensors(layout, phi, { murmur_run: info.runId, murmur_checkpoint: info.id, murmur_step: String(info.step) });
    await writeFileAtomicAsync(join(dir, DERIVED.hfModel(info.id)), hf, 0o644, false);
    await writeFileAtomicAsync(join(dir, DERIVED.hfConfig(info.id)), new TextEncoder().encode(JSON.stringify(hfGpt2Config(model))), 0o644, false);
  }

  /** The bootstrap state frame of a checkpoint: its counters and (measured) loss, φ and momentum. */
  private stateFrame(info: CheckpointInfo, layout: Layout, phi: Float32Array, momentum: Float32Array): Uint8Array {
    return encodeStateFrame({
      meta: { runId: info.runId, step: info.step, round: info.round, floats: layout.total, valLoss: info.valLoss, tokens: info.tokens },
      phi, momentum,
    });
  }

  async load(info: CheckpointInfo): Promise<LoadedCheckpoint> {
    const buf = await readFile(this.path(info));
    const bytes = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    if (await sha256HexYielding(bytes) !== info.sha256) throw new Error(`checkpoint ${info.id}: file does not match its sha256 (corrupt on disk)`);
    return { info, ...decodeCheckpoint(bytes) };
  }

  /** Deletes files first, the row last: a crash in between leaves a row that reconcile drops. */
  delete(info: CheckpointInfo): void {
    this.hashed.delete(info.id);
    removeFiles(this.dir(info.runId), checkpointFiles(info));
    this.db.prepare('DELETE FROM checkpoints WHERE id = ?').run(info.id);
  }

  ref(info: CheckpointInfo): CheckpointRef {
    return {
      id: info.id, step: info.step, round: info.round, sha256: info.sha256, valLoss: info.valLoss,
      stateUrl: `/api/runs/${info.runId}/checkpoints/${info.id}/state`,
    };
  }

  /**
   * After a crash, or on a restored backup: drop temp files, index a checkpoint whose files were
   * complete but whose row was not yet written (verified by size and sha256), drop rows whose
   * files are gone, remove derived downloads cut short (`rederived`: made again on request),
   * and drop rows that do not read (a `file` that is a path, a size the file does
   * not have) without touching any file they name. What is left unindexed is named in
   * `unreadable`; its files stay on disk for the operator.
   */
  reconcile(): { indexed: number; dropped: number; temps: number; orphans: number; rederived: number; unreadable: string[] } {
    let indexed = 0, dropped = 0, temps = 0, orphans = 0, rederived = 0;
    const unreadable: string[] = [];
    const known = new Set((this.db.prepare('SELECT id FROM checkpoints').all() as { id: string }[]).map((r) => r.id));
    const runs = new Set((this.db.prepare('SELECT id FROM runs').all() as { id: string }[]).map((r) => r.id));
    // Only run folders: a stray file (a .DS_Store, a note) or a symlink beside them is no run's.
    const runDirs = readdirSync(this.root, { withFileTypes: true }).filter((e) => e.isDirectory() && RUN_DIR.test(e.name)).map((e) => e.name);
    for (const runId of runDirs) {
      const dir = join(this.root, runId);
      temps += removeStaleTemps(dir);
      for (const f of readdirSync(dir)) {
        if (!f.endsWith('.json')) continue;
        const id = f.slice(0, -'.json'.length);
        if (id.includes('.')) continue; // a derived file (ids have no dots)
        if (known.has(id)) continue;
        // Each record on its own: one that cannot be read (a folder named like one, EACCES) is
        // named and the rest are still indexed.
        try {
          const text = readFileSync(join(dir, f), 'utf8');
          let v: unknown;
          try {
            v = JSON.parse(text);
          } catch (err) {
            unreadable.push(`${runId}/${f} is not JSON: ${(err as Error).message.slice(0, 120)}`);
            continue;
          }
          // A hand-edited or half-written record is left on disk and named, never indexed: its
          // `file` would otherwise be joined into a path and its fields served as they are.
          const problem = infoProblem(v, `${runId}/${f}`);
          if (problem !== null) {
            unreadable.push(problem);
            continue;
          }
          const info = v as CheckpointInfo;
          if (info.id !== id || info.runId !== runId) {
            unreadable.push(`${runId}/${f} is the record of ${info.runId}/${info.id}, not of ${runId}/${id}`);
            continue;
          }
          if (!runs.has(runId)) continue; // a deleted run's leftovers
          const data = join(dir, info.file);
          const size = fileSize(data);
          if (size === null) continue; // a save cut short before its file: nothing to index
          if (size !== info.bytes) {
            unreadable.push(`${runId}/${info.file} is ${size} bytes, but its record ${runId}/${f} says ${info.bytes} (truncated or replaced); not indexed`);
            continue;
          }
          if (sha256Hex(readFileSync(data)) !== info.sha256) {
            unreadable.push(`${runId}/${info.file} does not match the sha256 in ${runId}/${f} (damaged on disk); not indexed`);
            continue;
          }
          this.insert(info);
          indexed++;
        } catch (err) {
          unreadable.push(`${runId}/${f} could not be read: ${(err as Error).message.slice(0, 160)}`);
        }
      }
    }
    for (const r of this.db.prepare('SELECT * FROM checkpoints').all() as Row[]) {
      const info = fromRow(r);
      // A row from a database restored from a backup someone else made: one that does not read
      // is dropped, and no file it names is touched (its `file` could name one anywhere).
      const problem = infoProblem(info, `checkpoint row ${JSON.stringify(String(r.id).slice(0, 80))}`);
      if (problem !== null) {
        this.db.prepare('DELETE FROM checkpoints WHERE id = ?').run(r.id);
        unreadable.push(`${problem}; row dropped, no file touched`);
        dropped++;
        continue;
      }
      const size = fileSize(this.path(info));
      if (size === null || !existsSync(join(this.dir(info.runId), `${info.id}.json`))) {
        this.delete(info);
        dropped++;
      } else if (size !== info.bytes) {
        // Served as it is, it would stall short of the length its row promises. Its files stay,
        // and its record is named at each start until the operator removes or restores them.
        this.withdrawDamaged(info);
        unreadable.push(`${info.runId}/${info.file} is ${size} bytes, but its row says ${info.bytes} (truncated or replaced); not offered`);
        dropped++;
      } else {
        // Its derived downloads, written without fsync: one cut short by the crash is removed,
        // and derived again from the checkpoint by the first download that asks for it.
        const dir = this.dir(info.runId);
        for (const kind of Object.keys(DERIVED) as DerivedKind[]) {
          const name = DERIVED[kind](info.id);
          if (fileSize(join(dir, name)) === null || derivedWhole(join(dir, name), kind)) continue;
          removeFiles(dir, [name]);
          rederived++;
        }
      }
    }
    // A checkpoint's files with neither a row nor a record (a save cut short by a crash, a
    // derivation that finished after its checkpoint was deleted) would hold the disk for good.
    const indexedIds = new Set((this.db.prepare('SELECT id FROM checkpoints').all() as { id: string }[]).map((r) => r.id));
    for (const runId of runDirs) {
      const dir = join(this.root, runId);
      const entries = readdirSync(dir, { withFileTypes: true });
      const records = new Set(entries.filter((e) => e.name.endsWith('.json')).map((e) => e.name.slice(0, -'.json'.length)));
      for (const e of entries) {
        const id = CHECKPOINT_FILE.exec(e.name)?.[1];
        if (id === undefined || !e.isFile() || indexedIds.has(id) || records.has(id)) continue;
        removeFiles(dir, [e.name]);
        orphans++;
      }
    }
    for (const runId of runs) this.prune(runId);
    return { indexed, dropped, temps, orphans, rederived, unreadable };
  }

  private insert(i: CheckpointInfo): void {
    this.db.prepare(`INSERT INTO checkpoints (id, run_id, step, round, val_loss, tokens, peer_id, sha256, bytes, file, created_at, val_batches)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(i.id, i.runId, i.step, i.round, i.valLoss, i.tokens, i.peerId, i.sha256, i.bytes, i.file, i.createdAt, i.valBatches ?? null);
  }

  private prune(runId: string): void {
    for (const old of this.list(runId).slice(this.keep)) this.delete(old);
  }
}
