// What anonymous downloads cost the volunteers: a coordinator with a `small` run whose newest
// checkpoint's bootstrap state is 87 MB, 20 volunteers reporting 4 times a second, and 4 hostile
// addresses each running 16 downloads of that state back to back (after a refusal they wait only
// 100 ms, not the Retry-After). Meanwhile newcomers, each from a fresh address, join the way a
// volunteer does: the run's token files, then the newest state, waiting out any 429 as told
// (src/protocol/retry-fetch.ts). Two coordinators side by side: no download limits (what the
// coordinator did before server/download-budget.ts) and the defaults (8 downloads open per
// address and 256 in all, 8 MiB/s per address and 64 MiB/s in all, each gathering 128 s).
// Measured: report-to-ack latency quiet and under the flood, the newcomers' time to their data and
// state, what the flood was sent and refused, the coordinator's CPU. The flood runs in a process
// of its own, so its reading does not delay the volunteers' clocks; all share this machine's cores.
//
//   npm run bench:downloads        (BENCH_SECONDS=20 of flood per mode by default)
//
// Prints a table and writes bench/results/downloads.json.
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { buildApp } from '../server/app.ts';
import { buildLayout } from '../src/model/layout.ts';
import { initParams } from '../src/model/init.ts';
import { preset } from '../src/model/config.ts';
import { fetchRetrying } from '../src/protocol/retry-fetch.ts';
import { ackSummary, percentile, procStats, reporters, ROOT, startServe, stopServe } from './serve-process.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 20);
const QUIET_SECONDS = 5;
const VOLUNTEERS = 20;
const REPORT_EVERY_MS = 250;
const FLOOD_ADDRESSES = 4;
const FLOOD_LOOPS = 16;
const FLOOD_PAUSE_MS = 100;
const RUN = 'big';

const r2 = (x: number) => Math.round(x * 100) / 100;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** GET `url` from `localAddress`, reading the body whole and keeping none of it: status, bytes. */
function drain(url: string, localAddress: string): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve) => {
    const req = request(url, { localAddress, agent: false }, (res) => {
      let bytes = 0;
      res.on('data', (d: Buffer) => { bytes += d.length; });
      res.on('end', () => resolve({ status: res.statusCode!, bytes }));
      res.on('error', () => resolve({ status: 0, bytes }));
    });
    req.on('error', () => resolve({ status: 0, bytes: 0 }));
    req.end();
  });
}

/** The flood, in its own process: FLOOD_ADDRESSES × FLOOD_LOOPS downloads of `path` back to back for `seconds`. */
async function floodMain(url: string, path: string, seconds: number): Promise<void> {
  const until = performance.now() + seconds * 1000;
  const counts = { served: 0, refused: 0, other: 0, bytes: 0 };
  await Promise.all(Array.from({ length: FLOOD_ADDRESSES * FLOOD_LOOPS }, async (_, i) => {
    const from = `127.0.2.${1 + (i % FLOOD_ADDRESSES)}`;
    while (performance.now() < until) {
      const r = await drain(url + path, from);
      counts.bytes += r.bytes;
      if (r.status === 200) counts.served++;
      else if (r.status === 429) { counts.refused++; await sleep(FLOOD_PAUSE_MS); }
      else counts.other++;
    }
  }));
  process.stdout.write(JSON.stringify(counts) + '\n');
}

