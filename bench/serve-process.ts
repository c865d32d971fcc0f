// A coordinator in its own process for the benchmarks that load it (bench/server.ts,
// bench/reads.ts, bench/downloads.ts), so its CPU and memory are its own; what they read about
// it; and the volunteers whose report acknowledgements they time.
import type { ChildProcess } from 'node:child_process';
import { murmurServe } from '../tests/support/murmur-cli.ts';
import { WebSocket } from 'ws';
import { PROTOCOL_VERSION } from '../src/protocol/messages.ts';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const CLK_TCK = 100; // Linux USER_HZ: /proc times are in 1/100 s

/** `murmur serve` on `dataDir` at a free loopback port, with `args` added, its stderr passed through; resolves once it listens. */
export const startServe = (dataDir: string, args: string[] = []): Promise<{ child: ChildProcess; url: string }> => murmurServe(dataDir, args, { stderr: 'inherit' });

/** Stops a coordinator `startServe` started and waits until it has exited. */
export async function stopServe(child: ChildProcess): Promise<void> {
  child.kill('SIGTERM');
  await new Promise((r) => child.on('exit', r));
}

/** Acknowledgement latencies (sorted ms) quiet and under load, as the load benchmarks report them. */
export function ackSummary(quiet: number[], loud: number[]) {
  const r2 = (x: number) => Math.round(x * 100) / 100;
  return {
    ack_ms_quiet: { p50: r2(percentile(quiet, 50)), p99: r2(percentile(quiet, 99)), n: quiet.length },
    ack_ms_flood: { p50: r2(percentile(loud, 50)), p99: r2(percentile(loud, 99)), max: r2(loud.at(-1) ?? NaN), n: loud.length },
  };
}

/** The p-th percentile of sorted values (NaN for none). */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** utime + stime of a process in seconds, and its resident memory in MB. */
export function procStats(pid: number): { cpuS: number; rssMB: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the ")" that closes the command name; utime and stime are fields 14 and 15.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cpuS = (Number(f[11]) + Number(f[12])) / CLK_TCK;
  const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return { cpuS, rssMB: rss ? Number(rss[1]) / 1024 : NaN };
}

/**
 * `count` volunteers, each from its own loopback address (`<prefix>.<i + 1>`), reporting every
 * `everyMs`; `take()` hands back each report's milliseconds to its acknowledgement since the last
 * take, sorted (the ack follows the SQLite commit, on the coordinator's one event loop).
 */
export async function reporters(url: string, count: number, everyMs: number, prefix: string) {
  const wsUrl = url.replace('http', 'ws') + '/api/ws';
  const lat: number[] = [];
  const timers: ReturnType<typeof setInterval>[] = [];
  const sockets: WebSocket[] = [];
  let errors = 0;
  await Promise.all(Array.from({ length: count }, (_, i) => new Promise<void>((resolve, reject) => {
    // Each its own loopback address: the per-address connection cap is the hub's, not a benchmark's subject.
    const ws = new WebSocket(wsUrl, { localAddress: `${prefix}.${i + 1}` });
    sockets.push(ws);
    const sentAt = new Map<number, number>();
    let seq = 0;
    ws.on('open', () => ws.send(JSON.stringify({ t: 'hello', v: PROTOCOL_VERSION, client: { kind: 'node', adapter: 'bench' } })));
    ws.on('message', (data: Buffer) => {
      const m = JSON.parse(String(data)) as { t: string; seq?: number };
      if (m.t === 'welcome') {
        resolve();
        setTimeout(() => timers.push(setInterval(() => {
          sentAt.set(seq, performance.now());
          ws.send(JSON.stringify({
            t: 'report', seq, time: Date.now(), step: seq, round: seq, trainLoss: 4, valLoss: null,
            tokensPerS: 5000, bytesIn: 1000, bytesOut: 1000, partner: null, partnerDist: null, adapter: 'bench',
          }));
          seq++;
        }, everyMs)), Math.random() * everyMs);
      } else if (m.t === 'ack' && m.seq !== undefined) {
        const t = sentAt.get(m.seq);
        if (t !== undefined) { lat.push(performance.now() - t); sentAt.delete(m.seq); }
      } else if (m.t === 'error') errors++;
    });
    ws.on('error', reject);
  })));
  return {
    take: () => lat.splice(0).sort((a, b) => a - b),
    errors: () => errors,
    stop: () => { for (const t of timers) clearInterval(t); for (const ws of sockets) ws.close(); },
  };
}
