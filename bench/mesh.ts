// Mesh benchmark: what one outer exchange costs on the wire and in time.
//   1. bytes per outer exchange per peer vs model size, for each compression setting (exact
//      frame accounting, checked against a measured exchange);
//   2. exchange time on loopback: two peers over real WebRTC (@roamhq/wrtc) in this process;
//   3. the CPU cost of the sync pipeline per MB (CRC-32, f16, q8 encode/decode);
//   4. compression on vs off in a NoLoCo simulation on the CPU reference: bytes and final loss.
// Prints tables and writes bench/results/mesh.json. Usage: npm run bench:mesh [-- --quick]
import { writeFileSync, mkdirSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { preset, type PresetName } from '../src/model/config.ts';
import { buildLayout } from '../src/model/layout.ts';
import { crc32 } from '../src/protocol/crc32.ts';
import { payloadBytes } from '../src/protocol/frame.ts';
import { compressionForRun } from '../src/protocol/exchange-link.ts';
import { decodeTensor, encodeTensor } from '../src/sync/compress.ts';
import { wireBytes } from '../src/sync/exchange.ts';
import { Swarm, gaussian, sleep } from '../tests/support/swarm.ts';
import { chaosLinks } from '../tests/support/chaos.ts';
import { lossRows, type LossRow } from './mesh-loss.ts';

const quick = process.argv.includes('--quick');
const COMPRESSIONS = ['none', 'fp16', 'bf16', 'int8'] as const;
const round = (x: number, d: number) => Math.round(x * 10 ** d) / 10 ** d;
const mb = (b: number) => b / 1e6;
// Peer ids from the coordinator are "p-" + 16 hex digits; run ids are short slugs.
const RUN_ID = 'default';
const PEER_ID = 'p-0123456789abcdef';

interface BytesRow { preset: string; params: number; floats: number; compression: string; bytes_per_exchange: number; vs_f32: number }
interface TimeRow { preset: string; floats: number; compression: string; reps: number; bytes_sent: number; transfer_ms_median: number; exchange_ms_median: number; mb_per_s: number }
interface CpuRow { op: string; mb_per_s: number }

function bytesRows(presets: PresetName[]): BytesRow[] {
  const rows: BytesRow[] = [];
  for (const name of presets) {
    const layout = buildLayout(preset(name));
    const f32 = perExchange(layout.total, 'none');
    for (const c of COMPRESSIONS) {
      const b = perExchange(layout.total, c);
      rows.push({ preset: name, params: layout.params, floats: layout.total, compression: c, bytes_per_exchange: b, vs_f32: round(b / f32, 4) });
    }
  }
  return rows;
}

/** Bytes one peer sends in one exchange: φ and Δ frames, headers included. */
function perExchange(floats: number, compression: string): number {
  const c = compressionForRun(compression);
  return wireBytes(RUN_ID, PEER_ID, payloadBytes(c.phi, floats), undefined) + wireBytes(RUN_ID, PEER_ID, payloadBytes(c.delta, floats), undefined);
}

async function timeRows(presets: PresetName[], reps: number): Promise<TimeRow[]> {
  const rows: TimeRow[] = [];
  for (const name of presets) {
    const floats = buildLayout(preset(name)).total;
    for (const compression of ['none', 'int8'] as const) {
      // Count what really goes on the wire (φ and Δ frames of peer p0) to check the accounting.
      const onWire = new Map<number, number>();
      const swarm = new Swarm({
        n: 2, transport: 'wrtc', elements: floats, seed: 1,
        wrap: (id, links) => (id !== 'p0' ? links : chaosLinks(links, (f, { chunk }) => {
          if (chunk && chunk.kind !== 'state') onWire.set(chunk.round, (onWire.get(chunk.round) ?? 0) + f.length);
          return [f];
        })),
        init: { runId: RUN_ID, compression: compressionForRun(compression), deadline: { minMs: 60_000, maxMs: 120_000, initialMs: 120_000 } },
      });
      await swarm.connected(1);
      const phi = gaussian(floats, 1, 0.02);
      const transfer: number[] = [], total: number[] = [];
      let sent = 0;
      for (let r = 0; r < reps; r++) {
        const results = await Promise.all(swarm.peers.map((p, i) => p.mesh.exchange(r, { phi, delta: gaussian(floats, 10 + i + r, 1e-3) }, { waitMs: 5000 })));
        const c = compressionForRun(compression);
        const expected = wireBytes(RUN_ID, 'p0', payloadBytes(c.phi, floats), undefined) + wireBytes(RUN_ID, 'p0', payloadBytes(c.delta, floats), undefined);
        await sleep(20);
        if (onWire.get(r) !== expected || results[0].bytesSent !== expected) {
          throw new Error(`byte accounting is off: ${onWire.get(r)} bytes on the wire, ${results[0].bytesSent} reported, ${expected} computed`);
        }
        for (const res of results) {
          if (res.outcome !== 'paired') throw new Error(`bench exchange ${name}/${compression} round ${r} went solo: ${res.reason}`);
          transfer.push(res.transferMs);
          total.push(res.elapsedMs);
          sent = res.bytesSent;
        }
        await sleep(50);
      }
      swarm.destroy();
      const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
      const tm = med(transfer);
      rows.push({
        preset: name, floats, compression, reps, bytes_sent: sent,
        transfer_ms_median: round(tm, 1), exchange_ms_median: round(med(total), 1),
        // Both directions share this process's loopback and CPU: 2x the bytes in transfer_ms.
        mb_per_s: round(mb(2 * sent) / (tm / 1000), 1),
      });
      await sleep(200);
    }
  }
  return rows;
}

function cpuRows(): CpuRow[] {
  const n = 4_000_000; // 16 MB of f32
  const x = gaussian(n, 3, 1e-3);
  const bytes = new Uint8Array(x.buffer);
  const rate = (label: string, mbytes: number, fn: () => unknown): CpuRow => {
    fn(); // warm
    const t0 = performance.now();
    const k = 3;
    for (let i = 0; i < k; i++) fn();
    return { op: label, mb_per_s: round((k * mbytes) / ((performance.now() - t0) / 1000), 0) };
  };
  const f16 = encodeTensor('f16', x), q8 = encodeTensor('q8', x), residual = new Float32Array(n);
  return [
    rate('crc32 (slicing-by-8)', mb(bytes.length), () => crc32(bytes)),
    rate('f32 -> f16 encode', mb(bytes.length), () => encodeTensor('f16', x)),
    rate('f16 -> f32 decode', mb(bytes.length), () => decodeTensor('f16', f16, n)),
    rate('f32 -> q8 encode + error feedback', mb(bytes.length), () => encodeTensor('q8', x, residual)),
    rate('q8 -> f32 decode', mb(bytes.length), () => decodeTensor('q8', q8, n)),
  ];
}

function table(head: string[], rows: (string | number)[][]): void {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  console.log(head.map((h, i) => h.padStart(w[i])).join('  '));
  for (const r of rows) console.log(r.map((c, i) => String(c).padStart(w[i])).join('  '));
}

async function main(): Promise<void> {
  const loadBefore = loadavg()[0]!;
  const bytes = bytesRows(['micro', 'tiny', 'small', 'base']);
  console.log('1. Bytes one peer sends per outer exchange (φ + Δ, frame headers included; it receives the same)\n');
  table(['preset', 'params', 'compression', 'MB/exchange', 'vs f32'], bytes.map((r) => [r.preset, r.params, r.compression, mb(r.bytes_per_exchange).toFixed(3), r.vs_f32.toFixed(3)]));

  const timePresets: PresetName[] = quick ? ['micro', 'tiny'] : ['micro', 'tiny', 'small'];
  const times = await timeRows(timePresets, quick ? 3 : 5);
  console.log('\n2. One exchange between two peers on loopback (real WebRTC via @roamhq/wrtc, both in this process), median\n');
  table(['preset', 'compression', 'MB sent', 'transfer ms', 'exchange ms', 'MB/s (both ways)'], times.map((r) => [r.preset, r.compression, mb(r.bytes_sent).toFixed(3), r.transfer_ms_median, r.exchange_ms_median, r.mb_per_s]));

  const cpu = cpuRows();
  console.log('\n3. CPU cost of the sync pipeline (single thread)\n');
  table(['operation', 'MB/s of f32 input'], cpu.map((r) => [r.op, r.mb_per_s]));


  console.log('\n4. Compression in a NoLoCo simulation (CPU reference, micro, lockstep random pairs): same seeds and pairings\n');
  const loss: LossRow[] = await lossRows(quick);
  table(['compression', 'replicas', 'rounds x H', 'MB sent/peer', 'final val loss', 'vs none', 'weight spread'], loss.map((r) => [
    r.compression, r.replicas, `${r.rounds} x ${r.H}`, mb(r.bytes_per_peer).toFixed(2), r.final_val_loss.toFixed(4),
    (r.vs_none >= 0 ? '+' : '') + r.vs_none.toFixed(4), r.weight_spread.toExponential(2),
  ]));

  const load = [loadBefore, loadavg()[0]!].map((x) => round(x, 2));
  console.log(`\n1-min load average before/after: ${load.join(' / ')} on ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown CPU'})`);
  const out = join(dirname(fileURLToPath(import.meta.url)), 'results', 'mesh.json');
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify({
    benchmark: 'mesh', node: process.version, cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length,
    loadavg_1m_before_after: load, date: new Date().toISOString(), quick,
    bytes_per_exchange: bytes, loopback_exchange: times, cpu_pipeline: cpu, compression_loss: loss,
  }, null, 2) + '\n');
  console.log(`\nwrote ${out}`);
  // wrtc keeps native threads until its connections are collected; the results are written.
  setTimeout(() => process.exit(0), 100);
}

await main();
