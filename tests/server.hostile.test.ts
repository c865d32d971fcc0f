// Hostile input: well over 1,000 generated (seeded) malformed, oversized, wrong-typed,
// out-of-order, replayed and spoofed messages over WebSocket and HTTP. Each must get a clear
// error (an error frame or a 4xx with a message) or a closed connection; afterwards the server
// still answers, a well-behaved pair of peers connected throughout got every message, nothing
// was written for the invalid input, and the heap is back within bounds.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'node:http';
import { connect } from 'node:net';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Rng } from '../src/model/rng.ts';
import { RawPeer, report, sleep, startServer, until, type TestServer } from './support/coordinator.ts';
import type { ServerMessage } from '../src/protocol/messages.ts';
import { PROTOCOL_VERSION } from '../src/protocol/messages.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

let s: TestServer;
const rng = new Rng(20240601, 3);
const pick = <T>(xs: readonly T[]): T => xs[rng.int(xs.length)]!;

beforeAll(async () => {
  // Generous rate limits so the generated cases measure validation, not the flood guard
  // (which has its own case below).
  s = await startServer({ hub: { limits: { maxMessageBytes: 64 * 1024, messagesPerSecond: 5000, burst: 2000, maxSignalDepth: 8 }, maxStrikes: 20 } });
  const r = await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id: 'side', dataset: 'moby-dick', preset: 'micro' } });
  expect(r.statusCode).toBe(201);
});
afterAll(async () => {
  await s?.close();
});

// ---------- generators ----------

const WRONG_FOR_NUMBER = ['1', '', [], {}, true, null, [1], { n: 1 }] as const;
const WRONG_FOR_STRING = [1, 0, -1, [], {}, true, null, ['p-0123456789abcdef']] as const;

type Case = { kind: string; frame: string | Buffer; preHello?: boolean };

function validReport(seq: number): Record<string, unknown> {
  return report(seq, { partner: 'p-0123456789abcdef', partnerDist: 0.5 });
}

/** One joined-peer case that is invalid by construction. */
function joinedCase(ids: { self: string; other: string; foreign: string }): Case {
  const templates: Record<string, Record<string, unknown>> = {
    signal: { t: 'signal', to: ids.other, data: { type: 'offer', sdp: 'v=0' } },
    ready: { t: 'ready', round: 3, waitMs: 100 },
    report: validReport(1_000_000 + rng.int(1000)),
    'state-fail': { t: 'state-fail', id: 'abc', reason: 'x' },
    hb: { t: 'hb' },
  };
  const numberFields: Record<string, string[]> = {
    ready: ['round', 'waitMs'], report: ['seq', 'time', 'step', 'round', 'tokensPerS', 'bytesIn', 'bytesOut'],
  };
  const stringFields: Record<string, string[]> = { signal: ['to'], 'state-fail': ['id', 'reason'] };
  const type = pick(Object.keys(templates));
  const m = structuredClone(templates[type]!);
  const r = rng.int(10);
  if (r === 0 && numberFields[type]) {
    m[pick(numberFields[type]!)] = pick(WRONG_FOR_NUMBER);
    return { kind: 'wrong-type', frame: JSON.stringify(m) };
  }
  if (r === 1 && stringFields[type]) {
    m[pick(stringFields[type]!)] = pick(WRONG_FOR_STRING);
    return { kind: 'wrong-type', frame: JSON.stringify(m) };
  }
  if (r === 2 && type !== 'hb') {
    const keys = Object.keys(m).filter((k) => k !== 't');
    delete m[pick(keys)];
    return { kind: 'missing-field', frame: JSON.stringify(m) };
  }
  if (r === 3) {
    // Spoofing: claim another identity or smuggle fields the server owns.
    const spoof = pick([['from', ids.other], ['peerId', ids.other], ['runId', 'side'], ['__proto__', { admin: true }], ['session', 'x.y']] as const);
    const raw = JSON.stringify(m);
    return { kind: 'spoofed', frame: raw.slice(0, -1) + `,${JSON.stringify(spoof[0])}:${JSON.stringify(spoof[1])}}` };
  }
  if (r === 4) {
    const out = pick([
      { t: 'ready', round: -1 - rng.int(100), waitMs: 10 },
      { t: 'ready', round: 1.5, waitMs: 10 },
      { t: 'ready', round: 1, waitMs: 0 },
      { t: 'ready', round: 1, waitMs: 1e9 },
      { ...validReport(1), trainLoss: -1 },
      { ...validReport(1), seq: -5 },
      { ...validReport(1), partner: 'p-XYZ' },
      { ...validReport(1), adapter: 'a'.repeat(201) },
      { ...validReport(1), partnerDist: 'far' },
    ]);
    return { kind: 'out-of-range', frame: JSON.stringify(out) };
  }
  if (r === 5) {
    // Signals to peers it may not reach: another run's peer, itself, nobody.
    const to = pick([ids.foreign, ids.self, `p-${rng.nextU32().toString(16).padStart(8, '0')}${rng.nextU32().toString(16).padStart(8, '0')}`]);
    return { kind: 'spoofed-target', frame: JSON.stringify({ t: 'signal', to, data: { x: rng.int(9) } }) };
  }
  if (r === 6) return { kind: 'replayed-hello', frame: JSON.stringify({ t: 'hello', v: PROTOCOL_VERSION }) };
  if (r === 7) {
    const tt = pick(['HELLO', 'report ', '', 'ack', 'welcome', 'admin', 123, null, ['hb']]);
    return { kind: 'bad-type', frame: JSON.stringify({ ...m, t: tt }) };
  }
  if (r === 8) {
    let deep: unknown = 1;
    for (let i = 0, n = 9 + rng.int(40); i < n; i++) deep = rng.int(2) ? [deep] : { d: deep };
    return { kind: 'deep', frame: JSON.stringify({ t: 'signal', to: ids.other, data: { deep } }) };
  }
  return malformed();
}

