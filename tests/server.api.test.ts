import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import type { InjectOptions } from 'fastify';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tableCounts } from '../server/db.ts';
import { MAX_POINTS } from '../server/metrics.ts';
import { buildApp } from '../server/app.ts';
import { RawPeer, report, startServer, until, type TestServer } from './support/coordinator.ts';
import type { ServerMessage } from '../src/protocol/messages.ts';
import { CreateRun } from '../server/runs.ts';
import { RUN_EVENT_DATA, UpdateRun } from '../src/protocol/api.ts';
import { schemaProblem } from '../src/protocol/check.ts';
import type { RunEvent } from '../src/protocol/events.ts';
import { asJson, mutants, naming, type Shape } from './support/mutants.ts';

let s: TestServer;
beforeAll(async () => {
  s = await startServer();
});
afterAll(async () => {
  await s?.close();
});

const inject = (o: InjectOptions) => s.c.app.inject(o);

describe('coordinator REST', () => {
  it('has the default run (tiny on Moby Dick) after the first start', async () => {
    const r = await inject({ method: 'GET', url: '/api/runs' });
    expect(r.statusCode).toBe(200);
    const runs = r.json().runs;
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({ id: 'default', dataset: 'moby-dick', preset: 'tiny', status: 'running', pairWaitFrac: 1 });
    expect(runs[0].model).toEqual({ vocab: 256, ctx: 128, layers: 5, d: 128, heads: 4 });
    expect(runs[0].train).toMatchObject({ H: 50, outerMomentum: 0.5, outerLr: 0.7, consensus: 0.7, lr: 6e-4 });
    expect((await inject({ method: 'GET', url: '/health' })).json()).toMatchObject({ ok: true });
  });

  it('stores the admin token 0600 and keeps it across restarts', async () => {
    const path = join(s.dataDir, 'admin-token');
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readFileSync(path, 'utf8').trim()).toBe(s.c.adminToken);
    expect(s.c.adminTokenCreated).toBe(true);
    // A second start on the same data dir reads the same token and does not announce it again.
    const again = await buildApp({ dataDir: s.dataDir }, { checkpointEveryMs: 0 });
    expect(again.adminTokenCreated).toBe(false);
    expect(again.adminToken).toBe(s.c.adminToken);
    await again.close();
  });

  it('refuses admin actions without a token (401) or with a wrong one (403), changing nothing', async () => {
    const before = tableCounts(s.c.db);
    const runBefore = (await inject({ method: 'GET', url: '/api/runs/default' })).json();
    const actions = [
      { method: 'POST', url: '/api/runs', payload: { id: 'evil', dataset: 'moby-dick', preset: 'micro' } },
      { method: 'PATCH', url: '/api/runs/default', payload: { train: { H: 1 } } },
      { method: 'POST', url: '/api/runs/default/stop' },
      { method: 'POST', url: '/api/runs/default/checkpoints' },
      { method: 'DELETE', url: '/api/runs/default/checkpoints/s1-00000000' },
    ] as const;
    for (const a of actions) {
      const none = await inject({ ...a });
      expect(none.statusCode, `${a.method} ${a.url}`).toBe(401);
      expect(none.json().error).toMatch(/admin token required/);
      // One character off (a token ending in "0" must not become itself: 1 run in 16 did).
      const offByOne = s.c.adminToken.slice(0, -1) + (s.c.adminToken.endsWith('0') ? '1' : '0');
      for (const bad of ['Bearer nope', `Bearer ${offByOne}`, `Basic ${s.c.adminToken}`, s.c.adminToken]) {
        const r = await inject({ ...a, headers: { authorization: bad } });
        expect([401, 403], `${a.method} ${a.url} with ${bad.slice(0, 12)}`).toContain(r.statusCode);
      }
      expect((await inject({ ...a, headers: { authorization: 'Bearer wrong-token' } })).statusCode).toBe(403);
    }
    expect(tableCounts(s.c.db)).toEqual(before);
    expect((await inject({ method: 'GET', url: '/api/runs/default' })).json()).toEqual(runBefore);
  });

  it('creates, changes and stops a run with the token; validates hyper-parameters', async () => {
    const bad = [
      [{ id: 'r1', dataset: 'moby-dick', preset: 'huge' }, /preset must be one of/],
      [{ id: 'r1', dataset: 'nothing', preset: 'micro' }, /no dataset "nothing"/],
      [{ id: 'r1', dataset: 'moby-dick', preset: 'micro', train: { seqLen: 64 } }, /seqLen=64 exceeds the model's ctx=32/],
      [{ id: 'r1', dataset: 'moby-dick', preset: 'micro', train: { H: 0 } }, /train.H must be >= 1/],
      [{ id: 'r1', dataset: 'moby-dick', preset: 'micro', extra: 1 }, /extra is not an allowed field/],
      [{ id: 'R 1', dataset: 'moby-dick', preset: 'micro' }, /id does not match/],
      [{ id: 'r1', dataset: 'moby-dick', preset: 'micro', compression: 'zip' }, /compression must be one of/],
    ] as const;
    const before = tableCounts(s.c.db);
    for (const [payload, re] of bad) {
      const r = await inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload });
      expect(r.statusCode, JSON.stringify(payload)).toBe(400);
      expect(r.json().error).toMatch(re);
    }
    expect(tableCounts(s.c.db)).toEqual(before);

    const created = await inject({
      method: 'POST', url: '/api/runs', headers: s.admin,
      payload: { id: 'r1', dataset: 'moby-dick', preset: 'micro', train: { H: 10, outerLr: 0.5, batch: 4 }, compression: 'fp16', seed: 7 },
    });
    expect(created.statusCode).toBe(201);
    expect(created.json()).toMatchObject({ id: 'r1', preset: 'micro', seed: 7, compression: 'fp16', train: { H: 10, outerLr: 0.5, batch: 4, seqLen: 32 } });
    expect((await inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id: 'r1', dataset: 'moby-dick', preset: 'micro' } })).statusCode).toBe(409);

    const patched = await inject({ method: 'PATCH', url: '/api/runs/r1', headers: s.admin, payload: { train: { H: 20, consensus: 0.5 }, pairWaitFrac: 0.5 } });
    expect(patched.statusCode).toBe(200);
    expect(patched.json()).toMatchObject({ train: { H: 20, consensus: 0.5, outerLr: 0.5 }, pairWaitFrac: 0.5 });

    // With a peer training, the settings peers agree on are fixed; the pool wait is not.
    const { peer } = await RawPeer.join(s.wsUrl, { run: 'r1' });
    try {
      const refused = await inject({ method: 'PATCH', url: '/api/runs/r1', headers: s.admin, payload: { train: { H: 30 }, compression: 'none' } });
      expect(refused.statusCode).toBe(409);
      expect(refused.json().error).toMatch(/run r1 has 1 live peer training with its current train and compression settings; .*Stop the run first/);
      expect((await inject({ method: 'GET', url: '/api/runs/r1' })).json()).toMatchObject({ train: { H: 20 }, compression: 'fp16' });
      const n = peer.frames.length;
      const wait = await inject({ method: 'PATCH', url: '/api/runs/r1', headers: s.admin, payload: { pairWaitFrac: 0.4 } });
      expect(wait.statusCode).toBe(200);
      // Live peers hear of it at once.
      expect((await peer.next((m) => m.t === 'config', 3000, n) as Extract<ServerMessage, { t: 'config' }>).run.pairWaitFrac).toBe(0.4);
    } finally {
      peer.close();
    }
    // Its leaving is an event too: wait for it, so the event list below is settled.
    await until(async () => (await inject({ method: 'GET', url: '/api/runs/r1/events' })).json().events.some((e: { kind: string }) => e.kind === 'peer-left'), 5000, 'the peer-left event');

    const stopped = await inject({ method: 'POST', url: '/api/runs/r1/stop', headers: s.admin });
    expect(stopped.json().status).toBe('stopped');
    const events = (await inject({ method: 'GET', url: '/api/runs/r1/events' })).json().events as RunEvent[];
    const ev = events.map((e) => e.kind);
    expect(ev.filter((k: string) => k.startsWith('run-'))).toEqual(['run-created', 'run-updated', 'run-updated', 'run-stopped']);
    // Each event's data is what the dashboard checks it against (its kind's schema).
    expect(new Set(ev)).toEqual(new Set(['run-created', 'run-updated', 'run-stopped', 'peer-joined', 'peer-left']));
    expect(events.map((e) => schemaProblem(RUN_EVENT_DATA[e.kind], e.data, `${e.kind}.data`)).filter((p) => p !== null)).toEqual([]);
    // The dashboard asks for the newest N, newest first.
    const all = (await inject({ method: 'GET', url: '/api/runs/r1/events' })).json().events.map((e: { id: number }) => e.id);
    const newest = (await inject({ method: 'GET', url: '/api/runs/r1/events?order=desc&limit=2' })).json().events.map((e: { id: number }) => e.id);
    expect(newest).toEqual(all.slice(-2).reverse());
    expect((await inject({ method: 'GET', url: '/api/runs/r1/events?order=sideways' })).statusCode).toBe(400);
    expect((await inject({ method: 'GET', url: '/api/runs/missing' })).statusCode).toBe(404);
  });

  it('refuses each spoiled field of a run body by name, through Fastify\'s Ajv, storing nothing', async () => {
    const train = {
      batch: 4, seqLen: 32, lr: 0.001, warmupSteps: 10, totalSteps: 1000, minLrFrac: 0.1, weightDecay: 0.1, beta1: 0.9,
      beta2: 0.95, eps: 1e-8, gradClip: 1, H: 20, outerMomentum: 0.5, outerLr: 0.7, consensus: 0.5,
    };
    const create = {
      id: 'fuzz', name: 'fuzz', dataset: 'moby-dick', preset: 'micro', train, compression: 'fp16', pairWaitFrac: 0.5,
      icePolicy: 'relay', seed: 7, embedSites: ['https://whales.example.org'],
    };
    const before = tableCounts(s.c.db);
    let n = 0;
    for (const [method, url, schema, sample] of [['POST', '/api/runs', CreateRun, create], ['PATCH', '/api/runs/default', UpdateRun, { ...create, id: undefined, dataset: undefined, preset: undefined, seed: undefined, status: 'running' }]] as const) {
      const body = JSON.parse(JSON.stringify(sample));
      for (const m of mutants(schema as unknown as Shape, body, 'body', (v) => v)) {
        const r = await inject({ method, url, headers: { ...s.admin, 'content-type': 'application/json' }, payload: asJson(m.value) });
        expect(r.statusCode, `${method} ${m.what}`).toBe(400);
        expect(r.json().error, `${method} ${m.what}`).toMatch(naming(m.names));
        n++;
      }
    }
    expect(n).toBeGreaterThan(60);
    expect(tableCounts(s.c.db)).toEqual(before);
  });

  it('serves token files with ETag = sha256, 304 on revalidation, only manifest names', async () => {
    const m = (await inject({ method: 'GET', url: '/api/runs/default/data' })).json();
    expect(m.val.url).toBe('/api/runs/default/data/val.bin');
    for (const f of [...m.train, m.val]) {
      const r = await inject({ method: 'GET', url: f.url });
      expect(r.statusCode).toBe(200);
      const sha = createHash('sha256').update(r.rawPayload).digest('hex');
      expect(sha).toBe(f.sha256);
      expect(r.headers.etag).toBe(`"${sha}"`);
      expect(r.headers['cache-control']).toMatch(/public/);
      expect((await inject({ method: 'GET', url: f.url, headers: { 'if-none-match': `"${sha}"` } })).statusCode).toBe(304);
    }
    expect(new TextDecoder().decode((await inject({ method: 'GET', url: m.train[0].url })).rawPayload.subarray(0, 40))).toMatch(/[A-Za-z]/);
    for (const url of ['/api/runs/default/data/manifest.json', '/api/runs/default/data/..%2fmanifest.json', '/api/runs/default/data/%2e%2e', '/api/runs/nope/data/val.bin']) {
      expect([400, 404], url).toContain((await inject({ method: 'GET', url })).statusCode);
    }
  });

  it('answers metric queries by run, peer and time range, downsampled for long ranges', async () => {
    const m = s.c.metrics;
    const t0 = 1_700_000_000_000;
    const peers = ['p-00000000000000a1', 'p-00000000000000a2'];
    for (let i = 0; i < 3000; i++) {
      const peerId = peers[i % 2]!;
      m.enqueue({
        runId: 'r1', peerId, seq: i, time: t0 + i * 1000, t: t0 + i * 1000, receivedAt: t0 + i * 1000, step: i, round: i >> 4,
        trainLoss: i % 2 ? 3 : 5, valLoss: null, tokensPerS: 100, bytesIn: 1, bytesOut: 2, partner: null, partnerDist: null, adapter: null,
      }, () => {});
    }
    m.flush();
    const raw = (await inject({ method: 'GET', url: `/api/runs/r1/metrics?peer=${peers[0]}&from=${t0}&to=${t0 + 9999}` })).json();
    expect(raw.downsampled).toBe(false);
    expect(raw.points.map((p: { seq: number }) => p.seq)).toEqual([0, 2, 4, 6, 8]);
    const ds = (await inject({ method: 'GET', url: `/api/runs/r1/metrics?maxPoints=100&from=${t0}&to=${t0 + 10_000_000}` })).json();
    expect(ds.downsampled).toBe(true);
    expect(ds.total).toBe(3000);
    expect(ds.points.length).toBeLessThanOrEqual(100);
    expect(ds.points.length).toBeGreaterThan(90);
    expect(ds.points.reduce((a: number, p: { n: number }) => a + p.n, 0)).toBe(3000);
    // Each bucket averages both peers' losses (5 and 3) and sums the byte counters.
    expect(ds.points[1].trainLoss).toBeCloseTo(4, 6);
    expect(ds.points[1].bytesIn).toBe(ds.points[1].n);
    const one = (await inject({ method: 'GET', url: `/api/runs/r1/metrics?peer=${peers[1]}&maxPoints=10&from=${t0}&to=${t0 + 10_000_000}` })).json();
    expect(one.points.every((p: { trainLoss: number; peers: number }) => p.trainLoss === 3 && p.peers === 1)).toBe(true);
    for (const q of ['maxPoints=0', 'maxPoints=abc', 'peer=../x', 'from=-1', 'from=10&to=5', 'bogus=1']) {
      const r = await inject({ method: 'GET', url: `/api/runs/r1/metrics?${q}` });
      expect(r.statusCode, q).toBe(400);
      expect(r.json().error).toBeTruthy();
    }
  });

  it('refuses a non-finite number anywhere in a query string, naming the field: Ajv coerces "Infinity" past every bound', async () => {
    // Ajv takes "Infinity", "-Infinity" and "1e400" for integers and checks minimum/maximum only
    // against finite numbers: ?maxPoints=Infinity was answered with every row of the run, raw.
    const cases: [string, string][] = [
      ['/api/runs/default/metrics?maxPoints=Infinity', 'querystring.maxPoints'],
      ['/api/runs/default/metrics?maxPoints=1e400&newest=true', 'querystring.maxPoints'],
      ['/api/runs/default/metrics?from=-Infinity&to=Infinity&maxPoints=5', 'querystring.from'],
      ['/api/runs/default/metrics?to=Infinity', 'querystring.to'],
      ['/api/runs/default/connectivity?from=-Infinity', 'querystring.from'],
      ['/api/runs/default/connectivity?to=1e400', 'querystring.to'],
      ['/api/runs/default/events?limit=Infinity', 'querystring.limit'],
      ['/api/runs/default/events?limit=-1e400', 'querystring.limit'],
      ['/api/runs/default/events?from=Infinity', 'querystring.from'],
    ];
    for (const [url, field] of cases) {
      const r = await inject({ method: 'GET', url });
      expect(r.statusCode, url).toBe(400);
      expect(r.json().error, url).toBe(`${field} must be a finite number`);
    }
    // Finite values past a bound are refused by Ajv as before, and good ones pass.
    expect((await inject({ method: 'GET', url: '/api/runs/default/metrics?maxPoints=20001' })).json().error).toBe('querystring.maxPoints must be <= 20000');
    expect((await inject({ method: 'GET', url: '/api/runs/default/events?limit=5&from=0' })).statusCode).toBe(200);
  });

  it('answers at most MAX_POINTS points whatever maxPoints it is given, a non-finite one too', () => {
    // Behind the route's bound: a caller inside the coordinator that passes a bad maxPoints gets
    // a bounded answer and SQLite an integer LIMIT, not every row of the run.
    const t0 = 1_800_000_000_000;
    for (let i = 0; i < MAX_POINTS + 1; i++) {
      s.c.metrics.enqueue({
        runId: 'many', peerId: 'p-00000000000000b1', seq: i, time: t0 + i, t: t0 + i, receivedAt: t0 + i, step: i, round: i,
        trainLoss: 3, valLoss: null, tokensPerS: 1, bytesIn: 1, bytesOut: 1, partner: null, partnerDist: null, adapter: null,
      }, () => {});
    }
    s.c.metrics.flush();
    for (const maxPoints of [Infinity, -Infinity, NaN, 1e9]) {
      const all = s.c.metrics.query({ runId: 'many', from: 0, to: 1e14, maxPoints });
      expect(all.total, String(maxPoints)).toBe(MAX_POINTS + 1);
      expect(all.points.length, String(maxPoints)).toBeLessThanOrEqual(MAX_POINTS);
      const newest = s.c.metrics.query({ runId: 'many', from: 0, to: 1e14, maxPoints, newest: true });
      expect(newest.points.length, String(maxPoints)).toBe(MAX_POINTS);
    }
    expect(s.c.metrics.query({ runId: 'many', from: 0, to: 1e14, maxPoints: 0.5, newest: true }).points.length).toBe(1);
  });

  it('streams reports live to dashboards (SSE) once they are committed', async () => {
    const ctl = new AbortController();
    const res = await fetch(`${s.url}/api/runs/default/stream`, { signal: ctl.signal });
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const reader = res.body!.getReader();
    let text = '';
    const pump = (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        text += new TextDecoder().decode(value);
      }
    })().catch(() => {});
    const { peer, welcome } = await RawPeer.join(s.wsUrl);
    peer.send(report(41));
    await peer.next((m) => m.t === 'ack' && m.seq === 41);
    await until(() => text.includes('"seq":41'), 5000, 'the report on the live stream');
    expect(text).toMatch(/event: peer\ndata: .*"kind":"peer-joined"/);
    const ev = text.split('\n\n').find((b) => b.startsWith('event: report'))!;
    const row = JSON.parse(ev.split('\ndata: ')[1]!);
    expect(row).toMatchObject({ peerId: welcome.peerId, runId: 'default', seq: 41, trainLoss: 5 - 0.041 });
    peer.close();
    ctl.abort();
    await pump;
  });
});

