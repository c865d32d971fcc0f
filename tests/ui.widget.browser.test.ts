// The embeddable widget on a plain page of another origin (its own port): embed.js inserts
// <murmur-volunteer>, which does nothing (no request, no frame) until a real click; a
// script-dispatched click is refused; the click opens the training frame (the Murmur origin),
// which trains only after a click on its own start button (not on a click dispatched by script,
// not on a `start` posted by the embedding page); the widget shows its status, pauses and stops
// it, the site's intensity cap holds, CSS parts theme it, and the host page cannot reach into
// the frame. A click on the frame's Start only opens the consent window (the real page, its
// /api requests handed by the dev server to a real coordinator): nothing trains until Allow
// there, Don't allow leaves the widget ready, and a second click while one window is open asks
// nothing new of the coordinator; the frame's Stop, or its page closing, while the window still
// asks withdraws the question, and the window says so. A forging page on a third origin that frames the training
// frame itself and posts `connect` and `start` trains nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Frame, Page } from 'playwright-core';
import { answerConsent, consentWindowFrom, pageErrors, restAndClick, ROOT, startBrowser, startThroughConsent, type BrowserHarness } from './support/browser.ts';
import { startServer, type TestServer } from './support/coordinator.ts';

const OUT = join(ROOT, 'tests', 'output');
/**
 * How long a wait for the coordinator to forget a consent session may take: the session ends
 * leaveMs (1 s here) after the window's pagehide, and the frame hears it at its next claim; with
 * Chromium 156 the forgetting came after expect.poll's default second (it is a bound on a wait for
 * the condition, not a timing the test measures).
 */
const CONSENT_GONE_MS = 15_000;
mkdirSync(OUT, { recursive: true });

let h: BrowserHarness;
let coordinator: TestServer;
let host: Server;
let hostUrl: string;
let page: Page;
let forgerUrl: string;
let forger: Server;
const murmurRequests: string[] = [];

/** A page that skips embed.js: it frames the training frame itself and drives the bridge. */
function forgerPage(murmur: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>Free games</title></head><body>
<iframe id="f" src="${murmur}/tests/browser/pages/widget-frame.html?run=default" sandbox="allow-scripts allow-same-origin"></iframe>
<script>
  window.statuses = [];
  const f = document.getElementById('f');
  addEventListener('message', (ev) => {
    if (ev.source !== f.contentWindow || ev.data?.type !== 'murmur:ready') return;
    const ch = new MessageChannel();
    ch.port1.onmessage = (m) => window.statuses.push(m.data);
    f.contentWindow.postMessage({ type: 'murmur:connect', run: 'default', maxIntensity: 1, intensity: 0.5 }, '*', [ch.port2]);
    // What the old bridge obeyed; the intensity after it answers with a status once both are handled.
    ch.port1.postMessage({ cmd: 'start' });
    ch.port1.postMessage({ cmd: 'resume' });
    ch.port1.postMessage({ cmd: 'intensity', value: 0.3 });
  });
</script></body></html>`;
}

function hostPage(murmur: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>A site about whales</title>
<style>
  body { font: 16px/1.5 Georgia, serif; max-width: 40rem; margin: 2rem auto; color: #222; }
  murmur-volunteer::part(consent-button) { background: rgb(10, 122, 90); border-color: rgb(10, 122, 90); }
  murmur-volunteer::part(container) { border-color: #0a7a5a; }
</style></head><body>
<h1>The Sperm Whale</h1>
<p>A page of another site, on another origin, that embeds the Murmur widget with one script tag.</p>
<script src="${murmur}/src/ui/embed/embed.ts" data-run="default" data-max-intensity="0.6"
  data-frame-path="/tests/browser/pages/widget-frame.html"></script>
<p>More text after the widget.</p>
</body></html>`;
}

const widget = (p: Page) => p.locator('murmur-volunteer');
const part = (p: Page, name: string) => p.locator(`murmur-volunteer [part="${name}"]`);
function trainingFrame(p: Page): Frame {
  const f = p.frames().find((fr) => fr.url().includes('/widget-frame.html'));
  if (!f) throw new Error('the training frame is not there');
  return f;
}

