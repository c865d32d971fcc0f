// Seeded fuzz of the coordinator's live dashboard stream (GET /api/runs/:run/stream, server-sent
// events) over real sockets on 127.0.0.1: Fastify's inject cannot await a stream that never ends.
// Mutated paths, run ids and query strings, odd methods and headers (Accept, Last-Event-ID, huge
// heads, many cookies, an upgrade), HTTP/1.0, clients that close at once, half-close or stop
// mid-head; then slow readers, the per-address cap, a run stopped under an open stream and a
// coordinator closed under open streams. Every answer is a well-formed stream or a 4xx whose JSON
// error names the problem (never a 5xx, nor a stack, nor a line the coordinator logs as an error),
// a stream's place is given back when its client goes, the bytes held for a client that does not
// read stay under the hub's bound, and an honest request succeeds after each part.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Socket } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Writable } from 'node:stream';
import { RawPeer, startServer, until, type TestServer } from './support/coordinator.ts';
import { DEFAULT_LIVE_LIMITS, LiveHub } from '../server/live.ts';
import { ODD_IDS, ODD_QUERY_VALUES, Rand, oddQuery } from './support/fuzz.ts';

let s: TestServer;
const errorLines: string[] = [];

beforeAll(async () => {
  const logStream = new Writable({ write(chunk, _enc, done) { errorLines.push(String(chunk)); done(); } });
  s = await startServer({}, { logLevel: 'error', logStream });
  const created = await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id: 'm', dataset: 'moby-dick', preset: 'micro' } });
  expect(created.statusCode).toBe(201);
});
afterAll(async () => {
  await s?.close();
});
afterEach(() => {
  expect(errorLines).toEqual([]);
});

// ---------- a raw HTTP/1.x client ----------

interface Answer {
  /** 0 until a status line came. */
  status: number;
  headers: Record<string, string>;
  /** The body so far, chunked encoding undone. */
  body: string;
  /** The body ended as its framing says (the last chunk, or Content-Length bytes). */
  complete: boolean;
  /** The coordinator closed the connection. */
  closed: boolean;
}

/** What has come back in `raw` so far, as an Answer (`head` true for a HEAD, whose answer has no body). */
function parse(raw: string, head: boolean, closed: boolean): Answer {
  // An interim answer (100 Continue to an Expect) comes before the real one.
  while (/^HTTP\/1\.[01] 10[023] /.test(raw) && raw.includes('\r\n\r\n')) raw = raw.slice(raw.indexOf('\r\n\r\n') + 4);
  const end = raw.indexOf('\r\n\r\n');
  const a: Answer = { status: 0, headers: {}, body: '', complete: false, closed };
  if (end < 0) return a;
  const [statusLine, ...lines] = raw.slice(0, end).split('\r\n');
  a.status = Number(/^HTTP\/1\.[01] (\d{3}) /.exec(statusLine!)?.[1] ?? -1);
  for (const l of lines) {
    const c = l.indexOf(':');
    a.headers[l.slice(0, c).trim().toLowerCase()] = l.slice(c + 1).trim();
  }
  const rest = raw.slice(end + 4);
  if (head || a.status === 101 || a.status === 304 || a.status === 204) {
    a.complete = true;
  } else if (a.headers['transfer-encoding'] === 'chunked') {
    let at = 0;
    for (;;) {
      const nl = rest.indexOf('\r\n', at);
      if (nl < 0) break;
      const size = parseInt(rest.slice(at, nl), 16);
      if (!Number.isFinite(size) || rest.length < nl + 2 + size + 2) break;
      if (size === 0) { a.complete = true; break; }
      a.body += rest.slice(nl + 2, nl + 2 + size);
      at = nl + 2 + size + 2;
    }
  } else if (a.headers['content-length'] !== undefined) {
    const n = Number(a.headers['content-length']);
    a.body = rest.slice(0, n);
    a.complete = rest.length >= n;
  } else {
    a.body = rest;
    a.complete = closed;
  }
  // The body is UTF-8; the socket's bytes were kept as latin1 to count them.
  a.body = Buffer.from(a.body, 'latin1').toString('utf8');
  return a;
}

