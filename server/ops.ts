// The operator's view of a live coordinator: GET /api/ops/metrics in Prometheus's text format,
// for the admin token (Prometheus sends it with `authorization: { credentials_file: ... }`).
// The researcher's dashboard says how training goes; this says how the service holding it up
// goes: its event loop's delay (what every volunteer's signal and report waits behind), its
// connections and live peers, the ready pool's pairs and solo steps, signals relayed and
// dropped, reports stored and waiting, dashboard reads served, refused and in the read worker,
// downloads open, served, refused and cut,
// checkpoint evaluations, and the database's size on disk. Process and heap figures come from
// prom-client's defaults. Each coordinator has its own registry (tests start many in one
// process) and the process's figures one registry for all; the figures are read from the
// stores' own counters when Prometheus asks, so nothing here runs between scrapes except
// prom-client's event-loop delay histogram and GC observer, started once per process.
import { statSync } from 'node:fs';
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { AppContext } from './context.ts';
import type { RunInfo } from '../src/protocol/messages.ts';
import type { CheckpointEvaluator } from './checkpoint-validate.ts';
import type { ReadWorker } from './read-worker.ts';
import { requireAdmin } from './routes/guard.ts';

type Sample = [labels: Record<string, string>, value: number];

export interface OpsSources {
  evaluator: CheckpointEvaluator;
  readWorker: ReadWorker | null;
  /** The SQLite file (its -wal beside it counts too), or null for a database in memory. */
  dbFile: string | null;
}

/**
 * The process's figures (CPU, memory, heap, event-loop delay, GC), one registry for the process:
 * prom-client's event-loop histogram and GC observer stay on once started, so they are started
 * once, at the first scrape of any coordinator in the process.
 */
let processRegistry: Registry | null = null;
function processFigures(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry, prefix: 'murmur_' });
  }
  return processRegistry;
}

