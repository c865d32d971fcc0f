// Browser test harness: a Vite dev server (the repo's vite.config.ts, root = repo root) on
// 127.0.0.1 and a free port, and Debian's headless Chromium driven by playwright-core.
//
//   let h: BrowserHarness;
//   beforeAll(async () => { h = await startBrowser(); });
//   afterAll(() => h?.close());
//   it('...', async () => { const page = await h.openPage('/tests/browser/pages/smoke.html'); ... });
//
// Pages live in tests/browser/pages/. http://127.0.0.1 is a secure context, so navigator.gpu
// exists there (and in the page's workers). Console output and page errors are forwarded to the
// test log; pageErrors(page) lists uncaught errors so a test can assert there were none.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type BrowserContextOptions, type Locator, type Page } from 'playwright-core';
import { build, createServer, type ViteDevServer } from 'vite';
import type { AppOptions } from '../../server/app.ts';
import { SETTLE_MS } from '../../src/ui/core/settle.ts';
import { startServer, type TestServer } from './coordinator.ts';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--enable-unsafe-webgpu', // WebGPU on Linux is still behind this flag
  '--enable-features=Vulkan', // Dawn's Vulkan backend: SwiftShader when there is no GPU driver
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

export interface BrowserHarness {
  /** e.g. http://127.0.0.1:41234 */
  baseUrl: string;
  browser: Browser;
  /** A fresh page (own context) at baseUrl + path, loaded. */
  openPage(path: string): Promise<Page>;
  /** Stops the browser and the server; safe to call twice. */
  close(): Promise<void>;
}

export interface BrowserOptions {
  /** Extra Chromium flags (e.g. --disable-features=WebRtcHideLocalIpsWithMdns). */
  args?: string[];
  /** The Chromium binary; default /usr/bin/chromium (Debian's, which ships SwiftShader). */
  executablePath?: string;
  /** Bare imports to pre-bundle up front (CommonJS packages such as simple-peer need it). */
  optimizeDeps?: string[];
  /** false: launch without --enable-unsafe-webgpu, as a stock Linux Chromium (navigator.gpu exists, no adapter). */
  webgpu?: boolean;
  /** Paths the dev server hands to another server, e.g. { '/api': coordinator.url } for the widget's consent requests. */
  proxy?: Record<string, string>;
}

const errorsByPage = new WeakMap<Page, Error[]>();

/** Uncaught errors (pageerror events) seen on this page so far. */
export function pageErrors(page: Page): Error[] {
  return errorsByPage.get(page) ?? [];
}

export async function startBrowser(opts: BrowserOptions = {}): Promise<BrowserHarness> {
  const executablePath = opts.executablePath ?? CHROMIUM;
  if (!existsSync(executablePath)) {
    throw new Error(`Chromium not found at ${executablePath}: install Debian's chromium package ` +
      '(apt-get install chromium libvulkan1; `npm test` does it through scripts/ensure.mjs when run as root).');
  }
  // Pre-bundled deps go to a private cache: the default (node_modules/.vite) is shared by every
  // worktree through the node_modules symlink, and concurrent test files would race on it.
  const cacheDir = await mkdtemp(join(tmpdir(), 'murmur-vite-'));
  let server: ViteDevServer | undefined;
  let browser: Browser | undefined;
  const close = async (): Promise<void> => {
    const b = browser, s = server;
    browser = undefined; server = undefined;
    await b?.close().catch(() => {});
    await s?.close().catch(() => {});
    await rm(cacheDir, { recursive: true, force: true });
  };
  try {
    server = await createServer({
      configFile: join(ROOT, 'vite.config.ts'),
      root: ROOT,
      cacheDir,
      logLevel: 'warn',
      clearScreen: false,
      // No file watching or HMR: pages load once per test, and the machine is shared.
      server: { host: '127.0.0.1', port: 0, strictPort: true, hmr: false, watch: null, ...(opts.proxy ? { proxy: opts.proxy } : {}) },
      // Crawl the test pages (and the workers they start) at startup and hold requests until
      // done, so a dependency found late never triggers a full reload in the middle of a test.
      optimizeDeps: {
        entries: ['tests/browser/pages/**/*.html', 'tests/browser/pages/**/*.ts'],
        include: ['comlink', ...(opts.optimizeDeps ?? [])],
        holdUntilCrawlEnd: true,
      },
    });
    await server.listen();
    const address = server.httpServer?.address() as AddressInfo | null;
    if (!address || typeof address === 'string') throw new Error('Vite dev server did not report a TCP port');
    const baseUrl = `http://127.0.0.1:${address.port}`;

    const baseArgs = opts.webgpu === false ? CHROMIUM_ARGS.filter((a) => a !== '--enable-unsafe-webgpu') : CHROMIUM_ARGS;
    browser = await chromium.launch({ executablePath, args: [...baseArgs, ...(opts.args ?? [])] });
    const b = browser;

    const openPage = async (path: string): Promise<Page> => {
      const context = await b.newContext();
      const page = await context.newPage();
      const errors: Error[] = [];
      errorsByPage.set(page, errors);
      page.on('console', (m) => {
        const line = `[browser ${m.type()}] ${m.text()}`;
        (m.type() === 'error' || m.type() === 'warning' ? console.warn : console.log)(line);
      });
      page.on('pageerror', (e) => {
        errors.push(e);
        console.error(`[browser pageerror] ${e.stack ?? e.message}`);
      });
      // Chromium's console says only "404 (Not Found)"; name the URL.
      page.on('response', (r) => { if (r.status() >= 400) console.warn(`[browser http ${r.status()}] ${r.url()}`); });
      page.on('worker', (w) => w.on('close', () => console.log(`[browser] worker closed: ${w.url()}`)));
      const response = await page.goto(baseUrl + path);
      if (!response?.ok()) throw new Error(`GET ${path} gave HTTP ${response?.status()}: is the page under tests/browser/pages/?`);
      return page;
    };
    return { baseUrl, browser, openPage, close };
  } catch (e) {
    await close();
    throw e;
  }
}


