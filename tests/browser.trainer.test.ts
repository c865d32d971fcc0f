// The training worker in headless Chromium: src/worker/worker.ts trains 5 steps of micro on
// WebGPU through comlink, then takes an outer step through the mesh's worker bridge
// (src/sync/worker-bridge.ts), payloads crossing as transferred buffers.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { pageErrors, startBrowser, type BrowserHarness } from './support/browser.ts';
import { buildLayout } from '../src/model/layout.ts';
import { preset } from '../src/model/config.ts';
import { DEFAULT_TUNING } from '../src/gpu/kernels.ts';

let h: BrowserHarness;
let page: Page;

beforeAll(async () => {
  h = await startBrowser();
  page = await h.openPage('/tests/browser/pages/trainer.html');
  await page.waitForFunction(() => window.trainerPage !== undefined, null, { timeout: 60_000 });
});
afterAll(() => h?.close());

describe('training worker in Chromium', () => {
  it('trains 5 steps of micro through comlink', async () => {
    const r = await page.evaluate(async () => {
      try { return { ok: true as const, ...(await window.trainerPage.run(5)) }; } catch (e) { return { ok: false as const, error: `${(e as Error).name}: ${(e as Error).message}` }; }
    });
    if (!r.ok) throw new Error(`the trainer worker failed: ${r.error}`);
    const layout = buildLayout(preset('micro'));
    console.log(`[browser trainer] ${r.info.adapter}; ${r.info.dispatchesPerStep} dispatches/step; losses ${r.losses.map((l) => l.toFixed(3)).join(' ')}`);
    expect(r.info.params).toBe(layout.params);
    expect(r.losses).toHaveLength(5);
    for (const l of r.losses) expect(Number.isFinite(l)).toBe(true);
    expect(Math.abs(r.losses[0] - Math.log(256))).toBeLessThan(0.1);
    expect(r.losses[4]).toBeLessThan(r.losses[0]);
    expect(r.payloadLengths).toEqual([layout.total, layout.total]);
    expect(r.stepAfter).toBe(5);
    expect(r.partnerDetached).toBe(true); // the partner's φ moved into the worker, not copied
    expect(r.outerStep).toBe(5);
    expect(r.phiMoved).toBe(true);
    expect(pageErrors(page)).toEqual([]);
  });

  it('a model too large for the adapter arrives as a typed LimitsTooSmallError', async () => {
    const err = await page.evaluate(() => window.trainerPage.tooLarge());
    expect(err).not.toBeNull();
    expect(err!.name).toBe('LimitsTooSmallError');
    expect(err!.code).toBe('limits-too-small');
    expect(err!.limit).toBe('maxStorageBufferBindingSize');
    expect(err!.needed).toBeGreaterThan(err!.available!);
    expect(err!.message).toMatch(/maxStorageBufferBindingSize/);
  });

  it('caches kernel shapes in IndexedDB', async () => {
    const r = await page.evaluate(() => window.trainerPage.idbRoundTrip());
    expect(r.got).toEqual(DEFAULT_TUNING);
    expect(r.missing).toBeUndefined();
  });
});