function malformed(): Case {
  const valid = JSON.stringify(validReport(5));
  const r = rng.int(7);
  if (r === 0) return { kind: 'truncated', frame: valid.slice(0, 1 + rng.int(valid.length - 2)) };
  if (r === 1) return { kind: 'garbage', frame: Array.from({ length: 1 + rng.int(200) }, () => String.fromCharCode(32 + rng.int(95))).join('') };
  if (r === 2) return { kind: 'not-object', frame: pick(['null', '1', '"hb"', '[]', '[{"t":"hb"}]', 'true', '1e999']) };
  if (r === 3) return { kind: 'trailing', frame: valid + pick(['x', '}', ',', ' {"t":"hb"}']) };
  if (r === 4) return { kind: 'binary', frame: Buffer.from(Array.from({ length: 1 + rng.int(64) }, () => rng.int(256))) };
  if (r === 5) return { kind: 'nested-array', frame: '['.repeat(5000 + rng.int(5000)) };
  return { kind: 'empty', frame: '' };
}

function oversized(): Case {
  const n = 64 * 1024 + 1 + rng.int(256 * 1024);
  return { kind: 'oversized', frame: JSON.stringify({ t: 'signal', to: 'p-0123456789abcdef', data: { sdp: 'x'.repeat(n) } }) };
}

function preHelloCase(): Case {
  const r = rng.int(5);
  if (r === 0) return { kind: 'before-hello', frame: JSON.stringify(validReport(1)), preHello: true };
  if (r === 1) return { kind: 'before-hello', frame: JSON.stringify({ t: pick(['hb', 'ready', 'signal', 'state-fail']) }), preHello: true };
  if (r === 2) return { kind: 'bad-hello', frame: JSON.stringify({ t: 'hello', v: pick([0, PROTOCOL_VERSION - 1, PROTOCOL_VERSION + 1, 99]) }), preHello: true };
  if (r === 3) return { kind: 'bad-hello', frame: JSON.stringify({ t: 'hello', v: PROTOCOL_VERSION, run: pick(['nope', 'x'.repeat(60), '../default', 'DEFAULT']) }), preHello: true };
  return { kind: 'forged-session', frame: JSON.stringify({ t: 'hello', v: PROTOCOL_VERSION, session: `${Buffer.from(JSON.stringify({ p: 'p-0123456789abcdef', r: 'default', i: 1 })).toString('base64url')}.${'A'.repeat(43)}` }), preHello: true };
}

