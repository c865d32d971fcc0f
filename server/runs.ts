// Runs: a dataset, a model preset, hyper-parameters and a seed. The config a volunteer trains
// with is always read from here, so a researcher's change reaches every peer the same way.
import type { Db } from './db.ts';
import { DEFAULT_TRAIN, PRESETS, preset as presetConfig, trainConfig, type TrainConfig } from '../src/model/config.ts';
import Type, { type Static } from 'typebox';
import { Compression, ID_PATTERN, IcePolicy, PAIR_WAIT_FRAC, RunInfo } from '../src/protocol/messages.ts';
import { DEFAULT_PAIR_WAIT_FRAC } from '../src/protocol/ready-pool.ts';
import { EmbedSites, TrainOverrides, type UpdateRun } from '../src/protocol/api.ts';
import { schemaProblem } from '../src/protocol/check.ts';

export const DEFAULT_RUN_ID = 'default';

const int = (minimum: number, maximum: number) => Type.Optional(Type.Integer({ minimum, maximum }));

export const CreateRun = Type.Object({
  id: Type.String({ pattern: ID_PATTERN }),
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  dataset: Type.String({ pattern: ID_PATTERN }),
  preset: Type.Enum(Object.keys(PRESETS)),
  train: Type.Optional(TrainOverrides),
  compression: Type.Optional(Compression),
  pairWaitFrac: Type.Optional(Type.Number(PAIR_WAIT_FRAC)),
  icePolicy: Type.Optional(IcePolicy),
  seed: int(0, 2 ** 31 - 1),
  embedSites: Type.Optional(EmbedSites),
}, { additionalProperties: false });
export type CreateRun = Static<typeof CreateRun>;

/** A request the caller got wrong (becomes a 4xx with this message). */
export class RunError extends Error {
  override name = 'RunError';
  constructor(message: string, readonly statusCode: 400 | 404 | 409) {
    super(message);
  }
}

interface RunRow {
  id: string; name: string; dataset: string; preset: string; model_json: string; train_json: string;
  compression: string; pair_wait_frac: number; ice_policy: string; seed: number; status: string; created_at: number; updated_at: number;
  embed_sites_json: string;
}

/** A JSON column as stored; a torn or hand-edited one is named, not thrown as a bare SyntaxError. */
function column(text: string, what: string): unknown {
  try { return JSON.parse(text); } catch { throw new Error(`${what} in the database is not JSON`); }
}

/**
 * A row as the run every peer is sent: checked against RunInfo's schema (the one the peers
 * check it by), so a damaged database fails here, naming the field, and not in every volunteer.
 */
function fromRow(r: RunRow): RunInfo {
  const run = {
    id: r.id, name: r.name, dataset: r.dataset, preset: r.preset,
    model: column(r.model_json, `run ${r.id} model_json`), train: column(r.train_json, `run ${r.id} train_json`),
    compression: r.compression, pairWaitFrac: r.pair_wait_frac, icePolicy: r.ice_policy, seed: r.seed,
    status: r.status, createdAt: r.created_at, updatedAt: r.updated_at,
  };
  const problem = schemaProblem(RunInfo, run, 'run');
  if (problem !== null) throw new Error(`run ${JSON.stringify(r.id)} in the database is damaged: ${problem}`);
  return run as RunInfo;
}

export class RunStore {
  constructor(private readonly db: Db, private readonly now: () => number) {}

  list(): RunInfo[] {
    return (this.db.prepare('SELECT * FROM runs ORDER BY created_at, id').all() as RunRow[]).map(fromRow);
  }

  get(id: string): RunInfo | null {
    const r = this.db.prepare('SELECT * FROM runs WHERE id = ?').get(id) as RunRow | undefined;
    return r ? fromRow(r) : null;
  }

