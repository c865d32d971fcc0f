// The coordinator's only store: one SQLite file (better-sqlite3) under the data directory.
// WAL mode so dashboards read while reports are written; synchronous=NORMAL because in WAL
// mode a commit is then durable against a process crash (kill -9) — only an OS crash or power
// loss can lose the last commits, and those are metric rows the peers still hold until acked.
// Schema changes are numbered migrations tracked in PRAGMA user_version.
import Database from 'better-sqlite3';

export type Db = Database.Database;

const MIGRATIONS: string[] = [
  // 1: runs, peers, metric reports, run events, checkpoints.
  `
  CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    dataset TEXT NOT NULL,
    preset TEXT NOT NULL,
    model_json TEXT NOT NULL,
    train_json TEXT NOT NULL,
    compression TEXT NOT NULL,
    pair_wait_frac REAL NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'stopped')),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
  );
  CREATE TABLE peers (
    id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(id),
    replica INTEGER NOT NULL,
    client_json TEXT,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    UNIQUE (run_id, replica)
  );
  CREATE TABLE reports (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    peer_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    t INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    step INTEGER NOT NULL,
    round INTEGER NOT NULL,
    train_loss REAL,
    val_loss REAL,
    tokens_per_s REAL NOT NULL,
    bytes_in INTEGER NOT NULL,
    bytes_out INTEGER NOT NULL,
    partner TEXT,
    partner_dist REAL,
    adapter TEXT,
    UNIQUE (run_id, peer_id, seq)
  );
  CREATE INDEX reports_run_t ON reports (run_id, t);
  CREATE INDEX reports_run_peer_t ON reports (run_id, peer_id, t);
  CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    t INTEGER NOT NULL,
    kind TEXT NOT NULL,
    peer_id TEXT,
    data_json TEXT
  );
  CREATE INDEX events_run_t ON events (run_id, t);
  CREATE TABLE checkpoints (
    id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL,
    round INTEGER NOT NULL,
    val_loss REAL,
    tokens INTEGER NOT NULL,
    peer_id TEXT,
    sha256 TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    file TEXT NOT NULL,
    created_at INTEGER NOT NULL
  );
  CREATE INDEX checkpoints_run ON checkpoints (run_id, created_at);
  `,
  // 2: a run's ICE policy (relay-only hides volunteers' addresses); each report's link.
  `
  ALTER TABLE runs ADD COLUMN ice_policy TEXT NOT NULL DEFAULT 'all' CHECK (ice_policy IN ('all', 'relay'));
  ALTER TABLE reports ADD COLUMN link_local TEXT;
  ALTER TABLE reports ADD COLUMN link_remote TEXT;
  ALTER TABLE reports ADD COLUMN connect_ms REAL;
  ALTER TABLE reports ADD COLUMN link_failures INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE reports ADD COLUMN link_error TEXT;
  `,
  // 3: the sites allowed to frame a run's widget (CSP frame-ancestors); none until the admin adds one.
  `ALTER TABLE runs ADD COLUMN embed_sites_json TEXT NOT NULL DEFAULT '[]';`,
  // 4: retention finds departed peers and their events without scanning (server/peers.ts, prune).
  `
  CREATE INDEX peers_last_seen ON peers (last_seen);
  CREATE INDEX events_peer ON events (peer_id);
  `,
  // 5: a report row thinned into by older ones stands for `weight` reports (server/metrics.ts, thin).
  `ALTER TABLE reports ADD COLUMN weight INTEGER NOT NULL DEFAULT 1;`,
  // 6: the probe's figures in each report (src/round/probe.ts): its time, both candidates' probe
  // losses, and whether the partner's update was rejected.
  `
  ALTER TABLE reports ADD COLUMN probe_ms REAL;
  ALTER TABLE reports ADD COLUMN probe_solo REAL;
  ALTER TABLE reports ADD COLUMN probe_paired REAL;
  ALTER TABLE reports ADD COLUMN probe_rejected INTEGER;
  `,
  // 7: how many validation batches the coordinator measured a checkpoint's loss on (null: not
  // measured by it, or on other windows; server/checkpoint-remeasure.ts measures it again).
  `ALTER TABLE checkpoints ADD COLUMN val_batches INTEGER;`,
  // 8: the widget's consent requests a coordinator hands to its next start (server/consent.ts,
  // ConsentTable): each change written as it happens and all as it closes, read back as it starts
  // and written again as taken back; a mirror of the store, so at most its 10,000 places.
  `
  CREATE TABLE consent_sessions (
    nonce TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    site TEXT NOT NULL,
    state TEXT NOT NULL,
    address TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    left INTEGER NOT NULL DEFAULT 0
  );
  `,
  // 9: the widget's intensity ceiling a consent request names (its frame's; rows of before: 1, all of the GPU).
  `ALTER TABLE consent_sessions ADD COLUMN max_intensity REAL NOT NULL DEFAULT 1;`,
];

/** The coordinator's database in its data dir: what marks a folder as a coordinator's. */
export const DB_FILE = 'murmur.sqlite';

export function openDb(file: string): Db {
  const db = new Database(file);
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
    migrate(db);
  } catch (err) {
    db.close();
    // SQLite's own words ("file is not a database") name neither the file nor what to do.
    const code = (err as { code?: string }).code;
    if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT') {
      throw new Error(`${file} is damaged (${(err as Error).message}): restore the data dir from a backup (murmur backup), or move the file aside to start with an empty database`);
    }
    throw err;
  }
  return db;
}

export function migrate(db: Db): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > MIGRATIONS.length) {
    throw new Error(`database schema version ${current} is newer than this build (${MIGRATIONS.length}); upgrade murmur`);
  }
  for (let v = current; v < MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v]!);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
}

/** Row counts of every table: tests use it to prove that invalid input wrote nothing. */
export function tableCounts(db: Db): Record<string, number> {
  const out: Record<string, number> = {};
  for (const t of ['runs', 'peers', 'reports', 'events', 'checkpoints']) {
    out[t] = (db.prepare(`SELECT COUNT(*) AS n FROM ${t}`).get() as { n: number }).n;
  }
  return out;
}
