// The UI's adapters to the coordinator, against a fake fetch and EventSource: the dashboard
// source (REST + SSE, non-finite losses, the newest raw page of a long history, reads refused for the read budget, malformed
// frames and run events dropped before the dashboard's controller reads them) and the volunteer
// backend's description of a run.
import { describe, expect, it, vi } from 'vitest';
import { CoordinatorDashboardSource } from '../src/ui/browser/coordinator-dashboard.ts';
import { DashboardController } from '../src/ui/controllers/dashboard-controller.ts';
import { CoordinatorVolunteerBackend, requiredLimits, summarizeRun } from '../src/ui/browser/volunteer-backend.ts';
import type { WebSocketCtor } from '../src/sync/signaling-client.ts';
import { pickRun } from '../src/ui/browser/runs.ts';
import { preset, trainConfig } from '../src/model/config.ts';
import { buildLayout } from '../src/model/layout.ts';
import type { RunInfo } from '../src/protocol/messages.ts';
import type { MetricReport } from '../src/ui/ports.ts';
import { encodeTensor } from '../src/sync/compress.ts';
import { DEFAULT_DEADLINE, exchangeLink } from '../src/protocol/exchange-link.ts';
import { TrainingController } from '../src/ui/controllers/training-controller.ts';
import { ConsentStore } from '../src/ui/core/consent.ts';
import { widgetStatus } from '../src/ui/embed/frame-bridge.ts';
import { MAX_STATUS_TEXT } from '../src/ui/embed/bridge-schemas.ts';
import { FAKE_RUN, FakeBackend, FakeSensors } from './support/ui-fakes.ts';
import type { Dtype } from '../src/protocol/frame.ts';

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

/** A stored report row as GET /metrics returns it. */
const point = (t: number, over: Record<string, unknown> = {}) => ({
  t, peerId: 'p-0000000000000001', seq: t, step: Math.floor(t / 10), round: 0, trainLoss: 3, valLoss: null, tokensPerS: 100,
  bytesIn: 0, bytesOut: 0, partner: null, partnerDist: null, adapter: 'gpu', linkLocal: null, linkRemote: null, connectMs: null,
  linkFailures: 0, linkError: null, weight: 1, probeMs: null, probeSolo: null, probePaired: null, probeRejected: null, ...over,
});
/** A raw page of GET /metrics. */
const page = (points: unknown[]) => ({ run: 'default', peer: null, from: 0, to: 1e6, downsampled: false, total: points.length, points });
/** A committed report as the stream pushes it. */
const live = (t: number, over: Record<string, unknown> = {}) => ({
  time: t, step: t, round: 0, trainLoss: 3, valLoss: null, tokensPerS: 100, bytesIn: 0, bytesOut: 0, partner: null, partnerDist: null,
  adapter: 'gpu', runId: 'default', peerId: 'p-0000000000000001', seq: t, t, receivedAt: t, ...over,
});
const checkpoint = {
  id: 'c-1', runId: 'default', step: 100, round: 2, valLoss: 2.5, tokens: 102400, peerId: null, sha256: 'ab'.repeat(32), bytes: 9,
  file: 's100-0000c001.safetensors', createdAt: 5,
};
/** A peer-offender event's data as the coordinator writes it. */
const offence = (accused: string, over: Record<string, unknown> = {}) => ({ accused, reason: 'non-finite: Δ[3] = NaN', strike: 1, vetoed: false, paired: true, ...over });

