// Seeded fuzz of the forwarding headers behind `--trust-proxy` (tests/server.http-fuzz.test.ts
// does the direct case): X-Forwarded-For lists of many hops, IPv6 with zone ids, brackets and
// ports, IPv4-mapped IPv6, private and loopback values, garbage, empty entries, repeated headers
// and unicode (as its UTF-8 bytes, which is what arrives), beside mutated X-Forwarded-Proto,
// X-Forwarded-Host, X-Real-IP and Forwarded, on the public reads, the WebSocket hello and the
// consent routes. Every answer is a 2xx or a named 4xx and no line is logged as an error; every
// per-address budget is keyed by addressKey of the entry the proxy wrote (the rightmost one it
// does not trust): an IPv4 address, an IPv6 /64, or INVALID_ADDRESS for all garbage together,
// so no garbage spelling is a budget of its own; and an honest request still succeeds after.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { isIP } from 'node:net';
import { Agent, request } from 'node:http';
import { WebSocket } from 'ws';
import type { LightMyRequestResponse } from 'fastify';
import { addressKey, INVALID_ADDRESS } from '../server/address-budget.ts';
import { PROTOCOL_VERSION } from '../src/protocol/messages.ts';
import { startServer, type TestServer } from './support/coordinator.ts';
import { Rand } from './support/fuzz.ts';

const PROXY = '127.0.0.1';
const SITE = 'https://proxied.example.org';
let s: TestServer;
const errorLines: string[] = [];
/** Every key a per-address budget was asked about, in order. */
const keys: string[] = [];

/** Records argument `at` of `obj[method]` (a budget's key) on every call. */
function tap(obj: object, method: string, at = 0): void {
  const o = obj as Record<string, (...a: unknown[]) => unknown>;
  const original = o[method]!.bind(obj);
  o[method] = (...a: unknown[]) => { keys.push(String(a[at])); return original(...a); };
}

beforeAll(async () => {
  const logStream = new Writable({ write(chunk, _enc, done) { errorLines.push(String(chunk)); done(); } });
  const huge = 1e12;
  s = await startServer({
    trustProxy: [PROXY], defaultRun: true,
    reads: { perAddressMsPerS: huge, perAddressBurstMs: huge, totalMsPerS: huge, totalBurstMs: huge },
  }, { logLevel: 'error', logStream });
  const patched = await s.c.app.inject({ method: 'PATCH', url: '/api/runs/default', headers: s.admin, payload: { embedSites: [SITE] } });
  expect(patched.statusCode).toBe(200);
  // The budgets' own maps, white-box: what each is keyed by is the property under test.
  const priv = <T>(o: object, k: string) => (o as Record<string, T>)[k]!;
  tap(priv(s.c.reads, 'perAddress'), 'waitMs');
  tap(priv(s.c.downloads, 'perAddress'), 'waitMs');
  tap(priv(s.c.hub, 'perAddress'), 'acquire');
  tap(priv(s.c.hub, 'hellos'), 'take');
  tap(s.c.live, 'admit', 1); // (run, address)
  tap(s.c.consents, 'open', 3); // (nonce, run, site, address)
});
afterAll(async () => { await s?.close(); });
afterEach(() => { expect(errorLines).toEqual([]); });

/** A well-formed budget key: a canonical IPv4 address, an IPv6 /64 as addressKey writes it, or INVALID_ADDRESS. */
function wellFormed(key: string): boolean {
  if (key === INVALID_ADDRESS) return true;
  if (isIP(key) === 4) return key.split('.').every((p) => String(Number(p)) === p);
  return /^(?:[1-9a-f][0-9a-f]{0,3}|0):(?:[1-9a-f][0-9a-f]{0,3}|0):(?:[1-9a-f][0-9a-f]{0,3}|0):(?:[1-9a-f][0-9a-f]{0,3}|0)::\/64$/.test(key);
}

// ---------- forwarding headers ----------

/** Client addresses a proxy could write, in the spellings proxies use, none of them the trusted proxy itself. */
const ADDRESSES = [
  '198.51.100.7', '198.51.100.7:50001', '[198.51.100.7]:443', '::ffff:198.51.100.7', '::FFFF:c633:6407', '0:0:0:0:0:ffff:c633:6407',
  '[::ffff:198.51.100.7]:8080', '2001:db8:5:6::1', '[2001:db8:5:6::2]:443', '2001:DB8:5:6:0:0:0:3', '[2001:0db8:0005:0006::4]',
  'fe80::1%eth0', 'fe80::2%25en0', '[fe80::3%eth0]:9000', 'fe80::4%' + 'z'.repeat(200),
  '198.18.0.1', '198.19.255.254', '127.0.0.2', '127.255.255.254', '::1', '[::1]:80', '0.0.0.0', '255.255.255.255', '::', '64:ff9b::203.0.113.5',
];

