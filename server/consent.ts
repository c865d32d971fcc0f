// The widget's consent requests: a click on Start (or Resume) in the widget's frame registers a
// nonce here and opens the consent window (/consent#nonce), a top-level page of this origin that
// no embedding page can frame, fade or zoom; the frame trains only once that window's Allow was
// pressed for its own nonce (docs/design.md section 6). An allowed request is then the live
// session the frame trains under: the frame holds it (claiming it on) and the window watches it, each renewing its
// own last-seen time, and it ends when either side ends it or is not seen for its time
// (frameMs, windowMs), so the window the visitor can see stays the donation's Stop. A pending
// request is kept a few minutes at most, and there are at most so many per client address, per
// IPv6 /48 and in all (the keys of server/address-budget.ts), live sessions included, so no
// client can grow this without bound; when all places are taken, a new request takes the oldest
// place of whoever holds the most (evict), so no client can fill it to refuse everyone.
//
// A coordinator that stops keeps its sessions, whether it closes (SIGTERM, Ctrl-C) or crashes
// (SIGKILL, out of memory): each change that matters is written to its database as it happens
// (ConsentTable, attached by persistTo: a request registered, answered, ended, forgotten, or its
// window leaving and coming back), one transaction per request to the coordinator that changed
// something, and the next start on the same data dir loads them back with both sides seen afresh
// (loadConsents, restore), so the frame's next claim and the window's next watch find them. A
// claim every 5 s from each frame, and the window's watch, only move a seen-time on, which the
// load sets afresh anyway: they write nothing. The table mirrors the store, so it holds at most
// its 10,000 places; a write that fails is logged, the store goes on in memory, and the next
// change writes the whole store again (a closing coordinator writes it all too, saveConsents).
import type Database from 'better-sqlite3';
import { OpenCounter, siteKey } from './address-budget.ts';
import { CONSENT_NONCE_PATTERN, type ConsentState } from '../src/protocol/api.ts';
import type { Db } from './db.ts';
import { EventQueue } from '../src/protocol/event-queue.ts';

export interface ConsentLimits {
  /** How long a request waits for its decision, and then for the frame to claim a refusal. */
  ttlMs: number;
  /**
   * How long a live session outlives the frame's last claim (CONSENT_HOLD_MS apart while it trains): a frame in a
   * hidden tab may have its timers held to one a minute.
   */
  frameMs: number;
  /**
   * How long it outlives the consent window's last watch (CONSENT_WATCH_MS apart): the window is a
   * pop-up that mostly sits behind the page, and Chromium runs a background page's timers once a
   * minute at most (intensive throttling), so two missed minutes and some.
   */
  windowMs: number;
  /**
   * How long a request outlives the window's pagehide (POST …/leave): a reload sends it as a
   * close does, and the reloaded window (its #nonce kept) watches again at once; a window that
   * does not is taken as closed, which the frame hears at its next claim: a live session as
   * 'closed', a request still unanswered as 'denied' (Don't allow, as closing it unanswered was).
   */
  leaveMs: number;
  /** Requests one client address (addressKey) may have open at once: a visitor with a few tabs. */
  perAddress: number;
  /** The same for all the /64s of one IPv6 /48 together (siteKey). */
  perSite: number;
  /** Requests open in all. */
  total: number;
}

/** Five minutes to answer; a session ends 2 minutes after the frame's last claim, 3 after the window's last watch, and a request or session 15 s after the window left unless it watches again; a few tabs per address; 10,000 in all (a few MB at most). */
export const DEFAULT_CONSENT_LIMITS: ConsentLimits = { ttlMs: 5 * 60_000, frameMs: 2 * 60_000, windowMs: 3 * 60_000, leaveMs: 15_000, perAddress: 4, perSite: 32, total: 10_000 };

/** A request; `maxIntensity`: the most of the GPU's time the widget may use (its frame's ceiling), which the window states. */
export interface ConsentEntry { run: string; site: string; created: number; state: ConsentState; expiresAt: number; maxIntensity: number }

