// A request-target that WHATWG URL refuses (`//a:99999/`: an authority with a bad port) once made
// the security-header hook throw, and Fastify answered its bare default 500 with no CSP, nosniff
// or X-Frame-Options. Every answer carries them, whatever the target; the server goes on answering.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from 'node:net';
import { startServer, type TestServer } from './support/coordinator.ts';

let s: TestServer;
beforeAll(async () => { s = await startServer({ defaultRun: false }); });
afterAll(async () => { await s?.close(); });

/** Sends `target` as a raw HTTP/1.1 request; resolves with the status and the headers (lower-cased). */
function raw(target: string): Promise<{ status: number; headers: Record<string, string> }> {
  const { port } = new URL(s.url);
  return new Promise((resolve, reject) => {
    const sock = connect(Number(port), '127.0.0.1', () => {
      sock.write(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
    });
    let text = '';
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => { text += d; });
    sock.on('error', reject);
    sock.on('end', () => {
      const head = text.split('\r\n\r\n')[0]!.split('\r\n');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head[0] ?? '')?.[1] ?? 0);
      const headers: Record<string, string> = {};
      for (const line of head.slice(1)) {
        const i = line.indexOf(':');
        if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      resolve({ status, headers });
    });
  });
}

describe('a request-target URL cannot parse', () => {
  for (const target of ['//a:99999/', '//', '//a:99999/frame.html?run=default']) {
    it(`GET ${target} is answered with the security headers, and /health still answers`, async () => {
      const r = await raw(target);
      expect(r.status, JSON.stringify(r)).toBeGreaterThanOrEqual(400);
      expect(r.status).toBeLessThan(500);
      expect(r.headers['content-security-policy']).toMatch(/frame-ancestors 'none'/);
      expect(r.headers['x-frame-options']).toBe('DENY');
      expect(r.headers['x-content-type-options']).toBe('nosniff');
      expect(r.headers['referrer-policy']).toBe('no-referrer');

      const health = await raw('/health');
      expect(health.status).toBe(200);
      expect(health.headers['content-security-policy']).toMatch(/frame-ancestors 'none'/);
    });
  }
});
