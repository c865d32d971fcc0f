// Database growth per peer and per run (issue 16, "Must hold": nothing a client sends is stored
// unbounded). On a fake clock, so days pass at once:
// (a) one peer reporting for a long time, through the real report path;
// (b) many peers joining, reporting and leaving;
// (c) a run with many peers, against the same reports stored without a cap;
// (d) one peer reconnecting with its session all day (it never departs);
// (e) what the hub keeps in memory per peer id after the peer is forgotten.
// The bound each part checks is docs/design.md section 6's: a run's report rows at most
// maxReportsPerRun (bytes: rows × REPORT_ROW_BYTES_MAX at the very worst), its join and leave
// events at most maxPeerEventsPerRun, and a departed peer's row and events gone after
// departedRetentionMs.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDb, type Db } from '../server/db.ts';
import { MetricsStore, REPORT_ROW_BYTES_MAX, fairShare, type ReportRow } from '../server/metrics.ts';
import { RawPeer, report, startServer, until, type TestServer } from './support/coordinator.ts';
import { FakeClock } from './support/fake-clock.ts';

const HOUR = 3600_000;
const CAP = 1000;
const EVENTS_CAP = 200;
const clock = new FakeClock();
let s: TestServer;

beforeAll(async () => {
  s = await startServer({
    metrics: { maxReportsPerRun: CAP }, maxPeerEventsPerRun: EVENTS_CAP,
    // Fake days pass at once: nobody is dropped for silence, and the sweep does not prune behind the test's back.
    hub: { departedRetentionMs: 24 * HOUR, livenessMs: 1000 * HOUR, heartbeatMs: 1000 * HOUR, hellosPerMinute: 1e6, helloBurst: 1e6 },
  }, { clock });
  for (const id of ['many', 'churn']) {
    const r = await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id, dataset: 'moby-dick', preset: 'micro' } });
    expect(r.statusCode).toBe(201);
  }
});
afterAll(() => s?.close());

/** Bytes the database's live pages hold (freed pages are reused, not counted). */
function usedBytes(db: Db): number {
  const p = (name: string) => db.pragma(name, { simple: true }) as number;
  return (p('page_count') - p('freelist_count')) * p('page_size');
}

const q = <T>(sql: string, ...args: unknown[]) => s.c.db.prepare(sql).get(...args) as T;
const reportsOf = (run: string) => q<{ rows: number; n: number; bytesIn: number; step: number }>(
  'SELECT COUNT(*) AS rows, SUM(weight) AS n, TOTAL(bytes_in) AS bytesIn, MAX(step) AS step FROM reports WHERE run_id = ?', run);

