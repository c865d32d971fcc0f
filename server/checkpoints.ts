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
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Db } from './db.ts';
import { removeStaleTemps, writeFileAtomicAsync } from './fsutil.ts';
import type { ModelConfig } from '../src/model/config.ts';
import { buildLayout, layoutSignature, view, type Layout } from '../src/model/layout.ts';
import { concatBytes, readSafetensors, safetensorsParts, tensorF32, type SafeTensorIn } from '../src/model/safetensors.ts';
import { WireModelConfig, type CheckpointRef, type RunInfo } from '../src/protocol/messages.ts';
import { CheckpointInfo } from '../src/protocol/api.ts';
import { schemaProblem } from '../src/protocol/check.ts';
import { encodeStateFrame, type StateFrame } from '../src/protocol/state-frame.ts';
import { hfGpt2Config, hfModelSafetensors } from '../src/model/hf-export.ts';
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

/** Names of a checkpoint's data files (`s<step>-<8 hex>` and what follows): the file itself and its derived ones. */
const CHECKPOINT_FILE = /^(s\d+-[0-9a-f]{8})\.(?:safetensors|state\.bin|hf-model\.bin|hf-config\.bin)$/;

function derivedFiles(id: string): string[] {
  return Object.values(DERIVED).map((name) => name(id));
}