/** A request as the coordinator writes it (the consent_sessions table), and the next start reads it back. */
export interface SavedConsent { nonce: string; run: string; site: string; state: ConsentState; address: string; created: number; left: boolean; maxIntensity: number }

interface Held extends ConsentEntry {
  nonce: string;
  /** The client address that opened it (an addressKey): its place counts against that address and its /48. */
  address: string;
  /** When the frame (claim) and the window (watch) were last heard, while the session is live. */
  frameSeen: number;
  windowSeen: number;
  /** When the window's page went (pagehide: a close or a reload) and it has not watched or answered since; null while it stays. */
  leftAt: number | null;
  /** When a pending request's wait for its answer ends (ttlMs after it was opened or taken back), and then a refusal's wait for the frame to claim it. */
  answerBy: number;
  /** Its place in the expiry queue: due at or before expiresAt (null while popped). */
  due: Due | null;
  release: () => void;
}

/** An entry's time in the expiry queue; stale once the entry is gone or holds another. */
interface Due { time: number; priority: 0; nonce: string }

/** How long a refused registration is remembered: the consent window looks for its request for 10 s (FIND_MS). */
export const REFUSAL_MS = 60_000;

/** How many refused registrations are remembered at most (a few hundred KB): the oldest make way. */
export const REFUSALS_KEPT = 1000;

/**
 * Where the store writes its requests as they change (ConsentTable): what a crash loses is what
 * changed in the request to the coordinator it crashed in.
 */
export interface ConsentSink {
  /** Writes `put` (in place of any row of the same nonce) and deletes the rows of `gone`, as one transaction. */
  write(put: readonly SavedConsent[], gone: readonly string[]): void;
  /** Writes `all` in place of every row, as one transaction. */
  replace(all: readonly SavedConsent[]): void;
}

/** A request refused, with the HTTP status that says why. */
export class ConsentError extends Error {
  constructor(message: string, readonly statusCode: number) {
    super(message);
    this.name = 'ConsentError';
  }
}

export class ConsentRequests {
  /** By nonce, oldest first. */
  private readonly entries = new Map<string, Held>();
  private readonly addresses: OpenCounter;
  private readonly sites: OpenCounter;
  /**
   * Nonces whose registration was refused, with why, for REFUSAL_MS and REFUSALS_KEPT at most
   * (oldest dropped first): the consent window opens before the frame registers its nonce, and
   * says the coordinator's reason rather than that the request never existed.
   */
  private readonly refusals = new Map<string, { reason: string; until: number }>();
  /** The nonces open per holder (holder()), oldest first: whom evict() takes a place from. */
  private readonly holders = new Map<string, Set<string>>();
  /**
   * When each entry is due to be looked at, soonest first (a min-heap): at or before its
   * expiresAt, since a live session's time moves on with each claim and watch, which push nothing.
   * A popped entry whose time has moved on is queued again at its new time (once per frameMs or
   * so for a live session); an item whose entry is gone or queued anew is passed over (lazy
   * deletion), and the queue is rebuilt once such items outnumber the entries.
   */
  private queue = new EventQueue<Due>();
  /** Items the expiry queue has popped: a test's count that expiry costs O(expired) per request, not O(entries). */
  examined = 0;
  /** Where the changes are written (persistTo), and what to do with a write that failed. */
  private sink: { to: ConsentSink; failed: (err: unknown, streak: number) => void } | null = null;
  /** Nonces changed since the last write: each row is written again, or deleted if the entry is gone. */
  private readonly changed = new Set<string>();
  /** The whole store is written at the next change (a write failed). */
  private rewrite = false;
  /** Writes that failed in a row (0 once one succeeds). */
  private failing = 0;
  /** Writes done (transactions): a test's count that a claim or watch renewal writes nothing. */
  written = 0;
  /** Writes that failed, in all. */
  unwritten = 0;

