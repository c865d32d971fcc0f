// Anonymous reads' share of the coordinator's event loop (server/read-budget.ts): GET /metrics,
// /connectivity and /events run synchronous SQLite, and a client that varies its range misses
// the answer cache every time. Each read is charged what it took to its client address and to
// all anonymous clients together; a read that would start while either is spent gets 429 with a
// Retry-After, before any statement runs. Time here is the budget's injected clock, which every
// statement reading the reports or events table moves on by STATEMENT_MS: so what a read costs
// is counted, never timed. Client addresses come from X-Forwarded-For behind a trusted proxy.
// Also: `newest=true`, the dashboard's one-request history (the newest rows raw, not buckets).
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startServer, until, type TestServer } from './support/coordinator.ts';
import { EventEmitter } from 'node:events';
import { connect, type Socket } from 'node:net';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { DEFAULT_READ_LIMITS, ReadBudget, SEND_MS_PER_MB } from '../server/read-budget.ts';
import { Allowance } from '../server/address-budget.ts';
import { readBudgetOption } from '../src/commands/serve.ts';

const STATEMENT_MS = 100;
const T0 = 1_700_000_000_000;

let s: TestServer;
/** The read budget's clock (ms). */
let mono = 0;
/** Statements run against reports or events since the last take(). */
let reads = 0;
const take = () => { const n = reads; reads = 0; return n; };
/** Every statement prepared on the coordinator's connection, in order. */
const prepared: string[] = [];

const get = (url: string, xff: string, headers: Record<string, string> = {}) =>
  s.c.app.inject({ method: 'GET', url, headers: { 'x-forwarded-for': xff, ...headers } });

beforeAll(async () => {
  s = await startServer({
    trustProxy: ['127.0.0.1'],
    // Reads on the coordinator's own connection, timed on the same clock: what a read costs is the statements it runs.
    readWorker: false, metrics: { now: () => mono },
    reads: { perAddressMsPerS: 10, perAddressBurstMs: 50, totalMsPerS: 20, totalBurstMs: 1000, now: () => mono },
  });
  const r = await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id: 'r', dataset: 'moby-dick', preset: 'micro' } });
  expect(r.statusCode).toBe(201);
  for (let i = 0; i < 30; i++) {
    s.c.metrics.enqueue({
      runId: 'r', peerId: `p-${(i % 3).toString(16).padStart(16, '0')}`, seq: i + 1, time: T0 + i * 1000, t: T0 + i * 1000, receivedAt: T0 + i * 1000,
      step: i, round: i, trainLoss: 3, valLoss: null, tokensPerS: 10, bytesIn: 1, bytesOut: 1, partner: null, partnerDist: null, adapter: null,
    }, () => {});
  }
  s.c.metrics.flush();
  const db = s.c.db;
  const prepare = db.prepare.bind(db);
  db.prepare = (sql: string) => {
    const st = prepare(sql);
    prepared.push(sql);
    if (!/^\s*SELECT/i.test(sql) || !/\b(reports|events)\b/.test(sql)) return st;
    const counted = (f: (...a: unknown[]) => unknown) => (...a: unknown[]) => { reads++; mono += STATEMENT_MS; return f.apply(st, a); };
    return Object.assign(Object.create(st) as typeof st, { get: counted(st.get), all: counted(st.all), iterate: counted(st.iterate) });
  };
});
afterAll(async () => { await s.close(); });

