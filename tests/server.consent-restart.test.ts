// The widget's consent sessions across a coordinator restart (server/consent.ts, ConsentTable,
// saveConsents and loadConsents; server/app.ts): a coordinator writes each change of its sessions
// as it happens (not a claim's or a watch's renewal) and all of them as it closes, so after a
// close or a kill -9 the next start on the same data dir takes them back, and the frame's next
// claim and the window's next watch find them, over the real HTTP routes; a session ended before
// the kill stays ended. A write that fails loses nothing in memory. A coordinator that knows
// nothing of a session answers 404, which the frame says as the coordinator having lost the
// session, not as the window having been closed.
import { afterAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { murmurServe } from './support/murmur-cli.ts';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, type TestServer } from './support/coordinator.ts';
import { CoordinatorConsent } from '../src/ui/browser/consent-client.ts';
import { CONSENT, holdConsent, type HoldEnd } from '../src/ui/embed/frame-bridge.ts';
import { loadConsents, saveConsents } from '../server/consent.ts';

const SITE = 'https://whales.example';
const dirs: string[] = [];
const servers: TestServer[] = [];
let n = 0;
const nonce = () => `s${String(++n).padStart(21, '0')}`;

const children: ChildProcess[] = [];

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const s of servers) await s.close().catch(() => {});
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function start(dir: string, consent = {}): Promise<TestServer> {
  const s = await startServer({ consent }, {}, dir);
  servers.push(s);
  return s;
}

/** `murmur serve` on `dir` in its own process, as an operator runs it: its URL once it listens. */
async function serve(dir: string): Promise<{ child: ChildProcess; url: string; admin: Record<string, string> }> {
  const { child, url } = await murmurServe(dir);
  children.push(child);
  const admin = { authorization: `Bearer ${readFileSync(join(dir, 'admin-token'), 'utf8').trim()}` };
  return { child, url, admin };
}

