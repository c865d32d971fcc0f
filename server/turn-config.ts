// A coturn configuration that matches the coordinator: the same shared secret (TURN REST
// credentials, server/ice.ts), and the lines that keep a public TURN server from becoming a
// proxy into its operator's network: relaying to private, loopback, link-local, carrier-grade
// NAT, documentation, benchmarking and multicast ranges is denied; so is any range the operator
// names (the coordinator's other addresses, the office LAN). Relay ports are a bounded range,
// allocations per user and bandwidth are capped, and the admin CLI is off.
import { isIP } from 'node:net';
import { TURN_USERS_PER_SITE } from './ice.ts';
import type { DeadlineSettings } from '../src/protocol/exchange-link.ts';

export interface TurnConfigOptions {
  secret: string;
  realm: string;
  /** Address coturn listens on (the host's public or private interface address). */
  listenIp: string;
  /** Address relays are allocated on (default: listenIp). */
  relayIp?: string;
  /** Public address when the host sits behind 1:1 NAT (cloud instances): coturn's external-ip. */
  externalIp?: string;
  port: number;
  /** TLS listener (turns:) with these PEM files; port 5349. */
  tls?: { cert: string; key: string; port: number };
  minPort: number;
  maxPort: number;
  /** Concurrent allocations per TURN user (one client address: server/ice.ts turnUser) and in all. */
  userQuota: number;
  totalQuota: number;
  /**
   * Bytes per second per session, and for the whole server (0: no cap). coturn reserves each new
   * allocation's max-bps out of the capacity and refuses one (486) once it is spent, so the
   * capacity also bounds allocations: at least one /48's users at full rate must leave room.
   */
  maxBps: number;
  bpsCapacity: number;
  /** Extra ranges to deny ("a.b.c.d-e.f.g.h" or CIDR), and exceptions to every deny. */
  deny: string[];
  allow: string[];
}

/**
 * A user is a client address, so its quota is a host's: 16 allocations, a few volunteers' links
 * each (one allocation per link a volunteer relays, and a relayed link is the rare route between
 * two symmetric NATs). An IPv6 /64 is one address, and the /64s of one /48 share
 * TURN_USERS_PER_SITE (4) users (server/ice.ts): at most 64 allocations a /48. One relay port per
 * allocation, so the port range holds the total quota (1,200).
 *
 * Bandwidth: 1.5 MB/s a session each way (12 Mbit/s) and 125 MB/s for all together (1 Gbit/s
 * each way, coturn counts in and out apart). The session cap is sized for the default run: a
 * relayed exchange of tiny without compression carries 8,326,144 bytes each way, which at max-bps
 * takes bytes / max-bps x RELAY_OVERHEAD = 12.77 s, 1.17x inside the 15 s a volunteer's first
 * exchange waits (src/protocol/exchange-link.ts); the least cap that fits is 1,277,000. At the
 * previous 1.25 MB/s it takes 15.32 s at RELAY_OVERHEAD 2.3 (12.66 s at the 1.9 of its day);
 * at 1 MB/s 19.15 s. 1.5 MB/s itself is not yet measured.
 *
 * Without a total a joined stranger's allocations relayed to any public address at whatever the
 * host's link held. coturn reserves max-bps per allocation from the capacity and refuses the next
 * (486) once it is spent, so the capacity holds 83 sessions at full rate, and the capacity, not
 * the total quota, is what a stranger would exhaust. One /48's users at their quota may reserve at
 * most MAX_SITE_SHARE (4/5) of it: 4 x 16 x 1.5 MB/s = 96 MB/s, 77%, a /64 user's 24 MB/s 19%;
 * taking all of it takes 6 addresses or 2 /48s. Raising max-bps to 1.5 MB/s is why the user quota
 * fell from 20 to 16: at 17 one /48 would reserve 102 MB/s, past the 4/5 (100 MB/s).
 */
export const TURN_DEFAULTS = {
  port: 3478, minPort: 49160, maxPort: 50359, userQuota: 16, totalQuota: 1200, maxBps: 1_500_000, bpsCapacity: 125_000_000,
} as const;

