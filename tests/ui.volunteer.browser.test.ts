// The volunteer page in headless Chromium: the real panel, TrainingController, sensors and GPU
// probe, with a fake training backend (tests/support/ui-fakes.ts). Checks the flow consent ->
// training -> pause -> resume -> stop by keyboard, no training before consent, pause on a hidden
// tab and on critical compute pressure, the intensity lowering the duty cycle, labels on every
// control, the explanation shown when WebGPU gives no adapter, and a click on Start that comes as
// the page appears or comes to the front not counting (double-clickjacking).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { CDPSession, Page } from 'playwright-core';
import { pageErrors, ROOT, settledButton as settled, startBrowser, type BrowserHarness } from './support/browser.ts';
import { KEY_FOCUS_MS } from '../src/ui/core/settle.ts';

const OUT = join(ROOT, 'tests', 'output');
mkdirSync(OUT, { recursive: true });
const PAGE = '/tests/browser/pages/volunteer.html';

let h: BrowserHarness;
let page: Page;

const figure = (p: Page, key: string) => p.locator(`murmur-volunteer-panel [data-figure="${key}"]`).innerText();
const phase = (p: Page) => p.locator('murmur-volunteer-panel [data-phase]').getAttribute('data-phase');
const state = (p: Page) => p.evaluate(() => {
  const { controller: c, backend: b } = window.volunteerTest;
  return { phase: c.phase, step: c.figures.step, rounds: c.figures.rounds, joins: b.joins, reasons: c.pauseReasons, disposed: b.trainer?.disposed ?? null };
});
async function waitFor(p: Page, fn: string, timeout = 30_000) {
  await p.waitForFunction(fn, null, { timeout, polling: 100 });
}

/**
 * The Compute Pressure API reports this shared test machine's real CPU load, which is often
 * "critical": a virtual pressure source (CDP) replaces it so the policy sees only what each test
 * sets. Chromium applies a virtual source only to observers started after it, hence the reload.
 */
const cdps = new WeakMap<Page, CDPSession>();
async function pinPressure(p: Page, state: 'nominal' | 'critical') {
  let cdp = cdps.get(p);
  if (!cdp) {
    cdp = await p.context().newCDPSession(p);
    cdps.set(p, cdp);
    await cdp.send('Emulation.setPressureSourceOverrideEnabled', { enabled: true, source: 'cpu' });
  }
  await cdp.send('Emulation.setPressureStateOverride', { source: 'cpu', state });
}

async function open(path: string): Promise<Page> {
  const p = await h.openPage(path);
  await pinPressure(p, 'nominal');
  await p.reload();
  return p;
}

beforeAll(async () => {
  h = await startBrowser();
  page = await open(`${PAGE}?peers=2&msPerStep=20`);
  await page.setViewportSize({ width: 1000, height: 1500 });
  await waitFor(page, 'window.volunteerTest?.controller.gpu.status === "complete"');
});
afterAll(() => h?.close());

