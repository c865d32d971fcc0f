// Per-client budgets: one client (one address, or one IPv6 /64) cannot take the slots others
// need. 1,005 dashboard streams from one address leave a researcher elsewhere able to connect;
// WebSockets per address are capped; hellos per address are rate limited.
import { afterAll, describe, expect, it } from 'vitest';
import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import { WebSocket } from 'ws';
import { DEFAULT_LIVE_LIMITS, LiveHub } from '../server/live.ts';
import { INVALID_ADDRESS, OpenCounter, RateBudget, addressKey, siteKey } from '../server/address-budget.ts';
import { startServer, until, type TestServer } from './support/coordinator.ts';
import { FakeClock } from './support/fake-clock.ts';
import { floodStreams, openStream as open } from './support/attacks.ts';
import { PROTOCOL_VERSION } from '../src/protocol/messages.ts';
import { connectionCapsOption } from '../src/commands/serve.ts';
import { DEFAULT_HUB_OPTIONS } from '../server/peers.ts';

const servers: TestServer[] = [];
afterAll(async () => { for (const s of servers) await s.close(); });

/** A WebSocket from `localAddress` (carrying `xff` when given); resolves with the first frame, or the close. */
function wsFrom(url: string, localAddress: string, hello: boolean, xff?: string): Promise<{ ws: WebSocket; first: Record<string, unknown> | null; closed: number | null }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { localAddress, ...(xff ? { headers: { 'x-forwarded-for': xff } } : {}) });
    let done = false;
    const finish = (first: Record<string, unknown> | null, closed: number | null) => { if (!done) { done = true; resolve({ ws, first, closed }); } };
    ws.on('open', () => { if (hello) ws.send(JSON.stringify({ t: 'hello', v: PROTOCOL_VERSION })); else setTimeout(() => finish(null, null), 50); });
    ws.on('message', (d) => finish(JSON.parse(String(d)), null));
    ws.on('close', (code) => finish(null, code));
    ws.on('error', () => finish(null, -1));
  });
}

