// Metric queries (by run, peer and time range, downsampled for long runs) and the live stream.
import type { AppContext } from '../context.ts';
import { RunError } from '../runs.ts';
import Type, { type Static } from 'typebox';
import { RUN_PARAMS, type RunParams } from './guard.ts';
import { addressKey } from '../address-budget.ts';
import { securityHeaders } from './web.ts';
import { PEER_ID_PATTERN } from '../../src/protocol/messages.ts';
import { MAX_POINTS, type Answer } from '../metrics.ts';
import type { Costed } from '../read-budget.ts';

const time = Type.Optional(Type.Integer({ minimum: 0, maximum: 1e14 }));
const METRICS_QUERY = Type.Object({
  peer: Type.Optional(Type.String({ pattern: PEER_ID_PATTERN })),
  from: time,
  to: time,
  maxPoints: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_POINTS })),
  /** With more rows than maxPoints in range: the newest maxPoints rows, raw, rather than time buckets over all. */
  newest: Type.Optional(Type.Boolean()),
}, { additionalProperties: false });
const RANGE_QUERY = Type.Object({ from: time, to: time }, { additionalProperties: false });

export function registerMetricRoutes(ctx: AppContext): void {
  const { app, runs, metrics, live, clock, reads } = ctx;

  app.get<{ Params: RunParams; Querystring: Static<typeof METRICS_QUERY> }>('/api/runs/:run/metrics', {
    schema: { params: RUN_PARAMS, querystring: METRICS_QUERY },
  }, async (req, reply) => {
    if (!runs.get(req.params.run)) throw new RunError(`no run "${req.params.run}"`, 404);
    const { peer, from = 0, to = clock.now(), maxPoints = 2000, newest } = req.query;
    if (to < from) throw new RunError(`querystring: to (${to}) is before from (${from})`, 400);
    // Reports queued in this event-loop turn are committed first, so a reader sees every ack'd row
    // (on a run of 10,000 rows or more, every row ack'd a second before; server/metrics.ts, AnswerCache).
    metrics.flush();
    return reads.serve(req, reply, async (admit) =>
      body({ run: req.params.run, peer: peer ?? null, from, to }, await metrics.queryJson({ runId: req.params.run, peerId: peer, from, to, maxPoints, ...(newest ? { newest } : {}) }, admit)));
  });

  // Connectivity: direct vs relayed exchanges, link failures and their reasons, failing peers.
  app.get<{ Params: RunParams; Querystring: Static<typeof RANGE_QUERY> }>('/api/runs/:run/connectivity', {
    schema: { params: RUN_PARAMS, querystring: RANGE_QUERY },
  }, async (req, reply) => {
    if (!runs.get(req.params.run)) throw new RunError(`no run "${req.params.run}"`, 404);
    const { from = 0, to = clock.now() } = req.query;
    if (to < from) throw new RunError(`querystring: to (${to}) is before from (${from})`, 400);
    metrics.flush();
    return reads.serve(req, reply, async (admit) => body({ run: req.params.run, from, to }, await metrics.connectivityJson(req.params.run, from, to, admit)));
  });

  app.get<{ Params: RunParams }>('/api/runs/:run/stream', { schema: { params: RUN_PARAMS } }, async (req, reply) => {
    if (!runs.get(req.params.run)) throw new RunError(`no run "${req.params.run}"`, 404);
    // A HEAD (Fastify answers one for every GET) gets the stream's head and nothing more: Node sends
    // a HEAD's headers only when it ends, which a stream never does, so a HEAD once waited with no
    // answer while it held one of the address's live streams, and could displace a dashboard's.
    if (req.method === 'HEAD') return reply.type('text/event-stream; charset=utf-8').header('cache-control', 'no-cache, no-transform').send();
    const admitted = live.admit(req.params.run, addressKey(req.ip));
    if (typeof admitted !== 'function') return reply.code(admitted.status).send({ error: admitted.error });
    reply.hijack();
    admitted(reply.raw, securityHeaders(req.url, (run) => runs.embedSites(run)));
  });
}

/**
 * `head`'s fields, then those of the answer (a cached JSON object, see MetricsStore.queryJson), as
 * one JSON object: the bytes `{ ...head, ...JSON.parse(answer.json) }` would serialize to, without
 * parsing or serializing the answer again; with what computing the answer took.
 */
function body(head: Record<string, string | number | null>, answer: Answer): Costed<string> {
  const fields = JSON.stringify(head);
  return { value: answer.json === '{}' ? fields : `${fields.slice(0, -1)},${answer.json.slice(1)}`, ms: answer.ms };
}
