// What anonymous reads cost the volunteers: a coordinator holding a full run (190,000 report
// rows), 20 simulated volunteers reporting 4 times a second each, and 8 anonymous clients, each
// from its own loopback address, asking /metrics and /connectivity for ranges that change every
// time (so no answer is shared from the cache) as fast as they are answered, without waiting
// after a refusal. Three coordinators side by side: answers computed on the event loop with no
// budget (`--inline-reads --read-budget off`, what the coordinator did before), in the read
// worker with no budget, and in the read worker with the default budget (`250,500`: a quarter of
// a core per address, half a core in all). Measured:
// report-to-ack latency (the ack follows the SQLite commit, on the coordinator's one event loop)
// quiet and under the flood, the reads served and refused, the coordinator's CPU. Also the
// dashboard's history on the full run, the way it was asked before (narrowing a downsampled
// range, up to 12 requests) and now (`newest=true`, one request), and what choosing that
// history's rows costs in SQLite: the newest 20,000 of the run (one backward walk, before) and
// each peer's newest under a fair share of them (now), so one fast reporter cannot fill it.
//
//   npm run bench:reads            (BENCH_SECONDS=20 of flood per mode by default)
//   BENCH_READS_WINDOW_ONLY=1 npm run bench:reads   (the fill and the window queries alone; writes nothing)
//
// Prints a table and writes bench/results/reads.json.
import { request } from 'node:http';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { buildApp } from '../server/app.ts';
import { queryReports, type ReportRow } from '../server/metrics.ts';
import { openDb } from '../server/db.ts';
import { ackSummary, procStats, reporters, ROOT, startServe, stopServe } from './serve-process.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 20);
const QUIET_SECONDS = 8;
const ROWS = 190_000;
const FILL_PEERS = 200;
const VOLUNTEERS = 20;
const REPORT_EVERY_MS = 250;
const FLOODERS = 8;
const T0 = Date.now() - ROWS * 10;

const r2 = (x: number) => Math.round(x * 100) / 100;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));



/** The default run filled with ROWS reports of FILL_PEERS peers, partners and link details as a real run has them. */
async function fill(dataDir: string): Promise<void> {
  const c = await buildApp({ dataDir, logLevel: false }, { checkpointEveryMs: 0 });
  const routes = [['host', 'srflx'], ['relay', 'host'], [null, null]] as const;
  for (let i = 0; i < ROWS; i++) {
    const p = i % FILL_PEERS;
    const round = Math.floor(i / FILL_PEERS);
    const paired = (i * 7919) % 10 < 7;
    const route = paired ? routes[i % 2]! : routes[2];
    const row: ReportRow = {
      runId: 'default', peerId: `p-${p.toString(16).padStart(16, '0')}`, seq: round + 1, time: T0 + i * 10, t: T0 + i * 10, receivedAt: T0 + i * 10,
      step: round * 10, round, trainLoss: 5 - round * 0.001, valLoss: round % 10 === 0 ? 4.5 : null, tokensPerS: 5000, bytesIn: 1000, bytesOut: 1000,
      partner: paired ? `p-${((p + 1) % FILL_PEERS).toString(16).padStart(16, '0')}` : null, partnerDist: paired ? 0.01 : null, adapter: 'bench',
      linkLocal: route[0], linkRemote: route[1], connectMs: paired ? 40 + (i % 50) : null, linkFailures: i % 13 === 0 ? 1 : 0, linkError: i % 13 === 0 ? 'ice-failed' : null,
    };
    c.metrics.enqueue(row, () => {});
    if (i % 10_000 === 9_999) c.metrics.flush();
  }
  c.metrics.flush();
  await c.close();
}


/**
 * The dashboard's window on the full run, chosen in SQLite on the coordinator's file, each way
 * run 7 times (median ms): the newest 20,000 rows of the run (before: a count, one backward
 * walk of reports_run_t) and each peer's newest under a fair share (now: a count per peer, a
 * window over reports_run_peer_t, the rows read by id; queryReports).
 */
function windowQueries(dataDir: string): { rows: number; newest_walk_ms: number; fair_share_ms: number; ms_ratio_fair_over_walk: number } {
  const db = openDb(join(dataDir, 'murmur.sqlite'));
  try {
    const params = { runId: 'default', from: 0, to: Date.now() };
    const where = 'run_id = @runId AND t >= @from AND t <= @to';
    const walk = () => {
      db.prepare(`SELECT COUNT(*) AS n FROM reports WHERE ${where}`).get(params);
      return db.prepare(`SELECT * FROM (SELECT t, id, peer_id AS peerId, seq, step, round, train_loss AS trainLoss, val_loss AS valLoss,
          tokens_per_s AS tokensPerS, bytes_in AS bytesIn, bytes_out AS bytesOut, partner, partner_dist AS partnerDist, adapter,
          link_local AS linkLocal, link_remote AS linkRemote, connect_ms AS connectMs, link_failures AS linkFailures, link_error AS linkError, weight,
          probe_ms AS probeMs, probe_solo AS probeSolo, probe_paired AS probePaired, probe_rejected AS probeRejected
        FROM reports WHERE ${where} ORDER BY t DESC, id DESC LIMIT 20000) ORDER BY t, id`).all(params).length;
    };
    const fair = () => queryReports(db, { ...params, maxPoints: 20_000, newest: true }).points.length;
    const median = (f: () => number) => {
      const ms: number[] = [];
      let rows = 0;
      for (let i = 0; i < 8; i++) {
        const t = performance.now();
        rows = f();
        if (i > 0) ms.push(performance.now() - t); // the first pays SQLite's page cache
      }
      ms.sort((a, b) => a - b);
      return { ms: ms[ms.length >> 1]!, rows };
    };
    const before = median(walk);
    const now = median(fair);
    return { rows: now.rows, newest_walk_ms: r2(before.ms), fair_share_ms: r2(now.ms), ms_ratio_fair_over_walk: r2(now.ms / before.ms) };
  } finally {
    db.close();
  }
}