describe('read budget', () => {
  it('refuses a client past its share before any query runs, names it, and says when to come back', async () => {
    let from = T0 + 1; // inside the run's span: every read a fresh question (AnswerCache keys a range past the first row as open)
    const metrics = (xff: string, headers: Record<string, string> = {}) => get(`/api/runs/r/metrics?from=${from++}`, xff, headers);
    take();
    // A fresh address may start; its first read costs at least one statement and overdraws it.
    const first = await metrics('198.18.0.1');
    expect(first.statusCode).toBe(200);
    expect(take()).toBeGreaterThan(0);
    const refused = await metrics('198.18.0.1');
    expect(refused.statusCode).toBe(429);
    expect(take()).toBe(0);
    expect(refused.json()).toMatchObject({ code: 'read-budget', error: expect.stringMatching(/^this address has used its 10 ms per second .*; retry in \d+\.\d s$/) });
    // Its debt is at least a statement less its 50 ms: 5 s or more at 10 ms/s.
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(5);
    // The other reads share its budget.
    for (const url of ['/api/runs/r/connectivity?from=1', '/api/runs/r/events?from=1', '/api/runs/r/peers']) {
      expect((await get(url, '198.18.0.1')).statusCode).toBe(429);
    }
    expect(take()).toBe(0);

    // Other addresses have shares of their own, until all anonymous clients together have spent theirs (1,000 ms).
    let served = 0;
    let last = await get('/api/runs/r/connectivity?from=2', '198.18.0.2');
    while (last.statusCode === 200 && served < 20) {
      served++;
      last = await metrics(`198.18.0.${10 + served}`);
    }
    expect(served).toBeGreaterThan(1);
    take();
    expect(last.statusCode).toBe(429);
    expect(last.json()).toMatchObject({ error: expect.stringMatching(/^anonymous clients together have used their 20 ms per second .*volunteers'/) });
    expect(take()).toBe(0);

    // The admin token is neither refused nor charged.
    const admin = await metrics('198.18.0.1', s.admin);
    expect(admin.statusCode).toBe(200);
    expect(take()).toBeGreaterThan(0);
    expect((await metrics('198.18.0.4')).statusCode).toBe(429);

    // Time earns the budgets back: after the Retry-After the first address reads again.
    mono += Number(refused.headers['retry-after']) * 1000 + 60_000;
    expect((await metrics('198.18.0.1')).statusCode).toBe(200);
    expect(s.c.reads.stats.refused).toBe(6);
  });

  it('keeps a bounded number of addresses, each forgotten one full again', () => {
    let now = 0;
    const b = new Allowance(10, 50, () => now, 4);
    for (let i = 0; i < 100; i++) b.charge(`a${i}`, 80);
    expect(b.keys).toBe(4);
    expect(b.waitMs('a99')).toBe(3001); // 30 ms of debt at 10 ms/s
    expect(b.waitMs('a0')).toBe(0);
    now += 8000;
    expect(b.waitMs('a99')).toBe(0);
    b.charge('a99', 0); // back at full: forgotten
    expect(b.keys).toBe(3);
  });

  it('murmur serve --read-budget: the defaults, "off", and a clear refusal of anything else', () => {
    expect(readBudgetOption('250,500')).toEqual(DEFAULT_READ_LIMITS);
    expect(DEFAULT_READ_LIMITS).toMatchObject({ perAddressBurstMs: 2000, totalBurstMs: 4000 });
    expect(readBudgetOption('off').totalMsPerS).toBe(Infinity);
    for (const bad of ['250', '0,500', '600,500', '250,5000', 'a,b', '250,500,1', '2.5,500']) {
      expect(() => readBudgetOption(bad), bad).toThrow(`--read-budget takes "<per address>,<all clients>" in milliseconds per second (1 to 1000 each, the first no more than the second; default 250,500) or "off", got "${bad}"`);
    }
  });
});

describe('answers being made and sent', () => {
  /** A request from `ip` and a reply whose socket `raw` the test finishes. */
  function exchange(ip: string) {
    const sent: { code: number; headers: Record<string, string>; body: unknown } = { code: 200, headers: {}, body: undefined };
    const raw = Object.assign(new EventEmitter(), {
      destroyed: false,
      // As a socket does: destroyed once, then 'close'.
      destroy() { if (raw.destroyed) return; raw.destroyed = true; raw.emit('close'); },
    });
    const reply = {
      raw,
      code(c: number) { sent.code = c; return reply; },
      header(k: string, v: string) { sent.headers[k] = v; return reply; },
      type(v: string) { sent.headers['content-type'] = v; return reply; },
      send(b: unknown) { sent.body = b; return reply; },
    };
    const req = { ip, headers: {}, url: '/api/runs/r/metrics', log: { info() {} } };
    return { req: req as unknown as FastifyRequest, reply: reply as unknown as FastifyReply, raw, sent };
  }

  it('charges what sending takes, a cached answer too, and holds at most so much unsent per address and in all', async () => {
    let now = 0;
    const b = new ReadBudget({ ...DEFAULT_READ_LIMITS, sendingPerAddress: 3e6, sendingTotal: 5e6, now: () => now }, 'f'.repeat(64));
    const answer = (chars: number) => () => ({ value: 'x'.repeat(chars), ms: 0 });
    const a1 = exchange('198.18.2.1');
    await b.serve(a1.req, a1.reply, answer(2e6));
    expect(a1.sent.code).toBe(200);
    expect(b.stats.chargedMs).toBeCloseTo(2 * SEND_MS_PER_MB);
    expect(b.sendingChars).toBe(2e6);
    // One address: a second answer past its 3e6 waits until the first is taken.
    const a2 = exchange('198.18.2.1');
    await b.serve(a2.req, a2.reply, answer(2e6));
    expect(a2.sent).toMatchObject({ code: 429, body: { code: 'read-budget', error: expect.stringMatching(/^this address has \d+ MiB of answers its connections have not taken yet/) } });
    // Alone, an answer larger than the cap is sent; all together, 5e6.
    const c1 = exchange('198.18.2.2');
    await b.serve(c1.req, c1.reply, answer(4e6));
    expect(c1.sent.code).toBe(429);
    expect(c1.sent.body).toMatchObject({ error: expect.stringMatching(/^anonymous clients together have/) });
    a1.raw.emit('finish');
    a1.raw.emit('close');
    expect(b.sendingChars).toBe(0);
    const c2 = exchange('198.18.2.2');
    await b.serve(c2.req, c2.reply, answer(4e6));
    expect(c2.sent.code).toBe(200);
    c2.raw.emit('close'); // a client gone before reading releases it too
    expect(b.sendingChars).toBe(0);
  });

  it('cuts a connection that has not taken its answer by its deadline, the longer of sendMinMs and its size at sendCharsPerS', async () => {
    // Without a deadline an answer never read was held for as long as its socket stayed open: 11
    // addresses pausing theirs after asking for the dashboard's history held the 64 MiB all
    // anonymous clients share, and every other reader got 429 for good.
    vi.useFakeTimers();
    try {
      const b = new ReadBudget({ ...DEFAULT_READ_LIMITS, sendMinMs: 1000, sendCharsPerS: 1e6, now: () => 0 }, 'f'.repeat(64));
      const answer = (chars: number) => () => ({ value: 'x'.repeat(chars), ms: 0 });
      const small = exchange('198.18.6.1');
      const large = exchange('198.18.6.2');
      const read = exchange('198.18.6.3');
      await b.serve(small.req, small.reply, answer(1000));
      await b.serve(large.req, large.reply, answer(3e6)); // 3 s at 1e6 chars a second
      await b.serve(read.req, read.reply, answer(3e6));
      expect([small, large, read].map((x) => x.sent.code)).toEqual([200, 200, 200]);
      read.raw.emit('finish'); // handed to its socket in time: never cut
      expect(b.sendingChars).toBe(3e6 + 1000);
      vi.advanceTimersByTime(999);
      expect(small.raw.destroyed).toBe(false);
      vi.advanceTimersByTime(1);
      expect(small.raw.destroyed).toBe(true);
      expect(b.sendingChars).toBe(3e6);
      vi.advanceTimersByTime(1999);
      expect(large.raw.destroyed).toBe(false);
      vi.advanceTimersByTime(1);
      expect(large.raw.destroyed).toBe(true);
      expect(b.sendingChars).toBe(0);
      vi.advanceTimersByTime(60_000);
      expect(read.raw.destroyed).toBe(false);
      expect(b.stats.cut).toBe(2);
    } finally {
      vi.useRealTimers();
    }
  });

  it('refuses an answer larger than all anonymous clients may hold unsent together, saying so; the admin token gets it', async () => {
    // Admitted alone (nothing else held), such an answer left no room for anyone's until taken.
    const b = new ReadBudget({ ...DEFAULT_READ_LIMITS, sendingPerAddress: 1e6, sendingTotal: 2 * 1024 * 1024, now: () => 0 }, 'f'.repeat(64));
    const big = exchange('198.18.7.1');
    await b.serve(big.req, big.reply, () => ({ value: 'x'.repeat(3 * 1024 * 1024), ms: 0 }));
    expect(big.sent).toMatchObject({ code: 400, body: { code: 'read-budget', error: 'this answer is 3.0 MiB, more than the 2 MiB of unsent answers anonymous clients may hold together; ask for fewer points or a narrower range' } });
    expect(b.sendingChars).toBe(0);
    // Larger than an address's cap alone is still sent, as before.
    const ok = exchange('198.18.7.1');
    await b.serve(ok.req, ok.reply, () => ({ value: 'x'.repeat(2 * 1024 * 1024), ms: 0 }));
    expect(ok.sent.code).toBe(200);
    const admin = exchange('198.18.7.2');
    (admin.req.headers as Record<string, string>).authorization = `Bearer ${'f'.repeat(64)}`;
    await b.serve(admin.req, admin.reply, () => ({ value: 'x'.repeat(3 * 1024 * 1024), ms: 0 }));
    expect(admin.sent.code).toBe(200);
  });

  it('holds nothing for a client gone while its answer was made: its socket will not close again', async () => {
    const b = new ReadBudget({ ...DEFAULT_READ_LIMITS, now: () => 0 }, 'f'.repeat(64));
    const gone = exchange('198.18.2.9');
    await b.serve(gone.req, gone.reply, () => {
      gone.raw.destroyed = true; // the client hung up while the answer was computed; its 'close' has fired
      return { value: 'x'.repeat(1e6), ms: 0 };
    });
    expect(b.sendingChars).toBe(0);
    expect(gone.sent.body).toBeUndefined();
    // One gone before it was asked anything costs no computation at all.
    let asked = 0;
    await b.serve(gone.req, gone.reply, () => { asked++; return { value: '{}', ms: 0 }; });
    expect(asked).toBe(0);
  });

  it('admits two answers being computed per address and sixteen in all, and frees each place when its computation ends', async () => {
    const b = new ReadBudget({ ...DEFAULT_READ_LIMITS, now: () => 0 }, 'f'.repeat(64));
    const gates: (() => void)[] = [];
    const slow = (admit?: () => () => void) => new Promise<{ value: string; ms: number }>((resolve) => {
      const release = admit!();
      gates.push(() => { release(); resolve({ value: '{}', ms: 0 }); });
    });
    const serve = (ip: string) => { const x = exchange(ip); return { x, done: b.serve(x.req, x.reply, slow) }; };
    const mine = [serve('198.18.3.1'), serve('198.18.3.1'), serve('198.18.3.1')];
    await mine[2]!.done;
    expect(mine[2]!.x.sent).toMatchObject({ code: 429, body: { error: 'this address has 2 reads being computed, the limit; wait for one to end' } });
    const others = Array.from({ length: 15 }, (_, i) => serve(`198.18.4.${i + 1}`));
    await others[14]!.done;
    expect(others[14]!.x.sent).toMatchObject({ code: 429, body: { error: '16 reads are being computed, the limit for anonymous clients together; retry shortly' } });
    for (const g of gates.splice(0)) g();
    await Promise.all([...mine, ...others].map((m) => m.done));
    expect([...mine.slice(0, 2), ...others.slice(0, 14)].every((m) => m.x.sent.code === 200)).toBe(true);
    const later = serve('198.18.3.1');
    gates.splice(0).forEach((g) => g());
    await later.done;
    expect(later.x.sent.code).toBe(200);
  });
});

describe('newest', () => {
  it('gives the newest maxPoints rows raw, oldest first, where the range would be bucketed', async () => {
    mono += 1e9;
    const bucketed = await get('/api/runs/r/metrics?maxPoints=10', '198.18.1.1', s.admin);
    expect(bucketed.json()).toMatchObject({ downsampled: true, total: 30 });
    const newest = (await get('/api/runs/r/metrics?maxPoints=10&newest=true', '198.18.1.1', s.admin)).json() as { downsampled: boolean; total: number; points: { t: number; seq: number }[] };
    expect(newest.downsampled).toBe(false);
    expect(newest.total).toBe(30);
    expect(newest.points.map((p) => p.seq)).toEqual([21, 22, 23, 24, 25, 26, 27, 28, 29, 30]);
    expect(Object.keys(newest.points[0]!)).not.toContain('id');
    // Within maxPoints it is the plain raw page.
    const few = (await get(`/api/runs/r/metrics?from=${T0 + 25_000}&newest=true`, '198.18.1.1', s.admin)).json() as { points: { seq: number }[] };
    expect(few.points.map((p) => p.seq)).toEqual([26, 27, 28, 29, 30]);
  });
});

describe('newest, shared fairly', () => {
  /** Reports of `peer` at `times`, stored. */
  const store = (run: string, peer: string, times: number[]) => {
    for (const [i, t] of times.entries()) {
      s.c.metrics.enqueue({
        runId: run, peerId: peer, seq: i + 1, time: t, t, receivedAt: t, step: i, round: i, trainLoss: 3, valLoss: null, tokensPerS: 10,
        bytesIn: 1, bytesOut: 1, partner: null, partnerDist: null, adapter: null,
      }, () => {});
    }
    s.c.metrics.flush();
  };
  const ids = (k: number) => `p-${k.toString(16).padStart(16, '0')}`;
  beforeAll(async () => {
    for (const id of ['fair', 'crowd']) {
      expect((await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id, dataset: 'moby-dick', preset: 'micro' } })).statusCode).toBe(201);
    }
  });
  const newest = async (run: string, maxPoints: number, peer?: string) =>
    (await get(`/api/runs/${run}/metrics?from=0&to=${T0 + 1e9}&maxPoints=${maxPoints}&newest=true${peer ? `&peer=${peer}` : ''}`, '198.18.1.1', s.admin))
      .json() as { downsampled: boolean; total: number; points: { peerId: string; t: number; seq: number }[] };
  const perPeer = (points: { peerId: string }[]) => {
    const m = new Map<string, number>();
    for (const p of points) m.set(p.peerId, (m.get(p.peerId) ?? 0) + 1);
    return Object.fromEntries(m);
  };

  it('gives each peer its newest rows up to a fair share of maxPoints, so one fast reporter cannot push the others out', async () => {
    // Four peers reporting every 30 s for 5 minutes, one reporting 50 a second for the last 4 s:
    // the newest 100 rows of the run were all the fast one's, and the dashboard drew no line for
    // the others (on a real run, 390 s of four honest peers' 10 h).
    for (let k = 1; k <= 4; k++) store('fair', ids(k), Array.from({ length: 10 }, (_, i) => T0 + i * 30_000 + k));
    const end = T0 + 300_000;
    store('fair', ids(0), Array.from({ length: 200 }, (_, i) => end - 4000 + i * 20));
    prepared.length = 0;
    const page = await newest('fair', 100);
    expect(page.downsampled).toBe(false);
    // Counted and chosen on reports_run_peer_t alone, the rows then read by id: no scan of the table.
    const chosen = prepared.filter((sql) => /GROUP BY peer_id|ROW_NUMBER/.test(sql));
    expect(chosen).toHaveLength(2);
    for (const sql of chosen) {
      const plan = (s.c.db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all({ runId: 'fair', from: 0, to: 1 }) as { detail: string }[]).map((p) => p.detail).join('; ');
      expect(plan).toMatch(/SEARCH reports USING COVERING INDEX reports_run_peer_t \(run_id=\?\)/);
      expect(plan).not.toMatch(/SCAN reports\b/);
    }
    expect(page.total).toBe(240);
    // Every row of the honest peers (they are within their share), the fast one's newest 60.
    expect(perPeer(page.points)).toEqual({ [ids(0)]: 60, [ids(1)]: 10, [ids(2)]: 10, [ids(3)]: 10, [ids(4)]: 10 });
    expect(page.points.filter((p) => p.peerId === ids(0)).map((p) => p.seq)).toEqual(Array.from({ length: 60 }, (_, i) => 141 + i));
    // Oldest first, as before.
    expect(page.points.map((p) => p.t)).toEqual(page.points.map((p) => p.t).sort((a, b) => a - b));
    // A share that is not a whole number of rows: exactly maxPoints, the rest of it the newest
    // rows one past the share (47 among 5 peers: 9.4 each; 9 each, and the newest two of the
    // peers' tenth rows, the fast one's and then peer 4's).
    for (const maxPoints of [47, 99, 101, 239]) expect((await newest('fair', maxPoints)).points, String(maxPoints)).toHaveLength(maxPoints);
    expect(perPeer((await newest('fair', 47)).points)).toEqual({ [ids(0)]: 10, [ids(1)]: 9, [ids(2)]: 9, [ids(3)]: 9, [ids(4)]: 10 });
    // One peer's history is that peer's newest rows, as before.
    expect((await newest('fair', 5, ids(0))).points.map((p) => p.seq)).toEqual([196, 197, 198, 199, 200]);
  });

  it('gives the newest maxPoints rows of the run where the share is under one row (more peers than points)', async () => {
    for (let k = 0; k < 6; k++) store('crowd', ids(k), [T0 + k * 1000, T0 + k * 1000 + 1]);
    const page = await newest('crowd', 4);
    expect(page.total).toBe(12);
    expect(page.points.map((p) => [p.peerId, p.seq])).toEqual([[ids(4), 1], [ids(4), 2], [ids(5), 1], [ids(5), 2]]);
  });
});

