// Metric reports: written to SQLite with group commit (every report that arrived in the same
// event-loop turn shares one transaction), acknowledged to the peer only after that commit, then
// pushed to dashboards. A report is keyed by (run, peer, seq): a peer that resends after a lost
// ack or a coordinator restart gets an ack with `duplicate` and nothing is written twice.
//
// Non-finite losses ("NaN", "Infinity", "-Infinity" on the wire, see WireLoss) are stored as
// those TEXT values (SQLite does not coerce them into the REAL columns) and come back verbatim
// from raw queries. Downsampled buckets average only the numeric losses and count the rows that
// held a non-finite one in `nonFinite`, so a NaN is never averaged away unseen.
//
// Retention (docs/design.md section 6): a run keeps at most `maxReportsPerRun` rows. Past it the
// run is thinned to half, the half kept shared out among its peers as evenly as their rows allow
// (a peer within its share keeps every row; one that reports far faster is merged down to it):
// runs of one peer's consecutive reports merge into one row that
// stands for both (`weight`), at their weighted mean time, with their byte counts summed, the
// higher step and round, a non-finite loss if either had one, and weighted means of the rest.
// So the run's report count, byte totals and progress stay exact, every curve (the raw points
// the dashboard draws per peer, the downsampled buckets) keeps its shape at an even resolution,
// halved at each pass, and however long a peer reports or however many peers a run sees, its rows stay bounded.
// A merged row may stand for reports on both sides of a bucket edge, so a bucket's count is exact
// only over spans wider than the merged rows. A report re-sent after its row merged away would be
// stored again; peers re-send only unacknowledged reports, and those are the newest.
import type { Db } from './db.ts';
import type { BucketPoint, LiveReport, MetricPoint } from '../src/protocol/api.ts';
import type { WireLoss } from '../src/protocol/messages.ts';

/** A question for the reports table that the answer cache can hold. */
export type AnswerJob = { kind: 'metrics'; q: MetricsQuery } | { kind: 'connectivity'; runId: string; from: number; to: number };
/** An answer as JSON, and the milliseconds computing it took (0 when it came from the cache). */
export interface Answer { json: string; ms: number }
/** Asked before an answer is computed: throws to refuse, or returns what to call when it is done. */
export type Admit = () => () => void;
/** Computes a job's answer, on this thread or another. */
export type Reader = (job: AnswerJob) => Promise<Answer>;

/** A job's answer as JSON, on whichever connection `db` is. */
export function answerJob(db: Db, job: AnswerJob): string {
  // One read transaction: on the worker's connection the coordinator may commit (or thin) between
  // the statements of one answer, and its count and its points must describe the same rows.
  return db.transaction(() => JSON.stringify(job.kind === 'metrics' ? queryReports(db, job.q) : connectivityOf(db, job.runId, job.from, job.to)))();
}

/** A reader on the caller's own connection and thread. */
export function inlineReader(db: Db, now: () => number = performance.now.bind(performance)): Reader {
  return async (job) => {
    const t0 = now();
    const json = answerJob(db, job);
    return { json, ms: now() - t0 };
  };
}

/** A committed report: the peer's fields stamped by the coordinator, as the live stream pushes it. */
export type ReportRow = LiveReport;

export type Committed = (row: ReportRow, duplicate: boolean) => void;

export interface MetricsQuery {
  runId: string;
  peerId?: string;
  from: number;
  to: number;
  /** Downsample to about this many points when the range holds more rows. */
  maxPoints: number;
  /**
   * Instead of downsampling: the newest rows of the range, raw, at most maxPoints and at most a
   * fair share of them per peer (`total` still counts them all).
   */
  newest?: boolean;
}

/** A run's connectivity over a time range: how exchanges travelled and why links failed. */
export interface Connectivity {
  /** Exchanges that went over a link, by the route the link took. */
  exchanges: { direct: number; relayed: number };
  /** relayed / (direct + relayed); null when no exchange used a link. */
  relayFraction: number | null;
  /** Median time to open a link, ms (over the exchanges that opened one). */
  medianConnectMs: number | null;
  /** Links that failed to open, in all and by reason (most frequent first, at most 10). */
  linkFailures: number;
  reasons: { reason: string; count: number }[];
  /** Per peer: its reports' link outcomes; `failing` = links fail and it has not paired lately. */
  peers: { peerId: string; paired: number; solo: number; linkFailures: number; lastLinkError: string | null; failing: boolean }[];
}

