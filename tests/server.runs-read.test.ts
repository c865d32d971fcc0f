// GET /api/runs and GET /api/runs/:run are anonymous. Each worked out the run's agreed step
// (PeerHub.stepConsensus: a pass over every live peer of the run, up to 10,000, and a SQLite read
// of its newest checkpoint) for every request, and neither was charged to the read budget, so one
// client asking in a loop made the coordinator do that work as fast as it could ask (6.3 ms a
// request with 10,000 live peers: bench/results/runs-read.json). Now the step is worked out at most
// once per AGREED_STEP_MS per run (PeerHub.agreedStep) and the routes are charged like the other
// anonymous reads (server/read-budget.ts).
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { AGREED_STEP_MS } from '../server/peers.ts';
import { RawPeer, report, startServer, type TestServer } from './support/coordinator.ts';
import { FakeClock } from './support/fake-clock.ts';

const clock = new FakeClock();
let s: TestServer;
const RUN = 'reads';

beforeAll(async () => {
  // The fake clock moves 10 s at each report: peers that send no heartbeat must stay live.
  s = await startServer({ hub: { livenessMs: 3_600_000 } }, { clock });
  const r = await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id: RUN, dataset: 'moby-dick', preset: 'micro', train: { H: 10, totalSteps: 5000 } } });
  expect(r.statusCode).toBe(201);
});
afterAll(async () => { await s?.close(); });

const summary = async () => {
  const res = await s.c.app.inject({ method: 'GET', url: `/api/runs/${RUN}` });
  expect(res.statusCode).toBe(200);
  return res.json() as { stepConsensus?: number; livePeers: number };
};
const listed = async () => {
  const res = await s.c.app.inject({ method: 'GET', url: '/api/runs' });
  expect(res.statusCode).toBe(200);
  return (res.json() as { runs: { id: string; stepConsensus?: number }[] }).runs.find((r) => r.id === RUN)!;
};

/** Joins `run` from `address` and reports `step`, waiting for the coordinator's ack. */
async function joinAndReport(address: string, step: number): Promise<RawPeer> {
  const { peer } = await RawPeer.join(s.wsUrl, { run: RUN }, { localAddress: address });
  clock.advance(10_000); // a claim is bounded by the time since the join (report-bounds.ts)
  peer.send(report(1, { step, round: Math.floor(step / 10) }));
  expect(await peer.next((m) => m.t === 'ack' && m.seq === 1)).toEqual({ t: 'ack', seq: 1 });
  return peer;
}

describe('anonymous run reads', () => {
  it('work out the agreed step once per AGREED_STEP_MS, however many requests come', async () => {
    const peers = [await joinAndReport('127.0.0.1', 30)];
    try {
      clock.advance(AGREED_STEP_MS);
      const spy = vi.spyOn(s.c.hub, 'stepConsensus');
      try {
        for (let i = 0; i < 40; i++) {
          expect((await summary()).stepConsensus).toBe(30);
          expect((await listed()).stepConsensus).toBe(30);
        }
        // 80 requests, every run listed each time: before, one pass per run per request.
        const perRun = (run: string) => spy.mock.calls.filter((c) => c[0] === run).length;
        expect(perRun(RUN)).toBe(1);
        expect(perRun('default')).toBe(1);
        clock.advance(AGREED_STEP_MS);
        await summary();
        await summary();
        expect(perRun(RUN)).toBe(2);
      } finally {
        spy.mockRestore();
      }
    } finally {
      for (const p of peers) p.close();
    }
  });

  it('follow joins, reports and departures within AGREED_STEP_MS', async () => {
    // The first test's peer is gone once the coordinator sees its close.
    await new Promise<void>((resolve) => {
      const check = () => (s.c.hub.liveCount(RUN) === 0 ? resolve() : setImmediate(check));
      check();
    });
    clock.advance(AGREED_STEP_MS);
    const peers: RawPeer[] = [];
    try {
      peers.push(await joinAndReport('127.0.0.1', 30));
      clock.advance(AGREED_STEP_MS);
      expect(await summary()).toMatchObject({ stepConsensus: 30, livePeers: 1 });
      // Two more addresses join past the run's step: the lower median of [30, 90, 90] is 90.
      peers.push(await joinAndReport('127.0.0.2', 90));
      peers.push(await joinAndReport('127.0.0.3', 90));
      // joinAndReport moved the clock past the interval since the last answer: shown already.
      expect(await summary()).toMatchObject({ stepConsensus: 90, livePeers: 3 });
      // A report inside the interval shows once it has passed, not before.
      peers[1]!.send(report(2, { step: 150, round: 15 }));
      expect(await peers[1]!.next((m) => m.t === 'ack' && m.seq === 2)).toEqual({ t: 'ack', seq: 2 });
      peers[2]!.send(report(2, { step: 150, round: 15 }));
      expect(await peers[2]!.next((m) => m.t === 'ack' && m.seq === 2)).toEqual({ t: 'ack', seq: 2 });
      expect((await summary()).stepConsensus).toBe(90);
      clock.advance(AGREED_STEP_MS);
      expect((await summary()).stepConsensus).toBe(150);
      expect((await listed()).stepConsensus).toBe(150);
      // A departure: [30, 150] agrees on 30.
      const gone = peers.pop()!;
      gone.close();
      await new Promise<void>((resolve) => {
        const check = () => (s.c.hub.liveCount(RUN) === 2 ? resolve() : setImmediate(check));
        check();
      });
      clock.advance(AGREED_STEP_MS);
      expect(await summary()).toMatchObject({ stepConsensus: 30, livePeers: 2 });
    } finally {
      for (const p of peers) p.close();
    }
  });

  it('are charged to the read budget: an address asking in a loop gets 429 and Retry-After, others and the admin do not', async () => {
    let mono = 0;
    // A budget so small that a few answers' sending cost (3 ms a MB) spends it, on a clock that stands still.
    const t = await startServer({ trustProxy: ['127.0.0.1'], reads: { perAddressMsPerS: 0.001, perAddressBurstMs: 0.01, totalMsPerS: 1000, totalBurstMs: 1000, now: () => mono } });
    try {
      const get = (url: string, xff: string, headers: Record<string, string> = {}) => t.c.app.inject({ method: 'GET', url, headers: { 'x-forwarded-for': xff, ...headers } });
      for (const url of ['/api/runs', '/api/runs/default']) {
        const address = url === '/api/runs' ? '198.51.100.1' : '198.51.100.2';
        const codes: number[] = [];
        let refused = null as Awaited<ReturnType<typeof get>> | null;
        for (let i = 0; i < 100 && !refused; i++) {
          const res = await get(url, address);
          codes.push(res.statusCode);
          if (res.statusCode === 429) refused = res;
        }
        expect(refused, `${url}: 100 requests from one address, never refused (${codes.length} answered)`).not.toBeNull();
        expect(Number(refused!.headers['retry-after'])).toBeGreaterThanOrEqual(1);
        expect(refused!.json()).toMatchObject({ code: 'read-budget' });
        expect(refused!.json().error).toContain('this address has used its');
        // Another address, and the admin from the same one, are still answered.
        expect((await get(url, '203.0.113.9')).statusCode).toBe(200);
        expect((await get(url, address, t.admin)).statusCode).toBe(200);
        // The budget earns back: once its debt is repaid the address is answered again.
        mono += Number(refused!.headers['retry-after']) * 1000;
        expect((await get(url, address)).statusCode).toBe(200);
      }
    } finally {
      await t.close();
    }
  });
});