/** The honest clients each part ends with. */
const HONEST = ['203.0.113.9', '203.0.113.10', '203.0.113.11'];

/** What is no address, though some look like one. */
const GARBAGE = [
  '', ' ', 'unknown', '_hidden', 'not-an-address', '1.2.3', '1.2.3.4.5', '01.2.3.4', '256.1.1.1', '1.2.3.4%eth0', '1::2::3', '[::1', '::1]', '[[::1]]',
  '[2001:db8::1]x', '::ffff:1.2.3.4:80', '1.2.3.4:port', '1.2.3.4:', ':80', '[]', '[]:80', 'localhost', 'proxy.internal', '"1.2.3.4"', "'::1'",
  'for=1.2.3.4', '１.２.３.４', 'é', '\u{1F600}', '\u202e1.2.3.4', 'null', 'undefined', '__proto__', 'constructor', '-1', '0x7f000002', '2130706434', '127.1',
  'a'.repeat(300), '1.2.3.4;x', 'fe80::1%', '%eth0',
];

/** The bytes of `text` in UTF-8 as a latin1 string: what a header of unicode text is on the wire. */
const wire = (text: string): string => Buffer.from(text, 'utf8').toString('latin1');

/**
 * A garbage entry (as wire bytes): one of GARBAGE, or random printable bytes (no comma: that
 * splits the list). None is a spelling of the proxy's own address that proxy-addr would trust
 * and skip ('0x7f000001', '2130706433' are 127.0.0.1 to it); a proxy never writes those for a client.
 */
function garbage(r: Rand): string {
  if (r.chance(0.7)) return wire(r.pick(GARBAGE));
  let out = '';
  for (let n = 1 + r.int(40); n > 0; n--) {
    const c = r.chance(0.8) ? 0x21 + r.int(94) : 0xa0 + r.int(0x60);
    out += c === 0x2c ? ';' : String.fromCharCode(c);
  }
  return wire(out);
}

/** An X-Forwarded-For entry: an address, garbage, or the proxy itself (trusted, skipped over). */
function entry(r: Rand): string {
  return r.chance(0.55) ? r.pick(ADDRESSES) : r.chance(0.8) ? garbage(r) : PROXY;
}

interface Forwarding { headers: Record<string, string | string[]>; joined: Record<string, string> }

/**
 * Forwarding headers: a forged list of many hops or none, then the entry the proxy wrote (last:
 * never the proxy's own address, which it would not write for a client), spaced oddly, now and
 * then split over repeated X-Forwarded-For lines; and other forwarding headers the coordinator must
 * not believe. `joined` is what Node makes of repeated lines (one value, joined by ", ").
 */
function forwarding(r: Rand): Forwarding {
  const hops = r.chance(0.05) ? 200 + r.int(600) : r.int(6);
  const forged = Array.from({ length: hops }, () => entry(r));
  const last = r.chance(0.6) ? r.pick(ADDRESSES) : garbage(r);
  const all = [...forged, last];
  const sep = () => r.pick([',', ', ', ' ,', ' , ', ',  ']);
  let xff: string | string[];
  if (r.chance(0.15) && all.length > 1) {
    const cut = 1 + r.int(all.length - 1);
    xff = [all.slice(0, cut).join(', '), all.slice(cut).join(', ')];
  } else {
    xff = all.map((e, i) => (i === 0 ? e : sep() + e)).join('');
  }
  const headers: Record<string, string | string[]> = { 'x-forwarded-for': xff };
  const pick = () => (r.chance(0.5) ? r.pick(ADDRESSES) : garbage(r));
  if (r.chance(0.5)) headers['x-real-ip'] = pick();
  if (r.chance(0.5)) headers['forwarded'] = r.pick([`for=${pick()}`, `for="[${pick()}]";proto=https`, `for=${pick()}, for=${pick()};by=${pick()}`, pick()]);
  if (r.chance(0.5)) headers['x-forwarded-proto'] = r.pick(['https', 'http', 'HTTPS', 'https, http', 'ws', '', 'javascript', wire('é'), 'h'.repeat(500), garbage(r)]);
  if (r.chance(0.3)) headers['x-forwarded-host'] = r.pick(['example.org', '[::1]:80', '[::1', ':', '', 'a'.repeat(300), garbage(r)]);
  if (r.chance(0.2)) headers['x-forwarded-port'] = r.pick(['443', '-1', '99999', 'x']);
  const joined: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) joined[k] = Array.isArray(v) ? v.join(', ') : v;
  return { headers, joined };
}