/** Waits for the widget's status line to match; on timeout the error quotes the line. */
async function waitForStatus(re: RegExp, timeout = 30_000): Promise<void> {
  const status = part(page, 'status');
  try {
    await page.waitForFunction(([src, flags]) => new RegExp(src!, flags).test(document.querySelector('murmur-volunteer')!.shadowRoot!.querySelector('[part=status]')!.textContent!), [re.source, re.flags], { timeout });
  } catch (e) {
    throw new Error(`widget status never matched ${re} in ${timeout} ms; it says "${await status.innerText()}"`, { cause: e });
  }
}

beforeAll(async () => {
  host = createServer((_req, res) => { res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }); res.end(hostPage(h.baseUrl)); });
  await new Promise<void>((r) => host.listen(0, '127.0.0.1', r));
  hostUrl = `http://127.0.0.1:${(host.address() as AddressInfo).port}/`;
  forger = createServer((_req, res) => { res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }); res.end(forgerPage(h.baseUrl)); });
  await new Promise<void>((r) => forger.listen(0, '127.0.0.1', r));
  forgerUrl = `http://127.0.0.1:${(forger.address() as AddressInfo).port}/`;
  // The coordinator the consent requests go to: the host page is one of its run's embedding sites.
  // A closed consent window ends the session a second after its pagehide here (leaveMs; 15 s by default).
  coordinator = await startServer({ consent: { leaveMs: 1000 } });
  const sites = await fetch(`${coordinator.url}/api/runs/default`, {
    method: 'PATCH', headers: { ...coordinator.admin, 'content-type': 'application/json' }, body: JSON.stringify({ embedSites: [new URL(hostUrl).origin] }),
  });
  expect(sites.status).toBe(200);
  h = await startBrowser({ proxy: { '/api': coordinator.url } });
  const context = await h.browser.newContext();
  page = await context.newPage();
  // Compute Pressure reads "nominal" (as in calmPage): this shared machine's real load would
  // otherwise make the frame pause training ("your device is busy").
  const cdp = await context.newCDPSession(page);
  await cdp.send('Emulation.setPressureSourceOverrideEnabled', { enabled: true, source: 'cpu' });
  await cdp.send('Emulation.setPressureStateOverride', { source: 'cpu', state: 'nominal' });
  page.on('request', (r) => { if (r.url().startsWith(h.baseUrl)) murmurRequests.push(new URL(r.url()).pathname); });
  page.on('console', (m) => console.log(`[browser ${m.type()}] ${m.text()}`));
  await page.setViewportSize({ width: 900, height: 700 });
  await page.goto(hostUrl);
  await widget(page).waitFor();
});
afterAll(async () => {
  await h?.close();
  await coordinator?.close();
  await new Promise((r) => host?.close(r));
  await new Promise((r) => forger?.close(r));
});

