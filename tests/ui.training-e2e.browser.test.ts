// The volunteer page and the widget doing real work: the Vite build served by the coordinator,
// two volunteer tabs (separate browser contexts) training the micro preset in their Web Workers
// on WebGPU (SwiftShader here) and pairing over WebRTC for NoLoCo outer steps; then the widget
// on a page of another origin training through the coordinator's embed.js and frame.
// Checks consent -> training -> pause -> resume -> stop with the live figures changing, no
// worker or connection before Start, the intensity lowering the measured GPU duty cycle, a third
// tab joining later from a live tab's state (and the coordinator checkpointing browser tabs off
// probation),
// and the dashboard showing the volunteers.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { ROOT, calmPage as calmPageIn, clickSettled, createRun, launchWebRtcBrowser, startAll, startBuiltApp, startThroughConsent } from './support/browser.ts';
import type { TestServer } from './support/coordinator.ts';
import { decodeStateFrame } from '../src/protocol/state-frame.ts';

const OUT = join(ROOT, 'tests', 'output');
mkdirSync(OUT, { recursive: true });
const RUN = 'micro-e2e';

let server: TestServer;
let browser: Browser;
const errors: string[] = [];
const pages: Page[] = [];

type Figures = { step: number; rounds: number; loss: number | null; exchangesAccepted: number; partner: string | null; bytesUp: number; duty: number; tokensTrained: number; donatedMs: number; gpuResets: number };
const state = (p: Page) => p.evaluate(() => {
  const c = (window as unknown as { murmurVolunteer: { phase: string; error: string | null; figures: Figures } }).murmurVolunteer;
  return { phase: c.phase, error: c.error, f: { ...c.figures } };
});
async function until(p: Page, what: string, ok: (s: Awaited<ReturnType<typeof state>>) => boolean, ms = 240_000) {
  const end = Date.now() + ms;
  let s = await state(p);
  while (!ok(s)) {
    if (s.phase === 'error') throw new Error(`volunteer failed while waiting for ${what}: ${s.error}`);
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; last state ${JSON.stringify(s)}; the run so far: ${await runStory()}`);
    await p.waitForTimeout(500);
    s = await state(p);
  }
  return s;
}

/**
 * What the coordinator saw of the run, for a timeout's message: each peer's reports, rounds,
 * paired rounds and probe rejections, every report of one peer by another, and each open tab's
 * state (a CI run once timed out with one tab solo for 923 rounds and nothing said of the other).
 */
async function runStory(): Promise<string> {
  const peers = server.c.db.prepare(`SELECT peer_id AS peer, COUNT(*) AS reports, MIN(t) AS first, MAX(t) AS last, MAX(round) AS round,
    SUM(partner IS NOT NULL) AS paired, SUM(COALESCE(probe_rejected, 0)) AS probeRejected FROM reports WHERE run_id = ? GROUP BY peer_id`).all(RUN);
  const offences = server.c.db.prepare("SELECT t, peer_id AS reporter, data_json AS data FROM events WHERE run_id = ? AND kind = 'peer-offender' ORDER BY id").all(RUN);
  const tabs = await Promise.all(pages.filter((p) => !p.isClosed()).map((p) => state(p).catch((err: unknown) => String(err))));
  return JSON.stringify({ now: Date.now(), peers, offences, tabs });
}

/** Inner steps per outer step of the test run. */
const H = 4;
const peerIdOf = (p: Page) => p.evaluate(() => (window as unknown as { murmurVolunteer: { peerId: string } }).murmurVolunteer.peerId);
/** The coordinator's stored reports of one peer, oldest first. */
const reportsOf = (peer: string) => server.c.db.prepare('SELECT step, round FROM reports WHERE run_id = ? AND peer_id = ? ORDER BY t, seq').all(RUN, peer) as { step: number; round: number }[];
type Ckpt = { id: string; step: number; round: number; peerId: string };
/** Asks the coordinator for a checkpoint now; it must come from `peer` (the only live one). */
async function checkpointFrom(peer: string): Promise<Ckpt> {
  const before = new Set((await listCheckpoints()).map((c) => c.id));
  const res = await fetch(`${server.url}/api/runs/${RUN}/checkpoints`, { method: 'POST', headers: server.admin });
  expect(res.status).toBe(202);
  expect(((await res.json()) as { peerId: string }).peerId).toBe(peer);
  let got: Ckpt | undefined;
  await expect.poll(async () => (got = (await listCheckpoints()).find((c) => !before.has(c.id))), { timeout: 30_000 }).toBeDefined();
  expect(got!.peerId).toBe(peer);
  return got!;
}
async function listCheckpoints(): Promise<Ckpt[]> {
  return ((await (await fetch(`${server.url}/api/runs/${RUN}/checkpoints`)).json()) as { checkpoints: Ckpt[] }).checkpoints;
}
async function stateOf(id: string) {
  const res = await fetch(`${server.url}/api/runs/${RUN}/checkpoints/${id}/state`);
  expect(res.status).toBe(200);
  return decodeStateFrame(new Uint8Array(await res.arrayBuffer()));
}

/** A calm page (tests/support/browser.ts), closed with the others at the end. */
async function calmPage(): Promise<Page> {
  const p = await calmPageIn(browser, errors);
  pages.push(p);
  return p;
}

beforeAll(async () => {
  server = await startBuiltApp();
  // micro on a software GPU: small batches and a short inner loop, so outer steps come quickly.
  await createRun(server, { id: RUN, name: 'micro end-to-end', dataset: 'moby-dick', preset: 'micro', train: { H, batch: 2 } });
  browser = await launchWebRtcBrowser();
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
});

describe('volunteers training for real', () => {
  it('starts nothing before consent and Start', async () => {
    for (let i = 0; i < 2; i++) {
      const p = await calmPage();
      const sockets: string[] = [];
      p.on('websocket', (ws) => sockets.push(ws.url()));
      await p.setViewportSize({ width: 1000, height: 1500 });
      await p.goto(`${server.url}/?run=${RUN}`);
      await clickSettled(p, 'consent', 60_000);
      await p.waitForTimeout(300);
      expect(p.workers()).toHaveLength(0);
      expect(sockets).toEqual([]);
      expect((await state(p)).phase).toBe('idle');
    }
  });

  it('trains in the worker and pairs the two volunteers for outer steps', async () => {
    await startAll(pages);
    const [a, b] = pages as [Page, Page];
    const s1 = await until(a, 'two outer steps', (s) => s.f.rounds >= 2);
    expect(a.workers().length).toBeGreaterThanOrEqual(1);
    expect(s1.f.loss).toBeGreaterThan(0);
    expect(s1.f.loss).toBeLessThan(7);
    // The panel's `partner` is the last round's only (a solo round after the exchange sets it
    // back to null, and rounds can be shorter than a poll): who each tab took an update from is
    // read from its reports to the coordinator instead.
    const s2 = await until(a, 'an exchange with the other tab', (s) => s.f.exchangesAccepted >= 1, 300_000);
    await until(b, 'an exchange with the first tab', (s) => s.f.exchangesAccepted >= 1, 300_000);
    const [ida, idb] = [await peerIdOf(a), await peerIdOf(b)];
    expect(ida).toMatch(/^p-[0-9a-f]{16}$/);
    expect(idb).toMatch(/^p-[0-9a-f]{16}$/);
    const partnersIn = (peer: string) => (server.c.db.prepare('SELECT DISTINCT partner FROM reports WHERE run_id = ? AND peer_id = ? AND partner IS NOT NULL').all(RUN, peer) as { partner: string }[]).map((r) => r.partner);
    await expect.poll(() => partnersIn(ida), { timeout: 30_000 }).toEqual([idb]);
    await expect.poll(() => partnersIn(idb), { timeout: 30_000 }).toEqual([ida]);
    expect(s2.f.bytesUp).toBeGreaterThan(0);
    await until(a, 'more tokens', (s) => s.f.tokensTrained > s2.f.tokensTrained);
    expect(s2.f.tokensTrained).toBeGreaterThan(0);
    expect(await a.locator('murmur-volunteer-panel [data-figure="accepted"]').innerText()).not.toBe('0');
    await a.screenshot({ path: join(OUT, 'volunteer-real-training.png'), fullPage: true });
  });

  it('a GPU device lost in a tab\'s worker is rebuilt there, the panel says so, and training goes on', async () => {
    const b = pages[1]!;
    const w = b.workers()[0]!;
    // What a driver reset does to the worker: its GPUDevice is gone. The worker's device is
    // found through the next command encoder it makes (one per training step).
    await w.evaluate(() => {
      const proto = GPUDevice.prototype;
      const make = proto.createCommandEncoder;
      proto.createCommandEncoder = function (this: GPUDevice, ...args: Parameters<typeof make>) {
        (self as unknown as { lostDevice?: GPUDevice }).lostDevice ??= this;
        return make.apply(this, args);
      };
    });
    await expect.poll(() => w.evaluate(() => (self as unknown as { lostDevice?: GPUDevice }).lostDevice !== undefined), { timeout: 60_000 }).toBe(true);
    const before = (await state(b)).f;
    await w.evaluate(() => { (self as unknown as { lostDevice: GPUDevice }).lostDevice.destroy(); });
    await until(b, 'the worker to rebuild its GPU device', (s) => s.f.gpuResets === 1);
    // It trains on, and its counts go on from where they were (B's checkpoint later in this file
    // is labelled with the worker's step, which must be B's own report of that outer step).
    const after = await until(b, 'two more outer steps', (s) => s.f.rounds >= before.rounds + 2);
    expect(after.f.step).toBeGreaterThan(before.step);
    expect(after.f.gpuResets).toBe(1);
    expect(await b.locator('murmur-volunteer-panel [data-figure="gpu-resets"]').innerText()).toBe('1 time');
  });

  it('lowers the measured GPU duty cycle with the intensity control', async () => {
    // While the other tab trains too, so outer steps pair quickly and training time dominates.
    const b = pages[1]!;
    // GPU time spent in the worker over wall time, after the new setting has settled in.
    const duty = async () => {
      await b.waitForTimeout(3000);
      const t0 = Date.now(), d0 = (await state(b)).f;
      await b.waitForTimeout(10_000);
      const d1 = (await state(b)).f;
      return (d1.donatedMs - d0.donatedMs) / (Date.now() - t0);
    };
    const slider = b.getByRole('slider', { name: 'GPU intensity' });
    await slider.focus();
    await b.keyboard.press('End');
    const full = await duty();
    await b.keyboard.press('Home'); // 10%
    const low = await duty();
    console.log(`[duty] measured GPU duty at 100%: ${(full * 100).toFixed(0)}%, at 10%: ${(low * 100).toFixed(0)}%`);
    expect(low).toBeLessThan(full * 0.5);
  });

  it('pauses now, resumes, and stops, releasing the worker', async () => {
    const a = pages[0]!;
    await a.getByRole('button', { name: 'Pause now' }).click();
    const p1 = await until(a, 'the pause', (s) => s.phase === 'paused');
    await a.waitForTimeout(2000);
    expect((await state(a)).f.step).toBe(p1.f.step);
    await clickSettled(a, 'resume');
    await until(a, 'training again', (s) => s.f.step > p1.f.step);
    await a.getByRole('button', { name: 'Stop' }).click();
    await until(a, 'the stop', (s) => s.phase === 'stopped');
    await expect.poll(() => a.workers().length, { timeout: 10_000 }).toBe(0);
  });

  it('a tab that joins later copies the live tab\'s model over WebRTC, and the coordinator checkpoints browser tabs off probation', async () => {
    // Only B is live now (A stopped). Paused, its last outer state (φ, momentum) stays put.
    const b = pages[1]!;
    await b.getByRole('button', { name: 'Pause now' }).click();
    await until(b, 'B paused', (s) => s.phase === 'paused');
    const peerB = await peerIdOf(b);

    // The coordinator pulls a checkpoint from the only live peer: a browser tab.
    const first = await checkpointFrom(peerB);
    expect(first.step, 'a checkpoint is labelled with the step of an outer step').toBeGreaterThan(0);
    expect(first.step % H).toBe(0);
    expect(first.round).toBeGreaterThanOrEqual(2);
    // ... and that is B's own account of its outer step: its report at round R says step S.
    expect(reportsOf(peerB)).toContainEqual({ step: first.step, round: first.round });

    // C joins while B is live: it must take B's state (not the fresh init, not the checkpoint).
    const c = await calmPage();
    await c.setViewportSize({ width: 1000, height: 1500 });
    await c.goto(`${server.url}/?run=${RUN}`);
    await clickSettled(c, 'consent');
    await clickSettled(c, 'start');
    // Paused before it trains a step: its state is exactly what it loaded.
    await c.getByRole('button', { name: 'Pause now' }).click();
    const joined = await until(c, 'C joined and paused', (s) => s.phase === 'paused');
    const start = await c.evaluate(() => (window as unknown as { murmurVolunteer: { joinedFrom: unknown } }).murmurVolunteer.joinedFrom);
    expect(start).toEqual({ source: 'peer', from: peerB, step: first.step, round: first.round });
    expect(joined.f).toMatchObject({ step: first.step, rounds: first.round });
    expect(await c.locator('murmur-volunteer-panel [data-start="peer"]').innerText()).toContain(`copied the current model from volunteer ${peerB} (step ${first.step}, outer step ${first.round})`);

    // With B gone, C is the only live peer, and a new id on probation: the coordinator gives it
    // no checkpoint duty (issue 15: a fresh identity must not decide what newcomers start from).
    await b.getByRole('button', { name: 'Stop' }).click();
    await until(b, 'the stop', (s) => s.phase === 'stopped');
    // The tab shows "stopped" before the coordinator has seen its socket close; until it has, B
    // is still live and eligible, and a checkpoint request goes to B (a fresh-clone run met this).
    await expect.poll(() => server.c.hub.isLive(peerB), { timeout: 60_000, message: 'the coordinator to see B leave' }).toBe(false);
    const peerC = await peerIdOf(c);
    expect(server.c.hub.onProbation(peerC)).toBe(true);
    const refused = await fetch(`${server.url}/api/runs/${RUN}/checkpoints`, { method: 'POST', headers: server.admin });
    expect(refused.status).toBe(409);
    // B's checkpoint stays what a newcomer with no live peer starts from.
    const s1 = await stateOf(first.id);
    expect(s1.meta).toMatchObject({ step: first.step, round: first.round });

    // C trains on from there: its first report continues B's round and step.
    await clickSettled(c, 'resume');
    await expect.poll(() => reportsOf(peerC).length, { timeout: 120_000 }).toBeGreaterThan(0);
    const firstOfC = reportsOf(peerC)[0]!;
    expect(firstOfC.round).toBe(first.round);
    expect(firstOfC.step).toBeGreaterThan(first.step);
    expect(firstOfC.step).toBeLessThanOrEqual(first.step + H);
    await c.getByRole('button', { name: 'Stop' }).click();
    await until(c, 'the stop', (s) => s.phase === 'stopped');
  });

  it('shows the three volunteers on the dashboard', async () => {
    const d = await calmPage();
    await d.setViewportSize({ width: 1400, height: 1000 });
    await d.goto(`${server.url}/dashboard?run=${RUN}`);
    await d.locator('murmur-peer-grid [data-peer]').nth(2).waitFor({ timeout: 30_000 });
    expect(await d.locator('murmur-peer-grid [data-peer]').count()).toBe(3);
    await d.locator('murmur-chart[data-chart="train"] canvas').first().waitFor();
    await d.screenshot({ path: join(OUT, 'dashboard-real-training.png'), fullPage: true });
  });
});

describe('the widget training for real', () => {
  let host: Server;
  afterAll(() => new Promise((r) => host?.close(r)));

  it('trains through embed.js on a page of another origin after the click', async () => {
    host = createServer((_q, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Host</title></head><body><h1>Another site</h1>
        <script src="${server.url}/embed.js" data-run="${RUN}" data-max-intensity="0.8"></script></body></html>`);
    });
    await new Promise<void>((r) => host.listen(0, '127.0.0.1', r));
    // The run must list the embedding site: frame-ancestors allows only those (none by default).
    const site = `http://127.0.0.1:${(host.address() as AddressInfo).port}`;
    const allow = await fetch(`${server.url}/api/runs/${RUN}`, {
      method: 'PATCH', headers: { ...server.admin, 'content-type': 'application/json' }, body: JSON.stringify({ embedSites: [site] }),
    });
    expect(allow.status).toBe(200);
    const p = await calmPage();
    const murmurRequests: string[] = [];
    p.on('request', (r) => { if (r.url().startsWith(server.url)) murmurRequests.push(new URL(r.url()).pathname); });
    await p.goto(`http://127.0.0.1:${(host.address() as AddressInfo).port}/`);
    await p.locator('murmur-volunteer [part="consent-button"]').waitFor();
    await p.waitForTimeout(500);
    expect(murmurRequests).toEqual(['/embed.js']);
    await p.locator('murmur-volunteer [part="consent-button"]').click();
    // The host's button only opens the frame; consent is a click on the frame's own button,
    // confirmed with Allow in the consent window it opens.
    const frameStart = p.frameLocator('murmur-volunteer iframe').locator('#murmur-start');
    await frameStart.waitFor({ state: 'visible', timeout: 60_000 });
    await expect.poll(() => frameStart.isEnabled(), { timeout: 60_000 }).toBe(true);
    await startThroughConsent(frameStart);
    // "Training: N tokens/s, ..." with N > 0: steps have run in the frame's worker.
    await p.waitForFunction(() => /Training: [1-9]/.test(document.querySelector('murmur-volunteer')!.shadowRoot!.querySelector('[part=status]')!.textContent!), null, { timeout: 240_000 });
    expect(murmurRequests).toContain('/frame.html');
    // The training worker belongs to the Murmur frame (its origin), not to the host page.
    expect(p.workers().length).toBeGreaterThanOrEqual(1);
    for (const w of p.workers()) expect(w.url().startsWith(`${server.url}/`)).toBe(true);
    const frame = p.frames().find((f) => f.url().startsWith(`${server.url}/frame.html`))!;
    expect(frame.childFrames()).toHaveLength(0);
    await p.screenshot({ path: join(OUT, 'widget-real-training.png') });
    await p.locator('murmur-volunteer [part="stop-button"]').click();
    await p.waitForFunction(() => /Stopped/.test(document.querySelector('murmur-volunteer')!.shadowRoot!.querySelector('[part=status]')!.textContent!), null, { timeout: 60_000 });
  });

  it('saw no uncaught page errors', () => {
    expect(errors).toEqual([]);
  });
});
