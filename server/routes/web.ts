// The built web app (volunteer page `/`, dashboard `/dashboard`, embed script `/embed.js`) from
// dist/web when it has been built; otherwise `/` says how to build it. The API works either way.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import fastifyStatic from '@fastify/static';

export async function registerWebRoutes(app: FastifyInstance, webRoot: string): Promise<void> {
  if (!existsSync(join(webRoot, 'index.html'))) {
    app.get('/', { schema: {} }, async (_req, reply) => reply.type('text/plain; charset=utf-8').send(
      `Murmur coordinator. The web app is not built (no ${webRoot}/index.html): run \`npx vite build\`.\n` +
      'API: /api/runs, /api/runs/:run/metrics, /api/runs/:run/stream, /api/runs/:run/checkpoints, WebSocket /api/ws\n'));
    return;
  }
  await app.register(fastifyStatic, { root: webRoot, prefix: '/', index: ['index.html'] });
  for (const page of ['dashboard']) {
    const file = existsSync(join(webRoot, `${page}.html`)) ? `${page}.html` : `${page}/index.html`;
    if (existsSync(join(webRoot, file))) app.get(`/${page}`, { schema: {} }, async (_req, reply) => reply.sendFile(file));
  }
}
