// TCP connections per client. WebSockets, dashboard streams and downloads each had a cap per
// address, but a plain HTTP connection had none: one client could open connections without end,
// each holding a file descriptor and the parser's state (and, with a body sent a byte now and then,
// held for the 10 minutes of requestTimeout), until the process had no descriptor left for SQLite,
// checkpoints or new volunteers. Now each address (IPv6: /64) and each IPv6 /48 holds at most so
// many at once, counted at the socket before a request is read (ConnectionCap).
import { afterEach, describe, expect, it } from 'vitest';
import { connect, type Socket } from 'node:net';
import { ConnectionCap, proxyMatcher } from '../server/address-budget.ts';
import { startServer, type TestServer } from './support/coordinator.ts';
import { until } from './support/wait.ts';

describe('ConnectionCap', () => {
  it('counts an address, an IPv6 /64 and an IPv6 /48, and gives a place back once', () => {
    const cap = new ConnectionCap({ perAddress: 2, perSite: 3 });
    const a1 = cap.admit('198.51.100.7')!;
    expect(cap.admit('::ffff:198.51.100.7')).not.toBeNull(); // the same client, mapped
    expect(cap.admit('198.51.100.7')).toBeNull();
    expect(cap.admit('198.51.100.8')).not.toBeNull();
    a1();
    a1();
    expect(cap.open('198.51.100.7')).toBe(1);
    expect(cap.admit('198.51.100.7')).not.toBeNull();
    // Two hosts of one /64 are one client; three /64s of one /48 fill its site.
    expect(cap.admit('2001:db8:1:1::1')).not.toBeNull();
    expect(cap.admit('2001:db8:1:1::2')).not.toBeNull();
    expect(cap.admit('2001:db8:1:1::3')).toBeNull();
    expect(cap.admit('2001:db8:1:2::1')).not.toBeNull();
    expect(cap.admit('2001:db8:1:3::1')).toBeNull();
    expect(cap.admit('2001:db8:2:1::1')).not.toBeNull();
    expect(cap.refused).toBe(3);
  });
});

describe('proxyMatcher', () => {
  it('knows the proxies --trust-proxy names: addresses, CIDRs, netmasks and named ranges, an IPv4 peer mapped or not', () => {
    const m = proxyMatcher(['198.51.100.7', '198.18.0.0/255.254.0.0', '2001:db8::/32', 'loopback', 'linklocal']);
    for (const yes of ['198.51.100.7', '::ffff:198.51.100.7', '198.19.255.1', '2001:db8:1::1', '127.0.0.9', '::1', '169.254.3.4', 'fe80::1%eth0']) {
      expect(m(yes), yes).toBe(true);
    }
    for (const no of ['198.51.100.8', '198.20.0.1', '2001:db9::1', '198.17.255.255', '', 'unknown', '::ffff:198.20.0.1', 'fe80::1%']) expect(m(no), no).toBe(false);
    expect(proxyMatcher([])('127.0.0.1')).toBe(false);
  });
});

let s: TestServer | undefined;
afterEach(async () => {
  await s?.close();
  s = undefined;
});

/** A keep-alive connection from `localAddress`: sends GET /health and resolves with the status line, or null when the coordinator closed it unanswered. */
/** Opens `n` connections from `localAddress`, each served (200), and keeps their sockets in `held`. */
async function served(t: TestServer, n: number, held: Socket[], localAddress = '127.0.0.1'): Promise<void> {
  for (let i = 0; i < n; i++) {
    const r = await health(t, localAddress);
    expect(r.status, `connection ${i + 1} of ${n} from ${localAddress}`).toBe('HTTP/1.1 200 OK');
    held.push(r.socket);
  }
}

function health(t: TestServer, localAddress = '127.0.0.1'): Promise<{ socket: Socket; status: string | null }> {
  const u = new URL(t.url);
  return new Promise((resolve) => {
    let got = '';
    const socket = connect({ port: Number(u.port), host: u.hostname, localAddress }, () => {
      socket.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
    });
    socket.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (got.includes('\r\n\r\n')) resolve({ socket, status: got.split('\r\n')[0]! });
    });
    socket.on('error', () => { /* the close follows */ });
    socket.on('close', () => resolve({ socket, status: null }));
  });
}

describe('connections to the coordinator', () => {
  it('an address holds at most perAddress; the next is closed unanswered, others and a freed place are served', async () => {
    s = await startServer({ connections: { perAddress: 8 } });
    const held: Socket[] = [];
    try {
      await served(s, 8, held);
      const ninth = await health(s);
      expect(ninth.status, 'a ninth connection of one address was served').toBeNull();
      // Another address is its own client.
      const other = await health(s, '127.0.0.2');
      expect(other.status).toBe('HTTP/1.1 200 OK');
      other.socket.destroy();
      // A place given back is taken again.
      held.pop()!.destroy();
      await until(async () => {
        const r = await health(s!);
        if (r.status === null) return false;
        held.push(r.socket);
        return true;
      }, 10_000, 'a connection to be served once one of the eight closed');
    } finally {
      for (const x of held) x.destroy();
    }
  });

  it('behind --trust-proxy the proxy\'s connections are not counted as one client', async () => {
    s = await startServer({ connections: { perAddress: 2 }, trustProxy: ['127.0.0.1'] });
    const held: Socket[] = [];
    try {
      await served(s, 6, held);
    } finally {
      for (const x of held) x.destroy();
    }
  });

  it('behind --trust-proxy a client that connects directly, not through a named proxy, is still capped', async () => {
    // The proxy is 127.0.0.2 (and a range elsewhere); 127.0.0.1 is a client that reached the port
    // itself. The cap used to be off for every connection as soon as any proxy was named.
    s = await startServer({ connections: { perAddress: 2 }, trustProxy: ['127.0.0.2', '198.18.0.0/15'] });
    const held: Socket[] = [];
    try {
      await served(s, 2, held);
      const third = await health(s);
      if (third.status !== null) held.push(third.socket);
      expect(third.status, 'a third direct connection of one address was served behind --trust-proxy').toBeNull();
      // The named proxy's own connections carry many clients: not capped.
      await served(s, 4, held, '127.0.0.2');
    } finally {
      for (const x of held) x.destroy();
    }
  });
});
