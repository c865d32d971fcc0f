// The UI's adapters to the coordinator, against a fake fetch and EventSource: the dashboard
// source (REST + SSE, non-finite losses, narrowing a history too long for one raw page) and the
// volunteer backend's description of a run.
import { describe, expect, it } from 'vitest';
import { CoordinatorDashboardSource } from '../src/ui/browser/coordinator-dashboard.ts';
import { requiredLimits, summarizeRun } from '../src/ui/browser/volunteer-backend.ts';
import { pickRun } from '../src/ui/browser/runs.ts';
import { preset, trainConfig } from '../src/model/config.ts';
import { buildLayout } from '../src/model/layout.ts';
import type { RunInfo } from '../src/protocol/messages.ts';
import type { MetricReport } from '../src/ui/ports.ts';

const model = preset('tiny');
const RUN: RunInfo = {
  id: 'default', name: 'tiny on Moby Dick', dataset: 'moby-dick', preset: 'tiny', model, train: trainConfig({}, model),
  compression: 'none', pairWaitFrac: 0.3, seed: 1, status: 'running', createdAt: 1000, updatedAt: 1000,
};

function jsonFetch(routes: Record<string, (url: URL) => unknown>): { fetch: typeof fetch; urls: string[] } {
  const urls: string[] = [];
  const f = (async (input: RequestInfo | URL) => {
    const url = new URL(String(input));
    urls.push(url.pathname + url.search);
    const route = Object.keys(routes).find((k) => url.pathname === k);
    if (!route) return new Response(JSON.stringify({ message: `no route ${url.pathname}` }), { status: 404 });
    return new Response(JSON.stringify(routes[route]!(url)), { status: 200, headers: { 'content-type': 'application/json' } });
  }) as typeof fetch;
  return { fetch: f, urls };
}

class FakeEventSource extends EventTarget {
  static last: FakeEventSource | null = null;
  closed = false;
  constructor(readonly url: string) { super(); FakeEventSource.last = this; }
  close() { this.closed = true; }
  emit(type: string, data?: unknown) {
    this.dispatchEvent(Object.assign(new Event(type), { data: data === undefined ? undefined : JSON.stringify(data) }));
  }
}

const point = (t: number, over: Record<string, unknown> = {}) => ({
  t, peerId: 'p-0000000000000001', seq: t, step: t / 10, round: 0, trainLoss: 3, valLoss: null, tokensPerS: 100,
  bytesIn: 0, bytesOut: 0, partner: null, partnerDist: null, adapter: 'gpu', ...over,
});

