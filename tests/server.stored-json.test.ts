// Issue 16: what the coordinator wrote to SQLite as JSON is read back through its schema. A
// damaged run row fails naming the field (not as a bare SyntaxError, not sent on to every
// volunteer); a damaged offender event counts no strike and never throws into pairing.
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDb } from '../server/db.ts';
import { RunStore } from '../server/runs.ts';
import { VETO_AFTER } from '../server/peers.ts';
import { EventLog } from '../server/events.ts';
import { LiveHub } from '../server/live.ts';
import { startServer, type TestServer } from './support/coordinator.ts';

const dirs: string[] = [];
let server: TestServer | null = null;
afterEach(async () => {
  await server?.close();
  server = null;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function runs() {
  const dir = mkdtempSync(join(tmpdir(), 'murmur-stored-'));
  dirs.push(dir);
  const db = openDb(join(dir, 'murmur.sqlite'));
  const store = new RunStore(db, () => 1000);
  store.ensureDefault();
  return { db, store };
}

describe('runs read back from the database', () => {
  it('names the field of a damaged model, train or embed-sites column', () => {
    const { db, store } = runs();
    const model = (db.prepare("SELECT model_json FROM runs WHERE id = 'default'").get() as { model_json: string }).model_json;
    db.prepare("UPDATE runs SET model_json = ? WHERE id = 'default'").run(JSON.stringify({ ...JSON.parse(model), heads: 'four' }));
    expect(() => store.get('default')).toThrow('run "default" in the database is damaged: run.model.heads must be integer, got "four"');
    db.prepare("UPDATE runs SET model_json = ? WHERE id = 'default'").run(model);
    db.prepare("UPDATE runs SET train_json = '{\"batch\": 8' WHERE id = 'default'").run();
    expect(() => store.get('default')).toThrow('run default train_json in the database is not JSON');
    db.prepare("UPDATE runs SET embed_sites_json = ? WHERE id = 'default'").run(JSON.stringify(["https://a.test; script-src *"]));
    expect(() => store.embedSites('default')).toThrow(/^run "default" in the database is damaged: embedSites\[0\] does not match /);
    db.close();
  });

  it('reads an intact row as it was written', () => {
    const { db, store } = runs();
    const run = store.get('default')!;
    expect(run.id).toBe('default');
    expect(store.embedSites('default')).toEqual([]);
    db.close();
  });
});

describe('offender events read back from the database', () => {
  it('counts strikes from the rows its schema accepts and skips the rest', async () => {
    server = await startServer();
    const [reporter, accused] = ['p-00000000000000a1', 'p-00000000000000b2'];
    const add = (data: string) => server!.c.db.prepare("INSERT INTO events (run_id, t, kind, peer_id, data_json) VALUES ('default', 1, 'peer-offender', ?, ?)").run(reporter, data);
    const strike = (n: number) => JSON.stringify({ accused, reason: 'non-finite: x', strike: n, vetoed: n >= VETO_AFTER, paired: true });
    add('{"accused": "p-00000000000000b2", ');
    add(JSON.stringify({ accuser: accused }));
    for (let n = 1; n < VETO_AFTER; n++) add(strike(n));
    // One strike short of the veto: the damaged rows counted nothing (and threw nothing).
    expect(server.c.hub.canPair('default', reporter, accused)).toBe(true);
  });
});

describe('run events read back from the database', () => {
  it('lists the rows its schema accepts and names each one it leaves out', () => {
    const { db } = runs();
    const live = new LiveHub();
    const skipped: string[] = [];
    const log = new EventLog(db, live, () => 5, undefined, (p) => skipped.push(p));
    try {
      const add = (kind: string, data: string | null) =>
        Number(db.prepare("INSERT INTO events (run_id, t, kind, peer_id, data_json) VALUES ('default', 5, ?, NULL, ?)").run(kind, data).lastInsertRowid);
      const good = log.append('default', 'run-updated', null, { change: { name: 'x' } });
      const torn = add('run-updated', '{"name": ');
      const kind = add('run-exploded', null);
      const huge = add('run-updated', JSON.stringify({ pad: 'x'.repeat(100_000) }));
      const deep = add('run-updated', '['.repeat(40) + ']'.repeat(40));
      const plain = add('run-stopped', null);
      expect(log.list('default', 0, 10, 100).map((e) => e.id)).toEqual([good.id, plain]);
      expect(log.list('default', 0, 10, 100)[0]!.data).toEqual({ change: { name: 'x' } });
      expect(skipped.slice(0, 4)).toEqual([
        `event ${torn}.data is not JSON`,
        `event ${kind}.kind must be one of "run-created", "run-updated", "run-stopped", "peer-joined", "peer-left", "peer-offender", "checkpoint-saved", "checkpoint-deleted", "checkpoint-failed", got "run-exploded"`,
        `event ${huge}.data has 100010 characters, at most 65536`,
        `event ${deep}.data nests deeper than 16`,
      ]);
    } finally {
      live.close();
      db.close();
    }
  });
});