describe('an answer nobody reads', () => {
  it('is cut at its deadline over a real socket, and its place goes to the next reader', async () => {
    // A short deadline (sendMinMs) so the test waits milliseconds, not the default 10 s.
    const t = await startServer({ reads: { ...DEFAULT_READ_LIMITS, sendingTotal: 18 * 1024 * 1024, sendMinMs: 200, sendCharsPerS: 1e9 } });
    try {
      const r = await t.c.app.inject({ method: 'POST', url: '/api/runs', headers: t.admin, payload: { id: 'r', dataset: 'moby-dick', preset: 'micro' } });
      expect(r.statusCode).toBe(201);
      // The longest strings a report may carry, so the history (~18 MB) is far more than the
      // loopback socket's buffers take: unread, its response cannot finish.
      for (let i = 0; i < 20_000; i++) {
        t.c.metrics.enqueue({
          runId: 'r', peerId: `p-${(i % 4).toString(16).padStart(16, '0')}`, seq: i + 1, time: T0 + i, t: T0 + i, receivedAt: T0 + i,
          step: i, round: i, trainLoss: 3, valLoss: null, tokensPerS: 1, bytesIn: 1, bytesOut: 1, partner: null, partnerDist: null,
          adapter: 'a'.repeat(200), linkFailures: 1, linkError: 'e'.repeat(300),
        }, () => {});
      }
      t.c.metrics.flush();
      const port = Number(new URL(t.url).port);
      /** A GET from `local` that reads the status line and then nothing. */
      const ask = (local: string, path: string) => new Promise<{ status: string; first: number; sock: Socket }>((resolve) => {
        const sock = connect({ host: '127.0.0.1', port, localAddress: local }, () => sock.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`));
        sock.on('error', () => {});
        sock.once('data', (d: Buffer) => { sock.pause(); resolve({ status: d.toString('latin1').split('\r\n')[0]!, first: d.length, sock }); });
      });
      const history = `/api/runs/r/metrics?maxPoints=20000&newest=true&from=0&to=${T0 + 1e9}`;
      const held = await ask('127.0.0.2', history);
      const closed = new Promise<void>((resolve) => held.sock.once('close', () => resolve()));
      expect(held.status).toBe('HTTP/1.1 200 OK');
      // Before, it held its answer for as long as the client kept the socket open.
      await until(() => t.c.reads.stats.cut === 1, 10_000, () => `the coordinator to cut the unread answer (${t.c.reads.sendingChars} chars held)`);
      expect(t.c.reads.sendingChars).toBe(0);
      // What the kernel had buffered still arrives, then the end: far short of the answer (17.4 MB).
      let got = held.first;
      held.sock.on('data', (d: Buffer) => { got += d.length; });
      held.sock.resume();
      await closed;
      expect(got).toBeLessThan(17e6);
      // Its place is free: another address's history (2,000 rows, 1.7 MB) fits under the 18 MiB
      // all share, which the cut answer held all but 1.5 MiB of.
      const next = await ask('127.0.0.3', `/api/runs/r/metrics?maxPoints=2000&newest=true&from=0&to=${T0 + 1e9}`);
      expect(next.status).toBe('HTTP/1.1 200 OK');
      next.sock.destroy();
    } finally {
      await t.close();
    }
  });
});
