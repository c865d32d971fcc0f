// The research dashboard in headless Chromium with a fake coordinator feed (3 peers, live):
// charts and the peer grid show the data, the x-axis switch and log-x change the charts, the run
// events panel lists stored and live events, an offender report and a failed checkpoint raise
// their alerts, a NaN report raises an alert, the CSV export holds every report; controls are
// labelled and work from the keyboard; the peer grid counts the gone peers it no longer lists; peer text of the longest the
// schemas allow, with no place to break, leaves nothing wider than its box. (tests/ui.e2e.browser.test.ts runs it against the real
// coordinator.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { pageErrors, ROOT, startBrowser, type BrowserHarness } from './support/browser.ts';
import { GONE_PEER_CAP } from '../src/ui/controllers/dashboard-controller.ts';

const OUT = join(ROOT, 'tests', 'output');
mkdirSync(OUT, { recursive: true });

let h: BrowserHarness;
let page: Page;

/** uPlot's x scale of a chart: [min, max] and its distribution (1 linear, 3 log). */
const xScale = (p: Page, chart: string) => p.evaluate((chart) => {
  const el = document.querySelector('murmur-dashboard')!.shadowRoot!.querySelector(`murmur-chart[data-chart="${chart}"]`) as HTMLElement & { plot: { scales: { x: { min: number; max: number; distr: number } }; series: unknown[] } };
  const x = el.plot.scales.x;
  return { min: x.min, max: x.max, distr: x.distr, series: el.plot.series.length };
}, chart);

beforeAll(async () => {
  h = await startBrowser();
  page = await h.openPage('/tests/browser/pages/dashboard.html?peers=3&live=1');
  await page.setViewportSize({ width: 1400, height: 1000 });
  await page.waitForFunction(() => window.dashTest?.controller.trainView.x.length > 0, null, { timeout: 30_000 });
});
afterAll(() => h?.close());

