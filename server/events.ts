// Run events (peer joined / left / reported as an offender, run created / changed / stopped,
// checkpoint saved / deleted):
// one SQLite row each, and the same object pushed live to dashboards.
//
// Retention: joins and leaves, and offender reports, are the kinds clients make at will (a peer
// reconnecting with its session all day never departs, so departed-peer retention never reaches
// its events; ids from one address that the pool pairs with each other can report each other a
// dozen times a pair, and ids are free). A run keeps at most `maxPeerEventsPerRun` joins and
// leaves and `maxOffenderEventsPerRun` offender reports; past either the oldest quarter of that
// kind goes, and whoever counts offender reports (the veto) is told to count again. Other events
// (run changes, checkpoints) stay.
import type { Db } from './db.ts';
import type { LiveHub } from './live.ts';
import { jsonDepth, schemaProblem } from '../src/protocol/check.ts';
import type { RunEventData } from '../src/protocol/api.ts';
import { RunEvent, type RunEventKind } from '../src/protocol/events.ts';

export type { RunEvent, RunEventKind };

/** Join and leave events kept per run: at ~150 bytes each, 100,000 is ~15 MB. */
export const DEFAULT_MAX_PEER_EVENTS_PER_RUN = 100_000;

/**
 * Offender reports kept per run (~200 bytes each: 20,000 is ~4 MB). Honest reports are rare (a
 * few per hundred exchanges at most); a flood pushes out the oldest, which only lets a pair the
 * veto parted meet again, and be reported again if it still does harm.
 */
export const DEFAULT_MAX_OFFENDER_EVENTS_PER_RUN = 20_000;

/** The kinds of event a client makes at will, each kept under its own cap per run. */
const CAPPED = {
  churn: "kind IN ('peer-joined', 'peer-left')",
  offender: "kind = 'peer-offender'",
} as const;
type Capped = keyof typeof CAPPED;

/** Longest and deepest stored `data` read back (the coordinator writes a few hundred bytes). */
const MAX_DATA_CHARS = 64 * 1024;
const MAX_DATA_DEPTH = 16;

type EventRow = Omit<RunEvent, 'data'> & { data: string | null };

/** A stored row as the event it was, or the reason it is not one (a damaged database). */
function readRow(r: EventRow): RunEvent | string {
  const where = `event ${r.id}`;
  let data: unknown = null;
  if (r.data !== null) {
    if (r.data.length > MAX_DATA_CHARS) return `${where}.data has ${r.data.length} characters, at most ${MAX_DATA_CHARS}`;
    try { data = JSON.parse(r.data); } catch { return `${where}.data is not JSON`; }
    if (jsonDepth(data, MAX_DATA_DEPTH) > MAX_DATA_DEPTH) return `${where}.data nests deeper than ${MAX_DATA_DEPTH}`;
  }
  const ev = { ...r, data };
  const problem = schemaProblem(RunEvent, ev, where);
  return problem === null ? (ev as RunEvent) : problem;
}

export class EventLog {
  private readonly insert;
  /** kind -> run -> its events of that kind, counted once and kept up to date. */
  private readonly counted: Record<Capped, Map<string, number>> = { churn: new Map(), offender: new Map() };
  /** Told the run whose oldest offender reports were just deleted (PeerHub counts its strikes again). */
  onOffendersTrimmed: ((runId: string) => void) | null = null;

  /** `skipped` hears of each stored row that `list` leaves out, and why. */
  constructor(private readonly db: Db, private readonly live: LiveHub, private readonly now: () => number,
    readonly maxPeerEventsPerRun = DEFAULT_MAX_PEER_EVENTS_PER_RUN, private readonly skipped: (problem: string) => void = () => {},
    readonly maxOffenderEventsPerRun = DEFAULT_MAX_OFFENDER_EVENTS_PER_RUN) {
    this.insert = db.prepare('INSERT INTO events (run_id, t, kind, peer_id, data_json) VALUES (?, ?, ?, ?, ?)');
  }

  /** Writes an event and pushes it live; `data` is what its kind's schema describes (RUN_EVENT_DATA). */
  append<K extends RunEventKind>(runId: string, kind: K, peerId: string | null, data: RunEventData[K]): RunEvent {
    const t = this.now();
    const id = Number(this.insert.run(runId, t, kind, peerId, data === null ? null : JSON.stringify(data)).lastInsertRowid);
    if (kind === 'peer-joined' || kind === 'peer-left') this.count('churn', runId, this.maxPeerEventsPerRun);
    else if (kind === 'peer-offender' && this.count('offender', runId, this.maxOffenderEventsPerRun)) this.onOffendersTrimmed?.(runId);
    const ev: RunEvent = { id, runId, t, kind, peerId, data };
    const channel = kind.startsWith('peer-') ? 'peer' : kind.startsWith('checkpoint-') ? 'checkpoint' : 'run';
    this.live.publish(runId, channel, ev);
    return ev;
  }

  /** One more event of `kind` in `runId` (already written); past `cap` the oldest quarter goes. True when some went. */
  private count(kind: Capped, runId: string, cap: number): boolean {
    const where = CAPPED[kind];
    let n = this.counted[kind].get(runId);
    n = n === undefined ? (this.db.prepare(`SELECT COUNT(*) AS n FROM events WHERE run_id = ? AND ${where}`).get(runId) as { n: number }).n : n + 1;
    let trimmed = false;
    if (n > cap) {
      const drop = n - Math.floor((cap * 3) / 4);
      n -= this.db.prepare(`DELETE FROM events WHERE id IN (SELECT id FROM events WHERE run_id = ? AND ${where} ORDER BY t, id LIMIT ?)`).run(runId, drop).changes;
      trimmed = true;
    }
    this.counted[kind].set(runId, n);
    return trimmed;
  }

  /** Departed peers' events were deleted behind the log's back (PeerHub.prune): count again. */
  recount(): void {
    for (const m of Object.values(this.counted)) m.clear();
  }

  /**
   * Events with from <= t <= to, at most `limit`: the oldest first ('asc'), or the newest first
   * ('desc', what a dashboard wants: the latest N of a long run without paging through it all).
   */
  list(runId: string, from: number, to: number, limit: number, order: 'asc' | 'desc' = 'asc'): RunEvent[] {
    const dir = order === 'desc' ? 'DESC' : 'ASC';
    const rows = this.db.prepare(`SELECT id, run_id AS runId, t, kind, peer_id AS peerId, data_json AS data FROM events
      WHERE run_id = ? AND t >= ? AND t <= ? ORDER BY t ${dir}, id ${dir} LIMIT ?`).all(runId, from, to, limit) as EventRow[];
    // A damaged row is left out and named; the rest of the page is still served.
    const out: RunEvent[] = [];
    for (const r of rows) {
      const ev = readRow(r);
      if (typeof ev === 'string') this.skipped(ev);
      else out.push(ev);
    }
    return out;
  }
}
