// Who may frame the coordinator's pages, enforced by Chromium itself: a page on another origin
// frames the volunteer page, the dashboard, the widget's consent window and its training frame. By default every one
// is refused (CSP frame-ancestors 'none'); once the admin adds that site to the run's
// embedSites, the training frame of that run loads there (and still nothing else, nor another
// run's frame). Every response carries the content security policy and the other security
// headers, the live stream's too (it writes its own head); the pages keep other sites' windows
// from holding a handle on them (Cross-Origin-Opener-Policy). A site that is not a plain origin
// (anything that could smuggle a directive into the header) is a 400.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, get, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS } from './support/browser.ts';
import { startServer, type TestServer } from './support/coordinator.ts';

let web: string;
let s: TestServer;
let host: Server;
let hostOrigin: string;
let browser: Browser;

// Each page names itself from an external script (the policy allows no inline script).
const page = (name: string) => `<!doctype html><html><head><meta charset="utf-8"><title>${name}</title><script src="/who.js"></script></head><body></body></html>`;

beforeAll(async () => {
  web = mkdtempSync(join(tmpdir(), 'murmur-web-'));
  writeFileSync(join(web, 'index.html'), page('volunteer'));
  writeFileSync(join(web, 'dashboard.html'), page('dashboard'));
  writeFileSync(join(web, 'frame.html'), page('frame'));
  writeFileSync(join(web, 'consent.html'), page('consent'));
  writeFileSync(join(web, 'who.js'), 'window.loadedBy = document.title;');
  s = await startServer({ webRoot: web });
  await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id: 'other', dataset: 'moby-dick', preset: 'micro' } })
    .then((r) => expect(r.statusCode).toBe(201));
  host = createServer((req, res) => {
    const frames = ['/', '/dashboard', '/consent', '/frame.html?run=default', '/frame.html?run=other', '/frame.html']
      .map((p, i) => `<iframe id="f${i}" src="${s.url}${p}" onload="window.loaded = (window.loaded || 0) + 1"></iframe>`).join('\n');
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>another site</title></head><body>${frames}</body></html>`);
  });
  await new Promise<void>((r) => host.listen(0, '127.0.0.1', r));
  hostOrigin = `http://127.0.0.1:${(host.address() as AddressInfo).port}`;
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
});
afterAll(async () => {
  await browser?.close();
  await new Promise((r) => host?.close(r));
  await s?.close();
  rmSync(web, { recursive: true, force: true });
});

/** Loads the other site and says, per framed path, whether the coordinator's page ran in it. */
async function framedPages(): Promise<Record<string, boolean>> {
  const p: Page = await (await browser.newContext()).newPage();
  await p.goto(hostOrigin);
  // A refused frame fires load too (with an error page in it): wait for all six.
  await p.waitForFunction(() => (window as unknown as { loaded?: number }).loaded === 6);
  const out: Record<string, boolean> = {};
  for (let i = 0; i < 6; i++) {
    const el = await p.$(`#f${i}`);
    const f = await el!.contentFrame();
    const src = new URL((await el!.getAttribute('src'))!);
    out[src.pathname + src.search] = f !== null && f.url().startsWith(s.url) && (await f.evaluate(() => typeof (window as unknown as { loadedBy?: string }).loadedBy === 'string').catch(() => false));
  }
  await p.close();
  return out;
}

/**
 * The head of a real HTTP answer to GET `path`; the request is then aborted (the live stream never
 * ends, and inject would wait on it).
 */
function headOf(path: string): Promise<IncomingHttpHeaders> {
  return new Promise((resolve, reject) => {
    const req = get(`${s.url}${path}`, { agent: false }, (res) => {
      resolve(res.headers);
      req.destroy();
    });
    req.on('error', reject);
  });
}

describe('framing policy', () => {
  it('sends the security headers on every response, the live stream\'s too; only a run\'s frame may list ancestors', async () => {
    for (const url of ['/', '/dashboard', '/consent', '/frame.html?run=default', '/who.js', '/api/runs', '/api/nothing', '/api/runs/default/stream', '/api/consent/AAAAAAAAAAAAAAAAAAAAAA']) {
      const r = await headOf(url);
      const csp = String(r['content-security-policy']);
      expect(csp, url).toContain("script-src 'self'");
      expect(csp, url).not.toContain('unsafe-eval');
      expect(csp, url).toMatch(/frame-ancestors 'none'$/);
      expect(r['x-frame-options'], url).toBe('DENY');
      expect(r['x-content-type-options'], url).toBe('nosniff');
      expect(r['referrer-policy'], url).toBe('no-referrer');
    }
    expect((await headOf('/api/runs/default/stream'))['content-type']).toMatch(/text\/event-stream/);
  });

  it('keeps other sites\' windows from holding a handle on the app\'s pages (Cross-Origin-Opener-Policy)', async () => {
    // A page that opened ours (or that ours was opened from) could otherwise navigate it or close
    // it under the visitor's pointer. Browsers ignore it on a framed document: the frame still
    // loads where its run allows (below).
    for (const url of ['/', '/dashboard', '/consent', '/index.html', '/dashboard.html', '/frame.html?run=default']) {
      expect((await headOf(url))['cross-origin-opener-policy'], url).toBe('same-origin');
    }
  });

  it('refuses every frame on a site no run allows', async () => {
    expect(await framedPages()).toEqual({
      '/': false, '/dashboard': false, '/consent': false, '/frame.html?run=default': false, '/frame.html?run=other': false, '/frame.html': false,
    });
  });

  it('lets the site the admin adds frame that run\'s training frame, and nothing else', async () => {
    const patch = (payload: unknown, headers = s.admin) => s.c.app.inject({ method: 'PATCH', url: '/api/runs/default', headers, payload: payload as object });
    expect((await patch({ embedSites: [hostOrigin] }, {})).statusCode).toBe(401);
    for (const bad of [`${hostOrigin}; script-src *`, `${hostOrigin}/path`, '*', "'self'", 'javascript:alert(1)', 'HTTP://EXAMPLE.ORG', 'https://a b.org']) {
      const r = await patch({ embedSites: [bad] });
      expect(r.statusCode, bad).toBe(400);
      expect(r.json().error, bad).toMatch(/embedSites/);
    }
    const ok = await patch({ embedSites: [hostOrigin, 'https://whales.example.org'] });
    expect(ok.statusCode).toBe(200);
    expect(ok.json().embedSites).toEqual([hostOrigin, 'https://whales.example.org']);
    const frame = await s.c.app.inject({ method: 'GET', url: '/frame.html?run=default' });
    expect(frame.headers['content-security-policy']).toMatch(new RegExp(`frame-ancestors ${hostOrigin} https://whales.example.org$`));
    expect(frame.headers['x-frame-options']).toBeUndefined();
    expect(await framedPages()).toEqual({
      '/': false, '/dashboard': false, '/consent': false, '/frame.html?run=default': true, '/frame.html?run=other': false, '/frame.html': false,
    });
    // Removing the site refuses it again.
    expect((await patch({ embedSites: [] })).json().embedSites).toEqual([]);
    expect((await framedPages())['/frame.html?run=default']).toBe(false);
  });
});
