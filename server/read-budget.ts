// What anonymous reads may cost the coordinator. GET /metrics, /connectivity and /events are
// public and run SQLite (and /peers lists every live peer of a run; GET /api/runs and /api/runs/:run
// are charged too, their agreed step worked out once a second: PeerHub.agreedStep): identical questions share
// one cached answer (server/metrics.ts, AnswerCache), but a client that varies its range gets a fresh query each time, 0.1-0.9 s on a
// full run (200,000 rows), computed in the read worker (server/read-worker.ts), and every answer,
// cached or not, takes the event loop a few ms per MB to send. So each read is charged what it
// took and what sending it takes to its client address and to all anonymous clients together;
// one that would start while either is spent is refused with 429 and a Retry-After, before any
// query runs. Answers not yet taken by slow connections are bounded in bytes, and each must be
// taken within a deadline its size sets, or its connection is cut. The admin token is
// never refused: the researcher's own tools read what they need. The defaults leave an honest
// dashboard (one history and a few pages at load, then the live stream) far inside its share.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { addressKey, HeldAmounts, OpenCounter, Allowance } from './address-budget.ts';
import { bearer, tokenEquals } from './auth.ts';
import type { Admit } from './metrics.ts';

export interface ReadLimits {
  /** Event-loop milliseconds per second one client address earns, and the most it can hold. */
  perAddressMsPerS: number;
  perAddressBurstMs: number;
  /** The same for every anonymous client together: what is left is the volunteers'. */
  totalMsPerS: number;
  totalBurstMs: number;
  /** Characters of answers not yet handed to sockets, per address and in all (default 16 MiB and 64 MiB). */
  sendingPerAddress?: number;
  sendingTotal?: number;
  /**
   * An answer not handed to its socket within max(sendMinMs, its characters / sendCharsPerS
   * seconds) has its connection cut (default SEND_MIN_MS, SEND_CHARS_PER_S).
   */
  sendMinMs?: number;
  sendCharsPerS?: number;
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

/** A value and what computing it took (ms). */
export interface Costed<T> { value: T; ms: number }

/** Answers one client address, and all anonymous clients together, may have being computed at once. */
export const READS_COMPUTING_PER_ADDRESS = 2;
export const READS_COMPUTING = 16;

const MiB = 1024 * 1024;
/** Answers not yet taken by their connections: two newest pages (8 MB each) per address, eight in all. */
export const SENDING_PER_ADDRESS = 16 * MiB;
export const SENDING_TOTAL = 64 * MiB;

/**
 * Event-loop milliseconds a megabyte of answer takes to send (building the body and writing it to
 * the socket): 4.3 ms measured for an 8.2 MB answer over loopback on the 2-core machine under load;
 * charged for every answer, a cached one too, so a client asking for the same large answer over
 * and over pays for what it costs.
 */
export const SEND_MS_PER_MB = 3;

/**
 * The deadline an answer must be taken by: 10 s, or 64 KiB a second for a larger one (a
 * 20,000-row history, ~4.4 MB, in 67 s). Without one a connection that read nothing held its
 * answer, and its part of SENDING_TOTAL, for as long as it stayed open: 11 addresses asking for
 * the dashboard's history and pausing their sockets kept every other anonymous reader at 429
 * for good. A stricter floor than a download's (16 KiB/s, server/download-budget.ts): an answer
 * waits in this process's memory, a file on disk. A dashboard on a 1 Mbit/s link still reads a
 * full history inside it.
 */
export const SEND_MIN_MS = 10_000;
export const SEND_CHARS_PER_S = 64 * 1024;

class ReadRefused extends Error {}

export class ReadBudget {
  private readonly computingPerAddress = new OpenCounter(READS_COMPUTING_PER_ADDRESS);
  private readonly computing = new OpenCounter(READS_COMPUTING);
  private readonly perAddress: Allowance;
  private readonly total: Allowance;
  private readonly sending: HeldAmounts;
  readonly now: () => number;
  readonly stats = { reads: 0, refused: 0, chargedMs: 0, cut: 0 };

  constructor(readonly limits: ReadLimits, private readonly adminToken: string) {
    this.now = limits.now ?? performance.now.bind(performance);
    this.perAddress = new Allowance(limits.perAddressMsPerS, limits.perAddressBurstMs, this.now);
    this.total = new Allowance(limits.totalMsPerS, limits.totalBurstMs, this.now);
    this.sending = new HeldAmounts(limits.sendingPerAddress ?? SENDING_PER_ADDRESS, limits.sendingTotal ?? SENDING_TOTAL);
  }

  private isAdmin(req: FastifyRequest): boolean {
    const presented = bearer(req.headers.authorization);
    return presented !== null && tokenEquals(presented, this.adminToken);
  }

  /** `fn()`'s value and the milliseconds it took on this budget's clock: a read done on this thread. */
  timed<T>(fn: () => T): Costed<T> {
    const t0 = this.now();
    const value = fn();
    return { value, ms: this.now() - t0 };
  }

