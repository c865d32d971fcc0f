// Clickjacking the widget: a site the run allows (an embedSite) owns the <iframe> that embed.js
// puts in its page, so it can make the training frame transparent, cover it with a decoy of its
// own, cut it down to a corner of Start or zoom it out to a few pixels, right where a visitor will
// click ("Claim your prize"), or put it right after a form field, where a visitor typing there
// tabs onto Start and presses Space: the real click lands on the frame's Start button. The frame
// must not start training then (no worker, no WebSocket), and must say why; once the same page
// shows the frame as it is, a click on Start (or Enter on it, after a moment) starts it. Once
// training runs, the page may hide the frame, or zoom it out, and ignore its own Stop: the frame
// then pauses by itself, and only a click in it resumes. Where the browser has no IntersectionObserver v2 (its
// isVisible), the frame cannot tell whether it is in view, and never starts. The Vite build
// served by the coordinator, as deployed (the real /frame.html and /embed.js).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser, type Frame, type Page } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, answerConsent, calmPage, consentWindowFrom, createRun, restAndClick, startBuiltApp, startThroughConsent } from './support/browser.ts';
import type { TestServer } from './support/coordinator.ts';

const RUN = 'micro-clickjack';
let server: TestServer;
let browser: Browser;
let host: Server;
let hostUrl: string;
/** The same page from another site than the coordinator's (127.0.0.2): its frame is drawn by another process. */
let otherSite: Server;
let otherSiteUrl: string;
const errors: string[] = [];

/**
 * The embedding site. `?attack=` (or `setAttack()` later) picks what it does to the training
 * frame: `fade` makes it transparent and puts it over its decoy button (both through the open
 * shadow root, which any page script can reach, and through the ::part(frame) rule that used to
 * be enough); `cover` draws the decoy over the frame, letting clicks through; `clip` cuts the
 * frame to 12 x 12 px without scrollbars, a corner of Start (which the page could dress as a
 * checkbox), where nothing of the page lies over the rest of the button's rect (isVisible was
 * false beside the widget's own status line); `zoom` draws
 * it at 3% (CSS zoom), `shrink` at 40%; `hide` takes it out of the page (display: none); `none` shows it.
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
    const css = attack === 'fade' ? (() => {
      const d = document.getElementById('decoy').getBoundingClientRect();
      return 'iframe { opacity: 0 !important; position: fixed !important; left: ' + d.left + 'px; top: ' + d.top + 'px; width: 22rem !important; }';
    })() : attack === 'clip' ? 'iframe { position: fixed !important; left: 80vw; top: 60vh; width: 12px !important; height: 12px !important; }'
      : attack === 'mask' ? 'iframe { mask-image: linear-gradient(transparent, transparent) !important; }'
      : attack === 'zoom' ? 'iframe { zoom: 0.03 !important; }' : attack === 'quarter' ? 'iframe { zoom: 0.25 !important; }' : attack === 'shrink' ? 'iframe { zoom: 0.4 !important; }'
      : attack === 'hide' ? 'iframe { display: none !important; }' : null;
    if (css !== null) {
      if (style.textContent !== css) style.textContent = css; // (a mutation too: only when it changes)
      if (!style.isConnected) widget.shadowRoot.append(style); // (a mutation: apply runs again)
    } else if (style.isConnected) style.remove();
    // Without scrollbars, which would be drawn over the button in a frame that small.
    if (attack === 'clip' && !frame.hasAttribute('scrolling')) frame.setAttribute('scrolling', 'no');
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
const stopButton = (p: Page) => p.frameLocator('murmur-volunteer iframe').locator('#murmur-stop');
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

/** Waits for the phase of the frame's last status to the page (FrameStatus); on timeout the error names the phase it had. */
async function waitForPhase(p: Page, phase: string, timeout = 240_000): Promise<void> {
  const now = () => p.evaluate(() => (document.querySelector('murmur-volunteer') as unknown as { status: { phase: string } | null }).status?.phase ?? null);
  try {
    await p.waitForFunction((want) => (document.querySelector('murmur-volunteer') as unknown as { status: { phase: string } | null }).status?.phase === want, phase, { timeout });
  } catch (e) {
    throw new Error(`the frame's phase never became ${phase} in ${timeout} ms; it is ${await now()}, its status says "${await status(p)}"`, { cause: e });
  }
}