/** A registry of the coordinator's own figures, each read from its source when collected. */
export function opsRegistry(ctx: AppContext, src: OpsSources): Registry {
  const register = new Registry();
  const { hub, runs, metrics, reads, downloads, live } = ctx;

  // Each figure is set from `read` at collection: a gauge to the value, a counter (a total the
  // coordinator already keeps) moved up to it; both start from zero, so both take `inc`.
  const collectFrom = (read: () => number | Sample[]) => function (this: Gauge | Counter) {
    this.reset();
    const v = read();
    if (typeof v === 'number') this.inc(v);
    else for (const [labels, value] of v) this.inc(labels, value);
  };
  const gauge = (name: string, help: string, read: () => number | Sample[], labelNames: string[] = []) =>
    new Gauge({ name, help, labelNames, registers: [register], collect: collectFrom(read) });
  const counter = (name: string, help: string, read: () => number | Sample[], labelNames: string[] = []) =>
    new Counter({ name, help, labelNames, registers: [register], collect: collectFrom(read) });
  const running = () => runs.list().filter((r) => r.status === 'running');
  const perRun = (f: (runId: string) => number) => () => running().map((r): Sample => [{ run: r.id }, f(r.id)]);
  /** Per running run, where it has a value. */
  const perRunWhere = (f: (run: RunInfo) => number | null) => () => running().flatMap((r): Sample[] => {
    const v = f(r);
    return v === null || !Number.isFinite(v) ? [] : [[{ run: r.id }, v]];
  });
  const offered = (run: RunInfo) => ctx.checkpoints.current(run);

  gauge('murmur_connections', 'Volunteer WebSockets open', () => hub.connectionCount());
  // Training, as far as the coordinator vouches for it: a stalled step or an old checkpoint is worth an alert.
  gauge('murmur_run_step', 'The step each running run\'s live peers agree on (lower median of one vote per address, peers off probation)', perRunWhere((r) => hub.stepConsensus(r.id)), ['run']);
  gauge('murmur_checkpoint_step', 'Step of each running run\'s newest offered checkpoint', perRunWhere((r) => offered(r)?.step ?? null), ['run']);
  gauge('murmur_checkpoint_val_loss', 'Validation loss the coordinator measured for each running run\'s newest offered checkpoint', perRunWhere((r) => offered(r)?.valLoss ?? null), ['run']);
  gauge('murmur_checkpoint_age_seconds', 'Age of each running run\'s newest offered checkpoint', perRunWhere((r) => {
    const c = offered(r);
    return c ? Math.max(0, (ctx.clock.now() - c.createdAt) / 1000) : null;
  }), ['run']);
  gauge('murmur_live_peers', 'Live peers of each running run', perRun((id) => hub.livePeers(id).length), ['run']);
  gauge('murmur_ready_waiting', 'Peers waiting in each running run\'s ready pool', perRun((id) => hub.pool(id).size), ['run']);
  counter('murmur_pairs_total', 'Pairs the ready pool formed in each running run since the coordinator started', perRun((id) => hub.pool(id).stats.pairs), ['run']);
  counter('murmur_solo_steps_total', 'Readies answered with a solo step in each running run since the coordinator started', perRun((id) => hub.pool(id).stats.solos), ['run']);
  counter('murmur_frames_total', 'Frames volunteers sent', () => hub.stats.frames);
  counter('murmur_frames_rejected_total', 'Frames refused (schema, rate, size)', () => hub.stats.rejected);
  counter('murmur_closed_for_abuse_total', 'Connections closed for what they sent', () => hub.stats.closedForAbuse);
  counter('murmur_signals_relayed_total', 'WebRTC signals relayed between peers', () => hub.stats.relayed);
  counter('murmur_signals_dropped_total', 'Signals dropped towards a peer that was not reading', () => hub.stats.relayDropped);
  gauge('murmur_reports_waiting', 'Metric reports queued for the next commit', () => metrics.pending);
  gauge('murmur_report_rows', 'Report rows stored for each running run', perRun((id) => metrics.rowCount(id)), ['run']);
  counter('murmur_report_rows_thinned_total', 'Report rows merged away by retention', () => metrics.stats.thinned);
  counter('murmur_answers_total', 'Metric and connectivity answers, from the cache or computed', () => {
    const s = metrics.answerStats;
    return [[{ source: 'cache' }, s.hits], [{ source: 'computed' }, s.misses]];
  }, ['source']);
  gauge('murmur_answer_cache_bytes', 'Bytes of cached answers', () => metrics.answerStats.bytes);
  counter('murmur_reads_total', 'Anonymous dashboard reads served', () => reads.stats.reads);
  counter('murmur_reads_refused_total', 'Anonymous dashboard reads refused by the read budget', () => reads.stats.refused);
  counter('murmur_read_seconds_total', 'Coordinator time charged to anonymous dashboard reads', () => reads.stats.chargedMs / 1000);
  counter('murmur_reads_cut_total', 'Anonymous read answers cut for not being taken by their send deadline', () => reads.stats.cut);
  gauge('murmur_downloads_open', 'Anonymous downloads (data, checkpoints, states, exports) being sent', () => downloads.open());
  counter('murmur_downloads_total', 'Anonymous downloads started', () => downloads.stats.served);
  counter('murmur_downloads_refused_total', 'Anonymous downloads refused by the download budget', () => downloads.stats.refused);
  counter('murmur_downloads_cut_total', 'Anonymous downloads cut for not reading', () => downloads.stats.cut);
  counter('murmur_download_bytes_total', 'Bytes of anonymous downloads read from disk for their clients', () => downloads.stats.bytes);
  gauge('murmur_read_sending_bytes', 'Characters (bytes: the JSON is ASCII) of answers not yet taken by their connections', () => reads.sendingChars);
  if (src.readWorker) {
    const w = src.readWorker;
    gauge('murmur_read_worker_queued', 'Answers waiting for or being computed by the read worker', () => w.queued);
    counter('murmur_read_worker_jobs_total', 'Answers the read worker was asked for', () => w.stats.jobs);
    counter('murmur_read_worker_starts_total', 'Read worker threads started (more than one: one died)', () => w.stats.started);
  }
  gauge('murmur_live_streams', 'Dashboard event streams open', () => live.count);
  counter('murmur_live_events_dropped_total', 'Dashboard streams dropped for not reading', () => live.stats.dropped);
  counter('murmur_live_streams_displaced_total', 'Dashboard streams of a full run given up to an address holding fewer', () => live.stats.displaced);
  counter('murmur_checkpoint_evaluations_total', 'Uploaded states the coordinator measured', () => src.evaluator.stats.evaluations);
  gauge('murmur_checkpoint_evaluation_seconds', 'How long the last measurement of an uploaded state took', () => src.evaluator.stats.lastMs / 1000);
  if (src.dbFile) {
    const file = src.dbFile;
    const size = (f: string) => { try { return statSync(f).size; } catch { return 0; } };
    gauge('murmur_db_bytes', 'The SQLite file and its write-ahead log on disk', () => size(file) + size(`${file}-wal`));
  }
  return register;
}

/** GET /api/ops/metrics for the admin token. */
export function registerOpsRoute(ctx: AppContext, src: OpsSources): void {
  let register: Registry | null = null;
  ctx.app.get('/api/ops/metrics', { onRequest: requireAdmin(ctx.adminToken), schema: {} }, async (_req, reply) => {
    // Made at the first scrape: a coordinator nobody scrapes runs no event-loop histogram.
    register ??= opsRegistry(ctx, src);
    const proc = processFigures();
    return reply.type(register.contentType).send(`${await proc.metrics()}\n${await register.metrics()}`);
  });
}
