// What anonymous reads may cost the coordinator. GET /metrics, /connectivity and /events are
// public and run synchronous SQLite on the event loop that also relays every volunteer's signals
// and pairs their readies. Identical questions share one cached answer (server/metrics.ts,
// AnswerCache), but a client that varies its range gets a fresh query each time: 0.2-0.5 s of
// event loop on a full run (200,000 rows). So each such read is timed, and charged to its client
// address and to all clients together; one that would start while either is spent is refused
// with 429 and a Retry-After, before any query runs. The admin token is never refused: the
// researcher's own tools read what they need. The defaults leave an honest dashboard (one
// history and a few pages at load, then the live stream) far inside its share.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { addressKey, TimeBudget } from './address-budget.ts';
import { bearer, tokenEquals } from './auth.ts';

export interface ReadLimits {
  /** Event-loop milliseconds per second one client address earns, and the most it can hold. */
  perAddressMsPerS: number;
  perAddressBurstMs: number;
  /** The same for every anonymous client together: what is left is the volunteers'. */
  totalMsPerS: number;
  totalBurstMs: number;
  /** Monotonic milliseconds: how long a read took, and how much a budget has earned back (default performance.now). */
  now?: () => number;
}

/** Seconds of earnings a budget can gather: what a client may spend at once after a quiet spell. */
export const READ_BURST_S = 8;

/**
 * A quarter of a core per address, half a core in all, each able to gather 8 s of it: two seconds
 * of reads at once per address (a dashboard's first load on a full run takes a fraction of it).
 */
export const DEFAULT_READ_LIMITS: ReadLimits = { perAddressMsPerS: 250, perAddressBurstMs: 250 * READ_BURST_S, totalMsPerS: 500, totalBurstMs: 500 * READ_BURST_S };

export class ReadBudget {
  private readonly perAddress: TimeBudget;
  private readonly total: TimeBudget;
  private readonly now: () => number;
  readonly stats = { reads: 0, refused: 0, chargedMs: 0 };

  constructor(readonly limits: ReadLimits, private readonly adminToken: string) {
    this.now = limits.now ?? performance.now.bind(performance);
    this.perAddress = new TimeBudget(limits.perAddressMsPerS, limits.perAddressBurstMs, this.now);
    this.total = new TimeBudget(limits.totalMsPerS, limits.totalBurstMs, this.now);
  }

  private isAdmin(req: FastifyRequest): boolean {
    const presented = bearer(req.headers.authorization);
    return presented !== null && tokenEquals(presented, this.adminToken);
  }

  /**
   * `work()`'s result, charged to the request's client address and to the total; or, when
   * either budget is spent, `null` after a 429 naming it with a Retry-After in seconds (the
   * route then returns `reply`). The admin token is never refused and never charged.
   */
  spend<T>(req: FastifyRequest, reply: FastifyReply, work: () => T): T | null {
    if (this.isAdmin(req)) return work();
    const key = addressKey(req.ip);
    const mine = this.perAddress.waitMs(key);
    const all = this.total.waitMs('');
    if (mine > 0 || all > 0) {
      this.stats.refused++;
      const waitMs = Math.max(mine, all);
      const whose = mine >= all
        ? `this address has used its ${this.limits.perAddressMsPerS} ms per second of the coordinator's time for metric, connectivity and event reads`
        : `anonymous clients together have used their ${this.limits.totalMsPerS} ms per second of the coordinator's time for metric, connectivity and event reads (the rest is the volunteers')`;
      void reply.code(429).header('retry-after', String(Math.max(1, Math.ceil(waitMs / 1000))))
        .send({ error: `${whose}; retry in ${(waitMs / 1000).toFixed(1)} s`, code: 'read-budget' });
      return null;
    }
    const t0 = this.now();
    try {
      return work();
    } finally {
      const ms = this.now() - t0;
      this.perAddress.charge(key, ms);
      this.total.charge('', ms);
      this.stats.reads++;
      this.stats.chargedMs += ms;
    }
  }

  /** Addresses holding a debt or a partial budget (bounded by TimeBudget.maxKeys). */
  get keys(): number {
    return this.perAddress.keys;
  }
}
