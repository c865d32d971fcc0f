// Metric queries (by run, peer and time range, downsampled for long runs) and the live stream.
import type { AppContext } from '../context.ts';
import { RunError } from '../runs.ts';
import { RUN_PARAMS } from './guard.ts';
import { addressKey } from '../address-budget.ts';
import { PEER_ID_PATTERN } from '../../src/protocol/messages.ts';

const METRICS_QUERY = {
  type: 'object', additionalProperties: false,
  properties: {
    peer: { type: 'string', pattern: PEER_ID_PATTERN },
    from: { type: 'integer', minimum: 0, maximum: 1e14 },
    to: { type: 'integer', minimum: 0, maximum: 1e14 },
    maxPoints: { type: 'integer', minimum: 1, maximum: 20000 },
  },
} as const;

export function registerMetricRoutes(ctx: AppContext): void {
  const { app, runs, metrics, live, clock } = ctx;

  app.get<{ Params: { run: string }; Querystring: { peer?: string; from?: number; to?: number; maxPoints?: number } }>('/api/runs/:run/metrics', {
    schema: { params: RUN_PARAMS, querystring: METRICS_QUERY },
  }, async (req) => {
    if (!runs.get(req.params.run)) throw new RunError(`no run "${req.params.run}"`, 404);
    const { peer, from = 0, to = clock.now(), maxPoints = 2000 } = req.query;
    if (to < from) throw new RunError(`querystring: to (${to}) is before from (${from})`, 400);
    // Reports queued in this event-loop turn are committed first, so a reader sees every ack'd row.
    metrics.flush();
    return { run: req.params.run, peer: peer ?? null, from, to, ...metrics.query({ runId: req.params.run, peerId: peer, from, to, maxPoints }) };
  });

  // Connectivity: direct vs relayed exchanges, link failures and their reasons, failing peers.
  app.get<{ Params: { run: string }; Querystring: { from?: number; to?: number } }>('/api/runs/:run/connectivity', {
    schema: { params: RUN_PARAMS, querystring: { ...METRICS_QUERY, properties: { from: METRICS_QUERY.properties.from, to: METRICS_QUERY.properties.to } } },
  }, async (req) => {
    if (!runs.get(req.params.run)) throw new RunError(`no run "${req.params.run}"`, 404);
    const { from = 0, to = clock.now() } = req.query;
    if (to < from) throw new RunError(`querystring: to (${to}) is before from (${from})`, 400);
    metrics.flush();
    return { run: req.params.run, from, to, ...metrics.connectivity(req.params.run, from, to) };
  });

  app.get<{ Params: { run: string } }>('/api/runs/:run/stream', { schema: { params: RUN_PARAMS } }, async (req, reply) => {
    if (!runs.get(req.params.run)) throw new RunError(`no run "${req.params.run}"`, 404);
    const admitted = live.admit(req.params.run, addressKey(req.ip));
    if (typeof admitted !== 'function') return reply.code(admitted.status).send({ error: admitted.error });
    reply.hijack();
    admitted(reply.raw);
  });
}