/**
 * How much longer a relayed exchange takes than its payload bytes each way / max-bps: DTLS, SCTP
 * and TURN framing, and coturn's pacing. The rule: the worst ratio any bench/results/nat-turn-cap*.json
 * measured where the cap paces (a row's median or its slowest exchange), rounded up to the next
 * 0.05. On micro, nat-turn-cap.json measured 1.21x at 140 KB/s and 1.02x at 70 KB/s (1.22x of the
 * 281,600 payload bytes this module counts). On tiny, the default run's 8.3 MB,
 * nat-turn-cap-tiny.json measured slowest exchanges of 1.61x at 1 MB/s and 1.69x at 700 KB/s (so
 * 1.7 until then), four more rows at 1 MB/s (nat-turn-cap-tiny-join-before.json and -after.json)
 * 1.86x, 1.69x, 1.73x and 1.79x (so 1.9), and two rows at 1.25 MB/s
 * (nat-turn-cap-tiny-1250k.json) 2.26x and 1.93x. The worst is that file's slowest exchange,
 * 15,088 ms against 6,661 ms of payload / max-bps, 2.265x (2.26x of the wire bytes), a later exchange: every first exchange
 * there (11,776, 11,655, 9,159 and 12,888 ms) fit the 15 s wait. So an exchange is predicted to
 * take bytes x 2.3 / max-bps. The rule takes the worst ever, measured on 2 cores busy with CPU
 * volunteers (and, for that file, a test suite), so it is conservative: the tail includes CPU stalls.
 */
export const RELAY_OVERHEAD = 2.3;

/**
 * The most of coturn's bps-capacity one IPv6 /48's TURN_USERS_PER_SITE users may reserve at their
 * quota: a fifth stays for everyone else whatever one site does, so taking it all takes two /48s,
 * and one /64 user (a quarter of a site) gets at most a fifth.
 */
export const MAX_SITE_SHARE = 4 / 5;

/**
 * The run a relay is sized for: its preset and compression (the coordinator's run config), and
 * the bytes each way of one of its exchanges (`runExchangeBytes`, src/commands/turn-config.ts).
 */
export interface RelayedRun { preset: string; compression: string; bytes: number }

/** How long a volunteer waits for its partner's payload: DEFAULT_DEADLINE's bounds (src/protocol/exchange-link.ts). */
export type ReceiveDeadline = Pick<DeadlineSettings, 'initialMs' | 'maxMs'>;

/** The smallest max-bps (rounded up to 1,000) that carries `bytes` within `ms`. */
export const bpsFor = (bytes: number, ms: number): number => Math.ceil(bytes / (ms / 1000) / 1000) * 1000;

/**
 * What coturn's max-bps does to `run`'s exchange between two relayed volunteers: both directions
 * run at once and coturn caps each direction of a session apart, so an exchange takes its bytes
 * each way / max-bps, times RELAY_OVERHEAD for the framing and pacing
 * bench/results/nat-turn-cap*.json measured. A receive waits at most `deadline.maxMs` (60 s) for
 * the partner's payload, so past that no relayed exchange ever finishes: refused. Past `initialMs`
 * (15 s, a volunteer's first exchange, before it has measured a rate) each relayed volunteer's
 * first exchange misses and is a solo round, after which the deadline grows to fit: a warning.
 * 0 is no cap, nothing to check.
 */
export function relayedExchange(maxBps: number, run: RelayedRun, deadline: ReceiveDeadline): { seconds: number | null; warning: string | null } {
  if (maxBps === 0) return { seconds: null, warning: null };
  const bytes = run.bytes * RELAY_OVERHEAD;
  const ms = (bytes / maxBps) * 1000;
  const seconds = Math.round(ms / 10) / 100;
  const what = `a relayed exchange of ${run.preset} (compression ${run.compression}: ${run.bytes} bytes each way, x ${RELAY_OVERHEAD} relay overhead) ` +
    `takes ${seconds} s at max-bps ${maxBps}`;
  const { maxMs, initialMs } = deadline;
  if (ms > maxMs) {
    throw new Error(`${what}, longer than the ${maxMs / 1000} s a volunteer waits for its partner's payload (src/protocol/exchange-link.ts): ` +
      `relayed volunteers would never finish an exchange; raise --max-bps to at least ${bpsFor(bytes, maxMs)} (and --bps-capacity with it, ` +
      'or lower --user-quota), or give the run a smaller --compression');
  }
  const warning = ms > initialMs
    ? `${what}, longer than the ${initialMs / 1000} s a volunteer's first exchange may take: each relayed volunteer's first exchange will miss it ` +
      `and be a solo round (later ones wait up to ${maxMs / 1000} s); --max-bps ${bpsFor(bytes, initialMs)} keeps it in time`
    : null;
  return { seconds, warning };
}

/**
 * Ranges a relay must never reach (IANA special-purpose registries): this host's loopback, the
 * operator's private networks, link-local (cloud metadata at 169.254.169.254), CGNAT, and
 * ranges that are not public unicast.
 */
