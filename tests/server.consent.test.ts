// The widget's consent requests (server/consent.ts, server/routes/consent.ts): a nonce is
// registered only for a run that lists the frame's site, is answered once, a refusal claimed once,
// an Allow kept as a live session while the frame holds it and the window watches it, forgotten
// after its time, and the requests one address, one IPv6 /48 and everyone may hold, live sessions
// included, are capped.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InjectOptions } from 'fastify';
import { backgroundClock } from '../src/protocol/clock.ts';
import { ConsentRequests, REFUSALS_KEPT, REFUSAL_MS } from '../server/consent.ts';
import { addressKey } from '../server/address-budget.ts';
import { startServer, type TestServer } from './support/coordinator.ts';
import { exchangeLink } from '../src/protocol/exchange-link.ts';
import { buildLayout } from '../src/model/layout.ts';

const SITE = 'https://whales.example';
const TTL = 60_000;
const FRAME = 20_000;
const WINDOW = 30_000;
const LEAVE = 15_000;
let s: TestServer;
/** The coordinator's clock runs this far ahead of the real one. */
let skew = 0;
let n = 0;
/** A fresh nonce: 16 bytes' worth of base64url. */
const nonce = () => `n${String(++n).padStart(21, '0')}`;

beforeAll(async () => {
  s = await startServer({ consent: { ttlMs: TTL, frameMs: FRAME, windowMs: WINDOW, leaveMs: LEAVE, perAddress: 3, perSite: 5, total: 9 } }, { clock: { ...backgroundClock, now: () => Date.now() + skew } });
  const r = await inject({ method: 'PATCH', url: '/api/runs/default', headers: { ...s.admin }, payload: { embedSites: [SITE] } });
  expect(r.statusCode).toBe(200);
});
afterAll(async () => { await s?.close(); });

function inject(o: InjectOptions) { return s.c.app.inject(o); }
const ask = (nc: string, from = '192.0.2.1', body: Record<string, unknown> = {}) =>
  inject({ method: 'POST', url: '/api/consent', remoteAddress: from, payload: { nonce: nc, run: 'default', site: SITE, ...body } });
const decide = (nc: string, allow: boolean) => inject({ method: 'POST', url: `/api/consent/${nc}/decision`, payload: { allow } });
const side = (nc: string, what: 'claim' | 'release' | 'watch' | 'leave' | 'stop', closed = false) =>
  inject({ method: 'POST', url: `/api/consent/${nc}/${what}`, ...(what === 'stop' ? { payload: { closed } } : {}) });
const claim = (nc: string) => side(nc, 'claim');