// ---------- HTTP ----------

type HttpCase = { kind: string; method: string; path: string; headers?: Record<string, string>; body?: string | Buffer };

function httpCase(admin: string, session: string): HttpCase {
  const runIds = ['nope', 'x'.repeat(41), '..', '%2e%2e', 'DEFAULT', 'a%20b', '%00', 'd%c3%a9faut', "default'--", 'default;drop'];
  const r = rng.int(12);
  const badJson = pick(['{', '{"id":', '[]', 'null', '{"id":"x","dataset":"moby-dick","preset":"micro",}', '"str"', '{"a":1}{"b":2}']);
  const wrongBody = pick([
    { id: 1, dataset: 'moby-dick', preset: 'micro' }, { id: 'ok', dataset: 'moby-dick', preset: 'micro', train: { H: 'many' } },
    { id: 'ok', dataset: 'moby-dick', preset: 'micro', train: { lr: -1 } }, { id: 'ok', dataset: 'moby-dick' },
    { id: 'ok', dataset: 'moby-dick', preset: 'micro', seed: 1.5 }, { id: 'ok', dataset: 'moby-dick', preset: 'micro', extra: true },
    { id: 'ok', dataset: '../etc', preset: 'micro' }, { id: 'default', dataset: 'moby-dick', preset: 'micro' },
    { id: 'ok', dataset: 'moby-dick', preset: 'micro', train: { batch: 1e9 } }, { id: 'ok', dataset: 'moby-dick', preset: 'micro', pairWaitFrac: 0 },
  ]);
  const json = { 'content-type': 'application/json' };
  switch (r) {
    case 0: return { kind: 'admin-no-token', method: pick(['POST', 'PATCH']), path: pick(['/api/runs', '/api/runs/default']), headers: json, body: JSON.stringify({ id: 'ok', dataset: 'moby-dick', preset: 'micro' }) };
    case 1: return { kind: 'admin-wrong-token', method: 'POST', path: pick(['/api/runs', '/api/runs/default/stop', '/api/runs/default/checkpoints']), headers: { ...json, authorization: pick(['Bearer ' + admin.slice(1) + 'x', 'Bearer ', 'bearer ' + admin, 'Token ' + admin, 'Bearer ' + session]) }, body: '{}' };
    case 2: return { kind: 'bad-json', method: 'POST', path: '/api/runs', headers: { ...json, authorization: `Bearer ${admin}` }, body: badJson };
    case 3: return { kind: 'wrong-typed-body', method: pick(['POST']), path: '/api/runs', headers: { ...json, authorization: `Bearer ${admin}` }, body: JSON.stringify(wrongBody) };
    case 4: return { kind: 'wrong-patch', method: 'PATCH', path: '/api/runs/default', headers: { ...json, authorization: `Bearer ${admin}` }, body: JSON.stringify(pick([{ train: { H: 0 } }, { status: 'paused' }, { preset: 'base' }, { train: { seqLen: 4096 } }, { compression: 7 }, { name: '' }])) };
    case 5: return { kind: 'oversized-body', method: 'POST', path: '/api/runs', headers: { ...json, authorization: `Bearer ${admin}` }, body: JSON.stringify({ id: 'big', dataset: 'moby-dick', preset: 'micro', name: 'x'.repeat(70_000 + rng.int(100_000)) }) };
    case 6: return { kind: 'bad-path', method: 'GET', path: `/api/runs/${pick(runIds)}${pick(['', '/metrics', '/data', '/checkpoints', '/peers', '/events', '/data/val.bin', '/checkpoints/zz/file'])}` };
    case 7: return { kind: 'bad-query', method: 'GET', path: `/api/runs/default/metrics?${pick(['maxPoints=0', 'maxPoints=-3', 'maxPoints=1e9', 'from=abc', 'to=-1', 'peer=p-1', 'peer=%00', 'limit=5', 'from=9&to=1', 'maxPoints=1.5'])}` };
    case 8: return { kind: 'bad-file', method: 'GET', path: `/api/runs/default/data/${pick(['manifest.json', '..%2fmanifest.json', '.hidden', 'train.bin%00', 'x'.repeat(120), '%2e%2e%2fadmin-token', 'val.bin.tmp'])}` };
    case 9: return { kind: 'forged-upload', method: 'POST', path: `/api/peer/state/${pick(['0123456789abcdef01234567', 'zz', '../../x', 'a'.repeat(24)])}`, headers: { 'content-type': 'application/octet-stream', ...(rng.int(2) ? { authorization: pick(['Bearer ' + session.slice(0, -4) + 'AAAA', 'Bearer x.y', 'Bearer ' + session]) } : {}) }, body: Buffer.alloc(rng.int(4096)) };
    case 10: return { kind: 'wrong-method', method: pick(['PUT', 'DELETE', 'PATCH', 'OPTIONS']), path: pick(['/api/runs', '/health', '/api/runs/default/metrics', '/api/runs/default/data/val.bin']) };
    default: return { kind: 'bad-content-type', method: 'POST', path: '/api/runs', headers: { 'content-type': pick(['text/plain', 'application/xml', 'multipart/form-data; boundary=x', 'application/octet-stream']), authorization: `Bearer ${admin}` }, body: 'id=x' };
  }
}