export const DENIED_RANGES: readonly string[] = [
  '0.0.0.0-0.255.255.255', // "this" network
  '10.0.0.0-10.255.255.255', // private
  '100.64.0.0-100.127.255.255', // carrier-grade NAT
  '127.0.0.0-127.255.255.255', // loopback
  '169.254.0.0-169.254.255.255', // link-local, cloud metadata
  '172.16.0.0-172.31.255.255', // private
  '192.0.0.0-192.0.0.255', // IETF protocol assignments
  '192.0.2.0-192.0.2.255', // documentation
  '192.88.99.0-192.88.99.255', // 6to4 relay anycast
  '192.168.0.0-192.168.255.255', // private
  '198.18.0.0-198.19.255.255', // benchmarking
  '198.51.100.0-198.51.100.255', // documentation
  '203.0.113.0-203.0.113.255', // documentation
  '224.0.0.0-255.255.255.255', // multicast, reserved, broadcast
  '::1', // loopback
  '::ffff:0.0.0.0-::ffff:255.255.255.255', // IPv4-mapped: the IPv4 rules must not be bypassed
  '64:ff9b::-64:ff9b::ffff:ffff', // NAT64
  'fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', // unique local
  'fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff', // link-local
];

/** "a.b.c.d/n" -> "first-last" (coturn takes ranges); single addresses and ranges pass through. */
export function toRange(spec: string): string {
  const s = spec.trim();
  const cidr = /^(\d+\.\d+\.\d+\.\d+)\/(\d{1,2})$/.exec(s);
  if (cidr) {
    const bits = Number(cidr[2]);
    if (isIP(cidr[1]!) !== 4 || bits > 32) throw new Error(`"${spec}" is not an IPv4 CIDR range`);
    const ip = cidr[1]!.split('.').reduce((a, o) => a * 256 + Number(o), 0);
    const size = 2 ** (32 - bits);
    const first = Math.floor(ip / size) * size;
    return `${dotted(first)}-${dotted(first + size - 1)}`;
  }
  const parts = s.split('-');
  if (parts.length > 2 || parts.some((p) => isIP(p) === 0)) throw new Error(`"${spec}" is not an address, a range a-b or an IPv4 CIDR`);
  return s;
}

const dotted = (n: number) => [24, 16, 8, 0].map((sh) => Math.floor(n / 2 ** sh) % 256).join('.');

/** coturn's relay port range, as both the config and the firewall rules take it. */
function checkRelayPorts(o: { minPort: number; maxPort: number }): void {
  if (!(o.minPort >= 1024 && o.maxPort <= 65535 && o.minPort <= o.maxPort)) throw new Error(`relay ports ${o.minPort}-${o.maxPort} must lie within 1024-65535`);
}

/**
 * coturn reserves max-bps per allocation out of bps-capacity and refuses allocations past it, so
 * one /48's TURN_USERS_PER_SITE users at their quota must reserve at most MAX_SITE_SHARE of it.
 * The error names what would fit: the capacity, the user quota or the max-bps.
 */
function checkSiteShare(o: { userQuota: number; maxBps: number; bpsCapacity: number }): void {
  if (o.bpsCapacity === 0) return;
  const site = TURN_USERS_PER_SITE * o.userQuota * o.maxBps;
  if (site <= o.bpsCapacity * MAX_SITE_SHARE) return;
  const share = site / o.bpsCapacity;
  const fits = Math.floor((o.bpsCapacity * MAX_SITE_SHARE) / (TURN_USERS_PER_SITE * o.maxBps));
  throw new Error(`one /48's ${TURN_USERS_PER_SITE} users x user quota ${o.userQuota} x max bps ${o.maxBps} = ${site} would reserve ` +
    `${Math.round(share * 100)}% of the bps capacity of ${o.bpsCapacity}, more than ${Math.round(MAX_SITE_SHARE * 100)}%: coturn refuses ` +
    `allocations once the capacity is reserved, so one client could take ${share >= 1 ? 'every relay' : 'nearly every relay'}; ` +
    `raise --bps-capacity to at least ${Math.ceil(site / MAX_SITE_SHARE)}` +
    (fits >= 1 ? `, lower --user-quota to ${fits}` : '') +
    ` or lower --max-bps to ${Math.floor((o.bpsCapacity * MAX_SITE_SHARE) / (TURN_USERS_PER_SITE * o.userQuota))}`);
}

