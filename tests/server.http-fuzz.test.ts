// Seeded fuzz of the coordinator's HTTP routes an anonymous client or a peer can reach, through
// Fastify itself (app.inject, and a raw socket where a body must stop half way): query strings
// and path params of the public reads, the consent routes' bodies, Range headers on downloads,
// and the peer's state upload and its decoder, each made from a valid request by the mutations of
// tests/support/fuzz.ts. Every answer must be a 2xx or 3xx, or a 4xx whose JSON error names the
// problem; never a 5xx, nor a line the coordinator logs as an error. A refused upload stores
// nothing (rows and files as before), and an honest request still succeeds after each part.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { connect } from 'node:net';
import { STATUS_CODES } from 'node:http';
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { tableCounts } from '../server/db.ts';
import { uploadShapeError } from '../server/checkpoint-validate.ts';
import { SignalingClient, memorySessionStore, type WebSocketCtor } from '../src/sync/signaling-client.ts';
import { decodeStateFrame, encodeStateFrame, type StateFrame } from '../src/protocol/state-frame.ts';
import { PROBATION_EXCHANGES } from '../server/peers.ts';
import { earnTrust, report, reportedStep, startServer, until, RawPeer, type TestServer } from './support/coordinator.ts';
import { ODD_IDS, Rand, mutateBytes, mutatedJson, oddQuery } from './support/fuzz.ts';
import { honestState } from './support/states.ts';
import type { RunInfo } from '../src/protocol/messages.ts';

let s: TestServer;
const errorLines: string[] = [];
let client: SignalingClient;
const session = memorySessionStore();
let run: RunInfo;

beforeAll(async () => {
  const logStream = new Writable({ write(chunk, _enc, done) { errorLines.push(String(chunk)); done(); } });
  // Budgets no fuzz run spends, so every request reaches its route (the budgets have their own tests);
  // state requests that never lapse, so the upload fuzz holds one open throughout.
  const huge = 1e12;
  s = await startServer({
    stateRequestTimeoutMs: 3_600_000, checkpointKeep: 8, hub: { pairPrediction: false },
    reads: { perAddressMsPerS: huge, perAddressBurstMs: huge, totalMsPerS: huge, totalBurstMs: huge },
  }, { logLevel: 'error', logStream });
  const created = await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id: 'm', dataset: 'moby-dick', preset: 'micro' } });
  expect(created.statusCode).toBe(201);
  run = created.json() as RunInfo;
  client = new SignalingClient({ url: s.url, run: 'm', WebSocket: WebSocket as unknown as WebSocketCtor, session });
  // The peer never serves a state of its own: the test uploads in its name, with its session.
  client.setStateProvider(() => new Promise<StateFrame>(() => {}));
  client.start();
  await until(() => client.connected, 10_000, 'the peer to join');
  await earnTrust(s.url, 'm', client, { exchanges: PROBATION_EXCHANGES, H: run.train.H });
  await until(() => s.c.hub.eligibleForDuty(client.peerId!), 10_000, 'the peer to leave probation');
});
afterAll(async () => {
  client?.stop();
  await s?.close();
});
afterEach(() => {
  expect(errorLines).toEqual([]);
});

/** What every answer must be: below 500, and a refusal is JSON naming the problem in a sentence. */
function expectAnswered(res: LightMyRequestResponse, what: string): void {
  if (res.statusCode >= 500) throw new Error(`${what}: ${res.statusCode} ${res.body.slice(0, 300)}`);
  if (res.statusCode >= 400) {
    let body: { error?: unknown };
    try {
      body = res.json();
    } catch {
      throw new Error(`${what}: ${res.statusCode} with a body that is no JSON: ${res.body.slice(0, 200)}`);
    }
    if (typeof body.error !== 'string' || body.error.length === 0 || body.error.length > 2000) {
      throw new Error(`${what}: ${res.statusCode} without an error sentence: ${res.body.slice(0, 200)}`);
    }
  }
}

const inject = (o: InjectOptions): Promise<LightMyRequestResponse> => s.c.app.inject(o);

// ---------- query strings and params ----------