/**
 * One time bucket: means of the gauges, sums of the byte counters, maxima of the counters.
 * The sums are TOTAL (a float), never SUM: an integer SUM that overflows fails the whole query.
 * The loss means are over the numeric losses only; `nonFinite` counts the bucket's rows whose
 * training or validation loss was NaN or ±Infinity (0 for a healthy bucket).
 * Each bucket is a BucketPoint (src/protocol/api.ts, the schema the dashboard checks it by).
 */
export type MetricsResult =
  | { downsampled: false; total: number; points: MetricPoint[] }
  | { downsampled: true; total: number; bucketMs: number; points: BucketPoint[] };

/** The column's value when it is a number; NULL for a stored "NaN"/"Infinity" (TEXT). */
const numeric = (col: string) => `CASE WHEN typeof(${col}) IN ('real', 'integer') THEN ${col} END`;
/** Mean of a column over the rows holding a number, each counted `weight` times. */
const weightedMean = (col: string) => `SUM(${numeric(col)} * weight) / SUM(CASE WHEN typeof(${col}) IN ('real', 'integer') THEN weight END)`;

export interface MetricsOptions {
  /** Report rows one run keeps; past it they are thinned to about half of it. */
  maxReportsPerRun: number;
  /**
   * A run with at least this many rows may be answered from a cached answer up to
   * `staleAnswerMs` old though reports arrived since (default 10,000 rows, 1000 ms); a smaller
   * run's answer is recomputed after every new report. See AnswerCache.
   */
  staleAnswerRows?: number;
  staleAnswerMs?: number;
  /** Monotonic milliseconds for the cache's ages (default performance.now). */
  now?: () => number;
}

/**
 * A run's rows: 200,000 × at most 1 KiB (REPORT_ROW_BYTES_MAX) is ~200 MB of SQLite per run at the
 * very worst, ~60 MB for real reports (about 290 bytes each with their index entries, measured in
 * tests/server.db-growth.test.ts); at one report per peer per outer round that is weeks of raw
 * history for tens of peers.
 */
export const DEFAULT_METRICS_OPTIONS: MetricsOptions = { maxReportsPerRun: 200_000 };

/**
 * Most bytes one report row can take in the file, with its three index entries: the longest
 * strings the schema allows (adapter 200, link error 300, run and peer ids), 16 numbers, and
 * SQLite's per-record and per-cell overhead, rounded up.
 */
export const REPORT_ROW_BYTES_MAX = 1024;

/** One stored row as thinning reads and rewrites it. */
interface ThinRow {
  id: number; peer: string; t: number; step: number; round: number; train: WireLoss; val: WireLoss; tps: number; bytesIn: number; bytesOut: number;
  partner: string | null; dist: number | null; linkLocal: string | null; linkRemote: string | null; connectMs: number | null;
  linkFailures: number; linkError: string | null; weight: number;
}

/**
 * Most answers the cache holds over a range of the caller's choosing, and over a whole run (see
 * AnswerCache), and most bytes of JSON of both together (a 20,000-point page is ~4.4 MB).
 */
export const ANSWER_CACHE_ENTRIES = 64;
export const ANSWER_CACHE_WHOLE_RUN_ENTRIES = 16;
export const ANSWER_CACHE_BYTES = 16 << 20;

/**
 * Answers of GET /metrics and /connectivity as JSON, by run and normalized query, so that N
 * identical requests cost one query (docs/design.md section 6). An answer stands while its run
 * has no new rows (`gen`, bumped by every flush that stored a row and by thinning): it is then
 * exactly what a query would return. A run of `staleRows` rows or more may also be answered from
 * one computed less than `staleMs` ago, so a stream of reports cannot make every request a full
 * scan again. Least recently used answers go first past `ANSWER_CACHE_BYTES` (counted as V8
 * stores the string: 1 byte a char, 2 if any is past U+00FF) or the entries of their kind:
 * answers over a whole run (the range open at both ends, every peer: what every dashboard asks,
 * and costly on a big run), at most ANSWER_CACHE_WHOLE_RUN_ENTRIES, are never evicted for a
 * ranged one (or one peer's), at most ANSWER_CACHE_ENTRIES, which go first. One client asking 64
 * one-row ranges, a few ms of its read budget, flushed the run's shared history, and every
 * dashboard after it paid the full computation (339 ms against 24 ms).
 */
class AnswerCache {
  /** By kind, each in least-recently-used order. */
  private readonly whole = new Map<string, CachedAnswer>();
  private readonly ranged = new Map<string, CachedAnswer>();
  private bytes = 0;
  readonly stats = { hits: 0, misses: 0 };