  /**
   * Writes every change that matters from now on to `to` (a ConsentTable), after writing the whole
   * store to it: what a crash loses is then what changed in the request it crashed in. `failed`
   * hears each write that failed and how many failed in a row; the requests stay in memory, and the
   * next change writes the whole store again.
   */
  persistTo(to: ConsentSink, failed: (err: unknown, streak: number) => void): void {
    this.sink = { to, failed };
    this.flush(true);
  }

  /**
   * Writes what changed since the last write, in one transaction; nothing when nothing changed
   * (a store that could not write waits for a change to try again). `all`: the whole store.
   */
  private flush(all = false): void {
    if (this.sink === null || (!all && this.changed.size === 0)) return;
    try {
      if (all || this.rewrite) this.sink.to.replace([...this.entries.values()].map(ConsentRequests.saving));
      else {
        const put: SavedConsent[] = [], gone: string[] = [];
        for (const nonce of this.changed) {
          const e = this.entries.get(nonce);
          if (e) put.push(ConsentRequests.saving(e));
          else gone.push(nonce);
        }
        this.sink.to.write(put, gone);
      }
      this.changed.clear();
      this.rewrite = false;
      this.failing = 0;
      this.written++;
    } catch (err) {
      // Kept in memory; written whole at the next change (the nonces pending here need no list).
      this.changed.clear();
      this.rewrite = true;
      this.unwritten++;
      this.sink.failed(err, ++this.failing);
    }
  }

  /** Runs a request of the routes, and then writes what it changed (even when it throws: a sweep may have). */
  private tx<T>(f: () => T): T {
    try {
      return f();
    } finally {
      this.flush();
    }
  }

  private static saving(e: Held): SavedConsent {
    return { nonce: e.nonce, run: e.run, site: e.site, state: e.state, address: e.address, created: e.created, left: e.leftAt !== null, maxIntensity: e.maxIntensity };
  }

  constructor(readonly limits: ConsentLimits, private readonly now: () => number) {
    this.addresses = new OpenCounter(limits.perAddress);
    this.sites = new OpenCounter(limits.perSite);
  }

  /**
   * Forgets every request past its time, looking only at those the queue has due by now: each
   * request's cost is the entries that expired, items passed over, and sessions queued again.
   */
  private sweep(): void {
    const t = this.now();
    for (let d = this.queue.peek(); d !== undefined && d.time <= t; d = this.queue.peek()) {
      this.queue.pop();
      this.examined++;
      const e = this.entries.get(d.nonce);
      if (e === undefined || e.due !== d) continue;
      e.due = null;
      if (e.expiresAt > t) this.schedule(e);
      else this.expire(d.nonce, e, t);
    }
  }

  /** Queues `e` at its expiresAt, unless an item at or before it stands for it already. */
  private schedule(e: Held): void {
    if (e.due !== null && e.due.time <= e.expiresAt) return;
    e.due = { time: e.expiresAt, priority: 0, nonce: e.nonce };
    this.queue.push(e.due);
    if (this.queue.size > 2 * this.entries.size + 64) {
      this.queue = new EventQueue<Due>();
      for (const x of this.entries.values()) if (x.due !== null) this.queue.push(x.due);
    }
  }

  /** When the window that left `e` is taken as closed: leaveMs after its pagehide; never while it stays. */
  private gone(e: Held): number {
    return e.leftAt === null ? Infinity : e.leftAt + this.limits.leaveMs;
  }

