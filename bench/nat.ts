// NAT benchmark: how volunteers connect across home NATs, with and without STUN and TURN.
// Each row is a real run on this machine: `murmur serve` + coturn in an "internet" network
// namespace, two `murmur volunteer`s (CPU backend, micro) in homes behind nftables NATs
// (tests/support/netns.ts), until each volunteer has had ROUNDS rounds with a partner from the
// pool. Loopback (no namespaces, no NAT) is the reference row.
//   links_tried / links_opened  WebRTC links the volunteers started / that opened
//   median_connect_ms           creation to open, over the links exchanges used
//   relay_fraction              paired exchanges that went through a TURN relay
//   exchange_MBps               payload bytes received / transfer time, per paired exchange (median)
// Needs root, iproute2, nftables, conntrack and coturn. Usage: npm run bench:nat [-- --quick]
//
// --turn-cap runs only the relay-only case, once per coturn max-bps (bench/nat-turn-cap.ts: on
// micro uncapped, TURN_DEFAULTS' (1.5 MB/s; 500 KB/s when the stored results were measured),
// TURN_CAP_LOW, at which micro's exchange should take about 2 s, and half that; with --preset tiny
// the default run's exchange at TURN_DEFAULTS' max-bps and 700 KB/s (1 MB/s and 700 KB/s stored); --caps A,B,... for others), and sets each
// exchange against what the cap predicts: wire bytes / max-bps (coturn counts each direction
// apart, and both ways run at once) and that x RELAY_OVERHEAD, what turn-config checks. Writes
// bench/results/nat-turn-cap.json (micro) or nat-turn-cap-<preset>.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTopology, loopbackTopology, netnsUnavailable, type NatKind, type Topology } from '../tests/support/netns.ts';
import { createMicroRun, startNatRun, swarmUntil, type IceMode, type SwarmMember } from '../tests/support/nat-run.ts';
import { RELAY_OVERHEAD, TURN_DEFAULTS } from '../server/turn-config.ts';
import { runExchangeBytes } from '../src/commands/turn-config.ts';
import { capPrediction, keepLogsDir, rowLogName, turnCapFlagsAlone, turnCapPlan } from './nat-turn-cap.ts';

const quick = process.argv.includes('--quick');
const turnCap = process.argv.includes('--turn-cap');
const stray = turnCapFlagsAlone(process.argv);
if (stray) {
  console.error(`bench:nat: ${stray}`);
  process.exit(1);
}
let plan: ReturnType<typeof turnCapPlan> | null = null;
let logs: string | null = null;
try {
  plan = turnCap ? turnCapPlan(process.argv) : null;
  logs = keepLogsDir(process.argv);
} catch (err) {
  console.error(`bench:nat: ${(err as Error).message}`);
  process.exit(1);
}
const ROUNDS = plan?.rounds ?? (quick ? 3 : 8);
const PRESET = plan?.preset ?? 'micro';

interface Case {
  nat: NatKind | 'loopback'; ice: 'none' | 'stun' | 'stun+turn' | 'turn relay-only';
  /** coturn's max-bps for this row (0: none); bps-capacity is TURN_DEFAULTS' whenever capped. */
  maxBps?: number;
}
interface Row {
  nat: string; ice: string; peers: number; links_tried: number; links_opened: number;
  median_connect_ms: number | null; relay_fraction: number | null; exchange_MBps: number | null;
  partnered_rounds: number; paired_rounds: number; seconds: number;
  /** --turn-cap only: the cap, the median exchange (wire bytes received, transfer ms) and what the cap predicts for it. */
  max_bps?: number; exchange_bytes?: number | null; exchange_ms?: number | null; predicted_ms?: number | null; ms_ratio?: number | null;
  /** --turn-cap: bytes x RELAY_OVERHEAD / max-bps (what turn-config checks), the slowest exchange and its ratio to bytes / max-bps. */
  overhead_ms?: number | null; max_exchange_ms?: number | null; max_ratio?: number | null;
  /** --turn-cap: each volunteer's first partnered round (its receive waits DEFAULT_DEADLINE.initialMs, 15 s). */
  first_exchanges?: { outcome: string; reason: string | null; transfer_ms: number }[];
  /** --turn-cap: where each volunteer's state came from (its summary's joinedFrom: peer, checkpoint or fresh). */
  joined_from?: (string | null)[];
}

