// `murmur serve`: the coordinator (HTTP + WebSocket on one port, SQLite under the data dir).
// On a public host it also hands volunteers their ICE servers (STUN, TURN through coturn with
// short-lived credentials) and serves HTTPS, which browsers require for WebGPU; docs/deploy.md.
import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { resolve } from 'node:path';
import { coordinatorOptions, intInRange } from './options.ts';
import { READ_BURST_S, type ReadLimits } from '../../server/read-budget.ts';
import { DOWNLOAD_BURST_S, type DownloadLimits } from '../../server/download-budget.ts';
import type { PeerHubOptions } from '../../server/peers.ts';

interface ServeOptions {
  dataDir: string; port: string; host: string; checkpointEvery: string; keep: string; logLevel: string; evalThreads?: string;
  stun: string[]; turn: string[]; turnSecretFile?: string; turnTtl: string; tlsCert?: string; tlsKey?: string;
  trustProxy: string[]; readBudget: string; downloadBudget: string; downloadPlaces: string; inlineReads?: boolean;
  sockets: string; hellos: string;
}

const collect = (v: string, acc: string[]) => [...acc, v];

/** proxy-addr's named ranges (what Fastify's trustProxy takes besides addresses and CIDRs). */
const PROXY_RANGES = new Set(['loopback', 'linklocal', 'uniquelocal']);

/** `--trust-proxy` values (repeatable, each comma-separated): addresses, CIDRs or named ranges. */
export function trustProxyList(values: string[]): string[] {
  const list = values.flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v !== '');
  for (const entry of list) {
    if (PROXY_RANGES.has(entry)) continue;
    const [addr = '', bits, extra] = entry.split('/');
    const family = isIP(addr);
    const max = family === 6 ? 128 : 32;
    const bitsOk = bits === undefined || (/^\d+$/.test(bits) && Number(bits) <= max) || (family === 4 && isIP(bits) === 4);
    if (family === 0 || extra !== undefined || !bitsOk) {
      throw new Error(`--trust-proxy takes addresses, CIDRs (198.51.100.0/24, fd00::/8) or loopback | linklocal | uniquelocal, got "${entry}"`);
    }
  }
  return list;
}

/**
 * "<per address>,<all clients>": two whole numbers from 1 to `max`, the first no more than the
 * second; otherwise an error in `flag`'s words (`unit` says what they count).
 */
function perAddressPair(value: string, flag: string, unit: string, max: number, byDefault: string, off: boolean): [number, number] {
  const parts = value.split(',').map((v) => v.trim());
  const [mine, all] = parts.map(Number);
  const ok = (n: number | undefined) => n !== undefined && Number.isInteger(n) && n >= 1 && n <= max;
  if (parts.length !== 2 || !ok(mine) || !ok(all) || mine! > all!) {
    throw new Error(`${flag} takes "<per address>,<all clients>"${unit} (1 to ${max} each, the first no more than the second; default ${byDefault})${off ? ' or "off"' : ''}, got "${value}"`);
  }
  return [mine!, all!];
}

/** `--read-budget`: "<per address>,<all clients>" event-loop ms per second, each able to gather 8 s of it; "off": none. */
export function readBudgetOption(value: string): ReadLimits {
  if (value.trim() === 'off') return { perAddressMsPerS: Infinity, perAddressBurstMs: Infinity, totalMsPerS: Infinity, totalBurstMs: Infinity };
  const [mine, all] = perAddressPair(value, '--read-budget', ' in milliseconds per second', 1000, '250,500', true);
  return { perAddressMsPerS: mine, perAddressBurstMs: mine * READ_BURST_S, totalMsPerS: all, totalBurstMs: all * READ_BURST_S };
}

/**
 * `--download-budget`: "<per address>,<all clients>" MiB per second of anonymous downloads, each
 * able to gather DOWNLOAD_BURST_S seconds of it (the run's peers' data and bootstrap states keep
 * their own share, DEFAULT_DOWNLOAD_LIMITS.peerBytesPerS); "off": no byte budget, for either (the
 * caps on open downloads and the cut of stalled ones stay).
 */
export function downloadBudgetOption(value: string): Partial<DownloadLimits> {
  if (value.trim() === 'off') return { perAddressBytesPerS: Infinity, perAddressBurstBytes: Infinity, totalBytesPerS: Infinity, totalBurstBytes: Infinity, peerBytesPerS: Infinity, peerBurstBytes: Infinity };
  const [mine, all] = perAddressPair(value, '--download-budget', ' in MiB per second', 100_000, '8,64', true).map((n) => n * 1024 * 1024) as [number, number];
  return { perAddressBytesPerS: mine, perAddressBurstBytes: mine * DOWNLOAD_BURST_S, totalBytesPerS: all, totalBurstBytes: all * DOWNLOAD_BURST_S };
}

