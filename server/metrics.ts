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
import type { ReportFields, WireLoss } from '../src/protocol/messages.ts';

export interface ReportRow extends ReportFields {
  runId: string;
  peerId: string;
  seq: number;
  /** Time the point is plotted at: the client's measurement time, clamped to the receipt time. */
  t: number;
  receivedAt: number;
}

export type Committed = (row: ReportRow, duplicate: boolean) => void;

/** Client clocks are not trusted beyond this: older points are plotted when received. */
const MAX_CLIENT_LAG_MS = 7 * 24 * 3600 * 1000;

export function plotTime(clientTime: number, receivedAt: number): number {
  if (clientTime > receivedAt || clientTime < receivedAt - MAX_CLIENT_LAG_MS) return receivedAt;
  return Math.round(clientTime);
}

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
}

/**
 * One time bucket: means of the gauges, sums of the byte counters, maxima of the counters.
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
      (run_id, peer_id, seq, t, received_at, step, round, train_loss, val_loss, tokens_per_s, bytes_in, bytes_out, partner, partner_dist, adapter)
      VALUES (@runId, @peerId, @seq, @t, @receivedAt, @step, @round, @trainLoss, @valLoss, @tokensPerS, @bytesIn, @bytesOut, @partner, @partnerDist, @adapter)`);
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
        const { time: _t, ...params } = row;
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
          tokens_per_s AS tokensPerS, bytes_in AS bytesIn, bytes_out AS bytesOut, partner, partner_dist AS partnerDist, adapter
        FROM reports WHERE ${where} ORDER BY t, id`).all(params) as RawPoint[];
      return { downsampled: false, total, points };
    }
    // Buckets over the range actually covered, so a wide default range does not waste points.
    const span = this.db.prepare(`SELECT MIN(t) AS lo, MAX(t) AS hi FROM reports WHERE ${where}`).get(params) as { lo: number; hi: number };
    const bucketMs = Math.max(1, Math.ceil((span.hi - span.lo + 1) / q.maxPoints));
    // Bound JS numbers arrive as REAL: cast so the bucket index is an integer division.
    const bucket = '((t - CAST(@lo AS INTEGER)) / CAST(@bucketMs AS INTEGER))';
    const points = this.db.prepare(`SELECT CAST(@lo AS INTEGER) + ${bucket} * CAST(@bucketMs AS INTEGER) AS t, COUNT(*) AS n, COUNT(DISTINCT peer_id) AS peers,
        MAX(step) AS step, MAX(round) AS round, AVG(${numeric('train_loss')}) AS trainLoss, AVG(${numeric('val_loss')}) AS valLoss,
        SUM(typeof(train_loss) = 'text' OR typeof(val_loss) = 'text') AS nonFinite,
        AVG(tokens_per_s) AS tokensPerS, SUM(bytes_in) AS bytesIn, SUM(bytes_out) AS bytesOut, AVG(partner_dist) AS partnerDist
      FROM reports WHERE ${where} GROUP BY ${bucket} ORDER BY 1`).all({ ...params, lo: span.lo, bucketMs }) as BucketPoint[];
    return { downsampled: true, total, bucketMs, points };
  }
}
