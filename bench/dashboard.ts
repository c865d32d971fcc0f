// Dashboard smoothness with many peers: the real <murmur-dashboard> and DashboardController in
// headless Chromium, fed by the fake coordinator feed (tests/browser/pages/dashboard.html) with
// N peers, ten minutes of history and a live report per peer per second. Measures, over a
// window of live updates: frames drawn per second (requestAnimationFrame), long tasks (> 50 ms
// of main thread), the controller's view refresh time, and the peer grid's DOM rows (virtualised).
// Prints a table and writes bench/results/dashboard.json.
//   npm run bench:dashboard            (peers 3, 100, 500)
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startBrowser } from '../tests/support/browser.ts';

interface Row {
  peers: number; history_reports: number; fps: number; long_tasks: number; long_task_ms_max: number;
  refresh_ms_median: number; refresh_ms_max: number; grid_dom_rows: number; window_s: number;
}

const WINDOW_MS = 15_000;

async function measure(h: Awaited<ReturnType<typeof startBrowser>>, peers: number): Promise<Row> {
  const page = await h.openPage(`/tests/browser/pages/dashboard.html?peers=${peers}&live=1`);
  await page.setViewportSize({ width: 1400, height: 1000 });
  await page.waitForFunction(() => window.dashTest?.controller.trainView.x.length > 0, null, { timeout: 120_000 });
  await page.waitForTimeout(2000); // first live refreshes
  // A string, not a function: tsx would wrap named functions with a helper the page lacks.
  const r = (await page.evaluate(`(async (windowMs) => {${IN_PAGE}})(${WINDOW_MS})`)) as {
    fps: number; longTasks: number; longMax: number; refreshMedian: number; refreshMax: number; gridRows: number; history: number;
  };
  await page.context().close();
  return {
    peers, history_reports: r.history, fps: round(r.fps), long_tasks: r.longTasks, long_task_ms_max: round(r.longMax),
    refresh_ms_median: round(r.refreshMedian), refresh_ms_max: round(r.refreshMax), grid_dom_rows: r.gridRows, window_s: WINDOW_MS / 1000,
  };
}

/** Runs in the page (plain JavaScript). */
const IN_PAGE = `
    const c = window.dashTest.controller;
    const longTasks = [];
    const obs = new PerformanceObserver((list) => { for (const e of list.getEntries()) longTasks.push(e.duration); });
    obs.observe({ type: 'longtask', buffered: false });
    const refresh = [];
    const off = c.subscribe(() => refresh.push(c.lastRefreshMs));
    let frames = 0, running = true;
    const tick = () => { frames++; if (running) requestAnimationFrame(tick); };
    requestAnimationFrame(tick);
    await new Promise((res) => setTimeout(res, windowMs));
    running = false;
    obs.disconnect();
    off();
    const sorted = [...refresh].sort((a, b) => a - b);
    const grid = document.querySelector('murmur-dashboard').shadowRoot.querySelector('murmur-peer-grid').shadowRoot;
    return {
      fps: frames / (windowMs / 1000), longTasks: longTasks.length, longMax: Math.max(0, ...longTasks),
      refreshMedian: sorted[sorted.length >> 1] ?? 0, refreshMax: sorted[sorted.length - 1] ?? 0,
      gridRows: grid.querySelectorAll('[data-peer]').length, history: window.dashTest.source.historyRows.length,
    };
`;

const round = (x: number) => Math.round(x * 10) / 10;

const counts = process.argv.slice(2).map(Number).filter((n) => n > 0);
const h = await startBrowser();
const rows: Row[] = [];
try {
  for (const n of counts.length ? counts : [3, 100, 500]) rows.push(await measure(h, n));
} finally {
  await h.close();
}
console.table(rows);
const out = join(dirname(fileURLToPath(import.meta.url)), 'results', 'dashboard.json');
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), cpu: cpus()[0]?.model, cores: cpus().length, loadavg: loadavg(), rows }, null, 2) + '\n');
console.log(`wrote ${out}`);