interface Conn {
  socket: Socket;
  /** Everything that came back so far, parsed. */
  answer: () => Answer;
  /** Bytes that came back so far. */
  received: () => number;
}

/** Opens a connection (from `localAddress`), and sends `head` (and ends its side, `halfClose`). */
function open(head: string | Buffer, o: { localAddress?: string; halfClose?: boolean; isHead?: boolean; read?: boolean } = {}): Promise<Conn> {
  const { port, hostname } = new URL(s.url);
  return new Promise((resolve, reject) => {
    let raw = '';
    let closed = false;
    const socket = connect({ port: Number(port), host: hostname, ...(o.localAddress ? { localAddress: o.localAddress } : {}) }, () => {
      if (o.halfClose) socket.end(head);
      else socket.write(head);
      resolve({ socket, answer: () => parse(raw, o.isHead ?? false, closed), received: () => raw.length });
    });
    if (o.read !== false) socket.on('data', (d: Buffer) => { raw += d.toString('latin1'); });
    socket.on('close', () => { closed = true; });
    socket.on('error', (err) => { if (!socket.connecting) return; reject(err); });
  });
}

/** The first block of a stream: what the hub writes before any event. */
const STREAM_START = 'retry: 2000\n\n';

/** Waits until `c`'s answer is whole, or is a stream past its first block, or the connection closed. */
async function settled(c: Conn, what: string): Promise<Answer> {
  return until<Answer | null>(() => {
    const a = c.answer();
    if (a.closed || a.complete) return a;
    if (a.status === 200 && a.headers['content-type']?.startsWith('text/event-stream') && a.body.includes(STREAM_START)) return a;
    return null;
  }, 10_000, () => `${what}: an answer (got ${JSON.stringify(c.answer()).slice(0, 300)})`) as Promise<Answer>;
}

/** Fails unless `body` is a well-formed event stream: blocks of `field: value` lines and comments, each ended by a blank line. */
function expectWellFormedStream(body: string, what: string): void {
  if (!body.startsWith(STREAM_START)) throw new Error(`${what}: the stream does not start with ${JSON.stringify(STREAM_START)}: ${JSON.stringify(body.slice(0, 200))}`);
  const whole = body.slice(0, body.lastIndexOf('\n\n') + 2);
  for (const block of whole.split('\n\n').slice(0, -1)) {
    for (const line of block.split('\n')) {
      if (!/^(:.*|retry: \d+|event: [a-z]+|data: .*)$/.test(line)) throw new Error(`${what}: a stream line that is no SSE field: ${JSON.stringify(line.slice(0, 200))}`);
      if (line.startsWith('data: ')) JSON.parse(line.slice(6));
    }
  }
}

/** Fails unless `a` is a refusal whose JSON error names the problem in a sentence (no stack). */
function expectNamedRefusal(a: Answer, what: string): string {
  if (!(a.status >= 400 && a.status < 500)) throw new Error(`${what}: answered ${a.status} ${JSON.stringify(a.body.slice(0, 300))}`);
  let error: unknown;
  try {
    error = (JSON.parse(a.body) as { error?: unknown }).error;
  } catch {
    throw new Error(`${what}: ${a.status} with a body that is no JSON: ${JSON.stringify(a.body.slice(0, 200))}`);
  }
  if (typeof error !== 'string' || error.length === 0 || error.length > 2000 || /\n\s+at /.test(a.body)) {
    throw new Error(`${what}: ${a.status} without an error sentence: ${a.body.slice(0, 300)}`);
  }
  return error;
}

