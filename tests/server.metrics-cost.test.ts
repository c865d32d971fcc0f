// What a dashboard read costs the coordinator (docs/design.md section 6, "What a client can make
// the coordinator hold"): GET /metrics and /connectivity are public and run synchronous SQLite on
// the event loop, so N identical requests must cost one query, not N. Counted in statements
// executed against the reports table (never timed): 20 concurrent identical requests run the
// queries of one answer and get identical bodies; a new report makes the next answer fresh (at
// once on a small run, within staleAnswerMs on a run of staleAnswerRows or more, on the store's
// injected monotonic clock); varied parameters cannot grow the cache past its bounds; and the
// grouped connectivity query gives what its definition says on a run of 1,100 peers, computed
// here from the inserted reports.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ANSWER_CACHE_BYTES, ANSWER_CACHE_ENTRIES, ANSWER_CACHE_WHOLE_RUN_ENTRIES, FAILING_WINDOW, type ReportRow } from '../server/metrics.ts';
import { startServer, type TestServer } from './support/coordinator.ts';

const T0 = 1_700_000_000_000;
const PEERS = 1100;
const ROUNDS = 11;
const REASONS = ['ice-failed', 'timeout', 'refused', 'turn-unreachable', 'closed', 'no-route', 'dtls', 'sctp', 'stun', 'nat', 'dns', 'other'];
const ROUTES: [string | null, string | null][] = [[null, null], ['host', 'srflx'], ['relay', 'host'], ['srflx', 'relay'], ['host', null]];

let s: TestServer;
/** The store's monotonic clock: cached answers age only when the test moves it. */
let mono = 0;
/** Statements run against the reports table since the last take(). */
let reads = 0;
const take = () => { const n = reads; reads = 0; return n; };
/** Every report inserted into run `big`, in insertion (id) order. */
const bigRows: ReportRow[] = [];
let seq = 0;

const peerId = (i: number) => `p-${i.toString(16).padStart(16, '0')}`;

