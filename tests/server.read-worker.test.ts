// Metric and connectivity answers are computed in a worker thread on a read-only connection of
// its own (server/read-worker.ts), so a long read no longer holds the event loop that relays the
// volunteers' signals and acknowledges their reports. Checked here: every kind of answer the
// worker gives is, byte for byte, what the coordinator's own connection computes; the
// coordinator's connection runs none of the answer's statements (only the one seek of the run's
// span that keys the cache); a report committed before a read is in its answer; a worker that
// dies fails only its own jobs, and the next read starts a new one.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type TestServer } from './support/coordinator.ts';
import type { ReportRow } from '../server/metrics.ts';

const T0 = 1_700_000_000_000;
const ROWS = 3000;
let s: TestServer;
/** Statements the coordinator's own connection ran on reports, besides the span seek. */
let mainReads = 0;
let seq = 0;

const pid = (i: number) => `p-${i.toString(16).padStart(16, '0')}`;
function row(i: number, t: number): ReportRow {
  seq++;
  const paired = i % 3 !== 0;
  return {
    runId: 'r', peerId: pid(i % 40), seq, time: t, t, receivedAt: t, step: seq, round: seq,
    trainLoss: i % 97 === 0 ? 'NaN' : 3 + (i % 7) / 10, valLoss: i % 10 === 0 ? 2.5 : null, tokensPerS: 100 + i, bytesIn: i, bytesOut: 2 * i,
    partner: paired ? pid((i + 1) % 40) : null, partnerDist: paired ? 0.01 * (i % 5) : null, adapter: 'gpu',
    linkLocal: paired ? (i % 2 ? 'host' : 'relay') : null, linkRemote: paired ? 'srflx' : null, connectMs: paired ? 30 + (i % 11) : null,
    linkFailures: i % 17 === 0 ? 2 : 0, linkError: i % 17 === 0 ? ['ice-failed', 'timeout'][i % 2]! : null,
  };
}

beforeAll(async () => {
  s = await startServer({});
  expect(s.c.readWorker, 'a coordinator on a file computes answers in its read worker').not.toBeNull();
  const r = await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id: 'r', dataset: 'moby-dick', preset: 'micro' } });
  expect(r.statusCode).toBe(201);
  for (let i = 0; i < ROWS; i++) s.c.metrics.enqueue(row(i, T0 + i * 37), () => {});
  s.c.metrics.flush();
  const db = s.c.db;
  const prepare = db.prepare.bind(db);
  db.prepare = (sql: string) => {
    const st = prepare(sql);
    if (!/^\s*SELECT/i.test(sql) || !/\breports\b/.test(sql) || sql.startsWith('SELECT (SELECT MIN(t)')) return st;
    const counted = (f: (...a: unknown[]) => unknown) => (...a: unknown[]) => { mainReads++; return f.apply(st, a); };
    return Object.assign(Object.create(st) as typeof st, { get: counted(st.get), all: counted(st.all), iterate: counted(st.iterate) });
  };
});
afterAll(async () => { await s.close(); });

const get = (url: string) => s.c.app.inject({ method: 'GET', url });

