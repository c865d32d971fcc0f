// The widget's consent window (/consent#nonce, src/ui/elements/consent-window.ts) in Chromium: its
// Allow counts only as a deliberate press. A page that got a click on the widget's Start (through
// a mask or zoom the frame cannot see) opens this window under a visitor who is typing into that
// page (a game: "Tab to switch, hold Space to charge"): the keys go on into the window, which has
// taken the focus, and a Tab lands on Allow and the Space after it presses it. A reload of the
// window, which its page cannot tell from a close, keeps the donation, or the question still
// asked; a close ends the one, or declines the other, once the coordinator's leaving grace has
// passed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { startBrowser, type BrowserHarness } from './support/browser.ts';
import { startServer, type TestServer } from './support/coordinator.ts';
import { backgroundClock } from '../src/protocol/clock.ts';
import { DEFAULT_CONSENT_LIMITS } from '../server/consent.ts';
import { exchangeLink } from '../src/protocol/exchange-link.ts';
import { buildLayout } from '../src/model/layout.ts';
import { formatBytes, formatRate } from '../src/ui/core/format.ts';

const SITE = 'https://whales.example';
let h: BrowserHarness;
let coordinator: TestServer;
let n = 0;
/** The coordinator's clock runs this far ahead of the real one. */
let skew = 0;

beforeAll(async () => {
  coordinator = await startServer({}, { clock: { ...backgroundClock, now: () => Date.now() + skew } });
  const r = await coordinator.c.app.inject({ method: 'PATCH', url: '/api/runs/default', headers: { ...coordinator.admin }, payload: { embedSites: [SITE] } });
  expect(r.statusCode).toBe(200);
  h = await startBrowser({ proxy: { '/api': coordinator.url } });
});
afterAll(async () => {
  await h?.close();
  await coordinator?.close();
});

/** A consent window for a freshly registered nonce, its buttons taking clicks (the window at the front half a second). */
async function openWindow(asked: Record<string, unknown> = {}): Promise<{ page: Page; nonce: string }> {
  const nonce = `k${String(++n).padStart(21, '0')}`;
  // (Each from an address of its own: one address may hold 4 requests, and the windows before stay answered.)
  const r = await coordinator.c.app.inject({ method: 'POST', url: '/api/consent', remoteAddress: `198.18.0.${n}`, payload: { nonce, run: 'default', site: SITE, ...asked } });
  expect(r.statusCode).toBe(201);
  const page = await h.openPage(`/web/consent.html#${nonce}`);
  await page.waitForFunction(() => {
    const b = document.querySelector('murmur-consent-window')?.shadowRoot?.querySelector<HTMLButtonElement>('button[data-action=allow]');
    return b ? getComputedStyle(b).pointerEvents !== 'none' : false;
  }, undefined, { polling: 100, timeout: 30_000 });
  return { page, nonce };
}
const state = (nonce: string) => coordinator.c.consents.get(nonce).state;
const refusal = (p: Page) => p.locator('murmur-consent-window [data-refused]').innerText();