  /**
   * Answers the request with the JSON body `work()` makes, its cost charged to the request's
   * client address and to all anonymous clients together: what computing it took, plus what
   * sending it takes the event loop (SEND_MS_PER_MB). Refused with a 429 that says why and when to
   * come back, before `work` runs, when either budget is spent; and, once made, when the address
   * (or everyone) has too many answers being computed (`work` asks `admit` before it computes
   * one) or too many bytes of answers its connections have not taken yet. The admin token is
   * never refused and never charged.
   */
  async serve(req: FastifyRequest, reply: FastifyReply, work: (admit?: Admit) => Promise<Costed<string>> | Costed<string>): Promise<FastifyReply> {
    const send = (body: string) => reply.type('application/json; charset=utf-8').send(body);
    // A client already gone is asked nothing: its response will not emit 'close' again.
    if (reply.raw.destroyed) return reply;
    if (this.isAdmin(req)) return send((await work()).value);
    const key = addressKey(req.ip);
    const refuse = (error: string, waitMs: number): FastifyReply => {
      this.stats.refused++;
      return reply.code(429).header('retry-after', String(Math.max(1, Math.ceil(waitMs / 1000)))).send({ error, code: 'read-budget' });
    };
    const mine = this.perAddress.waitMs(key);
    const all = this.total.waitMs('');
    if (mine > 0 || all > 0) {
      const waitMs = Math.max(mine, all);
      return refuse(`${mine >= all
        ? `this address has used its ${this.limits.perAddressMsPerS} ms per second of the coordinator's time for metric, connectivity, event, peer-list and run reads`
        : `anonymous clients together have used their ${this.limits.totalMsPerS} ms per second of the coordinator's time for metric, connectivity, event, peer-list and run reads (the rest is the volunteers')`
      }; retry in ${(waitMs / 1000).toFixed(1)} s`, waitMs);
    }
    // Answers are computed one after another off the event loop (server/read-worker.ts): a
    // client may have only a few being computed at once, so nobody's read waits behind a crowd of
    // another's, and the time budgets are overdrawn by at most those few. A cached answer needs no place.
    const admit = (): (() => void) => {
      const releaseMine = this.computingPerAddress.acquire(key);
      if (!releaseMine) throw new ReadRefused(`this address has ${READS_COMPUTING_PER_ADDRESS} reads being computed, the limit; wait for one to end`);
      const releaseAll = this.computing.acquire('');
      if (!releaseAll) {
        releaseMine();
        throw new ReadRefused(`${READS_COMPUTING} reads are being computed, the limit for anonymous clients together; retry shortly`);
      }
      return () => { releaseMine(); releaseAll(); };
    };
    let done: Costed<string>;
    try {
      done = await work(admit);
    } catch (err) {
      if (err instanceof ReadRefused) return refuse(err.message, 1000);
      throw err;
    }
    const chars = done.value.length;
    const ms = done.ms + (chars / 1e6) * SEND_MS_PER_MB;
    this.perAddress.charge(key, ms);
    this.total.charge('', ms);
    this.stats.reads++;
    this.stats.chargedMs += ms;
    // A client gone while its answer was made gets none: its response emitted 'close' already,
    // so bytes held for it now would never be released.
    if (reply.raw.destroyed) return reply;
    // An answer larger than all anonymous clients' answers may hold together would, admitted
    // alone, leave no room for anyone else's until it is taken; no wait makes it smaller.
    if (chars > this.sending.capAll) {
      this.stats.refused++;
      return reply.code(400).send({
        error: `this answer is ${(chars / MiB).toFixed(1)} MiB, more than the ${(this.sending.capAll / MiB).toFixed(0)} MiB of unsent answers anonymous clients may hold together; ask for fewer points or a narrower range`,
        code: 'read-budget',
      });
    }
    // A connection that does not read keeps its answer in this process until it does: bounded
    // per address and in all, released once the answer is handed to the socket or the socket
    // closes, and cut once its deadline has passed (SEND_MIN_MS), so no reader holds a place for good.
    const held = this.sending.acquire(key, chars);
    if ('full' in held) {
      return refuse(held.full === 'key'
        ? `this address has ${(this.sending.capPerKey / MiB).toFixed(0)} MiB of answers its connections have not taken yet; read them first`
        : `anonymous clients together have ${(this.sending.capAll / MiB).toFixed(0)} MiB of answers their connections have not taken yet; retry shortly`, 1000);
    }
    const deadlineMs = Math.max(this.limits.sendMinMs ?? SEND_MIN_MS, (chars / (this.limits.sendCharsPerS ?? SEND_CHARS_PER_S)) * 1000);
    const taken = () => {
      clearTimeout(deadline);
      held.release();
    };
    const deadline = setTimeout(() => {
      this.stats.cut++;
      req.log.info({ address: key, chars, deadlineMs, url: req.url.slice(0, 200) }, 'read answer cut: the client did not take it in time');
      // Destroyed, the response drops what it had not written, and emits 'close' only on a later tick.
      taken();
      reply.raw.destroy();
    }, deadlineMs);
    deadline.unref();
    reply.raw.once('finish', taken);
    reply.raw.once('close', taken);
    return send(done.value);
  }

  /** Characters of answers sent to anonymous clients and not yet handed to their sockets. */
  get sendingChars(): number {
    return this.sending.holding();
  }

  /** Addresses holding a debt or a partial budget (bounded by Allowance.maxKeys). */
  get keys(): number {
    return this.perAddress.keys;
  }
}
