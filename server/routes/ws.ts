// The volunteers' WebSocket endpoint; everything after the upgrade is PeerHub's.
import type { AppContext } from '../context.ts';

export function registerWsRoute(ctx: AppContext): void {
  ctx.app.route({
    method: 'GET',
    url: '/api/ws',
    schema: {},
    wsHandler: (socket, req) => {
      ctx.hub.attach(socket, req.ip);
    },
    // A plain GET or HEAD (a browser tab, a probe, a proxy that dropped the upgrade) is told what
    // this endpoint is, as every other refusal is: @fastify/websocket's own answer was a 404 with no body.
    handler: async (_req, reply) => reply.code(426).header('upgrade', 'websocket')
      .send({ error: '/api/ws is the volunteers\' WebSocket: connect with Upgrade: websocket (a plain HTTP request gets nothing here)' }),
  });
}
