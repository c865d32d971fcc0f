// What an anonymous GET /api/runs or GET /api/runs/:run costs the coordinator's event loop as a
// run's live peers grow: an in-process coordinator (port 0, temp data dir) with 1, 1,000 and
// 10,000 live peers on its default run, each with a reported step and half of them off
// probation, and REQUESTS requests of each route, one after another, timed end to end on the
// event loop (Fastify's inject: routing, the handler, serialising; no socket). The live peers are
// put straight into the hub's tables (no WebSocket each: 10,000 joins would announce each
// newcomer to every peer already there); the routes read those tables alone. Also counted: how
// many times the run's agreed step (PeerHub.stepConsensus, a pass over every live peer plus a
// SQLite read of the newest checkpoint) was worked out for those requests, and the answers'
// status codes (a 429 is the read budget refusing the one address asking), and what the read
// budget charged that address per request (nothing before: the routes were not charged).
//
//   npx tsx bench/runs-read.ts --label before   (on the code before the fix)
//   npx tsx bench/runs-read.ts --label after    (on the code after it)
//
// Each run keeps the other label's rows in bench/results/runs-read.json and prints both side by
// side, with the ratio before / after.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildApp, type Coordinator } from '../server/app.ts';
import { arg, intArg, resultsDir } from './args.ts';

const PEERS = [1, 1_000, 10_000];
const REQUESTS = intArg('requests', 1000);
const LABEL = arg('label') ?? 'after';
if (LABEL !== 'before' && LABEL !== 'after') throw new Error(`--label must be "before" or "after", got ${JSON.stringify(LABEL)}`);
const ROUTES = ['/api/runs', '/api/runs/default'] as const;

interface Row { route: string; peers: number; requests: number; usPerRequest: number; p99Us: number; agreedStepComputations: number; chargedUsPerRequest: number; status: Record<string, number> }

/** `n` live peers on the run, each from its own address, with steps around 1,000; every other one off probation. */
function seed(c: Coordinator, runId: string, n: number): void {
  // The hub's private tables, as a join fills them (server/peers.ts): only what the routes read.
  const hub = c.hub as unknown as { byPeer: Map<string, object>; byRun: Map<string, Set<string>>; accepted: Map<string, number> };
  const ids = hub.byRun.get(runId) ?? new Set<string>();
  hub.byRun.set(runId, ids);
  const now = Date.now();
  for (let i = 0; i < n; i++) {
    const id = `bench-${i.toString(16).padStart(12, '0')}`;
    hub.byPeer.set(id, {
      n: i, release: () => {}, address: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, peerId: id, runId, lastSeen: now,
      lastStep: 1000 + (i % 97), closed: false, joinedAt: now, stepBase: 0, lastReportAt: now, joinSeq: i,
    });
    ids.add(id);
    if (i % 2 === 0) hub.accepted.set(id, 10);
  }
}

async function measure(c: Coordinator, route: string, peers: number): Promise<Row> {
  let computed = 0;
  const hub = c.hub as unknown as { stepConsensus: (...a: unknown[]) => unknown };
  const original = hub.stepConsensus;
  hub.stepConsensus = function (this: unknown, ...a: unknown[]) { computed++; return original.apply(this, a); };
  const status: Record<string, number> = {};
  let charged0 = 0;
  const us: number[] = [];
  try {
    for (let i = 0; i < 20; i++) await c.app.inject({ method: 'GET', url: route }); // warm up
    computed = 0;
    charged0 = c.reads.stats.chargedMs;
    for (let i = 0; i < REQUESTS; i++) {
      const t0 = performance.now();
      const res = await c.app.inject({ method: 'GET', url: route, remoteAddress: '192.0.2.7' });
      us.push((performance.now() - t0) * 1000);
      status[res.statusCode] = (status[res.statusCode] ?? 0) + 1;
    }
  } finally {
    hub.stepConsensus = original;
  }
  us.sort((a, b) => a - b);
  const mean = us.reduce((a, b) => a + b, 0) / us.length;
  return { route, peers, requests: REQUESTS, usPerRequest: Math.round(mean * 10) / 10, p99Us: Math.round(us[Math.floor(us.length * 0.99)]! * 10) / 10, agreedStepComputations: computed, chargedUsPerRequest: Math.round(((c.reads.stats.chargedMs - charged0) / REQUESTS) * 1e4) / 10, status };
}

const rows: Row[] = [];
for (const n of PEERS) {
  const dataDir = mkdtempSync(join(tmpdir(), 'murmur-runs-read-'));
  // Peers put in by hand never heartbeat: the sweep must not count them late.
  const c = await buildApp({ dataDir, logLevel: false }, { checkpointEveryMs: 0, hub: { livenessMs: 3_600_000 } });
  try {
    seed(c, 'default', n);
    for (const route of ROUTES) rows.push(await measure(c, route, n));
  } finally {
    await c.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const dir = resultsDir();
mkdirSync(dir, { recursive: true });
const file = join(dir, 'runs-read.json');
const prior = existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown> : {};
const result = {
  ...prior,
  machine: { cpus: cpus().length, model: cpus()[0]?.model ?? 'unknown', loadavg1: Math.round(loadavg()[0]! * 100) / 100 },
  requests: REQUESTS,
  [LABEL]: { at: new Date().toISOString(), rows },
};
writeFileSync(file, JSON.stringify(result, null, 2) + '\n');

const before = (result as { before?: { rows: Row[] } }).before?.rows ?? [];
const after = (result as { after?: { rows: Row[] } }).after?.rows ?? [];
const pad = (s: string | number, w: number) => String(s).padStart(w);
console.log(`${pad('route', 18)} ${pad('live peers', 10)} ${pad('before µs/req', 13)} ${pad('after µs/req', 12)} ${pad('ratio', 7)} ${pad('steps before', 12)} ${pad('steps after', 11)} ${pad('charged µs/req after', 20)}  statuses after`);
for (const route of ROUTES) {
  for (const n of PEERS) {
    const b = before.find((r) => r.route === route && r.peers === n);
    const a = after.find((r) => r.route === route && r.peers === n);
    const ratio = a && b ? `${(b.usPerRequest / a.usPerRequest).toFixed(1)}×` : '-';
    console.log(`${pad(route, 18)} ${pad(n, 10)} ${pad(b?.usPerRequest ?? '-', 13)} ${pad(a?.usPerRequest ?? '-', 12)} ${pad(ratio, 7)} ${pad(b?.agreedStepComputations ?? '-', 12)} ${pad(a?.agreedStepComputations ?? '-', 11)} ${pad(a?.chargedUsPerRequest ?? '-', 20)}  ${a ? JSON.stringify(a.status) : '-'}`);
  }
}
console.log(`(${REQUESTS} requests each, one address; steps: how many times the agreed step was worked out; written to ${file})`);
