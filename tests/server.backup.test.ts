// `murmur backup` (server/backup.ts) while the coordinator runs and a volunteer keeps reporting:
// the backup holds every report acknowledged before it began, the checkpoint with the same bytes,
// the secrets (so the admin token and volunteers' sessions still hold after a restore) and the
// datasets; a coordinator started on it serves them. A backup that cannot be made says why and
// leaves nothing behind.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stateCheckBatchCount } from '../src/data/sampler.ts';
import { preset } from '../src/model/config.ts';
import { buildLayout } from '../src/model/layout.ts';
import { initParams } from '../src/model/init.ts';
import { backupDataDir } from '../server/backup.ts';
import { openDb } from '../server/db.ts';
import { RawPeer, report, sleep, startServer, type TestServer } from './support/coordinator.ts';
import { ROOT } from './support/browser.ts';
import { murmurCli } from './support/murmur-cli.ts';

const root = mkdtempSync(join(tmpdir(), 'murmur-backup-'));
const dataDir = join(root, 'data');
let s: TestServer;
let checkpoint: { id: string; sha256: string; bytes: number; file: string };

beforeAll(async () => {
  s = await startServer({}, {}, dataDir);
  const run = s.c.runs.get('default')!;
  const layout = buildLayout(preset('tiny'));
  const ck = await s.c.checkpoints.save(run, {
    meta: { runId: 'default', step: 40, round: 4, floats: layout.total, valLoss: 3.25, tokens: 40960 },
    phi: initParams(layout, 7), momentum: new Float32Array(layout.total),
  }, null, Date.now(), stateCheckBatchCount(run.model, run.train));
  checkpoint = { id: ck.id, sha256: ck.sha256, bytes: ck.bytes, file: ck.file };
});
afterAll(async () => {
  await s?.close();
  rmSync(root, { recursive: true, force: true });
});

/** `murmur backup` in its own process, as an operator runs it. */
function cli(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['bin/murmur.mjs', 'backup', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.on('exit', (code) => resolve({ code, out, err }));
  });
}