describe('the consent window', () => {
  it('says the coordinator refused the request, and why, when the widget\'s registration was refused after the window opened', async () => {
    const nonce = `r${String(++n).padStart(21, '0')}`;
    const page = await h.openPage(`/web/consent.html#${nonce}`);
    // The window is looking for its request (it opens before the frame registers it).
    await page.locator('murmur-consent-window').getByText('Loading the request').waitFor();
    const r = await coordinator.c.app.inject({ method: 'POST', url: '/api/consent', payload: { nonce, run: 'default', site: 'https://evil.example' } });
    expect(r.statusCode).toBe(403);
    const said = page.locator('murmur-consent-window .error');
    await said.waitFor();
    expect(await said.innerText()).toBe('This request was refused by the Murmur coordinator: https://evil.example is not an embedding site of run default: ' +
      'the run\'s admin adds it to embedSites. Nothing was started.');
    await page.close();
  });

  it('states what the run asks of the visitor\'s link before they answer: an exchange\'s bytes each way, the least rate, the first exchange\'s', async () => {
    const { page } = await openWindow();
    const run = coordinator.c.runs.get('default')!;
    const need = exchangeLink(run.compression, buildLayout(run.model).total);
    const said = page.locator('murmur-consent-window [data-link]');
    expect(await said.getAttribute('data-link')).toBe(String(need.leastBytesPerS));
    expect(await said.getAttribute('data-first-link')).toBe(String(need.firstBytesPerS));
    expect((await said.innerText()).replace(/\s+/g, ' ')).toBe(`Each exchange sends about ${formatBytes(need.bytes)} of model updates to one other volunteer and receives as much. ` +
      `It needs a connection of at least ${formatRate(need.leastBytesPerS)} each way to end within the 60 s each side waits, ` +
      `and ${formatRate(need.firstBytesPerS)} for the first exchange (15 s); on a slower one your GPU trains alone.`);
    await page.close();
  });

  it('states the widget\'s intensity ceiling before they answer: the most of the GPU\'s time the site allows, which it cannot raise', async () => {
    const { page } = await openWindow({ maxIntensity: 0.4 });
    const said = page.locator('murmur-consent-window [data-max-intensity]');
    expect(await said.getAttribute('data-max-intensity')).toBe('0.4');
    expect((await said.innerText()).replace(/\s+/g, ' ')).toBe('Your graphics card trains part of an open language model inside that page\'s tab, ' +
      'in short bursts: at most 40% of its time, which the site can lower but not raise.');
    await page.close();
  });

  it('says a question the widget withdrew was withdrawn, on the first load of a window reloaded since: not that the widget stopped training', async () => {
    const { page, nonce } = await openWindow();
    // The frame's Stop while the window asks (POST …/release on the pending request), told to the
    // coordinator after the window's last watch: the window, reloaded, reads it as it loads.
    expect((await coordinator.c.app.inject({ method: 'POST', url: `/api/consent/${nonce}/release` })).json()).toMatchObject({ state: 'withdrawn' });
    await page.reload();
    const said = page.locator('murmur-consent-window [data-ended]');
    await said.waitFor({ timeout: 10_000 });
    expect(await said.getAttribute('data-ended')).toBe('withdrawn');
    expect((await said.innerText()).replace(/\s+/g, ' ')).toBe(`The widget on ${SITE} stopped before you answered: its Stop was pressed, or its page was closed. ` +
      'Nothing was started, and nothing runs on this device for it.');
    expect(await page.locator('murmur-consent-window button[data-action]').count()).toBe(0);
    await page.close();
  });

  it('does not take the Space that follows the Tab which brought Allow the focus', async () => {
    const { page, nonce } = await openWindow();
    await page.keyboard.press('Tab');
    expect(await page.evaluate(() => document.querySelector('murmur-consent-window')!.shadowRoot!.activeElement?.getAttribute('data-action'))).toBe('allow');
    await page.keyboard.press(' ');
    await page.waitForTimeout(300);
    expect(state(nonce)).toBe('pending');
    expect(await refusal(page)).toMatch(/did not count/);
    await page.close();
  });

  it('does not take a held key, nor a press after other keys were typed on Allow', async () => {
    const { page, nonce } = await openWindow();
    await page.keyboard.press('Tab');
    await page.waitForTimeout(700);
    // Held: the key repeats before it is let go.
    await page.keyboard.down(' ');
    await page.keyboard.down(' ');
    await page.keyboard.up(' ');
    await page.waitForTimeout(300);
    expect(state(nonce)).toBe('pending');
    // Typed on: letters, then Enter.
    await page.waitForTimeout(700);
    await page.keyboard.type('abc');
    await page.keyboard.press('Enter');
    await page.waitForTimeout(300);
    expect(state(nonce)).toBe('pending');
    await page.close();
  });

  it('takes Enter or Space pressed on Allow once it has held the focus half a second, with nothing typed', async () => {
    const { page, nonce } = await openWindow();
    await page.keyboard.press('Tab');
    await page.waitForTimeout(700);
    await page.keyboard.press('Enter');
    await page.locator('murmur-consent-window [data-answer=allowed]').waitFor({ timeout: 10_000 });
    expect(state(nonce)).toBe('allowed');
    await page.close();
    // Focus moved off and back on gives a fresh start after typing.
    const second = await openWindow();
    await second.page.keyboard.press('Tab');
    await second.page.keyboard.type('x');
    await second.page.keyboard.press('Shift+Tab');
    await second.page.keyboard.press('Tab');
    await second.page.waitForTimeout(700);
    await second.page.keyboard.press(' ');
    await second.page.locator('murmur-consent-window [data-answer=allowed]').waitFor({ timeout: 10_000 });
    await second.page.close();
  });

  it('keeps the donation through a reload, which says the window left and then watches at once, and ends it once a closed window stays gone', async () => {
    const { page, nonce } = await openWindow();
    // What the window's page tells the coordinator, in order.
    const told: string[] = [];
    const consents = coordinator.c.consents;
    const { leave, watch } = consents;
    consents.leave = (nc) => { if (nc === nonce) told.push('leave'); return leave.call(consents, nc); };
    consents.watch = (nc) => { if (nc === nonce) told.push('watch'); return watch.call(consents, nc); };
    try {
      await page.keyboard.press('Tab');
      await page.waitForTimeout(700);
      await page.keyboard.press('Enter');
      await page.locator('murmur-consent-window [data-donating]').waitFor({ timeout: 10_000 });
      expect(state(nonce)).toBe('allowed');
      // The reload: its pagehide says the window left, and the page it loads (the same #nonce) watches.
      told.length = 0;
      await page.reload();
      await page.locator('murmur-consent-window [data-donating]').waitFor({ timeout: 10_000 });
      await expect.poll(() => told.join(' '), { timeout: 30_000 }).toMatch(/^leave watch/);
      // Past the grace the donation still runs: the watch took the leaving back.
      skew += DEFAULT_CONSENT_LIMITS.leaveMs + 1;
      expect(state(nonce)).toBe('allowed');
      // A close: it says it left, and once the grace has passed the session is closed for the frame to hear.
      told.length = 0;
      await page.close();
      await expect.poll(() => told.join(' '), { timeout: 30_000 }).toBe('leave');
      expect(state(nonce)).toBe('allowed');
      skew += DEFAULT_CONSENT_LIMITS.leaveMs + 1;
      expect(state(nonce)).toBe('closed');
    } finally {
      consents.leave = leave;
      consents.watch = watch;
      skew = 0;
    }
  });

  it('keeps the question through a reload before the answer, so the reloaded window can still answer, and declines it once a closed window stays gone', async () => {
    const { page, nonce } = await openWindow();
    const told: string[] = [];
    const consents = coordinator.c.consents;
    const { leave, watch, decide } = consents;
    consents.leave = (nc) => { if (nc === nonce) told.push('leave'); return leave.call(consents, nc); };
    consents.watch = (nc) => { if (nc === nonce) told.push('watch'); return watch.call(consents, nc); };
    consents.decide = (nc, allow) => { if (nc === nonce) told.push(`decide ${allow}`); return decide.call(consents, nc, allow); };
    try {
      // The reload while asking: its pagehide says the window left (it said Don't allow), and the
      // reloaded page asks again and watches.
      await page.reload();
      await page.locator('murmur-consent-window button[data-action=allow]').waitFor({ timeout: 10_000 });
      await expect.poll(() => told.join(' '), { timeout: 30_000 }).toMatch(/^leave watch/);
      // Past the grace it still asks, and its Allow is taken.
      skew += DEFAULT_CONSENT_LIMITS.leaveMs + 1;
      expect(state(nonce)).toBe('pending');
      await page.keyboard.press('Tab');
      await page.waitForTimeout(700);
      await page.keyboard.press('Enter');
      await page.locator('murmur-consent-window [data-donating]').waitFor({ timeout: 10_000 });
      expect(state(nonce)).toBe('allowed');
      await page.close();
      // Closed unanswered: it says it left, and once the grace has passed the request is declined for the frame to hear.
      const second = await openWindow();
      told.length = 0;
      consents.leave = (nc) => { if (nc === second.nonce) told.push('leave'); return leave.call(consents, nc); };
      await second.page.close();
      await expect.poll(() => told.join(' '), { timeout: 30_000 }).toBe('leave');
      expect(state(second.nonce)).toBe('pending');
      skew += DEFAULT_CONSENT_LIMITS.leaveMs + 1;
      expect(state(second.nonce)).toBe('denied');
    } finally {
      consents.leave = leave;
      consents.watch = watch;
      consents.decide = decide;
      skew = 0;
    }
  });
});