  get(key: string, wholeRun: boolean, gen: number, now: number, staleMs: number): string | undefined {
    const m = wholeRun ? this.whole : this.ranged;
    const e = m.get(key);
    if (e === undefined || (e.gen !== gen && !(now - e.at < staleMs))) return undefined;
    m.delete(key);
    m.set(key, e);
    this.stats.hits++;
    return e.json;
  }

  set(key: string, wholeRun: boolean, gen: number, now: number, json: string): void {
    this.stats.misses++;
    const m = wholeRun ? this.whole : this.ranged;
    const old = m.get(key);
    // An answer computed from older rows, finishing after a newer one, does not replace it.
    if (old && old.gen > gen) return;
    if (old) { m.delete(key); this.bytes -= old.bytes; }
    const bytes = json.length * (/[^\u0000-\u00ff]/.test(json) ? 2 : 1);
    if (bytes > ANSWER_CACHE_BYTES) return;
    m.set(key, { gen, at: now, json, bytes });
    this.bytes += bytes;
    const drop = (from: Map<string, CachedAnswer>) => {
      const [k, e] = from.entries().next().value!;
      from.delete(k);
      this.bytes -= e.bytes;
    };
    while (this.ranged.size > ANSWER_CACHE_ENTRIES) drop(this.ranged);
    while (this.whole.size > ANSWER_CACHE_WHOLE_RUN_ENTRIES) drop(this.whole);
    // Past the bytes, ranged answers go first (the one just stored too, last); whole-run answers
    // only for another whole-run answer.
    while (this.bytes > ANSWER_CACHE_BYTES && this.ranged.size > 0) drop(this.ranged);
    while (this.bytes > ANSWER_CACHE_BYTES) drop(this.whole);
  }

  get size(): { entries: number; bytes: number } {
    return { entries: this.whole.size + this.ranged.size, bytes: this.bytes };
  }
}

interface CachedAnswer { gen: number; at: number; json: string; bytes: number }

export class MetricsStore {
  private queue: { row: ReportRow; done: Committed }[] = [];
  private scheduled = false;
  private readonly insert;
  /** run -> its report rows, counted once and kept up to date by flush and thin. */
  private readonly rows = new Map<string, number>();
  /** run -> how many times its rows changed (a flush that stored one, a thinning): cached answers older than it are stale. */
  private readonly gens = new Map<string, number>();
  private readonly answers = new AnswerCache();
  /** Answers being computed, by generation and key. */
  private readonly inFlight = new Map<string, Promise<Answer>>();
  private readonly span;
  readonly stats = { thinned: 0 };

  /**
   * `reader` computes answers the cache lacks: by default here, on this connection; the app gives
   * a ReadWorker (server/read-worker.ts), which computes them on a connection of its own in
   * another thread.
   */
  constructor(private readonly db: Db, readonly o: MetricsOptions = DEFAULT_METRICS_OPTIONS, private readonly reader: Reader = inlineReader(db, o.now)) {
    // Two subqueries so each takes one seek of reports_run_t (MIN and MAX together would scan the run).
    this.span = db.prepare(`SELECT (SELECT MIN(t) FROM reports WHERE run_id = @runId) AS lo, (SELECT MAX(t) FROM reports WHERE run_id = @runId) AS hi`);
    this.insert = db.prepare(`INSERT OR IGNORE INTO reports
      (run_id, peer_id, seq, t, received_at, step, round, train_loss, val_loss, tokens_per_s, bytes_in, bytes_out, partner, partner_dist, adapter,
       link_local, link_remote, connect_ms, link_failures, link_error, probe_ms, probe_solo, probe_paired, probe_rejected)
      VALUES (@runId, @peerId, @seq, @t, @receivedAt, @step, @round, @trainLoss, @valLoss, @tokensPerS, @bytesIn, @bytesOut, @partner, @partnerDist, @adapter,
       @linkLocal, @linkRemote, @connectMs, @linkFailures, @linkError, @probeMs, @probeSolo, @probePaired, @probeRejected)`);
  }