describe('dashboard', () => {
  it('shows the live data in the charts and the peer grid', async () => {
    for (const chart of ['train', 'val', 'throughput', 'spread']) {
      await page.locator(`murmur-chart[data-chart="${chart}"] canvas`).first().waitFor();
    }
    const train = await xScale(page, 'train');
    expect(train.series).toBe(1 + 2 + 3 + 1); // x, band min/max, 3 peers, median
    expect(await page.locator('murmur-peer-grid [data-peer]').count()).toBe(3);
    expect(await page.locator('murmur-peer-grid [data-peer="p-0000000000000002"]').innerText()).toMatch(/fake GPU 2[\s\S]*2\.2 K/);
    expect(await page.locator('[data-kpi="live"]').innerText()).toBe('3');
    // The link the run's exchange needs (the fake run: 138,770 bytes/s each way).
    expect(await page.locator('[data-kpi="link"]').innerText()).toBe('139 KB/s (1.1 Mbit/s)');
    // ... and beside it a volunteer's first exchange's (15 s before its link is measured: 555,077 bytes/s).
    expect(await page.locator('[data-kpi="first-link"]').innerText()).toBe('555 KB/s (4.4 Mbit/s)');
    const reports0 = await page.evaluate(() => window.dashTest.controller.reportCount);
    await page.waitForFunction((n) => window.dashTest.controller.reportCount >= n + 6, reports0, { timeout: 10_000 });
    const x1 = (await xScale(page, 'train')).max;
    await page.waitForTimeout(2500);
    expect((await xScale(page, 'train')).max).toBeGreaterThan(x1); // the chart follows the live feed
    expect(await page.locator('murmur-pairings').getAttribute('aria-label').catch(() => null)).toBeNull();
    expect(await page.locator('murmur-pairings svg').getAttribute('aria-label')).toMatch(/^3 pairings among 3 peers/);
  });

  it('switches the x-axis between tokens, steps and wall time, and log-x', async () => {
    const tokens = await xScale(page, 'train');
    await page.getByRole('radio', { name: 'Steps' }).check();
    const steps = await xScale(page, 'train');
    expect(tokens.max / steps.max).toBeCloseTo(1024, -1); // tokensPerStep
    await page.getByRole('radio', { name: 'Wall time' }).focus();
    await page.keyboard.press('ArrowRight'); // radio group: arrows move and select
    await page.getByRole('radio', { name: 'Wall time' }).check();
    const time = await xScale(page, 'train');
    expect(time.max).toBeGreaterThan(550); // seconds: ten minutes of history
    expect(time.max).toBeLessThan(1200);
    expect(time.distr).toBe(1);
    await page.getByRole('checkbox', { name: 'Log x' }).focus();
    await page.keyboard.press('Space');
    const log = await xScale(page, 'train');
    expect(log.distr).toBe(3);
    expect(log.min).toBeGreaterThan(0);
    await page.screenshot({ path: join(OUT, 'dashboard-logx-time.png'), fullPage: true });
    await page.getByRole('checkbox', { name: 'Log x' }).uncheck();
    await page.getByRole('radio', { name: 'Tokens' }).check();
  });

  it('lists run events newest first, and an offender report or a failed checkpoint shows up there and raises its alert', async () => {
    const events = page.locator('murmur-events li');
    await page.locator('murmur-events [data-event="checkpoint-saved"]').first().waitFor({ timeout: 30_000 });
    expect(await page.locator('murmur-events [data-event="checkpoint-saved"]').first().innerText()).toMatch(/checkpoint saved at step 500[\s\S]*val\. loss 2\.500/);
    expect(await page.locator('murmur-events [data-event="run-created"]').innerText()).toMatch(/run created[\s\S]*tiny on moby-dick/);
    await page.evaluate(() => {
      const t = window.dashTest;
      t.source.pushEvent(t.fakeEvent('peer-offender', Date.now(), t.fakePeerId(0), { accused: t.fakePeerId(2), reason: 'non-finite: Δ[12] = NaN' }));
    });
    const offender = page.locator('murmur-alerts [data-alert="offender"]');
    await offender.waitFor({ timeout: 30_000 });
    expect(await offender.innerText()).toMatch(/bad update[\s\S]*p-0000000000000002 sent p-0000000000000000 a bad update: non-finite Δ \(Δ\[12\] = NaN\)/i);
    expect(await page.locator('murmur-events [data-event="peer-offender"]').innerText()).toMatch(/bad update\s+peer p-0000000000000000 reported p-0000000000000002 for a bad update: non-finite Δ\s+Δ\[12\] = NaN/i);
    await page.evaluate(() => {
      const t = window.dashTest;
      t.source.pushEvent(t.fakeEvent('checkpoint-failed', Date.now() + 1, t.fakePeerId(1), { request: 'r-1', reason: 'no upload within 60000 ms' }));
    });
    const ck = page.locator('murmur-alerts [data-alert="checkpoint"]');
    await ck.waitFor({ timeout: 30_000 });
    expect(await ck.innerText()).toMatch(/checkpoint failed[\s\S]*Checkpoint from p-0000000000000001 failed: no upload within 60000 ms\. The newest saved checkpoint is at step 500/i);
    expect(await page.locator('murmur-events [data-event="checkpoint-failed"]').innerText()).toMatch(/checkpoint from peer p-0000000000000001 failed\s+no upload within 60000 ms/);
    // Bounded: the panel holds at most eventCap entries however many arrive.
    await page.evaluate(() => {
      const t = window.dashTest;
      for (let k = 0; k < 250; k++) t.source.pushEvent(t.fakeEvent('peer-joined', Date.now() - 60_000 + k, t.fakePeerId(k % 3), { replica: k % 3, resumed: true }));
    });
    await page.waitForFunction(() => window.dashTest.controller.eventsSeen >= 250 + 6);
    await page.waitForTimeout(1500); // one refresh
    expect(await events.count()).toBe(200);
    // Newest first, and the two newer than the 250 (the live churn is newer still) stay in.
    const times = await page.locator('murmur-events time').evaluateAll((ts) => ts.map((t) => Date.parse(t.getAttribute('datetime')!)));
    expect(times).toEqual([...times].sort((a, b) => b - a));
    expect(await page.locator('murmur-events [data-event="checkpoint-failed"]').count()).toBe(1);
    expect(await page.locator('murmur-events [data-event="peer-offender"]').count()).toBe(1);
  });

  it('raises an alert on a NaN report', async () => {
    await page.evaluate(() => {
      const t = window.dashTest;
      t.source.push(t.fakeReport(1, t.step(), Date.now(), { trainLoss: NaN }));
    });
    const alert = page.locator('murmur-alerts [data-alert="nan"]');
    await alert.waitFor({ timeout: 30_000 });
    expect(await alert.innerText()).toMatch(/p-0000000000000001 reported a NaN training loss/);
    // The loss chart names it too: the point is a gap in the peer's line.
    const note = page.locator('murmur-chart[data-chart="train"] [data-note="diverged"]');
    await note.waitFor({ timeout: 30_000 });
    expect(await note.innerText()).toMatch(/^p-0000000000000001 reported a NaN or infinite loss \(or one past 10,000\), first at step \d+: diverged/);
    await page.screenshot({ path: join(OUT, 'dashboard.png'), fullPage: true });
  });

  // A peer's tokens/s and steps are its own claims: one new id claiming 1,024,000 tokens/s (inside
  // the report bounds) showed as the run's total and stretched the loss axis 16-fold.
  it('counts tokens/s from peers off probation only, says what it left out, and keeps a liar\'s steps off the loss axis', async () => {
    await page.evaluate(() => {
      const t = window.dashTest;
      t.source.standingRows = [0, 1, 2].map((i) => ({ id: t.fakePeerId(i), probation: false, client: `c${i}`, site: `s${i}` }))
        .concat([{ id: t.fakePeerId(7), probation: true, client: 'c7', site: 's7' }]);
      t.source.push(t.fakeReport(7, 10_000, Date.now(), { tokensPerS: 1_024_000 }));
    });
    await page.locator('[data-kpi="tps-basis"]', { hasText: '3 peers off probation + 1 peer on probation, claiming 1.02 M more' }).waitFor({ timeout: 30_000 });
    expect(await page.locator('[data-kpi="tps"]').innerText()).toBe('6.3 K');
    const note = page.locator('murmur-chart[data-chart="train"] [data-note="clipped"]');
    await note.waitFor({ timeout: 30_000 });
    expect(await note.innerText()).toMatch(/1 peer claims steps past this axis \(up to step 10000\)/);
    expect((await xScale(page, 'train')).max).toBeLessThan(2000 * 1024);
  });

  it('exports the reports as CSV', async () => {
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export metrics (CSV)' }).click()]);
    expect(download.suggestedFilename()).toBe('murmur-default-metrics.csv');
    const path = join(OUT, 'dashboard-metrics.csv');
    await download.saveAs(path);
    const lines = readFileSync(path, 'utf8').trim().split('\r\n');
    const count = await page.evaluate(() => window.dashTest.controller.reportCount);
    expect(lines[0]).toMatch(/^time_iso,time_ms,peer,step,round,train_loss,val_loss,tokens_per_s/);
    expect(lines.length - 1).toBeGreaterThanOrEqual(count - 3); // live reports may arrive between the two reads
    expect(lines.some((l) => l.includes(',p-0000000000000001,') && l.includes(',NaN,'))).toBe(true);
  });

  it('labels every control and shows the sample slider over checkpoint steps', async () => {
    const bad = await page.evaluate(() => {
      const out: string[] = [];
      const visit = (root: ShadowRoot | Document) => {
        for (const el of root.querySelectorAll('*')) {
          if (el.shadowRoot) visit(el.shadowRoot);
          if (el instanceof HTMLButtonElement && !el.textContent?.trim() && !el.getAttribute('aria-label')) out.push(el.outerHTML);
          if (el instanceof HTMLInputElement && !(el.labels?.length || el.getAttribute('aria-label'))) out.push(el.outerHTML);
        }
      };
      visit(document);
      return out;
    });
    expect(bad).toEqual([]);
    const slider = page.getByRole('slider', { name: /Checkpoint at step/ });
    await page.locator('murmur-samples pre').filter({ hasText: 'step 500' }).waitFor();
    await slider.focus();
    await page.keyboard.press('Home');
    await page.locator('murmur-samples pre').filter({ hasText: 'step 100' }).waitFor();
    expect(await page.locator('murmur-samples [data-sample-step]').innerText()).toBe('100');
    expect(await page.locator('murmur-checkpoints a[data-download="checkpoint"]').count()).toBe(3);
    // A loss the coordinator did not measure is not shown as one: its claim is only in the title.
    expect(await page.locator('murmur-checkpoints [data-checkpoint="c-500"] [data-loss]').innerText()).toBe('2.500');
    const claimed = page.locator('murmur-checkpoints [data-checkpoint="c-300"] [data-loss]');
    expect(await claimed.innerText()).toBe('not measured');
    expect(await claimed.locator('span').getAttribute('title')).toBe('claimed 0.020 by its peer; not measured by the coordinator');
  });

  it('shows every peer-supplied string as text, never as markup', async () => {
    const xss = '<img src=x onerror="window.pwned=1">';
    await page.evaluate((xss) => {
      const t = window.dashTest;
      // Peer 9 is not in the live feed, whose reports would replace the adapter.
      t.source.push(t.fakeReport(9, t.step(), Date.now(), { adapter: xss }));
      t.source.pushEvent(t.fakeEvent('peer-joined', Date.now(), t.fakePeerId(1), { replica: 1, resumed: true, client: { kind: 'browser', adapter: xss } }));
      t.source.pushEvent(t.fakeEvent('peer-offender', Date.now() + 1, t.fakePeerId(0), { accused: t.fakePeerId(1), reason: `non-finite: ${xss}` }));
      t.source.pushEvent(t.fakeEvent('peer-left', Date.now() + 2, t.fakePeerId(2), { reason: xss }));
    }, xss);
    await page.locator('murmur-peer-grid [data-peer="p-0000000000000009"]', { hasText: xss }).waitFor();
    await page.locator('murmur-events [data-event="peer-left"]').first().waitFor();
    expect(await page.locator('murmur-events [data-event="peer-left"]').first().innerText()).toContain(xss);
    expect(await page.locator('murmur-events [data-event="peer-offender"]').first().innerText()).toContain(xss);
    const found = await page.evaluate(() => {
      // Every element in the page and in every shadow root, however deep.
      const imgs: string[] = [];
      const walk = (root: Document | ShadowRoot) => {
        for (const el of root.querySelectorAll('*')) {
          if (el.tagName === 'IMG' || el.hasAttribute('onerror')) imgs.push(el.outerHTML);
          if (el.shadowRoot) walk(el.shadowRoot);
        }
      };
      walk(document);
      return { imgs, pwned: (window as unknown as { pwned?: number }).pwned ?? null };
    });
    expect(found).toEqual({ imgs: [], pwned: null });
  });

  it('lists at most GONE_PEER_CAP peers that left, and says how many more it forgot', async () => {
    const churned = GONE_PEER_CAP + 25;
    await page.evaluate((n) => {
      const t = window.dashTest;
      const now = Date.now();
      for (let i = 0; i < n; i++) {
        const id = t.fakePeerId(0x10000 + i);
        t.source.pushEvent(t.fakeEvent('peer-joined', now + i / 1000, id, { replica: 0, resumed: false, client: null }));
        t.source.pushEvent(t.fakeEvent('peer-left', now + i / 1000, id, { reason: 'disconnected' }));
      }
    }, churned);
    const caption = page.locator('murmur-peer-grid #grid-caption');
    await expect.poll(() => caption.innerText(), { timeout: 10_000 }).toMatch(/, and \d+ more that left or went stale earlier, no longer listed\./);
    const forgotten = await page.evaluate(() => window.dashTest.controller.forgottenPeers);
    expect(forgotten).toBeGreaterThanOrEqual(25);
    expect(await caption.innerText()).toContain(`, and ${forgotten} more that left or went stale earlier`);
    const rows = Number(await page.locator('murmur-peer-grid [role="table"]').getAttribute('aria-rowcount')) - 1;
    expect(rows).toBeLessThanOrEqual(GONE_PEER_CAP + 5); // the gone ones kept, and the live (0-2, the liar 7, 9)
    expect(await page.locator('murmur-peer-grid [data-peer="p-0000000000000000"]').count()).toBe(1);
  });

  it('keeps its layout under long unbroken peer-supplied strings: nothing is wider than its box', async () => {
    // The longest each schema allows, with no place to break a line: an adapter name (200), a
    // link error (300), an offender reason of an unknown code (300), a checkpoint's failure (500);
    // and the largest numbers: a step of 2^53 - 1, a loss of 999,999.999, 10^12 tokens/s.
    const long = (c: string, n: number) => c.repeat(n);
    await page.evaluate(({ adapter, linkError, reason, failed }) => {
      const t = window.dashTest;
      const now = Date.now();
      // Peer 11 reports link failures and trains alone: its reason raises the connectivity alert.
      for (let k = 0; k < 6; k++) t.source.push(t.fakeReport(11, Number.MAX_SAFE_INTEGER, now + k, { adapter, partner: null, linkFailures: 1, linkError, trainLoss: 999_999.999, tokensPerS: 1e12 }));
      t.source.pushEvent(t.fakeEvent('peer-offender', now + 10, t.fakePeerId(0), { accused: t.fakePeerId(11), reason, paired: true }));
      t.source.pushEvent(t.fakeEvent('peer-offender', now + 11, t.fakePeerId(1), { accused: t.fakePeerId(11), reason: `${reason}2`, paired: true }));
      // A checkpoint whose model writes one long run of a byte (an early or a poisoned model does),
      // saved before the failure below, which so stays an alert.
      t.source.sample = async (c) => ({ checkpointId: c.id, step: c.step, prompt: 'Call me', text: 'e'.repeat(400) });
      const ck = { ...t.source.checkpointRows.at(-1)!, id: 'c-900', step: 900, round: 18, createdAt: now + 9 };
      t.source.checkpointRows.push(ck);
      t.source.pushEvent(t.fakeEvent('checkpoint-saved', now + 9, ck.peerId, { id: ck.id, step: ck.step, valLoss: ck.valLoss, bytes: ck.bytes }));
      t.source.pushEvent(t.fakeEvent('checkpoint-failed', now + 12, t.fakePeerId(11), { request: 'r-1', reason: failed }));
    }, { adapter: long('W', 200), linkError: long('X', 300), reason: long('Y', 299), failed: long('Z', 500) });
    const slider = page.getByRole('slider', { name: /Checkpoint at step/ });
    await expect.poll(() => slider.getAttribute('max')).toBe('3');
    await slider.focus();
    await page.keyboard.press('End');
    await page.locator('murmur-samples pre').filter({ hasText: 'eeee' }).waitFor();
    await page.locator('murmur-alerts [data-alert="connectivity"]').waitFor();
    await page.locator('murmur-alerts [data-alert="offender"]', { hasText: 'p-000000000000000b' }).waitFor();
    await page.locator('murmur-alerts [data-alert="checkpoint"]').waitFor();
    // Peer 11 claims the most tokens/s: the grid's first row, in view.
    await page.locator('murmur-peer-grid [data-peer="p-000000000000000b"]').waitFor();
    const wide = await page.evaluate(() => {
      const out: string[] = [];
      const walk = (root: Document | ShadowRoot) => {
        for (const el of root.querySelectorAll<HTMLElement>('*')) {
          // A box whose content spills out of it sideways, where nothing scrolls or clips it.
          const style = getComputedStyle(el);
          if (style.display !== 'inline' && style.overflowX === 'visible' && el.scrollWidth > el.clientWidth + 1) {
            out.push(`${el.tagName.toLowerCase()}${el.className ? `.${el.className}` : ''}${el.dataset.alert ? `[${el.dataset.alert}]` : ''}`);
          }
          if (el.shadowRoot) walk(el.shadowRoot);
        }
      };
      walk(document);
      return { out, pageWider: document.documentElement.scrollWidth > document.documentElement.clientWidth };
    });
    expect(wide).toEqual({ out: [], pageWider: false });
  });

  it('saw no uncaught page errors', () => {
    expect(pageErrors(page).map((e) => e.message)).toEqual([]);
  });
});