/** `--download-places`: "<per address>,<all clients>" anonymous downloads open at once. */
export function downloadPlacesOption(value: string): Pick<DownloadLimits, 'perAddressStreams' | 'totalStreams'> {
  const [mine, all] = perAddressPair(value, '--download-places', ', downloads open at once', 100_000, '8,256', false);
  return { perAddressStreams: mine, totalStreams: all };
}

/**
 * "<per address>,<per site>": two whole numbers from 1 to `max`, the first no more than the
 * second (an address, an IPv6 /64, is part of its site, a /48); otherwise an error in `flag`'s words.
 */
function perSitePair(value: string, flag: string, unit: string, max: number, byDefault: string): [number, number] {
  const parts = value.split(',').map((v) => v.trim());
  const [mine, site] = parts.map(Number);
  const ok = (n: number | undefined) => n !== undefined && Number.isInteger(n) && n >= 1 && n <= max;
  if (parts.length !== 2 || !ok(mine) || !ok(site) || mine! > site!) {
    throw new Error(`${flag} takes "<per address>,<per IPv6 /48>"${unit} (1 to ${max} each, the first no more than the second; default ${byDefault}), got "${value}"`);
  }
  return [mine!, site!];
}

/**
 * `--sockets` and `--hellos`: volunteer WebSockets one client address (an IPv6 /64) and one IPv6
 * /48 may hold open, and the hellos (joins) a minute each may send, with a burst of twice that.
 * A campus or a carrier's NAT behind one address or one /48 needs more than the defaults.
 */
export function connectionCapsOption(sockets: string, hellos: string): Pick<PeerHubOptions,
  'maxConnectionsPerAddress' | 'maxConnectionsPerSite' | 'hellosPerMinute' | 'helloBurst' | 'siteHellosPerMinute' | 'siteHelloBurst'> {
  const [perAddress, perSite] = perSitePair(sockets, '--sockets', ', WebSockets open at once', 100_000, '64,256');
  const [hellosAddress, hellosSite] = perSitePair(hellos, '--hellos', ' a minute', 100_000, '60,240');
  return {
    maxConnectionsPerAddress: perAddress, maxConnectionsPerSite: perSite,
    hellosPerMinute: hellosAddress, helloBurst: 2 * hellosAddress, siteHellosPerMinute: hellosSite, siteHelloBurst: 2 * hellosSite,
  };
}