  /** Queues a report; `done` runs after the transaction holding it committed. */
  enqueue(row: ReportRow, done: Committed): void {
    this.queue.push({ row, done });
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  get pending(): number {
    return this.queue.length;
  }

  /** Commits everything queued; callbacks run only after COMMIT returned. */
  flush(): void {
    this.scheduled = false;
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0) return;
    const dup: boolean[] = [];
    this.db.transaction(() => {
      for (const { row } of batch) {
        const { time: _t, ...fields } = row;
        const params = {
          ...fields, linkLocal: row.linkLocal ?? null, linkRemote: row.linkRemote ?? null, connectMs: row.connectMs ?? null,
          linkFailures: row.linkFailures ?? 0, linkError: row.linkError ?? null,
          probeMs: row.probeMs ?? null, probeSolo: row.probeSolo ?? null, probePaired: row.probePaired ?? null,
          probeRejected: row.probeRejected === undefined ? null : row.probeRejected ? 1 : 0,
        };
        dup.push(this.insert.run(params).changes === 0);
      }
    })();
    const added = new Set<string>();
    for (let i = 0; i < batch.length; i++) {
      if (dup[i]) continue;
      const run = batch[i]!.row.runId;
      // A run not counted yet is counted from the table, which holds this batch already.
      const n = this.rows.get(run);
      if (n !== undefined) this.rows.set(run, n + 1);
      added.add(run);
    }
    for (const run of added) this.bump(run);
    for (const run of added) if (this.rowCount(run) > this.o.maxReportsPerRun) this.thin(run);
    for (let i = 0; i < batch.length; i++) batch[i]!.done(batch[i]!.row, dup[i]!);
  }

  /** Report rows of a run (counted from the table on first use). */
  rowCount(runId: string): number {
    let n = this.rows.get(runId);
    if (n === undefined) {
      n = (this.db.prepare('SELECT COUNT(*) AS n FROM reports WHERE run_id = ?').get(runId) as { n: number }).n;
      this.rows.set(runId, n);
    }
    return n;
  }

  /**
   * Halves a run's rows. Each peer's consecutive rows merge in groups of about twice its mean
   * weight (reports per row), each group into its latest row, so every row ends up standing for
   * about as many reports as the others: the curve keeps an even resolution along the whole run,
   * halved at each pass. Peers with a single row pair with each other in time order. Pages
   * through the run by (peer, t, id), holding one page; one transaction. Returns rows removed.
   */
  thin(runId: string): number {
    const perPeer = new Map((this.db.prepare('SELECT peer_id AS peer, COUNT(*) AS n, SUM(weight) AS w FROM reports WHERE run_id = ? GROUP BY peer_id')
      .all(runId) as { peer: string; n: number; w: number }[]).map((p) => [p.peer, p]));
    // The half kept is shared out as evenly as the peers' rows allow: a peer within its share
    // keeps every row, one over it is merged down to it. Halving every peer let one peer that
    // reported fast (50 a second, each acknowledged) halve every honest peer's curve at each
    // pass it caused. Where the share is under two rows (a run of many short-lived ids) every
    // peer is halved as before.
    const share = fairShare([...perPeer.values()].map((p) => p.n), Math.floor(this.rowCount(runId) / 2));
    const evenly = share >= 2;
    const page = this.db.prepare(`SELECT id, peer_id AS peer, t, step, round, train_loss AS train, val_loss AS val, tokens_per_s AS tps,
        bytes_in AS bytesIn, bytes_out AS bytesOut, partner, partner_dist AS dist, link_local AS linkLocal, link_remote AS linkRemote,
        connect_ms AS connectMs, link_failures AS linkFailures, link_error AS linkError, weight
      FROM reports WHERE run_id = @runId AND (peer_id, t, id) > (@peer, @t, @id) ORDER BY peer_id, t, id LIMIT ${THIN_PAGE}`);
    const update = this.db.prepare(`UPDATE reports SET t = @t, step = @step, round = @round, train_loss = @train, val_loss = @val, tokens_per_s = @tps,
        bytes_in = @bytesIn, bytes_out = @bytesOut, partner = @partner, partner_dist = @dist, link_local = @linkLocal, link_remote = @linkRemote,
        connect_ms = @connectMs, link_failures = @linkFailures, link_error = @linkError, weight = @weight WHERE id = @id`);
    const remove = this.db.prepare('DELETE FROM reports WHERE id = ?');
    let removed = 0;
    /** Folds a group into its last row. */
    const fold = (group: ThinRow[]) => {
      if (group.length < 2) return;
      let acc = group[0]!;
      for (let i = 1; i < group.length; i++) {
        remove.run(acc.id);
        acc = mergeRows(acc, group[i]!);
      }
      const { peer: _p, ...params } = acc;
      update.run(params);
      removed += group.length - 1;
    };
    this.db.transaction(() => {
      const single: ThinRow[] = [];
      let group: ThinRow[] = [];
      let groupWeight = 0;
      let cursor = { peer: '', t: -Infinity, id: -Infinity };
      for (;;) {
        const rows = page.all({ runId, ...cursor }) as ThinRow[];
        if (rows.length === 0) break;
        for (const r of rows) {
          const p = perPeer.get(r.peer)!;
          if (evenly && p.n <= share) continue;
          if (p.n === 1) { single.push(r); continue; }
          const target = evenly ? Math.max(2, p.w / Math.floor(share)) : Math.max(2, Math.ceil((2 * p.w) / p.n));
          if (group.length > 0 && (group[0]!.peer !== r.peer || groupWeight + r.weight > target)) { fold(group); group = []; groupWeight = 0; }
          group.push(r);
          groupWeight += r.weight;
        }
        const last = rows[rows.length - 1]!;
        cursor = { peer: last.peer, t: last.t, id: last.id };
      }
      fold(group);
      single.sort((x, y) => x.t - y.t || x.id - y.id);
      for (let i = 0; i + 1 < single.length; i += 2) fold([single[i]!, single[i + 1]!]);
    })();
    this.rows.set(runId, this.rowCount(runId) - removed);
    this.stats.thinned += removed;
    this.bump(runId);
    return removed;
  }