const CASES: Case[] = plan ? plan.caps.map((maxBps) => ({ nat: 'cone' as const, ice: 'turn relay-only' as const, maxBps })) : [
  { nat: 'loopback', ice: 'none' },
  { nat: 'cone', ice: 'none' },
  { nat: 'cone', ice: 'stun' },
  { nat: 'symmetric', ice: 'stun' },
  { nat: 'symmetric', ice: 'stun+turn' },
  { nat: 'cone', ice: 'turn relay-only' },
];

const median = (xs: number[]) => {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)]!;
};
const r2 = (x: number | null, d = 2) => (x === null ? null : Math.round(x * 10 ** d) / 10 ** d);

async function measure(c: Case): Promise<Row> {
  const topo: Topology = c.nat === 'loopback' ? loopbackTopology(2) : createTopology({ homes: 2, nat: c.nat });
  const ice: IceMode = { stun: c.ice !== 'none', turn: c.ice.includes('turn') };
  const t0 = Date.now();
  const caps = c.maxBps ? { maxBps: c.maxBps, bpsCapacity: TURN_DEFAULTS.bpsCapacity } : undefined;
  const run = await startNatRun(topo, ice, { turnCaps: caps });
  try {
    createMicroRun(run, PRESET, {
      ...(c.ice === 'turn relay-only' ? { icePolicy: 'relay' } : {}),
      ...(plan ? { preset: plan.preset, train: plan.train } : {}),
    });
    const partnered = (m: SwarmMember) => m.rounds.filter((r) => r.exchange.partner !== null);
    const logDir = logs === null ? undefined : join(resolve(logs), rowLogName(c.nat, c.ice, c.maxBps));
    if (logDir) mkdirSync(logDir, { recursive: true });
    const members = await swarmUntil(run, PRESET, [0, 1], (all) => all.every((m) => partnered(m).length >= ROUNDS), 600_000,
      logDir ? { logDir, extra: ['--verbose'] } : {});
    if (logDir) process.stderr.write(`bench:nat: volunteer logs in ${logDir}\n`);
    const given = members.flatMap(partnered);
    const paired = given.filter((r) => r.exchange.outcome === 'paired');
    const links = paired.map((r) => r.exchange.link).filter((l) => l !== null && l !== undefined);
    const summaries = members.map((m) => m.summary ?? {});
    const opened = summaries.reduce((a, s) => a + Number(s.linksOpened ?? 0), 0);
    const failed = summaries.reduce((a, s) => a + Number(s.linkFailures ?? 0), 0);
    const timed = paired.filter((r) => r.exchange.transferMs > 0);
    const rates = timed.map((r) => r.exchange.bytesReceived / 1e6 / (r.exchange.transferMs / 1000));
    const capped = c.maxBps === undefined ? {} : (() => {
      const bytes = median(timed.map((r) => r.exchange.bytesReceived));
      const ms = median(timed.map((r) => r.exchange.transferMs));
      const p = c.maxBps && bytes !== null ? capPrediction(bytes, c.maxBps) : null;
      const slowest = timed.length ? Math.max(...timed.map((r) => r.exchange.transferMs)) : null;
      return {
        max_bps: c.maxBps, exchange_bytes: bytes, exchange_ms: ms, predicted_ms: p?.predicted_ms ?? null,
        ms_ratio: p && ms !== null ? r2(ms / p.predicted_ms) : null, overhead_ms: p?.overhead_ms ?? null,
        max_exchange_ms: slowest, max_ratio: p && slowest !== null ? r2(slowest / p.predicted_ms) : null,
        first_exchanges: members.map((m) => partnered(m)[0]!).map((r) => ({ outcome: r.exchange.outcome, reason: r.exchange.reason, transfer_ms: r.exchange.transferMs })),
        joined_from: summaries.map((s) => (typeof s.joinedFrom === 'string' ? s.joinedFrom : null)),
      };
    })();
    return {
      nat: c.nat, ice: c.ice, peers: 2, links_tried: opened + failed, links_opened: opened,
      median_connect_ms: r2(median(links.map((l) => l!.connectMs).filter((x): x is number => x !== null)), 0),
      relay_fraction: links.length ? r2(links.filter((l) => l!.local === 'relay' || l!.remote === 'relay').length / links.length) : null,
      exchange_MBps: r2(median(rates)),
      partnered_rounds: given.length, paired_rounds: paired.length, seconds: Math.round((Date.now() - t0) / 1000),
      ...capped,
    };
  } finally {
    run.stop();
    topo.destroy();
  }
}