describe('database growth', () => {
  it('(a) one peer reporting for a long time keeps at most maxReportsPerRun rows, and the totals', async () => {
    const N = 6000;
    const bytes0 = usedBytes(s.c.db);
    const { peer } = await RawPeer.join(s.wsUrl);
    try {
      // 40 reports a fake second: under the 50 frames/s the connection may send.
      for (let seq = 1; seq <= N; seq++) {
        peer.send(report(seq, { bytesIn: 1000 + (seq % 7), trainLoss: 3 + (seq % 100) * 0.001 }));
        if (seq % 40 === 0 || seq === N) {
          await peer.next((m) => m.t === 'ack' && m.seq === seq, 10_000, Math.max(0, peer.frames.length - 50));
          clock.advance(1000);
        }
      }
    } finally {
      peer.close();
    }
    const got = reportsOf('default');
    const sentBytes = Array.from({ length: N }, (_, i) => 1000 + ((i + 1) % 7)).reduce((a, b) => a + b, 0);
    const grown = usedBytes(s.c.db) - bytes0;
    console.log(`(a) ${N} reports of one peer: ${got.rows} rows (cap ${CAP}), ${s.c.metrics.stats.thinned} thinned; database grew ${(grown / 1024).toFixed(0)} KiB, ${(grown / got.rows).toFixed(0)} bytes a row`);
    expect(got.rows).toBeLessThanOrEqual(CAP);
    expect(got.n).toBe(N);
    expect(got.bytesIn).toBe(sentBytes);
    expect(got.step).toBe(N);
    expect(grown).toBeLessThan(CAP * REPORT_ROW_BYTES_MAX);
    // The summary the dashboard's downsampled query draws still counts every report.
    const ds = (await s.c.app.inject({ method: 'GET', url: `/api/runs/default/metrics?from=0&to=${clock.now()}&maxPoints=20` })).json() as { points: { n: number; bytesIn: number; step: number }[] };
    expect(ds.points.reduce((a, p) => a + p.n, 0)).toBe(N);
    expect(ds.points.reduce((a, p) => a + p.bytesIn, 0)).toBe(sentBytes);
    expect(Math.max(...ds.points.map((p) => p.step))).toBe(N);
  });

  it('(b) many peers joining, reporting and leaving: rows and events go with retention, reports stay under the cap', async () => {
    const P = 300, EACH = 5;
    const bytes0 = usedBytes(s.c.db);
    for (let i = 0; i < P; i += 30) {
      const batch = await Promise.all(Array.from({ length: 30 }, () => RawPeer.join(s.wsUrl, { run: 'many' })));
      for (const b of batch) for (let seq = 1; seq <= EACH; seq++) b.peer.send(report(seq));
      await Promise.all(batch.map((b) => b.peer.next((m) => m.t === 'ack' && m.seq === EACH)));
      for (const b of batch) b.peer.close();
      await until(() => batch.every((b) => !s.c.hub.isLive(b.welcome.peerId)), 10_000, 'the batch to leave');
      clock.advance(1000);
    }
    const mid = { peers: q<{ n: number }>("SELECT COUNT(*) AS n FROM peers WHERE run_id = 'many'").n, events: q<{ n: number }>("SELECT COUNT(*) AS n FROM events WHERE run_id = 'many' AND peer_id IS NOT NULL").n };
    const bytesMid = usedBytes(s.c.db) - bytes0;
    clock.advance(24 * HOUR + 1);
    while (s.c.hub.prune() > 0) { /* PRUNE_BATCH at a time */ }
    const after = {
      peers: q<{ n: number }>("SELECT COUNT(*) AS n FROM peers WHERE run_id = 'many'").n,
      events: q<{ n: number }>("SELECT COUNT(*) AS n FROM events WHERE run_id = 'many' AND peer_id IS NOT NULL").n,
      reports: reportsOf('many'),
    };
    const bytesAfter = usedBytes(s.c.db) - bytes0;
    console.log(`(b) ${P} peers × ${EACH} reports: within retention ${mid.peers} peer rows, ${mid.events} events, +${(bytesMid / 1024).toFixed(0)} KiB (${(bytesMid / P).toFixed(0)} bytes a peer); after it ${after.peers} rows, ${after.events} events, ${after.reports.rows} report rows standing for ${after.reports.n}, +${(bytesAfter / 1024).toFixed(0)} KiB`);
    expect(mid.peers).toBe(P);
    expect(after.peers).toBe(0);
    expect(after.events).toBe(0);
    expect(after.reports.rows).toBeLessThanOrEqual(CAP);
    expect(after.reports.n).toBe(P * EACH);
    expect(bytesAfter).toBeLessThan(CAP * REPORT_ROW_BYTES_MAX);
  });

  it('(c) a run with many peers keeps its summary series within a few percent of the unthinned one', () => {
    const capped = new MetricsStore(openDb(':memory:'), { maxReportsPerRun: CAP });
    const full = new MetricsStore(openDb(':memory:'), { maxReportsPerRun: Number.MAX_SAFE_INTEGER });
    const PEERS = 25, ROUNDS = 160, t0 = 1_700_000_000_000;
    for (let r = 0; r < ROUNDS; r++) {
      for (let p = 0; p < PEERS; p++) {
        const row: ReportRow = {
          runId: 'big', peerId: `p-${p.toString(16).padStart(16, '0')}`, seq: r, time: 0, t: t0 + r * 10_000 + p * 50, receivedAt: t0 + r * 10_000 + p * 50,
          step: (r + 1) * 20, round: r, trainLoss: 5.5 * Math.exp(-r / 80) + (p % 5) * 0.01, valLoss: r % 10 === 9 ? 5 * Math.exp(-r / 80) : null,
          tokensPerS: 1000 + p, bytesIn: 5000 + p, bytesOut: 5000 + r, partner: null, partnerDist: null, adapter: 'test',
        };
        capped.enqueue(row, () => {});
        full.enqueue({ ...row }, () => {});
      }
      capped.flush();
      full.flush();
    }
    // A second run on the same store is not thinned for the first's reports.
    capped.enqueue({ ...{ runId: 'quiet', peerId: 'p-00000000000000aa', seq: 1, time: 0, t: t0, receivedAt: t0, step: 1, round: 0, trainLoss: 5, valLoss: null, tokensPerS: 1, bytesIn: 1, bytesOut: 1, partner: null, partnerDist: null, adapter: null } }, () => {});
    capped.flush();
    expect(capped.rowCount('big')).toBeLessThanOrEqual(CAP);
    expect(capped.rowCount('quiet')).toBe(1);
    // The curve at a resolution the cap leaves each peer (20 rounds a bucket, 20-40 rows a
    // peer): totals exact, and every bucket's loss within 5% of the unthinned run's while the
    // curve itself falls 22% a bucket (a merged row may straddle a bucket edge, so counts shift
    // between neighbouring buckets: printed).
    const range = { runId: 'big', from: 0, to: t0 + ROUNDS * 10_000, maxPoints: 8 };
    const a = capped.query(range), b = full.query(range);
    if (!a.downsampled || !b.downsampled) throw new Error('both queries must be downsampled');
    expect(a.points.length).toBe(b.points.length);
    const sum = (ps: { n: number; bytesIn: number }[], k: 'n' | 'bytesIn') => ps.reduce((x, p) => x + p[k], 0);
    expect(sum(a.points, 'n')).toBe(PEERS * ROUNDS);
    expect(sum(a.points, 'bytesIn')).toBe(sum(b.points, 'bytesIn'));
    expect(Math.max(...a.points.map((p) => p.step))).toBe((ROUNDS) * 20);
    let worstLoss = 0, worstN = 0;
    for (let i = 0; i < a.points.length; i++) {
      const [x, y] = [a.points[i]!, b.points[i]!];
      expect(Math.abs(x.t - y.t)).toBeLessThan(b.bucketMs / 2);
      worstLoss = Math.max(worstLoss, Math.abs(x.trainLoss! - y.trainLoss!) / y.trainLoss!);
      worstN = Math.max(worstN, Math.abs(x.n - y.n) / y.n);
    }
    console.log(`(c) ${PEERS} peers × ${ROUNDS} rounds: ${capped.rowCount('big')} rows for ${PEERS * ROUNDS} reports; per bucket of ${range.maxPoints}: loss within ${(worstLoss * 100).toFixed(2)}%, report count within ${(worstN * 100).toFixed(1)}% of the unthinned run`);
    expect(worstLoss).toBeLessThan(0.05);
  });

  it('(c2) one peer reporting far faster than the rest is merged down to its share; the others keep every row', () => {
    // Before: each pass halved every peer, so a peer sending 50 acknowledged reports a second
    // (each within the report bounds) halved every honest curve once per pass it caused.
    const store = new MetricsStore(openDb(':memory:'), { maxReportsPerRun: CAP });
    const t0 = 1_700_000_000_000, HONEST = 4, ROUNDS = 100, FLOOD_PER_ROUND = 30;
    const id = (p: number) => `p-${p.toString(16).padStart(16, '0')}`;
    const row = (peer: string, seq: number, t: number): ReportRow => ({
      runId: 'flood', peerId: peer, seq, time: 0, t, receivedAt: t, step: seq, round: 0, trainLoss: 5, valLoss: null,
      tokensPerS: 1, bytesIn: 1, bytesOut: 1, partner: null, partnerDist: null, adapter: null,
    });
    for (let r = 0; r < ROUNDS; r++) {
      for (let p = 0; p < HONEST; p++) store.enqueue(row(id(p), r, t0 + r * 10_000 + p), () => {});
      for (let k = 0; k < FLOOD_PER_ROUND; k++) store.enqueue(row(id(99), r * FLOOD_PER_ROUND + k, t0 + r * 10_000 + 100 + k * 20), () => {});
      store.flush();
    }
    const rows = (peer: string) => (store as unknown as { db: Db }).db.prepare("SELECT COUNT(*) AS n, SUM(weight) AS w FROM reports WHERE run_id = 'flood' AND peer_id = ?").get(peer) as { n: number; w: number };
    const honest = [...Array(HONEST).keys()].map((p) => rows(id(p)));
    const flooder = rows(id(99));
    console.log(`(c2) ${HONEST} honest peers × ${ROUNDS} reports beside one sending ${FLOOD_PER_ROUND}× as many: honest rows ${honest.map((h) => h.n).join(', ')}; the flooder's ${flooder.n} rows stand for ${flooder.w}; ${store.stats.thinned} rows thinned`);
    expect(store.stats.thinned).toBeGreaterThan(0);
    expect(store.rowCount('flood')).toBeLessThanOrEqual(CAP);
    for (const h of honest) expect(h).toEqual({ n: ROUNDS, w: ROUNDS });
    expect(flooder.w).toBe(ROUNDS * FLOOD_PER_ROUND);
    expect(flooder.n).toBeLessThan(CAP);
  });

  it('fairShare gives each count what fits, the rest an even share', () => {
    expect(fairShare([10, 10, 10], 15)).toBe(5);
    expect(fairShare([2, 100, 100], 52)).toBe(25);
    expect(fairShare([2, 3], 10)).toBe(Infinity);
    expect(fairShare([1, 1, 1, 1], 2)).toBe(0.5);
  });

  it('(d) a peer reconnecting with its session all day keeps at most maxPeerEventsPerRun join and leave events', async () => {
    let { peer, welcome } = await RawPeer.join(s.wsUrl, { run: 'churn' });
    const id = welcome.peerId;
    for (let i = 0; i < 3 * EVENTS_CAP; i++) {
      peer.close();
      await until(() => !s.c.hub.isLive(id), 5000, 'the peer to leave');
      clock.advance(60_000);
      ({ peer, welcome } = await RawPeer.join(s.wsUrl, { session: welcome.session }));
      expect(welcome.peerId).toBe(id);
    }
    peer.close();
    const churn = q<{ n: number }>("SELECT COUNT(*) AS n FROM events WHERE run_id = 'churn' AND kind IN ('peer-joined', 'peer-left')").n;
    const kept = q<{ n: number }>("SELECT COUNT(*) AS n FROM events WHERE run_id = 'churn' AND kind = 'run-created'").n;
    console.log(`(d) ${3 * EVENTS_CAP + 1} connections of one peer: ${churn} join and leave events kept (cap ${EVENTS_CAP})`);
    expect(churn).toBeLessThanOrEqual(EVENTS_CAP);
    expect(kept).toBe(1);
  });

  it('(e) forgets a departed peer\'s strikes, reports, rests and accepted exchanges with its rows', async () => {
    const a = await RawPeer.join(s.wsUrl, { run: 'many' }), b = await RawPeer.join(s.wsUrl, { run: 'many' });
    a.peer.send({ t: 'ready', round: 0, waitMs: 2000 });
    b.peer.send({ t: 'ready', round: 0, waitMs: 2000 });
    await a.peer.next((m) => m.t === 'paired' && m.round === 0);
    b.peer.send({ t: 'offender', peer: a.welcome.peerId, reason: 'probe-harm: paired 2.08 vs solo 2.07; cusum 4.4 > 4' });
    b.peer.send({ t: 'offender', peer: a.welcome.peerId, reason: 'ERR_NONFINITE: NaN in phi' });
    await until(() => s.c.hub.remembered().strikes === 1, 5000, 'the strike');
    // The second report rests the pair (server/peers.ts, rest()).
    expect(s.c.hub.remembered()).toMatchObject({ softReports: 1, rests: 1 });
    a.peer.close(); b.peer.close();
    await until(() => !s.c.hub.isLive(a.welcome.peerId) && !s.c.hub.isLive(b.welcome.peerId), 5000, 'both to leave');
    clock.advance(24 * HOUR + 1);
    while (s.c.hub.prune() > 0) { /* PRUNE_BATCH at a time */ }
    expect(s.c.hub.remembered()).toEqual({ accepted: 0, strikes: 0, softReports: 0, addressStrikes: 0, rests: 0 });
  });
});