export function register(program: Command): void {
  coordinatorOptions(program.command('serve')
    .description('run the coordinator: web app, volunteer WebSocket, metrics, checkpoints and data on one port'))
    .option('--checkpoint-every <seconds>', 'seconds between scheduled checkpoints per run (0: only on request)', '600')
    .option('--keep <n>', 'newest checkpoints kept per run', '5')
    .option('--eval-threads <n>', 'worker threads that measure an uploaded checkpoint\'s validation loss (default: every CPU but one, counting a container\'s CPU quota, at most 8)')
    .option('--log-level <level>', 'fatal | error | warn | info | debug', 'info')
    .option('--stun <url>', 'STUN server for volunteers, e.g. stun:turn.example.org:3478 (repeatable)', collect, [])
    .option('--turn <url>', 'TURN server for volunteers, e.g. turn:turn.example.org:3478 (repeatable; needs the secret)', collect, [])
    .option('--turn-secret-file <file>', 'coturn\'s static-auth-secret, in a file only its owner can read (or env MURMUR_TURN_SECRET)')
    .option('--turn-ttl <seconds>', 'lifetime of each volunteer\'s TURN credential (renewed before it expires)', '3600')
    .option('--tls-cert <file>', 'serve HTTPS with this certificate (PEM); browsers give WebGPU only to secure contexts')
    .option('--tls-key <file>', 'the certificate\'s private key (PEM)')
    .option('--read-budget <ms,ms>', 'event-loop milliseconds per second that anonymous metric, connectivity, event, peer-list and run reads may take, per client address and all together; past it they get 429 and Retry-After ("off": unlimited)', '250,500')
    .option('--download-budget <MiB,MiB>', 'MiB per second that anonymous downloads (data, checkpoints, states, exports) may take, per client address and all together, each gathering 128 s of it; past it they get 429 and Retry-After ("off": unlimited)', '8,64')
    .option('--download-places <n,n>', 'anonymous downloads open at once, per client address and all together (each holds a file and a socket); past it 429 and Retry-After', '8,256')
    .option('--sockets <n,n>', 'volunteer WebSockets one client address (an IPv6 /64) and one IPv6 /48 may hold open; past it a connection is refused', '64,256')
    .option('--hellos <n,n>', 'hellos (joins) a minute one client address (an IPv6 /64) and one IPv6 /48 may send, each with a burst of twice that; past it a hello is refused', '60,240')
    .option('--inline-reads', 'compute metric and connectivity answers on the event loop rather than in their worker thread (for comparison: bench/reads.ts)')
    .option('--trust-proxy <addr|cidr,...>', 'reverse proxies (e.g. 127.0.0.1 for Caddy on this host) whose X-Forwarded-For names the client, so per-address limits count clients, not the proxy (repeatable; default: none, the header is ignored)', collect, [])
    .action(async (o: ServeOptions) => {
      const port = intInRange(o.port, '--port', 0, 65535);
      const every = intInRange(o.checkpointEvery, '--checkpoint-every', 0, 365 * 24 * 3600);
      const keep = intInRange(o.keep, '--keep', 1, 10_000);
      const [{ buildApp }, { iceSettings, readSecretFile }] = await Promise.all([import('../../server/app.ts'), import('../../server/ice.ts')]);
      const secret = o.turnSecretFile ? readSecretFile(resolve(o.turnSecretFile)) : (process.env.MURMUR_TURN_SECRET?.trim() || null);
      const ice = iceSettings({ stun: o.stun, turn: o.turn, turnSecret: secret, ttlS: intInRange(o.turnTtl, '--turn-ttl', 10, 7 * 86400) });
      if ((o.tlsCert === undefined) !== (o.tlsKey === undefined)) throw new Error('--tls-cert and --tls-key go together');
      const tls = o.tlsCert && o.tlsKey ? { cert: readFileSync(resolve(o.tlsCert)), key: readFileSync(resolve(o.tlsKey)) } : undefined;
      const trustProxy = trustProxyList(o.trustProxy);
      const reads = readBudgetOption(o.readBudget);
      const downloads = { ...downloadBudgetOption(o.downloadBudget), ...downloadPlacesOption(o.downloadPlaces) };
      const hub = connectionCapsOption(o.sockets, o.hellos);
      const dataDir = resolve(o.dataDir);
      const c = await buildApp({ dataDir, logLevel: o.logLevel, logStream: process.stderr, ice, tls }, {
        checkpointEveryMs: every * 1000, checkpointKeep: keep, trustProxy, reads, downloads, readWorker: !o.inlineReads, hub,
        ...(o.evalThreads !== undefined ? { evalThreads: intInRange(o.evalThreads, '--eval-threads', 1, 256) } : {}),
      });
      const address = await c.app.listen({ port, host: o.host });
      if (c.adminTokenCreated) {
        process.stdout.write(`murmur admin token (shown once; also in ${dataDir}/admin-token): ${c.adminToken}\n`);
      }
      // What each run's exchange asks of a volunteer's link, where it is more than a home uplink
      // (the same words as POST /api/runs answers; src/protocol/exchange-link.ts linkWarning).
      const { runLinkWarning } = await import('../../server/routes/runs.ts');
      for (const run of c.runs.list()) {
        const warning = run.status === 'stopped' ? null : runLinkWarning(run);
        if (warning !== null) process.stdout.write(`murmur: run ${run.id}: ${warning}\n`);
      }
      process.stdout.write(`murmur listening on ${address}\n`);
      // Which ICE servers volunteers get, never the secret.
      process.stdout.write(`murmur ICE: ${ice.stun.length + ice.turn.length === 0 ? 'none (volunteers connect only where their host addresses reach each other)'
        : [...ice.stun, ...ice.turn.map((u) => `${u} (credentials for ${ice.ttlS} s)`)].join(', ')}\n`);
      if (!tls && o.host !== '127.0.0.1' && o.host !== 'localhost' && o.host !== '::1') {
        process.stdout.write('murmur: serving plain HTTP on a non-loopback address: browsers give WebGPU only to https pages; use --tls-cert/--tls-key or a TLS proxy (docs/deploy.md)\n');
      }
      const stop = (sig: string) => {
        c.app.log.info({ signal: sig }, 'shutting down');
        c.close().then(() => process.exit(0), () => process.exit(1));
      };
      process.once('SIGINT', () => stop('SIGINT'));
      process.once('SIGTERM', () => stop('SIGTERM'));
    });
}