  create(req: CreateRun): RunInfo {
    if (this.get(req.id)) throw new RunError(`run "${req.id}" already exists`, 409);
    const model = presetConfig(req.preset);
    const train = checkedTrain({ ...DEFAULT_TRAIN, seqLen: model.ctx, ...(req.train ?? {}) }, model.ctx);
    const t = this.now();
    const run: RunInfo = {
      id: req.id, name: req.name ?? req.id, dataset: req.dataset, preset: req.preset, model, train,
      compression: req.compression ?? 'none', pairWaitFrac: req.pairWaitFrac ?? DEFAULT_PAIR_WAIT_FRAC,
      icePolicy: req.icePolicy ?? 'all', seed: req.seed ?? 1337, status: 'running', createdAt: t, updatedAt: t,
    };
    this.db.prepare(`INSERT INTO runs (id, name, dataset, preset, model_json, train_json, compression, pair_wait_frac, ice_policy, seed, status, created_at, updated_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(
      run.id, run.name, run.dataset, run.preset, JSON.stringify(run.model), JSON.stringify(run.train),
      run.compression, run.pairWaitFrac, run.icePolicy, run.seed, run.status, run.createdAt, run.updatedAt,
    );
    if (req.embedSites) this.setEmbedSites(run.id, req.embedSites);
    return run;
  }

  update(id: string, u: UpdateRun): RunInfo {
    const run = this.get(id);
    if (!run) throw new RunError(`no run "${id}"`, 404);
    const train = u.train ? checkedTrain({ ...run.train, ...u.train }, run.model.ctx) : run.train;
    const next: RunInfo = {
      ...run,
      name: u.name ?? run.name,
      train,
      compression: u.compression ?? run.compression,
      pairWaitFrac: u.pairWaitFrac ?? run.pairWaitFrac,
      icePolicy: u.icePolicy ?? run.icePolicy,
      status: u.status ?? run.status,
      updatedAt: this.now(),
    };
    this.db.prepare(`UPDATE runs SET name = ?, train_json = ?, compression = ?, pair_wait_frac = ?, ice_policy = ?, status = ?, updated_at = ? WHERE id = ?`)
      .run(next.name, JSON.stringify(next.train), next.compression, next.pairWaitFrac, next.icePolicy, next.status, next.updatedAt, id);
    if (u.embedSites) this.setEmbedSites(id, u.embedSites);
    return next;
  }

  /**
   * The sites allowed to frame this run's widget (kept apart from RunInfo: volunteers need not
   * know them). Empty for an unknown run: no site may frame it.
   */
  embedSites(id: string): string[] {
    const r = this.db.prepare('SELECT embed_sites_json FROM runs WHERE id = ?').get(id) as { embed_sites_json: string } | undefined;
    if (!r) return [];
    const sites = column(r.embed_sites_json, `run ${id} embed_sites_json`);
    // These go verbatim into a CSP header: only origins its schema accepts.
    const problem = schemaProblem(EmbedSites, sites, 'embedSites');
    if (problem !== null) throw new Error(`run ${JSON.stringify(id)} in the database is damaged: ${problem}`);
    return sites as string[];
  }

  private setEmbedSites(id: string, sites: string[]): void {
    this.db.prepare('UPDATE runs SET embed_sites_json = ? WHERE id = ?').run(JSON.stringify([...new Set(sites)]), id);
  }

  /** The embedded default run (docs/design.md section 4): `tiny` on Moby Dick, created once. */
  ensureDefault(): RunInfo {
    return this.get(DEFAULT_RUN_ID) ?? this.create({ id: DEFAULT_RUN_ID, name: 'tiny on Moby Dick', dataset: 'moby-dick', preset: 'tiny' });
  }
}

function checkedTrain(t: TrainConfig, ctx: number): TrainConfig {
  try {
    return trainConfig(t, { vocab: 256, ctx, layers: 1, d: 1, heads: 1 });
  } catch (err) {
    throw new RunError((err as Error).message, 400);
  }
}
