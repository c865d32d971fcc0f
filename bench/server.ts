// Coordinator load benchmark: N simulated volunteers (default 200) on loopback WebSockets, each
// sending one metric report per second (and heartbeats) for a bounded time, plus one dashboard
// on the live stream (SSE). Measures report-to-dashboard latency (client send -> the dashboard
// reads the event; both clocks are this process's), report-to-ack latency (the ack follows the
// SQLite commit), and the server's CPU and memory from /proc. The server runs as its own
// process (`murmur serve`), so its numbers are its own.
//
//   npm run bench:server            (BENCH_PEERS=200 BENCH_SECONDS=30 by default)
//
// Prints a table and writes bench/results/server.json.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { WebSocket } from 'ws';
import { PROTOCOL_VERSION } from '../src/protocol/messages.ts';
import { ROOT, percentile, procStats, startServe, stopServe } from './serve-process.ts';

const PEERS = Number(process.env.BENCH_PEERS ?? 200);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 30);




interface Peer { ws: WebSocket; id: string; seq: number; timer?: ReturnType<typeof setInterval>; hb?: ReturnType<typeof setInterval> }

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'murmur-bench-'));
  const { child, url } = await startServe(dataDir);
  const pid = child.pid!;
  const wsUrl = url.replace('http', 'ws') + '/api/ws';
  const sentAt = new Map<string, number>();
  const dashLat: number[] = [];
  const ackLat: number[] = [];
  let sent = 0, acked = 0, errors = 0;

  // The dashboard.
  const ctl = new AbortController();
  const res = await fetch(`${url}/api/runs/default/stream`, { signal: ctl.signal });
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  let buf = '';
  const dashboard = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += dec.decode(value, { stream: true });
      let k: number;
      while ((k = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, k);
        buf = buf.slice(k + 2);
        if (!block.startsWith('event: report')) continue;
        const row = JSON.parse(block.slice(block.indexOf('data: ') + 6)) as { peerId: string; seq: number };
        const t = sentAt.get(`${row.peerId}:${row.seq}`);
        if (t !== undefined) dashLat.push(performance.now() - t);
      }
    }
  })().catch(() => {});

  // The volunteers: join, then report once a second (starts spread over the first second).
  const peers: Peer[] = [];
  const joinT0 = performance.now();
  await Promise.all(Array.from({ length: PEERS }, () => new Promise<void>((resolve, reject) => {
    const ws = new WebSocket(wsUrl);
    const p: Peer = { ws, id: '', seq: 0 };
    ws.on('open', () => ws.send(JSON.stringify({ t: 'hello', v: PROTOCOL_VERSION, client: { kind: 'node', adapter: 'bench' } })));
    ws.on('message', (data: Buffer) => {
      const m = JSON.parse(String(data));
      if (m.t === 'welcome') { p.id = m.peerId; peers.push(p); resolve(); }
      else if (m.t === 'ack') {
        const t = sentAt.get(`${p.id}:${m.seq}:ack`);
        if (t !== undefined) { ackLat.push(performance.now() - t); acked++; }
      } else if (m.t === 'error') errors++;
    });
    ws.on('error', reject);
  })));
  const joinMs = performance.now() - joinT0;

  const before = procStats(pid);
  const rss: number[] = [before.rssMB];
  const t0 = performance.now();
  for (const p of peers) {
    const start = () => {
      p.timer = setInterval(() => {
        const seq = p.seq++;
        const now = performance.now();
        sentAt.set(`${p.id}:${seq}`, now);
        sentAt.set(`${p.id}:${seq}:ack`, now);
        p.ws.send(JSON.stringify({
          t: 'report', seq, time: Date.now(), step: seq * 10, round: seq, trainLoss: 5 - seq * 0.01, valLoss: seq % 10 === 0 ? 4.5 : null,
          tokensPerS: 5000, bytesIn: 1000, bytesOut: 1000, partner: null, partnerDist: null, adapter: 'bench',
        }));
        sent++;
      }, 1000);
      p.hb = setInterval(() => p.ws.send('{"t":"hb"}'), 5000);
    };
    setTimeout(start, Math.random() * 1000);
  }
  const sampler = setInterval(() => rss.push(procStats(pid).rssMB), 1000);
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  for (const p of peers) { clearInterval(p.timer); clearInterval(p.hb); }
  // Let the last reports arrive.
  await new Promise((r) => setTimeout(r, 1500));
  clearInterval(sampler);
  const wall = (performance.now() - t0) / 1000;
  const after = procStats(pid);
  const stored = (await (await fetch(`${url}/api/runs/default/metrics?maxPoints=20000&from=0`)).json()) as { total: number };

  for (const p of peers) p.ws.close();
  ctl.abort();
  await dashboard;
  await stopServe(child);
  rmSync(dataDir, { recursive: true, force: true });

  dashLat.sort((a, b) => a - b);
  ackLat.sort((a, b) => a - b);
  const r2 = (x: number) => Math.round(x * 100) / 100;
  const result = {
    peers: PEERS,
    seconds: SECONDS,
    reports: { sent, acked, onDashboard: dashLat.length, storedInSqlite: stored.total, errors },
    join_ms_all_peers: r2(joinMs),
    report_to_dashboard_ms: { p50: r2(percentile(dashLat, 50)), p90: r2(percentile(dashLat, 90)), p99: r2(percentile(dashLat, 99)), max: r2(dashLat.at(-1) ?? NaN) },
    report_to_ack_ms: { p50: r2(percentile(ackLat, 50)), p99: r2(percentile(ackLat, 99)) },
    server: {
      cpu_percent_of_one_core: r2(((after.cpuS - before.cpuS) / wall) * 100),
      rss_mb: { start: r2(before.rssMB), max: r2(Math.max(...rss)), end: r2(after.rssMB) },
    },
    machine: { cpus: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', loadavg1: r2(loadavg()[0]!), node: process.version },
    note: 'server in its own process; the 200 clients and the dashboard share the bench process on the same machine',
    date: new Date().toISOString(),
  };

  console.log(`\nCoordinator load: ${PEERS} peers x 1 report/s for ${SECONDS} s (loopback)\n`);
  const rows: [string, string][] = [
    ['reports sent / acked / on dashboard / in SQLite', `${sent} / ${acked} / ${dashLat.length} / ${stored.total}`],
    ['report -> dashboard  p50 / p90 / p99 / max (ms)', `${result.report_to_dashboard_ms.p50} / ${result.report_to_dashboard_ms.p90} / ${result.report_to_dashboard_ms.p99} / ${result.report_to_dashboard_ms.max}`],
    ['report -> ack (after commit)  p50 / p99 (ms)', `${result.report_to_ack_ms.p50} / ${result.report_to_ack_ms.p99}`],
    ['server CPU (% of one core)', `${result.server.cpu_percent_of_one_core}`],
    ['server RSS start / max / end (MB)', `${result.server.rss_mb.start} / ${result.server.rss_mb.max} / ${result.server.rss_mb.end}`],
    ['all peers joined in (ms)', `${result.join_ms_all_peers}`],
    ['error frames', `${errors}`],
  ];
  const w = Math.max(...rows.map((r) => r[0].length));
  for (const [k, v] of rows) console.log(`  ${k.padEnd(w)}  ${v}`);
  const out = join(ROOT, 'bench', 'results', 'server.json');
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
  console.log(`\nwrote ${out}`);
  if (dashLat.length < sent * 0.99 || stored.total < sent) {
    console.error(`reports went missing: sent ${sent}, dashboard ${dashLat.length}, stored ${stored.total}`);
    process.exit(1);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