describe('web app serving', () => {
  it('serves the built app at /, /dashboard, /consent and /embed.js beside the API', async () => {
    const web = mkdtempSync(join(tmpdir(), 'murmur-web-'));
    writeFileSync(join(web, 'index.html'), '<title>volunteer</title>');
    writeFileSync(join(web, 'dashboard.html'), '<title>dashboard</title>');
    writeFileSync(join(web, 'consent.html'), '<title>consent</title>');
    writeFileSync(join(web, 'embed.js'), 'export {}');
    const w = await startServer({ webRoot: web });
    try {
      const get = (url: string) => w.c.app.inject({ method: 'GET', url });
      expect((await get('/')).body).toContain('volunteer');
      expect((await get('/dashboard')).body).toContain('dashboard');
      // The widget's consent window, never in a frame.
      const consent = await get('/consent');
      expect(consent.body).toContain('consent');
      expect(consent.headers['x-frame-options']).toBe('DENY');
      expect(consent.headers['content-security-policy']).toMatch(/frame-ancestors 'none'$/);
      expect((await get('/embed.js')).headers['content-type']).toMatch(/javascript/);
      expect((await get('/api/runs')).json().runs[0].id).toBe('default');
      const missing = await get('/api/nothing-here');
      expect(missing.statusCode).toBe(404);
    } finally {
      await w.close();
      rmSync(web, { recursive: true });
    }
    // Without a build, / says how to make one instead of failing.
    const bare = await startServer({ webRoot: join(web, 'never-built') });
    try {
      expect((await bare.c.app.inject({ method: 'GET', url: '/' })).body).toMatch(/vite build/);
    } finally {
      await bare.close();
    }
  });
});
