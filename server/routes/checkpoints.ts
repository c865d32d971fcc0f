// Checkpoint listing, downloads (the checkpoint file, a bootstrap state frame, the Hugging Face
// export), admin request / delete, and the peers' state upload. Only an upload that passed the
// coordinator's own checks and measurement (server/checkpoint-validate.ts) is ever stored, so
// the list, the downloads and the welcome's newest checkpoint serve nothing else.
import { stat } from 'node:fs/promises';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AppContext } from '../context.ts';
import { RunError } from '../runs.ts';
import Type, { type Static } from 'typebox';
import { RUN_ID, RUN_PARAMS, requireAdmin, sessionPeer, type RunParams } from './guard.ts';
import { bearer } from '../auth.ts';
import { sameWindows, type CheckpointInfo, type DerivedKind } from '../checkpoints.ts';
import { buildLayout } from '../../src/model/layout.ts';
import { PRESETS } from '../../src/model/config.ts';
import { decodeStateFrame, holdCounters, STATE_HEADER_MAX, stateFrameBytes, StateFrameError } from '../../src/protocol/state-frame.ts';
import { stateCheckBatchCount } from '../../src/data/sampler.ts';
import { measuredLossError, uploadCounterError, uploadMemorisedError, uploadMomentumError, uploadShapeError } from '../checkpoint-validate.ts';
import type { StateLosses } from '../../src/protocol/memorised.ts';

