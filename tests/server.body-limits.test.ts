// What an anonymous request body can make the coordinator hold. Every route took up to 64 KiB of
// body (the admin's run configs), and an anonymous one reads its body too: the consent routes, and
// any unknown route or method. A body is held until it is whole, for up to the 10 minutes of
// requestTimeout, so a client that announced 64 KiB and trickled it held that much per connection,
// on as many connections as it opened. Now an anonymous body is at most ANON_BODY_BYTES, refused
// (413) on its announced length before a byte of it is read; the admin's run configs keep
// ADMIN_BODY_BYTES, read only once the token was checked.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Socket } from 'node:net';
import { ADMIN_BODY_BYTES, ANON_BODY_BYTES } from '../server/routes/guard.ts';
import { startServer, type TestServer } from './support/coordinator.ts';
import { until } from './support/wait.ts';

let s: TestServer;
beforeAll(async () => {
  s = await startServer();
});
afterAll(async () => {
  await s?.close();
});

const NONCE = 'n'.repeat(86);

/**
 * Sends a request's head announcing a body of 60,000 bytes, and only the first bytes of it; returns
 * the socket and what has come back on it so far.
 */
function partialBody(method: string, path: string, headers: Record<string, string> = {}): { socket: Socket; got: () => string } {
  const u = new URL(s.url);
  let got = '';
  const socket = connect(Number(u.port), u.hostname, () => {
    const head = Object.entries({ host: 'x', 'content-type': 'application/json', 'content-length': '60000', ...headers }).map(([k, v]) => `${k}: ${v}\r\n`).join('');
    socket.write(`${method} ${path} HTTP/1.1\r\n${head}\r\n{"nonce":"`);
  });
  socket.on('data', (d: Buffer) => { got += d.toString('latin1'); });
  socket.on('error', () => { /* a close after the answer */ });
  return { socket, got: () => got };
}

describe('request bodies an anonymous client sends', () => {
  const anonymous: [string, string][] = [
    ['POST', '/api/consent'],
    ['POST', `/api/consent/${NONCE}/decision`],
    ['POST', `/api/consent/${NONCE}/stop`],
    ['POST', `/api/consent/${NONCE}/claim`],
    ['POST', '/api/no-such-route'],
    ['PUT', '/api/runs/default'],
  ];
  for (const [method, path] of anonymous) {
    it(`${method} ${path.replace(NONCE, ':nonce')} announcing 60,000 bytes is refused (413) before its body comes`, async () => {
      const { socket, got } = partialBody(method, path);
      try {
        await until(() => got().includes('\r\n\r\n'), 10_000, () => `an answer without the body (got ${JSON.stringify(got())})`);
        expect(got().split('\r\n')[0]).toBe('HTTP/1.1 413 Payload Too Large');
        expect(got()).toContain('FST_ERR_CTP_BODY_TOO_LARGE');
      } finally {
        socket.destroy();
      }
    });
  }

  it('a body over ANON_BODY_BYTES, sent whole, is refused too; one of the largest consent request passes', async () => {
    // The admin's largest config: 100 embedding sites of ~190 characters, over 16 KB, still taken.
    const sites = Array.from({ length: 100 }, (_, i) => `https://s${i}-${'a'.repeat(170)}.example.org`);
    const patch = JSON.stringify({ embedSites: sites });
    expect(patch.length).toBeGreaterThan(16 * ANON_BODY_BYTES);
    expect(patch.length).toBeLessThan(ADMIN_BODY_BYTES);
    const changed = await fetch(`${s.url}/api/runs/default`, { method: 'PATCH', headers: { ...s.admin, 'content-type': 'application/json' }, body: patch });
    expect(changed.status, await changed.clone().text()).toBe(200);
    expect(((await changed.json()) as { embedSites: string[] }).embedSites).toHaveLength(100);

    const ask = JSON.stringify({ nonce: NONCE, run: 'default', site: sites[99] });
    expect(ask.length).toBeLessThan(ANON_BODY_BYTES / 2);
    const opened = await fetch(`${s.url}/api/consent`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: ask });
    expect(opened.status, await opened.clone().text()).toBe(201);

    const padded = JSON.stringify({ allow: true, pad: 'x'.repeat(ANON_BODY_BYTES) });
    const refused = await fetch(`${s.url}/api/consent/${NONCE}/decision`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: padded });
    expect(refused.status).toBe(413);
    // Nothing was decided: the request still waits for its answer.
    const now = (await (await fetch(`${s.url}/api/consent/${NONCE}`)).json()) as { state: string };
    expect(now.state).toBe('pending');
  });

  it('an admin route reads no body before its token', async () => {
    const { socket, got } = partialBody('PATCH', '/api/runs/default');
    try {
      await until(() => got().includes('\r\n\r\n'), 10_000, () => `an answer without the body (got ${JSON.stringify(got())})`);
      expect(got().split('\r\n')[0]).toBe('HTTP/1.1 401 Unauthorized');
    } finally {
      socket.destroy();
    }
  });
});