describe('fuzz: query strings and path params of the public reads', () => {
  it('answers every mutated query and param with a 2xx or a named 4xx', async () => {
    // Rows to read: a report from a live peer, so every read has something to answer.
    const { peer } = await RawPeer.join(s.wsUrl, { run: 'm' });
    peer.send(report(1));
    await peer.next((m) => m.t === 'ack');
    peer.close();
    const routes: { path: (id: () => string) => string; keys: readonly string[] }[] = [
      { path: (id) => `/api/runs/${id()}/metrics`, keys: ['peer', 'from', 'to', 'maxPoints', 'newest'] },
      { path: (id) => `/api/runs/${id()}/connectivity`, keys: ['from', 'to'] },
      { path: (id) => `/api/runs/${id()}/events`, keys: ['from', 'to', 'limit', 'order'] },
      { path: (id) => `/api/runs/${id()}/checkpoints`, keys: ['from'] },
      { path: (id) => `/api/runs/${id()}`, keys: ['x'] },
      { path: (id) => `/api/runs/${id()}/peers`, keys: ['x'] },
      { path: (id) => `/api/runs/${id()}/data`, keys: ['x'] },
      { path: (id) => `/api/runs/${id()}/data/${id()}`, keys: ['x'] },
      { path: (id) => `/api/runs/${id()}/checkpoints/${id()}`, keys: ['x'] },
      { path: (id) => `/api/runs/${id()}/checkpoints/${id()}/state`, keys: ['x'] },
      { path: (id) => `/api/consent/${id()}`, keys: ['x'] },
      { path: () => '/api/runs', keys: ['x'] },
      { path: () => '/health', keys: ['x'] },
      { path: () => '/api/ws', keys: ['x'] },
    ];
    const r = new Rand(0x4877);
    const counts = { ok: 0, refused: 0 };
    for (let i = 0; i < 1500; i++) {
      const route = r.pick(routes);
      const id = () => (r.chance(0.6) ? 'm' : r.pick(ODD_IDS));
      const url = `${route.path(id)}?${oddQuery(r, route.keys)}`;
      // Now and then another method, with a body or none: a 404 or 405 by name, or the admin's 401.
      const method = r.chance(0.85) ? 'GET' : r.pick(['HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'] as const);
      const body = method !== 'GET' && method !== 'HEAD' && r.chance(0.5) ? { payload: '{"a":1}', headers: { 'content-type': 'application/json' } } : {};
      const res = await inject({ method, url, ...body });
      if (method === 'HEAD') { expect(res.statusCode, url).toBeLessThan(500); continue; }
      expectAnswered(res, `${method} ${url.slice(0, 200)} (iteration ${i})`);
      if (res.statusCode < 400) counts.ok++; else counts.refused++;
    }
    // The fuzz reached the routes' work as well as their refusals.
    expect(counts.ok).toBeGreaterThan(50);
    expect(counts.refused).toBeGreaterThan(500);
    const honest = await inject({ method: 'GET', url: '/api/runs/m/metrics?from=0&maxPoints=10' });
    expect(honest.statusCode).toBe(200);
    expect(honest.json().run).toBe('m');
  });
});

describe('the WebSocket endpoint asked without an upgrade', () => {
  it('answers a plain GET with 426 naming the WebSocket, and still takes a volunteer (found by the fuzz: a 404 with no body)', async () => {
    for (const url of ['/api/ws', '/api/ws?run=m']) {
      const res = await inject({ method: 'GET', url });
      expectAnswered(res, `GET ${url}`);
      expect(res.statusCode).toBe(426);
      expect(res.headers.upgrade).toBe('websocket');
      expect(res.json().error).toMatch(/WebSocket/);
    }
    expect((await inject({ method: 'HEAD', url: '/api/ws' })).statusCode).toBe(426);
    const { peer, welcome } = await RawPeer.join(s.wsUrl, { run: 'm' });
    expect(welcome.run.id).toBe('m');
    peer.close();
  });
});

