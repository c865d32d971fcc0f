// Researcher actions need the admin token as `Authorization: Bearer <token>`: missing → 401,
// wrong → 403. Checked in onRequest, before the body is read, so an unauthorised request
// cannot make the server parse (or store) anything.
import type { FastifyReply, FastifyRequest } from 'fastify';
import Type, { type Static } from 'typebox';
import { ID_PATTERN } from '../../src/protocol/messages.ts';
import { bearer, tokenEquals } from '../auth.ts';
import type { AppContext } from '../context.ts';

/**
 * The largest request body an anonymous client may send (a consent request is under 400 bytes).
 * It was the admin's 64 KiB for every route: a request that announced 64 KiB and sent it a byte at
 * a time held that much for the 10 minutes of requestTimeout, on as many connections as the client
 * opened (tests/server.body-limits.test.ts).
 */
export const ANON_BODY_BYTES = 1024;
/** The largest run config the admin may send (a run with 100 embedding sites is ~21 KB), read only after the admin token. */
export const ADMIN_BODY_BYTES = 64 * 1024;

export function requireAdmin(adminToken: string) {
  return async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const presented = bearer(req.headers.authorization);
    if (presented === null) {
      req.log.warn({ url: req.url }, 'admin action without a token');
      return reply.code(401).header('www-authenticate', 'Bearer realm="murmur-admin"')
        .send({ error: 'admin token required: send Authorization: Bearer <token> (printed on first start, stored in <data-dir>/admin-token)' });
    }
    if (!tokenEquals(presented, adminToken)) {
      req.log.warn({ url: req.url }, 'admin action with a wrong token');
      return reply.code(403).send({ error: 'admin token is wrong' });
    }
  };
}

/**
 * The live peer of `runId` whose session the request presents (Authorization: Bearer, the token
 * of its welcome), or undefined. Its downloads of the run's files (its data shards, the validation
 * file, the offered checkpoint's state) come from the run's peers' share of the download budget
 * (server/download-budget.ts). Only a token this coordinator's keys signed, not expired, for this
 * run, whose peer is connected to it now, counts; anything else (none, forged, expired, another
 * run's, a peer that left) is an anonymous download like any other, never refused for it: it is
 * no less than what dropping the header would get, and a volunteer whose session lapsed still
 * downloads.
 */
export function sessionPeer(ctx: Pick<AppContext, 'signer' | 'hub'>, req: FastifyRequest, runId: string): string | undefined {
  const token = bearer(req.headers.authorization);
  const claims = token === null ? null : ctx.signer.verify(token);
  return claims && claims.r === runId && ctx.hub.livePeers(runId).includes(claims.p) ? claims.p : undefined;
}

/** A run id in the path: the params schema (and its type) of every per-run route. */
export const RUN_ID = Type.String({ pattern: ID_PATTERN });
export const RUN_PARAMS = Type.Object({ run: RUN_ID }, { additionalProperties: false });
export type RunParams = Static<typeof RUN_PARAMS>;