  /**
   * Ends `e`, past its time at `t`: a request whose window left unanswered and did not come back
   * within leaveMs is declined (kept until its answerBy for the frame to hear, as Don't allow is);
   * a session whose window left and did not come back while the frame still held it is closed
   * (kept frameMs for the frame to hear); anything else is forgotten.
   */
  private expire(nonce: string, e: Held, t: number): void {
    // Due before its answerBy: only its window's leaving brings a pending request's time that near.
    if (e.state === 'pending' && e.answerBy > t) {
      this.setLeft(e, null);
      this.settle(e, 'denied');
      return;
    }
    const gone = this.gone(e);
    if (e.state === 'allowed' && gone <= e.frameSeen + this.limits.frameMs && gone <= e.windowSeen + this.limits.windowMs && gone + this.limits.frameMs > t) {
      e.state = 'closed';
      e.leftAt = null;
      this.changed.add(nonce);
      e.expiresAt = gone + this.limits.frameMs;
      this.schedule(e);
      return;
    }
    this.drop(nonce);
  }

  /** Sets `e`'s state and when it ends: a live session when the first of its two sides goes unseen too long. */
  private settle(e: Held, state: ConsentState): void {
    const t = this.now();
    if (e.state !== state) this.changed.add(e.nonce);
    e.state = state;
    const { frameMs, windowMs } = this.limits;
    switch (state) {
      // Kept until the other side has heard it, as long as that side may go unheard.
      case 'allowed': e.expiresAt = Math.min(e.frameSeen + frameMs, e.windowSeen + windowMs, this.gone(e)); break;
      case 'stopped': case 'closed': e.expiresAt = t + frameMs; break;
      case 'released': case 'withdrawn': e.expiresAt = t + windowMs; break;
      // Unanswered: its answerBy, or sooner once its window left.
      case 'pending': e.expiresAt = Math.min(e.answerBy, this.gone(e)); break;
      case 'denied': e.expiresAt = e.answerBy; break;
    }
    this.schedule(e);
  }

  private drop(nonce: string): void {
    const e = this.entries.get(nonce);
    if (!e) return;
    e.release();
    this.entries.delete(nonce);
    this.changed.add(nonce);
  }

  /** Sets when `e`'s window left (null: it stays), marking the row to write when that changes. */
  private setLeft(e: Held, at: number | null): void {
    if ((e.leftAt === null) !== (at === null)) this.changed.add(e.nonce);
    e.leftAt = at;
  }

  /** Who holds a request of `address` (an addressKey): its IPv6 /48, or the address itself. */
  private static holder(address: string): string {
    return siteKey(address) ?? address;
  }

  /**
   * Makes room for one more when all places are taken: drops the oldest request, pending,
   * answered or a live session, of the holder (an IPv4 address or an IPv6 /48) with the most open. A client that
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
  open(nonce: string, run: string, site: string, address: string, maxIntensity = 1): ConsentEntry {
    return this.tx(() => {
      this.sweep();
      if (this.entries.has(nonce)) throw new ConsentError('this consent nonce is already registered: make a fresh one for each request', 409);
      const e = this.place(nonce, run, site, address, this.now(), maxIntensity);
      if (typeof e === 'string') throw new ConsentError(e, 429);
      return ConsentRequests.view(e);
    });
  }

  /** Takes a place for `nonce` (pending, both sides seen now), or says why the address or its /48 has none. */
  private place(nonce: string, run: string, site: string, address: string, created: number, maxIntensity: number): Held | string {
    const mine = this.addresses.acquire(address);
    if (!mine) return `this address has ${this.limits.perAddress} consent requests open, its limit; answer or close one, or wait ${this.limits.ttlMs / 60_000} minutes`;
    const site48 = siteKey(address);
    const ours = site48 === null ? () => {} : this.sites.acquire(site48);
    if (!ours) {
      mine();
      return `this network (${site48}) has ${this.limits.perSite} consent requests open, its limit; try again in a few minutes`;
    }
    while (this.entries.size >= this.limits.total && this.evict());
    const t = this.now();
    const key = ConsentRequests.holder(address);
    let held = this.holders.get(key);
    if (!held) this.holders.set(key, held = new Set());
    held.add(nonce);
    const e: Held = {
      nonce, run, site, created, state: 'pending', expiresAt: t + this.limits.ttlMs, address, maxIntensity,
      frameSeen: t,
      windowSeen: t,
      leftAt: null,
      answerBy: t + this.limits.ttlMs,
      due: null,
      release: () => {
        mine();
        ours();
        held.delete(nonce);
        if (held.size === 0 && this.holders.get(key) === held) this.holders.delete(key);
      },
    };
    this.entries.set(nonce, e);
    this.changed.add(nonce);
    this.schedule(e);
    return e;
  }