/**
 * The host page slides the widget's frame by (dx, dy) (position: fixed) under the resting
 * pointer, lets it be drawn there (two animation frames and 60 ms of the page's clock) and
 * clicks: what the widget's status line says then.
 */
async function slideFrameThenClick(p: Page, dx: number, dy: number): Promise<string> {
  await p.evaluate(([x, y]) => {
    const f = document.querySelector('murmur-volunteer')!.shadowRoot!.querySelector('iframe')!;
    const r = f.getBoundingClientRect();
    f.style.cssText += `;position: fixed; left: ${r.left + x!}px; top: ${r.top + y!}px; width: ${r.width}px`;
  }, [dx, dy]);
  const t0 = await p.evaluate(() => new Promise<number>((r) => requestAnimationFrame(() => requestAnimationFrame(() => r(performance.now())))));
  await p.waitForFunction((t) => performance.now() - t > 60, t0);
  await p.mouse.down();
  await p.mouse.up();
  return waitForStatus(p, /^Not started|^Confirm in the Murmur window|Starting|Training/);
}

/** The widget on a page of another site, ready and taking clicks; where its Start and its frame are drawn. */
async function readyOnOtherSite() {
  const { p, sockets } = await openWidget('none', undefined, otherSiteUrl);
  await waitForStatus(p, /^Ready/);
  const frame = trainingFrame(p);
  await frame.waitForFunction(() => document.getElementById('murmur-start')!.style.pointerEvents === '');
  const start = (await startButton(p).boundingBox())!;
  const iframe = (await p.locator('murmur-volunteer iframe').boundingBox())!;
  return { p, sockets, frame, start, iframe };
}

/** The host page with the widget, the visitor's real click on its button, and the frame ready; what it starts is recorded. */
async function openWidget(attack: string, init?: () => void, site = hostUrl, deviceScaleFactor = 1) {
  const p = await calmPage(browser, errors, { deviceScaleFactor });
  if (init) await p.context().addInitScript(init);
  const sockets: string[] = [];
  p.on('websocket', (ws) => sockets.push(ws.url()));
  await p.goto(`${site}?attack=${attack}`);
  await p.locator('murmur-volunteer [part="consent-button"]').click();
  return { p, sockets };
}

/** The training frame (the Murmur origin), once it is in the page. */
function trainingFrame(p: Page): Frame {
  const f = p.frames().find((x) => x.url().startsWith(`${server.url}/frame.html`));
  if (!f) throw new Error('the training frame is not in the page');
  return f;
}

/**
 * A trusted click at the middle of the part of the frame's Start button that the page shows,
 * wherever and however the host has put it: the frame's own rect of the button, cut to the
 * frame's viewport (a clipped frame shows a corner of it), scaled as the page draws the frame (a
 * zoomed one is drawn small).
 */
async function clickWhereStartIs(p: Page): Promise<void> {
  const [x, y] = await whereStartIs(p);
  await p.mouse.click(x, y);
}

/** Where clickWhereStartIs clicks, in the page. */
async function whereStartIs(p: Page): Promise<[number, number]> {
  const frame = await p.locator('murmur-volunteer iframe').boundingBox();
  if (!frame) throw new Error('the training frame has no box');
  const r = await trainingFrame(p).evaluate(() => {
    const b = document.getElementById('murmur-start')!.getBoundingClientRect();
    return { left: Math.max(b.left, 0), top: Math.max(b.top, 0), right: Math.min(b.right, innerWidth), bottom: Math.min(b.bottom, innerHeight), width: innerWidth };
  });
  if (r.right <= r.left || r.bottom <= r.top) throw new Error('no part of the Start button shows in the frame');
  const scale = frame.width / r.width;
  return [frame.x + scale * (r.left + r.right) / 2, frame.y + scale * (r.top + r.bottom) / 2];
}

/**
 * Waits until IntersectionObserver v2's isVisible alone (no other check) has reported Start
 * visible for `ms` without a break: a click then is what a frame that trusted isVisible counted.
 */
