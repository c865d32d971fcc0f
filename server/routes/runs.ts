// Runs: read-only views for everyone; create / change / stop for the admin token only.
import type { AppContext } from '../context.ts';
import Type, { type Static } from 'typebox';
import { CreateRun, RunError } from '../runs.ts';
import { UpdateRun, type PeerList, type RunReply, type RunWriteReply } from '../../src/protocol/api.ts';
import { buildLayout } from '../../src/model/layout.ts';
import { linkWarning } from '../../src/protocol/exchange-link.ts';
import { ADMIN_BODY_BYTES, RUN_PARAMS, requireAdmin, type RunParams } from './guard.ts';
import { sameWindows } from '../checkpoints.ts';
import type { RunInfo } from '../../src/protocol/messages.ts';

const EVENTS_QUERY = Type.Object({
  from: Type.Optional(Type.Integer({ minimum: 0, maximum: 1e14 })),
  to: Type.Optional(Type.Integer({ minimum: 0, maximum: 1e14 })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 10000 })),
  order: Type.Optional(Type.Enum(['asc', 'desc'])),
}, { additionalProperties: false });

export function registerRunRoutes(ctx: AppContext): void {
  const { app, runs, hub, events, datasets, clock, checkpoints, remeasure, reads } = ctx;
  const admin = requireAdmin(ctx.adminToken);
  const getRun = (id: string): RunInfo => {
    const r = runs.get(id);
    if (!r) throw new RunError(`no run "${id}"`, 404);
    return r;
  };
  // The run's step is the one its peers agree on (hub.stepConsensus), never the furthest claim.
  // Anonymous reads get it as worked out within the last AGREED_STEP_MS (hub.agreedStep): a pass
  // over up to 10,000 live peers and a SQLite read per request let a loop of them hold the event
  // loop; the admin's writes answer with it fresh.
  const summary = (r: RunInfo, fresh = false): RunReply => {
    const step = fresh ? hub.stepConsensus(r.id) : hub.agreedStep(r.id);
    return { ...r, livePeers: hub.liveCount(r.id), embedSites: runs.embedSites(r.id), ...(step === null ? {} : { stepConsensus: step }) };
  };
  // A create or change answers with a warning when the run's exchange needs more than a home
  // uplink; the run is made all the same (a lab with fast links may want base).
  const written = (r: RunInfo): RunWriteReply => {
    const warning = runLinkWarning(r);
    return { ...summary(r, true), ...(warning === null ? {} : { warning }) };
  };

  // Anonymous, so charged to the read budget like the other public reads (server/read-budget.ts):
  // one address asking in a loop is refused with 429 and Retry-After once its share is spent.
  app.get('/api/runs', { schema: {} }, async (req, reply) =>
    reads.serve(req, reply, () => reads.timed(() => JSON.stringify({ runs: runs.list().map((r) => summary(r)) }))));

  app.get<{ Params: RunParams }>('/api/runs/:run', { schema: { params: RUN_PARAMS } }, async (req, reply) => {
    const run = getRun(req.params.run);
    return reads.serve(req, reply, () => reads.timed(() => JSON.stringify(summary(run))));
  });

  app.post<{ Body: CreateRun }>('/api/runs', { onRequest: admin, bodyLimit: ADMIN_BODY_BYTES, schema: { body: CreateRun } }, async (req, reply) => {
    if (!datasets.manifest(req.body.dataset)) throw new RunError(`no dataset "${req.body.dataset}" on this coordinator`, 400);
    const run = runs.create(req.body);
    events.append(run.id, 'run-created', null, { run });
    req.log.info({ run: run.id }, 'run created');
    return reply.code(201).send(written(run));
  });

  app.patch<{ Params: RunParams; Body: UpdateRun }>('/api/runs/:run', {
    onRequest: admin, bodyLimit: ADMIN_BODY_BYTES, schema: { params: RUN_PARAMS, body: UpdateRun },
  }, async (req, reply) => {
    const before = getRun(req.params.run);
    // Training and wire settings are part of what peers must agree on (the config hash): peers
    // already training keep theirs, so a change while they run would split the run in two
    // groups that refuse each other's updates. Stop the run first (or create a new one).
    const fixed = (['train', 'compression'] as const).filter((k) => req.body[k] !== undefined);
    const live = hub.livePeers(before.id).length;
    if (fixed.length > 0 && before.status === 'running' && req.body.status !== 'stopped' && live > 0) {
      return reply.code(409).send({
        error: `run ${before.id} has ${live} live peer${live === 1 ? '' : 's'} training with its current ${fixed.join(' and ')} settings; ` +
          'changing them now would split the run (peers agree on them before exchanging weights). Stop the run first, or create a new run.',
      });
    }
    const run = runs.update(req.params.run, req.body);
    // Other validation windows: its checkpoints' losses were measured on the old ones.
    if (!sameWindows(run, before)) {
      checkpoints.forgetMeasurements(run.id);
      void remeasure();
    }
    events.append(run.id, run.status === 'stopped' ? 'run-stopped' : 'run-updated', null, { change: req.body });
    hub.runChanged(run);
    req.log.info({ run: run.id, change: req.body }, 'run changed');
    return reply.send(written(run));
  });

  app.post<{ Params: RunParams }>('/api/runs/:run/stop', { onRequest: admin, schema: { params: RUN_PARAMS } }, async (req) => {
    const before = getRun(req.params.run);
    if (before.status === 'stopped') return summary(before, true);
    const run = runs.update(before.id, { status: 'stopped' });
    events.append(run.id, 'run-stopped', null, null);
    hub.runChanged(run);
    req.log.info({ run: run.id }, 'run stopped');
    return summary(run, true);
  });

  // Every live peer of the run (10,000 at most, a few hundred KB): a read charged like the metrics
  // (server/read-budget.ts), or a loop of them would hold the event loop the volunteers need.
  // Each with its standing (PeerList): the dashboard counts throughput claims by it.
  app.get<{ Params: RunParams }>('/api/runs/:run/peers', { schema: { params: RUN_PARAMS } }, async (req, reply) => {
    getRun(req.params.run);
    return reads.serve(req, reply, () => reads.timed(() => {
      const reply: PeerList = { peers: hub.standings(req.params.run), pool: hub.pool(req.params.run).size, pairs: { ...hub.pool(req.params.run).stats } };
      return JSON.stringify(reply);
    }));
  });

  app.get<{ Params: RunParams; Querystring: Static<typeof EVENTS_QUERY> }>('/api/runs/:run/events', {
    schema: { params: RUN_PARAMS, querystring: EVENTS_QUERY },
  }, async (req, reply) => {
    getRun(req.params.run);
    const { from = 0, to = clock.now(), limit = 1000, order = 'asc' } = req.query;
    return reads.serve(req, reply, () => reads.timed(() => JSON.stringify({ events: events.list(req.params.run, from, to, limit, order) })));
  });
}

/** What a run's exchange asks of a volunteer's link, when that is more than a home uplink (null otherwise). */
export function runLinkWarning(run: RunInfo): string | null {
  return linkWarning(run, buildLayout(run.model).total);
}