/** GET from a given loopback address: status, body bytes, wall ms. */
function get(url: string, localAddress = '127.0.0.1'): Promise<{ status: number; bytes: number; ms: number; body: string }> {
  const t = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(url, { localAddress, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        resolve({ status: res.statusCode!, bytes: body.length, ms: performance.now() - t, body: body.toString() });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/** FLOODERS clients, each from its own address, asking fresh ranges back to back until `until`. */
async function flood(url: string, until: number) {
  const counts = { served: 0, refused: 0, other: 0, servedMs: 0 };
  const span = ROWS * 10;
  await Promise.all(Array.from({ length: FLOODERS }, async (_, i) => {
    let k = 0;
    while (performance.now() < until) {
      const from = T0 + Math.floor(((k++ * 7 + i * 131) % 997) / 997 * span * 0.5);
      const path = k % 2 ? `/api/runs/default/metrics?from=${from}&maxPoints=2000` : `/api/runs/default/connectivity?from=${from}`;
      const r = await get(url + path, `127.0.2.${i + 1}`);
      if (r.status === 200) { counts.served++; counts.servedMs += r.ms; }
      else if (r.status === 429) counts.refused++;
      else counts.other++;
    }
  }));
  return counts;
}

/** The dashboard's history before `newest`: a downsampled page narrowed by halves until raw (src/ui/browser/coordinator-dashboard.ts, up to 12 requests). */
async function historyNarrowing(url: string): Promise<{ requests: number; ms: number; bytes: number; rows: number }> {
  const t = performance.now();
  let from = 0, bytes = 0, requests = 0;
  const to = Date.now();
  for (let attempt = 0; attempt < 12; attempt++) {
    const r = await get(`${url}/api/runs/default/metrics?from=${from}&to=${to}&maxPoints=20000`);
    requests++;
    bytes += r.bytes;
    const page = JSON.parse(r.body) as { downsampled: boolean; points: { t: number }[] };
    if (!page.downsampled) return { requests, ms: performance.now() - t, bytes, rows: page.points.length };
    const first = page.points[0]?.t ?? from;
    from = Math.floor(first + (to - first) / 2);
  }
  return { requests, ms: performance.now() - t, bytes, rows: 0 };
}

async function historyNewest(url: string): Promise<{ requests: number; ms: number; bytes: number; rows: number }> {
  const r = await get(`${url}/api/runs/default/metrics?from=0&to=${Date.now()}&maxPoints=20000&newest=true`);
  return { requests: 1, ms: r.ms, bytes: r.bytes, rows: (JSON.parse(r.body) as { points: unknown[] }).points.length };
}

/** How the coordinator reads: on its event loop or in its read worker, with or without the budget. */
interface Mode { name: string; budget: string; worker: boolean }
const MODES: Mode[] = [
  { name: 'event loop, no budget (before)', budget: 'off', worker: false },
  { name: 'read worker, no budget', budget: 'off', worker: true },
  { name: 'read worker, budget 250,500 (now)', budget: '250,500', worker: true },
];

interface ModeResult {
  mode: string;
  budget: string;
  worker: boolean;
  ack_ms_quiet: { p50: number; p99: number; n: number };
  ack_ms_flood: { p50: number; p99: number; max: number; n: number };
  reads: { served: number; refused: number; other: number; served_per_s: number };
  server_cpu_percent_flood: number;
  volunteer_errors: number;
}

async function mode(dataDir: string, m: Mode): Promise<{ result: ModeResult; history?: { narrowing: Awaited<ReturnType<typeof historyNarrowing>>; newest: Awaited<ReturnType<typeof historyNewest>> } }> {
  const { child, url } = await startServe(dataDir, ['--read-budget', m.budget, ...(m.worker ? [] : ['--inline-reads'])]);
  try {
    let history;
    if (m === MODES[0]) {
      // Each twice: the first pays SQLite's page cache; the second is what a dashboard load costs.
      await historyNarrowing(url);
      const narrowing = await historyNarrowing(url);
      await historyNewest(url);
      const newest = await historyNewest(url);
      history = { narrowing, newest };
    }
    const v = await reporters(url, VOLUNTEERS, REPORT_EVERY_MS, '127.0.1');
    await sleep(1000);
    v.take();
    await sleep(QUIET_SECONDS * 1000);
    const quiet = v.take();
    const cpu0 = procStats(child.pid!).cpuS;
    const t0 = performance.now();
    const reads = await flood(url, t0 + SECONDS * 1000);
    const wall = (performance.now() - t0) / 1000;
    const cpu = ((procStats(child.pid!).cpuS - cpu0) / wall) * 100;
    await sleep(500);
    const loud = v.take();
    v.stop();
    return {
      history,
      result: {
        mode: m.name, budget: m.budget, worker: m.worker,
        ...ackSummary(quiet, loud),
        reads: { served: reads.served, refused: reads.refused, other: reads.other, served_per_s: r2(reads.served / wall) },
        server_cpu_percent_flood: r2(cpu),
        volunteer_errors: v.errors(),
      },
    };
  } finally {
    await stopServe(child);
  }
}

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'murmur-bench-reads-'));
  try {
    const f0 = performance.now();
    await fill(dataDir);
    console.log(`filled the default run with ${ROWS} reports in ${((performance.now() - f0) / 1000).toFixed(1)} s`);
    const window = windowQueries(dataDir);
    const windowLine = `  dashboard window (${window.rows} rows of ${ROWS}, ${FILL_PEERS} peers) in SQLite: newest of the run ${window.newest_walk_ms} ms (before), ` +
      `fair share per peer ${window.fair_share_ms} ms (now, ${window.ms_ratio_fair_over_walk}x)`;
    if (process.env.BENCH_READS_WINDOW_ONLY) {
      console.log(windowLine);
      return;
    }
    const runs = [];
    for (const m of MODES) runs.push(await mode(dataDir, m));
    const [before, , now] = runs.map((r) => r.result) as [ModeResult, ModeResult, ModeResult];
    const h = runs[0]!.history!;
    const ratio = (a: number, b: number) => r2(a / b);
    const result = {
      rows: ROWS, volunteers: VOLUNTEERS, report_every_ms: REPORT_EVERY_MS, flooders: FLOODERS, flood_seconds: SECONDS,
      modes: runs.map((r) => r.result),
      ack_p99_flood_ratio_before_over_now: ratio(before.ack_ms_flood.p99, now.ack_ms_flood.p99),
      ack_p50_flood_ratio_before_over_now: ratio(before.ack_ms_flood.p50, now.ack_ms_flood.p50),
      dashboard_history: {
        narrowing: { ...h.narrowing, ms: r2(h.narrowing.ms) },
        newest: { ...h.newest, ms: r2(h.newest.ms) },
        ms_ratio_narrowing_over_newest: ratio(h.narrowing.ms, h.newest.ms),
      },
      dashboard_window: window,
      machine: { cpus: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', loadavg1: r2(loadavg()[0]!), node: process.version },
      note: 'coordinator in its own process; volunteers and flooders share the bench process on the same machine',
      date: new Date().toISOString(),
    };
    console.log(`\nAnonymous reads against volunteers: ${ROWS} rows, ${VOLUNTEERS} volunteers x ${1000 / REPORT_EVERY_MS} reports/s, ${FLOODERS} clients asking fresh ranges for ${SECONDS} s\n`);
    const table: string[][] = [['reads', 'ack p50/p99 quiet (ms)', 'ack p50/p99/max flood (ms)', 'reads served/s', 'refused', 'server CPU %']];
    for (const m of runs.map((r) => r.result)) {
      table.push([m.mode, `${m.ack_ms_quiet.p50} / ${m.ack_ms_quiet.p99}`, `${m.ack_ms_flood.p50} / ${m.ack_ms_flood.p99} / ${m.ack_ms_flood.max}`,
        `${m.reads.served_per_s}`, `${m.reads.refused}`, `${m.server_cpu_percent_flood}`]);
    }
    const widths = table[0]!.map((_, j) => Math.max(...table.map((r) => r[j]!.length)));
    for (const r of table) console.log('  ' + r.map((c, j) => c.padEnd(widths[j]!)).join('  '));
    console.log(`\n  ack under the flood, before / now: p50 ${result.ack_p50_flood_ratio_before_over_now}x, p99 ${result.ack_p99_flood_ratio_before_over_now}x`);
    console.log(`\n  dashboard history on the full run: narrowing ${h.narrowing.requests} requests, ${r2(h.narrowing.ms)} ms, ${(h.narrowing.bytes / 1e6).toFixed(2)} MB, ${h.narrowing.rows} rows`);
    console.log(`                                     newest    ${h.newest.requests} request,  ${r2(h.newest.ms)} ms, ${(h.newest.bytes / 1e6).toFixed(2)} MB, ${h.newest.rows} rows  (${result.dashboard_history.ms_ratio_narrowing_over_newest}x)`);
    console.log(windowLine);
    const out = join(ROOT, 'bench', 'results', 'reads.json');
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
    console.log(`\nwrote ${out}`);
    if (runs.some((r) => r.result.volunteer_errors > 0)) {
      console.error('volunteers got error frames');
      process.exit(1);
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
