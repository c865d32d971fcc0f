// Metric reports: written to SQLite with group commit (every report that arrived in the same
// event-loop turn shares one transaction), acknowledged to the peer only after that commit, then
// pushed to dashboards. A report is keyed by (run, peer, seq): a peer that resends after a lost
// ack or a coordinator restart gets an ack with `duplicate` and nothing is written twice.
//
// Non-finite losses ("NaN", "Infinity", "-Infinity" on the wire, see WireLoss) are stored as
// those TEXT values (SQLite does not coerce them into the REAL columns) and come back verbatim
// from raw queries. Downsampled buckets average only the numeric losses and count the rows that
// held a non-finite one in `nonFinite`, so a NaN is never averaged away unseen.
import type { Db } from './db.ts';
import type { CandidateType, ReportFields, WireLoss } from '../src/protocol/messages.ts';

export interface ReportRow extends ReportFields {
  runId: string;
  peerId: string;
  seq: number;
  /** Time the point is plotted at: when the coordinator received it (a client's clock is not trusted). */
  t: number;
  receivedAt: number;
}

export type Committed = (row: ReportRow, duplicate: boolean) => void;

export interface MetricsQuery {
  runId: string;
  peerId?: string;
  from: number;
  to: number;
  /** Downsample to about this many points when the range holds more rows. */
  maxPoints: number;
}

export interface RawPoint {
  t: number; peerId: string; seq: number; step: number; round: number; trainLoss: WireLoss; valLoss: WireLoss;
  tokensPerS: number; bytesIn: number; bytesOut: number; partner: string | null; partnerDist: number | null; adapter: string | null;
  linkLocal: CandidateType | null; linkRemote: CandidateType | null; connectMs: number | null; linkFailures: number; linkError: string | null;
  probeMs: number | null; probeSolo: number | null; probePaired: number | null; probeRejected: boolean | null;
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
 */
export interface BucketPoint {
  t: number; n: number; peers: number; step: number; round: number; trainLoss: number | null; valLoss: number | null; nonFinite: number;
  tokensPerS: number; bytesIn: number; bytesOut: number; partnerDist: number | null;
}

export type MetricsResult =
  | { downsampled: false; total: number; points: RawPoint[] }
  | { downsampled: true; total: number; bucketMs: number; points: BucketPoint[] };

/** The column's value when it is a number; NULL for a stored "NaN"/"Infinity" (TEXT). */
const numeric = (col: string) => `CASE WHEN typeof(${col}) IN ('real', 'integer') THEN ${col} END`;

export class MetricsStore {
  private queue: { row: ReportRow; done: Committed }[] = [];
  private scheduled = false;
  private readonly insert;

  constructor(private readonly db: Db) {
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
    for (let i = 0; i < batch.length; i++) batch[i]!.done(batch[i]!.row, dup[i]!);
  }

  query(q: MetricsQuery): MetricsResult {
    const where = `run_id = @runId AND t >= @from AND t <= @to${q.peerId ? ' AND peer_id = @peerId' : ''}`;
    const params = { runId: q.runId, from: q.from, to: q.to, ...(q.peerId ? { peerId: q.peerId } : {}) };
    const total = (this.db.prepare(`SELECT COUNT(*) AS n FROM reports WHERE ${where}`).get(params) as { n: number }).n;
    if (total <= q.maxPoints) {
      const points = this.db.prepare(`SELECT t, peer_id AS peerId, seq, step, round, train_loss AS trainLoss, val_loss AS valLoss,
          tokens_per_s AS tokensPerS, bytes_in AS bytesIn, bytes_out AS bytesOut, partner, partner_dist AS partnerDist, adapter,
          link_local AS linkLocal, link_remote AS linkRemote, connect_ms AS connectMs, link_failures AS linkFailures, link_error AS linkError,
          probe_ms AS probeMs, probe_solo AS probeSolo, probe_paired AS probePaired, probe_rejected AS probeRejected
        FROM reports WHERE ${where} ORDER BY t, id`).all(params) as (Omit<RawPoint, 'probeRejected'> & { probeRejected: number | null })[];
      return { downsampled: false, total, points: points.map((p) => ({ ...p, probeRejected: p.probeRejected === null ? null : p.probeRejected === 1 })) };
    }
    // Buckets over the range actually covered, so a wide default range does not waste points.
    const span = this.db.prepare(`SELECT MIN(t) AS lo, MAX(t) AS hi FROM reports WHERE ${where}`).get(params) as { lo: number; hi: number };
    const bucketMs = Math.max(1, Math.ceil((span.hi - span.lo + 1) / q.maxPoints));
    // Bound JS numbers arrive as REAL: cast so the bucket index is an integer division.
    const bucket = '((t - CAST(@lo AS INTEGER)) / CAST(@bucketMs AS INTEGER))';
    const points = this.db.prepare(`SELECT CAST(@lo AS INTEGER) + ${bucket} * CAST(@bucketMs AS INTEGER) AS t, COUNT(*) AS n, COUNT(DISTINCT peer_id) AS peers,
        MAX(step) AS step, MAX(round) AS round, AVG(${numeric('train_loss')}) AS trainLoss, AVG(${numeric('val_loss')}) AS valLoss,
        SUM(typeof(train_loss) = 'text' OR typeof(val_loss) = 'text') AS nonFinite,
        AVG(tokens_per_s) AS tokensPerS, TOTAL(bytes_in) AS bytesIn, TOTAL(bytes_out) AS bytesOut, AVG(partner_dist) AS partnerDist
      FROM reports WHERE ${where} GROUP BY ${bucket} ORDER BY 1`).all({ ...params, lo: span.lo, bucketMs }) as BucketPoint[];
    return { downsampled: true, total, bucketMs, points };
  }

