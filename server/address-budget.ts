// Budgets per client address: how many long-lived connections (volunteer WebSockets, dashboard
// event streams, downloads) one address may hold at once, how many hellos it may send per minute,
// and how much of the coordinator's time and bandwidth its reads and downloads may take. One
// client can then take only its share, never every slot a researcher or a volunteer needs.
// An IPv6 client usually owns a whole /64, so its budget is per /64 prefix.
import { isIPv6 } from 'node:net';

/** The budget key of an address: IPv4 as is (IPv4-mapped IPv6 unwrapped), IPv6 by its /64. */
export function addressKey(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return mapped[1]!;
  if (!isIPv6(ip)) return ip;
  // Expand "::" so the first four groups are the /64 prefix.
  const [head, tail = ''] = ip.toLowerCase().split('::');
  const h = head ? head.split(':') : [];
  const t = ip.includes('::') ? (tail ? tail.split(':') : []) : [];
  const groups = [...h, ...Array(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t];
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`;
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