function httpSend(url: string, c: HttpCase): Promise<{ status: number; body: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, method: c.method, path: c.path, headers: c.headers }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    if (c.body !== undefined) req.end(c.body); else req.end();
  });
}

function rawTcp(url: string, payload: string): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const sock = connect(Number(u.port), u.hostname);
    let got = '';
    sock.on('data', (d) => { got += d; });
    sock.on('close', () => resolve(got));
    sock.on('error', () => resolve(got));
    sock.write(payload);
    setTimeout(() => sock.destroy(), 1500);
  });
}

// ---------- the test ----------

/** A hostile connection that re-joins (same session, so no new peer rows) after each close. */
class Hostile {
  peer!: RawPeer;
  session: string | null = null;
  peerId = '';
  rejoins = 0;

  async ensure(): Promise<void> {
    if (this.peer && !this.peer.closed) return;
    const j = await RawPeer.join(s.wsUrl, this.session ? { session: this.session } : {});
    this.peer = j.peer;
    this.session = j.welcome.session;
    this.peerId = j.welcome.peerId;
    this.rejoins++;
  }
}

async function expectAnswer(p: RawPeer, before: number, what: string): Promise<'error' | 'closed'> {
  const answered = () => p.closed !== null || p.frames.slice(before).some((m) => m.t === 'error');
  expect(await p.waitUntil(answered, 5000), `an answer to ${what}; got ${JSON.stringify(p.frames.slice(before)).slice(0, 300)}`).toBe(true);
  const f = p.frames.slice(before).find((m) => m.t === 'error') as Extract<ServerMessage, { t: 'error' }> | undefined;
  if (f) {
    expect(f.message.length, what).toBeGreaterThan(5);
    return 'error';
  }
  expect(p.closed, `${what}: no error frame and not closed; got ${JSON.stringify(p.frames.slice(before))}`).not.toBeNull();
  return 'closed';
}

