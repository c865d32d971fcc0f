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
// --turn-cap runs only the relay-only case, once per coturn max-bps (uncapped, TURN_DEFAULTS'
// (1 MB/s; 500 KB/s when the stored results were measured), TURN_CAP_LOW, at which micro's exchange should take about 2 s, and half that), and sets each
// exchange against what the cap predicts: payload wire bytes / max-bps (coturn counts each
// direction apart, and both ways run at once). Writes bench/results/nat-turn-cap.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTopology, loopbackTopology, netnsUnavailable, type NatKind, type Topology } from '../tests/support/netns.ts';
import { createMicroRun, startNatRun, swarmUntil, type IceMode, type SwarmMember } from '../tests/support/nat-run.ts';
import { TURN_DEFAULTS } from '../server/turn-config.ts';

const quick = process.argv.includes('--quick');
const turnCap = process.argv.includes('--turn-cap');
const ROUNDS = quick ? 3 : 8;
/** micro's f32 exchange is 282 KB each way: at 140 KB/s about 2 s, where the default's fraction of a second hides in the round. */
const TURN_CAP_LOW = 140_000;

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
}

const CASES: Case[] = turnCap ? [
  { nat: 'cone', ice: 'turn relay-only', maxBps: 0 },
  { nat: 'cone', ice: 'turn relay-only', maxBps: TURN_DEFAULTS.maxBps },
  { nat: 'cone', ice: 'turn relay-only', maxBps: TURN_CAP_LOW },
  { nat: 'cone', ice: 'turn relay-only', maxBps: TURN_CAP_LOW / 2 },
] : [
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
    createMicroRun(run, 'micro', c.ice === 'turn relay-only' ? { icePolicy: 'relay' } : {});
    const partnered = (m: SwarmMember) => m.rounds.filter((r) => r.exchange.partner !== null);
    const ms = await swarmUntil(run, 'micro', [0, 1], (all) => all.every((m) => partnered(m).length >= ROUNDS), 600_000);
    const given = ms.flatMap(partnered);
    const paired = given.filter((r) => r.exchange.outcome === 'paired');
    const links = paired.map((r) => r.exchange.link).filter((l) => l !== null && l !== undefined);
    const summaries = ms.map((m) => m.summary ?? {});
    const opened = summaries.reduce((a, s) => a + Number(s.linksOpened ?? 0), 0);
    const failed = summaries.reduce((a, s) => a + Number(s.linkFailures ?? 0), 0);
    const timed = paired.filter((r) => r.exchange.transferMs > 0);
    const rates = timed.map((r) => r.exchange.bytesReceived / 1e6 / (r.exchange.transferMs / 1000));
    const capped = c.maxBps === undefined ? {} : (() => {
      const bytes = median(timed.map((r) => r.exchange.bytesReceived));
      const ms = median(timed.map((r) => r.exchange.transferMs));
      const predicted = c.maxBps && bytes !== null ? (bytes / c.maxBps) * 1000 : null;
      return { max_bps: c.maxBps, exchange_bytes: bytes, exchange_ms: ms, predicted_ms: r2(predicted, 0), ms_ratio: predicted && ms !== null ? r2(ms / predicted) : null };
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
  console.log(`\nTURN per-session cap (2 CPU volunteers on micro, relay-only, ${ROUNDS} partnered rounds each; ${cpus().length} cores, load ${load.map((x) => x.toFixed(1)).join(' ')})\n`);
  const head = ['max-bps', 'paired/partnered', 'bytes each way', 'MB/s', 'exchange ms', 'cap predicts ms', 'ratio'];
  console.log(head.map((h) => h.padEnd(18)).join(''));
  for (const r of rows) {
    console.log([r.max_bps || 'none', `${r.paired_rounds}/${r.partnered_rounds}`, r.exchange_bytes ?? '-', r.exchange_MBps ?? '-', r.exchange_ms ?? '-', r.predicted_ms ?? '-', r.ms_ratio ?? '-']
      .map((x) => String(x).padEnd(18)).join(''));
  }
  const out = join(dirname(fileURLToPath(import.meta.url)), 'results', 'nat-turn-cap.json');
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify({
    bench: 'nat-turn-cap', quick, date: new Date().toISOString(), machine: { cores: cpus().length, load },
    setup: { preset: 'micro', compression: 'none', backend: 'cpu', volunteers: 2, partnered_rounds_each: ROUNDS, ice: 'relay-only, cone NATs',
      turn: `coturn 4.6 (murmur turn-config), bps-capacity ${TURN_DEFAULTS.bpsCapacity} when capped`,
      predicted: 'exchange_bytes (wire bytes received, median) / max_bps; ms_ratio = exchange_ms / predicted_ms' },
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