describe('embeddable widget', () => {
  it('is on another origin and does nothing before the click', async () => {
    expect(new URL(hostUrl).origin).not.toBe(new URL(h.baseUrl).origin);
    await page.waitForTimeout(1000);
    expect(murmurRequests).toEqual(['/src/ui/embed/embed.ts']);
    expect(await page.locator('murmur-volunteer iframe').count()).toBe(0);
    expect(await part(page, 'status').innerText()).toBe('Not running.');
    expect(await part(page, 'pause-button').isDisabled()).toBe(true);
    // The site owner's cap: the slider stops at 60%.
    expect(await part(page, 'intensity').getAttribute('max')).toBe('60');
    // Themed through CSS parts.
    expect(await part(page, 'consent-button').evaluate((b) => getComputedStyle(b).backgroundColor)).toBe('rgb(10, 122, 90)');
    await page.screenshot({ path: join(OUT, 'widget-before-click.png') });
  });

  it('refuses a click dispatched by the host page\'s script', async () => {
    await page.evaluate(() => (document.querySelector('murmur-volunteer')!.shadowRoot!.querySelector('[part=consent-button]') as HTMLButtonElement).click());
    await page.waitForTimeout(500);
    expect(await page.locator('murmur-volunteer iframe').count()).toBe(0);
    expect(murmurRequests).toEqual(['/src/ui/embed/embed.ts']);
  });

  it('starts training in the Murmur frame only on a real click on the frame\'s own button, with status, pause, intensity and stop', async () => {
    // From the keyboard: Enter on the focused button is a real (trusted) activation.
    await part(page, 'consent-button').focus();
    await page.keyboard.press('Enter');
    await page.locator('murmur-volunteer iframe').waitFor({ state: 'attached' });
    // The test frame listens only 1.5 s after its load event: the widget waits for its `ready`.
    await waitForStatus(/^Ready: nothing runs until you press Start/);
    // ... and what the run asks of the visitor's connection (FakeBackend's FAKE_RUN).
    expect(await part(page, 'status').innerText()).toMatch(/at least 136 KB\/s \(1\.1 Mbit\/s\) each way, 544 KB\/s \(4\.4 Mbit\/s\) for the first exchange\.$/);
    const frame = trainingFrame(page);
    const start = frame.locator('#murmur-start');
    await start.waitFor({ state: 'visible' });
    expect(await start.isEnabled()).toBe(true);
    // A click dispatched by script (even the frame's own) is no user activation.
    await frame.evaluate(() => (document.getElementById('murmur-start') as HTMLButtonElement).click());
    await part(page, 'intensity').focus();
    await page.keyboard.press('ArrowLeft');
    await frame.waitForFunction(() => Math.abs(window.frameTest.controller!.intensity - 0.45) < 1e-9);
    expect(await frame.evaluate(() => [window.frameTest.controller!.phase, window.frameTest.backend.joins])).toEqual(['idle', 0]);
    const idle = () => frame.evaluate(() => [window.frameTest.controller!.phase, window.frameTest.backend.joins]);
    // A click on Start only asks: the consent window opens, and nothing trains until Allow there.
    const first = await consentWindowFrom(page.context(), () => restAndClick(start));
    await waitForStatus(/^Confirm in the Murmur window that opened/);
    expect(await start.innerText()).toBe('Open the Murmur window again');
    expect(new URL(first.url()).pathname).toBe('/web/consent.html');
    expect(coordinator.c.consents.size).toBe(1);
    // A second click while it is open opens the same request again: nothing new on the coordinator.
    const second = await consentWindowFrom(page.context(), () => restAndClick(start));
    expect(new URL(second.url()).hash).toBe(new URL(first.url()).hash);
    expect(new URL(first.url()).hash).toMatch(/^#[A-Za-z0-9_-]{22}$/);
    expect(coordinator.c.consents.size).toBe(1);
    await first.locator('murmur-consent-window [data-site]').waitFor();
    expect(await first.locator('murmur-consent-window [data-site]').innerText()).toBe(new URL(hostUrl).origin);
    expect(await idle()).toEqual(['idle', 0]);
    // Don't allow: back to ready, nothing ran, and the request is used up.
    await answerConsent(first, 'deny');
    await waitForStatus(/^Not started: you chose Don't allow in the Murmur window/);
    await expect.poll(() => start.innerText()).toBe('Start training on my GPU');
    expect(await idle()).toEqual(['idle', 0]);
    await expect.poll(() => coordinator.c.consents.size, { timeout: CONSENT_GONE_MS }).toBe(0);
    // The other window's Allow comes too late: its answer is not taken, and nothing starts.
    await second.waitForFunction(() => getComputedStyle(document.querySelector('murmur-consent-window')!.shadowRoot!.querySelector('button[data-action=allow]')!).pointerEvents !== 'none');
    await second.locator('murmur-consent-window button[data-action=allow]').click();
    await expect.poll(() => second.locator('murmur-consent-window .error').innerText()).toMatch(/^Your answer was not taken: (no such consent request|this consent request was already answered)/);
    expect(await idle()).toEqual(['idle', 0]);
    await first.close();
    await second.close();
    // A window closed unanswered is Don't allow: the widget is ready again once the leaving grace
    // has passed (a second here, leaveMs), and the coordinator holds nothing (it waited out the 5
    // minutes, the frame asking once a second).
    const closed = await consentWindowFrom(page.context(), () => restAndClick(start));
    await closed.locator('murmur-consent-window button[data-action=allow]').waitFor();
    await closed.close();
    await waitForStatus(/^Not started: you chose Don't allow in the Murmur window, or closed it/);
    await expect.poll(() => start.innerText()).toBe('Start training on my GPU');
    await expect.poll(() => coordinator.c.consents.size, { timeout: CONSENT_GONE_MS }).toBe(0);
    expect(await idle()).toEqual(['idle', 0]);
    // Start again, and Allow in its window: training starts.
    await startThroughConsent(start);
    await waitForStatus(/Training/);
    expect(await start.isHidden()).toBe(true);
    expect(new URL(frame.url()).origin).toBe(new URL(h.baseUrl).origin);
    expect(await frame.evaluate(() => window.frameTest.backend.joins)).toBe(1);
    await frame.waitForFunction(() => (window.frameTest.controller?.figures.step ?? 0) > 3);
    // The cap holds inside the frame too.
    expect(await frame.evaluate(() => window.frameTest.controller!.maxIntensity)).toBe(0.6);
    await part(page, 'intensity').focus();
    await page.keyboard.press('End');
    await frame.waitForFunction(() => window.frameTest.controller!.intensity === 0.6);
    await page.keyboard.press('ArrowLeft');
    await frame.waitForFunction(() => Math.abs(window.frameTest.controller!.intensity - 0.55) < 1e-9);
    await page.screenshot({ path: join(OUT, 'widget-training.png') });

    await part(page, 'pause-button').focus();
    await page.keyboard.press('Space');
    await frame.waitForFunction(() => window.frameTest.controller!.phase === 'paused');
    await waitForStatus(/^Paused\. Your progress is kept/);
    expect(await part(page, 'pause-button').innerText()).toBe('Resume');
    await part(page, 'pause-button').click();
    await frame.waitForFunction(() => window.frameTest.controller!.phase !== 'paused');
    await waitForStatus(/Training/);

    await part(page, 'stop-button').click();
    await frame.waitForFunction(() => window.frameTest.controller!.phase === 'stopped');
    await waitForStatus(/Stopped/);
    expect(await frame.evaluate(() => window.frameTest.backend.trainer!.disposed)).toBe(true);
    // Starting again takes the frame's button again.
    expect(await start.innerText()).toBe('Start again');
  });

  // After Allow the page can hide the frame, its Stop included, with a fully transparent
  // mask-image, which nothing in the frame can see: the consent window, which the page cannot
  // touch, stays open as the donation's Stop, and the frame trains only while it holds.
  it('trains behind a fully transparent mask only while the consent window holds: its Stop, or closing it, stops the frame, and the frame\'s own Stop ends it there', async () => {
    const frame = trainingFrame(page);
    const start = frame.locator('#murmur-start');
    const phase = () => frame.evaluate(() => window.frameTest.controller!.phase);
    const mask = (on: boolean) => page.evaluate((v) => {
      document.querySelector('murmur-volunteer')!.shadowRoot!.querySelector('iframe')!.style.maskImage = v ? 'linear-gradient(transparent, transparent)' : '';
    }, on);
    const masked = async () => {
      await waitForStatus(/Training/);
      await mask(true);
      expect(await page.evaluate(() => getComputedStyle(document.querySelector('murmur-volunteer')!.shadowRoot!.querySelector('iframe')!).maskImage)).toMatch(/transparent|rgba\(0, 0, 0, 0\)/);
    };
    try {
      // Closing the window: the frame stops, and says why (it trained on behind the mask).
      const first = await startThroughConsent(start);
      await masked();
      await first.close();
      await waitForStatus(/^Stopped: the Murmur window was closed/);
      expect(await phase()).toBe('stopped');
      await expect.poll(() => frame.locator('#murmur-note').innerText()).toMatch(/^Stopped: the Murmur window was closed/);
      await expect.poll(() => coordinator.c.consents.size, { timeout: CONSENT_GONE_MS }).toBe(0);
      // The window's Stop donating: the frame stops as well. The window says what runs, for whom, and how to stop it.
      await mask(false);
      const second = await startThroughConsent(start);
      await masked();
      expect(await second.locator('murmur-consent-window [data-donating]').innerText()).toContain(new URL(hostUrl).origin);
      await second.getByText('Closing this window stops it.').waitFor();
      await second.locator('murmur-consent-window button[data-stop]').click();
      await second.locator('murmur-consent-window [data-ended=stopped]').waitFor();
      await waitForStatus(/^Stopped from the Murmur window/);
      expect(await phase()).toBe('stopped');
      await expect.poll(() => coordinator.c.consents.size, { timeout: CONSENT_GONE_MS }).toBe(0);
      await second.close();
      // The frame's own Stop (here the page's, which the frame obeys): the window says the widget stopped.
      await mask(false);
      const third = await startThroughConsent(start);
      await waitForStatus(/Training/);
      await part(page, 'stop-button').click();
      await waitForStatus(/^Stopped/);
      await third.locator('murmur-consent-window [data-ended=released]').waitFor({ timeout: 30_000 });
      await expect.poll(() => coordinator.c.consents.size, { timeout: CONSENT_GONE_MS }).toBe(0);
      await third.close();
    } finally {
      await mask(false);
    }
  });

  it('pauses once the coordinator has been out of reach for the grace, or says it lost the session, and Resume asks through a new consent window', async () => {
    const frame = trainingFrame(page);
    const start = frame.locator('#murmur-start');
    const phase = () => frame.evaluate(() => window.frameTest.controller!.phase);
    const claims = (v: 'through' | 'unreachable' | 'forgotten') => frame.evaluate((x) => { window.frameTest.claims = x; }, v);
    // A claim every 200 ms, a grace of 1.5 s (5 s and 45 s in production): the same code paths.
    await frame.evaluate(() => { window.frameTest.hold.holdMs = 200; window.frameTest.hold.graceMs = 1500; });
    const windows: Page[] = [];
    try {
      windows.push(await startThroughConsent(start));
      await waitForStatus(/Training/);
      // The coordinator out of the frame's reach: training goes on through the grace, then pauses and says why.
      await claims('unreachable');
      await waitForStatus(/^Paused: the Murmur coordinator could not be reached/);
      // (The status says so as the pause is asked for; the pause lands once a wait for peers ends.)
      await frame.waitForFunction(() => window.frameTest.controller!.phase === 'paused');
      expect(await start.innerText()).toBe('Resume training');
      await expect.poll(() => frame.locator('#murmur-note').innerText()).toMatch(/^Paused: the Murmur coordinator could not be reached/);
      // It gave the session up (its release is not a claim): the window says the widget stopped.
      await windows[0]!.locator('murmur-consent-window [data-ended=released]').waitFor({ timeout: 30_000 });
      // Resume in the frame asks through a new window, for a new nonce.
      await claims('through');
      windows.push(await startThroughConsent(start));
      expect(new URL(windows[1]!.url()).hash).not.toBe(new URL(windows[0]!.url()).hash);
      await waitForStatus(/Training/);
      expect(await phase()).not.toBe('paused');
      // A coordinator that answers it has no such session (it crashed): paused, with that said, not "window closed".
      await claims('forgotten');
      await waitForStatus(/^Paused: the Murmur coordinator lost this donation's session/);
      expect(await start.innerText()).toBe('Resume training');
      await claims('through');
      // The page's Stop while paused so: the status and the frame's note follow the phase, and no
      // longer say the pause's words (they did, beside phase 'stopped').
      await part(page, 'stop-button').click();
      await frame.waitForFunction(() => window.frameTest.controller!.phase === 'stopped');
      await waitForStatus(/^Stopped\. Thank you!$/);
      await expect.poll(() => frame.locator('#murmur-note').textContent()).toBe('');
      expect(await start.innerText()).toBe('Start again');
    } finally {
      await claims('through');
      await frame.evaluate(() => { window.frameTest.hold.holdMs = 5000; window.frameTest.hold.graceMs = 45_000; });
      for (const w of windows) await w.close();
    }
  });

  it('withdraws the question a Resume window still asks when the frame\'s Stop is pressed: the window says so instead of asking', async () => {
    const frame = trainingFrame(page);
    const start = frame.locator('#murmur-start');
    const claims = (v: 'through' | 'unreachable' | 'forgotten') => frame.evaluate((x) => { window.frameTest.claims = x; }, v);
    const known = (nc: string) => { try { return coordinator.c.consents.get(nc).state; } catch { return 'gone'; } };
    await frame.evaluate(() => { window.frameTest.hold.holdMs = 200; });
    const windows: Page[] = [];
    try {
      windows.push(await startThroughConsent(start));
      await waitForStatus(/Training/);
      // Paused by the frame (the coordinator said it lost the session): Resume asks through a new window.
      await claims('forgotten');
      await waitForStatus(/^Paused: the Murmur coordinator lost this donation's session/);
      await claims('through');
      const asking = await consentWindowFrom(page.context(), () => restAndClick(start));
      windows.push(asking);
      const nc = new URL(asking.url()).hash.slice(1);
      await asking.locator('murmur-consent-window button[data-action=allow]').waitFor();
      await expect.poll(() => known(nc)).toBe('pending');
      expect(await start.innerText()).toBe('Open the Murmur window again');
      // The frame's own Stop before the window was answered.
      await page.bringToFront();
      await frame.locator('#murmur-stop').click();
      await frame.waitForFunction(() => window.frameTest.controller!.phase === 'stopped');
      // The coordinator has it withdrawn; the window hears it at its next watch and asks no more.
      await expect.poll(() => known(nc)).not.toBe('pending');
      const said = asking.locator('murmur-consent-window [data-ended=withdrawn]');
      await said.waitFor({ timeout: 30_000 });
      expect(await said.innerText()).toBe(`The widget on ${new URL(hostUrl).origin} stopped before you answered: its Stop was pressed, or its page was closed. ` +
        'Nothing was started, and nothing runs on this device for it.');
      expect(await asking.locator('murmur-consent-window button[data-action]').count()).toBe(0);
      // Heard by the window: the nonce is done, and the frame is back to Start, saying nothing of a window to confirm in.
      await expect.poll(() => known(nc)).toBe('gone');
      expect(await start.innerText()).toBe('Start again');
      await expect.poll(() => frame.locator('#murmur-note').innerText()).not.toMatch(/Confirm in the Murmur window/);
    } finally {
      await claims('through');
      await frame.evaluate(() => { window.frameTest.hold.holdMs = 5000; });
      for (const w of windows) await w.close();
    }
  });

  it('withdraws the question the consent window still asks when the embedding page closes: the window says so instead of asking', async () => {
    const known = (nc: string) => { try { return coordinator.c.consents.get(nc).state; } catch { return 'gone'; } };
    // A second tab of the same site (the shared page goes on to the tests after this one).
    const other = await page.context().newPage();
    let asking: Page | null = null;
    try {
      const cdp = await page.context().newCDPSession(other);
      await cdp.send('Emulation.setPressureSourceOverrideEnabled', { enabled: true, source: 'cpu' });
      await cdp.send('Emulation.setPressureStateOverride', { source: 'cpu', state: 'nominal' });
      await other.setViewportSize({ width: 900, height: 700 });
      await other.goto(hostUrl);
      await part(other, 'consent-button').focus();
      await other.keyboard.press('Enter');
      await other.locator('murmur-volunteer iframe').waitFor({ state: 'attached' });
      await expect.poll(() => part(other, 'status').innerText(), { timeout: 30_000 }).toMatch(/^Ready: nothing runs until you press Start/);
      const frame = other.frames().find((fr) => fr.url().includes('/widget-frame.html'));
      if (!frame) throw new Error('the second tab\'s training frame is not there');
      const start = frame.locator('#murmur-start');
      await start.waitFor({ state: 'visible' });
      asking = await consentWindowFrom(other.context(), () => restAndClick(start));
      const nc = new URL(asking.url()).hash.slice(1);
      await asking.locator('murmur-consent-window button[data-action=allow]').waitFor();
      await expect.poll(() => known(nc)).toBe('pending');
      // The embedding page goes (its tab closed, with its unload handlers run): the frame's
      // pagehide withdraws the question, and the window hears it at its next watch.
      await other.close({ runBeforeUnload: true });
      await expect.poll(() => known(nc), { timeout: 30_000 }).not.toBe('pending');
      const said = asking.locator('murmur-consent-window [data-ended=withdrawn]');
      await said.waitFor({ timeout: 30_000 });
      expect((await said.innerText()).replace(/\s+/g, ' ')).toBe(`The widget on ${new URL(hostUrl).origin} stopped before you answered: its Stop was pressed, or its page was closed. ` +
        'Nothing was started, and nothing runs on this device for it.');
      expect(await asking.locator('murmur-consent-window button[data-action]').count()).toBe(0);
      // Heard by the window: the nonce is done.
      await expect.poll(() => known(nc)).toBe('gone');
    } finally {
      if (!other.isClosed()) await other.close();
      await asking?.close();
      await page.bringToFront();
    }
  });

  it('trains nothing for a page that frames the training frame and posts start itself', async () => {
    const p = await (await h.browser.newContext()).newPage();
    await p.goto(forgerUrl);
    const f = () => p.frames().find((fr) => fr.url().includes('/widget-frame.html'));
    // The forger's `intensity` (sent after its `start` and `resume`) is answered: all three were handled.
    await p.waitForFunction(() => (window as unknown as { statuses: { intensity: number }[] }).statuses.some((s) => s.intensity === 0.3));
    expect(await f()!.evaluate(() => [window.frameTest.controller!.phase, window.frameTest.backend.joins, window.frameTest.controller!.consentRecord])).toEqual(['idle', 0, null]);
    await p.close();
  });

  it('keeps the training frame out of the host page\'s reach', async () => {
    const reach = await page.evaluate(() => {
      const f = document.querySelector('murmur-volunteer')!.shadowRoot!.querySelector('iframe')!;
      const tryIt = (fn: () => unknown) => { try { return { ok: true, value: String(fn()) }; } catch (e) { return { ok: false, value: (e as Error).name }; } };
      return {
        contentDocument: f.contentDocument === null,
        document: tryIt(() => f.contentWindow!.document),
        globals: tryIt(() => (f.contentWindow as unknown as { frameTest: unknown }).frameTest),
        storage: tryIt(() => f.contentWindow!.localStorage),
        sandbox: f.getAttribute('sandbox'),
        referrer: f.referrerPolicy,
      };
    });
    expect(reach).toEqual({
      contentDocument: true,
      document: { ok: false, value: 'SecurityError' },
      globals: { ok: false, value: 'SecurityError' },
      storage: { ok: false, value: 'SecurityError' },
      sandbox: 'allow-scripts allow-same-origin allow-popups allow-popups-to-escape-sandbox',
      referrer: 'no-referrer',
    });
    // The frame was not told where it is embedded.
    expect(await trainingFrame(page).evaluate(() => document.referrer)).toBe('');
  });

  it('labels every control', async () => {
    const unlabelled = await page.evaluate(() => {
      const root = document.querySelector('murmur-volunteer')!.shadowRoot!;
      const bad: string[] = [];
      for (const b of root.querySelectorAll('button')) if (!b.textContent?.trim()) bad.push(b.outerHTML);
      for (const i of root.querySelectorAll('input')) if (!i.labels?.length) bad.push(i.outerHTML);
      return bad;
    });
    expect(unlabelled).toEqual([]);
  });

  it('saw no uncaught page errors', () => {
    expect(pageErrors(page).map((e) => e.message)).toEqual([]);
  });
});