describe('coordinator dashboard source', () => {
  it('maps the run, checkpoints (with download URLs) and history', async () => {
    const { fetch } = jsonFetch({
      '/api/runs/default': () => ({ ...RUN, livePeers: 2 }),
      '/api/runs/default/checkpoints': () => ({ checkpoints: [{ id: 'c-1', step: 100, round: 2, valLoss: 2.5, tokens: 102400, peerId: null, bytes: 9, createdAt: 5 }] }),
      '/api/runs/default/metrics': () => ({ downsampled: false, total: 2, points: [point(10), point(20, { trainLoss: 'NaN' })] }),
    });
    const s = new CoordinatorDashboardSource({ baseUrl: 'http://c.test', runId: 'default', fetch });
    expect(await s.run()).toMatchObject({ id: 'default', tokensPerStep: RUN.train.batch * RUN.train.seqLen, H: RUN.train.H, livePeers: 2 });
    const [ck] = await s.checkpoints();
    expect(ck).toMatchObject({
      fileUrl: 'http://c.test/api/runs/default/checkpoints/c-1/file',
      exportUrl: 'http://c.test/api/runs/default/checkpoints/c-1/export/model.safetensors',
      exportConfigUrl: 'http://c.test/api/runs/default/checkpoints/c-1/export/config.json',
    });
    const h = await s.history();
    expect(h.map((r) => r.trainLoss)).toEqual([3, NaN]);
    await expect(s.sample(ck!)).rejects.toThrow(/not available/);
  });

  it('narrows to the most recent span when the store would only give time buckets', async () => {
    const { fetch, urls } = jsonFetch({
      '/api/runs/default/metrics': (u) => Number(u.searchParams.get('from')) < 5000
        ? { downsampled: true, total: 50_000, points: [{ t: 1000 }] }
        : { downsampled: false, total: 1, points: [point(9000)] },
    });
    const s = new CoordinatorDashboardSource({ baseUrl: 'http://c.test', runId: 'default', fetch });
    const h = await s.history();
    expect(h).toHaveLength(1);
    expect(urls.length).toBeGreaterThan(1);
  });

  it('names the failing request', async () => {
    const { fetch } = jsonFetch({});
    const s = new CoordinatorDashboardSource({ baseUrl: 'http://c.test', runId: 'nope', fetch });
    await expect(s.run()).rejects.toThrow(/GET \/ on the coordinator gave HTTP 404: no route \/api\/runs\/nope/);
  });

  it('turns stream events into reports, peer events and refresh signals', async () => {
    const { fetch } = jsonFetch({ '/api/runs/default/metrics': () => ({ downsampled: false, total: 0, points: [] }) });
    const s = new CoordinatorDashboardSource({ baseUrl: 'http://c.test', runId: 'default', fetch, EventSource: FakeEventSource as unknown as typeof EventSource });
    const got: { reports: MetricReport[]; peers: string[]; ck: number; conn: string[] } = { reports: [], peers: [], ck: 0, conn: [] };
    const off = s.subscribe({
      report: (r) => got.reports.push(r), peer: (e) => got.peers.push(`${e.kind}:${e.peerId}`), checkpoints: () => got.ck++,
      run: () => {}, connection: (c) => got.conn.push(c),
    });
    const es = FakeEventSource.last!;
    expect(es.url).toBe('http://c.test/api/runs/default/stream');
    es.emit('open');
    es.emit('report', { ...point(5), runId: 'default', receivedAt: 6, time: 5, valLoss: 'Infinity' });
    es.emit('peer', { kind: 'peer-left', peerId: 'p-0000000000000002', t: 7 });
    es.emit('checkpoint', { kind: 'checkpoint-saved' });
    es.emit('report', 'not json{');
    es.emit('error');
    expect(got.reports.map((r) => r.valLoss)).toEqual([Infinity]);
    expect(got.peers).toEqual(['peer-left:p-0000000000000002']);
    expect(got.ck).toBe(1);
    expect(got.conn).toEqual(['live', 'reconnecting']);
    off();
    expect(es.closed).toBe(true);
  });
});

describe('volunteer backend', () => {
  it('describes a run for the volunteer page honestly', () => {
    const s = summarizeRun(RUN, 'murmur.example');
    const layout = buildLayout(model);
    expect(s).toMatchObject({ id: 'default', params: layout.params, H: RUN.train.H, tokensPerStep: RUN.train.batch * RUN.train.seqLen });
    expect(s.bytesPerExchange).toBe(2 * layout.total * 4);
    expect(summarizeRun({ ...RUN, compression: 'int8' }, 'x').bytesPerExchange).toBe(2 * layout.total);
    expect(s.operator).toBe('the operator of murmur.example');
    expect(requiredLimits(RUN)).toEqual({ maxStorageBufferBindingSize: layout.total * 4, maxBufferSize: layout.total * 4 });
  });

  it('picks ?run= or the first running run', async () => {
    const { fetch } = jsonFetch({ '/api/runs': () => ({ runs: [{ id: 'old', status: 'stopped' }, { id: 'live', status: 'running' }] }) });
    expect(await pickRun('http://c.test', '?run=mine', fetch)).toBe('mine');
    expect(await pickRun('http://c.test', '', fetch)).toBe('live');
    const empty = jsonFetch({ '/api/runs': () => ({ runs: [] }) });
    await expect(pickRun('http://c.test', '', empty.fetch)).rejects.toThrow(/has no run yet/);
  });
});
