// The volunteers' WebSocket endpoint; everything after the upgrade is PeerHub's.
import type { AppContext } from '../context.ts';

export function registerWsRoute(ctx: AppContext): void {
  ctx.app.get('/api/ws', { websocket: true, schema: {} }, (socket, req) => {
    ctx.hub.attach(socket, req.ip);
  });
}