describe('coordinator dashboard source', () => {
  it('maps the run, checkpoints (with download URLs) and history', async () => {
    const { fetch } = jsonFetch({
      '/api/runs/default': () => ({ ...RUN, livePeers: 2, embedSites: [], stepConsensus: 120 }),
      '/api/runs/default/checkpoints': () => ({ checkpoints: [checkpoint, { ...checkpoint, id: 'c-2', valBatches: 4 }], pending: null }),
      '/api/runs/default/metrics': () => page([point(10), point(20, { trainLoss: 'NaN' })]),
    });
    const s = new CoordinatorDashboardSource({ baseUrl: 'http://c.test', runId: 'default', fetch });
    expect(await s.run()).toMatchObject({ id: 'default', tokensPerStep: RUN.train.batch * RUN.train.seqLen, H: RUN.train.H, livePeers: 2, stepConsensus: 120 });
    // The link the run's exchange needs, from its model and compression (RunReply carries no rate).
    expect((await s.run()).linkBytesPerS).toBe(exchangeLink(RUN.compression, buildLayout(model).total).leastBytesPerS);
    // ... and the rate a volunteer's first exchange needs (15 s, before it measured its link): 4x as much.
    const need = exchangeLink(RUN.compression, buildLayout(model).total);
    expect((await s.run()).firstLinkBytesPerS).toBe(need.firstBytesPerS);
    expect(need.firstBytesPerS).toBe(Math.ceil((need.bytes * 1000) / DEFAULT_DEADLINE.initialMs));
    expect(need.firstBytesPerS / need.leastBytesPerS).toBeCloseTo(DEFAULT_DEADLINE.maxMs / DEFAULT_DEADLINE.initialMs, 4);
    const [ck, measured] = await s.checkpoints();
    // A loss without valBatches is a claim an older coordinator stored; with them, its measurement.
    expect([ck!.measured, measured!.measured]).toEqual([false, true]);
    expect(ck).toMatchObject({
      fileUrl: 'http://c.test/api/runs/default/checkpoints/c-1/file',
      exportUrl: 'http://c.test/api/runs/default/checkpoints/c-1/export/model.safetensors',
      exportConfigUrl: 'http://c.test/api/runs/default/checkpoints/c-1/export/config.json',
    });
    const h = await s.history();
    expect(h.map((r) => r.trainLoss)).toEqual([3, NaN]);
    await expect(s.sample(ck!)).rejects.toThrow(/not available/);
  });

  it('asks the newest raw reports in one request when the run holds more than one page', async () => {
    const { fetch, urls } = jsonFetch({ '/api/runs/default/metrics': () => ({ ...page([point(9000)]), total: 50_000 }) });
    const s = new CoordinatorDashboardSource({ baseUrl: 'http://c.test', runId: 'default', fetch });
    const h = await s.history(1234);
    expect(h.map((r) => r.t)).toEqual([9000]);
    expect(urls).toHaveLength(1);
    const q = new URL(urls[0]!, 'http://c.test').searchParams;
    expect([q.get('from'), q.get('maxPoints'), q.get('newest')]).toEqual(['1234', '20000', 'true']);
  });

  it('waits out a read refused for the read budget and asks again, up to twice', async () => {
    let refusals = 1;
    const urls: string[] = [];
    const fetch = (async (input: RequestInfo | URL) => {
      urls.push(String(input));
      if (refusals-- > 0) return new Response(JSON.stringify({ error: 'this address has used its share', code: 'read-budget' }), { status: 429, headers: { 'retry-after': '0' } });
      return new Response(JSON.stringify(page([point(10)])), { status: 200 });
    }) as typeof globalThis.fetch;
    const s = new CoordinatorDashboardSource({ baseUrl: 'http://c.test', runId: 'default', fetch });
    expect((await s.history()).map((r) => r.t)).toEqual([10]);
    expect(urls).toHaveLength(2);
    refusals = 5;
    urls.length = 0;
    await expect(s.history()).rejects.toThrow(/HTTP 429: this address has used its share/);
    expect(urls).toHaveLength(3);
  });

  it('checks every reply against its schema and names the field a bad one gets wrong', async () => {
    // Issue 16: each of these was read as it came (cast, not checked).
    const { fetch } = jsonFetch({
      '/api/runs/default': () => ({ ...RUN, livePeers: -1, embedSites: [] }),
      '/api/runs/default/checkpoints': () => ({ checkpoints: [{ ...checkpoint, step: '100' }], pending: null }),
      '/api/runs/default/metrics': () => page([point(10, { trainLoss: 'lots' })]),
      '/api/runs/default/events': () => ({ events: [{ id: 1.5, runId: 'default', t: 7, kind: 'peer-left', peerId: null, data: null }] }),
    });
    const s = new CoordinatorDashboardSource({ baseUrl: 'http://c.test', runId: 'default', fetch });
    await expect(s.run()).rejects.toThrow('GET / on the coordinator gave a reply this page cannot read: reply.livePeers must be >= 0, got -1');
    await expect(s.checkpoints()).rejects.toThrow('GET /checkpoints on the coordinator gave a reply this page cannot read: reply.checkpoints[0].step must be integer, got "100"');
    await expect(s.history()).rejects.toThrow(/cannot read: reply\.points\[0\]\.trainLoss must be /);
    await expect(s.events(10)).rejects.toThrow('cannot read: reply.events[0].id must be integer, got 1.5');
  });

  it('drops a stream frame its schema refuses instead of plotting it', () => {
    const s = new CoordinatorDashboardSource({ baseUrl: 'http://c.test', runId: 'default', fetch: jsonFetch({}).fetch, EventSource: FakeEventSource as unknown as typeof EventSource });
    const got: { reports: number[]; events: number[] } = { reports: [], events: [] };
    const off = s.subscribe({ report: (r) => got.reports.push(r.t), event: (e) => got.events.push(e.id), connection: () => {} });
    const es = FakeEventSource.last!;
    // Each passed the old hand check (a peer id, a finite time and step; a known kind and a numeric id).
    es.emit('report', live(1, { bytesIn: 'lots' }));
    es.emit('report', live(2, { partner: 42 }));
    es.emit('report', live(3, { trainLoss: 'NaNa' }));
    es.emit('peer', { id: 1.5, runId: 'default', kind: 'peer-left', peerId: null, t: 7, data: { reason: 'disconnected' } });
    es.emit('peer', { id: 2, kind: 'peer-left', peerId: null, t: 7, data: { reason: 'disconnected' } }); // no run
    es.emit('report', live(4));
    es.emit('peer', { id: 3, runId: 'default', kind: 'peer-left', peerId: null, t: 7, data: { reason: 'disconnected' } });
    expect(got).toEqual({ reports: [4], events: [3] });
    off();
  });

  it('names the failing request', async () => {
    const { fetch } = jsonFetch({});
    const s = new CoordinatorDashboardSource({ baseUrl: 'http://c.test', runId: 'nope', fetch });
    await expect(s.run()).rejects.toThrow(/GET \/ on the coordinator gave HTTP 404: no route \/api\/runs\/nope/);
  });

  it('turns stream frames into reports and run events, drops malformed ones, and refetches both after a reconnect', async () => {
    const stored = [
      { id: 8, runId: 'default', t: 8, kind: 'checkpoint-failed', peerId: 'p-0000000000000001', data: { request: 'r', reason: 'no upload within 60000 ms' } },
      { id: 7, runId: 'default', t: 7, kind: 'peer-left', peerId: 'p-0000000000000002', data: { reason: 'disconnected' } },
    ];
    const { fetch, urls } = jsonFetch({
      '/api/runs/default/metrics': () => page([point(4)]),
      '/api/runs/default/events': () => ({ events: stored }),
    });
    const s = new CoordinatorDashboardSource({ baseUrl: 'http://c.test', runId: 'default', fetch, EventSource: FakeEventSource as unknown as typeof EventSource });
    // REST: the newest events, asked newest first, handed over oldest first.
    expect((await s.events(50)).map((e) => e.id)).toEqual([7, 8]);
    expect(urls.at(-1)).toBe('/api/runs/default/events?order=desc&limit=50');
    const got: { reports: MetricReport[]; events: string[]; conn: string[] } = { reports: [], events: [], conn: [] };
    const off = s.subscribe({
      report: (r) => got.reports.push(r), event: (e) => got.events.push(`${e.id}:${e.kind}:${e.peerId}`), connection: (c) => got.conn.push(c),
    });
    const es = FakeEventSource.last!;
    expect(es.url).toBe('http://c.test/api/runs/default/stream');
    es.emit('open');
    es.emit('report', live(5, { valLoss: 'Infinity' }));
    es.emit('peer', { id: 1, runId: 'default', kind: 'peer-left', peerId: 'p-0000000000000002', t: 7, data: { reason: 'disconnected' } });
    es.emit('peer', { id: 2, runId: 'default', kind: 'peer-offender', peerId: 'p-0000000000000001', t: 8, data: offence('p-0000000000000002') });
    es.emit('checkpoint', { id: 3, runId: 'default', kind: 'checkpoint-saved', peerId: null, t: 9, data: { ...checkpoint, claimedValLoss: 2.4 } });
    es.emit('run', { id: 4, runId: 'default', kind: 'run-stopped', peerId: null, t: 10, data: null });
    es.emit('peer', { id: 5, kind: 'peer-exploded', peerId: 'p-0000000000000001', t: 11 }); // unknown kind
    es.emit('checkpoint', { kind: 'checkpoint-saved' }); // no id, no time
    es.emit('report', 'not json{');
    es.emit('error');
    expect(got.reports.map((r) => r.valLoss)).toEqual([Infinity]);
    expect(got.events).toEqual(['1:peer-left:p-0000000000000002', '2:peer-offender:p-0000000000000001', '3:checkpoint-saved:null', '4:run-stopped:null']);
    expect(got.conn).toEqual(['live', 'reconnecting']);
    // Reconnected: what was published meanwhile is fetched from the store.
    got.events.length = 0;
    es.emit('open');
    for (let i = 0; i < 100 && (got.events.length < 2 || got.reports.length < 2); i++) await new Promise((r) => setTimeout(r, 5));
    expect(got.reports.map((r) => r.t)).toEqual([5, 4]);
    // From the newest report the stream gave (t = 5), not the whole run again.
    expect(urls.filter((u) => u.startsWith('/api/runs/default/metrics')).at(-1)).toMatch(/[?&]from=5&/);
    expect(got.events).toEqual(['7:peer-left:p-0000000000000002', '8:checkpoint-failed:p-0000000000000001']);
    off();
    expect(es.closed).toBe(true);
  });
});