/** Waits until the hub holds `n` streams (a stream's place is given back when its client goes). */
const streamsAre = (n: number, what: string) => until(() => s.c.live.count === n, 10_000, () => `${n} live streams ${what} (hub holds ${s.c.live.count})`);

/** The TCP connections the coordinator holds now, upgraded ones too (no longer its HTTP server's). */
const connections = () => new Promise<number>((resolve, reject) => s.c.app.server.getConnections((err, n) => (err ? reject(err) : resolve(n))));

/** Waits until the coordinator holds `n` connections: one its client closed is closed here too. */
const connectionsAre = (n: number, what: string) => until(async () => (await connections()) === n, 10_000, `${n} connections ${what}`);

/** An honest dashboard's stream on run `run`: a well-formed start. */
async function honestStream(run = 'm', localAddress?: string): Promise<Conn> {
  const c = await open(`GET /api/runs/${run}/stream HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`, localAddress ? { localAddress } : {});
  const a = await settled(c, 'an honest stream');
  expect(a.status).toBe(200);
  expectWellFormedStream(a.body, 'an honest stream');
  return c;
}

/** Responses the coordinator's HTTP server made, newest last: what a stream holds unsent is its response's writableLength. */
const responses: ServerResponse[] = [];
beforeAll(() => {
  s.c.app.server.on('request', (_req: IncomingMessage, res: ServerResponse) => {
    responses.push(res);
    if (responses.length > 64) responses.shift();
  });
});

// ---------- the fuzz ----------

const PATHS: ((id: string) => string)[] = [
  (id) => `/api/runs/${id}/stream/`, (id) => `//api/runs/${id}/stream`, (id) => `/api/runs/${id}/./stream`, (id) => `/api/runs/x/../${id}/stream`,
  (id) => `/api/runs/${id}/stream%2F`, (id) => `/api/runs/${id}%2Fstream`, (id) => `/API/RUNS/${id}/STREAM`, (id) => `http://x/api/runs/${id}/stream`,
  (id) => `/api/runs/${id}/stream;x=1`, (id) => `/api/runs/${id}/streams`, (id) => `/api/runs/${id}/stream#f`, (id) => `/api/runs/${id}/stream/${id}`,
];

const ODD_EVENT_IDS = ['', '0', '-1', '-0', 'NaN', '1e999', '99999999999999999999', String(2 ** 53 + 2), 'garbage', '\u00ff\u00fe', 'x'.repeat(8000), '1, 2'];

/** One extra header line (or a few) for a request, with a body when it announces one. */
function oddHeader(r: Rand): { lines: string[]; body?: string } {
  switch (r.int(14)) {
    case 0: return { lines: [`Accept: ${r.pick(['text/event-stream', '*/*', 'text/html', 'application/json', '', 'text/event-stream;q=0', 'x'.repeat(2000), '\u00e9'])}`] };
    case 1: return { lines: [`Last-Event-ID: ${r.pick(ODD_EVENT_IDS)}`] };
    case 2: return { lines: [`Cookie: ${Array.from({ length: 1 + r.int(400) }, (_, i) => `c${i}=${i}`).join('; ')}`] };
    case 3: return { lines: Array.from({ length: 1 + r.int(60) }, (_, i) => `Cookie: k${i}=${'v'.repeat(r.int(100))}`) };
    case 4: return { lines: [`X-Pad: ${'a'.repeat(r.pick([8000, 17_000, 40_000]))}`] };
    case 5: return { lines: [`Connection: ${r.pick(['close', 'keep-alive', 'Upgrade', 'x'])}`] };
    case 6: return { lines: ['Expect: 100-continue'] };
    case 7: return { lines: [`Accept-Encoding: ${r.pick(['gzip, br', 'identity;q=0', '*'])}`] };
    case 8: return { lines: [`Origin: ${r.pick(['https://example.com', 'null', ''])}`, 'Cache-Control: no-cache'] };
    case 9: return { lines: ['Content-Type: application/json', 'Content-Length: 7'], body: '{"a":1}' };
    case 10: return { lines: ['Transfer-Encoding: chunked'], body: '0\r\n\r\n' };
    case 12: return { lines: ['Connection: Upgrade', `Upgrade: ${r.pick(['websocket', 'h2c', 'x'])}`, 'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=='] };
    case 11: return { lines: [`Range: bytes=${r.pick(['0-10', '-5', 'x'])}`, 'If-None-Match: *'] };
    default: return { lines: [`Last-Event-ID: ${r.pick(ODD_EVENT_IDS)}`, 'Accept: text/event-stream'] };
  }
}