export function turnConfig(o: TurnConfigOptions): string {
  for (const [name, ip] of [['listen', o.listenIp], ['relay', o.relayIp], ['external', o.externalIp]] as const) {
    if (ip !== undefined && isIP(ip) === 0) throw new Error(`--${name}-ip "${ip}" is not an IP address`);
  }
  if (!/^[A-Za-z0-9.-]{1,100}$/.test(o.realm)) throw new Error(`realm "${o.realm}" must be a domain-like name`);
  if (o.secret.length < 16 || /\s/.test(o.secret)) throw new Error('the TURN secret must be at least 16 characters, without spaces');
  checkRelayPorts(o);
  const ports = o.maxPort - o.minPort + 1;
  if (ports < o.totalQuota) {
    throw new Error(`relay ports ${o.minPort}-${o.maxPort} are ${ports}, fewer than the total quota of ${o.totalQuota} allocations (one port each): ` +
      'the ports would run out first, before any quota held; widen the range or lower --total-quota');
  }
  if (o.userQuota > o.totalQuota) throw new Error(`the user quota (${o.userQuota}) is above the total quota (${o.totalQuota})`);
  if (o.bpsCapacity > 0 && o.maxBps === 0) throw new Error(`a bps capacity (${o.bpsCapacity}) needs a per-session max bps: without one coturn reserves nothing per session and the first session may take it all`);
  checkSiteShare(o);
  const relayIp = o.relayIp ?? o.listenIp;
  const lines = [
    '# coturn configuration written by `murmur turn-config`; it holds the TURN secret: keep it mode 600.',
    '# Volunteers get credentials from the coordinator (TURN REST: username "<expiry>:<tag of the client address>").',
    `listening-ip=${o.listenIp}`,
    `listening-port=${o.port}`,
    `relay-ip=${relayIp}`,
    ...(o.externalIp ? [`external-ip=${o.externalIp}${o.externalIp !== relayIp ? `/${relayIp}` : ''}`] : []),
    ...(o.tls ? [`tls-listening-port=${o.tls.port}`, `cert=${o.tls.cert}`, `pkey=${o.tls.key}`, 'no-tlsv1', 'no-tlsv1_1'] : ['no-tls', 'no-dtls']),
    `realm=${o.realm}`,
    'use-auth-secret',
    `static-auth-secret=${o.secret}`,
    'fingerprint',
    'stale-nonce=600',
    // Volunteers relay WebRTC data channels over UDP: no TCP relays (RFC 6062) to open for anyone.
    'no-tcp-relay',
    'no-cli',
    'no-multicast-peers',
    `min-port=${o.minPort}`,
    `max-port=${o.maxPort}`,
    `user-quota=${o.userQuota}`,
    `total-quota=${o.totalQuota}`,
    ...(o.maxBps > 0 ? [`max-bps=${o.maxBps}`] : []),
    ...(o.bpsCapacity > 0 ? [`bps-capacity=${o.bpsCapacity}`] : []),
    '# Never relay into the operator\'s network or to special-purpose addresses:',
    ...[...DENIED_RANGES, ...o.deny.map(toRange)].map((r) => `denied-peer-ip=${r}`),
    '# Exceptions: the relay address itself (two relayed volunteers reach each other through it)',
    '# and any range the operator allowed.',
    ...[relayIp, ...(o.externalIp ? [o.externalIp] : []), ...o.allow.map(toRange)].map((r) => `allowed-peer-ip=${r}`),
    'simple-log',
    'log-file=stdout',
    '',
  ];
  return lines.join('\n');
}

/** The nftables table `turnFirewall` writes (`nft list table inet murmur_turn` shows its drop counter). */
export const TURN_FIREWALL_TABLE = 'murmur_turn';

/**
 * nftables rules for the TURN host, loaded beside coturn (`nft -f`). coturn relays to its own
 * relay address on any port: the address is allowed (two relayed volunteers reach each other
 * through it), and behind 1:1 NAT coturn allows it and its external address whatever the deny
 * lists say. So anyone holding credentials could send UDP from the TURN host itself to every
 * service it has on that address (a DNS resolver, syslog, SNMP), past a firewall that filters by
 * source. These rules drop what `user` (coturn's) sends from a relay port to any address of this
 * host on a port outside the relay range; relays still reach each other and the internet.
 */
export function turnFirewall(o: { minPort: number; maxPort: number; user: string }): string {
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(o.user)) throw new Error(`--turn-user "${o.user}" is not a user name (coturn's user, e.g. turnserver)`);
  checkRelayPorts(o);
  const relay = `${o.minPort}-${o.maxPort}`;
  return [
    '# nftables rules written by `murmur turn-config`: load with `nft -f` (and at boot) on the TURN host.',
    '# coturn may relay to this host\'s own addresses (its relay address is allowed); these keep such',
    '# datagrams to coturn\'s relay ports, so no holder of TURN credentials reaches another UDP service here.',
    `table inet ${TURN_FIREWALL_TABLE}`,
    `delete table inet ${TURN_FIREWALL_TABLE}`,
    `table inet ${TURN_FIREWALL_TABLE} {`,
    '  chain output {',
    '    type filter hook output priority 0; policy accept;',
    `    meta skuid "${o.user}" udp sport ${relay} fib daddr type local udp dport != ${relay} counter drop`,
    '  }',
    '}',
    '',
  ].join('\n');
}