/** Spellings of the trusted proxy's address that proxy-addr (ipaddr.js) reads as it, and skips. */
const PROXY_SPELLINGS = new Set([PROXY, '127.1', '0x7f000001', '2130706433', '::ffff:127.0.0.1']);

/**
 * The key every budget must use for an X-Forwarded-For list from the proxy: addressKey of its
 * rightmost entry that is neither empty nor the proxy itself (the leftmost when all are, the
 * socket's own when there is none), and a well-formed key whatever the entry was.
 */
function expectedKey(xff: string): string {
  const entries = xff.split(',').map((e) => e.trim()).filter((e) => e !== '');
  // All of them the proxy: proxy-addr answers the leftmost, the hop furthest away.
  const client = [...entries].reverse().find((e) => !PROXY_SPELLINGS.has(e)) ?? entries[0] ?? PROXY;
  const key = addressKey(client);
  expect(wellFormed(key), `addressKey(${JSON.stringify(client.slice(0, 80))}) = ${key}`).toBe(true);
  return key;
}

/** What every answer must be: below 500, and a refusal is JSON naming the problem in a sentence. */
function expectAnswered(res: LightMyRequestResponse, what: string): void {
  if (res.statusCode >= 500) throw new Error(`${what}: ${res.statusCode} ${res.body.slice(0, 300)}`);
  if (res.statusCode >= 400 && res.statusCode !== 426) {
    const body = res.json() as { error?: unknown };
    if (typeof body.error !== 'string' || body.error.length === 0) throw new Error(`${what}: ${res.statusCode} without an error sentence: ${res.body.slice(0, 200)}`);
  }
}

/** The keys the budgets were asked about since `from`: each must be `want`. */
function expectKeyed(from: number, want: string, what: string): void {
  const seen = new Set(keys.slice(from));
  for (const k of seen) expect(k, what).toBe(want);
}

/** Every key a budget saw, of all parts so far: bounded by the addresses the fuzz wrote, garbage all one. */
function expectBounded(): void {
  const allowed = new Set([...ADDRESSES, ...HONEST, PROXY].map(addressKey).concat(INVALID_ADDRESS));
  const stray = [...new Set(keys)].filter((k) => !allowed.has(k));
  expect(stray).toEqual([]);
}

const READS = ['/api/runs', '/api/runs/default', '/api/runs/default/metrics', '/api/runs/default/events', '/api/runs/default/peers',
  '/api/runs/default/connectivity', '/api/runs/default/checkpoints', '/api/runs/default/data', '/api/runs/default/data/val.bin', '/health', '/api/ws'];