/** A mutated request for the live stream: its head as bytes, and whether it is a HEAD. */
function oddRequest(r: Rand): { head: Buffer; method: string; what: string } {
  const method = r.chance(0.75) ? 'GET' : r.pick(['HEAD', 'POST', 'OPTIONS', 'PUT', 'DELETE', 'PATCH']);
  const id = r.chance(0.5) ? 'm' : r.pick(ODD_IDS);
  let target = r.chance(0.85) ? `/api/runs/${id}/stream` : r.pick(PATHS)(id);
  if (r.chance(0.5)) target += `?${oddQuery(r, ['lastEventId', 'since', 'from', 'run', 'retry', 'event'])}`;
  const version = r.chance(0.9) ? '1.1' : '1.0';
  // Now and then no Host, which HTTP/1.1 requires.
  const lines = [`${method} ${target} HTTP/${version}`, ...(r.chance(0.95) ? ['Host: 127.0.0.1'] : [])];
  let body = '';
  for (let n = r.int(4); n > 0; n--) {
    const h = oddHeader(r);
    lines.push(...h.lines);
    if (h.body !== undefined) body = h.body;
  }
  const text = `${lines.join('\r\n')}\r\n\r\n${body}`;
  return { head: Buffer.from(text, 'utf8'), method, what: `${JSON.stringify(text.slice(0, 160))}` };
}

describe('fuzz: requests for the live stream, over sockets', () => {
  it('answers each with a well-formed stream or a named 4xx, and gives every stream\'s place back when its client goes', async () => {
    const r = new Rand(0x55e1);
    const counts = { streams: 0, refused: 0, heads: 0, gone: 0 };
    for (let i = 0; i < 300; i++) {
      const req = oddRequest(r);
      const what = `${req.what} (iteration ${i})`;
      const how = r.chance(0.8) ? 'read' : r.pick(['close-at-once', 'half-close', 'cut-head'] as const);
      if (how === 'close-at-once' || how === 'cut-head') {
        const c = await open(how === 'cut-head' ? req.head.subarray(0, r.int(req.head.length)) : req.head);
        c.socket.destroy();
        counts.gone++;
      } else {
        const c = await open(req.head, { halfClose: how === 'half-close', isHead: req.method === 'HEAD' });
        const a = await settled(c, what);
        c.socket.destroy();
        if (a.status === 0 && how === 'half-close') {
          counts.gone++;
        } else if (req.method === 'HEAD') {
          // A HEAD's answer has no body to name a refusal in.
          if (!(a.status >= 200 && a.status < 500)) throw new Error(`${what}: answered ${a.status}`);
          if (a.status === 200) counts.heads++;
        } else if (a.status === 200 && a.headers['content-type']?.startsWith('text/event-stream')) {
          expectWellFormedStream(a.body, what);
          counts.streams++;
        } else {
          expectNamedRefusal(a, what);
          counts.refused++;
        }
      }
      await streamsAre(0, `once the client of ${what} went`);
      await connectionsAre(0, `once the client of ${what} went`);
      // The coordinator is still up for an honest dashboard.
      if (i % 50 === 49) (await honestStream()).socket.destroy();
    }
    // The fuzz reached the stream itself as well as its refusals.
    expect(counts.streams).toBeGreaterThan(60);
    expect(counts.refused).toBeGreaterThan(60);
    expect(counts.heads).toBeGreaterThan(0);
    await streamsAre(0, 'after the fuzz');
  });
});