  private bump(runId: string): void {
    this.gens.set(runId, (this.gens.get(runId) ?? 0) + 1);
  }

  /** The cache's hits and misses, and what it holds. */
  get answerStats(): { hits: number; misses: number; entries: number; bytes: number } {
    return { ...this.answers.stats, ...this.answers.size };
  }

  /**
   * An answer's JSON and what computing it cost (0 ms from the cache), from the cache when it
   * still stands, else from the reader (server/read-worker.ts: off the event loop). A range
   * reaching past the run's first or last report time is keyed as open at that end (and computed
   * clamped to it: there are no rows beyond), so the same rows give one key whatever `from`/`to`
   * the caller picked around them: a dashboard asks up to Date.now(). Identical questions asked
   * while one is being computed wait for that one. `admit` is asked before a new answer is
   * computed (not for a cached one, nor one being computed): it may throw to refuse, or return
   * what to call when the computation ends.
   */
  private async cached(runId: string, from: number, to: number, job: (from: number, to: number) => AnswerJob, rest: unknown[], everyPeer: boolean, admit?: Admit): Promise<Answer> {
    const gen = this.gens.get(runId) ?? 0;
    const span = this.span.get({ runId }) as { lo: number | null; hi: number | null };
    let lo = 1, hi = 0, range: unknown[] = ['none']; // No row in range: one empty key.
    if (span.lo !== null && span.hi !== null && from <= span.hi && to >= span.lo) {
      lo = Math.max(from, span.lo);
      hi = Math.min(to, span.hi);
      range = [from <= span.lo ? 'first' : from, to >= span.hi ? 'last' : to];
    }
    const j = job(lo, hi);
    const key = JSON.stringify([j.kind, runId, ...range, ...rest]);
    const wholeRun = everyPeer && (range.length === 1 || (range[0] === 'first' && range[1] === 'last'));
    const now = (this.o.now ?? performance.now.bind(performance))();
    const staleMs = this.rowCount(runId) >= (this.o.staleAnswerRows ?? STALE_ANSWER_ROWS) ? (this.o.staleAnswerMs ?? STALE_ANSWER_MS) : 0;
    const hit = this.answers.get(key, wholeRun, gen, now, staleMs);
    if (hit !== undefined) return { json: hit, ms: 0 };
    const flight = `${gen} ${key}`;
    const pending = this.inFlight.get(flight);
    if (pending) return { json: (await pending).json, ms: 0 };
    const release = admit?.();
    try {
      const computing = this.reader(j);
      this.inFlight.set(flight, computing);
      const answer = await computing;
      this.answers.set(key, wholeRun, gen, now, answer.json);
      return answer;
    } finally {
      this.inFlight.delete(flight);
      release?.();
    }
  }

