// The volunteers' WebSocket endpoint; everything after the upgrade is PeerHub's.
import type { AppContext } from '../context.ts';

const WS_PATH = '/api/ws';

export function registerWsRoute(ctx: AppContext): void {
  ctx.app.route({
    method: 'GET',
    url: WS_PATH,
    schema: {},
    wsHandler: (socket, req) => {
      ctx.hub.attach(socket, req.ip);
    },
    // A plain GET or HEAD (a browser tab, a probe, a proxy that dropped the upgrade) is told what
    // this endpoint is, as every other refusal is: @fastify/websocket's own answer was a 404 with no body.
    handler: async (_req, reply) => reply.code(426).header('upgrade', 'websocket')
      .send({ error: '/api/ws is the volunteers\' WebSocket: connect with Upgrade: websocket (a plain HTTP request gets nothing here)' }),
  });
  // An upgrade asked of any other route (the live stream, a read) is refused by name before
  // @fastify/websocket takes it over: it answered 101 Switching Protocols and closed the new
  // WebSocket at once, or, for an Upgrade other than websocket, ws's "Invalid Upgrade header" in
  // plain text. After this answer the plugin closes the socket, which no HTTP parser reads any more.
  ctx.app.addHook('onRequest', async (req, reply) => {
    const route = req.routeOptions.url;
    if (!req.ws || route === undefined || route === WS_PATH) return;
    const upgrade = String(req.headers.upgrade ?? '').slice(0, 40);
    return reply.code(400).send({ error: `${route} takes no Upgrade (asked: ${JSON.stringify(upgrade)}): only ${WS_PATH} is a WebSocket; ask this one as plain HTTP` });
  });
}