/** A deterministic sequence in [0, 1). */
function lcg(seed: number): () => number {
  let x = seed >>> 0;
  return () => ((x = (Math.imul(x, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

function row(runId: string, peer: string, t: number, o: Partial<ReportRow> = {}): ReportRow {
  seq++;
  return {
    runId, peerId: peer, seq, time: t, t, receivedAt: t, step: seq, round: seq, trainLoss: 3, valLoss: null, tokensPerS: 10, bytesIn: 1, bytesOut: 1,
    partner: null, partnerDist: null, adapter: null, linkLocal: null, linkRemote: null, connectMs: null, linkFailures: 0, linkError: null, ...o,
  };
}

/** Enqueues without committing: the route's flush commits them, as it does for reports ack'd in its turn. */
function add(rows: ReportRow[]): void {
  for (const r of rows) s.c.metrics.enqueue(r, () => {});
}

const get = (url: string) => s.c.app.inject({ method: 'GET', url });

beforeAll(async () => {
  // Statements are what this file counts: the read budget (server/read-budget.ts, its own test),
  // which could refuse a loop of fresh questions on a slow machine, or 20 concurrent 5 MB answers
  // to one address, is left unbounded here.
  // The statements are counted on the coordinator's own connection, so reads run on it (readWorker
  // false; server.read-worker checks the worker gives the same answers).
  s = await startServer({ metrics: { now: () => mono }, reads: { perAddressBurstMs: Infinity, totalBurstMs: Infinity, sendingPerAddress: Infinity, sendingTotal: Infinity }, readWorker: false });
  for (const id of ['big', 'small']) {
    const r = await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id, dataset: 'moby-dick', preset: 'micro' } });
    expect(r.statusCode).toBe(201);
  }
  // Count every statement the store prepares from here on that reads or writes reports.
  const db = s.c.db;
  const prepare = db.prepare.bind(db);
  db.prepare = (sql: string) => {
    const st = prepare(sql);
    if (!/\breports\b/.test(sql)) return st;
    const counted = (f: (...a: unknown[]) => unknown) => (...a: unknown[]) => { reads++; return f.apply(st, a); };
    return Object.assign(Object.create(st) as typeof st, { get: counted(st.get), all: counted(st.all), iterate: counted(st.iterate), run: counted(st.run) });
  };
  // Run `big`: 1,100 peers x 11 rounds (12,100 reports, over the 10,000 rows of staleAnswerRows), with
  // ties in t, every route, link failures with 12 reasons, and peers whose last rounds went solo.
  const rnd = lcg(7);
  for (let round = 0; round < ROUNDS; round++) {
    for (let p = 0; p < PEERS; p++) {
      const t = T0 + round * 1000 + (p % 50) * 3; // 22 peers share each t; a peer's t strictly grows.
      const failingPeer = p % 9 === 0;
      const paired = failingPeer && round >= ROUNDS - FAILING_WINDOW ? false : rnd() < 0.6;
      const route = paired ? ROUTES[1 + Math.floor(rnd() * 4)]! : ROUTES[0]!;
      const fails = (failingPeer || rnd() < 0.1) && rnd() < 0.6 ? 1 + Math.floor(rnd() * 3) : 0;
      const err = fails > 0 || rnd() < 0.05 ? REASONS[Math.floor(rnd() * rnd() * REASONS.length)]! : null;
      bigRows.push(row('big', peerId(p), t, {
        partner: paired ? peerId((p + 1) % PEERS) : null, linkLocal: route[0] as ReportRow['linkLocal'], linkRemote: route[1] as ReportRow['linkRemote'],
        connectMs: paired && rnd() < 0.7 ? Math.floor(rnd() * 3000) : null, linkFailures: fails, linkError: err,
      }));
    }
  }
  // Two reports of one peer at the same t: the later id is the later report.
  bigRows.push(row('big', peerId(3), T0 + 20_000, { linkFailures: 1, linkError: 'first' }), row('big', peerId(3), T0 + 20_000, { linkFailures: 1, linkError: 'second' }));
  add(bigRows);
  add(Array.from({ length: 40 }, (_, i) => row('small', peerId(i % 4), T0 + i * 100, { partner: i % 3 ? peerId((i + 1) % 4) : null, linkLocal: 'host', linkRemote: 'host', connectMs: i })));
  s.c.metrics.flush();
});
afterAll(() => s?.close());

/** What /connectivity answers by its definition (server/metrics.ts, Connectivity), from the reports themselves. */
function expected(rows: ReportRow[], from: number, to: number) {
  const ids = new Map(rows.map((r, i) => [r, i]));
  const inRange = rows.filter((r) => r.t >= from && r.t <= to);
  const ll = (r: ReportRow) => r.linkLocal ?? null, lr = (r: ReportRow) => r.linkRemote ?? null;
  // SQL's NULL: a link with one side unknown is neither direct nor (unless one side is a relay) relayed.
  const direct = inRange.filter((r) => ll(r) !== null && lr(r) !== null && ll(r) !== 'relay' && lr(r) !== 'relay').length;
  const relayed = inRange.filter((r) => ll(r) === 'relay' || lr(r) === 'relay').length;
  const times = inRange.flatMap((r) => (r.connectMs ?? null) === null ? [] : [r.connectMs!]).sort((a, b) => a - b);
  const byReason = new Map<string, number>();
  for (const r of inRange) if (r.linkError && (r.linkFailures ?? 0) > 0) byReason.set(r.linkError, (byReason.get(r.linkError) ?? 0) + r.linkFailures!);
  const reasons = [...byReason].map(([reason, count]) => ({ reason, count }))
    .sort((a, b) => b.count - a.count || (a.reason < b.reason ? -1 : 1)).slice(0, 10);
  const byPeer = new Map<string, ReportRow[]>();
  for (const r of inRange) byPeer.set(r.peerId, [...(byPeer.get(r.peerId) ?? []), r]);
  const peers = [...byPeer.keys()].sort().slice(0, 1000).map((id) => {
    const own = byPeer.get(id)!.sort((a, b) => b.t - a.t || ids.get(b)! - ids.get(a)!); // newest first
    const linkFailures = own.reduce((a, r) => a + (r.linkFailures ?? 0), 0);
    const last = own.slice(0, FAILING_WINDOW);
    return {
      peerId: id, paired: own.filter((r) => r.partner !== null).length, solo: own.filter((r) => r.partner === null).length, linkFailures,
      lastLinkError: own.find((r) => r.linkError)?.linkError ?? null,
      failing: linkFailures > 0 && last.length >= Math.min(FAILING_WINDOW, 2) && last.every((r) => r.partner === null),
    };
  });
  return {
    exchanges: { direct, relayed }, relayFraction: direct + relayed > 0 ? relayed / (direct + relayed) : null,
    medianConnectMs: times.length > 0 ? times[Math.floor((times.length - 1) / 2)]! : null,
    linkFailures: inRange.reduce((a, r) => a + (r.linkFailures ?? 0), 0), reasons, peers,
  };
}

describe('the cost of a dashboard read', () => {
  it('answers connectivity on 1,100 peers by its definition, over the whole run and over a part of it', async () => {
    for (const [from, to] of [[0, T0 + 1e9], [T0 + 2000, T0 + 6500], [T0 + 10_000, T0 + 10_000]] as const) {
      const body = (await get(`/api/runs/big/connectivity?from=${from}&to=${to}`)).json();
      const want = expected(bigRows, from, to);
      expect(body).toEqual({ run: 'big', from, to, ...want });
      if (to > T0 + 20_000) {
        expect(want.peers.filter((p) => p.failing).length).toBeGreaterThan(50);
        expect(want.peers.find((p) => p.peerId === peerId(3))!.lastLinkError).toBe('second');
        expect(want.reasons).toHaveLength(10);
      }
    }
    // Statements a connectivity answer takes: a constant, whatever the number of peers.
    take();
    await get(`/api/runs/big/connectivity?from=${T0 + 1}&to=${T0 + 9000}`);
    expect(take()).toBeLessThanOrEqual(4);
  });

  it('runs the queries of 20 concurrent identical requests once, and gives them one body', async () => {
    const to = T0 + 1e9;
    for (const [i, url] of [`/api/runs/big/connectivity?to=${to}`, `/api/runs/big/metrics?to=${to}&maxPoints=20000`, `/api/runs/big/metrics?from=0&to=${to}&maxPoints=500`, `/api/runs/small/connectivity?to=${to}`].entries()) {
      // A new report, past the cache's age: no earlier answer serves, so one answer must be made.
      const fresh = row(url.includes('/big/') ? 'big' : 'small', peerId(8), T0 + 40_000 + i);
      if (fresh.runId === 'big') bigRows.push(fresh);
      add([fresh]);
      s.c.metrics.flush();
      mono += 10_000;
      take();
      const replies = await Promise.all(Array.from({ length: 20 }, () => get(url)));
      // One answer's statements (at least 1, at most 4), not 20 answers' (at least 20).
      const statements = take();
      expect(statements, url).toBeGreaterThanOrEqual(1);
      expect(statements, url).toBeLessThanOrEqual(4);
      expect(replies.every((r) => r.statusCode === 200 && r.headers['content-type'] === 'application/json; charset=utf-8')).toBe(true);
      expect(new Set(replies.map((r) => r.body)).size, url).toBe(1);
    }
    // The cached body is what the uncached query serializes to.
    const r = await get(`/api/runs/big/metrics?from=0&to=${T0 + 1e9}&maxPoints=500`);
    const answer = s.c.metrics.query({ runId: 'big', from: 0, to: T0 + 1e9, maxPoints: 500 });
    expect(answer.downsampled).toBe(true);
    expect(r.body).toBe(JSON.stringify({ run: 'big', peer: null, from: 0, to: T0 + 1e9, ...answer }));
    const raw = await get(`/api/runs/big/metrics?peer=${peerId(5)}&from=${T0}&to=${T0 + 5000}`);
    expect(raw.body).toBe(JSON.stringify({ run: 'big', peer: peerId(5), from: T0, to: T0 + 5000, ...s.c.metrics.query({ runId: 'big', peerId: peerId(5), from: T0, to: T0 + 5000, maxPoints: 2000 }) }));
    // A dashboard asks up to Date.now(): any `to` past the newest report is the same question.
    take();
    const late = await Promise.all([T0 + 1e6, T0 + 2e6, T0 + 3e6].map((to) => get(`/api/runs/big/metrics?from=0&to=${to}&maxPoints=20000`)));
    expect(take()).toBeLessThanOrEqual(3);
    expect(new Set(late.map((x) => x.json().points.length)).size).toBe(1);
  });

  it('answers a small run afresh after each new report', async () => {
    const before = (await get('/api/runs/small/connectivity')).json();
    const total = (await get('/api/runs/small/metrics')).json().total as number;
    take();
    await get('/api/runs/small/connectivity');
    await get('/api/runs/small/metrics');
    expect(take()).toBe(0);
    add([row('small', peerId(1), T0 + 5000, { linkLocal: 'relay', linkRemote: 'host', partner: peerId(2), connectMs: 7 })]);
    const after = (await get('/api/runs/small/connectivity')).json();
    expect(after.exchanges).toEqual({ direct: before.exchanges.direct, relayed: before.exchanges.relayed + 1 });
    expect((await get('/api/runs/small/metrics')).json().total).toBe(total + 1);
    expect(take()).toBeGreaterThan(0);
  });

  it('answers a big run from an answer at most staleAnswerMs old, then afresh', async () => {
    const url = `/api/runs/big/metrics?peer=${peerId(7)}&from=0&to=${T0 + 1e9}`;
    const first = (await get(url)).json();
    add([row('big', peerId(7), T0 + 30_000, { trainLoss: 1.5 })]);
    take();
    mono += 999;
    // Within the second: the report is committed (and counted) but the answer is the cached one.
    const held = (await get(url)).json();
    expect(held).toEqual(first);
    expect(take()).toBe(0);
    mono += 1;
    const fresh = (await get(url)).json();
    expect(fresh.total).toBe(first.total + 1);
    expect(fresh.points.at(-1)).toMatchObject({ t: T0 + 30_000, trainLoss: 1.5 });
  });

  it('keeps the whole-run answers every dashboard shares however many ranged ones a client asks for', async () => {
    // One client asking 64 one-row ranges (a few ms of its read budget) evicted the run's
    // history from the cache, and every dashboard after it paid the full computation again.
    const history = `/api/runs/big/metrics?from=0&to=${T0 + 1e9}&maxPoints=20000&newest=true`;
    const connectivity = '/api/runs/big/connectivity';
    const buckets = '/api/runs/big/metrics?maxPoints=500';
    for (const url of [history, connectivity, buckets]) expect((await get(url)).statusCode).toBe(200);
    take();
    for (let i = 0; i < 2 * ANSWER_CACHE_ENTRIES; i++) {
      expect((await get(`/api/runs/big/metrics?from=${T0 + 1 + i * 50}&to=${T0 + 1 + i * 50}&maxPoints=1`)).statusCode).toBe(200);
    }
    // One peer's whole run is not every dashboard's: it is ranged too.
    for (let i = 0; i < 20; i++) expect((await get(`/api/runs/big/metrics?peer=${peerId(i)}&maxPoints=5`)).statusCode).toBe(200);
    expect(take()).toBeGreaterThan(0);
    for (const url of [history, connectivity, buckets]) expect((await get(url)).statusCode).toBe(200);
    expect(take()).toBe(0);
    expect(s.c.metrics.answerStats.entries).toBeLessThanOrEqual(ANSWER_CACHE_ENTRIES + ANSWER_CACHE_WHOLE_RUN_ENTRIES);
  });

  it('keeps at most ANSWER_CACHE_ENTRIES ranged and ANSWER_CACHE_WHOLE_RUN_ENTRIES whole-run answers, and ANSWER_CACHE_BYTES, however the parameters vary', async () => {
    for (let i = 0; i < 120; i++) {
      const r = await get(`/api/runs/big/metrics?from=${T0 + i}&maxPoints=${1 + (i % 40)}${i % 3 ? `&peer=${peerId(i)}` : ''}`);
      expect(r.statusCode).toBe(200);
    }
    for (let i = 0; i < 10; i++) await get(`/api/runs/big/metrics?from=${T0 + i * 1000}&maxPoints=20000`);
    const st = s.c.metrics.answerStats;
    expect(st.entries).toBeLessThanOrEqual(ANSWER_CACHE_ENTRIES + ANSWER_CACHE_WHOLE_RUN_ENTRIES);
    expect(st.bytes).toBeLessThanOrEqual(ANSWER_CACHE_BYTES);
    expect(st.bytes).toBeGreaterThan(ANSWER_CACHE_BYTES / 2);
  });
});