/**
 * Brings the volunteer page's I agree (`consent`) or Start (`start`) into view and waits until it
 * takes clicks: a click or key press on either counts only once the page has been at the front,
 * and the button in place, for half a second (pageGate, src/ui/core/settle.ts; a scroll moves the
 * button, as Playwright's own scroll before a click would).
 */
export async function settledButton(page: Page, action: 'consent' | 'start' | 'resume', timeout = 30_000): Promise<void> {
  await page.locator(`murmur-volunteer-panel button[data-action=${action}]`).scrollIntoViewIfNeeded({ timeout });
  await page.waitForFunction((a) => {
    const b = document.querySelector('murmur-volunteer-panel')?.shadowRoot?.querySelector<HTMLButtonElement>(`button[data-action=${a}]`);
    return b ? !b.disabled && getComputedStyle(b).pointerEvents !== 'none' : false;
  }, action, { polling: 100, timeout });
}

/**
 * Clicks Start on every page, once every page's Start takes clicks: all of them settle before
 * the first click, because a tab that trains starves the others' main threads on a small
 * machine, and a Start that had to settle after that waited for the CPU (a fresh clone's run
 * timed out on the third tab's). The bound is the one the consent click has.
 */
export async function startAll(pages: readonly Page[], timeout = 60_000): Promise<void> {
  await Promise.all(pages.map((p) => settledButton(p, 'start', timeout)));
  for (const p of pages) await p.locator('murmur-volunteer-panel button[data-action=start]').click();
}

/** Clicks the volunteer page's I agree, Start or Resume once it takes clicks (settledButton). */
export async function clickSettled(page: Page, action: 'consent' | 'start' | 'resume', timeout = 30_000): Promise<void> {
  await settledButton(page, action, timeout);
  await page.locator(`murmur-volunteer-panel button[data-action=${action}]`).click();
}
/**
 * A page in its own browser context whose Compute Pressure reads "nominal": this shared
 * machine's real load would otherwise make the volunteer page back off. Page errors go to
 * `errors`; console errors are printed. `context`: the context's options (a 2x screen:
 * deviceScaleFactor 2).
 */
export async function calmPage(browser: Browser, errors: string[], context: BrowserContextOptions = {}): Promise<Page> {
  const p = await (await browser.newContext(context)).newPage();
  const cdp = await p.context().newCDPSession(p);
  await cdp.send('Emulation.setPressureSourceOverrideEnabled', { enabled: true, source: 'cpu' });
  await cdp.send('Emulation.setPressureStateOverride', { source: 'cpu', state: 'nominal' });
  p.on('pageerror', (e) => errors.push(e.message));
  p.on('console', (m) => { if (m.type() === 'error') console.warn(`[browser error] ${m.text()}`); });
  return p;
}

