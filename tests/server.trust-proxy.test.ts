// Behind a reverse proxy (docs/deploy.md: Caddy on the same host) every socket peer is the proxy,
// so per-address budgets would count the whole deployment as one client. `trustProxy` names the
// proxies whose X-Forwarded-For is believed; without it the header is ignored, so a client cannot
// dodge a per-address limit by forging it. Observables: the WebSocket cap per address and the
// dashboard stream cap per address, each set to 1.
import { afterAll, describe, expect, it } from 'vitest';
import { get, type ClientRequest } from 'node:http';
import { Command } from 'commander';
import { WebSocket } from 'ws';
import { startServer, type TestServer } from './support/coordinator.ts';
import { PROTOCOL_VERSION } from '../src/protocol/messages.ts';
import { register as registerServe, trustProxyList } from '../src/commands/serve.ts';

const servers: TestServer[] = [];
const held: { close(): void }[] = [];
afterAll(async () => {
  for (const h of held) h.close();
  for (const s of servers) await s.close();
});

async function server(trustProxy?: string[]): Promise<TestServer> {
  const s = await startServer({
    hub: { maxConnectionsPerAddress: 1 }, live: { perAddress: 1 }, defaultRun: true,
    ...(trustProxy ? { trustProxy } : {}),
  });
  servers.push(s);
  return s;
}

/** A WebSocket from 127.0.0.1 carrying `xff`; sends a hello, resolves with the first frame's type or code. */
function join(s: TestServer, xff: string): Promise<string> {
  return new Promise((resolve) => {
    const ws = new WebSocket(s.wsUrl, { headers: { 'x-forwarded-for': xff } });
    held.push({ close: () => ws.close() });
    let done = false;
    const finish = (what: string) => { if (!done) { done = true; resolve(what); } };
    ws.on('open', () => ws.send(JSON.stringify({ t: 'hello', v: PROTOCOL_VERSION })));
    ws.on('message', (d) => {
      const m = JSON.parse(String(d)) as { t: string; code?: string };
      finish(m.t === 'error' ? m.code ?? 'error' : m.t);
    });
    ws.on('close', (code) => finish(`closed ${code}`));
    ws.on('error', (e) => finish(`error ${e.message}`));
  });
}

/** A dashboard event stream from 127.0.0.1 carrying `xff`; resolves with its status (a 200 is held open). */
function stream(s: TestServer, xff: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req: ClientRequest = get(`${s.url}/api/runs/default/stream`, { agent: false, headers: { 'x-forwarded-for': xff } }, (res) => {
      if (res.statusCode === 200) held.push({ close: () => req.destroy() });
      else res.resume();
      resolve(res.statusCode!);
    });
    req.on('error', reject);
  });
}

describe('trustProxy', () => {
  it('behind a trusted proxy, clients with different X-Forwarded-For have budgets of their own', async () => {
    const s = await server(['127.0.0.1']);
    expect(await join(s, '198.19.1.1')).toBe('welcome');
    expect(await join(s, '198.19.1.2')).toBe('welcome');
    // The same client again is over its own cap of 1.
    expect(await join(s, '198.19.1.1')).toBe('rate-limited');
    // A forged entry before the one the proxy appended changes nothing: the rightmost untrusted counts.
    expect(await join(s, '198.19.0.9, 198.19.1.2')).toBe('rate-limited');
    expect(s.c.hub.connectionCount()).toBe(2);

    expect(await stream(s, '198.19.1.1')).toBe(200);
    expect(await stream(s, '198.19.1.2')).toBe(200);
    expect(await stream(s, '198.19.1.1')).toBe(429);
  });

  it('the address a proxy wrote is canonicalised: a :port, brackets or hex-mapped IPv4 neither split one client nor merge two', async () => {
    const s = await server(['127.0.0.1']);
    // "ip:port" (Azure Application Gateway's default): the same client whatever its source port.
    expect(await join(s, '198.51.100.7:50001')).toBe('welcome');
    expect(await join(s, '198.51.100.7:50002')).toBe('rate-limited');
    expect(await join(s, '198.51.100.7')).toBe('rate-limited');
    // Bracketed IPv6 is grouped by its /64 like any other.
    expect(await join(s, '[2001:db8:5:6::1]:443')).toBe('welcome');
    expect(await join(s, '2001:db8:5:6::2')).toBe('rate-limited');
    // Two IPv4 hosts written as hex-mapped IPv6 are two clients, neither of them ::1.
    expect(await join(s, '::ffff:cb00:7101')).toBe('welcome'); // 203.0.113.1
    expect(await join(s, '::ffff:cb00:7102')).toBe('welcome'); // 203.0.113.2
    expect(await join(s, '203.0.113.1')).toBe('rate-limited');
    expect(await join(s, '::1')).toBe('welcome');
    // What is no address at all shares one budget.
    expect(await join(s, 'unknown')).toBe('welcome');
    expect(await join(s, 'not-an-address')).toBe('rate-limited');
    expect(s.c.hub.connectionCount()).toBe(6);
  });

  it('without the option X-Forwarded-For is ignored: a forged header does not dodge the per-address cap', async () => {
    const s = await server();
    expect(await join(s, '198.19.1.1')).toBe('welcome');
    expect(await join(s, '198.19.1.2')).toBe('rate-limited');
    expect(await stream(s, '198.19.1.1')).toBe(200);
    expect(await stream(s, '198.19.1.2')).toBe(429);
  });

  it('only the named proxies are trusted: the header from any other socket peer is ignored', async () => {
    const s = await server(['127.0.0.2', '198.18.0.0/15']);
    expect(await join(s, '198.19.1.1')).toBe('welcome');
    expect(await join(s, '198.19.1.2')).toBe('rate-limited');
  });
});

describe('murmur serve --trust-proxy', () => {
  it('is offered in the help, default none', () => {
    const program = new Command();
    registerServe(program);
    const serve = program.commands.find((c) => c.name() === 'serve')!;
    expect(serve.helpInformation()).toMatch(/--trust-proxy <addr\|cidr,...>/);
    expect(serve.opts().trustProxy).toEqual([]);
  });

  it('takes addresses, CIDRs and named ranges, comma-separated or repeated, and refuses anything else', () => {
    expect(trustProxyList([])).toEqual([]);
    expect(trustProxyList(['127.0.0.1, ::1', '198.18.0.0/15,fd00::/8', 'loopback', '198.18.0.0/255.254.0.0'])).toEqual(
      ['127.0.0.1', '::1', '198.18.0.0/15', 'fd00::/8', 'loopback', '198.18.0.0/255.254.0.0']);
    for (const bad of ['*', 'true', 'caddy', '198.18.0.0/33', '::1/129', '198.18.0.1/8/8', '300.0.0.1']) {
      expect(() => trustProxyList([bad]), bad).toThrow(/--trust-proxy/);
    }
  });
});
