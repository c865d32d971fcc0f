// The dashboard as deployed: the Vite build served by the real coordinator, three volunteers
// connected over the real WebSocket protocol (scripted: they report synthetic training figures
// and serve a state for checkpoints; the GPU trainer is tested elsewhere), and headless
// Chromium. The charts and the peer grid show their live data, the run events panel shows the
// volunteers joining, an offender report (raising its alert) and the checkpoint saved, the
// x-axis switch and log-x work, the CSV export holds the coordinator's reports, and the
// checkpoint and GPT-2 export downloads are valid safetensors files.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, ROOT, clickSettled, pageErrors, startBuiltApp } from './support/browser.ts';
import { earnTrustTogether, until, webSocketFrom, type TestServer } from './support/coordinator.ts';
import { PROBATION_EXCHANGES } from '../server/peers.ts';
import { SignalingClient } from '../src/sync/signaling-client.ts';
import { buildLayout } from '../src/model/layout.ts';
import { readSafetensors } from '../src/model/safetensors.ts';
import type { RunInfo } from '../src/protocol/messages.ts';

const OUT = join(ROOT, 'tests', 'output');
mkdirSync(OUT, { recursive: true });

let server: TestServer;
let browser: Browser;
let page: Page;
const volunteers: SignalingClient[] = [];
let timer: ReturnType<typeof setInterval> | null = null;
/** Holds the scripted reports while a test compares chart ranges against the data. */
let hold = false;
/** The step the scripted volunteers last reported: the state they serve is of its round. */
let reported = 0;

/**
 * One scripted volunteer: joins (from 127.0.0.(i + 1): each a client of its own, as two
 * volunteers must be to take each other off probation), reports every 400 ms, answers state
 * requests with φ.
 */
async function volunteer(i: number): Promise<SignalingClient> {
  const c = new SignalingClient({ url: server.url, run: 'default', WebSocket: webSocketFrom(`127.0.0.${i + 1}`), client: { kind: 'node', adapter: `scripted GPU ${i}` } });
  c.start();
  await until(() => c.connected, 10_000, `volunteer ${i} accepted`);
  const run = c.welcome!.run as RunInfo;
  const total = buildLayout(run.model).total;
  // As an honest peer does, it serves the state of its last outer step: a state far behind the
  // run's agreed step is stored at that step instead (holdCounters).
  c.setStateProvider(() => {
    const round = Math.floor(reported / run.train.H), step = round * run.train.H;
    return {
      meta: { runId: run.id, step, round, floats: total, valLoss: 2.5, tokens: step * run.train.batch * run.train.seqLen },
      phi: new Float32Array(total).fill(0.01 * (i + 1)),
      momentum: new Float32Array(total),
    };
  });
  return c;
}

beforeAll(async () => {
  // Scripted volunteers have no inner loop for the pool to learn a cadence from: the plain rule.
  server = await startBuiltApp({ hub: { pairPrediction: false } });
  for (let i = 0; i < 3; i++) volunteers.push(await volunteer(i));
  // Only peers off probation get checkpoint duty: two of them earn it with each other.
  await earnTrustTogether(volunteers[0]!, volunteers[1]!, { exchanges: PROBATION_EXCHANGES, H: 50 });
  let step = 0;
  const send = () => {
    if (hold) return;
    step += 10;
    reported = step;
    volunteers.forEach((v, i) => {
      const partner = volunteers[(i + 1) % 3]!.peerId;
      v.report({
        time: Date.now(), step, round: Math.floor(step / 50), trainLoss: 1.6 + 0.1 * i + 4 * Math.exp(-step / 400),
        valLoss: step % 50 === 0 ? 1.8 + 0.1 * i + 4 * Math.exp(-step / 400) : null, tokensPerS: 1500 + 250 * i,
        bytesIn: 20_000, bytesOut: 20_000, partner, partnerDist: 0.3 + 0.05 * i, adapter: `scripted GPU ${i}`,
      });
    });
  };
  for (let k = 0; k < 10; k++) send();
  timer = setInterval(send, 400);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  const context = await browser.newContext({ acceptDownloads: true });
  page = await context.newPage();
  page.on('pageerror', (e) => console.error(`[browser pageerror] ${e.message}`));
  await page.setViewportSize({ width: 1400, height: 1000 });
  await page.goto(`${server.url}/dashboard`);
});

afterAll(async () => {
  if (timer) clearInterval(timer);
  for (const v of volunteers) v.stop();
  await browser?.close();
  await server?.close();
});

const dash = <T>(p: Page, fn: string) => p.evaluate(fn) as Promise<T>;

