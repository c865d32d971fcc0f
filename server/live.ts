// Live stream to dashboards as Server-Sent Events (GET /api/runs/:run/stream): one text/event-stream
// per dashboard, events `report`, `peer`, `checkpoint`, `run`. A dashboard that cannot keep up
// (more than maxBufferedBytes unsent) is disconnected rather than allowed to grow memory; the
// browser's EventSource reconnects by itself and fills the gap through the REST query.
// Streams are capped per client address and per run besides the global cap, so one client
// cannot take the slots a researcher's dashboard needs; and a run's streams are shared among
// addresses: on a full run, the address holding the most gives up its newest stream to one
// holding fewer, so a crowd of addresses cannot hold them all (63 addresses of 8 did).
import type { ServerResponse } from 'node:http';
import { OpenCounter, siteKey } from './address-budget.ts';

export interface LiveLimits {
  /** All streams together: each holds a socket and a send buffer. */
  maxSubscribers: number;
  /** Streams one client address (IPv6: one /64) may hold. */
  perAddress: number;
  /**
   * Streams all the /64s of one IPv6 /48 (siteKey) may hold together: 4 /64s' worth, as for
   * WebSockets. Without it 125 /64s of one /48, 8 streams each, held all 1,000 and every
   * dashboard of every run was refused.
   */
  perSite: number;
  /** Streams on one run. */
  perRun: number;
}

export const DEFAULT_LIVE_LIMITS: LiveLimits = { maxSubscribers: 1000, perAddress: 8, perSite: 32, perRun: 500 };

export type LiveEvent = 'report' | 'peer' | 'checkpoint' | 'run';

interface Subscriber {
  res: ServerResponse;
  runId: string;
  address: string;
  /** Forgets the stream and frees its places (once). */
  drop: () => void;
}

export class LiveHub {
  private readonly subs = new Set<Subscriber>();
  private keepAlive: ReturnType<typeof setInterval> | null = null;
  readonly stats = { sent: 0, dropped: 0, displaced: 0 };

  /** Streams open now. */
  get count(): number {
    return this.subs.size;
  }

  private readonly byAddress: OpenCounter;
  private readonly bySite: OpenCounter;
  private readonly byRun: OpenCounter;

  constructor(private readonly maxBufferedBytes = 1 << 20, keepAliveMs = 15_000, readonly limits: LiveLimits = DEFAULT_LIVE_LIMITS) {
    this.byAddress = new OpenCounter(limits.perAddress);
    this.bySite = new OpenCounter(limits.perSite);
    this.byRun = new OpenCounter(limits.perRun);
    // A comment line now and then keeps proxies from closing an idle stream. It is held to the
    // same bound as an event: a client that stopped reading on a quiet run once had keep-alives
    // queued for it without end, since the bound was checked only when an event was published.
    this.keepAlive = setInterval(() => {
      for (const s of this.subs) if (!this.dropIfBehind(s)) s.res.write(': keep-alive\n\n');
    }, keepAliveMs);
    this.keepAlive.unref?.();
  }

  get size(): number {
    return this.subs.size;
  }

  /**
   * Reserves a stream for `address` (an addressKey) on `runId`: null when a cap is reached (the
   * error says which), otherwise a function that takes over the raw response (already hijacked
   * from Fastify) as the event stream, with `headers` (the security headers of every answer,
   * securityHeaders in server/routes/web.ts: a hijacked response skips Fastify's hooks).
   */
  admit(runId: string, address: string): { error: string; status: 429 | 503 } | ((res: ServerResponse, headers: Record<string, string>) => void) {
    if (this.subs.size >= this.limits.maxSubscribers) return { status: 503, error: `${this.subs.size} dashboards are connected, the limit; try again later` };
    const addr = this.byAddress.acquire(address);
    if (!addr) return { status: 429, error: `this address holds ${this.limits.perAddress} live streams, the limit; close one first` };
    const site = siteKey(address);
    const siteRelease = site === null ? () => {} : this.bySite.acquire(site);
    if (!siteRelease) {
      addr();
      return { status: 429, error: `this address's /48 holds ${this.limits.perSite} live streams, the limit; close one first` };
    }
    let run = this.byRun.acquire(runId);
    if (!run) {
      const crowded = this.displaceable(runId, address);
      if (crowded) {
        this.stats.displaced++;
        crowded.drop();
        crowded.res.destroy(); // its browser reconnects, and finds its address at its share
        run = this.byRun.acquire(runId);
      }
    }
    if (!run) {
      addr();
      siteRelease();
      return { status: 503, error: `run ${runId} has ${this.limits.perRun} live streams, the limit, and no address holds more than one over this one's; try again later` };
    }
    const release = run;
    return (res, headers) => this.subscribe(runId, address, res, headers, () => { addr(); siteRelease(); release(); });
  }

  /**
   * On a full run, the newest stream of the address holding the most of the run's streams, if
   * it holds at least two more than `address` (one more would only swap the two, back and forth).
   */
  private displaceable(runId: string, address: string): Subscriber | null {
    const held = new Map<string, Subscriber[]>();
    for (const s of this.subs) {
      if (s.runId !== runId) continue;
      const list = held.get(s.address);
      if (list) list.push(s);
      else held.set(s.address, [s]);
    }
    const mine = held.get(address)?.length ?? 0;
    let most: Subscriber[] = [];
    for (const list of held.values()) if (list.length > most.length) most = list;
    // Subscribers are kept in the order they came: the last of an address's is its newest.
    return most.length >= mine + 2 ? most[most.length - 1]! : null;
  }

  private subscribe(runId: string, address: string, res: ServerResponse, headers: Record<string, string>, release: () => void): void {
    // A client gone before its stream starts: its response will not emit 'close' again.
    if (res.destroyed) return release();
    res.writeHead(200, {
      ...headers,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write('retry: 2000\n\n');
    let dropped = false;
    const sub: Subscriber = {
      res, runId, address, drop: () => {
        if (dropped) return;
        dropped = true;
        this.subs.delete(sub);
        release();
      },
    };
    this.subs.add(sub);
    res.on('close', sub.drop);
    res.on('error', sub.drop);
  }

  publish(runId: string, event: LiveEvent, data: unknown): void {
    if (this.subs.size === 0) return;
    const frame = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    for (const s of this.subs) {
      if (s.runId !== runId || this.dropIfBehind(s)) continue;
      s.res.write(frame);
      this.stats.sent++;
    }
  }

  /** Drops `s` when it holds more than maxBufferedBytes unsent; true when it did. */
  private dropIfBehind(s: Subscriber): boolean {
    if (s.res.writableLength <= this.maxBufferedBytes) return false;
    this.stats.dropped++;
    this.subs.delete(s);
    s.res.destroy(); // its close event releases the slot
    return true;
  }

  close(): void {
    if (this.keepAlive) clearInterval(this.keepAlive);
    this.keepAlive = null;
    for (const s of this.subs) s.res.end();
    this.subs.clear();
  }
}