describe('the dashboard on a coordinator that sends malformed frames (issue 16)', () => {
  const [P1, P2, P3] = ['p-0000000000000001', 'p-0000000000000002', 'p-0000000000000003'];
  const event = (id: number, kind: string, peerId: string | null, data: unknown) => ({ id, runId: 'default', t: 1000 + id, kind, peerId, data });

  async function dashboard(stored: unknown[] = []) {
    const { fetch } = jsonFetch({
      '/api/runs/default': () => ({ ...RUN, livePeers: 2, embedSites: [] }),
      '/api/runs/default/checkpoints': () => ({ checkpoints: [checkpoint, { ...checkpoint, id: 'c-2', valBatches: 4 }], pending: null }),
      '/api/runs/default/metrics': () => page([point(10)]),
      '/api/runs/default/events': () => ({ events: stored }),
    });
    const source = new CoordinatorDashboardSource({ baseUrl: 'http://c.test', runId: 'default', fetch, EventSource: FakeEventSource as unknown as typeof EventSource });
    const c = new DashboardController({ source, now: () => 2000 });
    await c.start();
    return { c, es: FakeEventSource.last! };
  }

  it('drops each with a warning naming the field, and goes on with the next good one', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    const { c, es } = await dashboard();
    try {
      // Each passed the old checks (an envelope with a known kind; data read field by field).
      es.emit('peer', event(1, 'peer-offender', P1, offence(P2, { accused: 42 }))); // wrong type in a field
      es.emit('checkpoint', event(2, 'checkpoint-failed', P1, { request: 'r-1' })); // a field missing
      es.emit('peer', event(3, 'peer-left', P3, { reason: 'x'.repeat(1_000_000) })); // a huge string
      es.emit('report', live(4, { adapter: 'x'.repeat(1_000_000) }));
      es.emit('run', event(5, 'run-updated', null, { change: { train: { H: -1 } } })); // out of bounds
      es.emit('report', live(6, { step: undefined })); // a field missing from the frame itself
      es.dispatchEvent(Object.assign(new Event('peer'), { data: '{"id": 7, "runId": "default", "kind": "peer-le' })); // not JSON
      c.refresh();
      expect(c.events).toEqual([]);
      expect(c.alerts.filter((a) => a.kind === 'offender' || a.kind === 'checkpoint')).toEqual([]);
      expect(c.peerRows.find((p) => p.id === P3)).toBeUndefined();
      expect(c.reportCount).toBe(1); // the history's one
      const said = warn.mock.calls.map((args) => String(args[0]));
      expect(said).toEqual([
        '[murmur] the dashboard dropped a peer-offender event: peer.data.accused must be string, got 42',
        '[murmur] the dashboard dropped a checkpoint-failed event: checkpoint.data.reason is required',
        '[murmur] the dashboard dropped a peer-left event: peer.data.reason must have at most 500 characters',
        '[murmur] the dashboard dropped a "report" frame: report.adapter must have at most 200 characters',
        '[murmur] the dashboard dropped a run-updated event: run.data.change.train.H must be >= 1, got -1',
        '[murmur] the dashboard dropped a "report" frame: report.step is required',
        '[murmur] the dashboard dropped a "peer" frame: it is not JSON',
      ]);
      // The next good ones are read as before: the event list, the alerts, the peers and the charts.
      es.emit('peer', event(8, 'peer-offender', P1, offence(P2)));
      es.emit('checkpoint', event(9, 'checkpoint-failed', P1, { request: 'r-1', reason: 'no upload within 60000 ms' }));
      es.emit('report', live(20, { peerId: P3 }));
      c.refresh();
      expect(c.events.map((e) => [e.id, e.text])).toEqual([
        [9, `checkpoint from peer ${P1} failed`],
        [8, `peer ${P1} reported ${P2} for a bad update: non-finite Δ`],
      ]);
      expect(c.alerts.map((a) => a.kind)).toEqual(expect.arrayContaining(['offender', 'checkpoint']));
      expect(c.peerRows.find((p) => p.id === P3)).toMatchObject({ step: 20 });
      expect(c.reportCount).toBe(2);
      expect(warn).toHaveBeenCalledTimes(7);
    } finally {
      c.dispose();
      warn.mockRestore();
    }
  });

  it('keeps the rest of a page of stored events when one of them is malformed, and stops warning after 20', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    // An offender report from a coordinator older than `paired`: left out, the page still shown.
    const { c, es } = await dashboard([event(11, 'peer-left', P2, { reason: 'disconnected' }), event(10, 'peer-offender', P1, { accused: P2, reason: 'size' })]);
    try {
      expect(c.events.map((e) => e.id)).toEqual([11]);
      expect(warn.mock.calls.map((args) => String(args[0]))).toEqual(['[murmur] the dashboard dropped a peer-offender event: events[1].data.strike is required']);
      for (let i = 0; i < 100; i++) es.emit('peer', event(100 + i, 'peer-joined', P3, { replica: 'one', resumed: false, client: null }));
      es.emit('peer', event(300, 'peer-joined', P3, { replica: 1, resumed: false, client: { kind: 'node' } }));
      c.refresh();
      expect(c.events.map((e) => e.id)).toEqual([300, 11]);
      expect(warn).toHaveBeenCalledTimes(21);
      expect(String(warn.mock.calls[20]![0])).toBe('[murmur] 20 malformed frames dropped; any more are dropped without a warning');
    } finally {
      c.dispose();
      warn.mockRestore();
    }
  });
});