  /**
   * Every request held now, oldest first, to be written as the coordinator closes (saveConsents).
   */
  saved(): SavedConsent[] {
    return this.tx(() => {
      this.sweep();
      return [...this.entries.values()].map(ConsentRequests.saving);
    });
  }

  /**
   * Takes back the requests a closing coordinator saved (loadConsents), both sides seen now: a
   * session is then kept as long as one just renewed, a pending request or a refusal as long as
   * one just opened, and an ending as long as the other side may take to hear it. Each takes a
   * place as a new request does; one that finds none (the limits were lowered), or whose nonce is
   * open already, is left out. Returns how many were taken.
   */
  restore(saved: readonly SavedConsent[]): number {
    return this.tx(() => {
      let taken = 0;
      for (const s of saved) {
        if (this.entries.has(s.nonce)) continue;
        const e = this.place(s.nonce, s.run, s.site, s.address, s.created, s.maxIntensity);
        if (typeof e === 'string') continue;
        // A window that had left, asking or donating: its grace starts afresh.
        if (s.left && (s.state === 'allowed' || s.state === 'pending')) e.leftAt = this.now();
        this.settle(e, s.state);
        taken++;
      }
      return taken;
    });
  }

  /** The request of `nonce`; 404 when there is none (never registered, expired, ended or already claimed). */
  get(nonce: string): ConsentEntry {
    return this.tx(() => ConsentRequests.view(this.held(nonce)));
  }

  private held(nonce: string): Held {
    this.sweep();
    const e = this.entries.get(nonce);
    if (e) return e;
    const refused = this.refusals.get(nonce);
    if (refused && refused.until > this.now()) throw new ConsentError(`This request was refused by the Murmur coordinator: ${refused.reason}`, 410);
    throw new ConsentError('no such consent request: it expired, ended, was already used, or never existed. Press Start in the widget again.', 404);
  }

  /**
   * Remembers that registering `nonce` was refused, and why (a 403, 404, 409 or 429 of
   * POST /api/consent): the consent window, already open, asks for it and gets 410 with the
   * reason. A nonce open here (a second registration of it, refused 409) is not marked.
   */
  refuse(nonce: string, reason: string): void {
    if (this.entries.has(nonce)) return;
    const t = this.now();
    for (const [n, r] of this.refusals) {
      if (r.until > t && this.refusals.size < REFUSALS_KEPT) break;
      this.refusals.delete(n);
    }
    this.refusals.delete(nonce);
    this.refusals.set(nonce, { reason: reason.slice(0, 300), until: t + REFUSAL_MS });
  }

  private static view(e: Held): ConsentEntry {
    return { run: e.run, site: e.site, created: e.created, state: e.state, expiresAt: e.expiresAt, maxIntensity: e.maxIntensity };
  }

  /** The state as the other side hears it; an ending heard by it is forgotten (the nonce is done). */
  private heard(nonce: string, e: Held): ConsentEntry {
    const v = ConsentRequests.view(e);
    this.drop(nonce);
    return v;
  }

  /** The consent window's answer: 409 once decided. Allow makes it a live session, both sides seen now. */
  decide(nonce: string, allow: boolean): ConsentEntry {
    return this.tx(() => {
      const e = this.held(nonce);
      if (e.state === 'withdrawn') throw new ConsentError('the widget withdrew this request (its Stop was pressed, or its page was closed): nothing was started', 409);
      if (e.state !== 'pending') throw new ConsentError(`this consent request was already answered (${e.state})`, 409);
      e.frameSeen = e.windowSeen = this.now();
      // The window answering is the window there (a reloaded one, or an answer sent just before a leave it outran).
      this.setLeft(e, null);
      this.settle(e, allow ? 'allowed' : 'denied');
      return ConsentRequests.view(e);
    });
  }