  /** `query` as JSON, cached (see AnswerCache), with what it cost. */
  queryJson(q: MetricsQuery, admit?: Admit): Promise<Answer> {
    // Past the run's row count every maxPoints gives the raw rows: one key for all of them.
    // Keyed by the caller's maxPoints, which the answer is computed with: capping it at the run's
    // row count (so every maxPoints past it shared the raw answer) let rows committed while a job
    // waited for the worker, or a count kept here that missed rows, give one key two answers.
    // Dashboards ask the same few maxPoints, so they still share.
    const newest = q.newest === true;
    return this.cached(q.runId, q.from, q.to, (from, to) => ({ kind: 'metrics', q: { runId: q.runId, ...(q.peerId ? { peerId: q.peerId } : {}), from, to, maxPoints: q.maxPoints, newest } }),
      [q.peerId ?? null, q.maxPoints, newest], !q.peerId, admit);
  }

  /** `connectivity` as JSON, cached (see AnswerCache), with what it cost. */
  connectivityJson(runId: string, from: number, to: number, admit?: Admit): Promise<Answer> {
    return this.cached(runId, from, to, (lo, hi) => ({ kind: 'connectivity', runId, from: lo, to: hi }), [], true, admit);
  }

  query(q: MetricsQuery): MetricsResult {
    return queryReports(this.db, q);
  }

  connectivity(runId: string, from: number, to: number): Connectivity {
    return connectivityOf(this.db, runId, from, to);
  }
}

/** Rounds without a partner (while links fail) after which a peer counts as failing. */
export const FAILING_WINDOW = 3;

/** Peers a connectivity answer lists (the first by id). */
const MAX_PEERS = 1000;

/** Defaults of MetricsOptions.staleAnswerRows and staleAnswerMs. */
const STALE_ANSWER_ROWS = 10_000;
const STALE_ANSWER_MS = 1000;

/** Rows thinning reads at a time. */
const THIN_PAGE = 5000;

/** A weighted mean of two losses; a non-finite one wins (the alert must survive), a null yields. */
function mergeLoss(a: WireLoss, wa: number, b: WireLoss, wb: number): WireLoss {
  if (typeof b === 'string') return b;
  if (typeof a === 'string') return a;
  if (a === null) return b;
  if (b === null) return a;
  return (a * wa + b * wb) / (wa + wb);
}

/** The row `b` becomes when `a` merges into it. */
function mergeRows(a: ThinRow, b: ThinRow): ThinRow {
  const w = a.weight + b.weight;
  const dist = a.dist !== null && b.dist !== null ? (a.dist * a.weight + b.dist * b.weight) / w : (b.dist ?? a.dist);
  return {
    // Plotted at the weighted mean time of what it stands for, so the curve keeps its place.
    id: b.id, peer: b.peer, t: a.t + Math.round(((b.t - a.t) * b.weight) / w), step: Math.max(a.step, b.step), round: Math.max(a.round, b.round),
    train: mergeLoss(a.train, a.weight, b.train, b.weight), val: mergeLoss(a.val, a.weight, b.val, b.weight),
    tps: (a.tps * a.weight + b.tps * b.weight) / w, bytesIn: a.bytesIn + b.bytesIn, bytesOut: a.bytesOut + b.bytesOut,
    partner: b.partner ?? a.partner, dist, linkLocal: b.linkLocal ?? a.linkLocal, linkRemote: b.linkRemote ?? a.linkRemote,
    connectMs: b.connectMs ?? a.connectMs, linkFailures: a.linkFailures + b.linkFailures, linkError: b.linkError ?? a.linkError, weight: w,
  };
}

/** Most points one metrics answer holds: raw rows or buckets (GET /metrics refuses a larger maxPoints). */
export const MAX_POINTS = 20_000;