function kill9(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    child.on('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

async function post(s: { url: string }, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${s.url}${path}`, {
    method: 'POST', ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
  });
  return { status: res.status, json: await res.json() as Record<string, unknown> };
}

const rows = (s: TestServer) => (s.c.db.prepare('SELECT COUNT(*) AS n FROM consent_sessions').get() as { n: number }).n;

async function embedding(s: { url: string; admin: Record<string, string> }): Promise<void> {
  const r = await fetch(`${s.url}/api/runs/default`, { method: 'PATCH', headers: { ...s.admin, 'content-type': 'application/json' }, body: JSON.stringify({ embedSites: [SITE] }) });
  expect(r.status).toBe(200);
}

describe('consent sessions across a coordinator restart', () => {
  it('are kept through a close and a start on the same data dir: claim, watch and a Stop not yet heard all find theirs', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'murmur-consent-restart-'));
    dirs.push(dir);
    const first = await start(dir, { perAddress: 3 });
    await embedding(first);
    const live = nonce(), stopped = nonce(), pending = nonce();
    for (const nc of [live, stopped, pending]) expect((await post(first, '/api/consent', { nonce: nc, run: 'default', site: SITE, maxIntensity: 0.4 })).status).toBe(201);
    for (const nc of [live, stopped]) {
      expect((await post(first, `/api/consent/${nc}/decision`, { allow: true })).json.state).toBe('allowed');
      expect((await post(first, `/api/consent/${nc}/claim`)).json.state).toBe('allowed');
    }
    expect((await post(first, `/api/consent/${stopped}/stop`, { closed: false })).json.state).toBe('stopped');
    await first.close();

    const second = await start(dir, { perAddress: 3 });
    const claimed = await post(second, `/api/consent/${live}/claim`);
    expect(claimed.status).toBe(200);
    // With the intensity ceiling the window stated before the restart.
    expect(claimed.json).toMatchObject({ state: 'allowed', site: SITE, run: 'default', maxIntensity: 0.4 });
    // Taken back, and written again as this start holds them (a crash from here on keeps them too).
    expect(second.c.consents.size).toBe(3);
    expect(rows(second)).toBe(3);
    expect((await post(second, `/api/consent/${live}/watch`)).json.state).toBe('allowed');
    // The window's Stop, pressed before the restart, still reaches the frame.
    expect((await post(second, `/api/consent/${stopped}/claim`)).json.state).toBe('stopped');
    // The window still answers the request it shows.
    expect((await post(second, `/api/consent/${pending}/decision`, { allow: false })).json.state).toBe('denied');
    // The places are still this address's: 3 open (live, pending; stopped was heard), one more fits, then 429.
    expect((await post(second, '/api/consent', { nonce: nonce(), run: 'default', site: SITE })).status).toBe(201);
    expect((await post(second, '/api/consent', { nonce: nonce(), run: 'default', site: SITE })).status).toBe(429);
    // A stop now ends the session taken back, as any.
    expect((await post(second, `/api/consent/${live}/stop`, { closed: false })).json.state).toBe('stopped');
  });

  it('are kept through a kill -9: an allowed session is claimed on the next start, a session ended before the kill stays ended', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'murmur-consent-kill-'));
    dirs.push(dir);
    const first = await serve(dir);
    await embedding(first);
    const live = nonce(), ended = nonce(), denied = nonce(), asked = nonce(), left = nonce();
    for (const nc of [live, ended, denied, asked]) expect((await post(first, '/api/consent', { nonce: nc, run: 'default', site: SITE })).status).toBe(201);
    for (const nc of [live, ended]) {
      expect((await post(first, `/api/consent/${nc}/decision`, { allow: true })).json.state).toBe('allowed');
      expect((await post(first, `/api/consent/${nc}/claim`)).json.state).toBe('allowed');
    }
    // Ended by the window, and heard by the frame: the nonce is done.
    expect((await post(first, `/api/consent/${ended}/stop`, { closed: false })).json.state).toBe('stopped');
    expect((await post(first, `/api/consent/${ended}/claim`)).json.state).toBe('stopped');
    // Declined, not yet heard by the frame.
    expect((await post(first, `/api/consent/${denied}/decision`, { allow: false })).json.state).toBe('denied');
    // Released by the frame and heard by the window: done too.
    expect((await post(first, '/api/consent', { nonce: left, run: 'default', site: SITE })).status).toBe(201);
    expect((await post(first, `/api/consent/${left}/decision`, { allow: true })).json.state).toBe('allowed');
    expect((await post(first, `/api/consent/${left}/release`)).json.state).toBe('released');
    expect((await post(first, `/api/consent/${left}/watch`)).json.state).toBe('released');
    // Withdrawn by the frame while its window still asked, not yet heard by the window: a state of
    // its own, written as it happens, so a window reloaded after the crash says so on its first load.
    const withdrawn = nonce();
    expect((await post(first, '/api/consent', { nonce: withdrawn, run: 'default', site: SITE })).status).toBe(201);
    expect((await post(first, `/api/consent/${withdrawn}/release`)).json.state).toBe('withdrawn');
    await kill9(first.child);

    const second = await serve(dir);
    const claimed = await post(second, `/api/consent/${live}/claim`);
    expect(claimed.status).toBe(200);
    expect(claimed.json).toMatchObject({ state: 'allowed', site: SITE, run: 'default' });
    expect((await post(second, `/api/consent/${live}/watch`)).json.state).toBe('allowed');
    for (const nc of [ended, left]) expect((await post(second, `/api/consent/${nc}/claim`)).status).toBe(404);
    expect(await (await fetch(`${second.url}/api/consent/${withdrawn}`)).json()).toMatchObject({ state: 'withdrawn' });
    const late = await post(second, `/api/consent/${withdrawn}/decision`, { allow: true });
    expect(late.status).toBe(409);
    expect((await post(second, `/api/consent/${withdrawn}/watch`)).json.state).toBe('withdrawn');
    // The window's Don't allow still reaches the frame; the question still asked can still be answered.
    expect((await post(second, `/api/consent/${denied}/claim`)).json.state).toBe('denied');
    expect((await post(second, `/api/consent/${asked}/decision`, { allow: true })).json.state).toBe('allowed');
    // Killed again at once: what changed on this start (the answer) is kept as well.
    await kill9(second.child);
    const third = await serve(dir);
    expect((await post(third, `/api/consent/${asked}/claim`)).json.state).toBe('allowed');
    expect((await post(third, `/api/consent/${live}/claim`)).json.state).toBe('allowed');
    expect((await post(third, `/api/consent/${denied}/claim`)).status).toBe(404);
    await kill9(third.child);
  });

  it('writes each change that matters as it happens, and nothing for a claim or a watch that renews a session', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'murmur-consent-writes-'));
    dirs.push(dir);
    const s = await start(dir);
    await embedding(s);
    const consents = s.c.consents;
    const nc = nonce();
    let before = consents.written;
    expect((await post(s, '/api/consent', { nonce: nc, run: 'default', site: SITE })).status).toBe(201);
    expect(consents.written).toBe(before + 1);
    expect(rows(s)).toBe(1);
    expect((await post(s, `/api/consent/${nc}/decision`, { allow: true })).json.state).toBe('allowed');
    expect(consents.written).toBe(before + 2);
    expect((s.c.db.prepare('SELECT state FROM consent_sessions WHERE nonce = ?').get(nc) as { state: string }).state).toBe('allowed');
    before = consents.written;
    for (let i = 0; i < 20; i++) {
      expect((await post(s, `/api/consent/${nc}/claim`)).json.state).toBe('allowed');
      expect((await post(s, `/api/consent/${nc}/watch`)).json.state).toBe('allowed');
    }
    expect(consents.written - before).toBe(0);
    // The window's leaving, and its coming back, are written (once each); its Stop, and the frame hearing it, too.
    expect((await post(s, `/api/consent/${nc}/leave`)).json.state).toBe('allowed');
    expect(s.c.db.prepare('SELECT left FROM consent_sessions WHERE nonce = ?').get(nc)).toEqual({ left: 1 });
    expect((await post(s, `/api/consent/${nc}/watch`)).json.state).toBe('allowed');
    expect((await post(s, `/api/consent/${nc}/watch`)).json.state).toBe('allowed');
    expect(consents.written - before).toBe(2);
    expect((await post(s, `/api/consent/${nc}/stop`, { closed: false })).json.state).toBe('stopped');
    expect((s.c.db.prepare('SELECT state FROM consent_sessions WHERE nonce = ?').get(nc) as { state: string }).state).toBe('stopped');
    expect((await post(s, `/api/consent/${nc}/claim`)).json.state).toBe('stopped');
    expect(consents.written - before).toBe(4);
    expect(rows(s)).toBe(0);
    expect(consents.unwritten).toBe(0);
  });

  it('keeps the table to the store\'s places as a full store makes room', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'murmur-consent-bound-'));
    dirs.push(dir);
    const s = await start(dir, { total: 3 });
    await s.c.app.inject({ method: 'PATCH', url: '/api/runs/default', headers: { ...s.admin }, payload: { embedSites: [SITE] } });
    const opened: string[] = [];
    for (let i = 1; i <= 8; i++) {
      const nc = nonce();
      opened.push(nc);
      const r = await s.c.app.inject({ method: 'POST', url: '/api/consent', remoteAddress: `198.18.1.${i}`, payload: { nonce: nc, run: 'default', site: SITE } });
      expect(r.statusCode).toBe(201);
      expect(rows(s)).toBe(Math.min(i, 3));
    }
    const held = (s.c.db.prepare('SELECT nonce FROM consent_sessions ORDER BY created_at, rowid').all() as { nonce: string }[]).map((r) => r.nonce);
    expect(held).toEqual(opened.slice(-3));
  });

  it('goes on in memory when a write fails, and writes the whole store again at the next change once it can', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'murmur-consent-fail-'));
    dirs.push(dir);
    const s = await start(dir);
    await embedding(s);
    const consents = s.c.consents;
    const a = nonce(), b = nonce();
    expect((await post(s, '/api/consent', { nonce: a, run: 'default', site: SITE })).status).toBe(201);
    // The table out of reach: every write fails ("no such table").
    s.c.db.exec('ALTER TABLE consent_sessions RENAME TO consent_sessions_away');
    expect((await post(s, `/api/consent/${a}/decision`, { allow: true })).json.state).toBe('allowed');
    expect(consents.unwritten).toBe(1);
    const claimed = await post(s, `/api/consent/${a}/claim`);
    expect(claimed.status).toBe(200);
    expect(claimed.json.state).toBe('allowed');
    expect((await post(s, '/api/consent', { nonce: b, run: 'default', site: SITE })).status).toBe(201);
    expect(consents.unwritten).toBe(2);
    // Back: the next change writes both, the session the failed write missed included.
    s.c.db.exec('ALTER TABLE consent_sessions_away RENAME TO consent_sessions');
    expect((await post(s, `/api/consent/${b}/decision`, { allow: false })).json.state).toBe('denied');
    expect(consents.unwritten).toBe(2);
    const got = s.c.db.prepare('SELECT nonce, state FROM consent_sessions ORDER BY created_at, rowid').all();
    expect(got).toEqual([{ nonce: a, state: 'allowed' }, { nonce: b, state: 'denied' }]);
  });

  it('tells the frame the coordinator lost a session it does not know (a crash), not that the window was closed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'murmur-consent-crash-'));
    dirs.push(dir);
    const s = await start(dir);
    await embedding(s);
    const port = new CoordinatorConsent(s.url, () => 'default');
    const nc = nonce();
    // Allowed on a coordinator that then crashed: this one never heard of it.
    expect(await port.claim(nc)).toBe('gone');
    const said = await fetch(`${s.url}/api/consent/${nc}/claim`, { method: 'POST' });
    expect(said.status).toBe(404);
    expect(((await said.json()) as { error: string }).error).toMatch(/no such consent request/);
    // The frame's hold hears it at its next claim (CONSENT_HOLD_MS on) as the session forgotten.
    const win = { performance: { now: () => performance.now() } } as unknown as Window;
    const why = await new Promise<HoldEnd>((resolve) => holdConsent(port, nc, win, () => true, resolve));
    expect(why).toBe('forgotten');
    expect(CONSENT[why]).toMatch(/^Paused: the Murmur coordinator lost this donation's session .*Press Resume to ask again\.$/);
    expect(CONSENT[why]).not.toMatch(/window was closed/);
    // A 404 also follows a window unheard for windowMs (3 minutes): the words leave room for it.
    expect(CONSENT[why]).toMatch(/did not hear from this frame or the Murmur window for minutes/);
  });

  it('keeps the table to the store\'s places, and leaves out rows it cannot read', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'murmur-consent-rows-'));
    dirs.push(dir);
    const s = await start(dir);
    const rows = Array.from({ length: 5 }, (_, i) => ({ nonce: nonce(), run: 'default', site: SITE, state: 'allowed' as const, address: '192.0.2.1', created: i, left: false, maxIntensity: 0.4 }));
    saveConsents(s.c.db, rows);
    s.c.db.prepare('INSERT INTO consent_sessions (nonce, run_id, site, state, address, created_at) VALUES (?, ?, ?, ?, ?, ?)').run(nonce(), 'default', SITE, 'weird', '192.0.2.1', 9);
    s.c.db.prepare('INSERT INTO consent_sessions (nonce, run_id, site, state, address, created_at) VALUES (?, ?, ?, ?, ?, ?)').run('short', 'default', SITE, 'allowed', '192.0.2.1', 10);
    const got = loadConsents(s.c.db, 4);
    expect(got.saved.map((r) => r.nonce)).toEqual(rows.slice(0, 4).map((r) => r.nonce));
    expect(got.unreadable).toBe(0);
    // Each load empties the table.
    saveConsents(s.c.db, rows.slice(0, 1));
    s.c.db.prepare('INSERT INTO consent_sessions (nonce, run_id, site, state, address, created_at) VALUES (?, ?, ?, ?, ?, ?)').run(nonce(), 'default', SITE, 'weird', '192.0.2.1', 9);
    const again = loadConsents(s.c.db, 10);
    expect(again.saved).toHaveLength(1);
    expect(again.unreadable).toBe(1);
    expect(loadConsents(s.c.db, 10).saved).toEqual([]);
  });
});
