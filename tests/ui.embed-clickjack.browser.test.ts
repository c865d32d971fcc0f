// Clickjacking the widget: a site the run allows (an embedSite) owns the <iframe> that embed.js
// puts in its page, so it can make the training frame transparent, or cover it with a decoy of
// its own, right where a visitor will click ("Claim your prize"): the real click lands on the
// frame's Start button. The frame must not start training then (no worker, no WebSocket), and
// must say why; once the same page shows the frame as it is, a click on Start starts it. Where
// the browser has no IntersectionObserver v2 (its isVisible), the frame cannot tell whether it
// is in view, and never starts. The Vite build served by the coordinator, as deployed (the real
// /frame.html and /embed.js).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser, type Page } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, calmPage, createRun, startBuiltApp } from './support/browser.ts';
import type { TestServer } from './support/coordinator.ts';

const RUN = 'micro-clickjack';
let server: TestServer;
let browser: Browser;
let host: Server;
let hostUrl: string;
const errors: string[] = [];

/**
 * The embedding site. `?attack=` (or `setAttack()` later) picks what it does to the training
 * frame: `fade` makes it transparent and puts it over its decoy button (both through the open
 * shadow root, which any page script can reach, and through the ::part(frame) rule that used to
 * be enough); `cover` draws the decoy over the frame, letting clicks through; `none` shows it.
 */
function hostPage(murmur: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>Free prizes</title>
<style>
  body { font: 16px/1.5 Georgia, serif; max-width: 40rem; margin: 2rem auto; }
  #decoy { font: 700 18px system-ui; padding: 0.6rem 1.2rem; margin: 1rem 0; }
  #cover { position: fixed; z-index: 10; pointer-events: none; background: #ffd54a; font: 700 16px system-ui; display: grid; place-items: center; }
  html.faded murmur-volunteer::part(frame) { opacity: 0; }
</style></head><body>
<h1>You won!</h1>
<button id="decoy" type="button">Claim your prize</button>
<script src="${murmur}/embed.js" data-run="${RUN}"></script>
<script>
  const widget = document.querySelector('murmur-volunteer');
  let attack = new URLSearchParams(location.search).get('attack') ?? 'none';
  const style = document.createElement('style');
  function apply() {
    const frame = widget.shadowRoot.querySelector('iframe');
    document.getElementById('cover')?.remove();
    document.documentElement.classList.toggle('faded', attack === 'fade');
    if (!frame) return;
    if (attack === 'fade') {
      const d = document.getElementById('decoy').getBoundingClientRect();
      const css = 'iframe { opacity: 0 !important; position: fixed !important; left: ' + d.left + 'px; top: ' + d.top + 'px; width: 22rem !important; }';
      if (style.textContent !== css) style.textContent = css; // (a mutation too: only when it changes)
      if (!style.isConnected) widget.shadowRoot.append(style); // (a mutation: apply runs again)
    } else if (style.isConnected) style.remove();
    if (attack === 'cover') document.body.append(Object.assign(document.createElement('div'), { id: 'cover', textContent: 'Claim your prize' }));
  }
  // The decoy follows the frame wherever the widget's layout puts it.
  (function follow() {
    const frame = widget.shadowRoot.querySelector('iframe'), c = document.getElementById('cover');
    if (frame && c) {
      const r = frame.getBoundingClientRect();
      Object.assign(c.style, { left: r.left + 'px', top: r.top + 'px', width: r.width + 'px', height: r.height + 'px' });
    }
    requestAnimationFrame(follow);
  })();
  // Before the frame is even drawn: it is never seen.
  new MutationObserver(apply).observe(widget.shadowRoot, { childList: true, subtree: true });
  window.setAttack = (a) => { attack = a; apply(); };
</script></body></html>`;
}

const status = (p: Page) => p.evaluate(() => document.querySelector('murmur-volunteer')!.shadowRoot!.querySelector('[part=status]')!.textContent!);
const startButton = (p: Page) => p.frameLocator('murmur-volunteer iframe').locator('#murmur-start');
const note = (p: Page) => p.frameLocator('murmur-volunteer iframe').locator('#murmur-note');

/** Waits for the widget's status line to match; on timeout the error quotes the line. */
async function waitForStatus(p: Page, re: RegExp, timeout = 60_000): Promise<string> {
  try {
    await p.waitForFunction(([src, flags]) => new RegExp(src!, flags).test(document.querySelector('murmur-volunteer')!.shadowRoot!.querySelector('[part=status]')!.textContent!), [re.source, re.flags], { timeout });
  } catch (e) {
    throw new Error(`widget status never matched ${re} in ${timeout} ms; it says "${await status(p)}"`, { cause: e });
  }
  return status(p);
}

/** The host page with the widget, the visitor's real click on its button, and the frame ready; what it starts is recorded. */
async function openWidget(attack: string, init?: () => void) {
  const p = await calmPage(browser, errors);
  if (init) await p.context().addInitScript(init);
  const sockets: string[] = [];
  p.on('websocket', (ws) => sockets.push(ws.url()));
  await p.goto(`${hostUrl}?attack=${attack}`);
  await p.locator('murmur-volunteer [part="consent-button"]').click();
  return { p, sockets };
}

/** A trusted click at the middle of the frame's Start button, wherever and however the host has put it. */
async function clickWhereStartIs(p: Page): Promise<void> {
  const box = await startButton(p).boundingBox();
  if (!box) throw new Error('the Start button has no box');
  await p.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
}

/**
 * Clicks where Start is until the frame answers in the widget's status line (refused, or
 * starting), and returns that line. One click may not reach the frame at all: Chromium drops
 * input to a cross-origin frame that moved in its page a moment before (the attacks move it), so
 * the visitor, like this test, clicks again.
 */
async function clickUntilAnswered(p: Page): Promise<string> {
  const answered = /^Not started|Starting|Training/;
  await expect.poll(async () => {
    const now = await status(p);
    // (Start hides once training starts: then wait for the status to say so.)
    if (!answered.test(now) && await startButton(p).isVisible()) await clickWhereStartIs(p);
    return now;
  }, { timeout: 60_000, interval: 250 }).toMatch(answered);
  return status(p);
}

beforeAll(async () => {
  host = createServer((_req, res) => { res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }); res.end(hostPage(server.url)); });
  await new Promise<void>((r) => host.listen(0, '127.0.0.1', r));
  hostUrl = `http://127.0.0.1:${(host.address() as AddressInfo).port}/`;
  server = await startBuiltApp();
  await createRun(server, { id: RUN, name: 'clickjack', dataset: 'moby-dick', preset: 'micro', train: { H: 4, batch: 2 }, embedSites: [new URL(hostUrl).origin] });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
  await new Promise((r) => host?.close(r));
});

