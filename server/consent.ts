// The widget's consent requests: a click on Start (or Resume) in the widget's frame registers a
// nonce here and opens the consent window (/consent#nonce), a top-level page of this origin that
// no embedding page can frame, fade or zoom; the frame trains only once that window's Allow was
// pressed for its own nonce (docs/design.md section 6). Each request is kept for a few minutes at
// most, and there are at most so many per client address, per IPv6 /48 and in all (the keys of
// server/address-budget.ts), so no client can grow this without bound.
import { OpenCounter, siteKey } from './address-budget.ts';
import type { ConsentState } from '../src/protocol/api.ts';

export interface ConsentLimits {
  /** How long a request waits for its decision, and then for the frame to claim it. */
  ttlMs: number;
  /** Requests one client address (addressKey) may have open at once: a visitor with a few tabs. */
  perAddress: number;
  /** The same for all the /64s of one IPv6 /48 together (siteKey). */
  perSite: number;
  /** Requests open in all. */
  total: number;
}

/** Five minutes to answer; a few tabs per address; 10,000 in all (a few MB at most). */
export const DEFAULT_CONSENT_LIMITS: ConsentLimits = { ttlMs: 5 * 60_000, perAddress: 4, perSite: 32, total: 10_000 };

export interface ConsentEntry { run: string; site: string; created: number; state: ConsentState; expiresAt: number }

/** A request refused, with the HTTP status that says why. */
export class ConsentError extends Error {
  constructor(message: string, readonly statusCode: number) {
    super(message);
    this.name = 'ConsentError';
  }
}

export class ConsentRequests {
  /** By nonce, oldest first (the TTL is one for all, so the expired ones are at the front). */
  private readonly entries = new Map<string, ConsentEntry & { release: () => void }>();
  private readonly addresses: OpenCounter;
  private readonly sites: OpenCounter;

  constructor(readonly limits: ConsentLimits, private readonly now: () => number) {
    this.addresses = new OpenCounter(limits.perAddress);
    this.sites = new OpenCounter(limits.perSite);
  }

  /** Forgets every request past its time. */
  private sweep(): void {
    const t = this.now();
    for (const [nonce, e] of this.entries) {
      if (e.expiresAt > t) break;
      this.drop(nonce);
    }
  }

  private drop(nonce: string): void {
    this.entries.get(nonce)?.release();
    this.entries.delete(nonce);
  }

  /**
   * Opens a request for `nonce` from `address` (an addressKey). The caller has checked that `site`
   * may embed `run`. 409 for a nonce already open, 429 when the address or its /48 has its share
   * open, 503 when all are taken.
   */
  open(nonce: string, run: string, site: string, address: string): ConsentEntry {
    this.sweep();
    if (this.entries.has(nonce)) throw new ConsentError('this consent nonce is already registered: make a fresh one for each request', 409);
    if (this.entries.size >= this.limits.total) {
      throw new ConsentError(`the coordinator holds its limit of ${this.limits.total} open consent requests; try again in a few minutes`, 503);
    }
    const mine = this.addresses.acquire(address);
    if (!mine) throw new ConsentError(`this address has ${this.limits.perAddress} consent requests open, its limit; answer or close one, or wait ${this.limits.ttlMs / 60_000} minutes`, 429);
    const site48 = siteKey(address);
    const ours = site48 === null ? () => {} : this.sites.acquire(site48);
    if (!ours) {
      mine();
      throw new ConsentError(`this network (${site48}) has ${this.limits.perSite} consent requests open, its limit; try again in a few minutes`, 429);
    }
    const created = this.now();
    const entry = { run, site, created, state: 'pending' as ConsentState, expiresAt: created + this.limits.ttlMs };
    this.entries.set(nonce, { ...entry, release: () => { mine(); ours(); } });
    return entry;
  }

  /** The request of `nonce`; 404 when there is none (never registered, expired or already claimed). */
  get(nonce: string): ConsentEntry {
    this.sweep();
    const e = this.entries.get(nonce);
    if (!e) throw new ConsentError('no such consent request: it expired, was already used, or never existed. Press Start in the widget again.', 404);
    return { run: e.run, site: e.site, created: e.created, state: e.state, expiresAt: e.expiresAt };
  }

  /** The consent window's answer: 409 once decided. */
  decide(nonce: string, allow: boolean): ConsentEntry {
    this.get(nonce);
    const e = this.entries.get(nonce)!;
    if (e.state !== 'pending') throw new ConsentError(`this consent request was already answered (${e.state})`, 409);
    e.state = allow ? 'allowed' : 'denied';
    return this.get(nonce);
  }

  /** The frame asks: the state, and once it is decided the request is gone (a nonce is used once). */
  claim(nonce: string): ConsentEntry {
    const e = this.get(nonce);
    if (e.state !== 'pending') this.drop(nonce);
    return e;
  }

  get size(): number {
    this.sweep();
    return this.entries.size;
  }
}