describe('the live stream asked with HEAD', () => {
  it('answers at once with the stream\'s head and takes no live stream (it once waited unanswered, holding a stream)', async () => {
    const streams = s.c.live.count;
    const { port, hostname } = new URL(s.url);
    for (let i = 0; i < 3; i++) {
      let got = '';
      const socket = connect(Number(port), hostname, () => socket.write('HEAD /api/runs/m/stream HTTP/1.1\r\nHost: x\r\n\r\n'));
      socket.on('data', (d: Buffer) => { got += d.toString('latin1'); });
      socket.on('error', () => { /* destroyed below */ });
      try {
        await until(() => got.includes('\r\n\r\n'), 10_000, 'the answer to HEAD');
      } finally {
        socket.destroy();
      }
      expect(got.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
      expect(got.toLowerCase()).toContain('content-type: text/event-stream');
    }
    expect(s.c.live.count).toBe(streams);
  });
});

// ---------- requests Node's HTTP parser refuses ----------

/**
 * Sends `bytes` on a new connection; resolves with everything that came back once the coordinator
 * closed it. `end`: the client then ends its side too, so a head cut short is not waited on (Node
 * then drops a request it had whole without an answer, as the client has gone).
 */
function rawExchange(bytes: Buffer, end = false): Promise<string> {
  const { port, hostname } = new URL(s.url);
  return new Promise((resolve) => {
    let got = '';
    const socket = connect(Number(port), hostname, () => (end ? socket.end(bytes) : socket.write(bytes)));
    socket.on('data', (d: Buffer) => { got += d.toString('latin1'); });
    socket.on('close', () => resolve(got));
    socket.on('error', () => { /* the close follows */ });
  });
}

/** The status and the parsed JSON body of a raw answer; fails unless it is below 500 and, when a refusal, names its problem. */
function expectRawAnswered(got: string, what: string): { status: number; error?: string } {
  const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(got)?.[1]);
  if (!(status >= 200 && status < 500)) throw new Error(`${what}: answered ${JSON.stringify(got.slice(0, 200))}`);
  if (status < 400) return { status };
  const body = got.slice(got.indexOf('\r\n\r\n') + 4);
  let error: unknown;
  try {
    error = (JSON.parse(body) as { error?: unknown }).error;
  } catch {
    throw new Error(`${what}: ${status} with a body that is no JSON: ${JSON.stringify(body.slice(0, 200))}`);
  }
  // A sentence, not the status's bare name ("Bad Request"), which names nothing.
  if (typeof error !== 'string' || error.length === 0 || error.length > 2000 || error === STATUS_CODES[status]) {
    throw new Error(`${what}: ${status} without an error naming the problem: ${body.slice(0, 200)}`);
  }
  return { status, error };
}

describe('fuzz: requests the HTTP parser refuses', () => {
  it('names what was wrong with each malformed head, then answers an honest request (found by the fuzz: "Bad Request", "Client Error")', async () => {
    const named: [string, RegExp][] = [
      ['POST /api/consent HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', /Transfer-Encoding/],
      ['POST /api/consent HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n', /Content-Length/],
      ['POST /api/consent HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n', /Content-Length/],
      ['POST /api/consent HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n', /chunk/],
      ['GET /api/runs HTTP/1.1\r\nHost: x\r\nX\u0001: 1\r\n\r\n', /header/],
      ['GET /api/runs HTTP/9.9\r\nHost: x\r\n\r\n', /version/],
      [`GET /api/runs HTTP/1.1\r\nHost: x\r\nX: ${'a'.repeat(20_000)}\r\n\r\n`, /headers/],
    ];
    for (const [head, says] of named) {
      const { status, error } = expectRawAnswered(await rawExchange(Buffer.from(head, 'latin1')), JSON.stringify(head.slice(0, 60)));
      expect(status, head.slice(0, 60)).toBeGreaterThanOrEqual(400);
      expect(error, head.slice(0, 60)).toMatch(says);
    }
    // Valid heads mutated byte by byte: each answered as the route would, or refused by name.
    const heads = [
      'GET /api/runs/m/metrics?from=0&maxPoints=10 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
      'GET /api/runs/m/data HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\nConnection: close\r\n\r\n',
      `POST /api/consent/${NONCE}/stop HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 16\r\nConnection: close\r\n\r\n{"closed":false}`,
    ];
    const r = new Rand(0x4ead);
    let refusedByParser = 0;
    for (let i = 0; i < 120; i++) {
      const bytes = Buffer.from(mutateBytes(r, Buffer.from(r.pick(heads), 'latin1')).subarray(0, 4096));
      const got = await rawExchange(bytes, true);
      // A request whose client left before its answer: the coordinator may close without a word.
      if (got === '') continue;
      const { error } = expectRawAnswered(got, `${JSON.stringify(bytes.toString('latin1').slice(0, 120))} (iteration ${i})`);
      if (error?.startsWith('malformed HTTP request')) refusedByParser++;
    }
    expect(refusedByParser).toBeGreaterThan(10);
    expectRawAnswered(await rawExchange(Buffer.from(heads[0]!, 'latin1')), 'the honest request');
  });
});

