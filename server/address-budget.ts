// Budgets per client address: how many long-lived connections (volunteer WebSockets, dashboard
// event streams, downloads) one address may hold at once, how many hellos it may send per minute,
// and how much of the coordinator's time and bandwidth its reads and downloads may take. One
// client can then take only its share, never every slot a researcher or a volunteer needs.
// An IPv6 client usually owns a whole /64, so its budget is per /64 prefix, and one site's /64s
// together have a coarser budget per /48 (siteKey).
//
// The address comes from the socket or, behind --trust-proxy, from X-Forwarded-For, where it is
// whatever the proxy wrote: "ip:port" (Azure Application Gateway's default), "[v6]", "[v6]:port",
// an IPv4-mapped IPv6 address in any notation. addressKey canonicalises all of them, so one client
// has one key whatever its source port or spelling, and anything it cannot parse shares ONE key
// (INVALID_ADDRESS): an unparseable string kept as is would be a fresh budget (and TURN user) per
// connection.
import { isIP } from 'node:net';
import { compile as compileTrust } from '@fastify/proxy-addr';

/** The one key of every address addressKey cannot parse: together they share one budget. */
export const INVALID_ADDRESS = 'invalid';

/** The eight 16-bit groups of a valid IPv6 address (no zone), a trailing dotted IPv4 included. */
function ipv6Groups(ip: string): number[] {
  let s = ip.toLowerCase();
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(s);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    s = `${s.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = s.split('::');
  const h = head ? head.split(':') : [];
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = tail === undefined ? [] : Array<string>(8 - h.length - t.length).fill('0');
  return [...h, ...zeros, ...t].map((g) => parseInt(g, 16));
}

/** addressKey's /64 keys: already canonical. */
const SLASH64_KEY = /^[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){3}::\/64$/;

/**
 * The budget key of an address: IPv4 as is (IPv4-mapped IPv6, ::ffff:0:0/96 in any notation,
 * unwrapped), IPv6 by its /64, e.g. "2001:db8:0:0::/64"; brackets, a :port and an IPv6 zone are
 * dropped; anything else is INVALID_ADDRESS. A key is its own key (the hub keeps keys and hands
 * them to turnUser).
 */
export function addressKey(raw: string): string {
  let ip = String(raw).trim();
  if (ip === INVALID_ADDRESS || SLASH64_KEY.test(ip)) return ip;
  const bracketed = /^\[([^\]]*)\](?::\d{1,5})?$/.exec(ip);
  if (bracketed) ip = bracketed[1]!;
  else if (/^[\d.]+:\d{1,5}$/.test(ip)) ip = ip.slice(0, ip.lastIndexOf(':')); // IPv4:port
  const kind = isIP(ip);
  if (kind === 4) return ip;
  if (kind !== 6) return INVALID_ADDRESS;
  const g = ipv6Groups(ip.replace(/%.*$/, ''));
  if (g.length !== 8 || g.some((x) => !(x >= 0 && x <= 0xffff))) return INVALID_ADDRESS;
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) {
    return [g[6]! >> 8, g[6]! & 0xff, g[7]! >> 8, g[7]! & 0xff].join('.');
  }
  return `${g.slice(0, 4).map((x) => x.toString(16)).join(':')}::/64`;
}

/**
 * The IPv6 /48 (a site) of an addressKey, e.g. "2001:db8:0::/48"; null for IPv4 and
 * INVALID_ADDRESS. A /48 is 65,536 /64s and costs nothing from a tunnel broker, so caps per /64
 * come with a coarser one per /48 (WebSockets and hellos in server/peers.ts, TURN users in
 * server/ice.ts).
 */
export function siteKey(key: string): string | null {
  const m = /^([0-9a-f]{1,4}:[0-9a-f]{1,4}:[0-9a-f]{1,4}):[0-9a-f]{1,4}::\/64$/.exec(key);
  return m ? `${m[1]}::/48` : null;
}

/**
 * The client an address key stands for: an IPv4 address, or an IPv6 /48 (siteKey), whose 65,536
 * /64s cost one tunnel broker's form. What checkpoint duty is drawn by, and what counts as one
 * witness of a peer's stalls.
 */
export function clientKey(key: string): string {
  return siteKey(key) ?? key;
}

/** Open things per key, each under a cap; `acquire` hands back the release (once), or null when full. */
export class OpenCounter {
  private readonly open = new Map<string, number>();

  constructor(readonly cap: number) {}

  count(key: string): number {
    return this.open.get(key) ?? 0;
  }

  acquire(key: string): (() => void) | null {
    const n = this.count(key);
    if (n >= this.cap) return null;
    this.open.set(key, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = this.count(key) - 1;
      if (left > 0) this.open.set(key, left);
      else this.open.delete(key);
    };
  }

  get keys(): number {
    return this.open.size;
  }
}

/**
 * A token bucket per key (`burst` tokens, refilled at `perMinute`). At most `maxKeys` are kept
 * (the least recently used go first, and a forgotten key starts full again), so an attacker
 * with many addresses cannot grow it without bound.
 */
export class RateBudget {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(readonly perMinute: number, readonly burst: number, private readonly now: () => number, readonly maxKeys = 100_000) {}

  take(key: string): boolean {
    const t = this.now();
    const b = this.buckets.get(key);
    const tokens = b ? Math.min(this.burst, b.tokens + ((t - b.at) / 60_000) * this.perMinute) : this.burst;
    if (tokens < 1) {
      if (b) { b.tokens = tokens; b.at = t; }
      return false;
    }
    this.buckets.delete(key); // re-inserted last: Map order is the eviction order
    this.buckets.set(key, { tokens: tokens - 1, at: t });
    while (this.buckets.size > this.maxKeys) this.buckets.delete(this.buckets.keys().next().value!);
    return true;
  }

  get keys(): number {
    return this.buckets.size;
  }
}

/**
 * An amount per key that refills: at most `burst`, earned back at `perS` a second (event-loop
 * milliseconds for reads, bytes for downloads). A request may start while its key holds something
 * (`waitMs` 0) and is charged what it took (or will send), so one request overdraws by at most
 * its own cost and the key then waits until the debt is repaid. A key back at full is forgotten;
 * at most `maxKeys` are kept (the least recently charged go first and start full again), so many
 * addresses cannot grow it without bound.
 */
export class Allowance {
  private readonly buckets = new Map<string, { held: number; at: number }>();

  constructor(readonly perS: number, readonly burst: number, private readonly now: () => number, readonly maxKeys = 100_000) {}

  /** What `key` holds now. */
  level(key: string): number {
    const b = this.buckets.get(key);
    if (!b) return this.burst;
    return Math.min(this.burst, b.held + ((this.now() - b.at) / 1000) * this.perS);
  }

  /** 0 when `key` may start a request now; otherwise the milliseconds until it may. */
  waitMs(key: string): number {
    const held = this.level(key);
    if (held > 0) return 0;
    return this.perS > 0 ? Math.ceil(((-held) / this.perS) * 1000) + 1 : Infinity;
  }

  /** Takes `amount` from `key` (a negative amount gives back what was charged and not used). */
  charge(key: string, amount: number): void {
    const left = this.level(key) - amount;
    this.buckets.delete(key); // re-inserted last: Map order is the eviction order
    if (left >= this.burst) return;
    this.buckets.set(key, { held: left, at: this.now() });
    while (this.buckets.size > this.maxKeys) this.buckets.delete(this.buckets.keys().next().value!);
  }

  get keys(): number {
    return this.buckets.size;
  }
}

/**
 * Amounts held per key (bytes of answers not yet handed to their sockets), under a cap per key
 * and one for all keys together. An amount is admitted while its key holds nothing, whatever
 * its size, so no answer is refused for being large alone; `acquire` hands back the release
 * (once), or which cap is full.
 */
export class HeldAmounts {
  private readonly held = new Map<string, number>();
  private all = 0;

  constructor(readonly capPerKey: number, readonly capAll: number) {}

  acquire(key: string, n: number): { release: () => void } | { full: 'key' | 'all' } {
    const mine = this.held.get(key) ?? 0;
    if (mine > 0 && mine + n > this.capPerKey) return { full: 'key' };
    if (this.all > 0 && this.all + n > this.capAll) return { full: 'all' };
    this.held.set(key, mine + n);
    this.all += n;
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.all -= n;
        const left = (this.held.get(key) ?? 0) - n;
        if (left > 0) this.held.set(key, left);
        else this.held.delete(key);
      },
    };
  }

  /** What `key` holds, or all keys together without one. */
  holding(key?: string): number {
    return key === undefined ? this.all : this.held.get(key) ?? 0;
  }
}

/** TCP connections one client may hold open to the coordinator at once (ConnectionCap). */
export interface ConnectionLimits {
  /** Per IPv4 address or IPv6 /64 (addressKey). */
  perAddress: number;
  /** Per IPv6 /48 (siteKey), all its /64s together. */
  perSite: number;
}

/**
 * 1,024 an address: 64 volunteer WebSockets, 8 dashboard streams and 8 downloads (the caps of
 * their own budgets) and the page loads of a lab behind one NAT fit many times over; a /48 four
 * addresses' worth, as for WebSockets.
 */
export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = { perAddress: 1024, perSite: 4096 };

/**
 * Open connections per client, counted at the socket, before any request is read. Each holds a
 * file descriptor and the parser's state, and a request whose body comes a byte now and then holds
 * it for the whole requestTimeout (10 minutes): without a cap one client could open connections
 * until the process had no descriptor left for SQLite, checkpoints or new volunteers.
 */
export class ConnectionCap {
  private readonly addresses: OpenCounter;
  private readonly sites: OpenCounter;
  /** Connections closed at once for their client's cap. */
  refused = 0;

  constructor(readonly limits: ConnectionLimits) {
    this.addresses = new OpenCounter(limits.perAddress);
    this.sites = new OpenCounter(limits.perSite);
  }

  /** A connection from `remote` (a socket's peer address): its release (once), or null when its address or /48 is full. */
  admit(remote: string): (() => void) | null {
    const key = addressKey(remote);
    const mine = this.addresses.acquire(key);
    if (!mine) return this.refuse();
    const site = siteKey(key);
    const ours = site === null ? () => {} : this.sites.acquire(site);
    if (!ours) {
      mine();
      return this.refuse();
    }
    return () => { mine(); ours(); };
  }

  /** Connections open from `remote`'s address (its /64 for IPv6). */
  open(remote: string): number {
    return this.addresses.count(addressKey(remote));
  }

  private refuse(): null {
    this.refused++;
    return null;
  }
}

/**
 * Whether a socket peer is one of the proxies named by --trust-proxy (addresses, CIDRs, netmasks,
 * or loopback | linklocal | uniquelocal, as src/commands/serve.ts trustProxyList admits them).
 * Only those connections carry many clients: any other peer reached the port itself and is one
 * client, under the ConnectionCap like any connection without a proxy. The rule is proxy-addr's,
 * the one Fastify trusts X-Forwarded-For by, so the cap and the address keys agree on who a proxy is.
 */
export function proxyMatcher(trusted: readonly string[]): (remote: string) => boolean {
  const trust = compileTrust([...trusted]);
  return (remote) => trust(remote, 0);
}