describe('murmur backup', () => {
  it('copies a running coordinator consistently, and a coordinator started on the copy serves it', async () => {
    const { peer, welcome } = await RawPeer.join(s.wsUrl);
    let restored: TestServer | null = null;
    try {
      // Reports acknowledged before the backup began.
      let seq = 0;
      for (; seq < 30; seq++) peer.send(report(seq + 1));
      await peer.next((m) => m.t === 'ack' && m.seq === 30);
      const ackedBefore = seq;
      // ...and more while it runs, until it is done.
      let done = false;
      const reporting = (async () => {
        while (!done) {
          seq++;
          peer.send(report(seq));
          await peer.next((m) => m.t === 'ack' && m.seq === seq);
          await sleep(40); // a pace under the hub's 50 frames/s, not a wait for anything
        }
      })();
      const dest = join(root, 'backup-1');
      const r = await cli(['--data-dir', dataDir, '--to', dest]);
      done = true;
      await reporting;
      expect(r.err).toBe('');
      expect(r.code).toBe(0);
      expect(r.out).toMatch(/^backed up .* to .*backup-1 in \d+\.\d s: 1 runs, \d+ report rows, 1 checkpoints \(\d+ files\), \d+ dataset files/);
      expect(readdirSync(root).sort()).toEqual(['backup-1', 'data']);
      for (const secret of ['admin-token', 'session-secret']) {
        expect(readFileSync(join(dest, secret), 'utf8')).toBe(readFileSync(join(dataDir, secret), 'utf8'));
        expect(statSync(join(dest, secret)).mode & 0o777).toBe(0o600);
      }

      restored = await startServer({}, {}, dest);
      const seqs = (restored.c.db.prepare('SELECT seq FROM reports WHERE peer_id = ? ORDER BY seq').all(welcome.peerId) as { seq: number }[]).map((x) => x.seq);
      expect(seqs.slice(0, ackedBefore)).toEqual(Array.from({ length: ackedBefore }, (_, i) => i + 1));
      expect(restored.c.adminToken).toBe(s.c.adminToken);
      const list = (await restored.c.app.inject({ method: 'GET', url: '/api/runs/default/checkpoints' })).json() as { checkpoints: { id: string; sha256: string }[] };
      expect(list.checkpoints.map((c) => [c.id, c.sha256])).toEqual([[checkpoint.id, checkpoint.sha256]]);
      const file = await restored.c.app.inject({ method: 'GET', url: `/api/runs/default/checkpoints/${checkpoint.id}/file` });
      expect(createHash('sha256').update(file.rawPayload).digest('hex')).toBe(checkpoint.sha256);
      const train = await restored.c.app.inject({ method: 'GET', url: '/api/runs/default/data/train.bin' });
      expect(train.statusCode).toBe(200);
      expect(train.rawPayload.length).toBeGreaterThan(100_000);
      // The volunteer's session, signed by the original, is taken by the restored coordinator.
      const { peer: again, welcome: back } = await RawPeer.join(restored.wsUrl, { session: welcome.session });
      again.close();
      expect(back.peerId).toBe(welcome.peerId);
    } finally {
      peer.close();
      await restored?.close();
    }
  });

  it('refuses a destination that is not a new or empty folder, or inside the data dir, and leaves nothing behind', () => {
    const full = join(root, 'full');
    mkdirSync(full);
    writeFileSync(join(full, 'x'), 'x');
    expect(() => backupDataDir(dataDir, full)).toThrow(`${full} exists and is not an empty folder; a backup goes to a new one`);
    expect(() => backupDataDir(dataDir, join(dataDir, 'inside'))).toThrow(`the backup ${join(dataDir, 'inside')} would be inside the data dir ${dataDir}; choose a folder outside it`);
    expect(() => backupDataDir(join(root, 'nothing'), join(root, 'b'))).toThrow(`${join(root, 'nothing')} holds no murmur.sqlite: not a coordinator's data dir (--data-dir)`);
    expect(existsSync(join(root, 'b'))).toBe(false);
    // Through a symlink to the data dir, still inside it.
    symlinkSync(dataDir, join(root, 'alias'));
    expect(() => backupDataDir(join(root, 'alias'), join(dataDir, 'checkpoints', 'b'))).toThrow(/would be inside the data dir/);
    expect(() => backupDataDir(dataDir, join(root, 'alias', 'b'))).toThrow(/would be inside the data dir/);
    // A failure once the copy is under way (a secret that cannot be copied) leaves nothing either.
    const broken = join(root, 'broken');
    mkdirSync(join(broken, 'admin-token'), { recursive: true });
    openDb(join(broken, 'murmur.sqlite')).close();
    expect(() => backupDataDir(broken, join(root, 'c'))).toThrow(/EISDIR/);
    expect(existsSync(join(root, 'c'))).toBe(false);
    expect(readdirSync(root).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('skips work in progress and what went away, and follows symlinked datasets', () => {
    const src = join(root, 'odd');
    mkdirSync(join(src, 'checkpoints', 'default'), { recursive: true });
    openDb(join(src, 'murmur.sqlite')).close();
    writeFileSync(join(src, 'checkpoints', 'default', 'c-1.json'), '{}');
    writeFileSync(join(src, 'checkpoints', 'default', 'c-2.safetensors.tmp-ab12'), 'half');
    mkdirSync(join(src, 'datasets', 'books.tmp-1234'), { recursive: true });
    writeFileSync(join(src, 'datasets', 'books.tmp-1234', 'train.bin'), 'half');
    mkdirSync(join(src, 'datasets', 'books.old-1234'), { recursive: true });
    writeFileSync(join(src, 'datasets', 'books.old-1234', 'train.bin'), 'old');
    const elsewhere = join(root, 'elsewhere-data');
    mkdirSync(elsewhere);
    writeFileSync(join(elsewhere, 'train.bin'), 'tokens');
    symlinkSync(elsewhere, join(src, 'datasets', 'linked'));
    symlinkSync(join(root, 'no-such-file'), join(src, 'checkpoints', 'default', 'dangling.json'));
    const dest = join(root, 'odd-backup');
    const r = backupDataDir(src, dest);
    expect([r.checkpointFiles, r.datasetFiles]).toEqual([1, 1]);
    expect(readdirSync(join(dest, 'checkpoints', 'default'))).toEqual(['c-1.json']);
    expect(readdirSync(join(dest, 'datasets'))).toEqual(['linked']);
    expect(readFileSync(join(dest, 'datasets', 'linked', 'train.bin'), 'utf8')).toBe('tokens');
  });

  it('a backup killed part way leaves its copy (and the secrets in it) only until the next one', () => {
    const dest = join(root, 'killed');
    const killed = murmurCli(['backup', '--data-dir', dataDir, '--to', dest], { fn: 'copyFileSync', match: '.safetensors' });
    expect(killed.signal).toBe('SIGKILL');
    const left = readdirSync(root).filter((f) => f.startsWith('killed.tmp-'));
    expect(left).toHaveLength(1);
    expect(readdirSync(join(root, left[0]!))).toContain('session-secret');
    const again = murmurCli(['backup', '--data-dir', dataDir, '--to', dest]);
    expect([again.status, again.err]).toEqual([0, '']);
    expect(readdirSync(root).filter((f) => f.startsWith('killed'))).toEqual(['killed']);
  });

  it('without datasets, copies none; into an empty folder, is fine', () => {
    const dest = join(root, 'empty');
    mkdirSync(dest);
    const r = backupDataDir(dataDir, dest, { datasets: false });
    expect(r.datasetFiles).toBe(0);
    expect(existsSync(join(dest, 'datasets'))).toBe(false);
    expect(r.checkpoints).toBe(1);
    expect(JSON.parse(readFileSync(join(dest, 'backup.json'), 'utf8'))).toMatchObject({ from: dataDir, runs: 1, checkpoints: 1, datasetFiles: 0 });
  });
});

/**
 * A backup is a folder anyone can hand an operator: a coordinator started on one that is damaged
 * or was edited serves nothing from outside it, touches nothing outside it, serves no checkpoint
 * that does not match its record, and starts.
 */
describe('a coordinator started on a damaged or hostile backup', () => {
  let n = 0;
  const fresh = (): string => {
    const dest = join(root, `restore-${++n}`);
    backupDataDir(dataDir, dest);
    return dest;
  };
  const sql = (dir: string, query: string, ...args: unknown[]) => {
    const db = openDb(join(dir, 'murmur.sqlite'));
    try { db.prepare(query).run(...args); } finally { db.close(); }
  };
  const onServer = async <T>(dir: string, fn: (r: TestServer) => Promise<T>): Promise<T> => {
    const r = await startServer({}, {}, dir);
    try { return await fn(r); } finally { await r.close(); }
  };
  const listed = async (r: TestServer) =>
    ((await (await fetch(`${r.url}/api/runs/default/checkpoints`)).json()) as { checkpoints: { id: string }[] }).checkpoints.map((c) => c.id);

  it('a checkpoint row whose file is a path out of the data dir is dropped: never served', async () => {
    const dest = fresh();
    const secret = join(root, 'outside-secret.txt');
    writeFileSync(secret, 'TOP SECRET outside the backup\n');
    sql(dest, 'UPDATE checkpoints SET file = ?, bytes = ? WHERE id = ?', '../../../outside-secret.txt', statSync(secret).size, checkpoint.id);
    await onServer(dest, async (r) => {
      const res = await fetch(`${r.url}/api/runs/default/checkpoints/${checkpoint.id}/file`);
      expect([res.status, await res.text()]).toEqual([404, expect.not.stringContaining('TOP SECRET')]);
      expect(await listed(r)).toEqual([]);
    });
    expect(readFileSync(secret, 'utf8')).toContain('TOP SECRET');
  });

  it('a checkpoint row whose file is a path out of the data dir, with no record, removes nothing at start', async () => {
    const dest = fresh();
    const victim = join(root, 'victim.txt');
    writeFileSync(victim, 'an operator file outside the backup');
    sql(dest, `INSERT INTO checkpoints (id, run_id, step, round, val_loss, tokens, peer_id, sha256, bytes, file, created_at)
      VALUES ('s1-deadbeef', 'default', 1, 0, NULL, 0, NULL, ?, 1, '../../../victim.txt', 1)`, '0'.repeat(64));
    await onServer(dest, async (r) => expect(await listed(r)).toEqual([checkpoint.id]));
    expect(existsSync(victim)).toBe(true);
  });

  it('a truncated checkpoint file is not listed, and its files stay for the operator', async () => {
    const dest = fresh();
    const file = join(dest, 'checkpoints', 'default', checkpoint.file);
    truncateSync(file, Math.floor(checkpoint.bytes / 2));
    await onServer(dest, async (r) => {
      expect(await listed(r)).toEqual([]);
      expect((await fetch(`${r.url}/api/runs/default/checkpoints/${checkpoint.id}/file`)).status).toBe(404);
    });
    expect(statSync(file).size).toBe(Math.floor(checkpoint.bytes / 2));
  });

  it('a checkpoint file truncated while the coordinator runs is withdrawn at its download, not sent short', async () => {
    const dest = fresh();
    await onServer(dest, async (r) => {
      expect(await listed(r)).toEqual([checkpoint.id]);
      truncateSync(join(dest, 'checkpoints', 'default', checkpoint.file), 100);
      const res = await fetch(`${r.url}/api/runs/default/checkpoints/${checkpoint.id}/file`);
      expect([res.status, ((await res.json()) as { error: string }).error]).toEqual([404, `checkpoint "${checkpoint.id}" of run default is damaged on disk and was withdrawn`]);
      expect(await listed(r)).toEqual([]);
    });
  });

  it('a checkpoint file that does not match its sha256 is withdrawn at its first download, never served as the checkpoint', async () => {
    const dest = fresh();
    const file = join(dest, 'checkpoints', 'default', checkpoint.file);
    const b = readFileSync(file);
    b[b.length - 5]! ^= 0xff;
    writeFileSync(file, b);
    await onServer(dest, async (r) => {
      // Two downloads at once: one hash, one withdrawal.
      const answers = await Promise.all([0, 1].map(() => fetch(`${r.url}/api/runs/default/checkpoints/${checkpoint.id}/file`)));
      expect(answers.map((a) => a.status)).toEqual([404, 404]);
      expect(await listed(r)).toEqual([]);
      const events = ((await (await fetch(`${r.url}/api/runs/default/events`)).json()) as { events: { kind: string; data: { id?: string; reason?: string } }[] }).events;
      expect(events.filter((e) => e.kind === 'checkpoint-deleted').map((e) => e.data)).toEqual([{ id: checkpoint.id, reason: expect.stringMatching(/has sha256 [0-9a-f]{64}, but its record says/) }]);
    });
    // Left on disk, and named at the next start instead of indexed.
    expect(readFileSync(file).equals(b)).toBe(true);
    await onServer(dest, async (r) => expect(await listed(r)).toEqual([]));
  });

  it('a database that is not one (a damaged copy) stops the start naming the file and the fix', async () => {
    const dest = fresh();
    writeFileSync(join(dest, 'murmur.sqlite'), Buffer.alloc(8192, 0x41));
    for (const f of ['murmur.sqlite-wal', 'murmur.sqlite-shm']) rmSync(join(dest, f), { force: true });
    await expect(startServer({}, {}, dest)).rejects.toThrow(
      `${join(dest, 'murmur.sqlite')} is damaged (file is not a database): restore the data dir from a backup (murmur backup), or move the file aside to start with an empty database`);
  });

  it('starts with a stray file beside the run folders, and with a record whose file is ".."', async () => {
    const dest = fresh();
    writeFileSync(join(dest, 'checkpoints', '.DS_Store'), 'x');
    const rec = JSON.parse(readFileSync(join(dest, 'checkpoints', 'default', `${checkpoint.id}.json`), 'utf8'));
    writeFileSync(join(dest, 'checkpoints', 'default', 's9-00000000.json'), JSON.stringify({ ...rec, id: 's9-00000000', file: '..' }));
    await onServer(dest, async (r) => expect(await listed(r)).toEqual([checkpoint.id]));
  });
});