// ---------- Range headers ----------

describe('fuzz: Range headers on downloads', () => {
  it('serves exactly the asked range, the whole file, or a named 416', async () => {
    const data = (await inject({ method: 'GET', url: '/api/runs/m/data' })).json() as { dataset: string; files: { name: string; bytes: number; sha256: string }[] };
    const f = data.files.find((x) => x.bytes > 0)!;
    const bytes = readFileSync(s.c.datasets.filePath(data.dataset, f.name));
    expect(bytes.length).toBe(f.bytes);
    const n = f.bytes;
    const nums = ['0', '1', String(n - 1), String(n), String(n + 1), '', '00', '999999999999999', '9999999999999999', '99999999999999999999', '-1', '1e3', '0x1', ' 1', String(2 ** 53)];
    const r = new Rand(0x52a6);
    const ranges: string[] = [];
    for (let i = 0; i < 250; i++) {
      const one = () => `${r.pick(nums)}-${r.pick(nums)}`;
      const unit = r.chance(0.85) ? 'bytes' : r.pick(['BYTES', 'items', 'bytes ', '', 'bytes=bytes']);
      const list = Array.from({ length: r.chance(0.8) ? 1 : 2 + r.int(40) }, one).join(r.pick([',', ', ', ' ,']));
      let h = `${unit}=${list}`;
      if (r.chance(0.1)) h = h.slice(0, r.int(h.length + 1));
      if (r.chance(0.05)) h = h + 'é\u0000'.slice(0, 1);
      ranges.push(h);
    }
    for (const [i, range] of ranges.entries()) {
      const ifRange = r.chance(0.2) ? r.pick([`"${f.sha256}"`, '"x"', 'W/"x"', 'Mon, 01 Jan 2024 00:00:00 GMT', '']) : undefined;
      const res = await inject({ method: 'GET', url: `/api/runs/m/data/${f.name}`, headers: { range, ...(ifRange !== undefined ? { 'if-range': ifRange } : {}) } });
      const what = `Range ${JSON.stringify(range.slice(0, 100))}${ifRange !== undefined ? ` If-Range ${ifRange}` : ''} (iteration ${i})`;
      expectAnswered(res, what);
      if (res.statusCode === 200) expect(res.rawPayload.equals(bytes), what).toBe(true);
      else if (res.statusCode === 206) {
        const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(String(res.headers['content-range']));
        expect(m, what).not.toBeNull();
        const [a, b, total] = [Number(m![1]), Number(m![2]), Number(m![3])];
        expect(total, what).toBe(n);
        expect(a <= b && b < n, what).toBe(true);
        expect(res.rawPayload.equals(bytes.subarray(a, b + 1)), what).toBe(true);
      } else expect(res.statusCode, what).toBe(416);
    }
    const honest = await inject({ method: 'GET', url: `/api/runs/m/data/${f.name}`, headers: { range: 'bytes=0-9' } });
    expect(honest.statusCode).toBe(206);
    expect(honest.rawPayload.equals(bytes.subarray(0, 10))).toBe(true);
  });
});

// ---------- consent bodies ----------

const NONCE = 'n'.repeat(86);