function flood(url: string, path: string, seconds: number): Promise<{ served: number; refused: number; other: number; bytes: number }> {
  const child = spawn(process.execPath, [join(ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs'), join(ROOT, 'bench', 'downloads.ts'), '--flood', url, path, String(seconds)], {
    cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  return new Promise((resolve, reject) => child.on('exit', (code) => {
    if (code !== 0) return reject(new Error(`the flood process exited with ${code}`));
    resolve(JSON.parse(out.trim().split('\n').at(-1)!) as { served: number; refused: number; other: number; bytes: number });
  }));
}

/** A newcomer from `from`: the run's token files, then the newest state, each waited out past a 429 as a volunteer does. */
async function newcomer(url: string, files: string[], statePath: string, from: string): Promise<{ ms: number; waits: number; ok: boolean }> {
  const t = performance.now();
  let waits = 0, ok = true;
  const get = async (path: string) => {
    const res = await fetchRetrying((u) => drainAsResponse(String(u), from), url + path, {}, { onWait: () => { waits++; } });
    if (res.status !== 200) ok = false;
  };
  await Promise.all(files.map(get));
  await get(statePath);
  return { ms: performance.now() - t, waits, ok };
}

/** `drain` as the Response fetchRetrying reads (status, Retry-After), the body already read. */
function drainAsResponse(url: string, from: string): Promise<Response> {
  return new Promise((resolve) => {
    const req = request(url, { localAddress: from, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let bytes = 0;
      res.on('data', (d: Buffer) => { bytes += d.length; if (res.statusCode !== 200) chunks.push(d); });
      res.on('end', () => {
        const headers = new Headers();
        if (res.headers['retry-after']) headers.set('retry-after', String(res.headers['retry-after']));
        resolve(new Response(res.statusCode === 200 ? `${bytes}` : Buffer.concat(chunks), { status: res.statusCode!, headers }));
      });
      res.on('error', () => resolve(new Response(null, { status: 599 })));
    });
    req.on('error', () => resolve(new Response(null, { status: 599 })));
    req.end();
  });
}

/** The data dir: the default run and a `small` run with one checkpoint (its state derived at save). */
async function prepare(dataDir: string): Promise<{ statePath: string; files: string[]; stateBytes: number }> {
  const c = await buildApp({ dataDir, logLevel: false }, { checkpointEveryMs: 0 });
  try {
    const run = c.runs.create({ id: RUN, dataset: 'moby-dick', preset: 'small' });
    const layout = buildLayout(preset('small'));
    const phi = initParams(layout, 7);
    const ck = await c.checkpoints.save(run, { meta: { runId: RUN, step: 40, round: 4, floats: layout.total, valLoss: 5.5, tokens: 40960 }, phi, momentum: new Float32Array(layout.total) }, null, Date.now());
    const data = (await c.app.inject({ method: 'GET', url: `/api/runs/${RUN}/data` })).json<{ train: { url: string }[]; val: { url: string } }>();
    const statePath = `/api/runs/${RUN}/checkpoints/${ck.id}/state`;
    const head = await c.app.inject({ method: 'HEAD', url: statePath, headers: { authorization: `Bearer ${c.adminToken}` } });
    return { statePath, files: [...data.train.map((f) => f.url), data.val.url], stateBytes: Number(head.headers['content-length']) };
  } finally {
    await c.close();
  }
}

interface Mode { name: string; args: string[] }
const MODES: Mode[] = [
  { name: 'no limits (before)', args: ['--download-budget', 'off', '--download-places', '100000,100000'] },
  { name: 'download budget 8,64, places 8,256 (now)', args: [] },
];

async function mode(dataDir: string, m: Mode, p: Awaited<ReturnType<typeof prepare>>) {
  const { child, url } = await startServe(dataDir, m.args);
  try {
    const v = await reporters(url, VOLUNTEERS, REPORT_EVERY_MS, '127.0.1');
    await sleep(1000);
    v.take();
    const quietJoin = await newcomer(url, p.files, p.statePath, '127.0.3.1');
    await sleep(QUIET_SECONDS * 1000);
    const quiet = v.take();
    const cpu0 = procStats(child.pid!).cpuS;
    const t0 = performance.now();
    const flooding = flood(url, p.statePath, SECONDS);
    // Newcomers one after another while the flood lasts, each from a fresh address.
    const joins: { ms: number; waits: number; ok: boolean }[] = [];
    let done = false;
    void flooding.finally(() => { done = true; });
    for (let i = 0; !done && performance.now() - t0 < SECONDS * 1000; i++) {
      joins.push(await newcomer(url, p.files, p.statePath, `127.0.4.${1 + (i % 250)}`));
    }
    const f = await flooding;
    const wall = (performance.now() - t0) / 1000;
    const cpu = ((procStats(child.pid!).cpuS - cpu0) / wall) * 100;
    await sleep(500);
    const loud = v.take();
    v.stop();
    const joinMs = joins.map((j) => j.ms).sort((a, b) => a - b);
    return {
      mode: m.name, args: m.args,
      ...ackSummary(quiet, loud),
      newcomer_ms_quiet: r2(quietJoin.ms),
      newcomers_flood: { n: joins.length, ok: joins.filter((j) => j.ok).length, p50_ms: r2(percentile(joinMs, 50)), max_ms: r2(joinMs.at(-1) ?? NaN), waits: joins.reduce((n, j) => n + j.waits, 0) },
      flood: { served: f.served, refused: f.refused, other: f.other, mb_per_s: r2(f.bytes / 1e6 / wall) },
      server_cpu_percent_flood: r2(cpu),
      volunteer_errors: v.errors(),
    };
  } finally {
    await stopServe(child);
  }
}

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'murmur-bench-downloads-'));
  try {
    const p = await prepare(dataDir);
    const modes = [];
    for (const m of MODES) modes.push(await mode(dataDir, m, p));
    const [before, now] = modes as [typeof modes[0], typeof modes[0]];
    const ratio = (a: number, b: number) => r2(a / b);
    const result = {
      state_bytes: p.stateBytes, volunteers: VOLUNTEERS, report_every_ms: REPORT_EVERY_MS,
      flood: { addresses: FLOOD_ADDRESSES, downloads_per_address: FLOOD_LOOPS, pause_after_refusal_ms: FLOOD_PAUSE_MS, seconds: SECONDS },
      modes,
      ack_p99_flood_ratio_before_over_now: ratio(before.ack_ms_flood.p99, now.ack_ms_flood.p99),
      newcomer_p50_flood_ratio_before_over_now: ratio(before.newcomers_flood.p50_ms, now.newcomers_flood.p50_ms),
      flood_mb_per_s_ratio_before_over_now: ratio(before.flood.mb_per_s, now.flood.mb_per_s),
      machine: { cpus: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', loadavg1: r2(loadavg()[0]!), node: process.version },
      note: 'coordinator, flood and volunteers each in their own process on the same machine; loopback network',
      date: new Date().toISOString(),
    };
    console.log(`\nAnonymous downloads against volunteers: a ${(p.stateBytes / 1e6).toFixed(1)} MB state, ${FLOOD_ADDRESSES} addresses x ${FLOOD_LOOPS} downloads back to back for ${SECONDS} s, ${VOLUNTEERS} volunteers x ${1000 / REPORT_EVERY_MS} reports/s\n`);
    const table: string[][] = [['downloads', 'ack p50/p99 quiet (ms)', 'ack p50/p99/max flood (ms)', 'newcomer quiet (ms)', 'newcomers in flood: n, p50/max (ms)', 'flood MB/s', 'refused', 'server CPU %']];
    for (const m of modes) {
      table.push([m.mode, `${m.ack_ms_quiet.p50} / ${m.ack_ms_quiet.p99}`, `${m.ack_ms_flood.p50} / ${m.ack_ms_flood.p99} / ${m.ack_ms_flood.max}`, `${m.newcomer_ms_quiet}`,
        `${m.newcomers_flood.ok}/${m.newcomers_flood.n}, ${m.newcomers_flood.p50_ms} / ${m.newcomers_flood.max_ms}`, `${m.flood.mb_per_s}`, `${m.flood.refused}`, `${m.server_cpu_percent_flood}`]);
    }
    const widths = table[0]!.map((_, j) => Math.max(...table.map((r) => r[j]!.length)));
    for (const r of table) console.log('  ' + r.map((c, j) => c.padEnd(widths[j]!)).join('  '));
    console.log(`\n  before / now under the flood: ack p99 ${result.ack_p99_flood_ratio_before_over_now}x, newcomer p50 ${result.newcomer_p50_flood_ratio_before_over_now}x, flood MB/s ${result.flood_mb_per_s_ratio_before_over_now}x`);
    const out = join(ROOT, 'bench', 'results', 'downloads.json');
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
    console.log(`\nwrote ${out}`);
    if (modes.some((m) => m.volunteer_errors > 0 || m.newcomers_flood.ok < m.newcomers_flood.n)) {
      console.error('volunteers got error frames, or a newcomer was refused its data or state');
      process.exit(1);
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const args = process.argv.slice(2);
(args[0] === '--flood' ? floodMain(args[1]!, args[2]!, Number(args[3])) : main()).catch((err) => {
  console.error(err);
  process.exit(1);
});
