// The operator's view (server/ops.ts): GET /api/ops/metrics in Prometheus's text format, for the
// admin token only. Each figure is checked against what was done to the coordinator here: a peer
// joining moves the connection and live-peer gauges, its report the stored rows, an anonymous
// read the read counters and the read worker's jobs, a refused read the refusals; two
// coordinators in one process keep registries of their own.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawPeer, report, startServer, type TestServer } from './support/coordinator.ts';
import { stateCheckBatchCount } from '../src/data/sampler.ts';
import { preset } from '../src/model/config.ts';
import { buildLayout } from '../src/model/layout.ts';
import { initParams } from '../src/model/init.ts';

let s: TestServer;
let other: TestServer;
beforeAll(async () => {
  s = await startServer({ reads: { perAddressMsPerS: 1, perAddressBurstMs: 1e-9, totalMsPerS: 1000, totalBurstMs: 8000 } });
  other = await startServer({});
});
afterAll(async () => { await s?.close(); await other?.close(); });

/** The samples of a scrape: `name{labels}` -> value. */
async function scrape(t: TestServer = s): Promise<Map<string, number>> {
  const r = await t.c.app.inject({ method: 'GET', url: '/api/ops/metrics', headers: t.admin });
  expect(r.statusCode).toBe(200);
  expect(r.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
  const out = new Map<string, number>();
  for (const line of r.body.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    expect(m, `a sample line: ${line}`).not.toBeNull();
    out.set(m![1]!, Number(m![2]));
  }
  return out;
}

describe('ops metrics', () => {
  it('answers only the admin token', async () => {
    const none = await s.c.app.inject({ method: 'GET', url: '/api/ops/metrics' });
    expect(none.statusCode).toBe(401);
    const wrong = await s.c.app.inject({ method: 'GET', url: '/api/ops/metrics', headers: { authorization: `Bearer ${'0'.repeat(64)}` } });
    expect(wrong.statusCode).toBe(403);
  });

  it('counts what the coordinator did', async () => {
    const before = await scrape();
    expect(before.get('murmur_connections')).toBe(0);
    expect(before.get('murmur_live_peers{run="default"}')).toBe(0);
    expect(before.has('murmur_nodejs_eventloop_lag_p99_seconds')).toBe(true);
    expect(before.get('murmur_db_bytes')).toBeGreaterThan(0);

    const { peer } = await RawPeer.join(s.wsUrl);
    try {
      peer.send(report(1));
      expect(await peer.next((m) => m.t === 'ack' && m.seq === 1)).toEqual({ t: 'ack', seq: 1 });
      // One anonymous read served (it overdraws this address's tiny budget), the next refused.
      expect((await s.c.app.inject({ method: 'GET', url: '/api/runs/default/metrics' })).statusCode).toBe(200);
      expect((await s.c.app.inject({ method: 'GET', url: '/api/runs/default/metrics?from=1' })).statusCode).toBe(429);
      // One anonymous download of the run's validation file, sent whole.
      const val = (await s.c.app.inject({ method: 'GET', url: '/api/runs/default/data' })).json<{ val: { url: string; bytes: number } }>().val;
      expect((await s.c.app.inject({ method: 'GET', url: val.url })).rawPayload.length).toBe(val.bytes);
      const after = await scrape();
      expect(after.get('murmur_downloads_total')).toBe(before.get('murmur_downloads_total')! + 1);
      expect(after.get('murmur_download_bytes_total')).toBe(before.get('murmur_download_bytes_total')! + val.bytes);
      expect(after.get('murmur_downloads_open')).toBe(0);
      expect(after.get('murmur_downloads_refused_total')).toBe(0);
      expect(after.get('murmur_connections')).toBe(1);
      expect(after.get('murmur_live_peers{run="default"}')).toBe(1);
      expect(after.get('murmur_report_rows{run="default"}')).toBe((before.get('murmur_report_rows{run="default"}') ?? 0) + 1);
      expect(after.get('murmur_frames_total')).toBeGreaterThan(before.get('murmur_frames_total')!);
      expect(after.get('murmur_reads_total')).toBe(before.get('murmur_reads_total')! + 1);
      expect(after.get('murmur_reads_refused_total')).toBe(before.get('murmur_reads_refused_total')! + 1);
      // Nothing here left an answer untaken or a run's streams full.
      expect(after.get('murmur_reads_cut_total')).toBe(0);
      expect(after.get('murmur_live_streams_displaced_total')).toBe(0);
      expect(after.get('murmur_read_worker_jobs_total')).toBe(before.get('murmur_read_worker_jobs_total')! + 1);
      expect(after.get('murmur_read_worker_starts_total')).toBe(1);
      expect(after.get('murmur_answers_total{source="computed"}')).toBe(before.get('murmur_answers_total{source="computed"}')! + 1);
    } finally {
      peer.close();
    }
    // Training as the coordinator vouches for it: no checkpoint, then one it measured.
    expect(before.has('murmur_checkpoint_step{run="default"}')).toBe(false);
    const run = s.c.runs.get('default')!;
    const layout = buildLayout(preset('tiny'));
    const ck = await s.c.checkpoints.save(run, {
      meta: { runId: 'default', step: 40, round: 4, floats: layout.total, valLoss: 3.25, tokens: 40960 },
      phi: initParams(layout, 7), momentum: new Float32Array(layout.total),
    }, null, Date.now() - 90_000, stateCheckBatchCount(run.model, run.train));
    const withCk = await scrape();
    expect(withCk.get('murmur_checkpoint_step{run="default"}')).toBe(ck.step);
    expect(withCk.get('murmur_checkpoint_val_loss{run="default"}')).toBe(3.25);
    expect(withCk.get('murmur_checkpoint_age_seconds{run="default"}')).toBeGreaterThanOrEqual(90);
    expect(withCk.get('murmur_run_step{run="default"}')).toBe(ck.step); // no live peer: the checkpoint is the floor
    // Another coordinator in the same process saw none of it.
    const theirs = await scrape(other);
    expect(theirs.get('murmur_reads_total')).toBe(0);
    expect(theirs.get('murmur_frames_total')).toBe(0);
  });
});