describe('fuzz: forwarding headers behind a trusted proxy', () => {
  it('the public reads: a 2xx or a named 4xx, each charged to the key of the address the proxy wrote', async () => {
    const r = new Rand(0x9f0d);
    let charged = 0;
    for (let i = 0; i < 600; i++) {
      const f = forwarding(r);
      const url = r.pick(READS);
      const from = keys.length;
      const res = await s.c.app.inject({ method: 'GET', url, headers: f.joined });
      const what = `GET ${url} x-forwarded-for: ${f.joined['x-forwarded-for']!.slice(-120)} (iteration ${i})`;
      expectAnswered(res, what);
      expectKeyed(from, expectedKey(f.joined['x-forwarded-for']!), what);
      if (keys.length > from) charged++;
    }
    // The reads that charge a budget are most of them (/health, /api/runs and /api/ws charge none).
    expect(charged).toBeGreaterThan(300);
    expectBounded();
    const honest = await s.c.app.inject({ method: 'GET', url: '/api/runs/default/metrics', headers: { 'x-forwarded-for': HONEST[0]! } });
    expect(honest.statusCode).toBe(200);
  });

  it('the consent routes: a 201 or a named refusal, and garbage shares one place count', async () => {
    const r = new Rand(0xc045);
    for (let i = 0; i < 150; i++) {
      const f = forwarding(r);
      const nonce = String(i).padStart(3, '0').repeat(29).slice(0, 86);
      const from = keys.length;
      const opened = await s.c.app.inject({ method: 'POST', url: '/api/consent', headers: f.joined, payload: { nonce, run: 'default', site: SITE } });
      const what = `POST /api/consent x-forwarded-for: ${f.joined['x-forwarded-for']!.slice(-120)} (iteration ${i})`;
      expectAnswered(opened, what);
      expect([201, 429], what).toContain(opened.statusCode);
      expectKeyed(from, expectedKey(f.joined['x-forwarded-for']!), what);
      for (const side of ['claim', 'watch', 'leave', 'release'] as const) {
        const res = await s.c.app.inject({ method: 'POST', url: `/api/consent/${nonce}/${side}`, headers: f.joined });
        expectAnswered(res, `${side}: ${what}`);
      }
      expectAnswered(await s.c.app.inject({ method: 'GET', url: `/api/consent/${nonce}`, headers: f.joined }), `GET: ${what}`);
    }
    expectBounded();
  });

  it('the WebSocket hello: a welcome or a named refusal, the connection counted under the proxy-written address', async () => {
    const r = new Rand(0x3e11);
    for (let i = 0; i < 60; i++) {
      const f = forwarding(r);
      const from = keys.length;
      const what = `hello with x-forwarded-for: ${f.joined['x-forwarded-for']!.slice(-120)} (iteration ${i})`;
      // Real sockets here: repeated X-Forwarded-For lines reach Node's parser as lines of their own.
      const got = await hello(f.headers);
      // 431: headers past Node's 16 KB (a list of hundreds of hops), refused before any route.
      expect(['welcome', 'rate-limited', 'error Unexpected server response: 431'], what).toContain(got);
      expectKeyed(from, expectedKey(f.joined['x-forwarded-for']!), what);
    }
    expectBounded();
    expect(await hello({ 'x-forwarded-for': HONEST[1]! })).toBe('welcome');
  });

  it('one socket sending 1,000 garbage X-Forwarded-For values is one client: one key, no budget per value', async () => {
    const r = new Rand(0x6a7b);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const from = keys.length;
    const seen = new Set<string>();
    try {
      for (let i = 0; i < 1000; i++) {
        let g = garbage(r);
        while (seen.has(g)) g += String.fromCharCode(0x41 + r.int(26));
        seen.add(g);
        const at = keys.length;
        const status = await get(agent, '/api/runs/default/events', { 'x-forwarded-for': g });
        if (status >= 500) throw new Error(`${status} for x-forwarded-for ${JSON.stringify(g)} (iteration ${i})`);
        expectKeyed(at, expectedKey(g), `x-forwarded-for ${JSON.stringify(g)} (iteration ${i})`);
      }
    } finally {
      agent.destroy();
    }
    expect(seen.size).toBe(1000);
    expect(keys.length - from).toBeGreaterThanOrEqual(1000);
    // Garbage is INVALID_ADDRESS, but for 'fe80::1%' (an empty zone: the link-local /64) and an
    // empty list (no client named: the proxy's own address): three keys for 1,000 values.
    expect(new Set(keys.slice(from))).toEqual(new Set([INVALID_ADDRESS, addressKey('fe80::1'), PROXY]));
    // The consent places of all garbage together are one address's (4 by default, some taken by
    // the part before): of ten garbage values, at most four open a request.
    let opened = 0;
    for (let i = 0; i < 10; i++) {
      const res = await s.c.app.inject({ method: 'POST', url: '/api/consent', headers: { 'x-forwarded-for': `garbage-${i}` }, payload: { nonce: `g${i}`.repeat(43), run: 'default', site: SITE } });
      expect([201, 429], res.body).toContain(res.statusCode);
      if (res.statusCode === 201) opened++;
    }
    expect(opened).toBeLessThanOrEqual(s.c.consents.limits.perAddress);
    const honest = await s.c.app.inject({ method: 'POST', url: '/api/consent', headers: { 'x-forwarded-for': HONEST[2]! }, payload: { nonce: 'h'.repeat(86), run: 'default', site: SITE } });
    expect(honest.statusCode, honest.body).toBe(201);
  });
});

/** A GET through `agent` (one kept-alive socket); resolves with its status. */
function get(agent: Agent, path: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(`${s.url}${path}`, { agent, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    req.on('error', reject);
    req.end();
  });
}

/** A WebSocket from the proxy's address carrying `headers`; sends a hello, resolves with the first frame's type or code, then closes. */
function hello(headers: Record<string, string | string[]>): Promise<string> {
  return new Promise((resolve) => {
    // ws hands the headers to Node's http.request, which sends an array as repeated lines.
    const ws = new WebSocket(s.wsUrl, { headers: headers as Record<string, string> });
    let done = false;
    const finish = (what: string) => { if (!done) { done = true; ws.close(); resolve(what); } };
    ws.on('open', () => ws.send(JSON.stringify({ t: 'hello', v: PROTOCOL_VERSION, run: 'default' })));
    ws.on('message', (d) => {
      const m = JSON.parse(String(d)) as { t: string; code?: string };
      finish(m.t === 'error' ? m.code ?? 'error' : m.t);
    });
    ws.on('close', (code) => finish(`closed ${code}`));
    ws.on('error', (e) => finish(`error ${e.message}`));
  });
}
