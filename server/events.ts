// Run events (peer joined / left / reported as an offender, run created / changed / stopped,
// checkpoint saved / deleted):
// one SQLite row each, and the same object pushed live to dashboards.
import type { Db } from './db.ts';
import type { LiveHub } from './live.ts';
import type { RunEvent, RunEventKind } from '../src/protocol/events.ts';

export type { RunEvent, RunEventKind };

export class EventLog {
  private readonly insert;

  constructor(private readonly db: Db, private readonly live: LiveHub, private readonly now: () => number) {
    this.insert = db.prepare('INSERT INTO events (run_id, t, kind, peer_id, data_json) VALUES (?, ?, ?, ?, ?)');
  }

  append(runId: string, kind: RunEventKind, peerId: string | null, data: unknown = null): RunEvent {
    const t = this.now();
    const id = Number(this.insert.run(runId, t, kind, peerId, data === null ? null : JSON.stringify(data)).lastInsertRowid);
    const ev: RunEvent = { id, runId, t, kind, peerId, data };
    const channel = kind.startsWith('peer-') ? 'peer' : kind.startsWith('checkpoint-') ? 'checkpoint' : 'run';
    this.live.publish(runId, channel, ev);
    return ev;
  }

  /**
   * Events with from <= t <= to, at most `limit`: the oldest first ('asc'), or the newest first
   * ('desc', what a dashboard wants: the latest N of a long run without paging through it all).
   */
  list(runId: string, from: number, to: number, limit: number, order: 'asc' | 'desc' = 'asc'): RunEvent[] {
    const dir = order === 'desc' ? 'DESC' : 'ASC';
    const rows = this.db.prepare(`SELECT id, run_id AS runId, t, kind, peer_id AS peerId, data_json AS data FROM events
      WHERE run_id = ? AND t >= ? AND t <= ? ORDER BY t ${dir}, id ${dir} LIMIT ?`).all(runId, from, to, limit) as (Omit<RunEvent, 'data'> & { data: string | null })[];
    return rows.map((r) => ({ ...r, data: r.data === null ? null : JSON.parse(r.data) }));
  }
}