describe('hostile input', () => {
  it('answers 1,000+ generated bad messages with an error or a close, and nothing else changes', async () => {
    // Well-behaved peers, connected throughout.
    const good = await RawPeer.join(s.wsUrl);
    const mate = await RawPeer.join(s.wsUrl);
    const foreign = await RawPeer.join(s.wsUrl, { run: 'side' });
    const hb = setInterval(() => { for (const p of [good, mate, foreign]) p.peer.send({ t: 'hb' }); }, 1000);
    const hostile = new Hostile();
    await hostile.ensure();
    const flood = await RawPeer.join(s.wsUrl);
    await sleep(300);
    s.c.metrics.flush();
    const countRows = () => {
      const q = (sql: string) => (s.c.db.prepare(sql).get() as { n: number }).n;
      return {
        runs: q('SELECT COUNT(*) AS n FROM runs'), peers: q('SELECT COUNT(*) AS n FROM peers'),
        reports: q('SELECT COUNT(*) AS n FROM reports'), checkpoints: q('SELECT COUNT(*) AS n FROM checkpoints'),
        otherEvents: q(`SELECT COUNT(*) AS n FROM events WHERE kind NOT IN ('peer-joined', 'peer-left')`),
      };
    };
    const rowsBefore = countRows();
    const ckFiles = readdirSync(join(s.dataDir, 'checkpoints')).length;
    gc();
    const heapBefore = process.memoryUsage().heapUsed;

    const tally = new Map<string, number>();
    const count = (k: string) => tally.set(k, (tally.get(k) ?? 0) + 1);
    let goodSent = 0;
    let ws = 0, http = 0;

    for (let i = 0; i < 900; i++) {
      const r = rng.int(100);
      let c: Case;
      if (r < 4) c = oversized();
      else if (r < 12) c = preHelloCase();
      else c = joinedCase({ self: hostile.peerId, other: good.welcome.peerId, foreign: foreign.welcome.peerId });
      let p: RawPeer;
      if (c.preHello) {
        p = await RawPeer.connect(s.wsUrl);
      } else {
        await hostile.ensure();
        p = hostile.peer;
      }
      const before = p.frames.length;
      p.sendRaw(c.frame);
      const outcome = await expectAnswer(p, before, `${c.kind} ${String(c.frame).slice(0, 80)}`);
      if (c.kind === 'oversized') expect(p.closed?.code).toBe(1009);
      if (c.preHello) {
        expect(outcome === 'closed' || (await p.waitClosed(2000)) !== null, `${c.kind} must close`).toBe(true);
      }
      count(`ws:${c.kind}`);
      ws++;
      // The good peer keeps talking to its mate throughout.
      if (i % 10 === 0) {
        good.peer.send({ t: 'signal', to: mate.welcome.peerId, data: { n: goodSent++ } });
      }
    }

    // A flood beyond the rate limit is refused and then closed; the good peers are unaffected.
    for (let i = 0; i < 12_000 && !flood.peer.closed; i++) flood.peer.send({ t: 'hb' });
    await flood.peer.waitClosed(5000);
    expect(flood.peer.frames.some((m) => m.t === 'error' && m.code === 'rate-limited')).toBe(true);
    expect(flood.peer.closed?.code).toBe(1008);
    count('ws:flood');
    ws++;

    const session = hostile.session!;
    for (let i = 0; i < 320; i++) {
      const c = httpCase(s.c.adminToken, session);
      const res = await httpSend(s.url, c);
      expect(res.status, `${c.kind} ${c.method} ${c.path.slice(0, 80)} -> ${res.body.slice(0, 200)}`).toBeGreaterThanOrEqual(400);
      expect(res.status, `${c.kind} ${c.method} ${c.path.slice(0, 80)}`).toBeLessThan(500);
      if (res.body) expect(JSON.parse(res.body).error, c.kind).toBeTruthy();
      count(`http:${c.kind}`);
      http++;
    }
    for (const payload of ['GARBAGE\r\n\r\n', 'GET / HTTP/9.9\r\n\r\n', `GET /${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`, 'GET /health HTTP/1.1\r\nHost: x\r\nX: ' + 'y'.repeat(20_000) + '\r\n\r\n', '\x00\x01\x02\x03', 'POST /api/runs HTTP/1.1\r\nContent-Length: -1\r\n\r\n']) {
      const got = await rawTcp(s.url, payload);
      expect(got === '' || /^HTTP\/1\.1 4\d\d/.test(got), JSON.stringify(got.slice(0, 60))).toBe(true);
      count('tcp:malformed-http');
      http++;
    }

    // The good peers got every relayed signal and can still report.
    await until(() => mate.peer.frames.filter((m) => m.t === 'signal').length === goodSent, 5000, 'the good signals');
    const sig = mate.peer.frames.filter((m) => m.t === 'signal') as Extract<ServerMessage, { t: 'signal' }>[];
    expect(sig.map((m) => (m.data as { n: number }).n)).toEqual(Array.from({ length: goodSent }, (_, k) => k));
    expect(sig.every((m) => m.from === good.welcome.peerId)).toBe(true);
    expect(mate.peer.closed).toBeNull();
    expect(good.peer.closed).toBeNull();
    expect(good.peer.frames.filter((m) => m.t === 'error')).toEqual([]);

    expect(ws + http).toBeGreaterThanOrEqual(1000);
    const rowsAfter = countRows();
    expect(rowsAfter).toEqual(rowsBefore);
    expect(readdirSync(join(s.dataDir, 'checkpoints')).length).toBe(ckFiles);
    // Good traffic is still stored after all that.
    good.peer.send(report(1));
    await good.peer.next((m) => m.t === 'ack' && m.seq === 1);
    expect(countRows().reports).toBe(rowsBefore.reports + 1);
    expect((await fetch(`${s.url}/health`)).status).toBe(200);

    for (const p of [good, mate, foreign]) p.peer.close();
    hostile.peer.close();
    clearInterval(hb);
    await until(() => s.c.hub.connectionCount() === 0, 8000, 'all connections to be released');
    expect(s.c.metrics.pending).toBe(0);
    gc();
    await sleep(50);
    gc();
    const growth = process.memoryUsage().heapUsed - heapBefore;
    // eslint-disable-next-line no-console
    console.log(`hostile: ${ws} WebSocket + ${http} HTTP cases, heap growth ${(growth / 1e6).toFixed(1)} MB, hostile rejoins ${hostile.rejoins}`, Object.fromEntries(tally));
    expect(growth).toBeLessThan(32e6);
  });
});