describe('volunteer backend', () => {
  it('describes a run for the volunteer page honestly', () => {
    const s = summarizeRun(RUN, 'murmur.example');
    const layout = buildLayout(model);
    expect(s).toMatchObject({ id: 'default', params: layout.params, H: RUN.train.H, tokensPerStep: RUN.train.batch * RUN.train.seqLen });
    expect(s.bytesPerExchange).toBe(2 * layout.total * 4);
    // What the encoders really put on the wire for φ and Δ of this model (int8: φ in f16, Δ in
    // blockwise int8 with its scales), not one byte a value.
    const wire = (phi: Dtype, delta: Dtype) => encodeTensor(phi, new Float32Array(layout.total).fill(0.5)).byteLength
      + encodeTensor(delta, new Float32Array(layout.total).fill(0.5)).byteLength;
    expect(s.bytesPerExchange).toBe(wire('f32', 'f32'));
    expect(summarizeRun({ ...RUN, compression: 'int8' }, 'x').bytesPerExchange).toBe(wire('f16', 'q8'));
    expect(summarizeRun({ ...RUN, compression: 'fp16' }, 'x').bytesPerExchange).toBe(wire('f16', 'f16'));
    // The least link rate that ends an exchange inside the longest wait, in the run's encodings.
    expect(s.exchangeWaitS * 1000).toBe(DEFAULT_DEADLINE.maxMs);
    expect(s.linkBytesPerS).toBe(Math.ceil(s.bytesPerExchange / s.exchangeWaitS));
    const int8 = summarizeRun({ ...RUN, compression: 'int8' }, 'x');
    expect(int8.linkBytesPerS).toBe(Math.ceil(int8.bytesPerExchange / int8.exchangeWaitS));
    // The first exchange ends inside the shorter wait before the link is measured (15 s): tiny
    // without compression needs 555,077 bytes/s for it, 138,770 for the later ones.
    expect(s.firstExchangeWaitS * 1000).toBe(DEFAULT_DEADLINE.initialMs);
    expect(s.firstLinkBytesPerS).toBe(Math.ceil(s.bytesPerExchange / s.firstExchangeWaitS));
    expect([s.linkBytesPerS, s.firstLinkBytesPerS]).toEqual([138_770, 555_077]);
    expect(int8.firstLinkBytesPerS).toBe(Math.ceil(int8.bytesPerExchange / int8.firstExchangeWaitS));
    expect(s.operator).toBe('the operator of murmur.example');
    // The consent text says whether partners may see the volunteer's address.
    expect(s.icePolicy).toBe('all');
    expect(summarizeRun({ ...RUN, icePolicy: 'relay' }, 'x').icePolicy).toBe('relay');
    expect(requiredLimits(RUN)).toEqual({ maxStorageBufferBindingSize: layout.total * 4, maxBufferSize: layout.total * 4 });
  });

  it('picks ?run= or the first running run', async () => {
    const reply = (id: string, status: string) => ({ ...RUN, id, status, livePeers: 0, embedSites: [] });
    const { fetch } = jsonFetch({ '/api/runs': () => ({ runs: [reply('old', 'stopped'), reply('live', 'running')] }) });
    expect(await pickRun('http://c.test', '?run=mine', fetch)).toBe('mine');
    expect(await pickRun('http://c.test', '', fetch)).toBe('live');
    const empty = jsonFetch({ '/api/runs': () => ({ runs: [] }) });
    await expect(pickRun('http://c.test', '', empty.fetch)).rejects.toThrow(/has no run yet/);
    // Issue 16: the list is checked against its schema (before, a run with no id was picked as undefined).
    const bad = jsonFetch({ '/api/runs': () => ({ runs: [{ status: 'running' }] }) });
    await expect(pickRun('http://c.test', '', bad.fetch)).rejects.toThrow('the coordinator at http://c.test listed its runs in a form this page cannot read: reply.runs[0].id is required');
  });

  it('refuses to describe a run the coordinator sent in a form its schema refuses', async () => {
    // Issue 16: before, the reply was cast to RunInfo and a missing train config crashed later.
    const { train: _train, ...noTrain } = RUN;
    const { fetch } = jsonFetch({ '/api/runs/default': () => ({ ...noTrain, livePeers: 0, embedSites: [] }) });
    const unused = { WebSocket: class {} as unknown as WebSocketCtor, createTrainer: () => Promise.reject(new Error('unused')), createMesh: () => Promise.reject(new Error('unused')) };
    const backend = new CoordinatorVolunteerBackend({ baseUrl: 'http://c.test', runId: 'default', fetch, ...unused });
    await expect(backend.describeRun()).rejects.toThrow('the coordinator described run "default" in a form this page cannot read: run.train is required');
    const good = jsonFetch({ '/api/runs/default': () => ({ ...RUN, livePeers: 0, embedSites: [] }) });
    const ok = new CoordinatorVolunteerBackend({ baseUrl: 'http://c.test', runId: 'default', fetch: good.fetch, ...unused });
    expect(await ok.describeRun()).toMatchObject({ id: 'default', H: RUN.train.H });
  });

  it('waits out the read budget\'s 429 on the run list and the run, as the coordinator says, instead of failing', async () => {
    // GET /api/runs and /api/runs/:run are charged to the address's read budget
    // (server/read-budget.ts): an honest page behind a shared address may be told to wait.
    const reply = { ...RUN, livePeers: 0, embedSites: [] };
    const waits: number[] = [];
    const sleep = async (ms: number) => { waits.push(ms); };
    const refusingOnce = (body: unknown) => {
      let n = 0;
      return (async () => (n++ === 0
        ? new Response(JSON.stringify({ error: 'this address has used its 250 ms per second', code: 'read-budget' }), { status: 429, headers: { 'retry-after': '3' } })
        : new Response(JSON.stringify(body), { status: 200, headers: { 'content-type': 'application/json' } }))) as typeof fetch;
    };
    expect(await pickRun('http://c.test', '', refusingOnce({ runs: [reply] }), { sleep })).toBe('default');
    const unused = { WebSocket: class {} as unknown as WebSocketCtor, createTrainer: () => Promise.reject(new Error('unused')), createMesh: () => Promise.reject(new Error('unused')) };
    const backend = new CoordinatorVolunteerBackend({ baseUrl: 'http://c.test', runId: 'default', fetch: refusingOnce(reply), readRetry: { sleep }, ...unused });
    expect(await backend.describeRun()).toMatchObject({ id: 'default', H: RUN.train.H });
    expect(waits).toEqual([3000, 3000]);
  });
});

describe('widget frame', () => {
  it('says beside Start what the run asks of the visitor\'s connection, for every exchange and the first', async () => {
    const c = new TrainingController({ backend: new FakeBackend(FAKE_RUN), sensors: new FakeSensors(), consent: new ConsentStore(null) });
    expect(widgetStatus(c).text).toBe('Checking whether this device can help…');
    await c.init();
    const status = widgetStatus(c);
    expect(status.phase).toBe('ready');
    // FAKE_RUN: 136,000 bytes/s each way within 60 s, 544,000 within the first exchange's 15 s.
    expect(status.text).toBe('Ready: nothing runs until you press Start. This run needs a connection of at least ' +
      '136 KB/s (1.1 Mbit/s) each way, 544 KB/s (4.4 Mbit/s) for the first exchange.');
    // Within what the host widget accepts (FrameStatus), so the widget shows it whole.
    expect(status.text.length).toBeLessThanOrEqual(MAX_STATUS_TEXT);
  });
});