describe('the widget against clickjacking', () => {
  it('starts nothing on a click on the frame made transparent over the page\'s own button, and gives the frame no CSS part', async () => {
    const { p, sockets } = await openWidget('fade');
    await waitForStatus(p, /^Ready/);
    // The attack as the visitor sees it: no frame, a "Claim your prize" button where Start is.
    expect(await p.evaluate(() => getComputedStyle(document.querySelector('murmur-volunteer')!.shadowRoot!.querySelector('iframe')!).opacity)).toBe('0');
    const box = (await startButton(p).boundingBox())!;
    const decoy = (await p.locator('#decoy').boundingBox())!;
    expect(box.x + box.width / 2).toBeGreaterThan(decoy.x);
    expect(box.x + box.width / 2).toBeLessThan(decoy.x + decoy.width);
    // Whatever the click did shows in the status line: refused, or starting.
    const said = await clickUntilAnswered(p);
    expect(said).toMatch(/^Not started: this button was hidden or covered/);
    expect(await note(p).innerText()).toMatch(/^Not started: this button was hidden or covered/);
    expect(p.workers()).toHaveLength(0);
    expect(sockets).toEqual([]);
    expect(await p.evaluate(() => document.querySelector('murmur-volunteer')!.shadowRoot!.querySelector('iframe')!.getAttribute('part'))).toBeNull();
    await p.close();
  });

  it('starts nothing on a click through a decoy drawn over the frame, then starts once the same page shows the frame', async () => {
    const { p, sockets } = await openWidget('cover');
    await waitForStatus(p, /^Ready/);
    expect(await p.locator('#cover').isVisible()).toBe(true);
    // The click goes through the decoy (pointer-events: none) to the frame, which refuses it.
    const said = await clickUntilAnswered(p);
    expect(said).toMatch(/^Not started: this button was hidden or covered/);
    expect(p.workers()).toHaveLength(0);
    expect(sockets).toEqual([]);

    // The same page, honest now: the frame in plain view, and a click on Start starts training.
    await p.evaluate(() => (window as unknown as { setAttack(a: string): void }).setAttack('none'));
    const worker = p.waitForEvent('worker', { timeout: 120_000 });
    // Playwright's click waits until the button takes clicks: in view for a moment, unmoved.
    await startButton(p).click();
    await waitForStatus(p, /Starting|Training/);
    expect((await worker).url().startsWith(`${server.url}/`)).toBe(true);
    await expect.poll(() => sockets.length, { timeout: 120_000 }).toBeGreaterThan(0);
    expect(await note(p).innerText()).toBe('');
    await p.close();
  });

  it('never starts where the browser has no IntersectionObserver v2, and says where to go instead', async () => {
    const { p, sockets } = await openWidget('none', () => {
      delete (IntersectionObserverEntry.prototype as { isVisible?: boolean }).isVisible;
    });
    const said = await waitForStatus(p, /^Not started: this browser cannot confirm/);
    expect(said).toContain(`Start it on ${server.url} instead.`);
    expect(await note(p).innerText()).toMatch(/^Not started: this browser cannot confirm/);
    await expect.poll(() => startButton(p).isDisabled()).toBe(true);
    await clickWhereStartIs(p);
    expect(await status(p)).toMatch(/^Not started: this browser cannot confirm/);
    expect(p.workers()).toHaveLength(0);
    expect(sockets).toEqual([]);
    await p.close();
  });

  it('saw no uncaught page errors', () => {
    expect(errors).toEqual([]);
  });
});