describe('fuzz: the consent routes\' bodies', () => {
  it('answers every mutated body, content type and cut with a 2xx or a named 4xx', async () => {
    const site = 'https://fuzz.example.org';
    const patched = await inject({ method: 'PATCH', url: '/api/runs/m', headers: s.admin, payload: { embedSites: [site] } });
    expect(patched.statusCode).toBe(200);
    const samples: { url: string; body: object }[] = [
      { url: '/api/consent', body: { nonce: NONCE, run: 'm', site, maxIntensity: 0.5 } },
      { url: `/api/consent/${NONCE}/decision`, body: { allow: true } },
      { url: `/api/consent/${NONCE}/stop`, body: { closed: false } },
      { url: `/api/consent/${NONCE}/claim`, body: {} },
      { url: `/api/consent/${NONCE}/release`, body: {} },
    ];
    const types = ['application/json', 'application/json; charset=utf-8', 'text/plain', 'application/octet-stream', 'multipart/form-data; boundary=x',
      'application/x-www-form-urlencoded', 'application/json; charset=latin1', 'APPLICATION/JSON', '', 'application/json, text/plain'];
    const r = new Rand(0xc0e5);
    for (let i = 0; i < 800; i++) {
      const sample = r.pick(samples);
      // A fresh nonce now and then, so the store's own refusals (full, expired, unknown) are met too.
      const nonce = r.chance(0.3) ? String.fromCharCode(97 + r.int(26)).repeat(86) : NONCE;
      const url = sample.url.replace(NONCE, nonce);
      let payload: string | Buffer = r.chance(0.2) ? JSON.stringify(sample.body) : mutatedJson(r, sample.body).json;
      if (r.chance(0.1)) payload = Buffer.from(mutateBytes(r, Buffer.from(payload)));
      const type = r.chance(0.7) ? 'application/json' : r.pick(types);
      const res = await inject({ method: 'POST', url, payload, headers: type ? { 'content-type': type } : {} });
      expectAnswered(res, `POST ${url.replace(nonce, ':nonce')} ${type} ${String(payload).slice(0, 120)} (iteration ${i})`);
    }
    const honest = await inject({ method: 'POST', url: '/api/consent', payload: { nonce: 'h'.repeat(86), run: 'm', site } });
    expect(honest.statusCode, honest.body).toBe(201);
  });
});

// ---------- the state upload ----------