describe('an upgrade asked of the live stream', () => {
  it('is refused by name, and the stream still serves (found by the fuzz: 101 Switching Protocols and a WebSocket closed at once, or ws\'s plain-text "Invalid Upgrade header")', async () => {
    for (const [path, upgrade] of [['/api/runs/m/stream', 'websocket'], ['/api/runs/m/stream', 'h2c'], ['/api/runs/m/metrics', 'websocket'], ['/health', 'websocket']] as const) {
      const c = await open(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: ${upgrade}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`);
      const a = await settled(c, `an upgrade of ${path} to ${upgrade}`);
      c.socket.destroy();
      expect(a.status, `${path} ${upgrade}`).toBe(400);
      expect(expectNamedRefusal(a, `${path} ${upgrade}`)).toMatch(/takes no Upgrade.*only \/api\/ws is a WebSocket/);
    }
    await streamsAre(0, 'after the upgrades');
    (await honestStream()).socket.destroy();
    await streamsAre(0, 'after the honest stream');
    // The volunteers' WebSocket still upgrades.
    const { peer, welcome } = await RawPeer.join(s.wsUrl, { run: 'm' });
    expect(welcome.run.id).toBe('m');
    peer.close();
  });
});

describe('a request without Host', () => {
  it('is refused by name, and the connection still serves (found by the fuzz: Node\'s bare 400 with no body)', async () => {
    for (const path of ['/api/runs/m/stream', '/api/runs/m/metrics', '/health', '/nope']) {
      const c = await open(`GET ${path} HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n`);
      const a = await settled(c, `GET ${path} without Host`);
      c.socket.destroy();
      expect(a.status, path).toBe(400);
      expect(expectNamedRefusal(a, `GET ${path} without Host`)).toMatch(/Host header/);
    }
    // HTTP/1.0 has no Host to require.
    const c = await open('GET /api/runs/m/stream HTTP/1.0\r\n\r\n');
    const a = await settled(c, 'an HTTP/1.0 stream');
    c.socket.destroy();
    expect(a.status).toBe(200);
    expectWellFormedStream(a.body, 'an HTTP/1.0 stream');
    await streamsAre(0, 'after the requests without Host');
  });
});

describe('an upgrade asked of a path that cannot be routed', () => {
  it('is answered by name and its socket closed, so the coordinator\'s close does not wait on it (found by the fuzz: the socket stayed open and close() hung)', async () => {
    const c = await open('GET /api/runs/%zz/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n');
    const a = await until<Answer | null>(() => { const x = c.answer(); return x.closed ? x : null; }, 10_000, () => `the socket closed after its answer (got ${JSON.stringify(c.answer()).slice(0, 200)})`);
    expect(a!.status).toBe(400);
    expect(expectNamedRefusal(a!, 'GET /api/runs/%zz/stream with an upgrade')).toMatch(/%zz/);
    await connectionsAre(0, 'after the bad path\'s upgrade');
  });
});

describe('dashboards that do not read', () => {
  it('hold at most the hub\'s bound unsent each, then are dropped and give their place back; a reading dashboard beside them gets every event', async () => {
    const bound = 1 << 20; // LiveHub's default maxBufferedBytes
    const slow = await open('GET /api/runs/m/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n', { read: false, localAddress: '127.0.0.4' });
    await streamsAre(1, 'with the slow dashboard in');
    const slowRes = responses.at(-1)!;
    const reader = await honestStream('m', '127.0.0.5');
    const frame = { pad: 'x'.repeat(16 * 1024) };
    let published = 0, most = 0;
    const dropped = s.c.live.stats.dropped;
    while (s.c.live.stats.dropped === dropped) {
      for (let k = 0; k < 8; k++) {
        s.c.live.publish('m', 'report', { ...frame, n: published++ });
        most = Math.max(most, slowRes.writableLength);
      }
      // The reader takes each batch before the next, as a dashboard that keeps up does.
      await until(() => reader.answer().body.split('event: report\n').length - 1 === published, 10_000, `the reader to get ${published} events`);
      if (published > 100_000) throw new Error('the slow dashboard was never dropped');
    }
    // Never more than the bound and one frame unsent, however much was published.
    expect(most).toBeLessThanOrEqual(bound + 17 * 1024);
    expect(published * 16 * 1024).toBeGreaterThan(bound);
    await streamsAre(1, 'once the slow dashboard was dropped');
    expectWellFormedStream(reader.answer().body, 'the reading dashboard');
    expect(reader.answer().closed).toBe(false);
    reader.socket.destroy();
    slow.socket.destroy();
    await streamsAre(0, 'after both went');
  });
});

describe('streams from one address', () => {
  it('are at most perAddress; clients that went, however they went, hold none', async () => {
    const { perAddress } = DEFAULT_LIVE_LIMITS;
    const held: Conn[] = [];
    try {
      for (let i = 0; i < perAddress; i++) held.push(await honestStream('m', '127.0.0.2'));
      const over = await open('GET /api/runs/m/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n', { localAddress: '127.0.0.2' });
      const a = await settled(over, 'a stream past the cap');
      over.socket.destroy();
      expect(a.status).toBe(429);
      expect(expectNamedRefusal(a, 'a stream past the cap')).toMatch(new RegExp(`holds ${perAddress} live streams, the limit`));
      // From another address: 60 clients that close at once, cut their head or half-close.
      const head = Buffer.from('GET /api/runs/m/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
      for (let i = 0; i < 60; i++) {
        const c = await open(i % 3 === 1 ? head.subarray(0, 20 + i) : head, { localAddress: '127.0.0.3', halfClose: i % 3 === 2 });
        if (i % 3 !== 2) c.socket.destroy();
        else await until(() => c.answer().closed, 10_000, 'the half-closed stream to end');
      }
      await streamsAre(perAddress, 'once the clients that went are gone');
      for (let i = 0; i < perAddress; i++) held.push(await honestStream('m', '127.0.0.3'));
      // One of the first address's goes: its place is taken again.
      held.shift()!.socket.destroy();
      await streamsAre(2 * perAddress - 1, 'once one stream closed');
      held.push(await honestStream('m', '127.0.0.2'));
    } finally {
      for (const c of held) c.socket.destroy();
    }
    await streamsAre(0, 'after all went');
  });
});

describe('a run stopped under an open stream', () => {
  it('tells the stream, which stays well formed and open', async () => {
    const created = await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id: 'n', dataset: 'moby-dick', preset: 'micro' } });
    expect(created.statusCode).toBe(201);
    const c = await honestStream('n');
    expect((await s.c.app.inject({ method: 'POST', url: '/api/runs/n/stop', headers: s.admin })).statusCode).toBe(200);
    await until(() => c.answer().body.includes('event: run\n'), 10_000, 'the run event on the stream');
    expectWellFormedStream(c.answer().body, 'the stopped run\'s stream');
    expect(c.answer().body).toMatch(/"kind":"run-stopped"/);
    expect(c.answer().closed).toBe(false);
    c.socket.destroy();
    await streamsAre(0, 'after the stopped run\'s stream went');
  });
});

describe('a coordinator closed under open streams', () => {
  it('ends each stream well formed and closes, whatever its clients do', async () => {
    const t = await startServer();
    const { port } = new URL(t.url);
    const raw = (head: string, o: { read?: boolean; halfClose?: boolean } = {}) => new Promise<Conn>((resolve) => {
      let got = '';
      let closed = false;
      const socket = connect(Number(port), '127.0.0.1', () => {
        if (o.halfClose) socket.end(head); else socket.write(head);
        resolve({ socket, answer: () => parse(got, false, closed), received: () => got.length });
      });
      if (o.read !== false) socket.on('data', (d: Buffer) => { got += d.toString('latin1'); });
      socket.on('close', () => { closed = true; });
      socket.on('error', () => { /* the close follows */ });
    });
    const made: ServerResponse[] = [];
    t.c.app.server.on('request', (_req: IncomingMessage, res: ServerResponse) => made.push(res));
    const head = 'GET /api/runs/default/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n';
    const reading = await raw(head);
    await until(() => made.length === 1, 10_000, 'the reading stream\'s request');
    const slow = await raw(head, { read: false });
    await until(() => made.length === 2, 10_000, 'the slow stream\'s request');
    const idle = await raw('GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    await until(() => t.c.live.count === 2, 10_000, 'two streams open');
    await until(() => reading.answer().body.includes(STREAM_START), 10_000, 'the reading stream to start');
    // Publish until the slow one's bytes queue in the coordinator (the kernel's buffers full): its
    // stream cannot end until they are sent. The reader takes each batch before the next.
    let published = 0;
    while (made[1]!.writableLength === 0) {
      for (let k = 0; k < 16; k++) t.c.live.publish('default', 'report', { pad: 'y'.repeat(4096), n: published++ });
      await until(() => reading.answer().body.split('event: report\n').length - 1 === published, 10_000, `the reader to get ${published} events`);
      if (published > 100_000) throw new Error('the slow stream\'s socket never filled');
    }
    await t.close();
    // The slow client sees its end once it reads again.
    slow.socket.resume();
    await until(() => reading.answer().closed && slow.answer().closed && idle.answer().closed, 10_000,
      () => `every client to see its connection closed (reading ${reading.answer().closed}, slow ${slow.answer().closed}, idle ${idle.answer().closed})`);
    expect(reading.answer().complete).toBe(true);
    expectWellFormedStream(reading.answer().body, 'the stream ended by the close');
  });
});

describe('a dashboard that does not read, on a quiet run', () => {
  it('is dropped once the keep-alives it leaves unsent pass the bound (found beside the fuzz: they queued without end, the bound was checked only when an event was published)', async () => {
    const bound = 4096;
    const live = new LiveHub(bound, 1); // a keep-alive every millisecond
    // A response whose socket takes nothing more: every byte written stays queued (writableLength),
    // as on a real socket once the client's and the kernel's buffers are full (loopback's grow
    // with what is sent, so a real socket gets there only after megabytes).
    const closers: (() => void)[] = [];
    const res = {
      destroyed: false, writableLength: 0,
      writeHead: () => res, end: () => res,
      write: (chunk: string) => { res.writableLength += Buffer.byteLength(chunk); return false; },
      on: (e: string, f: () => void) => { if (e === 'close') closers.push(f); return res; },
      destroy: () => { res.destroyed = true; for (const f of closers) f(); return res; },
    };
    try {
      const admitted = live.admit('q', '198.18.0.1');
      if (typeof admitted !== 'function') throw new Error(admitted.error);
      admitted(res as unknown as ServerResponse, {});
      // Events took it near the bound; from here on the run is quiet.
      live.publish('q', 'report', { pad: 'z'.repeat(bound - 200) });
      expect(res.writableLength).toBeLessThanOrEqual(bound);
      let most = 0;
      await until(() => {
        most = Math.max(most, res.writableLength);
        return res.destroyed || res.writableLength > bound + 1024;
      }, 10_000, () => `the quiet stream to be dropped or pass its bound (unsent ${res.writableLength})`);
      expect(res.destroyed).toBe(true);
      expect(most).toBeLessThanOrEqual(bound + 64);
      expect(live.count).toBe(0);
      expect(live.stats.dropped).toBe(1);
    } finally {
      live.close();
    }
  });
});