describe('dashboard on the coordinator', () => {
  it('serves the built dashboard and embed.js', async () => {
    expect(await page.title()).toBe('Murmur research dashboard');
    const embed = await fetch(`${server.url}/embed.js`);
    expect(embed.status).toBe(200);
    expect(await embed.text()).toMatch(/murmur-volunteer/);
    // Static assets from public/ ship with the build.
    const icon = await fetch(`${server.url}/favicon.svg`);
    expect(icon.status).toBe(200);
    expect(icon.headers.get('content-type')).toMatch(/^image\/svg\+xml/);
  });

  it('shows the three volunteers live in the charts and the peer grid', async () => {
    await page.locator('murmur-peer-grid [data-peer]').nth(2).waitFor({ timeout: 30_000 });
    expect(await page.locator('murmur-peer-grid [data-peer]').count()).toBe(3);
    expect(await page.locator('murmur-peer-grid .scroller').innerText()).toMatch(/scripted GPU 2/);
    for (const chart of ['train', 'val', 'throughput', 'spread']) await page.locator(`murmur-chart[data-chart="${chart}"] canvas`).first().waitFor();
    const r0 = await dash<number>(page, 'window.murmurDashboard.reportCount');
    await page.waitForFunction((n) => (window as unknown as { murmurDashboard: { reportCount: number } }).murmurDashboard.reportCount > n + 6, r0, { timeout: 15_000 });
    expect(await page.locator('[data-kpi="live"]').innerText()).toBe('3');
    const series = await page.evaluate(() => {
      const el = document.querySelector('murmur-dashboard')!.shadowRoot!.querySelector('murmur-chart[data-chart="train"]') as unknown as { plot: { series: { label: string }[] } };
      return el.plot.series.map((s) => s.label);
    });
    expect(series.filter((l) => /^p-[0-9a-f]{16}$/.test(l))).toHaveLength(3);
    expect(series).toContain('median');
  });

  it('lists the volunteers joining, and an offender report shows up in the events and raises its alert', async () => {
    // Joined before the page opened: these come from GET /events.
    for (const v of volunteers) {
      await page.locator('murmur-events [data-event="peer-joined"]').filter({ hasText: `peer ${v.peerId} joined` }).waitFor({ timeout: 15_000 });
    }
    // Live, over the real protocol: volunteer 0 reports volunteer 2's payload as non-finite. A
    // report is taken only about one of the reporter's recent pool partners: pair them first.
    const [v0, , v2] = volunteers as [SignalingClient, SignalingClient, SignalingClient];
    const paired = (c: SignalingClient) => new Promise<string | null>((resolve) => {
      const off = c.on('paired', (e) => { off(); resolve(e.partner); });
    });
    const met = Promise.all([paired(v0), paired(v2)]);
    v0.ready(1000, 10_000);
    v2.ready(1000, 10_000);
    expect(await met).toEqual([v2.peerId, v0.peerId]);
    v0.reportOffender(v2.peerId!, 'non-finite: Δ[7] = NaN');
    const row = page.locator('murmur-events [data-event="peer-offender"]');
    await row.waitFor({ timeout: 15_000 });
    expect(await row.innerText()).toContain(`peer ${v0.peerId} reported ${v2.peerId} for a bad update: non-finite Δ`);
    const alert = page.locator('murmur-alerts [data-alert="offender"]');
    await alert.waitFor({ timeout: 10_000 });
    expect(await alert.innerText()).toContain(`${v2.peerId} sent ${v0.peerId} a bad update: non-finite Δ (Δ[7] = NaN)`);
  });

  it('switches the x-axis and log-x', async () => {
    // The chart's x range against the peers' newest step, read together (reports keep coming).
    const xOverStep = () => page.evaluate(() => {
      const w = window as unknown as { murmurDashboard: { peerRows: { step: number }[] } };
      const el = document.querySelector('murmur-dashboard')!.shadowRoot!.querySelector('murmur-chart[data-chart="train"]') as unknown as { plot: { scales: { x: { max: number; distr: number } } } };
      const step = Math.max(...w.murmurDashboard.peerRows.map((p) => p.step));
      return { ratio: el.plot.scales.x.max / step, distr: el.plot.scales.x.distr };
    });
    hold = true;
    await page.waitForTimeout(2500); // the last reports arrive and the views refresh
    const tps = await dash<number>(page, 'window.murmurDashboard.run.value.tokensPerStep');
    const tokens = await xOverStep();
    expect(tokens.ratio).toBeGreaterThan(tps * 0.95); // the last bin's centre is within a bin of the end
    expect(tokens.ratio).toBeLessThanOrEqual(tps * 1.0001);
    await page.getByRole('radio', { name: 'Steps' }).check();
    const steps = await xOverStep();
    expect(steps.ratio).toBeGreaterThan(0.95);
    expect(steps.ratio).toBeLessThanOrEqual(1.0001);
    await page.getByRole('checkbox', { name: 'Log x' }).check();
    expect((await xOverStep()).distr).toBe(3);
    await page.getByRole('checkbox', { name: 'Log x' }).uncheck();
    await page.getByRole('radio', { name: 'Tokens' }).check();
    hold = false;
  });

  it('exports the coordinator\'s reports as CSV', async () => {
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export metrics (CSV)' }).click()]);
    const path = join(OUT, 'e2e-metrics.csv');
    await download.saveAs(path);
    const rows = readFileSync(path, 'utf8').trim().split('\r\n').slice(1);
    const stored = (await (await fetch(`${server.url}/api/runs/default/metrics?maxPoints=20000`)).json()) as { total: number };
    // Reports keep arriving: the page holds what was stored when it last heard.
    expect(rows.length).toBeGreaterThanOrEqual(30);
    expect(rows.length).toBeLessThanOrEqual(stored.total);
    const peers = new Set(rows.map((r) => r.split(',')[2]));
    expect(peers).toEqual(new Set(volunteers.map((v) => v.peerId)));
  });

  it('lists a new checkpoint and downloads it and its GPT-2 export as valid safetensors', async () => {
    const res = await fetch(`${server.url}/api/runs/default/checkpoints`, { method: 'POST', headers: server.admin });
    expect(res.status).toBe(202);
    const link = page.locator('murmur-checkpoints a[data-download="checkpoint"]').first();
    await link.waitFor({ timeout: 60_000 });
    const [ck] = await Promise.all([page.waitForEvent('download'), link.click()]);
    const file = readSafetensors(new Uint8Array(readFileSync(await ck.path())));
    expect(file.metadata.format).toBe('murmur-checkpoint');
    expect(file.names).toContain('phi.transformer.wte.weight');
    const [hf] = await Promise.all([page.waitForEvent('download'), page.locator('murmur-checkpoints a[data-download="gpt2"]').first().click()]);
    const model = readSafetensors(new Uint8Array(readFileSync(await hf.path())));
    expect(model.metadata.format).toBe('pt');
    expect(model.names).toContain('transformer.h.0.attn.c_attn.weight');
    await page.locator('murmur-events [data-event="checkpoint-saved"]').filter({ hasText: /checkpoint saved at step [1-9]/ }).waitFor({ timeout: 10_000 });
    await page.screenshot({ path: join(OUT, 'dashboard-e2e.png'), fullPage: true });
  });

  it('samples text from the checkpoint in the browser', async () => {
    const pre = page.locator('murmur-samples pre');
    await page.waitForFunction(() => {
      const t = document.querySelector('murmur-dashboard')!.shadowRoot!.querySelector('murmur-samples')!.shadowRoot!.querySelector('pre')!.textContent!;
      return t.startsWith('The whale ') && t.length > 'The whale '.length + 20;
    }, null, { timeout: 90_000 });
    expect(await pre.innerText()).toMatch(/^The whale /);
  });

  it('saw no uncaught page errors', () => {
    expect(pageErrors(page).map((e) => e.message)).toEqual([]);
  });
});

describe('volunteer page on the coordinator', () => {
  it('describes the run from the coordinator and opens no connection before Start', async () => {
    const p = await browser.newPage();
    const sockets: string[] = [];
    p.on('websocket', (ws) => sockets.push(ws.url()));
    await p.setViewportSize({ width: 1000, height: 1400 });
    await p.goto(`${server.url}/`);
    await p.locator('murmur-volunteer-panel [data-gpu]').waitFor({ timeout: 30_000 });
    const text = await p.locator('murmur-volunteer-panel section').first().innerText();
    expect(text).toMatch(/tiny on Moby Dick/);
    expect(text).toMatch(/Moby-Dick by Herman Melville/);
    // tiny preset: every 50 steps, phi and delta in f32
    expect(text).toMatch(/Every 50 training steps/);
    expect(await p.locator('murmur-volunteer-panel [data-gpu="ok"]').innerText()).toMatch(/Found:/);
    await clickSettled(p, 'consent');
    expect(await p.getByRole('button', { name: 'Start training' }).isEnabled()).toBe(true);
    await p.waitForTimeout(500);
    expect(sockets).toEqual([]);
    await p.screenshot({ path: join(OUT, 'volunteer-on-coordinator.png'), fullPage: true });
    await p.close();
  });
});