describe('a frame that meets a failure on the coordinator', () => {
  it('a hello for a run whose dataset manifest is damaged is refused, naming the dataset; the coordinator goes on', async () => {
    const r = await startServer();
    try {
      // The operator's file is damaged while the coordinator runs (an edit, a truncated restore).
      const manifest = join(r.dataDir, 'datasets', 'moby-dick', 'manifest.json');
      const whole = readFileSync(manifest, 'utf8');
      writeFileSync(manifest, whole.slice(0, 100));
      const peer = await RawPeer.connect(r.wsUrl);
      peer.send({ t: 'hello', v: PROTOCOL_VERSION });
      expect(await peer.next((m) => m.t === 'error')).toEqual({
        t: 'error', code: 'internal', fatal: true,
        message: 'dataset "moby-dick" of run default is damaged on the coordinator; its operator must prepare it again',
      });
      expect(await peer.waitUntil(() => peer.closed !== null)).toBe(true);
      // Prepared again: the next hello joins.
      writeFileSync(manifest, whole);
      (await RawPeer.join(r.wsUrl)).peer.close();
    } finally {
      await r.close();
    }
  });

  it('a frame handler that throws closes that connection only, with an error frame', async () => {
    const r = await startServer();
    try {
      const hub = r.c.hub as unknown as { onHello: (...a: unknown[]) => void };
      const onHello = hub.onHello;
      const bystander = await RawPeer.join(r.wsUrl);
      hub.onHello = () => { throw new TypeError('a bug in a handler'); };
      const peer = await RawPeer.connect(r.wsUrl);
      peer.send({ t: 'hello', v: PROTOCOL_VERSION });
      expect(await peer.next((m) => m.t === 'error')).toEqual({ t: 'error', code: 'internal', fatal: true, message: 'the coordinator failed to handle this frame; reconnect later' });
      expect(await peer.waitUntil(() => peer.closed !== null)).toBe(true);
      hub.onHello = onHello;
      (await RawPeer.join(r.wsUrl)).peer.close();
      bystander.peer.send(report(1));
      await bystander.peer.next((m) => m.t === 'ack' && m.seq === 1);
      bystander.peer.close();
    } finally {
      await r.close();
    }
  });
});