describe('consent requests', () => {
  it('go from pending to allowed, and are then the session the frame holds until the window stops it', async () => {
    const nc = nonce();
    const r = await ask(nc);
    expect(r.statusCode).toBe(201);
    expect(r.json()).toMatchObject({ run: 'default', site: SITE, state: 'pending' });
    expect(r.headers['cache-control']).toBe('no-store');
    // What the consent window shows.
    expect((await inject({ method: 'GET', url: `/api/consent/${nc}` })).json()).toMatchObject({ run: 'default', runName: expect.any(String), site: SITE, state: 'pending' });
    expect((await claim(nc)).json()).toMatchObject({ state: 'pending' });
    expect((await decide(nc, true)).json()).toMatchObject({ state: 'allowed' });
    expect((await claim(nc)).json()).toMatchObject({ state: 'allowed' });
    // The frame holds it on, the window watches it.
    expect((await claim(nc)).json()).toMatchObject({ state: 'allowed' });
    expect((await side(nc, 'watch')).json()).toMatchObject({ state: 'allowed' });
    // The window's Stop: the frame hears it once, and the nonce is done.
    const stop = await side(nc, 'stop');
    expect(stop.json()).toMatchObject({ state: 'stopped' });
    expect(stop.headers['cache-control']).toBe('no-store');
    expect((await claim(nc)).json()).toMatchObject({ state: 'stopped' });
    const again = await claim(nc);
    expect(again.statusCode).toBe(404);
    expect(again.json().error).toMatch(/no such consent request/);
    // Closing the window (its pagehide) says so.
    const closing = nonce();
    await ask(closing);
    await decide(closing, true);
    expect((await side(closing, 'stop', true)).json()).toMatchObject({ state: 'closed' });
    expect((await claim(closing)).json()).toMatchObject({ state: 'closed' });
    expect((await claim(closing)).statusCode).toBe(404);
    expect((await inject({ method: 'POST', url: `/api/consent/${nonce()}/stop`, payload: {} })).statusCode).toBe(400);
  });

  it('say what the run asks of the visitor\'s link: the coordinator\'s exchangeLink of the run\'s model and compression', async () => {
    const nc = nonce();
    const asked = await ask(nc, '198.18.1.30');
    const run = s.c.runs.get('default')!;
    const want = exchangeLink(run.compression, buildLayout(run.model).total);
    const link = { bytes: want.bytes, leastBytesPerS: want.leastBytesPerS, firstBytesPerS: want.firstBytesPerS, waitS: 60, firstWaitS: 15 };
    expect(asked.json().link).toEqual(link);
    // What the window reads, and each answer after.
    expect((await inject({ method: 'GET', url: `/api/consent/${nc}` })).json().link).toEqual(link);
    expect((await decide(nc, false)).json().link).toEqual(link);
    expect(link.bytes).toBeGreaterThan(0);
    expect(link.leastBytesPerS).toBe(Math.ceil(link.bytes / 60));
    expect(link.firstBytesPerS).toBe(Math.ceil(link.bytes / 15));
    await claim(nc);
  });

  it('end when the frame releases the session, which the window hears once', async () => {
    const nc = nonce();
    await ask(nc, '192.0.2.5');
    await decide(nc, true);
    expect((await claim(nc)).json()).toMatchObject({ state: 'allowed' });
    expect((await side(nc, 'release')).json()).toMatchObject({ state: 'released' });
    expect((await side(nc, 'watch')).json()).toMatchObject({ state: 'released' });
    expect((await side(nc, 'watch')).statusCode).toBe(404);
    expect(s.c.consents.size).toBe(0);
  });

  it('outlive the window\'s leaving (its pagehide: a close or a reload) only while it watches again within the grace', async () => {
    // A reload: pagehide says the window left, and the reloaded window watches at once.
    const reloaded = nonce();
    await ask(reloaded, '192.0.2.7');
    await decide(reloaded, true);
    expect((await claim(reloaded)).json()).toMatchObject({ state: 'allowed' });
    const left = await side(reloaded, 'leave');
    expect(left.statusCode).toBe(200);
    expect(left.json()).toMatchObject({ state: 'allowed' });
    // (This coordinator's clock runs on with the real one: the steps below keep half the grace
    // clear of each boundary; the store's own test below takes them to the millisecond.)
    try {
      skew += LEAVE / 2;
      expect((await claim(reloaded)).json()).toMatchObject({ state: 'allowed' });
      expect((await side(reloaded, 'watch')).json()).toMatchObject({ state: 'allowed' });
      // Past the grace: taken back by the watch, so the frame trains on.
      skew += LEAVE;
      expect((await claim(reloaded)).json()).toMatchObject({ state: 'allowed' });
      // A close: the window left and watches no more; once the grace has passed the frame's
      // next claim hears the window was closed, once.
      const closed = nonce();
      await ask(closed, '192.0.2.7');
      await decide(closed, true);
      expect((await side(closed, 'leave')).json()).toMatchObject({ state: 'allowed' });
      skew += LEAVE / 2;
      expect((await claim(closed)).json()).toMatchObject({ state: 'allowed' });
      skew += LEAVE / 2;
      expect((await claim(closed)).json()).toMatchObject({ state: 'closed' });
      expect((await claim(closed)).statusCode).toBe(404);
      // Heard by no frame: the ending is kept frameMs from the grace's end, then forgotten.
      const unheard = nonce();
      await ask(unheard, '192.0.2.7');
      await decide(unheard, true);
      await side(unheard, 'leave');
      skew += LEAVE + FRAME / 2;
      expect(s.c.consents.get(unheard).state).toBe('closed');
      skew += FRAME / 2;
      expect((await claim(unheard)).statusCode).toBe(404);
      // Stop donating stays immediate.
      const stopped = nonce();
      await ask(stopped, '192.0.2.7');
      await decide(stopped, true);
      await side(stopped, 'leave');
      expect((await side(stopped, 'stop')).json()).toMatchObject({ state: 'stopped' });
      expect((await claim(stopped)).json()).toMatchObject({ state: 'stopped' });
      // A window leaving after the frame released the session (a close, or a reload) hears it, and
      // it is kept the leaving grace for a reloaded window to read; an unknown nonce is 404.
      const released = nonce();
      await ask(released, '192.0.2.7');
      await decide(released, true);
      await side(released, 'release');
      expect((await side(released, 'leave')).json()).toMatchObject({ state: 'released' });
      expect((await side(released, 'leave')).json()).toMatchObject({ state: 'released' });
      expect(s.c.consents.get(released).expiresAt).toBeLessThanOrEqual(Date.now() + skew + LEAVE);
      expect((await inject({ method: 'GET', url: `/api/consent/${released}` })).json()).toMatchObject({ state: 'released' });
      skew += LEAVE + 1;
      expect((await side(released, 'leave')).statusCode).toBe(404);
      expect((await side(nonce(), 'leave')).statusCode).toBe(404);
      // (The reloaded window's session, unheard since, is past its time by now.)
      expect(s.c.consents.size).toBe(0);
    } finally {
      skew = 0;
    }
  });

  it('refuse to stop a request not allowed, and a watch or release of an unknown nonce', async () => {
    const nc = nonce();
    await ask(nc, '192.0.2.6');
    const early = await side(nc, 'stop');
    expect(early.statusCode).toBe(409);
    expect(early.json().error).toMatch(/not a donation under way \(pending\)/);
    for (const what of ['watch', 'release', 'stop'] as const) expect((await side(nonce(), what)).statusCode).toBe(404);
    await side(nc, 'release');
    expect((await side(nc, 'watch')).json()).toMatchObject({ state: 'withdrawn' });
    expect(s.c.consents.size).toBe(0);
  });

  it('withdraw a request still asked when the frame releases it (its Stop while a Resume window asks): the window hears it, and an Allow there is refused', async () => {
    const nc = nonce();
    await ask(nc, '192.0.2.16');
    expect((await side(nc, 'watch')).json()).toMatchObject({ state: 'pending' });
    const released = await side(nc, 'release');
    expect(released.statusCode).toBe(200);
    // Withdrawn: a state of its own, not a donation the frame ended ('released'), so a window
    // reloaded now reads, on its first load, that the question was taken back.
    expect(released.json()).toMatchObject({ state: 'withdrawn' });
    // The frame's release is idempotent (its pagehide may follow its Stop).
    expect((await side(nc, 'release')).json()).toMatchObject({ state: 'withdrawn' });
    // The window, asking still, learns it (not 'gone', after which it kept asking); an Allow sent first is refused, and starts nothing.
    expect((await inject({ method: 'GET', url: `/api/consent/${nc}` })).json()).toMatchObject({ state: 'withdrawn' });
    const allowed = await decide(nc, true);
    expect(allowed.statusCode).toBe(409);
    expect(allowed.json().error).toBe('the widget withdrew this request (its Stop was pressed, or its page was closed): nothing was started');
    expect((await claim(nc)).json()).toMatchObject({ state: 'withdrawn' });
    expect((await side(nc, 'watch')).json()).toMatchObject({ state: 'withdrawn' });
    // Heard by the window: the nonce is done.
    expect((await side(nc, 'watch')).statusCode).toBe(404);
    // One the window never hears is kept no longer than a session's ending: windowMs.
    const unheard = nonce();
    await ask(unheard, '192.0.2.16');
    await side(unheard, 'release');
    expect(s.c.consents.get(unheard).expiresAt).toBeLessThanOrEqual(Date.now() + skew + WINDOW);
    expect((await side(unheard, 'leave')).json()).toMatchObject({ state: 'withdrawn' });
    // Its window left (a close, or a reload): kept the leaving grace, for a reloaded window's first load to read.
    expect((await inject({ method: 'GET', url: `/api/consent/${unheard}` })).json()).toMatchObject({ state: 'withdrawn' });
    expect(s.c.consents.get(unheard).expiresAt).toBeLessThanOrEqual(Date.now() + skew + LEAVE);
    skew += LEAVE + 1;
    expect((await inject({ method: 'GET', url: `/api/consent/${unheard}` })).statusCode).toBe(404);
    skew = 0;
    // A donation the frame ends is still 'released': the window says the widget stopped training.
    const session = nonce();
    await ask(session, '192.0.2.16');
    await decide(session, true);
    expect((await side(session, 'release')).json()).toMatchObject({ state: 'released' });
    const late = await decide(session, true);
    expect(late.statusCode).toBe(409);
    expect(late.json().error).toBe('this consent request was already answered (released)');
    expect((await side(session, 'watch')).json()).toMatchObject({ state: 'released' });
    expect(s.c.consents.size).toBe(0);
  });

  it('say the widget\'s intensity ceiling as its frame registered it (absent: all of the GPU), and take none outside 0.1 to 1', async () => {
    const nc = nonce();
    expect((await ask(nc, '198.18.1.31', { maxIntensity: 0.4 })).json().maxIntensity).toBe(0.4);
    // What the window reads, and each answer after.
    expect((await inject({ method: 'GET', url: `/api/consent/${nc}` })).json().maxIntensity).toBe(0.4);
    expect((await decide(nc, true)).json().maxIntensity).toBe(0.4);
    expect((await claim(nc)).json().maxIntensity).toBe(0.4);
    await side(nc, 'release');
    await side(nc, 'watch');
    const bare = nonce();
    expect((await ask(bare, '198.18.1.31')).json().maxIntensity).toBe(1);
    await decide(bare, false);
    await claim(bare);
    for (const maxIntensity of [0, 0.05, 1.5, 'all']) {
      const r = await ask(nonce(), '198.18.1.31', { maxIntensity });
      expect(r.statusCode).toBe(400);
      expect(r.json().error).toMatch(/maxIntensity/);
    }
  });

  it('takes only a site the run lists, a run that exists and a well-formed nonce', async () => {
    const other = await ask(nonce(), '192.0.2.3', { site: 'https://evil.example' });
    expect(other.statusCode).toBe(403);
    expect(other.json().error).toMatch(/https:\/\/evil\.example is not an embedding site of run default/);
    expect((await ask(nonce(), '192.0.2.3', { run: 'no-such-run' })).statusCode).toBe(404);
    // The consent window, open already for a refused nonce, hears why (410), not that it never existed.
    const refused = nonce();
    await ask(refused, '192.0.2.3', { site: 'https://evil.example' });
    const told = await inject({ method: 'GET', url: `/api/consent/${refused}` });
    expect(told.statusCode).toBe(410);
    expect(told.json().error).toBe('This request was refused by the Murmur coordinator: https://evil.example is not an embedding site of run default: the run\'s admin adds it to embedSites');
    for (const bad of [{ nonce: 'short' }, { site: 'https://whales.example/path' }, { extra: 1 }]) {
      expect((await ask(nonce(), '192.0.2.3', bad)).statusCode).toBe(400);
    }
    expect((await decide(nonce(), 'yes' as unknown as boolean)).statusCode).toBe(400);
    // None of them was kept.
    expect(s.c.consents.size).toBe(0);
  });

  it('forgets a request after its time', async () => {
    const nc = nonce();
    await ask(nc, '192.0.2.4');
    expect(s.c.consents.size).toBe(1);
    skew += TTL + 1;
    try {
      expect((await decide(nc, true)).statusCode).toBe(404);
      expect((await claim(nc)).statusCode).toBe(404);
      expect(s.c.consents.size).toBe(0);
    } finally {
      skew = 0;
    }
  });

  it('caps the requests open per address, per IPv6 /48 and in all, live sessions too, and frees a place once one is done', async () => {
    const mine = [nonce(), nonce(), nonce()];
    for (const nc of mine) expect((await ask(nc, '198.51.100.7')).statusCode).toBe(201);
    const fourth = await ask(nonce(), '198.51.100.7');
    expect(fourth.statusCode).toBe(429);
    expect(fourth.json().error).toMatch(/this address has 3 consent requests open, its limit/);
    // The same address on another port, or written another way, is the same address.
    expect((await ask(nonce(), '::ffff:198.51.100.7')).statusCode).toBe(429);
    // A live session holds its place; one ended and heard frees it.
    await decide(mine[0]!, true);
    await claim(mine[0]!);
    expect((await ask(nonce(), '198.51.100.7')).statusCode).toBe(429);
    await side(mine[0]!, 'stop');
    await claim(mine[0]!);
    expect((await ask(nonce(), '198.51.100.7')).statusCode).toBe(201);
    // Five /64s of one /48 share its five places; another /48 is not held back by them.
    const v6 = (i: number) => `2001:db8:7:${i}::1`;
    for (let i = 0; i < 2; i++) for (let k = 0; k < 2; k++) expect((await ask(nonce(), v6(i))).statusCode).toBe(201);
    expect((await ask(nonce(), v6(2))).statusCode).toBe(201);
    const sixth = await ask(nonce(), v6(3));
    expect(sixth.statusCode).toBe(429);
    expect(sixth.json().error).toMatch(/this network \(2001:db8:7::\/48\) has 5 consent requests open, its limit/);
    // 3 + 5 + 1 = 9 open: everyone's limit.
    expect((await ask(nonce(), '203.0.113.9')).statusCode).toBe(201);
    expect(s.c.consents.size).toBe(9);
    // A tenth is not refused: the /48 holding the most gives up its oldest place.
    const full = await ask(nonce(), '203.0.113.10');
    expect(full.statusCode).toBe(201);
    expect(s.c.consents.size).toBe(9);
    expect(s.c.consents.get(mine[1]!).state).toBe('pending');
    // All expire, and every place is free again.
    skew += TTL + 1;
    try {
      expect((await ask(nonce(), '203.0.113.9')).statusCode).toBe(201);
      expect(s.c.consents.size).toBe(1);
    } finally {
      skew = 0;
    }
  });

  it('keep a request still unanswered through the window\'s leaving while it looks at it again within the grace, and decline it once it does not', async () => {
    // A reload while asking: pagehide says the window left, and the reloaded window finds the
    // request (GET) and watches it: it is still pending, and its Allow is taken past the grace.
    const reloaded = nonce();
    await ask(reloaded, '192.0.2.8');
    const left = await side(reloaded, 'leave');
    expect(left.statusCode).toBe(200);
    expect(left.json()).toMatchObject({ state: 'pending' });
    try {
      skew += LEAVE / 2;
      expect((await inject({ method: 'GET', url: `/api/consent/${reloaded}` })).json()).toMatchObject({ state: 'pending' });
      expect((await side(reloaded, 'watch')).json()).toMatchObject({ state: 'pending' });
      skew += LEAVE;
      expect((await claim(reloaded)).json()).toMatchObject({ state: 'pending' });
      expect((await decide(reloaded, true)).json()).toMatchObject({ state: 'allowed' });
      expect((await claim(reloaded)).json()).toMatchObject({ state: 'allowed' });
      await side(reloaded, 'release');
      // A close while asking: nothing looks at it again, and once the grace has passed the
      // frame's next question hears Don't allow, once; the window, were it back, could not answer.
      const closed = nonce();
      await ask(closed, '192.0.2.8');
      await side(closed, 'leave');
      skew += LEAVE / 2;
      expect((await claim(closed)).json()).toMatchObject({ state: 'pending' });
      skew += LEAVE / 2;
      expect((await inject({ method: 'GET', url: `/api/consent/${closed}` })).json()).toMatchObject({ state: 'denied' });
      expect((await decide(closed, true)).statusCode).toBe(409);
      expect((await claim(closed)).json()).toMatchObject({ state: 'denied' });
      expect((await claim(closed)).statusCode).toBe(404);
    } finally {
      skew = 0;
    }
  });

  it('ends a live session once the window or the frame has not been seen for its time, and keeps no ending longer than the other side may take to hear it', () => {
    let t = 0;
    const store = new ConsentRequests({ ttlMs: 100, frameMs: 20, windowMs: 30, leaveMs: 15, perAddress: 10, perSite: 10, total: 10 }, () => t);
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((x) => x.repeat(22)) as [string, string, string, string];
    for (const nc of [a, b, c, d]) { store.open(nc, 'default', SITE, '192.0.2.1'); store.decide(nc, true); }
    // Both sides renew: far past the TTL of a pending request.
    for (; t <= 500; t += 10) for (const nc of [a, b, c, d]) { expect(store.claim(nc).state).toBe('allowed'); expect(store.watch(nc).state).toBe('allowed'); }
    const start = 500;
    // c: stopped by the window, never heard by the frame: kept frameMs. d: released by the frame, never heard: kept windowMs.
    t = start;
    expect(store.stop(c).state).toBe('stopped');
    expect(store.release(d).state).toBe('released');
    // a: the window goes silent (closed without its pagehide); the frame holding on does not keep it past windowMs.
    // b: the frame goes silent; the window watching on does not keep it past frameMs.
    t = start + 10;
    expect(store.watch(b).state).toBe('allowed');
    // (Looked at in time order: each look forgets whatever has expired.)
    t = start + 19;
    expect(store.claim(a).state).toBe('allowed');
    expect(store.get(b).state).toBe('allowed');
    expect(store.get(c).state).toBe('stopped');
    t = start + 20;
    expect(() => store.get(b)).toThrow(/no such consent request/);
    expect(() => store.get(c)).toThrow(/no such consent request/);
    t = start + 29;
    expect(store.get(a).state).toBe('allowed');
    expect(store.get(d).state).toBe('released');
    t = start + 30;
    expect(() => store.claim(a)).toThrow(/no such consent request/);
    expect(() => store.watch(d)).toThrow(/no such consent request/);
    expect(store.size).toBe(0);
  });

  it('closes a session leaveMs after its window left unless the window watched again, to the millisecond, and leaves Stop immediate', () => {
    let t = 0;
    const store = new ConsentRequests({ ttlMs: 100, frameMs: 20, windowMs: 30, leaveMs: 15, perAddress: 10, perSite: 10, total: 10 }, () => t);
    const [reload, close, late, stop] = ['r', 'c', 'l', 's'].map((x) => x.repeat(22)) as [string, string, string, string];
    for (const nc of [reload, close, late, stop]) { store.open(nc, 'default', SITE, '192.0.2.1'); store.decide(nc, true); }
    t = 10;
    for (const nc of [reload, close, late, stop]) { store.claim(nc); expect(store.leave(nc).state).toBe('allowed'); }
    // A second leave does not push the grace on.
    t = 12;
    expect(store.leave(close).state).toBe('allowed');
    expect(store.stop(stop).state).toBe('stopped');
    t = 24;
    expect(store.watch(reload).state).toBe('allowed');
    for (const nc of [reload, close]) expect(store.claim(nc).state).toBe('allowed');
    t = 25;
    // The frame hears the close at its next claim; the reloaded window's session goes on.
    expect(store.claim(close).state).toBe('closed');
    expect(store.claim(reload).state).toBe('allowed');
    expect(store.claim(stop).state).toBe('stopped');
    // Unheard, the close is kept frameMs from the grace's end (25 + 20), then forgotten.
    t = 44;
    expect(store.get(late).state).toBe('closed');
    expect(store.watch(reload).state).toBe('allowed');
    expect(store.claim(reload).state).toBe('allowed');
    t = 45;
    expect(() => store.get(late)).toThrow(/no such consent request/);
    expect(store.claim(reload).state).toBe('allowed');
    // A window that left and whose frame went silent first: forgotten when the frame's time is up, as before.
    const quiet = 'q'.repeat(22);
    store.open(quiet, 'default', SITE, '192.0.2.1');
    store.decide(quiet, true);
    t = 50;
    store.claim(quiet);
    t = 60;
    store.leave(quiet);
    t = 70;
    expect(() => store.get(quiet)).toThrow(/no such consent request/);
  });

  it('declines a request still unanswered leaveMs after its window left unless the window watched or answered again, to the millisecond', () => {
    let t = 0;
    const store = new ConsentRequests({ ttlMs: 100, frameMs: 20, windowMs: 30, leaveMs: 15, perAddress: 10, perSite: 10, total: 10 }, () => t);
    const [reload, answer, close, late, expiring] = ['R', 'A', 'C', 'L', 'E'].map((x) => x.repeat(22)) as [string, string, string, string, string];
    for (const nc of [reload, answer, close, late]) store.open(nc, 'default', SITE, '192.0.2.1');
    t = 10;
    for (const nc of [reload, answer, close, late]) expect(store.leave(nc).state).toBe('pending');
    // A second leave does not push the grace on.
    t = 12;
    expect(store.leave(close).state).toBe('pending');
    t = 24;
    // The reloaded window watches; another answers at once (its answer is the window there).
    expect(store.watch(reload).state).toBe('pending');
    expect(store.decide(answer, true).state).toBe('allowed');
    expect(store.claim(close).state).toBe('pending');
    t = 25;
    // The frame's next question hears Don't allow, once.
    expect(store.claim(close).state).toBe('denied');
    expect(() => store.claim(close)).toThrow(/no such consent request/);
    expect(store.claim(reload).state).toBe('pending');
    expect(store.claim(answer).state).toBe('allowed');
    // The answered one's session holds past the grace; taken back, the request waits for its answer its full time.
    t = 40;
    expect(store.claim(answer).state).toBe('allowed');
    t = 99;
    expect(store.get(reload).state).toBe('pending');
    expect(store.decide(reload, true).state).toBe('allowed');
    // Unheard, the refusal is kept until the request's own time (opened at 0, ttl 100), then forgotten.
    expect(store.get(late).state).toBe('denied');
    t = 100;
    expect(() => store.get(late)).toThrow(/no such consent request/);
    // A window that left within leaveMs of the request's own end: forgotten at that end, as before.
    store.open(expiring, 'default', SITE, '192.0.2.1');
    t = 195;
    store.leave(expiring);
    t = 199;
    expect(store.get(expiring).state).toBe('pending');
    t = 200;
    expect(() => store.get(expiring)).toThrow(/no such consent request/);
    // Through a restart (saved as the coordinator closes, taken back at the next start): its grace starts afresh.
    const restarted = 'G'.repeat(22);
    store.open(restarted, 'default', SITE, '192.0.2.1');
    t = 201;
    store.leave(restarted);
    const saved = store.saved();
    expect(saved).toMatchObject([{ nonce: restarted, state: 'pending', left: true }]);
    const next = new ConsentRequests(store.limits, () => t);
    t = 300;
    expect(next.restore(saved)).toBe(1);
    t = 314;
    expect(next.claim(restarted).state).toBe('pending');
    t = 315;
    expect(next.claim(restarted).state).toBe('denied');
  });

  it('looks only at the entries due when it forgets expired ones: none while nothing expires, one each as they do, not every entry on every request', () => {
    let t = 0;
    const N = 1000;
    const store = new ConsentRequests({ ttlMs: 100, frameMs: 20, windowMs: 30, leaveMs: 15, perAddress: N, perSite: N, total: 10_000 }, () => t);
    const key = (i: number) => `e${String(i).padStart(21, '0')}`;
    for (let i = 0; i < N; i++) { store.open(key(i), 'default', SITE, '192.0.2.1'); store.decide(key(i), true); }
    // 2,000 requests at one moment, nothing past its time: nothing looked at.
    store.examined = 0;
    for (let i = 0; i < N; i++) { store.claim(key(i)); store.watch(key(i)); }
    expect(store.examined).toBe(0);
    // Both sides renew every 2 ms for 100 ms, far past every first expiry: 100,000 requests. A
    // session is looked at when its queued time comes and is queued again at its new one, at
    // least frameMs - 2 = 18 ms on, so at most N × (100 / 18 + 1) looks; a walk of every entry on
    // every request (as before) is 100,000 × N.
    let requests = 0;
    for (t = 2; t <= 100; t += 2) for (let i = 0; i < N; i++) { expect(store.claim(key(i)).state).toBe('allowed'); store.watch(key(i)); requests += 2; }
    expect(requests).toBe(100 * N);
    expect(store.examined).toBeLessThanOrEqual(N * (100 / 18 + 1));
    // Half stop renewing and expire: the request that finds them gone looks at each entry once at
    // most (the other half's may come due and be queued again).
    t = 110;
    for (let i = 0; i < N / 2; i++) { store.claim(key(i)); store.watch(key(i)); }
    store.examined = 0;
    t = 125;
    expect(store.size).toBe(N / 2);
    expect(store.examined).toBeGreaterThanOrEqual(N / 2);
    expect(store.examined).toBeLessThanOrEqual(N);
    expect(() => store.get(key(N - 1))).toThrow(/no such consent request/);
    // Stale queue items (sessions ended early: each stop queues a sooner time) stay within bounds.
    for (let i = 0; i < N / 2; i++) store.stop(key(i));
    t = 200;
    store.examined = 0;
    expect(store.size).toBe(0);
    expect(store.examined).toBeLessThanOrEqual(2 * (N / 2));
  });

  it('keeps the expiry queue within twice the entries and 64 however a window alternates leave and watch', () => {
    // A leave pulls a session's end in to leaveMs on (an item queued), a watch pushes it out again
    // (the item stays); once the near item comes due the session is queued again far out. With a
    // 1 ms grace and hour-long sides, each session left a far item behind every millisecond: past
    // 10,000 items for 10 sessions without the rebuild.
    let t = 0;
    const N = 10;
    const hour = 3_600_000;
    const store = new ConsentRequests({ ttlMs: hour, frameMs: hour, windowMs: hour, leaveMs: 1, perAddress: N, perSite: N, total: N }, () => t);
    const key = (i: number) => `w${String(i).padStart(21, '0')}`;
    for (let i = 0; i < N; i++) { store.open(key(i), 'default', SITE, '192.0.2.1'); store.decide(key(i), true); }
    let most = 0;
    for (let ms = 0; ms < 1000; ms++) {
      t += 1;
      for (let i = 0; i < N; i++) { store.claim(key(i)); store.leave(key(i)); store.watch(key(i)); }
      most = Math.max(most, store.queued);
    }
    expect(store.size).toBe(N);
    expect(store.get(key(0)).state).toBe('allowed');
    expect(most).toBeLessThanOrEqual(2 * N + 64 + 1);
  });

  it('remembers refused registrations for a while, a bounded number of them, and never marks a nonce that is open', () => {
    let t = 0;
    const store = new ConsentRequests({ ttlMs: 100, frameMs: 100, windowMs: 100, leaveMs: 15, perAddress: 10, perSite: 10, total: 10 }, () => t);
    const key = (i: number) => `q${String(i).padStart(21, '0')}`;
    store.refuse(key(0), 'not listed');
    expect(() => store.get(key(0))).toThrow(/refused by the Murmur coordinator: not listed/);
    t = REFUSAL_MS;
    expect(() => store.get(key(0))).toThrow(/no such consent request/);
    // A flood of refusals keeps REFUSALS_KEPT at most: the oldest make way.
    for (let i = 1; i <= REFUSALS_KEPT + 5; i++) store.refuse(key(i), `r${i}`);
    expect(() => store.get(key(5))).toThrow(/no such consent request/);
    expect(() => store.get(key(6))).toThrow(/refused by the Murmur coordinator: r6$/);
    expect(() => store.get(key(REFUSALS_KEPT + 5))).toThrow(/refused/);
    // A second registration of an open nonce is refused (409), but the open request stands.
    const open = key(REFUSALS_KEPT + 9);
    store.open(open, 'default', SITE, '192.0.2.1');
    store.refuse(open, 'already registered');
    store.decide(open, true);
    expect(store.get(open).state).toBe('allowed');
  });

  it('drops only the expired requests, oldest first', () => {
    let t = 0;
    const store = new ConsentRequests({ ttlMs: 100, frameMs: 100, windowMs: 100, leaveMs: 15, perAddress: 10, perSite: 10, total: 10 }, () => t);
    store.open('a'.repeat(22), 'default', SITE, '192.0.2.1');
    t = 50;
    store.open('b'.repeat(22), 'default', SITE, '192.0.2.1');
    t = 100;
    expect(() => store.get('a'.repeat(22))).toThrow(/no such consent request/);
    expect(store.get('b'.repeat(22)).state).toBe('pending');
    expect(store.size).toBe(1);
  });

  it('at its limit in all, makes room by dropping the oldest request of whoever holds the most, never by refusing everyone', () => {
    const t = 0;
    const store = new ConsentRequests({ ttlMs: 100, frameMs: 100, windowMs: 100, leaveMs: 15, perAddress: 4, perSite: 32, total: 8 }, () => t);
    const key = (c: string, i: number) => `${c}${String(i).padStart(21, '0')}`;
    // An anonymous client fills the store from two addresses, and answers its own requests so none is pending.
    for (let i = 0; i < 4; i++) store.open(key('a', i), 'default', SITE, '192.0.2.1');
    for (let i = 0; i < 4; i++) store.open(key('b', i), 'default', SITE, '192.0.2.2');
    store.decide(key('a', 0), true);
    // An honest visitor still gets a request: the oldest of the largest holder's (192.0.2.1's) is dropped.
    expect(store.open(key('v', 0), 'default', SITE, '203.0.113.5').state).toBe('pending');
    expect(() => store.get(key('a', 0))).toThrow(/no such consent request/);
    expect(store.size).toBe(8);
    // The next one is made room for by the other address, which now holds the most; the visitor's stays.
    store.open(key('v', 1), 'default', SITE, '203.0.113.6');
    expect(() => store.get(key('b', 0))).toThrow(/no such consent request/);
    expect(store.get(key('v', 0)).state).toBe('pending');
    // An IPv6 client is one holder per /48, whichever /64s it spreads over.
    const big = new ConsentRequests({ ttlMs: 100, frameMs: 100, windowMs: 100, leaveMs: 15, perAddress: 4, perSite: 32, total: 6 }, () => t);
    for (let i = 0; i < 3; i++) big.open(key('x', i), 'default', SITE, addressKey(`2001:db8:9:${i}::1`));
    for (let i = 0; i < 2; i++) big.open(key('y', i), 'default', SITE, '192.0.2.3');
    big.open(key('z', 0), 'default', SITE, addressKey('2001:db8:8::1'));
    big.open(key('w', 0), 'default', SITE, '198.51.100.1');
    expect(() => big.get(key('x', 0))).toThrow(/no such consent request/);
    expect(big.get(key('y', 0)).state).toBe('pending');
    // The counts follow: the /48 that lost one may open one again.
    expect(big.open(key('x', 9), 'default', SITE, addressKey('2001:db8:9:0::1')).state).toBe('pending');
  });
});