describe('read worker', () => {
  it('gives what the coordinator\'s own connection computes, without running it there', async () => {
    const end = T0 + ROWS * 37;
    const cases: [string, () => unknown][] = [
      [`/api/runs/r/metrics?from=0&to=${end}`, () => ({ run: 'r', peer: null, from: 0, to: end, ...s.c.metrics.query({ runId: 'r', from: 0, to: end, maxPoints: 2000 }) })],
      [`/api/runs/r/metrics?from=0&to=${end}&maxPoints=20000`, () => ({ run: 'r', peer: null, from: 0, to: end, ...s.c.metrics.query({ runId: 'r', from: 0, to: end, maxPoints: 20000 }) })],
      [`/api/runs/r/metrics?from=0&to=${end}&maxPoints=500&newest=true`, () => ({ run: 'r', peer: null, from: 0, to: end, ...s.c.metrics.query({ runId: 'r', from: 0, to: end, maxPoints: 500, newest: true }) })],
      [`/api/runs/r/metrics?peer=${pid(3)}&from=${T0 + 5000}&to=${T0 + 90_000}`, () => ({ run: 'r', peer: pid(3), from: T0 + 5000, to: T0 + 90_000, ...s.c.metrics.query({ runId: 'r', peerId: pid(3), from: T0 + 5000, to: T0 + 90_000, maxPoints: 2000 }) })],
      [`/api/runs/r/connectivity?from=0&to=${end}`, () => ({ run: 'r', from: 0, to: end, ...s.c.metrics.connectivity('r', T0, T0 + (ROWS - 1) * 37) })],
      [`/api/runs/r/connectivity?from=${T0 + 20_000}&to=${T0 + 60_000}`, () => ({ run: 'r', from: T0 + 20_000, to: T0 + 60_000, ...s.c.metrics.connectivity('r', T0 + 20_000, T0 + 60_000) })],
    ];
    const jobs = s.c.readWorker!.stats.jobs;
    for (const [url, inline] of cases) {
      mainReads = 0;
      const r = await get(url);
      expect(r.statusCode, url).toBe(200);
      expect(mainReads, `${url}: statements on the coordinator's connection`).toBe(0);
      expect(r.body, url).toBe(JSON.stringify(inline()));
      expect(r.json().points?.length ?? r.json().peers.length, url).toBeGreaterThan(0);
    }
    expect(s.c.readWorker!.stats.jobs - jobs).toBe(cases.length);
  });

  it('answers with every report committed before the read', async () => {
    const t = T0 + ROWS * 37 + 1000;
    for (let k = 0; k < 3; k++) {
      // Queued, not committed: the route commits what is queued, then asks the worker.
      s.c.metrics.enqueue({ ...row(k, t + k), peerId: pid(99) }, () => {});
      const r = await get(`/api/runs/r/metrics?peer=${pid(99)}&from=${T0}&to=${t + 10}`);
      expect(r.json().points.map((p: { t: number }) => p.t)).toEqual(Array.from({ length: k + 1 }, (_, j) => t + j));
    }
  });

  it('fails only the jobs of a worker that dies, and the next read starts a new one', async () => {
    const w = s.c.readWorker!;
    const started = w.stats.started;
    // A job the worker has not answered when it is killed: its post is held back here, so the
    // worker cannot answer it first, whatever the scheduling.
    const inner = (w as unknown as { worker: { terminate(): Promise<number>; postMessage(m: unknown): void } | null }).worker;
    expect(inner).not.toBeNull();
    inner!.postMessage = () => {};
    const job = w.read({ kind: 'connectivity', runId: 'r', from: T0, to: T0 + 50_000 });
    expect(w.queued).toBe(1);
    await inner!.terminate();
    await expect(job).rejects.toThrow(/^the read worker exited with code 1$/);
    expect(w.queued).toBe(0);
    const r = await get(`/api/runs/r/connectivity?from=${T0 + 1}&to=${T0 + 50_000}`);
    expect(r.statusCode).toBe(200);
    expect(w.stats.started).toBe(started + 1);
    // The failed read left no place taken: an address can have two answers computed again.
    const again = await Promise.all([2, 3].map((k) => get(`/api/runs/r/connectivity?from=${T0 + k}&to=${T0 + 50_000}`)));
    expect(again.map((x) => x.statusCode)).toEqual([200, 200]);
  });

  it('walks one peer\'s index for its newest rows, ties in time kept in insertion order', async () => {
    const t = T0 + ROWS * 37 + 50_000;
    for (let k = 0; k < 6; k++) s.c.metrics.enqueue({ ...row(k, t + Math.floor(k / 2)), peerId: pid(98) }, () => {});
    const r = await get(`/api/runs/r/metrics?peer=${pid(98)}&from=${T0}&to=${t + 10}&maxPoints=4&newest=true`);
    const page = r.json() as { total: number; downsampled: boolean; points: { t: number; seq: number }[] };
    expect([page.total, page.downsampled]).toEqual([6, false]);
    const seqs = page.points.map((p) => p.seq);
    expect(page.points.map((p) => p.t)).toEqual([t + 1, t + 1, t + 2, t + 2]);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    const plan = s.c.db.prepare(`EXPLAIN QUERY PLAN SELECT * FROM (SELECT t, id FROM reports INDEXED BY reports_run_peer_t WHERE run_id = 'r' AND t >= 0 AND t <= 1 AND peer_id = 'x' ORDER BY t DESC, id DESC LIMIT 4) ORDER BY t, id`).all() as { detail: string }[];
    expect(plan.map((p) => p.detail).join('; ')).toMatch(/USING (COVERING )?INDEX reports_run_peer_t/);
  });
});