  /**
   * The frame asks for the answer, and then holds the session it trains under (claim and hold are
   * one): 'allowed' renews the frame's side (no write); a refusal, or an ending by the window ('stopped', 'closed'), is
   * answered once and the request is gone.
   */
  claim(nonce: string): ConsentEntry {
    return this.tx(() => {
      const e = this.held(nonce);
      if (e.state === 'allowed') {
        e.frameSeen = this.now();
        this.settle(e, 'allowed');
      } else if (e.state === 'denied' || e.state === 'stopped' || e.state === 'closed') return this.heard(nonce, e);
      return ConsentRequests.view(e);
    });
  }

  /**
   * The frame ends its session (its Stop, its pause while out of view): the window hears
   * 'released' at its next watch, and says the widget stopped. Or it withdraws a request still
   * asked (its Stop while a Resume window asks, or its page going): the window hears 'withdrawn',
   * a state of its own that a reloaded window reads on its first load too, and says the widget
   * stopped before it was answered instead of asking; an Allow sent before is refused (409).
   * A refusal or an ending the frame had not heard is gone.
   */
  release(nonce: string): ConsentEntry {
    return this.tx(() => {
      const e = this.held(nonce);
      if (e.state === 'allowed') this.settle(e, 'released');
      else if (e.state === 'pending') this.settle(e, 'withdrawn');
      else if (!ConsentRequests.frameEnded(e)) return this.heard(nonce, e);
      return ConsentRequests.view(e);
    });
  }

  /**
   * The consent window watches the request or session: it takes back its leaving, while it asks
   * (pending) or donates ('allowed', which renews its side too: no write); the frame's ending ('released', 'withdrawn')
   * is answered once.
   */
  watch(nonce: string): ConsentEntry {
    return this.tx(() => {
      const e = this.held(nonce);
      if (e.state === 'allowed' || e.state === 'pending') {
        if (e.state === 'allowed') e.windowSeen = this.now();
        this.setLeft(e, null);
        this.settle(e, e.state);
      } else if (ConsentRequests.frameEnded(e)) return this.heard(nonce, e);
      return ConsentRequests.view(e);
    });
  }

  /** Ended by the frame, for the window to hear: a session released, or a question withdrawn. */
  private static frameEnded(e: Held): boolean {
    return e.state === 'released' || e.state === 'withdrawn';
  }

  /**
   * The window's page goes (its pagehide: a close, or a reload, which the page cannot tell apart):
   * leaveMs on, the session ends as 'closed', or the request still unanswered is declined
   * ('denied'), unless the window watches (or answers) again before: a reloaded window keeps its
   * #nonce and watches at once. The frame's ending ('released', 'withdrawn') is kept leaveMs more
   * at most, for the reloaded window to read on its first load (a leave shows the visitor
   * nothing: taking it as heard had the reloaded window find no request at all); an answer or an
   * ending by the window stands.
   */
  leave(nonce: string): ConsentEntry {
    return this.tx(() => {
      const e = this.held(nonce);
      if (ConsentRequests.frameEnded(e)) {
        e.expiresAt = Math.min(e.expiresAt, this.now() + this.limits.leaveMs);
        this.schedule(e);
        return ConsentRequests.view(e);
      }
      if (e.state === 'allowed' || e.state === 'pending') {
        this.setLeft(e, e.leftAt ?? this.now());
        this.settle(e, e.state);
      }
      return ConsentRequests.view(e);
    });
  }