describe('volunteer page', () => {
  it('finds the GPU and starts nothing before consent', async () => {
    await expect(page.locator('murmur-volunteer-panel [data-gpu="ok"]').innerText()).resolves.toMatch(/Found:/);
    await expect(page.getByRole('button', { name: 'Start training' }).isDisabled()).resolves.toBe(true);
    // Before consent the page says who may see the volunteer's address (the run allows direct links).
    await expect(page.locator('murmur-volunteer-panel [data-ice-policy="all"]').innerText()).resolves.toMatch(/direct link .* shows that volunteer your IP address/);
    // ... and the link rate the run needs (FAKE_RUN: 136,000 bytes/s each way within 60 s).
    await expect(page.locator('murmur-volunteer-panel [data-link-rate]').innerText()).resolves
      .toMatch(/within the 60 s each side waits, your connection needs at least 136 KB\/s \(1\.1 Mbit\/s\) each way; on a slower one every exchange misses/);
    // ... and the first exchange's, before the wait fits the link (544,000 bytes/s within 15 s).
    await expect(page.locator('murmur-volunteer-panel [data-first-link-rate]').innerText()).resolves
      .toMatch(/Your first exchange, before the wait is fitted to your connection, has 15 s: it needs 544 KB\/s \(4\.4 Mbit\/s\) each way/);
    await page.waitForTimeout(1500);
    expect(await state(page)).toMatchObject({ phase: 'idle', joins: 0, step: 0 });
    await page.screenshot({ path: join(OUT, 'volunteer-before-consent.png'), fullPage: true });
  });

  it('labels every control and works from the keyboard: consent, start, pause, resume, stop', async () => {
    // Every button has a name, every input a label.
    const unnamed = await page.evaluate(() => {
      const root = document.querySelector('murmur-volunteer-panel')!.shadowRoot!;
      const bad: string[] = [];
      for (const b of root.querySelectorAll('button')) if (!b.textContent?.trim() && !b.getAttribute('aria-label')) bad.push(b.outerHTML);
      for (const i of root.querySelectorAll('input')) {
        const labelled = i.labels?.length || i.getAttribute('aria-label') || i.getAttribute('aria-labelledby');
        if (!labelled) bad.push(i.outerHTML);
      }
      return bad;
    });
    expect(unnamed).toEqual([]);

    // A key press counts once the page and the button have settled, as a click does, and the
    // button has held the focus half a second with nothing else typed (keyGate).
    await settled(page, 'consent');
    await page.getByRole('button', { name: /I agree/ }).focus();
    await page.keyboard.press('Enter');
    expect(await page.locator('murmur-volunteer-panel [data-refused]').innerText()).toMatch(/only just got the keyboard focus/);
    await page.waitForTimeout(KEY_FOCUS_MS + 100);
    await page.keyboard.press('Enter');
    await page.getByRole('button', { name: 'Start training' }).waitFor();
    expect(await page.getByRole('button', { name: 'Start training' }).isEnabled()).toBe(true);
    expect(await page.evaluate(() => JSON.parse(localStorage.getItem('murmur.consent')!).runId)).toBe('default');
    expect((await state(page)).joins).toBe(0); // consent alone starts nothing

    await settled(page, 'start');
    await page.getByRole('button', { name: 'Start training' }).focus();
    await page.waitForTimeout(KEY_FOCUS_MS + 100);
    await page.keyboard.press('Space');
    await waitFor(page, 'window.volunteerTest.controller.figures.rounds >= 2');
    // Where the weights came from (the fake backend starts fresh).
    expect(await page.locator('murmur-volunteer-panel [data-start="fresh"]').innerText()).toMatch(/started the model from scratch/);
    const a = { loss: await figure(page, 'loss'), tokens: await figure(page, 'tokens'), rounds: await figure(page, 'rounds') };
    await page.waitForTimeout(1200);
    const b = { loss: await figure(page, 'loss'), tokens: await figure(page, 'tokens'), rounds: await figure(page, 'rounds') };
    expect(b.tokens).not.toBe(a.tokens);
    expect(b.loss).not.toBe(a.loss);
    expect(Number(a.loss)).toBeGreaterThan(0);
    expect(await figure(page, 'partner')).toMatch(/^p-/);
    expect(await figure(page, 'bytes-up')).toMatch(/\d+ B/);
    expect(Number(await figure(page, 'accepted'))).toBeGreaterThan(0);
    expect(await figure(page, 'tokens-per-s')).not.toBe('0');
    await page.screenshot({ path: join(OUT, 'volunteer-training.png'), fullPage: true });

    await page.getByRole('button', { name: 'Pause now' }).focus();
    await page.keyboard.press('Enter');
    await waitFor(page, 'window.volunteerTest.controller.phase === "paused"');
    const p1 = (await state(page)).step;
    await page.waitForTimeout(1000);
    expect((await state(page)).step).toBe(p1);
    expect(await page.locator('murmur-volunteer-panel [role=status]').innerText()).toMatch(/Paused[\s\S]*you paused it/);

    await page.getByRole('button', { name: 'Resume' }).focus();
    await page.waitForTimeout(KEY_FOCUS_MS + 100);
    await page.keyboard.press('Enter');
    await waitFor(page, `window.volunteerTest.controller.figures.step > ${p1}`);

    // Finish this step, then pause: ends on an outer-step boundary.
    await page.getByRole('button', { name: 'Finish this step, then pause' }).click();
    await waitFor(page, 'window.volunteerTest.controller.phase === "paused"');
    const s = await state(page);
    expect(s.step % 5).toBe(0); // FAKE_RUN.H = 5
    await page.getByRole('button', { name: 'Resume' }).click();

    await page.getByRole('button', { name: 'Stop' }).focus();
    await page.keyboard.press('Enter');
    await waitFor(page, 'window.volunteerTest.controller.phase === "stopped"');
    expect(await state(page)).toMatchObject({ phase: 'stopped', disposed: true });
    expect(await phase(page)).toBe('stopped');
  });

  it('pauses while the tab is hidden and resumes when it is shown', async () => {
    await settled(page, 'start');
    await page.getByRole('button', { name: 'Start training' }).click();
    await waitFor(page, 'window.volunteerTest.controller.phase === "training"');
    // Headless Chromium keeps every tab "visible"; flip the document's state as a hidden tab has it.
    const setHidden = (hidden: boolean) => page.evaluate((hidden) => {
      Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => (hidden ? 'hidden' : 'visible') });
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => hidden });
      document.dispatchEvent(new Event('visibilitychange'));
    }, hidden);
    await setHidden(true);
    await waitFor(page, 'window.volunteerTest.controller.phase === "paused"');
    expect((await state(page)).reasons).toEqual(['hidden']);
    const s = (await state(page)).step;
    await page.waitForTimeout(800);
    expect((await state(page)).step).toBe(s);
    await setHidden(false);
    await waitFor(page, `window.volunteerTest.controller.figures.step > ${s}`);
  });

  it('pauses on critical compute pressure reported by the browser', async () => {
    await pinPressure(page, 'critical');
    await waitFor(page, 'window.volunteerTest.controller.pauseReasons.includes("pressure")');
    expect(await page.locator('murmur-volunteer-panel .sensors').innerText()).toMatch(/Device load and heat: critical: paused/);
    await page.screenshot({ path: join(OUT, 'volunteer-paused-pressure.png'), fullPage: true });
    await pinPressure(page, 'nominal');
    // Recovery needs 30 s of calm (hysteresis): stop instead of waiting here.
    await page.getByRole('button', { name: 'Stop' }).click();
    await waitFor(page, 'window.volunteerTest.controller.phase === "stopped"');
  });

  it('lowers the GPU duty cycle with the intensity control', async () => {
    const p = await open(`${PAGE}?peers=2&msPerStep=25&intensity=1`);
    await waitFor(p, 'window.volunteerTest?.controller.gpu.status === "complete"');
    await settled(p, 'consent');
    await p.getByRole('button', { name: /I agree/ }).click();
    await settled(p, 'start');
    await p.getByRole('button', { name: 'Start training' }).click();
    const slider = p.getByRole('slider', { name: 'GPU intensity' });
    const measure = async () => {
      await p.waitForTimeout(1500); // settle at the new intensity
      return p.evaluate(async () => {
        const t = window.volunteerTest.backend.trainer!;
        const from = Date.now();
        await new Promise((r) => setTimeout(r, 4000));
        return t.dutyBetween(from, Date.now());
      });
    };
    await slider.focus();
    await p.keyboard.press('End');
    expect(await p.locator('murmur-volunteer-panel [data-figure="intensity"]').innerText()).toBe('100%');
    const full = await measure();
    await p.keyboard.press('Home');
    await p.keyboard.press('ArrowRight');
    await p.keyboard.press('ArrowRight');
    await p.keyboard.press('ArrowRight'); // 10% + 3 * 5% = 25%
    expect(await p.locator('murmur-volunteer-panel [data-figure="intensity"]').innerText()).toBe('25%');
    const quarter = await measure();
    console.log(`[duty] fake GPU busy at 100%: ${(full * 100).toFixed(1)}%, at 25%: ${(quarter * 100).toFixed(1)}%`);
    expect(quarter).toBeLessThan(full * 0.5);
    expect(quarter).toBeGreaterThan(0.05);
    await p.getByRole('button', { name: 'Stop' }).click();
    expect(pageErrors(p).map((e) => e.message)).toEqual([]);
    await p.context().close();
  });

  it('saw no uncaught page errors', () => {
    expect(pageErrors(page).map((e) => e.message)).toEqual([]);
  });
});