const missing = netnsUnavailable();
if (missing) {
  console.error(`bench:nat needs network namespaces: ${missing}`);
  process.exit(1);
}
const rows: Row[] = [];
for (const c of CASES) {
  process.stderr.write(`bench:nat: ${c.nat} / ${c.ice}${c.maxBps !== undefined ? ` / max-bps ${c.maxBps}` : ''} ...\n`);
  rows.push(await measure(c));
}
const load = loadavg();
if (turnCap) {
  console.log(`\nTURN per-session cap (2 CPU volunteers on ${PRESET}, relay-only, ${ROUNDS} partnered rounds each; ${cpus().length} cores, load ${load.map((x) => x.toFixed(1)).join(' ')})\n`);
  const head = ['max-bps', 'paired/partnered', 'bytes each way', 'MB/s', 'exchange ms', 'bytes/max-bps ms', `x${RELAY_OVERHEAD} ms`, 'ratio', 'slowest ms', 'slowest ratio', 'first exchanges', 'joined from'];
  console.log(head.map((h) => h.padEnd(18)).join(''));
  for (const r of rows) {
    console.log([r.max_bps || 'none', `${r.paired_rounds}/${r.partnered_rounds}`, r.exchange_bytes ?? '-', r.exchange_MBps ?? '-', r.exchange_ms ?? '-', r.predicted_ms ?? '-', r.overhead_ms ?? '-', r.ms_ratio ?? '-',
      r.max_exchange_ms ?? '-', r.max_ratio ?? '-', (r.first_exchanges ?? []).map((f) => `${f.outcome === 'paired' ? 'paired' : f.reason ?? f.outcome} ${f.transfer_ms}`).join(', '), (r.joined_from ?? []).join(', ')]
      .map((x) => String(x).padEnd(18)).join(''));
  }
  const out = join(dirname(fileURLToPath(import.meta.url)), 'results', plan!.out);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify({
    bench: 'nat-turn-cap', quick, date: new Date().toISOString(), machine: { cores: cpus().length, load },
    setup: { preset: PRESET, compression: 'none', backend: 'cpu', volunteers: 2, partnered_rounds_each: ROUNDS, ice: 'relay-only, cone NATs',
      ...(PRESET === 'micro' ? {} : { train: plan!.train, payload_bytes: runExchangeBytes({ preset: PRESET, compression: 'none' }).bytes, relay_overhead: RELAY_OVERHEAD }),
      turn: `coturn 4.6 (murmur turn-config), bps-capacity ${TURN_DEFAULTS.bpsCapacity} when capped`,
      predicted: 'exchange_bytes (wire bytes received, median) / max_bps; ms_ratio = exchange_ms / predicted_ms' +
        (PRESET === 'micro' ? '' : `; overhead_ms = predicted_ms x ${RELAY_OVERHEAD}; max_ratio = max_exchange_ms / predicted_ms; first_exchanges: each volunteer's first partnered round, against the 15 s first wait`) },
    rows,
  }, null, 2) + '\n');
  console.log(`wrote ${out}`);
  process.exit(0);
}
console.log(`\nNAT benchmark (2 CPU volunteers on micro, ${ROUNDS} partnered rounds each; ${cpus().length} cores, load ${load.map((x) => x.toFixed(1)).join(' ')})\n`);
const head = ['nat', 'ice', 'links tried', 'opened', 'connect ms', 'relay', 'MB/s', 'paired/partnered', 's'];
console.log(head.map((h) => h.padEnd(18)).join(''));
for (const r of rows) {
  console.log([r.nat, r.ice, r.links_tried, r.links_opened, r.median_connect_ms ?? '-', r.relay_fraction ?? '-', r.exchange_MBps ?? '-', `${r.paired_rounds}/${r.partnered_rounds}`, r.seconds]
    .map((x) => String(x).padEnd(18)).join(''));
}
const ref = rows[0]!;
console.log(`\nconnect time vs loopback: ${rows.slice(1).map((r) => `${r.nat}/${r.ice} ${r.median_connect_ms && ref.median_connect_ms ? (r.median_connect_ms / ref.median_connect_ms).toFixed(1) + 'x' : '-'}`).join(', ')}`);
const out = join(dirname(fileURLToPath(import.meta.url)), 'results', quick ? 'nat-quick.json' : 'nat.json');
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify({
  bench: 'nat', quick, date: new Date().toISOString(), machine: { cores: cpus().length, load },
  setup: { preset: 'micro', backend: 'cpu', volunteers: 2, partnered_rounds_each: ROUNDS, turn: 'coturn 4.6 (murmur turn-config)', nat: 'nftables masquerade (cone) / masquerade random,fully-random (symmetric)' },
  rows,
}, null, 2) + '\n');
console.log(`wrote ${out}`);
process.exit(0);