describe('address keys', () => {
  it('groups IPv6 by /64 and unwraps IPv4-mapped addresses', () => {
    expect(addressKey('203.0.113.7')).toBe('203.0.113.7');
    expect(addressKey('::ffff:203.0.113.7')).toBe('203.0.113.7');
    expect(addressKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8:1:2:ffff:ffff:ffff:ffff')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
  });

  it('canonicalises what a trusted proxy may write: one client has one key, anything unparseable shares one', () => {
    // A source port (Azure Application Gateway writes "ip:port") or brackets change nothing.
    expect(addressKey('198.51.100.7:50001')).toBe('198.51.100.7');
    expect(addressKey('198.51.100.7:50002')).toBe('198.51.100.7');
    expect(addressKey('[2001:db8::1]')).toBe('2001:db8:0:0::/64');
    expect(addressKey('[2001:db8::2]:443')).toBe('2001:db8:0:0::/64');
    expect(addressKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(addressKey('2001:DB8:0001:0002:0:0:0:1')).toBe('2001:db8:1:2::/64');
    // IPv4-mapped (::ffff:0:0/96) in any notation is its IPv4 address: two hosts, two keys, neither ::1's.
    expect(addressKey('::ffff:c633:6407')).toBe('198.51.100.7');
    expect(addressKey('::ffff:cb00:7101')).toBe('203.0.113.1');
    expect(addressKey('0000:0000:0000:0000:0000:FFFF:C633:6407')).toBe('198.51.100.7');
    expect(addressKey('0:0:0:0:0:ffff:198.51.100.7')).toBe('198.51.100.7');
    expect(addressKey('[::ffff:198.51.100.7]:8080')).toBe('198.51.100.7');
    // Not an address: one shared key, never the string itself.
    for (const bad of ['', 'unknown', '198.51.100.7:port', '01.2.3.4', '2001:db8::1::2', '[198.51.100.7', 'x'.repeat(300)]) {
      expect(addressKey(bad), bad).toBe(INVALID_ADDRESS);
    }
    // A key is its own key: the hub keeps keys and hands them on (turnUser keys them again).
    for (const a of ['198.51.100.7:50001', '[2001:db8::1]', '::ffff:c633:6407', '2001:db8:1:2:aaaa::1', '::1', 'unknown']) {
      expect(addressKey(addressKey(a)), a).toBe(addressKey(a));
    }
    expect(addressKey('2001:db8:0:0::/63')).toBe(INVALID_ADDRESS);
  });

  it('puts an IPv6 /64 in its /48 (its site); IPv4 and what is no address have none', () => {
    expect(siteKey(addressKey('2001:db8:1:2:aaaa::1'))).toBe('2001:db8:1::/48');
    expect(siteKey(addressKey('2001:db8:1:ffff::1'))).toBe('2001:db8:1::/48');
    expect(siteKey(addressKey('2001:db8:2:2::1'))).toBe('2001:db8:2::/48');
    expect(siteKey(addressKey('::1'))).toBe('0:0:0::/48');
    expect(siteKey(addressKey('203.0.113.7'))).toBeNull();
    expect(siteKey(addressKey('::ffff:203.0.113.7'))).toBeNull();
    expect(siteKey(INVALID_ADDRESS)).toBeNull();
  });

  it('counts open things per key and keeps a bounded number of rate buckets', () => {
    const c = new OpenCounter(2);
    const a = c.acquire('x')!, b = c.acquire('x')!;
    expect(c.acquire('x')).toBeNull();
    a(); a(); // releasing twice frees one slot only
    expect(c.count('x')).toBe(1);
    b();
    expect(c.keys).toBe(0);
    const clock = new FakeClock();
    const r = new RateBudget(60, 2, clock.now, 100);
    expect([r.take('k'), r.take('k'), r.take('k')]).toEqual([true, true, false]);
    clock.advance(1000); // one token a second
    expect(r.take('k')).toBe(true);
    for (let i = 0; i < 1000; i++) r.take(`a${i}`);
    expect(r.keys).toBe(100);
  });
});

describe('dashboard streams', () => {
  it('after 1,005 streams from one address, a researcher elsewhere still connects', async () => {
    const s = await startServer();
    servers.push(s);
    const url = `${s.url}/api/runs/default/stream`;
    const { held, status } = await floodStreams(url, 1005);
    try {
      expect(status).toEqual({ 200: DEFAULT_LIVE_LIMITS.perAddress, 429: 1005 - DEFAULT_LIVE_LIMITS.perAddress });
      const researcher = await open(url, '127.0.0.2');
      expect(researcher.res.statusCode).toBe(200);
      expect(researcher.res.headers['content-type']).toMatch(/text\/event-stream/);
      researcher.req.destroy();
      // Closing a stream frees its slot.
      held.pop()!.destroy();
      await until(async () => {
        const again = await open(url);
        again.req.destroy();
        return again.res.statusCode === 200;
      }, 5000, 'a freed stream slot');
    } finally {
      for (const r of held) r.destroy();
    }
  });

  it('takes no stream place for a client gone before its stream starts, whose socket will not close again', () => {
    const live = new LiveHub(undefined, undefined, { ...DEFAULT_LIVE_LIMITS, perAddress: 1 });
    const admitted = live.admit('default', '198.18.0.7');
    expect(typeof admitted).toBe('function');
    // The response is already destroyed: writing to it or waiting for its close would leak the place.
    (admitted as (res: ServerResponse) => void)({ destroyed: true } as ServerResponse);
    expect(live.size).toBe(0);
    expect(typeof live.admit('default', '198.18.0.7')).toBe('function');
    live.close();
  });

  it('caps streams per run', async () => {
    const s = await startServer({ live: { perRun: 3 } });
    servers.push(s);
    const url = `${s.url}/api/runs/default/stream`;
    const codes: number[] = [];
    const held: ClientRequest[] = [];
    for (let i = 2; i <= 5; i++) {
      const { res, req } = await open(url, `127.0.0.${i}`);
      codes.push(res.statusCode!);
      held.push(req);
    }
    for (const r of held) r.destroy();
    expect(codes).toEqual([200, 200, 200, 503]);
  });

  it('shares a full run\'s streams among addresses: the one holding the most gives up its newest to one holding at least two fewer', async () => {
    // 63 addresses holding 8 streams each took all 500 of a run's, and every other dashboard,
    // the researcher's too, got 503 for as long as they kept them open.
    const s = await startServer({ live: { perRun: 6, perAddress: 4 } });
    servers.push(s);
    const url = `${s.url}/api/runs/default/stream`;
    const held: { res: IncomingMessage; req: ClientRequest; ended: boolean }[] = [];
    const stream = async (from: string) => {
      const { res, req } = await open(url, from);
      const h = { res, req, ended: false };
      res.on('close', () => { h.ended = true; });
      res.resume();
      held.push(h);
      return h;
    };
    try {
      const crowd: Awaited<ReturnType<typeof stream>>[] = [];
      for (let i = 0; i < 4; i++) crowd.push(await stream('127.0.0.2'));
      for (let i = 0; i < 2; i++) expect((await stream('127.0.0.3')).res.statusCode).toBe(200);
      expect(crowd.map((h) => h.res.statusCode)).toEqual([200, 200, 200, 200]);
      expect(s.c.live.size).toBe(6);
      // The run is full. A newcomer holding none takes the crowd's newest stream.
      expect((await stream('127.0.0.4')).res.statusCode).toBe(200);
      await until(() => crowd[3]!.ended, 5000, "the crowd's newest stream to end");
      expect(crowd.slice(0, 3).map((h) => h.ended)).toEqual([false, false, false]);
      // 127.0.0.3 holds 2 to the crowd's 3: taking one would only swap them.
      expect((await stream('127.0.0.3')).res.statusCode).toBe(503);
      // The newcomer holds 1 to the crowd's 3: it takes the crowd's newest again.
      expect((await stream('127.0.0.4')).res.statusCode).toBe(200);
      await until(() => crowd[2]!.ended, 5000, "the crowd's next newest stream to end");
      expect(s.c.live.size).toBe(6);
      expect(s.c.live.stats.displaced).toBe(2);
      // (Addresses of one stream each on a full run: the next waits, 'caps streams per run'.)
    } finally {
      for (const h of held) h.req.destroy();
    }
  });
});

describe('volunteer connections', () => {
  it('caps WebSockets per address; others still connect and join', async () => {
    const s = await startServer({ hub: { maxConnectionsPerAddress: 5 } });
    servers.push(s);
    const socks: WebSocket[] = [];
    try {
      for (let i = 0; i < 5; i++) {
        const r = await wsFrom(s.wsUrl, '127.0.0.1', false);
        expect(r.closed).toBeNull();
        socks.push(r.ws);
      }
      const sixth = await wsFrom(s.wsUrl, '127.0.0.1', true);
      expect(sixth.first ?? sixth.closed).toMatchObject({ t: 'error', code: 'rate-limited' });
      const other = await wsFrom(s.wsUrl, '127.0.0.3', true);
      expect(other.first).toMatchObject({ t: 'welcome' });
      other.ws.close();
      // A closed connection frees its slot.
      socks.pop()!.close();
      await until(async () => {
        const r = await wsFrom(s.wsUrl, '127.0.0.1', true);
        r.ws.close();
        return r.first?.t === 'welcome';
      }, 5000, 'a freed connection slot');
    } finally {
      for (const w of socks) w.close();
    }
  });

  it('rate-limits hellos per address', async () => {
    const clock = new FakeClock();
    const s = await startServer({ hub: { hellosPerMinute: 6, helloBurst: 3 } }, { clock });
    servers.push(s);
    const firsts: unknown[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await wsFrom(s.wsUrl, '127.0.0.1', true);
      firsts.push((r.first as { t: string; code?: string } | null)?.code ?? r.first?.t);
      r.ws.close();
    }
    expect(firsts).toEqual(['welcome', 'welcome', 'welcome', 'rate-limited']);
    expect((await wsFrom(s.wsUrl, '127.0.0.4', true)).first).toMatchObject({ t: 'welcome' });
    clock.advance(10_000); // one hello per 10 s
    expect((await wsFrom(s.wsUrl, '127.0.0.1', true)).first).toMatchObject({ t: 'welcome' });
  });

  it('murmur serve --sockets and --hellos: the defaults are the hub\'s, and anything else is refused, naming the flag', () => {
    const defaults = connectionCapsOption('64,256', '60,240');
    for (const [k, v] of Object.entries(defaults)) expect(DEFAULT_HUB_OPTIONS[k as keyof typeof defaults], k).toBe(v);
    expect(connectionCapsOption('1000,4000', '600,2400')).toEqual({
      maxConnectionsPerAddress: 1000, maxConnectionsPerSite: 4000, hellosPerMinute: 600, helloBurst: 1200, siteHellosPerMinute: 2400, siteHelloBurst: 4800,
    });
    for (const bad of ['64', '0,256', '300,256', '64,x', '64,256,1', '1.5,256', '']) {
      expect(() => connectionCapsOption(bad, '60,240'), bad).toThrow(`--sockets takes "<per address>,<per IPv6 /48>", WebSockets open at once (1 to 100000 each, the first no more than the second; default 64,256), got "${bad}"`);
      expect(() => connectionCapsOption('64,256', bad), bad).toThrow(`--hellos takes "<per address>,<per IPv6 /48>" a minute (1 to 100000 each, the first no more than the second; default 60,240), got "${bad}"`);
    }
  });

  it('caps WebSockets per IPv6 /48 as well as per /64: a site is not 65,536 clients', async () => {
    // Behind a trusted proxy (127.0.0.1) that writes the client's address; the caps as
    // `murmur serve --sockets 3,3` sets them.
    const s = await startServer({ hub: connectionCapsOption('3,3', '60,240'), trustProxy: ['127.0.0.1'] });
    servers.push(s);
    const socks: WebSocket[] = [];
    const join = async (xff: string) => {
      const r = await wsFrom(s.wsUrl, '127.0.0.1', true, xff);
      socks.push(r.ws);
      return (r.first as { t: string; code?: string } | null)?.code ?? r.first?.t ?? r.closed;
    };
    try {
      for (let i = 1; i <= 3; i++) expect(await join(`2001:db8:77:${i}::1`)).toBe('welcome');
      expect(await join('2001:db8:77:4::1')).toBe('rate-limited');
      expect(await join('2001:db8:78:1::1')).toBe('welcome'); // another /48
      expect(await join('198.51.100.1')).toBe('welcome'); // IPv4 has no site cap
      expect(await join('198.51.100.2')).toBe('welcome');
      // A closed connection frees its site's slot too.
      socks[0]!.close();
      await until(async () => (await join('2001:db8:77:5::1')) === 'welcome', 5000, 'a freed slot of the /48');
    } finally {
      for (const w of socks) w.close();
    }
  });

  it('rate-limits hellos per IPv6 /48 as well as per /64', async () => {
    const clock = new FakeClock();
    const h = await startServer({ hub: { hellosPerMinute: 6, helloBurst: 1, siteHellosPerMinute: 6, siteHelloBurst: 3 }, trustProxy: ['127.0.0.1'] }, { clock });
    servers.push(h);
    const hello = async (xff: string) => {
      const r = await wsFrom(h.wsUrl, '127.0.0.1', true, xff);
      r.ws.close();
      return (r.first as { t: string; code?: string } | null)?.code ?? r.first?.t;
    };
    const firsts: unknown[] = [];
    // A /64 over its own budget spends none of its site's: 77:2 and 77:3 still join, then the site is spent.
    for (const i of [1, 1, 1, 2, 3, 4]) firsts.push(await hello(`2001:db8:77:${i}::1`));
    expect(firsts).toEqual(['welcome', 'rate-limited', 'rate-limited', 'welcome', 'welcome', 'rate-limited']);
    expect(await hello('2001:db8:78:1::1')).toBe('welcome');
    clock.advance(10_000); // one hello per 10 s for the site
    expect(await hello('2001:db8:77:9::1')).toBe('welcome');
  });
});