/**
 * Chromium for tests where pages connect to each other over WebRTC: plain host candidates on
 * loopback (no mDNS hiding), so tabs connect without resolving .local names.
 */
export function launchWebRtcBrowser(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: [...CHROMIUM_ARGS, '--disable-features=WebRtcHideLocalIpsWithMdns'] });
}

/**
 * The app as deployed: the repo's Vite build in a temp folder, served by an in-process
 * coordinator (startServer with `opts`). close() stops the coordinator and removes the build.
 */
export async function startBuiltApp(opts: Partial<AppOptions> = {}): Promise<TestServer> {
  const webRoot = mkdtempSync(join(tmpdir(), 'murmur-web-'));
  try {
    await build({ configFile: join(ROOT, 'vite.config.ts'), root: ROOT, logLevel: 'warn', build: { outDir: webRoot, emptyOutDir: true } });
    const server = await startServer({ webRoot, ...opts });
    return { ...server, close: async () => { await server.close(); rmSync(webRoot, { recursive: true, force: true }); } };
  } catch (e) {
    rmSync(webRoot, { recursive: true, force: true });
    throw e;
  }
}

/** Creates a run over HTTP as the admin; throws with the coordinator's answer if it refuses. */
export async function createRun(server: TestServer, body: Record<string, unknown>): Promise<void> {
  const res = await fetch(`${server.url}/api/runs`, {
    method: 'POST', headers: { ...server.admin, 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  if (res.status !== 201) throw new Error(`creating the test run failed: HTTP ${res.status} ${await res.text()}`);
}

/**
 * A visitor's click on a button in the widget's training frame: the mouse comes to rest on it and
 * stays there SETTLE_MS by the frame's own clock before the click, as the frame asks of a mouse
 * click (pointerGate, src/ui/embed/frame-bridge.ts). hover() waits for the button to take clicks.
 */
export async function restAndClick(button: Locator): Promise<void> {
  await button.hover();
  const t0 = await button.evaluate(() => performance.now());
  await button.evaluate((_el, [t, ms]) => new Promise<void>((done) => {
    const look = () => (performance.now() - t! > ms! ? done() : setTimeout(look, 20));
    look();
  }), [t0, SETTLE_MS + 50]);
  await button.click();
}

/**
 * Runs `act` (a click or key press on Start or Resume in the widget's training frame, which now
 * only asks) and returns the consent window it opened: a new page of `context`, loaded.
 */
export async function consentWindowFrom(context: BrowserContext, act: () => Promise<void>, timeout = 60_000): Promise<Page> {
  const opened = context.waitForEvent('page', { timeout });
  await act();
  const popup = await opened;
  await popup.waitForLoadState();
  return popup;
}

/**
 * Answers the consent window: waits until its Allow (or Don't allow) takes clicks (pageGate: the
 * window at the front and the button in place for half a second), clicks it, and waits until the
 * coordinator has taken the answer. The consent window stays open.
 */
export async function answerConsent(popup: Page, answer: 'allow' | 'deny' = 'allow', timeout = 60_000): Promise<void> {
  await popup.waitForFunction((a) => {
    const b = document.querySelector('murmur-consent-window')?.shadowRoot?.querySelector<HTMLButtonElement>(`button[data-action=${a}]`);
    return b ? getComputedStyle(b).pointerEvents !== 'none' : false;
  }, answer, { polling: 100, timeout });
  await popup.locator(`murmur-consent-window button[data-action=${answer}]`).click();
  await popup.locator('murmur-consent-window [data-answer]').waitFor({ timeout });
}

/**
 * A visitor's Start (or Resume) in the widget's training frame, as it goes now: the click on the
 * frame's button (restAndClick), then Allow in the consent window that click opened
 * (src/ui/elements/consent-window.ts). The window stays open, as the donation's Stop (closing it
 * stops training), and is returned; the widget's page is brought back to the front. The one way
 * the tests start training through the widget.
 */
export async function startThroughConsent(button: Locator): Promise<Page> {
  let popup: Page;
  try {
    popup = await consentWindowFrom(button.page().context(), () => restAndClick(button));
  } catch (e) {
    // What the frame said beside its button instead (its note: a refusal, or an error).
    const said = await button.locator('xpath=..').innerText({ timeout: 5000 }).catch(() => '(unreadable)');
    throw new Error(`the click on the widget's button opened no consent window; the frame says "${said}"`, { cause: e });
  }
  await answerConsent(popup);
  await button.page().bringToFront();
  return popup;
}