async function isVisibleHeld(p: Page, ms: number): Promise<void> {
  const frame = trainingFrame(p);
  await frame.evaluate(() => {
    const w = window as unknown as { seenSince: number | null };
    w.seenSince = null;
    new IntersectionObserver((entries) => {
      for (const e of entries) w.seenSince = (e as IntersectionObserverEntry & { isVisible: boolean }).isVisible ? w.seenSince ?? e.time : null;
    }, { trackVisibility: true, delay: 100 } as IntersectionObserverInit).observe(document.getElementById('murmur-start')!);
  });
  await frame.waitForFunction((d) => {
    const since = (window as unknown as { seenSince: number | null }).seenSince;
    return since !== null && performance.now() - since > d;
  }, ms, { timeout: 60_000 });
}

/**
 * Clicks where Start is until the frame answers in the widget's status line (refused, or
 * starting), and returns that line. One click may not reach the frame at all: Chromium drops
 * input to a cross-origin frame that moved in its page a moment before (the attacks move it), so
 * the visitor, like this test, clicks again; so too where the frame says that Start had just
 * appeared or moved (a click a moment later might count).
 */
async function clickUntilAnswered(p: Page): Promise<string> {
  const answered = /^Not started: (?!this button had just appeared or moved)|^Confirm in the Murmur window|Starting|Training/;
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
  otherSite = createServer((_req, res) => { res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }); res.end(hostPage(server.url)); });
  await new Promise<void>((r) => otherSite.listen(0, '127.0.0.2', r));
  otherSiteUrl = `http://127.0.0.2:${(otherSite.address() as AddressInfo).port}/`;
  server = await startBuiltApp();
  await createRun(server, { id: RUN, name: 'clickjack', dataset: 'moby-dick', preset: 'micro', train: { H: 4, batch: 2 }, embedSites: [new URL(hostUrl).origin, new URL(otherSiteUrl).origin] });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
  await new Promise((r) => host?.close(r));
  await new Promise((r) => otherSite?.close(r));
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
    await startThroughConsent(startButton(p));
    await waitForStatus(p, /Starting|Training/);
    expect((await worker).url().startsWith(`${server.url}/`)).toBe(true);
    await expect.poll(() => sockets.length, { timeout: 120_000 }).toBeGreaterThan(0);
    // The refusal is gone: the frame says what runs, beside its own Stop.
    await expect.poll(() => note(p).innerText()).toMatch(/^(Starting|Training|Waiting)/);
    expect(await stopButton(p).isVisible()).toBe(true);
    await p.close();
  });

  // IntersectionObserver v2's isVisible sees opacity, filters, transforms and what is drawn over
  // a target, not a frame cut short or zoomed out: Chromium reported Start visible with 1.4% of
  // it showing in the clipped frame, and with 33% (the rest past the frame's edge) at zoom 3%.
  for (const [attack, how] of [['clip', 'cut down to a 12 px corner of Start'], ['zoom', 'zoomed out to 3%']] as const) {
    it(`starts nothing on a click on the frame ${how}`, async () => {
      const { p, sockets } = await openWidget(attack);
      await waitForStatus(p, /^Ready/);
      // The attack as the visitor sees it: a speck where Start is (12 x 12 px), or a line 1 px high.
      const frame = (await p.locator('murmur-volunteer iframe').boundingBox())!;
      expect(Math.min(frame.width, frame.height)).toBeLessThanOrEqual(12);
      // Clicked once isVisible alone has called Start visible for longer than the frame asks.
      await isVisibleHeld(p, 600);
      const said = await clickUntilAnswered(p);
      expect(said).toMatch(/^Not started: this button was hidden or covered/);
      expect(await note(p).innerText()).toMatch(/^Not started: this button was hidden or covered/);
      expect(p.workers()).toHaveLength(0);
      expect(sockets).toEqual([]);
      await p.close();
    });
  }

  // A fully transparent mask-image on the <iframe>: IntersectionObserver v2 reports Start visible,
  // nothing in the frame tells it apart from a frame in plain view, and the click passes every
  // gate of the frame. Only the consent window, which the page cannot touch, stands between that
  // click and the visitor's GPU: the click opens it and starts nothing.
  it('starts nothing on a click on a frame masked to full transparency: the click only opens the consent window, where Don\'t allow leaves it ready', async () => {
    const { p, sockets } = await openWidget('mask');
    await waitForStatus(p, /^Ready/);
    const frame = trainingFrame(p);
    expect(await p.evaluate(() => getComputedStyle(document.querySelector('murmur-volunteer')!.shadowRoot!.querySelector('iframe')!).maskImage)).toMatch(/transparent|rgba\(0, 0, 0, 0\)/);
    // The frame's gates cannot see the mask: Start takes clicks.
    await frame.waitForFunction(() => document.getElementById('murmur-start')!.style.pointerEvents === '');
    const opened = p.context().waitForEvent('page', { timeout: 60_000 });
    opened.catch(() => {}); // (awaited below, once the click was answered)
    await restAndClick(startButton(p));
    // Whatever the click did shows in the status line: asking in the consent window, or starting
    // (as it did before the consent window: the click passed every gate and training started).
    const said = await waitForStatus(p, /^Not started|^Confirm in the Murmur window|Starting|Training/);
    expect(said).toMatch(/^Confirm in the Murmur window/);
    const popup = await opened;
    await popup.waitForLoadState();
    expect(await startButton(p).innerText()).toBe('Open the Murmur window again');
    // The consent window is the Murmur origin's own page, naming the site that asks and the run.
    expect(new URL(popup.url()).origin).toBe(server.url);
    await popup.locator('murmur-consent-window [data-site]').waitFor();
    expect(await popup.locator('murmur-consent-window [data-site]').innerText()).toBe(new URL(hostUrl).origin);
    expect(await popup.locator('murmur-consent-window [data-run]').innerText()).toBe('clickjack');
    expect(p.workers()).toHaveLength(0);
    expect(sockets).toEqual([]);
    expect(await frame.evaluate(() => document.getElementById('murmur-stop')!.hidden)).toBe(true);
    // Don't allow: the widget is back to Start, and nothing ran.
    await answerConsent(popup, 'deny');
    expect(await waitForStatus(p, /^Not started: you chose/)).toBe('Not started: you chose Don\'t allow in the Murmur window, or closed it.');
    await expect.poll(() => startButton(p).innerText()).toBe('Start training on my GPU');
    expect(p.workers()).toHaveLength(0);
    expect(sockets).toEqual([]);
    expect(server.c.consents.size).toBe(0);
    await popup.close();
    await p.close();
  });

  // zoom: 0.25 on the <iframe> on a 2x screen: Start is drawn at a quarter of its size, and the
  // frame's devicePixelRatio reads 0.5, what a volunteer's own 50% browser zoom on a common screen
  // gives, so the frame's floor of 0.5 lets the click through. Only the consent window stops it.
  it('starts nothing on a click on a frame zoomed to a quarter on a 2x screen: the click only opens the consent window', async () => {
    const { p, sockets } = await openWidget('quarter', undefined, hostUrl, 2);
    await waitForStatus(p, /^Ready/);
    const frame = trainingFrame(p);
    expect(await frame.evaluate(() => devicePixelRatio)).toBe(0.5);
    await frame.waitForFunction(() => document.getElementById('murmur-start')!.style.pointerEvents === '');
    const opened = p.context().waitForEvent('page', { timeout: 60_000 });
    opened.catch(() => {}); // (awaited below, once the click was answered)
    // The pointer rests on the small Start a moment, as a visitor's does on the page's decoy.
    const [x, y] = await whereStartIs(p);
    await p.mouse.move(x, y);
    const t0 = await frame.evaluate(() => performance.now());
    await frame.waitForFunction((t) => performance.now() - t > 600, t0);
    await p.mouse.click(x, y);
    const said = await waitForStatus(p, /^Not started|^Confirm in the Murmur window|Starting|Training/);
    expect(said).toMatch(/^Confirm in the Murmur window/);
    const popup = await opened;
    await popup.waitForLoadState();
    expect(new URL(popup.url()).pathname).toBe('/consent');
    expect(p.workers()).toHaveLength(0);
    expect(sockets).toEqual([]);
    await popup.close();
    await p.close();
  });

  // The pointer rests on the page's own button; the page slides the frame's Start under it just
  // before the visitor clicks. Nothing in the frame changed (Start in full view and in place), and
  // Chromium let the click through to a frame of another site slid there 60 ms before it.
  it('starts nothing on a click on a frame of another site slid under the resting pointer a moment before, and starts once the pointer has rested on Start', async () => {
    const { p, sockets, frame, start, iframe } = await readyOnOtherSite();
    // The pointer rests on the page, away from the frame.
    const [x, y] = [iframe.x + iframe.width / 2, iframe.y + iframe.height + 200];
    await p.mouse.move(x, y);
    expect(await slideFrameThenClick(p, x - (start.x + start.width / 2), y - (start.y + start.height / 2))).toBe('Not started: this button had just appeared or moved. Click it again to start.');
    expect(p.workers()).toHaveLength(0);
    expect(sockets).toEqual([]);
    // The pointer has rested on Start a moment: a click counts.
    await startThroughConsent(startButton(p));
    await waitForStatus(p, /Starting|Training/);
    await expect.poll(() => sockets.length, { timeout: 120_000 }).toBeGreaterThan(0);
    await p.close();
  });

  it('starts nothing on a click on Start slid under a pointer that rested on another part of the frame', async () => {
    const { p, sockets, frame, start, iframe } = await readyOnOtherSite();
    // The pointer rests in the frame, right of Start, past its own edge (no other part of the frame there).
    const [x, y] = [start.x + start.width + 40, start.y + start.height / 2];
    expect(x).toBeLessThan(iframe.x + iframe.width);
    await p.mouse.move(x - 5, y);
    await p.mouse.move(x, y);
    const t1 = await frame.evaluate(() => performance.now());
    await frame.waitForFunction((t) => performance.now() - t > 600, t1);
    expect(await slideFrameThenClick(p, x - (start.x + start.width / 2), 0)).toBe('Not started: this button had just appeared or moved. Click it again to start.');
    expect(p.workers()).toHaveLength(0);
    expect(sockets).toEqual([]);
    await p.close();
  });

  it('counts Enter on Start only once the button has held the focus a moment with no other key typed since it got it, even when pressed again', async () => {
    const { p, sockets } = await openWidget('none');
    await waitForStatus(p, /^Ready/);
    const frame = trainingFrame(p);
    /** Waits until `ms` have passed on the frame's clock, with no key pressed. */
    const hold = async (ms: number) => {
      const t0 = await frame.evaluate(() => performance.now());
      await frame.waitForFunction(([t, d]) => performance.now() - t! > d!, [t0, ms]);
    };
    // The visitor, typing in the page, tabs on onto Start (the next control) and types on: Enter
    // comes after other keys on the button.
    await p.locator('murmur-volunteer [part="link"]').focus();
    await p.keyboard.press('Tab');
    await expect.poll(() => frame.evaluate(() => document.activeElement?.id)).toBe('murmur-start');
    // (Once a click on it would count: in full view, and in place, for a moment.)
    await frame.waitForFunction(() => document.getElementById('murmur-start')!.style.pointerEvents === '');
    await p.keyboard.type('hello');
    await p.keyboard.press('Enter');
    const said = await waitForStatus(p, /^Not started/);
    expect(said).toBe('Not started: other keys were typed on this button. Move the focus off it and back, then press it to start.');
    expect(await note(p).innerText()).toBe(said);
    // The visitor, who sees no answer where they think they typed, presses Enter again a moment
    // later: the refusal has not forgotten the typing.
    await hold(600);
    // (What the frame says right after its own handler answered the press: listened for after it.)
    await frame.evaluate(() => {
      const w = window as unknown as { after: string[] };
      w.after = [];
      document.addEventListener('click', () => w.after.push(document.getElementById('murmur-note')!.textContent!), true);
    });
    await p.keyboard.press('Enter');
    await frame.waitForFunction(() => (window as unknown as { after: string[] }).after.length > 0);
    expect(await frame.evaluate(() => (window as unknown as { after: string[] }).after)).toEqual([said]);
    expect(p.workers()).toHaveLength(0);
    expect(sockets).toEqual([]);
    // Off Start and back: the button has held the focus a moment, no key pressed, and Enter starts training.
    await p.keyboard.press('Shift+Tab');
    await expect.poll(() => frame.evaluate(() => document.hasFocus())).toBe(false);
    await p.keyboard.press('Tab');
    await expect.poll(() => frame.evaluate(() => document.hasFocus() && document.activeElement?.id)).toBe('murmur-start');
    await hold(600);
    const popup = await consentWindowFrom(p.context(), () => p.keyboard.press('Enter'));
    await answerConsent(popup);
    // (The window stays open: closing it would stop training.)
    await p.bringToFront();
    await waitForStatus(p, /Starting|Training/);
    await expect.poll(() => sockets.length, { timeout: 120_000 }).toBeGreaterThan(0);
    await p.close();
  });

  it('pauses by itself once the page hides the frame while it trains, ignores the page\'s resume, and resumes only on a click in the frame', async () => {
    const { p } = await openWidget('none');
    await waitForStatus(p, /^Ready/);
    await startThroughConsent(startButton(p));
    await waitForStatus(p, /^(Training|Waiting)/, 240_000);
    // The page takes the frame out of view and would ignore its own Stop. The frame's document
    // still reads 'visible', so the pause-while-hidden policy does not see it.
    await p.evaluate(() => (window as unknown as { setAttack(a: string): void }).setAttack('hide'));
    const frame = trainingFrame(p);
    expect(await frame.evaluate(() => document.visibilityState)).toBe('visible');
    // 'paused' once the burst in flight has ended: the GPU does nothing for the run now.
    const held = /^Paused while this frame was out of view\. Press Resume in it to go on\./;
    await waitForStatus(p, held);
    // The frame says why at once, but its phase turns 'paused' only once the burst in flight has
    // ended (an exchange may still wait for its partner): a resume sent before that proves nothing,
    // and a status sent then still said 'training' (a fresh-clone run under load, twice).
    await waitForPhase(p, 'paused');
    // The page's resume does not undo it. (The page holds the widget's port, as any page script
    // can: a status with the intensity sent after the resume shows the resume was handled.)
    const after = await p.evaluate(() => new Promise<{ phase: string; text: string }>((resolve) => {
      const port = (document.querySelector('murmur-volunteer') as unknown as { port: MessagePort }).port;
      port.addEventListener('message', (e) => { if (e.data?.intensity === 0.3) resolve(e.data); });
      port.postMessage({ cmd: 'resume' });
      port.postMessage({ cmd: 'intensity', value: 0.3 });
    }));
    expect(after.phase).toBe('paused');
    expect(after.text).toMatch(held);
    // The frame has its own Stop, and says why it paused.
    expect(await stopButton(p).count()).toBe(1);
    expect(await note(p).innerText()).toMatch(held);
    // Shown again, it stays paused until a click on its own Resume, in view.
    await p.evaluate(() => (window as unknown as { setAttack(a: string): void }).setAttack('none'));
    await expect.poll(() => startButton(p).innerText()).toBe('Resume training');
    expect(await status(p)).toMatch(held);
    expect(await stopButton(p).isVisible()).toBe(true);
    await startThroughConsent(startButton(p));
    await waitForStatus(p, /^(Training|Waiting)/);
    await expect.poll(() => startButton(p).isHidden()).toBe(true);
    // The frame's own Stop stops it.
    await stopButton(p).click();
    await waitForStatus(p, /^Stopped/);
    await p.close();
  });

  // Zoomed out, Stop stays whole and visible, only small: IntersectionObserver v2 reports no
  // change at all, so the frame must notice the zoom itself (its devicePixelRatio, 0.4 here).
  it('pauses by itself once the page zooms the frame out to under half size while it trains, and resumes only on a click in it', async () => {
    const { p } = await openWidget('none');
    await waitForStatus(p, /^Ready/);
    await startThroughConsent(startButton(p));
    await waitForStatus(p, /^(Training|Waiting)/, 240_000);
    const frame = trainingFrame(p);
    await p.evaluate(() => (window as unknown as { setAttack(a: string): void }).setAttack('shrink'));
    await expect.poll(() => frame.evaluate(() => devicePixelRatio)).toBeLessThan(0.5);
    const held = /^Paused while this frame was out of view\. Press Resume in it to go on\./;
    await waitForStatus(p, held);
    // Nothing but its size gave it away: Stop is shown, whole in the frame's viewport.
    expect(await frame.evaluate(() => {
      const r = document.getElementById('murmur-stop')!.getBoundingClientRect();
      return r.width > 0 && r.left >= 0 && r.top >= 0 && r.right <= innerWidth && r.bottom <= innerHeight;
    })).toBe(true);
    expect(await frame.evaluate(() => document.visibilityState)).toBe('visible');
    // Drawn at full size again, it stays paused until a click on its own Resume.
    await p.evaluate(() => (window as unknown as { setAttack(a: string): void }).setAttack('none'));
    await expect.poll(() => startButton(p).innerText()).toBe('Resume training');
    expect(await status(p)).toMatch(held);
    await startThroughConsent(startButton(p));
    await waitForStatus(p, /^(Training|Waiting)/);
    await stopButton(p).click();
    await waitForStatus(p, /^Stopped/);
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