describe('fuzz: the peer\'s state upload', () => {
  let state: StateFrame;
  let frame: Uint8Array;
  // What an upload could leave: checkpoint rows, their events, files (reports and other events come and go with the live peers).
  const stored = (): { rows: number; events: number; files: string[] } => ({
    rows: tableCounts(s.c.db).checkpoints!,
    events: (s.c.db.prepare("SELECT COUNT(*) AS n FROM events WHERE kind LIKE 'checkpoint-%'").get() as { n: number }).n,
    files: existsSync(join(s.dataDir, 'checkpoints', 'm')) ? readdirSync(join(s.dataDir, 'checkpoints', 'm')).sort() : [] });
  const openRequest = async (): Promise<string> => {
    const r = await inject({ method: 'POST', url: '/api/runs/m/checkpoints', headers: s.admin });
    expect(r.statusCode, r.body).toBe(202);
    return r.json().request as string;
  };
  const token = () => `Bearer ${session.load()}`;
  /** Whether `body` is a state frame the route would go on to judge (it decodes, with the run's shape). */
  const decodes = (body: Uint8Array): boolean => {
    try {
      return uploadShapeError(run, decodeStateFrame(body)) === null;
    } catch {
      return false;
    }
  };

  beforeAll(async () => {
    state = honestState(run, 0, 3);
    state = { ...state, meta: { ...state.meta, step: 2 * run.train.H, round: 2 } };
    frame = encodeStateFrame(state);
    await reportedStep(s, client, state.meta.step, run.train.H);
  });

  it('refuses every mutated header, cut or extension by name and stores nothing; the request stays open for an honest upload', async () => {
    const id = await openRequest();
    const before = stored();
    // The frame's head: magic, version, header length and its JSON. A mutation past it changes a
    // float, which decodes and is then measured (the validate tests judge those).
    const headEnd = 12 + new DataView(frame.buffer, frame.byteOffset).getUint32(8, true);
    const r = new Rand(0x57a7e);
    const codes = new Map<number, number>();
    let valid = 0;
    for (let i = 0; i < 300; i++) {
      let body: Uint8Array;
      const how = r.int(4);
      if (how === 0) body = frame.slice(0, r.int(frame.length));
      else if (how === 1) body = new Uint8Array([...frame, ...r.bytes(1 + r.int(64))]);
      else {
        // Mutate the head alone, then put the floats back behind it (or not, half the time).
        const head = mutateBytes(r, frame.subarray(0, headEnd));
        const tail = how === 2 ? frame.subarray(headEnd) : frame.subarray(headEnd + r.int(frame.length - headEnd));
        body = new Uint8Array(head.length + tail.length);
        body.set(head);
        body.set(tail, head.length);
      }
      // A head changed within what a state may be (a counter, the claimed loss) is an upload like
      // any other, judged and measured by the validate tests: not this fuzz's.
      if (decodes(body)) { valid++; continue; }
      const type = r.chance(0.9) ? 'application/octet-stream' : r.pick(['application/json', 'text/plain', '', 'application/octet-stream; x=1', 'multipart/form-data']);
      const res = await inject({ method: 'POST', url: `/api/peer/state/${id}`, payload: Buffer.from(body), headers: { authorization: token(), ...(type ? { 'content-type': type } : {}) } });
      expectAnswered(res, `upload ${how} of ${body.length} bytes as ${type} (iteration ${i})`);
      expect(res.statusCode, res.body).toBeGreaterThanOrEqual(400);
      codes.set(res.statusCode, (codes.get(res.statusCode) ?? 0) + 1);
    }
    expect(codes.get(400)).toBeGreaterThan(100);
    expect(valid).toBeLessThan(30);
    expect(stored()).toEqual(before);
    expect(s.c.scheduler.pendingFor('m')?.id).toBe(id);
  });

  it('refuses declared lengths, content types and sessions that do not fit before reading the body', async () => {
    const id = await openRequest();
    const before = stored();
    const cases: { headers: Record<string, string>; payload?: Buffer; status: number }[] = [
      { headers: { 'content-type': 'application/octet-stream' }, payload: Buffer.from(frame), status: 401 },
      { headers: { authorization: 'Bearer x.y', 'content-type': 'application/octet-stream' }, payload: Buffer.from(frame), status: 403 },
      { headers: { authorization: token(), 'content-type': 'application/octet-stream', 'content-length': String(2 ** 53) }, payload: Buffer.from(frame), status: 413 },
      { headers: { authorization: token(), 'content-type': 'application/octet-stream', 'content-length': '99999999999999999999999' }, payload: Buffer.from(frame), status: 413 },
      { headers: { authorization: token(), 'content-type': 'application/octet-stream', 'content-length': String(frame.length + 1) }, payload: Buffer.from(frame), status: 400 },
      { headers: { authorization: token(), 'content-type': 'application/octet-stream', 'content-length': String(frame.length - 1) }, payload: Buffer.from(frame), status: 400 },
      { headers: { authorization: token(), 'content-type': 'application/json' }, payload: Buffer.from(frame), status: 415 },
      { headers: { authorization: token(), 'content-type': 'application/octet-stream' }, payload: Buffer.alloc(0), status: 400 },
    ];
    for (const [i, c] of cases.entries()) {
      const res = await inject({ method: 'POST', url: `/api/peer/state/${id}`, headers: c.headers, ...(c.payload ? { payload: c.payload } : {}) });
      expectAnswered(res, `case ${i}`);
      expect(res.statusCode, `case ${i}: ${res.body}`).toBe(c.status);
    }
    for (const path of ['0123456789abcdef01234567', 'zz', '..%2F..%2Fx', 'A'.repeat(24), 'a'.repeat(5000)]) {
      const res = await inject({ method: 'POST', url: `/api/peer/state/${path}`, payload: Buffer.from(frame), headers: { authorization: token(), 'content-type': 'application/octet-stream' } });
      expectAnswered(res, path.slice(0, 30));
      expect(res.statusCode).toBeGreaterThanOrEqual(400);
    }
    expect(stored()).toEqual(before);
    expect(s.c.scheduler.pendingFor('m')?.id).toBe(id);
  });

  it('a chunked upload that stops, and one that announces more than it sends, leave no upload under way; then an honest upload is stored', async () => {
    const id = await openRequest();
    const before = stored();
    const u = new URL(s.url);
    const upload = () => inject({ method: 'POST', url: `/api/peer/state/${id}`, payload: Buffer.from(frame), headers: { authorization: token(), 'content-type': 'application/octet-stream' } });
    const probe = () => inject({ method: 'POST', url: `/api/peer/state/${id}`, payload: Buffer.alloc(16), headers: { authorization: token(), 'content-type': 'application/octet-stream' } });
    const cut = async (head: string, body: Buffer) => {
      let closed = false;
      const socket = connect(Number(u.port), u.hostname, () => socket.write(Buffer.concat([Buffer.from(head, 'latin1'), body])));
      socket.on('close', () => { closed = true; });
      socket.on('error', () => { /* the close follows */ });
      // Once the coordinator took the head (its onRequest holds the request's one upload place,
      // so a second upload is refused with 409), the client goes away mid-body. The probe is no
      // frame: should it find the place free, it is refused (400) and leaves the request open.
      await until(async () => (await probe()).statusCode === 409, 10_000, 'the cut upload to be under way');
      socket.destroy();
      await until(() => closed, 10_000, 'the socket to close');
    };
    const auth = `Authorization: ${token()}\r\nContent-Type: application/octet-stream\r\n`;
    // Chunked: no Content-Length, refused as such (411) at once.
    const chunked = await new Promise<string>((resolve) => {
      let got = '';
      const socket = connect(Number(u.port), u.hostname, () => socket.write(`POST /api/peer/state/${id} HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding: chunked\r\n\r\n100\r\n${'a'.repeat(100)}`));
      socket.on('data', (d: Buffer) => { got += d.toString('latin1'); if (got.includes('\r\n\r\n')) { socket.destroy(); resolve(got); } });
      socket.on('error', () => resolve(got));
    });
    expect(chunked.split('\r\n')[0]).toBe('HTTP/1.1 411 Length Required');
    // Announces the whole frame, sends half, and goes.
    await cut(`POST /api/peer/state/${id} HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: ${frame.length}\r\n\r\n`, Buffer.from(frame.subarray(0, frame.length >> 1)));
    expect(stored()).toEqual(before);
    // An honest upload of the same request is taken (no "upload under way" left behind), measured and stored.
    await until(async () => (await probe()).statusCode === 400, 10_000, 'the cut upload\'s place to be given back');
    const res = await upload();
    expect(res.statusCode, res.body).toBe(201);
    expect(stored().rows).toBe(before.rows + 1);
  });

  it('serves the stored checkpoint\'s downloads under every Range, If-Range and If-None-Match', async () => {
    const [c] = (await inject({ method: 'GET', url: '/api/runs/m/checkpoints' })).json().checkpoints as { id: string }[];
    expect(c).toBeDefined();
    const base = `/api/runs/m/checkpoints/${c!.id}`;
    const paths = ['/file', '/state', '/export/config.json', '/export/model.safetensors'];
    const whole = new Map<string, { body: Buffer; etag: string | undefined }>();
    for (const p of paths) {
      const res = await inject({ method: 'GET', url: base + p });
      expect(res.statusCode, p).toBe(200);
      whole.set(p, { body: res.rawPayload, etag: res.headers.etag as string | undefined });
    }
    const r = new Rand(0xd0c5);
    const nums = ['0', '1', '7', '', '99', '1000000', '99999999999999999999', '-1', String(2 ** 53)];
    for (let i = 0; i < 200; i++) {
      const p = r.pick(paths);
      const w = whole.get(p)!;
      const n = w.body.length;
      const num = () => r.pick([...nums, String(n - 1), String(n), String(n + 1)]);
      const range = `${r.chance(0.9) ? 'bytes' : 'chars'}=${Array.from({ length: r.chance(0.8) ? 1 : 2 + r.int(5) }, () => `${num()}-${num()}`).join(',')}`;
      const headers: Record<string, string> = { range };
      if (r.chance(0.3)) headers['if-range'] = r.pick([w.etag ?? '', '"x"', `${w.etag ?? ''}x`]);
      if (r.chance(0.2)) headers['if-none-match'] = r.pick([w.etag ?? '', '"x"', '*']);
      const res = await inject({ method: 'GET', url: base + p, headers });
      const what = `${p} ${JSON.stringify(headers)} (iteration ${i})`;
      expectAnswered(res, what);
      if (res.statusCode === 200) expect(res.rawPayload.equals(w.body), what).toBe(true);
      else if (res.statusCode === 206) {
        const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(String(res.headers['content-range']));
        expect(m, what).not.toBeNull();
        expect(Number(m![3]), what).toBe(n);
        expect(res.rawPayload.equals(w.body.subarray(Number(m![1]), Number(m![2]) + 1)), what).toBe(true);
      } else expect([304, 416], what).toContain(res.statusCode);
    }
  });
});

