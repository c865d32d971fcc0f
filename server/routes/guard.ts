// Researcher actions need the admin token as `Authorization: Bearer <token>`: missing → 401,
// wrong → 403. Checked in onRequest, before the body is read, so an unauthorised request
// cannot make the server parse (or store) anything.
import type { FastifyReply, FastifyRequest } from 'fastify';
import Type, { type Static } from 'typebox';
import { ID_PATTERN } from '../../src/protocol/messages.ts';
import { bearer, tokenEquals } from '../auth.ts';

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

/** A run id in the path: the params schema (and its type) of every per-run route. */
export const RUN_ID = Type.String({ pattern: ID_PATTERN });
export const RUN_PARAMS = Type.Object({ run: RUN_ID }, { additionalProperties: false });
export type RunParams = Static<typeof RUN_PARAMS>;