  /**
   * How a run's exchanges travelled (direct vs through a TURN relay) and why links failed, from
   * the reports in [from, to]. A peer is `failing` when links fail for it and none of its last
   * FAILING_WINDOW rounds paired: it is training alone, and should be told why.
   */
  connectivity(runId: string, from: number, to: number): Connectivity {
    const range = { runId, from, to };
    const where = 'run_id = @runId AND t >= @from AND t <= @to';
    const routes = this.db.prepare(`SELECT
        SUM(link_local IS NOT NULL AND link_local != 'relay' AND link_remote != 'relay') AS direct,
        SUM(link_local = 'relay' OR link_remote = 'relay') AS relayed,
        SUM(link_failures) AS failures
      FROM reports WHERE ${where}`).get(range) as { direct: number | null; relayed: number | null; failures: number | null };
    const times = this.db.prepare(`SELECT connect_ms AS ms FROM reports WHERE ${where} AND connect_ms IS NOT NULL ORDER BY connect_ms`)
      .all(range) as { ms: number }[];
    const reasons = this.db.prepare(`SELECT link_error AS reason, SUM(link_failures) AS count FROM reports
      WHERE ${where} AND link_error IS NOT NULL AND link_failures > 0 GROUP BY link_error ORDER BY count DESC, reason LIMIT 10`)
      .all(range) as { reason: string; count: number }[];
    const perPeer = this.db.prepare(`SELECT peer_id AS peerId, SUM(partner IS NOT NULL) AS paired, SUM(partner IS NULL) AS solo,
        SUM(link_failures) AS linkFailures,
        (SELECT link_error FROM reports r2 WHERE r2.run_id = reports.run_id AND r2.peer_id = reports.peer_id
           AND r2.link_error IS NOT NULL AND r2.t >= @from AND r2.t <= @to ORDER BY r2.t DESC, r2.id DESC LIMIT 1) AS lastLinkError
      FROM reports WHERE ${where} GROUP BY peer_id ORDER BY peer_id LIMIT 1000`).all(range) as Omit<Connectivity['peers'][number], 'failing'>[];
    const recent = this.db.prepare(`SELECT partner FROM reports WHERE run_id = @runId AND peer_id = @peerId AND t >= @from AND t <= @to
      ORDER BY t DESC, id DESC LIMIT ${FAILING_WINDOW}`);
    const peers = perPeer.map((p) => {
      const last = recent.all({ ...range, peerId: p.peerId }) as { partner: string | null }[];
      const failing = p.linkFailures > 0 && last.length >= Math.min(FAILING_WINDOW, 2) && last.every((r) => r.partner === null);
      return { ...p, failing };
    });
    const direct = routes.direct ?? 0, relayed = routes.relayed ?? 0;
    return {
      exchanges: { direct, relayed },
      relayFraction: direct + relayed > 0 ? relayed / (direct + relayed) : null,
      medianConnectMs: times.length > 0 ? times[Math.floor((times.length - 1) / 2)]!.ms : null,
      linkFailures: routes.failures ?? 0,
      reasons,
      peers,
    };
  }
}

/** Rounds without a partner (while links fail) after which a peer counts as failing. */
export const FAILING_WINDOW = 3;
