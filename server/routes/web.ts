// The built web app (volunteer page `/`, dashboard `/dashboard`, the widget's consent window
// `/consent`, embed script `/embed.js`) from
// dist/web when it has been built; otherwise `/` says how to build it. The API works either way.
// Every response carries the content security policy and the other security headers
// (securityHeaders); only the widget's training frame may be framed, and only by the sites its
// run allows.
import { existsSync } from 'node:fs';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import fastifyStatic from '@fastify/static';

/** Where the widget's training frame is served (embed.js loads it with ?run=ID). */
export const FRAME_PATH = '/frame.html';

/**
 * The policy of every page (and of the workers they start, which take the policy of their own
 * script's response). No inline or evaluated script anywhere: the pages check messages with
 * TypeBox's Value module, which interprets each schema rather than compiling it with new Function
 * (src/protocol/check.ts). Inline styles stay allowed for the pages' <style> blocks.
 */
const PAGE_POLICY = [
  "default-src 'self'", "script-src 'self'", "style-src 'self' 'unsafe-inline'", "img-src 'self' data: blob:",
  "connect-src 'self'", "worker-src 'self'", "object-src 'none'", "base-uri 'none'", "form-action 'none'",
].join('; ');

/**
 * The frame-ancestors source list for a path: the frame's run's sites, nothing for the rest.
 * It never throws: a request-target URL cannot parse (`//a:99999/`) is not the frame, and its
 * answer still carries every header (a throw here left Fastify's bare 500 without them).
 */
export function frameAncestors(url: string, embedSites: (run: string) => string[]): string {
  let u: URL;
  try {
    u = new URL(url, 'http://x');
  } catch {
    return "'none'";
  }
  if (u.pathname !== FRAME_PATH) return "'none'";
  const run = u.searchParams.get('run');
  const sites = run ? embedSites(run) : [];
  return sites.length > 0 ? sites.join(' ') : "'none'";
}

/**
 * The security headers of the answer to `url`: the policy, with the frame's run's sites as its
 * frame-ancestors, and the rest. One place for every answer: the onSend hook below, and the live
 * stream, which writes its own head (server/live.ts) and so never reaches that hook.
 */
export function securityHeaders(url: string, embedSites: (run: string) => string[]): Record<string, string> {
  const ancestors = frameAncestors(url, embedSites);
  return {
    'content-security-policy': `${PAGE_POLICY}; frame-ancestors ${ancestors}`,
    // For browsers without CSP level 2; a browser that knows frame-ancestors ignores it.
    ...(ancestors === "'none'" ? { 'x-frame-options': 'DENY' } : {}),
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    // A window that opened ours, or that ours opened, keeps no handle on it: a page could
    // otherwise navigate the volunteer page under the pointer, or close it (double-clickjacking,
    // docs/design.md section 6). Nothing of ours needs the handle (the widget's link opens the
    // Murmur site with noopener), and browsers ignore it on a framed document: the widget's frame
    // keeps it, for the day someone opens it as a page of its own.
    'cross-origin-opener-policy': 'same-origin',
  };
}

export function registerSecurityHeaders(app: FastifyInstance, embedSites: (run: string) => string[]): void {
  app.addHook('onSend', async (req, reply) => {
    void reply.headers(securityHeaders(req.url, embedSites));
    // A refusal or an error is about this moment (a spent download allowance, a full disk), not
    // the content: a cache that kept one would serve it to every volunteer behind it, and a
    // validator would let a revalidation (304) keep it fresh.
    if (reply.statusCode >= 400) {
      void reply.removeHeader('etag').removeHeader('last-modified');
      void reply.header('cache-control', 'no-store');
    }
  });
}

export async function registerWebRoutes(app: FastifyInstance, webRoot: string): Promise<void> {
  if (!existsSync(join(webRoot, 'index.html'))) {
    app.get('/', { schema: {} }, async (_req, reply) => reply.type('text/plain; charset=utf-8').send(
      `Murmur coordinator. The web app is not built (no ${webRoot}/index.html): run \`npx vite build\`.\n` +
      'API: /api/runs, /api/runs/:run/metrics, /api/runs/:run/stream, /api/runs/:run/checkpoints, /api/consent, WebSocket /api/ws\n'));
    return;
  }
  await app.register(fastifyStatic, { root: webRoot, prefix: '/', index: ['index.html'] });
  for (const page of ['dashboard', 'consent']) {
    const file = existsSync(join(webRoot, `${page}.html`)) ? `${page}.html` : `${page}/index.html`;
    if (existsSync(join(webRoot, file))) app.get(`/${page}`, { schema: {} }, async (_req, reply) => reply.sendFile(file));
  }
}

/**
 * The answer to a request Node's HTTP parser refused before Fastify saw it (a Content-Length
 * beside Transfer-Encoding, a bad header character, a bad chunk size, an unknown HTTP version,
 * headers past 16 KB, a head that never finished): a JSON error that names what was wrong, as
 * every other refusal does. Fastify's own said only "Client Error". The connection then closes,
 * since the parser cannot tell where the next request would start.
 */
export function answerClientError(err: Error & { code?: string; reason?: string }, socket: Duplex): void {
  // A reset connection, or one already gone: nothing to answer.
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, text] = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? [408, 'the request was not received in time']
    : err.code === 'HPE_HEADER_OVERFLOW' ? [431, 'the request\'s headers are larger than the 16 KB this coordinator reads']
    : [400, `malformed HTTP request: ${String(err.reason ?? err.message).slice(0, 200)}`];
  const body = JSON.stringify({ error: text, ...(err.code ? { code: err.code.slice(0, 64) } : {}) });
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
      `x-content-type-options: nosniff\r\ncache-control: no-store\r\nconnection: close\r\n\r\n${body}`);
  }
  socket.destroy();
}