/** Reports of a run in a range: raw rows when few enough (or the newest), time buckets otherwise. */
export function queryReports(db: Db, query: MetricsQuery): MetricsResult {
  // The route bounds maxPoints; should a caller ever pass one past the bound, or a non-finite one
  // (once ?maxPoints=Infinity got through: every row of a run, raw), the answer still holds at
  // most MAX_POINTS, and SQLite gets an integer LIMIT.
  const q = { ...query, maxPoints: Number.isFinite(query.maxPoints) ? Math.min(MAX_POINTS, Math.max(1, Math.floor(query.maxPoints))) : MAX_POINTS };
  const where = `run_id = @runId AND t >= @from AND t <= @to${q.peerId ? ' AND peer_id = @peerId' : ''}`;
  const params = { runId: q.runId, from: q.from, to: q.to, ...(q.peerId ? { peerId: q.peerId } : {}) };
  // The dashboard's history (newest, all peers) counts the range per peer: one walk of
  // reports_run_peer_t, its sum the total.
  const perPeer = q.newest && !q.peerId
    ? (db.prepare(`SELECT COUNT(*) AS n FROM reports INDEXED BY reports_run_peer_t WHERE ${where} GROUP BY peer_id`).all(params) as { n: number }[]).map((r) => r.n)
    : null;
  const total = perPeer ? perPeer.reduce((a, n) => a + n, 0) : (db.prepare(`SELECT COUNT(*) AS n FROM reports WHERE ${where}`).get(params) as { n: number }).n;
  if (total <= q.maxPoints || q.newest) {
    const byPeer = q.peerId ? ' INDEXED BY reports_run_peer_t' : '';
    let rows = `reports${byPeer} WHERE ${where}`;
    if (total > q.maxPoints) {
      // Each peer's newest rows, at most a fair share of maxPoints each (fairShare: a peer with
      // fewer keeps all of its rows), so one peer reporting 50 a second cannot fill the window:
      // the newest maxPoints rows of the run were 19,948 of its and 390 s of four honest peers'
      // 10 h. A share that is not a whole number of rows is rounded down, and what that leaves
      // of maxPoints goes to the newest of the rows one past it, so the window holds exactly
      // maxPoints. The rows are picked on the index alone (peer, t and id), then read by id.
      // Where the share is under one row (more peers than points), the newest rows of the run:
      // one walk of reports_run_t backwards (reports_run_peer_t for one peer; SQLite would take
      // reports_run_t for the order and filter the peer row by row).
      const share = perPeer ? fairShare(perPeer, q.maxPoints) : 0;
      const cap = Math.floor(share);
      rows = share >= 1
        ? `reports WHERE id IN (SELECT id FROM (SELECT id, t, ROW_NUMBER() OVER (PARTITION BY peer_id ORDER BY t DESC, id DESC) AS rn
            FROM reports INDEXED BY reports_run_peer_t WHERE ${where}) WHERE rn <= ${cap + 1} ORDER BY rn <= ${cap} DESC, t DESC, id DESC LIMIT ${q.maxPoints})`
        : `reports${byPeer} WHERE ${where} ORDER BY t DESC, id DESC LIMIT ${q.maxPoints}`;
    }
    // Turned oldest first.
    const points = db.prepare(`SELECT * FROM (SELECT t, id, peer_id AS peerId, seq, step, round, train_loss AS trainLoss, val_loss AS valLoss,
        tokens_per_s AS tokensPerS, bytes_in AS bytesIn, bytes_out AS bytesOut, partner, partner_dist AS partnerDist, adapter,
        link_local AS linkLocal, link_remote AS linkRemote, connect_ms AS connectMs, link_failures AS linkFailures, link_error AS linkError, weight,
        probe_ms AS probeMs, probe_solo AS probeSolo, probe_paired AS probePaired, probe_rejected AS probeRejected
      FROM ${rows}) ORDER BY t, id`).all(params) as (Omit<MetricPoint, 'probeRejected'> & { id?: number; probeRejected: number | null })[];
    return {
      downsampled: false, total,
      points: points.map(({ id: _id, ...p }) => ({ ...p, probeRejected: p.probeRejected === null ? null : p.probeRejected === 1 })),
    };
  }
  // Buckets over the range actually covered, so a wide default range does not waste points.
  const span = db.prepare(`SELECT MIN(t) AS lo, MAX(t) AS hi FROM reports WHERE ${where}`).get(params) as { lo: number; hi: number };
  const bucketMs = Math.max(1, Math.ceil((span.hi - span.lo + 1) / q.maxPoints));
  // Bound JS numbers arrive as REAL: cast so the bucket index is an integer division.
  const bucket = '((t - CAST(@lo AS INTEGER)) / CAST(@bucketMs AS INTEGER))';
  // A thinned row stands for `weight` reports: counts and means weigh it so.
  const points = db.prepare(`SELECT CAST(@lo AS INTEGER) + ${bucket} * CAST(@bucketMs AS INTEGER) AS t, SUM(weight) AS n, COUNT(DISTINCT peer_id) AS peers,
      MAX(step) AS step, MAX(round) AS round, ${weightedMean('train_loss')} AS trainLoss, ${weightedMean('val_loss')} AS valLoss,
      SUM(weight * (typeof(train_loss) = 'text' OR typeof(val_loss) = 'text')) AS nonFinite,
      SUM(tokens_per_s * weight) / SUM(weight) AS tokensPerS, TOTAL(bytes_in) AS bytesIn, TOTAL(bytes_out) AS bytesOut,
      SUM(partner_dist * weight) / SUM(CASE WHEN partner_dist IS NOT NULL THEN weight END) AS partnerDist
    FROM reports WHERE ${where} GROUP BY ${bucket} ORDER BY 1`).all({ ...params, lo: span.lo, bucketMs }) as BucketPoint[];
  return { downsampled: true, total, bucketMs, points };
}

