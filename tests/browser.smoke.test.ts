// Proves the browser harness: headless Chromium runs WebGPU inside a module Web Worker (where
// the trainer lives), comlink calls and transferred buffers cross to it, and the page's main
// thread (where the WebRTC mesh lives) has RTCPeerConnection while the worker does not.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { pageErrors, startBrowser, type BrowserHarness } from './support/browser.ts';
import { Rng } from '../src/model/rng.ts';

const SMOKE = '/tests/browser/pages/smoke.html';
let h: BrowserHarness;
let page: Page;

beforeAll(async () => {
  h = await startBrowser();
  page = await h.openPage(SMOKE);
  await page.waitForFunction(() => window.smoke !== undefined, null, { timeout: 30_000 });
});
afterAll(() => h?.close());

describe('browser harness (Chromium + Vite)', () => {
  it('runs a WebGPU compute kernel inside the worker, equal to TypeScript', async () => {
    const rng = new Rng(99, 1);
    const n = 777;
    const a = Array.from({ length: n }, () => Math.fround(rng.normal() * 10));
    const b = Array.from({ length: n }, () => Math.fround(rng.normal()));
    const run = await page.evaluate(async ([a, b]) => {
      try {
        const r = await window.smoke.remote.vectorAdd(new Float32Array(a), new Float32Array(b));
        return { ok: true as const, info: r.info, out: Array.from(r.out) };
      } catch (e) {
        return { ok: false as const, error: `${(e as Error).name}: ${(e as Error).message}` };
      }
    }, [a, b]);
    if (!run.ok) {
      throw new Error(`WebGPU is unavailable in the browser worker: ${run.error}\n` +
        'Chromium needs --enable-unsafe-webgpu --enable-features=Vulkan and a Vulkan driver ' +
        '(Debian: apt-get install chromium libvulkan1; SwiftShader ships with chromium).');
    }
    console.log(`[browser gpu] vendor=${run.info.vendor} architecture=${run.info.architecture} ` +
      `description="${run.info.description}" software=${run.info.isSoftware}`);
    const want = a.map((x, i) => Math.fround(x + b[i]));
    expect(run.out).toEqual(want);
  });

  it('round-trips a comlink call with a transferred ArrayBuffer', async () => {
    const r = await page.evaluate(() => window.smoke.roundTrip([1, 2, 3.5, -4], 2, 'hello'));
    expect(r).toEqual({ detachedAfterSend: true, tag: 'hello:worker', received: 4, result: [2, 4, 7, -8] });
  });

  it('has RTCPeerConnection on the main thread but not in the worker', async () => {
    const main = await page.evaluate(() => window.smoke.mainThreadRtc());
    expect(main).toEqual({ hasRTCPeerConnection: true, offerHasDataChannel: true });
    const inWorker = await page.evaluate(() => window.smoke.remote.globals());
    expect(inWorker).toEqual({ isWorker: true, hasRTCPeerConnection: false, hasGpu: true, isSecureContext: true });
  });

  it('says what to install when Chromium is missing', async () => {
    await expect(startBrowser({ executablePath: '/nonexistent/chromium' }))
      .rejects.toThrow(/Chromium not found at \/nonexistent\/chromium: .*apt-get install chromium/);
  });

  it('saw no uncaught page errors', () => {
    expect(pageErrors(page).map((e) => e.message)).toEqual([]);
  });
});
