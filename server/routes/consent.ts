// The widget's consent window (server/consent.ts): the frame registers a nonce for a click on its
// Start, the consent window (/consent#nonce) reads what it names and posts the visitor's answer,
// and the frame claims the answer; an allowed request is then the session the frame trains
// under, held by the frame (claim, release) and watched by the window (watch, stop). Anonymous, so each request is bounded per client address
// and in all (the store's limits; a full store makes room rather than refusing), and a site may ask only for a run that lists it as an embedding
// site: the frame says which site it is on, and nothing else is believed of it.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AppContext } from '../context.ts';
import { addressKey } from '../address-budget.ts';
import { ConsentError, type ConsentEntry, type ConsentRequests } from '../consent.ts';
import { ConsentDecision, ConsentParams, ConsentRequest, ConsentStop, type ConsentLink, type ConsentReply } from '../../src/protocol/api.ts';
import { RunError } from '../runs.ts';
import { buildLayout } from '../../src/model/layout.ts';
import { DEFAULT_DEADLINE, exchangeLink } from '../../src/protocol/exchange-link.ts';
import type { RunInfo } from '../../src/protocol/messages.ts';

/** How many runs' link accounts are kept at once (linkOf): each a few numbers; the map is cleared when full. */
const LINKS_KEPT = 64;

/**
 * What `run`'s exchange asks of a visitor's link (exchangeLink of its model and compression), as
 * the consent window states it; kept per model and compression, since a claim comes every 5 s
 * from each frame and the layout is the same each time.
 */
function linkOf(cache: Map<string, ConsentLink>, run: RunInfo): ConsentLink {
  const key = `${run.compression} ${JSON.stringify(run.model)}`;
  let link = cache.get(key);
  if (link === undefined) {
    const l = exchangeLink(run.compression, buildLayout(run.model).total);
    link = { bytes: l.bytes, leastBytesPerS: l.leastBytesPerS, firstBytesPerS: l.firstBytesPerS, waitS: DEFAULT_DEADLINE.maxMs / 1000, firstWaitS: DEFAULT_DEADLINE.initialMs / 1000 };
    if (cache.size >= LINKS_KEPT) cache.clear();
    cache.set(key, link);
  }
  return link;
}

export function registerConsentRoutes(ctx: AppContext, consents: ConsentRequests): void {
  const { app, runs } = ctx;
  const links = new Map<string, ConsentLink>();
  const reply = (_nonce: string, e: ConsentEntry): ConsentReply => {
    const info = runs.get(e.run);
    return {
      run: e.run, runName: info?.name ?? e.run, site: e.site, state: e.state, expiresAt: e.expiresAt, ...(info ? { link: linkOf(links, info) } : {}),
      maxIntensity: e.maxIntensity,
    };
  };
  // A consent answer is about this moment: never cached.
  const fresh = (r: FastifyReply) => r.header('cache-control', 'no-store');
  /** Answers with what a visitor's side (the window's answer or Stop, the frame's release) made of a request, logged. */
  const told = (req: FastifyRequest, res: FastifyReply, e: ConsentEntry, what: string) => {
    req.log.info({ run: e.run, site: e.site, state: e.state }, what);
    return fresh(res).send(reply('', e));
  };

  app.post<{ Body: ConsentRequest }>('/api/consent', { schema: { body: ConsentRequest } }, async (req, res) => {
    const { nonce, run, site, maxIntensity } = req.body;
    let e: ConsentEntry;
    try {
      const info = runs.get(run);
      if (!info) throw new RunError(`no run "${run}"`, 404);
      if (info.status === 'stopped') throw new RunError(`run ${run} is stopped: there is nothing to train`, 409);
      if (!runs.embedSites(run).includes(site)) {
        req.log.warn({ run, site }, 'consent asked from a site the run does not list');
        throw new ConsentError(`${site} is not an embedding site of run ${run}: the run's admin adds it to embedSites`, 403);
      }
      e = consents.open(nonce, run, site, addressKey(req.ip), maxIntensity ?? 1);
    } catch (err) {
      // Sent here: a 429 says when a place frees (Retry-After); and the consent window, open
      // already, hears the reason (refuse).
      if (!(err instanceof ConsentError || err instanceof RunError)) throw err;
      consents.refuse(nonce, err.message);
      if (err.statusCode === 429) void res.header('retry-after', String(Math.ceil(consents.limits.ttlMs / 1000)));
      return fresh(res).code(err.statusCode).send({ error: err.message });
    }
    return fresh(res).code(201).send(reply(nonce, e));
  });

  app.get<{ Params: ConsentParams }>('/api/consent/:nonce', { schema: { params: ConsentParams } }, async (req, res) =>
    fresh(res).send(reply(req.params.nonce, consents.get(req.params.nonce))));

  app.post<{ Params: ConsentParams; Body: ConsentDecision }>('/api/consent/:nonce/decision', {
    schema: { params: ConsentParams, body: ConsentDecision },
  }, async (req, res) => told(req, res, consents.decide(req.params.nonce, req.body.allow), 'consent answered'));

  // The frame's side (claim, release) and the window's watch of the session and its leaving (its pagehide): no body.
  for (const side of ['claim', 'release', 'watch', 'leave'] as const) {
    app.post<{ Params: ConsentParams }>(`/api/consent/:nonce/${side}`, { schema: { params: ConsentParams } }, async (req, res) => {
      const e = consents[side](req.params.nonce);
      return side === 'release' ? told(req, res, e, 'consent session released')
        : side === 'leave' ? told(req, res, e, 'consent window left')
        : fresh(res).send(reply(req.params.nonce, e));
    });
  }

  app.post<{ Params: ConsentParams; Body: ConsentStop }>('/api/consent/:nonce/stop', {
    schema: { params: ConsentParams, body: ConsentStop },
  }, async (req, res) => told(req, res, consents.stop(req.params.nonce, req.body.closed), 'consent session stopped'));
}
