// Anonymous downloads cannot exhaust the coordinator's memory: the bootstrap state and the
// Hugging Face export are derived once when a checkpoint is saved and streamed from disk, so 60
// concurrent exports and 60 concurrent state downloads of a `tiny` checkpoint cost about the
// sockets' buffers, not a decoded checkpoint each (measured: the peak RSS growth is printed). A
// checkpoint saved before derived files existed gets them once, however many requests wait.
// The octet-stream body parser exists only on the state upload route.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { DERIVED, type CheckpointInfo } from '../server/checkpoints.ts';
import { preset } from '../src/model/config.ts';
import { buildLayout } from '../src/model/layout.ts';
import { initParams } from '../src/model/init.ts';
import { encodeStateFrame } from '../src/protocol/state-frame.ts';
import { startServer, type TestServer } from './support/coordinator.ts';
import { drain } from './support/attacks.ts';

let s: TestServer;
let ck: CheckpointInfo;
const layout = buildLayout(preset('tiny'));
const phi = initParams(layout, 7);
const momentum = new Float32Array(layout.total).map((_, i) => (i % 13) * 1e-3);

beforeAll(async () => {
  // Places for every download at once from this one address: what is measured here is the memory
  // each download costs; the caps on them are tests/server.download-budget.test.ts's.
  s = await startServer({ downloads: { perAddressStreams: 120 } });
  const run = s.c.runs.get('default')!;
  ck = await s.c.checkpoints.save(run, { meta: { runId: 'default', step: 40, round: 4, floats: layout.total, valLoss: 3.25, tokens: 40960 }, phi, momentum }, null, Date.now());
});
afterAll(() => s?.close());

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

const download = (path: string) => drain(s.url + path);

describe('checkpoint downloads', () => {
  it('derives the state and the export once at save time', () => {
    for (const name of Object.values(DERIVED)) expect(existsSync(join(s.c.checkpoints.dir('default'), name(ck.id))), name(ck.id)).toBe(true);
  });

  it('serves 60 concurrent exports and 60 concurrent state downloads in bounded memory', async () => {
    const base = `/api/runs/default/checkpoints/${ck.id}`;
    const expected = {
      state: sha(encodeStateFrame({ meta: { runId: 'default', step: 40, round: 4, floats: layout.total, valLoss: 3.25, tokens: 40960 }, phi, momentum })),
      hf: sha(readFileSync(join(s.c.checkpoints.dir('default'), DERIVED.hfModel(ck.id)))),
    };
    const before = process.memoryUsage();
    let peakRss = before.rss, peakBuffers = before.arrayBuffers;
    const sampler = setInterval(() => {
      const m = process.memoryUsage();
      peakRss = Math.max(peakRss, m.rss);
      peakBuffers = Math.max(peakBuffers, m.arrayBuffers);
    }, 2);
    let results;
    try {
      results = await Promise.all([
        ...Array.from({ length: 60 }, () => download(`${base}/export/model.safetensors`)),
        ...Array.from({ length: 60 }, () => download(`${base}/state`)),
      ]);
    } finally {
      clearInterval(sampler);
    }
    expect(new Set(results.slice(0, 60).map((r) => `${r.status} ${r.sha}`))).toEqual(new Set([`200 ${expected.hf}`]));
    expect(new Set(results.slice(60).map((r) => `${r.status} ${r.sha}`))).toEqual(new Set([`200 ${expected.state}`]));
    const mb = (n: number) => (n / 1e6).toFixed(1);
    const served = results.reduce((n, r) => n + r.bytes, 0);
    console.log(`checkpoint ${mb(ck.bytes)} MB; 120 downloads served ${mb(served)} MB; peak growth: RSS ${mb(peakRss - before.rss)} MB, array buffers ${mb(peakBuffers - before.arrayBuffers)} MB`);
    // Decoding per request (as before) grew RSS by ~490 MB and array buffers by ~560 MB here
    // (~60 checkpoints); streaming by ~56 and ~30 MB, the server's and this in-process client's
    // socket buffers for 120 streams. Ten checkpoints' worth of array buffers is a generous bound
    // between the two. RSS also holds the heap and the allocator's arenas, which grow with how far
    // this in-process reader falls behind: a fresh-clone run beside other work reached 103 MB, so
    // its bound is 25 checkpoints' worth (about 210 MB), still under half of decoding's growth.
    expect(peakBuffers - before.arrayBuffers).toBeLessThan(10 * ck.bytes);
    expect(peakRss - before.rss).toBeLessThan(25 * ck.bytes);
  });

  it('derives the files of an older checkpoint once for many waiting requests', async () => {
    for (const name of Object.values(DERIVED)) unlinkSync(join(s.c.checkpoints.dir('default'), name(ck.id)));
    const store = s.c.checkpoints;
    const load = store.load.bind(store);
    let loads = 0;
    store.load = (info) => { loads++; return load(info); };
    try {
      const rs = await Promise.all(Array.from({ length: 20 }, () => download(`/api/runs/default/checkpoints/${ck.id}/state`)));
      expect(new Set(rs.map((r) => r.status))).toEqual(new Set([200]));
      expect(new Set(rs.map((r) => r.bytes)).size).toBe(1);
      expect(loads).toBe(1);
      const cfg = await (await fetch(`${s.url}/api/runs/default/checkpoints/${ck.id}/export/config.json`)).json();
      expect(cfg).toMatchObject({ model_type: 'gpt2', vocab_size: 256 });
      expect(loads).toBe(1);
    } finally {
      store.load = load;
    }
  });

  it('parses octet-stream bodies only on the state upload route', async () => {
    const body = new Uint8Array(1 << 20);
    for (const [method, url, headers] of [
      ['POST', '/api/runs', s.admin],
      ['PATCH', '/api/runs/default', s.admin],
      ['POST', '/api/runs/default/checkpoints', s.admin],
    ] as const) {
      const r = await fetch(s.url + url, { method, headers: { ...headers, 'content-type': 'application/octet-stream' }, body });
      expect(r.status, `${method} ${url}`).toBe(415);
    }
  });
});
