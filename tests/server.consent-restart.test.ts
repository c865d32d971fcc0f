// The widget's consent sessions across a coordinator restart (server/consent.ts, saveConsents and
// loadConsents; server/app.ts): a coordinator that closes as it does on SIGTERM writes the
// sessions it holds, and the next start on the same data dir takes them back, so the frame's next
// claim and the window's next watch find them, over the real HTTP routes. A coordinator that
// knows nothing of a session (it crashed) answers 404, which the frame says as the coordinator
// having lost the session, not as the window having been closed.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
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

afterAll(async () => {
  for (const s of servers) await s.close().catch(() => {});
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function start(dir: string, consent = {}): Promise<TestServer> {
  const s = await startServer({ consent }, {}, dir);
  servers.push(s);
  return s;
}

async function post(s: TestServer, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${s.url}${path}`, {
    method: 'POST', ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
  });
  return { status: res.status, json: await res.json() as Record<string, unknown> };
}

async function embedding(s: TestServer): Promise<void> {
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
    for (const nc of [live, stopped, pending]) expect((await post(first, '/api/consent', { nonce: nc, run: 'default', site: SITE })).status).toBe(201);
    for (const nc of [live, stopped]) {
      expect((await post(first, `/api/consent/${nc}/decision`, { allow: true })).json.state).toBe('allowed');
      expect((await post(first, `/api/consent/${nc}/claim`)).json.state).toBe('allowed');
    }
    expect((await post(first, `/api/consent/${stopped}/stop`, { closed: false })).json.state).toBe('stopped');
    await first.close();

    const second = await start(dir, { perAddress: 3 });
    const claimed = await post(second, `/api/consent/${live}/claim`);
    expect(claimed.status).toBe(200);
    expect(claimed.json).toMatchObject({ state: 'allowed', site: SITE, run: 'default' });
    // Taken back, and gone from the table: a crash from here on brings none of them back.
    expect((second.c.db.prepare('SELECT COUNT(*) AS n FROM consent_sessions').get() as { n: number }).n).toBe(0);
    expect(second.c.consents.size).toBe(3);
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
    const rows = Array.from({ length: 5 }, (_, i) => ({ nonce: nonce(), run: 'default', site: SITE, state: 'allowed' as const, address: '192.0.2.1', created: i, left: false }));
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
