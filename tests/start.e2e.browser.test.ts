// The main job end to end: `murmur start` (what `npm start` runs) as a child process on a fresh
// data dir, two Chromium volunteer tabs (separate contexts) training a `micro` run on WebGPU
// (SwiftShader here) and pairing over WebRTC, and the dashboard showing validation loss falling
// and pairs forming. Checked from the dashboard's DOM and cross-checked against the REST metrics;
// SIGINT at the end must stop the coordinator cleanly.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { ROOT, calmPage as calmPageIn, clickSettled, launchWebRtcBrowser, startAll } from './support/browser.ts';
import { ensureWebBuild } from '../src/commands/start.ts';

const OUT = join(ROOT, 'tests', 'output');
mkdirSync(OUT, { recursive: true });
const RUN = 'micro-start-e2e';

let dataDir: string;
let child: ChildProcess;
let stdout = '';
let stderr = '';
let exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
let base: string;
let admin: Record<string, string>;
let browser: Browser;
const errors: string[] = [];
const volunteers: Page[] = [];

/** Resolves with the first match of `re` in the child's stdout, or fails after `ms`. */
async function waitForLine(re: RegExp, ms: number): Promise<RegExpMatchArray> {
  const end = Date.now() + ms;
  for (;;) {
    const m = stdout.match(re);
    if (m) return m;
    if (child.exitCode !== null) throw new Error(`murmur start exited (${child.exitCode}) before printing ${re}.\nstdout:\n${stdout}\nstderr:\n${stderr}`);
    if (Date.now() > end) throw new Error(`murmur start did not print ${re} within ${ms} ms.\nstdout:\n${stdout}\nstderr:\n${stderr}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** A calm page (tests/support/browser.ts). */
const calmPage = (): Promise<Page> => calmPageIn(browser, errors);

beforeAll(async () => {
  // Build once here (the same stamp check `murmur start` does), so the child starts quickly.
  await ensureWebBuild((s) => console.log(s));
  dataDir = mkdtempSync(join(tmpdir(), 'murmur-start-e2e-'));
  child = spawn(process.execPath, [join(ROOT, 'bin', 'murmur.mjs'), 'start', '--data-dir', dataDir, '--port', '0', '--progress-every', '5'],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  exited = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
  child.stdout!.setEncoding('utf8').on('data', (s: string) => { stdout += s; });
  child.stderr!.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
  base = (await waitForLine(/murmur coordinator on (http:\/\/127\.0\.0\.1:\d+)/, 120_000))[1]!;
  const token = (await waitForLine(/admin token \(shown once[^)]*\): (\S+)/, 5_000))[1]!;
  admin = { authorization: `Bearer ${token}` };
  const res = await fetch(`${base}/api/runs`, {
    method: 'POST', headers: { ...admin, 'content-type': 'application/json' },
    // micro on a software GPU: small batches and a short inner loop, so outer steps come quickly.
    body: JSON.stringify({ id: RUN, name: 'micro via murmur start', dataset: 'moby-dick', preset: 'micro', train: { H: 4, batch: 2 } }),
  });
  if (res.status !== 201) throw new Error(`creating the test run failed: HTTP ${res.status} ${await res.text()}`);
  browser = await launchWebRtcBrowser();
}, 600_000);

afterAll(async () => {
  await browser?.close();
  if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

type ValView = { series: { label: string; role: string; values: (number | null)[] }[] };

describe('murmur start with two browser volunteers', () => {
  it('shows validation loss falling and pairs forming on the dashboard', async () => {
    for (let i = 0; i < 2; i++) {
      const p = await calmPage();
      await p.setViewportSize({ width: 1000, height: 1500 });
      // ?evalEvery=1: a validation loss after every outer step, so the curve has points quickly.
      await p.goto(`${base}/?run=${RUN}&evalEvery=1`);
      await clickSettled(p, 'consent', 60_000);
      const slider = p.getByRole('slider', { name: 'GPU intensity' });
      await slider.focus();
      await p.keyboard.press('End');
      volunteers.push(p);
    }
    await startAll(volunteers);
    const d = await calmPage();
    await d.setViewportSize({ width: 1400, height: 1100 });
    await d.goto(`${base}/dashboard?run=${RUN}`);

    // Bounded wait: both peers with >= 2 validation losses, the later lower than the first,
    // and at least one pairing in the graph.
    const dom = async () => ({
      val: await d.locator('murmur-chart[data-chart="val"]').evaluate((el) => {
        const v = (el as unknown as { view: ValView }).view;
        return v.series.filter((s) => s.role === 'peer').map((s) => ({ label: s.label, values: s.values.filter((x): x is number => x !== null) }));
      }),
      pairings: await d.locator('murmur-pairings').evaluate((el) => (el as unknown as { pairings: { a: string; b: string; count: number }[] }).pairings),
      pairLabel: await d.locator('murmur-pairings [aria-label]').first().getAttribute('aria-label'),
    });
    type Dom = Awaited<ReturnType<typeof dom>>;
    const falling = (s: Dom['val'][number]) => s.values.length >= 2 && Math.min(...s.values.slice(1)) < s.values[0]!;
    const done = (s: Dom) => s.val.length >= 2 && s.val.every(falling) && s.pairings.length >= 1;
    const end = Date.now() + 300_000;
    let s = await dom();
    while (!done(s)) {
      for (const v of volunteers) {
        const st = await v.evaluate(() => { const c = (window as unknown as { murmurVolunteer?: { phase: string; error: string | null } }).murmurVolunteer; return c ? { phase: c.phase, error: c.error } : null; });
        if (st?.phase === 'error') throw new Error(`a volunteer failed: ${st.error}`);
      }
      if (Date.now() > end) throw new Error(`timed out waiting for falling validation loss and a pairing on the dashboard; last ${JSON.stringify(s)}`);
      await d.waitForTimeout(2000);
      s = await dom();
    }
    console.log(`[start-e2e] dashboard val loss per peer: ${s.val.map((v) => `${v.label}: ${v.values.length} points, first ${v.values[0]!.toFixed(4)}, lowest later ${Math.min(...v.values.slice(1)).toFixed(4)}`).join(' | ')}; pairings: ${s.pairLabel}`);
    expect(s.pairLabel).toMatch(/^[1-9]\d* pairings among 2 peers/);
    await d.screenshot({ path: join(OUT, 'dashboard-murmur-start.png'), fullPage: true });

    // Cross-check with the coordinator's stored metrics.
    const r = await fetch(`${base}/api/runs/${RUN}/metrics?maxPoints=20000`);
    expect(r.status).toBe(200);
    const body = await r.json() as { downsampled: boolean; points: { peerId: string; valLoss: number | null; partner: string | null }[] };
    expect(body.downsampled).toBe(false);
    const byPeer = new Map<string, number[]>();
    for (const p of body.points) if (typeof p.valLoss === 'number') byPeer.set(p.peerId, [...(byPeer.get(p.peerId) ?? []), p.valLoss]);
    expect(byPeer.size).toBe(2);
    for (const vals of byPeer.values()) expect(Math.min(...vals.slice(1))).toBeLessThan(vals[0]!);
    console.log(`[start-e2e] REST val losses: ${[...byPeer].map(([id, v]) => `${id}: ${v.length} evals, ${v[0]!.toFixed(4)} -> ${v[v.length - 1]!.toFixed(4)}`).join(' | ')}`);
    const peers = [...byPeer.keys()];
    expect(body.points.some((p) => p.partner !== null && peers.includes(p.partner) && p.partner !== p.peerId)).toBe(true);
    for (const v of volunteers) await v.getByRole('button', { name: 'Stop' }).click();
  });

  it('stops cleanly on SIGINT', async () => {
    child.kill('SIGINT');
    const timeout = new Promise<never>((_r, rej) => setTimeout(() => rej(new Error(`murmur start did not exit within 30 s of SIGINT.\nstdout:\n${stdout}\nstderr:\n${stderr}`)), 30_000));
    const { code, signal } = await Promise.race([exited, timeout]);
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(stdout).toContain('murmur start: SIGINT, stopping volunteers and the coordinator');
  });

  it('saw no uncaught page errors', () => {
    expect(errors).toEqual([]);
  });
});