describe('volunteer page against double-clickjacking', () => {
  // A hostile site opens a pop-up that asks for a double-click; on its first press the site
  // navigates its own tab (the pop-up's opener) to the volunteer page and closes the pop-up, and
  // the second click lands on Start, where consent is already stored.
  const start = (p: Page) => p.getByRole('button', { name: 'Start training' });
  const refused = (p: Page) => p.locator('murmur-volunteer-panel [data-refused]');
  const resume = (p: Page) => p.getByRole('button', { name: 'Resume' });
  /** A trusted click at the middle of Start right now: no waiting for it to take clicks. */
  async function clickStartNow(p: Page) {
    const box = (await start(p).boundingBox())!;
    await p.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
  }
  const idle = (p: Page) => state(p).then((s) => expect(s).toMatchObject({ phase: 'idle', joins: 0 }));

  it('ignores a click on Start (or Resume) as the page appears or comes to the front, says to click again, and starts on a click once it settled', async () => {
    const p = await open(`${PAGE}?peers=2&msPerStep=20`);
    await p.setViewportSize({ width: 1000, height: 1500 });
    await waitFor(p, 'window.volunteerTest?.controller.gpu.status === "complete"');
    await settled(p, 'consent');
    await p.getByRole('button', { name: /I agree/ }).click();
    await start(p).waitFor();

    // The page is loaded with consent stored, and clicked as soon as Start is there.
    await p.reload();
    await p.waitForFunction(() => {
      const b = document.querySelector('murmur-volunteer-panel')?.shadowRoot?.querySelector<HTMLButtonElement>('button[data-action=start]');
      return b !== null && b !== undefined && !b.disabled;
    }, null, { polling: 'raf' });
    await clickStartNow(p);
    await refused(p).waitFor({ timeout: 30_000 });
    expect(await refused(p).innerText()).toMatch(/Click it again/);
    await idle(p);

    // A click once the page has settled starts, as any other.
    await settled(p, 'start');
    await start(p).click();
    await waitFor(p, 'window.volunteerTest.controller.phase === "training"');
    await expect(refused(p).count()).resolves.toBe(0);
    await p.getByRole('button', { name: 'Stop' }).click();
    await waitFor(p, 'window.volunteerTest.controller.phase === "stopped"');

    // The window comes to the front (as the opener's does when the pop-up over it closes) and is
    // clicked at once. Headless Chromium keeps every page focused: its focus events are played here.
    await settled(p, 'start'); // the page and Start have settled: only the focus is new
    const joins = (await state(p)).joins;
    await p.evaluate(() => { window.dispatchEvent(new FocusEvent('blur')); window.dispatchEvent(new FocusEvent('focus')); });
    await clickStartNow(p);
    await refused(p).waitFor({ timeout: 30_000 });
    expect(await state(p)).toMatchObject({ phase: 'stopped', joins });
    await settled(p, 'start');
    await start(p).click();
    await waitFor(p, 'window.volunteerTest.controller.phase === "training"');

    // Resume undoes the volunteer's own pause: it is guarded as Start is.
    await p.getByRole('button', { name: 'Pause now' }).click();
    await waitFor(p, 'window.volunteerTest.controller.phase === "paused"');
    await settled(p, 'resume');
    await p.evaluate(() => { window.dispatchEvent(new FocusEvent('blur')); window.dispatchEvent(new FocusEvent('focus')); });
    const box = (await resume(p).boundingBox())!;
    await p.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
    await refused(p).waitFor({ timeout: 30_000 });
    expect((await state(p)).phase).toBe('paused');
    await settled(p, 'resume');
    await resume(p).click();
    await waitFor(p, 'window.volunteerTest.controller.phase === "training"');
    await p.getByRole('button', { name: 'Stop' }).click();
    expect(pageErrors(p).map((e) => e.message)).toEqual([]);
    await p.context().close();
  });
});

describe('volunteer page without WebGPU', () => {
  let nogpu: BrowserHarness;
  beforeAll(async () => { nogpu = await startBrowser({ webgpu: false }); });
  afterAll(() => nogpu?.close());

  it('explains why this device cannot help and offers nothing to start', async () => {
    const p = await nogpu.openPage(PAGE);
    await p.setViewportSize({ width: 1000, height: 1100 });
    await waitFor(p, 'window.volunteerTest?.controller.gpu.status === "complete"');
    const section = p.locator('murmur-volunteer-panel [data-gpu="unsupported"]');
    const text = await section.innerText();
    expect(await section.getAttribute('data-code')).toMatch(/no-adapter|no-webgpu/);
    expect(text).toMatch(/cannot help with training right now/);
    expect(text).toMatch(/What you can do:/);
    expect(await p.getByRole('button', { name: /I agree|Start/ }).count()).toBe(0);
    expect(await p.evaluate(() => window.volunteerTest.backend.joins)).toBe(0);
    await p.screenshot({ path: join(OUT, 'volunteer-no-webgpu.png'), fullPage: true });
    expect(pageErrors(p).map((e) => e.message)).toEqual([]);
  });
});
