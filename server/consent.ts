// The widget's consent requests: a click on Start (or Resume) in the widget's frame registers a
// nonce here and opens the consent window (/consent#nonce), a top-level page of this origin that
// no embedding page can frame, fade or zoom; the frame trains only once that window's Allow was
// pressed for its own nonce (docs/design.md section 6). Each request is kept for a few minutes at
// most, and there are at most so many per client address, per IPv6 /48 and in all (the keys of
// server/address-budget.ts), so no client can grow this without bound; when all places are
// taken, a new request takes the oldest place of whoever holds the most (evict), so no client
// can fill it to refuse everyone.
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
  /** The nonces open per holder (holder()), oldest first: whom evict() takes a place from. */
  private readonly holders = new Map<string, Set<string>>();

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

  /** Who holds a request of `address` (an addressKey): its IPv6 /48, or the address itself. */
  private static holder(address: string): string {
    return siteKey(address) ?? address;
  }

  /**
   * Makes room for one more when all places are taken: drops the oldest request, pending or
   * answered, of the holder (an IPv4 address or an IPv6 /48) with the most open. A client that
   * fills the store from many addresses cannot lock every widget out (a 503 for all, renewed every
   * few minutes from 2,500 IPv4 addresses or 313 /48s): each new request takes a place of the
   * largest holder, and an honest visitor, holding one, loses theirs only to a client with as many
   * holders as there are places.
   */
  private evict(): boolean {
    let most: Set<string> | undefined;
    for (const held of this.holders.values()) if (!most || held.size > most.size) most = held;
    const oldest = most?.values().next();
    if (!oldest || oldest.done) return false;
    this.drop(oldest.value);
    return true;
  }

  /**
   * Opens a request for `nonce` from `address` (an addressKey). The caller has checked that `site`
   * may embed `run`. 409 for a nonce already open, 429 when the address or its /48 has its share
   * open; when all places are taken, one of the largest holder's requests gives way (evict).
   */
  open(nonce: string, run: string, site: string, address: string): ConsentEntry {
    this.sweep();
    if (this.entries.has(nonce)) throw new ConsentError('this consent nonce is already registered: make a fresh one for each request', 409);
    const mine = this.addresses.acquire(address);
    if (!mine) throw new ConsentError(`this address has ${this.limits.perAddress} consent requests open, its limit; answer or close one, or wait ${this.limits.ttlMs / 60_000} minutes`, 429);
    const site48 = siteKey(address);
    const ours = site48 === null ? () => {} : this.sites.acquire(site48);
    if (!ours) {
      mine();
      throw new ConsentError(`this network (${site48}) has ${this.limits.perSite} consent requests open, its limit; try again in a few minutes`, 429);
    }
    while (this.entries.size >= this.limits.total && this.evict());
    const created = this.now();
    const entry = { run, site, created, state: 'pending' as ConsentState, expiresAt: created + this.limits.ttlMs };
    const key = ConsentRequests.holder(address);
    let held = this.holders.get(key);
    if (!held) this.holders.set(key, held = new Set());
    held.add(nonce);
    this.entries.set(nonce, {
      ...entry,
      release: () => {
        mine();
        ours();
        held.delete(nonce);
        if (held.size === 0 && this.holders.get(key) === held) this.holders.delete(key);
      },
    });
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