  /** The window ends the session: its Stop ('stopped'), or its closing ('closed'); the frame hears it and stops. 409 for a request not allowed. */
  stop(nonce: string, closed = false): ConsentEntry {
    return this.tx(() => {
      const e = this.held(nonce);
      if (ConsentRequests.frameEnded(e)) return this.heard(nonce, e);
      if (e.state === 'stopped' || e.state === 'closed') return ConsentRequests.view(e);
      if (e.state !== 'allowed') throw new ConsentError(`this consent request is not a donation under way (${e.state}): nothing to stop`, 409);
      this.settle(e, closed ? 'closed' : 'stopped');
      return ConsentRequests.view(e);
    });
  }

  get size(): number {
    return this.tx(() => {
      this.sweep();
      return this.entries.size;
    });
  }

  /** Items in the expiry queue, passed-over ones included: at most twice the entries and 64. */
  get queued(): number {
    return this.queue.size;
  }
}

const STATES: readonly string[] = ['pending', 'allowed', 'denied', 'stopped', 'closed', 'released', 'withdrawn'] satisfies ConsentState[];
const NONCE = new RegExp(CONSENT_NONCE_PATTERN);

/**
 * The consent_sessions table as the store's ConsentSink: prepared statements, one transaction per
 * write. `writes` counts the transactions: a test's count that a claim renewal writes nothing.
 */
export class ConsentTable implements ConsentSink {
  writes = 0;
  private readonly upsert: Database.Statement;
  private readonly remove: Database.Statement;
  private readonly clear: Database.Statement;

  constructor(private readonly db: Db) {
    this.upsert = db.prepare('INSERT OR REPLACE INTO consent_sessions (nonce, run_id, site, state, address, created_at, left, max_intensity) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
    this.remove = db.prepare('DELETE FROM consent_sessions WHERE nonce = ?');
    this.clear = db.prepare('DELETE FROM consent_sessions');
  }

  write(put: readonly SavedConsent[], gone: readonly string[]): void {
    this.db.transaction(() => {
      for (const nonce of gone) this.remove.run(nonce);
      for (const s of put) this.put(s);
    })();
    this.writes++;
  }

  replace(all: readonly SavedConsent[]): void {
    this.db.transaction(() => {
      this.clear.run();
      for (const s of all) this.put(s);
    })();
    this.writes++;
  }

  private put(s: SavedConsent): void {
    this.upsert.run(s.nonce, s.run, s.site, s.state, s.address, s.created, s.left ? 1 : 0, s.maxIntensity);
  }
}

/**
 * Writes `saved` (ConsentRequests.saved, at most its `total` places) as the requests the next start
 * takes back, in place of any written before: one transaction as the coordinator closes.
 */
export function saveConsents(db: Db, saved: readonly SavedConsent[]): void {
  new ConsentTable(db).replace(saved);
}

/**
 * Reads back, and deletes, what the last coordinator on this data dir wrote (at most `max` rows,
 * oldest first); the store this start fills writes those it takes back again as it is attached
 * (persistTo), so a row not taken does not come back after a crash. Rows this build cannot read
 * (a state it does not know, a nonce out of pattern) are left out and counted.
 */
export function loadConsents(db: Db, max: number): { saved: SavedConsent[]; unreadable: number } {
  return db.transaction(() => {
    const rows = db.prepare('SELECT nonce, run_id AS run, site, state, address, created_at AS created, left, max_intensity AS maxIntensity FROM consent_sessions ORDER BY created_at, rowid LIMIT ?').all(max) as Record<string, unknown>[];
    db.prepare('DELETE FROM consent_sessions').run();
    const saved: SavedConsent[] = [];
    for (const r of rows) {
      if (typeof r.nonce === 'string' && NONCE.test(r.nonce) && typeof r.state === 'string' && STATES.includes(r.state) &&
        typeof r.run === 'string' && typeof r.site === 'string' && typeof r.address === 'string' && typeof r.created === 'number' &&
        typeof r.maxIntensity === 'number' && r.maxIntensity >= 0.1 && r.maxIntensity <= 1) {
        saved.push({ ...(r as unknown as SavedConsent), left: r.left === 1 });
      }
    }
    return { saved, unreadable: rows.length - saved.length };
  })();
}