const CKPT_PARAMS = Type.Object({ run: RUN_ID, ckpt: Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,63}$' }) }, { additionalProperties: false });
/** A state request's id (the scheduler's 12 random bytes in hex). */
const UPLOAD_PARAMS = Type.Object({ id: Type.String({ pattern: '^[0-9a-f]{24}$' }) }, { additionalProperties: false });

/** Route body limit: the largest preset's frame (the exact size is checked per request). */
const MAX_STATE_BYTES = Math.max(...Object.values(PRESETS).map((c) => stateFrameBytes(buildLayout(c).total, STATE_HEADER_MAX)));

export function registerCheckpointRoutes(ctx: AppContext): void {
  const { app, runs, checkpoints, scheduler, events, signer, clock, hub, evaluator, downloads, remeasure } = ctx;
  const admin = requireAdmin(ctx.adminToken);
  /**
   * State requests with an upload under way. A body is buffered whole before it is checked, so
   * one request takes one upload at a time: otherwise its peer could send the same request many
   * bodies at once, each up to the run's frame size, and hold them all in memory.
   */
  const uploading = new Set<string>();

  const find = (runId: string, id: string): CheckpointInfo => {
    if (!runs.get(runId)) throw new RunError(`no run "${runId}"`, 404);
    const c = checkpoints.get(runId, id);
    if (!c) throw new RunError(`no checkpoint "${id}" in run ${runId}`, 404);
    return c;
  };
  type P = { Params: Static<typeof CKPT_PARAMS> };
  /**
   * A 304 for a client that already has this content. `immutable`: the content never changes
   * under this ETag (a checkpoint's sha256); otherwise a cache asks again each time.
   */
  const cached = (req: FastifyRequest, reply: FastifyReply, etag: string, immutable = true): boolean => {
    void reply.header('etag', `"${etag}"`).header('cache-control', immutable ? 'public, max-age=31536000, immutable' : 'public, no-cache');
    if (req.headers['if-none-match'] === `"${etag}"`) {
      void reply.code(304).send();
      return true;
    }
    return false;
  };

  app.get<{ Params: RunParams }>('/api/runs/:run/checkpoints', { schema: { params: RUN_PARAMS } }, async (req) => {
    if (!runs.get(req.params.run)) throw new RunError(`no run "${req.params.run}"`, 404);
    const p = scheduler.pendingFor(req.params.run);
    return { checkpoints: checkpoints.list(req.params.run), pending: p ? { id: p.id, peerId: p.peerId, requestedAt: p.requestedAt } : null };
  });

  app.post<{ Params: RunParams }>('/api/runs/:run/checkpoints', { onRequest: admin, schema: { params: RUN_PARAMS } }, async (req, reply) => {
    const run = runs.get(req.params.run);
    if (!run) throw new RunError(`no run "${req.params.run}"`, 404);
    if (run.status !== 'running') throw new RunError(`run ${run.id} is stopped`, 409);
    const p = scheduler.request(run.id);
    if (!p) throw new RunError(`run ${run.id} has no peer eligible to serve a checkpoint (live, off probation, no upload of its client refused)`, 409);
    return reply.code(202).send({ request: p.id, peerId: p.peerId });
  });

  app.get<P>('/api/runs/:run/checkpoints/:ckpt', { schema: { params: CKPT_PARAMS } }, async (req) => find(req.params.run, req.params.ckpt));

  app.get<P>('/api/runs/:run/checkpoints/:ckpt/file', { schema: { params: CKPT_PARAMS } }, async (req, reply) => {
    const c = find(req.params.run, req.params.ckpt);
    // The file goes out as it is on disk, under its sha256 as the ETag: one truncated or damaged
    // (a bad disk, a backup restored short) is withdrawn and named instead, never served as the
    // checkpoint. Its size is checked each time, its sha256 once (checkpoints.damage).
    const damage = await checkpoints.damage(c);
    if (damage !== null) {
      if (checkpoints.withdrawDamaged(c)) {
        events.append(c.runId, 'checkpoint-deleted', null, { id: c.id, reason: `withdrawn: ${damage}`.slice(0, 500) });
        req.log.error({ run: c.runId, checkpoint: c.id, damage }, 'checkpoint withdrawn: its file does not match its record; its files are left on disk');
      }
      throw new RunError(`checkpoint "${c.id}" of run ${c.runId} is damaged on disk and was withdrawn`, 404);
    }
    if (cached(req, reply, c.sha256)) return reply;
    void reply.type('application/octet-stream').header('content-disposition', `attachment; filename="${c.runId}-${c.file}"`);
    return downloads.send(req, reply, { path: checkpoints.path(c), bytes: c.bytes });
  });

  /**
   * Streams a file derived at save time (checkpoints.ts): no request decodes a checkpoint. Every
   * download is under the download budget (server/download-budget.ts): a live peer's (`peer`,
   * sessionPeer) under the run's peers' share, any other under the anonymous one.
   */
  const sendDerived = async (req: FastifyRequest, reply: FastifyReply, c: CheckpointInfo, kind: DerivedKind, type: string, download: string | null, peer?: string) => {
    const path = await checkpoints.derived(c, kind);
    if (download) void reply.header('content-disposition', `attachment; filename="${download}"`);
    return downloads.send(req, reply.type(type), { path, bytes: (await stat(path)).size }, peer !== undefined ? { peer } : {});
  };

  app.get<P>('/api/runs/:run/checkpoints/:ckpt/state', { schema: { params: CKPT_PARAMS } }, async (req, reply) => {
    const c = find(req.params.run, req.params.ckpt);
    // The frame carries the coordinator's measurement, which a remeasure rewrites (new windows,
    // an older coordinator's figure): its ETag names that too, so neither a cache nor a resumed
    // download (If-Range) joins the old frame to the new one.
    if (cached(req, reply, `${c.sha256}-state-${c.valBatches ?? 0}-${c.valLoss ?? 'none'}`, false)) return reply;
    return sendDerived(req, reply, c, 'state', 'application/octet-stream', null, sessionPeer(ctx, req, c.runId));
  });

  app.get<P>('/api/runs/:run/checkpoints/:ckpt/export/config.json', { schema: { params: CKPT_PARAMS } }, async (req, reply) => {
    const c = find(req.params.run, req.params.ckpt);
    return sendDerived(req, reply, c, 'hfConfig', 'application/json; charset=utf-8', 'config.json');
  });

  app.get<P>('/api/runs/:run/checkpoints/:ckpt/export/model.safetensors', { schema: { params: CKPT_PARAMS } }, async (req, reply) => {
    const c = find(req.params.run, req.params.ckpt);
    if (cached(req, reply, `${c.sha256}-hf`)) return reply;
    return sendDerived(req, reply, c, 'hfModel', 'application/octet-stream', 'model.safetensors');
  });

  app.delete<P>('/api/runs/:run/checkpoints/:ckpt', { onRequest: admin, schema: { params: CKPT_PARAMS } }, async (req) => {
    const c = find(req.params.run, req.params.ckpt);
    checkpoints.delete(c);
    events.append(c.runId, 'checkpoint-deleted', null, { id: c.id });
    req.log.info({ run: c.runId, checkpoint: c.id }, 'checkpoint deleted');
    return { deleted: c.id };
  });

  /**
   * A peer whose upload was refused served a bad state: its client's earlier checkpoints of the
   * run (its own, and any other id's asked from its address or IPv6 /48) are withdrawn too. Each passed its measurement, but with no checkpoint before it the only bound
   * is ln(vocab) + margin, under which a poisoned state can measure (a φ negated after 18 rounds
   * measured 5.44 against 6.05), and the bound for every later upload is the newest one's loss.
   */
  const withdrawFrom = (runId: string, peerId: string, log: FastifyRequest['log']) => {
    for (const c of checkpoints.list(runId).filter((x) => scheduler.withdrawnWith(x.peerId, peerId))) {
      checkpoints.delete(c);
      const whose = c.peerId === peerId ? 'this peer' : `peer ${peerId} of its client`;
      events.append(runId, 'checkpoint-deleted', peerId, { id: c.id, reason: `withdrawn: a later upload of ${whose} was refused` });
      log.warn({ run: runId, checkpoint: c.id, peer: peerId }, 'checkpoint withdrawn: its peer served a refused state');
    }
  };

  // ---------- peer upload ----------

  // The binary parser (and its checkpoint-sized limit) exists only inside this plugin's scope:
  // every other route refuses an octet-stream body with 415 instead of buffering it.
  void app.register(async (scope) => {
    scope.addContentTypeParser('application/octet-stream', { parseAs: 'buffer', bodyLimit: MAX_STATE_BYTES }, (_req, body, done) => done(null, body));

    type U = { Params: Static<typeof UPLOAD_PARAMS>; Body: Buffer };
    scope.post<U>('/api/peer/state/:id', {
      bodyLimit: MAX_STATE_BYTES,
      schema: { params: UPLOAD_PARAMS },
      // Everything that can be checked before reading the body is: who, which request, how big.
      onRequest: async (req: FastifyRequest<U>, reply) => {
        const token = bearer(req.headers.authorization);
        if (!token) return reply.code(401).send({ error: 'session token required: Authorization: Bearer <session from welcome>' });
        // An expired session still answers the coordinator's own request to this live peer (a
        // peer connected for longer than the session lifetime); peek() below checks that.
        const claims = signer.verify(token, { allowExpired: true });
        if (!claims) return reply.code(403).send({ error: 'session token is not valid' });
        const id = (req.params as { id?: string }).id ?? '';
        const p = scheduler.peek(id, claims.p);
        if (!p) return reply.code(404).send({ error: `no open state request ${id.slice(0, 32)} for peer ${claims.p}` });
        const run = runs.get(p.runId);
        if (!run) return reply.code(404).send({ error: `run ${p.runId} no longer exists` });
        const max = stateFrameBytes(buildLayout(run.model).total, STATE_HEADER_MAX);
        const len = Number(req.headers['content-length']);
        if (!Number.isInteger(len)) return reply.code(411).send({ error: 'content-length required' });
        if (len > max) return reply.code(413).send({ error: `state frame of ${len} bytes exceeds ${max} for run ${run.id}` });
        if (!String(req.headers['content-type'] ?? '').startsWith('application/octet-stream')) return reply.code(415).send({ error: 'content-type must be application/octet-stream' });
        if (uploading.has(p.id)) return reply.code(409).send({ error: `state request ${p.id} already has an upload under way; one at a time` });
        uploading.add(p.id);
        // Given back when the answer is sent or the connection drops, whichever comes first.
        reply.raw.once('close', () => uploading.delete(p.id));
      },
    }, async (req, reply) => {
      const claims = signer.verify(bearer(req.headers.authorization)!, { allowExpired: true })!;
      const p = scheduler.peek(req.params.id, claims.p);
      if (!p) return reply.code(404).send({ error: 'state request already answered or lapsed' });
      const run = runs.get(p.runId)!;
      let frame;
      try {
        frame = decodeStateFrame(new Uint8Array(req.body.buffer, req.body.byteOffset, req.body.byteLength));
      } catch (err) {
        if (err instanceof StateFrameError) return reply.code(400).send({ error: err.message });
        throw err;
      }
      // Checks 1-2 (server/checkpoint-validate.ts): a malformed upload leaves the request open.
      const shape = uploadShapeError(run, frame);
      if (shape) return reply.code(400).send({ error: shape });
      // Checks 3-4 judge what the peer served: the request is used up either way.
      scheduler.take(p.id, claims.p);
      const refuse = (reason: string) => {
        scheduler.reject(p, reason);
        withdrawFrom(run.id, claims.p, req.log);
        return reply.code(422).send({ error: `checkpoint rejected: ${reason}` });
      };
      const impossible = uploadCounterError(frame, hub.maxStep(claims.p)) ?? uploadMomentumError(frame);
      if (impossible) return refuse(impossible);
      let m: StateLosses;
      const valBatches = stateCheckBatchCount(run.model, run.train);
      try {
        m = await evaluator.measure(run, frame.phi, valBatches);
      } catch (err) {
        const reason = `not evaluated: ${(err as Error).message}`;
        scheduler.abandon(p, reason);
        return reply.code(503).send({ error: reason });
      }
      const newest = checkpoints.current(run);
      const bad = measuredLossError(m.val, newest?.valLoss ?? null, run.model.vocab) ?? uploadMemorisedError(m);
      if (bad) return refuse(bad);
      const measured = m.val;
      // Stored with the coordinator's measurement (the peer's own figure is kept in the event
      // only), and within a round of the step the run's peers agree on: every newcomer that starts
      // from this checkpoint takes its step, and the next consensus is never below it.
      const held = holdCounters(frame.meta, hub.stepConsensus(run.id, undefined, newest), run.train.H);
      if (held !== frame.meta) req.log.info({ run: run.id, claimed: frame.meta.step, stored: held.step }, 'checkpoint counters held to the peers\' consensus');
      // Its token count is only shown, but it is the uploader's claim too: no replica has trained
      // more tokens than its step's batches hold.
      const tokens = Math.min(held.tokens, held.step * run.train.batch * run.train.seqLen);
      let info = await checkpoints.save(run, { ...frame, meta: { ...held, valLoss: measured, tokens } }, claims.p, clock.now(), valBatches);
      // The run's windows changed while this was measured or saved (its batch or seqLen; the
      // change forgot every other measurement): the figure is the old windows', so the checkpoint
      // is kept but not offered, nor the next upload's bound, until measured again on the new ones.
      if (!sameWindows(run, runs.get(run.id) ?? run)) {
        checkpoints.forgetMeasurements(run.id, info.id);
        info = { ...info };
        delete info.valBatches;
        req.log.info({ run: run.id, checkpoint: info.id }, 'the run\'s windows changed while the checkpoint was measured: it waits to be measured again');
        void remeasure();
      }
      events.append(run.id, 'checkpoint-saved', claims.p, { ...info, claimedValLoss: frame.meta.valLoss });
      req.log.info({ run: run.id, checkpoint: info.id, step: info.step, bytes: info.bytes, valLoss: measured, evalMs: Math.round(evaluator.stats.lastMs) }, 'checkpoint saved');
      return reply.code(201).send(info);
    });
  });
}