/**
 * How a run's exchanges travelled (direct vs through a TURN relay) and why links failed, from
 * the reports in [from, to]. A peer is `failing` when links fail for it and none of its last
 * FAILING_WINDOW rounds paired: it is training alone, and should be told why.
 */
export function connectivityOf(db: Db, runId: string, from: number, to: number): Connectivity {
  const range = { runId, from, to };
  const where = 'run_id = @runId AND t >= @from AND t <= @to';
  // One pass grouped by peer (its latest link error: the greatest "t id" key, zero-padded so
  // text order is numeric order); the run's totals are the sums of its peers'.
  const groups = db.prepare(`SELECT peer_id AS peerId, SUM(weight * (partner IS NOT NULL)) AS paired, SUM(weight * (partner IS NULL)) AS solo,
      SUM(link_failures) AS linkFailures,
      SUM(weight * (link_local IS NOT NULL AND link_local != 'relay' AND link_remote != 'relay')) AS direct,
      SUM(weight * (link_local = 'relay' OR link_remote = 'relay')) AS relayed,
      MAX(CASE WHEN link_error IS NOT NULL THEN printf('%020d %020d ', t, id) || link_error END) AS lastError
    FROM reports WHERE ${where} GROUP BY peer_id ORDER BY peer_id`).all(range) as
    { peerId: string; paired: number; solo: number; linkFailures: number; direct: number | null; relayed: number | null; lastError: string | null }[];
  let direct = 0, relayed = 0, failures = 0;
  for (const g of groups) { direct += g.direct ?? 0; relayed += g.relayed ?? 0; failures += g.linkFailures; }
  const shown = groups.slice(0, MAX_PEERS);
  // A peer is failing only when links fail for it: its last rounds are read for those alone,
  // each by one seek of reports_run_peer_t.
  const asked = shown.filter((g) => g.linkFailures > 0).map((g) => g.peerId);
  const failing = new Set(asked.length === 0 ? [] : (db.prepare(`SELECT j.value AS peerId FROM json_each(@peers) AS j
    WHERE (SELECT COUNT(*) >= ${Math.min(FAILING_WINDOW, 2)} AND TOTAL(partner IS NOT NULL) = 0 FROM (SELECT partner FROM reports INDEXED BY reports_run_peer_t
      WHERE run_id = @runId AND peer_id = j.value AND t >= @from AND t <= @to ORDER BY t DESC, id DESC LIMIT ${FAILING_WINDOW}))`)
    .all({ ...range, peers: JSON.stringify(asked) }) as { peerId: string }[]).map((r) => r.peerId));
  const times = Float64Array.from(db.prepare(`SELECT connect_ms AS ms FROM reports WHERE ${where} AND connect_ms IS NOT NULL`).all(range) as { ms: number }[], (r) => r.ms).sort();
  const reasons = db.prepare(`SELECT link_error AS reason, SUM(link_failures) AS count FROM reports
    WHERE ${where} AND link_error IS NOT NULL AND link_failures > 0 GROUP BY link_error ORDER BY count DESC, reason LIMIT 10`)
    .all(range) as { reason: string; count: number }[];
  return {
    exchanges: { direct, relayed },
    relayFraction: direct + relayed > 0 ? relayed / (direct + relayed) : null,
    medianConnectMs: times.length > 0 ? times[Math.floor((times.length - 1) / 2)]! : null,
    linkFailures: failures,
    reasons,
    peers: shown.map((g) => ({
      peerId: g.peerId, paired: g.paired, solo: g.solo, linkFailures: g.linkFailures,
      lastLinkError: g.lastError === null ? null : g.lastError.slice(42), failing: failing.has(g.peerId),
    })),
  };
}

/**
 * The most rows each peer may keep so that together they keep about `total`, as evenly as their
 * counts allow (water-filling): those with fewer keep all of theirs. Infinity when all fit.
 */
export function fairShare(counts: readonly number[], total: number): number {
  const sorted = [...counts].sort((a, b) => a - b);
  let left = total;
  for (let i = 0; i < sorted.length; i++) {
    const rest = sorted.length - i;
    if (sorted[i]! * rest > left) return left / rest;
    left -= sorted[i]!;
  }
  return Infinity;
}
