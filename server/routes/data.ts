// A run's token files and validation set. ETag = the file's sha256 from the dataset manifest,
// so volunteers revalidate with If-None-Match and a browser cache serves repeat visits. Each
// download is under the download budget (server/download-budget.ts): a live peer of the run that
// sends its session (its welcome's token, Authorization: Bearer) downloads from the run's peers'
// share, anyone else from the anonymous one (sessionPeer, ./guard.ts). The bytes and the ETag are
// the same for both, so a cache may serve either's copy to either (no Vary); only a refusal (429)
// differs, and no refusal is stored (no-store, no ETag: the onSend hook of ./web.ts).
import { statSync } from 'node:fs';
import type { AppContext } from '../context.ts';
import { RunError } from '../runs.ts';
import Type, { type Static } from 'typebox';
import { RUN_ID, RUN_PARAMS, sessionPeer, type RunParams } from './guard.ts';
import { fileRefs } from '../datasets.ts';

const FILE_PARAMS = Type.Object({ run: RUN_ID, file: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$' }) }, { additionalProperties: false });

export function registerDataRoutes(ctx: AppContext): void {
  const { app, runs, datasets, downloads } = ctx;

  const manifestOf = (runId: string) => {
    const run = runs.get(runId);
    if (!run) throw new RunError(`no run "${runId}"`, 404);
    const m = datasets.manifest(run.dataset);
    if (!m) throw new RunError(`dataset "${run.dataset}" of run ${runId} is missing on the coordinator`, 404);
    return m;
  };

  app.get<{ Params: RunParams }>('/api/runs/:run/data', { schema: { params: RUN_PARAMS } }, async (req) => {
    const m = manifestOf(req.params.run);
    return { dataset: m.name, tokenizer: m.tokenizer, vocab: m.vocab, files: m.files, ...fileRefs(req.params.run, m) };
  });

  app.get<{ Params: Static<typeof FILE_PARAMS> }>('/api/runs/:run/data/:file', { schema: { params: FILE_PARAMS } }, async (req, reply) => {
    const m = manifestOf(req.params.run);
    // Only names listed in the manifest are ever opened: no path from the URL reaches the disk.
    const f = m.files.find((x) => x.name === req.params.file);
    if (!f) throw new RunError(`dataset ${m.name} has no file "${req.params.file}"`, 404);
    const etag = `"${f.sha256}"`;
    void reply.header('etag', etag).header('cache-control', 'public, max-age=300');
    if (req.headers['if-none-match'] === etag) return reply.code(304).send();
    const path = datasets.filePath(m.name, f.name);
    const size = statSync(path).size;
    if (size !== f.bytes) throw new Error(`dataset ${m.name}/${f.name} is ${size} bytes on disk but ${f.bytes} in its manifest`);
    const peer = sessionPeer(ctx, req, req.params.run);
    return downloads.send(req, reply.type('application/octet-stream').header('x-token-dtype', f.dtype), { path, bytes: size }, peer !== undefined ? { peer } : {});
  });
}