/** Every file a checkpoint may have: its record, its data, its derived downloads. */
function checkpointFiles(info: Pick<CheckpointInfo, 'id' | 'file'>): string[] {
  return [`${info.id}.json`, info.file, ...derivedFiles(info.id)];
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
  /** Derivations that failed lately, by checkpoint id (at most DERIVE_FAILURES_KEPT). */
  private readonly deriveFailed = new Map<string, { at: number; err: Error }>();

  constructor(
    private readonly db: Db,
    readonly root: string,
    /** Newest checkpoints kept per run. */
    readonly keep: number,
  ) {
    mkdirSync(root, { recursive: true });
  }

  dir(runId: string): string {
    return join(this.root, runId);
  }

  /**
   * Writes a checkpoint durably, then prunes to the newest `keep`. The hashing yields and the file
   * I/O is asynchronous, so the coordinator keeps serving peers meanwhile. `valBatches`: how many
   * validation batches the coordinator measured frame.meta.valLoss on (absent: not measured).
   */
  async save(run: RunInfo, frame: StateFrame, peerId: string | null, createdAt: number, valBatches?: number): Promise<CheckpointInfo> {
    const dir = this.dir(run.id);
    mkdirSync(dir, { recursive: true });
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
    } catch (err) {
      // A full disk (or any failed write) leaves nothing behind: no row, no record, and none of
      // the checkpoint-sized files written before the failure, which nothing would ever remove.
      removeFiles(dir, checkpointFiles(info));
      throw err;
    }
    this.insert(info);
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
   * Marks every checkpoint of a run as not measured on its windows (its batch or sequence length
   * changed): none is offered until measured again.
   */
  forgetMeasurements(runId: string): void {
    this.db.prepare('UPDATE checkpoints SET val_batches = NULL WHERE run_id = ?').run(runId);
  }

  path(info: CheckpointInfo): string {
    return join(this.dir(info.runId), info.file);
  }

  /**
   * Path of a derived download file of a checkpoint, derived now if it was saved before derived
   * files existed (concurrent callers share the one derivation).
   */
  async derived(info: CheckpointInfo, kind: DerivedKind): Promise<string> {
    const path = join(this.dir(info.runId), DERIVED[kind](info.id));
    // Empty: what an unsynced file can be after the machine crashed. Derive it again.
    if (existsSync(path) && statSync(path).size > 0) return path;
    // One that failed (a corrupt file, a full disk) is not tried again for a while: each try
    // reads and hashes the whole checkpoint, and any anonymous client can ask.
    const failed = this.deriveFailed.get(info.id);
    if (failed && Date.now() - failed.at < DERIVE_RETRY_MS) throw failed.err;
    let p = this.deriving.get(info.id);
    if (!p) {
      p = this.load(info).then((l) => this.writeDerived(info, l.model, l.layout, l.phi, l.momentum))
        .then(() => { this.deriveFailed.delete(info.id); }, (err: Error) => {
          if (this.deriveFailed.size >= DERIVE_FAILURES_KEPT) this.deriveFailed.delete(this.deriveFailed.keys().next().value!);
          this.deriveFailed.set(info.id, { at: Date.now(), err });
          throw err;
        })
        .finally(() => this.deriving.delete(info.id));
      this.deriving.set(info.id, p);
    }
    await p;
    // Deleted while it was derived (by the admin, a newer upload's prune, a withdrawal): what the
    // derivation wrote after the delete removed the rest goes too, and the download is a 404.
    if (!this.get(info.runId, info.id)) {
      removeFiles(this.dir(info.runId), derivedFiles(info.id));
      throw new CheckpointGoneError(info);
    }
    return path;
  }

  private async writeDerived(info: CheckpointInfo, model: ModelConfig, layout: Layout, phi: Float32Array, momentum: Float32Array): Promise<void> {
    const dir = this.dir(info.runId);
    // Not fsynced: they are made again from the checkpoint if lost (see derived()).
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
   * After a crash: drop temp files, index a checkpoint whose files were complete but whose row
   * was not yet written (verified by sha256), and drop rows whose files are gone.
   */
  reconcile(): { indexed: number; dropped: number; temps: number; orphans: number; unreadable: string[] } {
    let indexed = 0, dropped = 0, temps = 0, orphans = 0;
    const unreadable: string[] = [];
    const known = new Set((this.db.prepare('SELECT id FROM checkpoints').all() as { id: string }[]).map((r) => r.id));
    const runs = new Set((this.db.prepare('SELECT id FROM runs').all() as { id: string }[]).map((r) => r.id));
    for (const runId of readdirSync(this.root)) {
      const dir = join(this.root, runId);
      temps += removeStaleTemps(dir);
      for (const f of readdirSync(dir)) {
        if (!f.endsWith('.json')) continue;
        const id = f.slice(0, -'.json'.length);
        if (id.includes('.')) continue; // a derived file (ids have no dots)
        if (known.has(id)) continue;
        let v: unknown;
        try {
          v = JSON.parse(readFileSync(join(dir, f), 'utf8'));
        } catch (err) {
          unreadable.push(`${runId}/${f} is not JSON: ${(err as Error).message.slice(0, 120)}`);
          continue;
        }
        // A hand-edited or half-written record is left on disk and named, never indexed: its
        // `file` would otherwise be joined into a path and its fields served as they are.
        const problem = schemaProblem(CheckpointInfo, v, `${runId}/${f}`);
        if (problem !== null) {
          unreadable.push(problem);
          continue;
        }
        const info = v as CheckpointInfo;
        const data = join(dir, info.file);
        if (info.id === id && info.runId === runId && runs.has(runId) && existsSync(data) && sha256Hex(readFileSync(data)) === info.sha256) {
          this.insert(info);
          indexed++;
        }
      }
    }
    for (const info of (this.db.prepare('SELECT * FROM checkpoints').all() as Row[]).map(fromRow)) {
      if (!existsSync(this.path(info)) || !existsSync(join(this.dir(info.runId), `${info.id}.json`))) {
        this.delete(info);
        dropped++;
      }
    }
    // A checkpoint's files with neither a row nor a record (a save cut short by a crash, a
    // derivation that finished after its checkpoint was deleted) would hold the disk for good.
    const indexedIds = new Set((this.db.prepare('SELECT id FROM checkpoints').all() as { id: string }[]).map((r) => r.id));
    for (const runId of readdirSync(this.root)) {
      const dir = join(this.root, runId);
      const names = readdirSync(dir);
      const records = new Set(names.filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -'.json'.length)));
      for (const f of names) {
        const id = CHECKPOINT_FILE.exec(f)?.[1];
        if (id === undefined || indexedIds.has(id) || records.has(id)) continue;
        removeFiles(dir, [f]);
        orphans++;
      }
    }
    for (const runId of runs) this.prune(runId);
    return { indexed, dropped, temps, orphans, unreadable };
  }

  private insert(i: CheckpointInfo): void {
    this.db.prepare(`INSERT INTO checkpoints (id, run_id, step, round, val_loss, tokens, peer_id, sha256, bytes, file, created_at, val_batches)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(i.id, i.runId, i.step, i.round, i.valLoss, i.tokens, i.peerId, i.sha256, i.bytes, i.file, i.createdAt, i.valBatches ?? null);
  }

  private prune(runId: string): void {
    for (const old of this.list(runId).slice(this.keep)) this.delete(old);
  }
}
