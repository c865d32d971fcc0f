// The headless volunteer end to end: a real coordinator in-process (port 0) with a `micro` run,
// two volunteers that train on the GPU Trainer (Dawn on SwiftShader) in this process, pair with
// each other through the coordinator's ready pool, swap φ/Δ over WebRTC (@roamhq/wrtc), and
// whose reports land in SQLite, in the REST metrics query and in the live SSE stream.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import wrtc from '@roamhq/wrtc';
import type { WebSocketCtor } from '../src/sync/signaling-client.ts';
import { runVolunteer, type RoundEvent, type Volunteer, type VolunteerOptions } from '../src/volunteer/volunteer.ts';
import { CoordinatorRefusedError, DataIntegrityError, VolunteerConfigError, VolunteerStoppedError } from '../src/volunteer/errors.ts';
import { downloadVerified } from '../src/volunteer/data.ts';
import { buildLayout } from '../src/model/layout.ts';
import { preset } from '../src/model/config.ts';
import { startServer, until, webSocketFrom, type TestServer } from './support/coordinator.ts';
import type { Logger } from '../src/sync/components.ts';

let s: TestServer;
let stream: { events: Record<string, unknown>[]; abort: () => void } | null = null;
const volunteers: Volunteer[] = [];
const components = { WebSocket: WebSocket as unknown as WebSocketCtor, rtc: wrtc };
const t0 = Date.now();
/** MURMUR_TEST_LOG=1 prints each volunteer's log with elapsed seconds (for a failing run). */
const logged = (name: string) => {
  if (!process.env.MURMUR_TEST_LOG) return components;
  const line = (level: string) => (m: string, f?: Record<string, unknown>) => console.log(`${((Date.now() - t0) / 1000).toFixed(1)}s ${name} ${level} ${m} ${f ? JSON.stringify(f) : ''}`);
  const logger: Logger = { debug: line('debug'), info: line('info'), warn: line('warn'), error: line('error') };
  return { ...components, logger };
};

/** Live `report` events of one run's SSE stream, collected until abort. */
function collectStream(url: string): { events: Record<string, unknown>[]; abort: () => void } {
  const events: Record<string, unknown>[] = [];
  const ctl = new AbortController();
  void (async () => {
    const res = await fetch(url, { signal: ctl.signal });
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += dec.decode(value, { stream: true });
      let cut: number;
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        const frame = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        const ev = /^event: (.*)$/m.exec(frame)?.[1];
        const data = /^data: (.*)$/m.exec(frame)?.[1];
        if (ev === 'report' && data) events.push(JSON.parse(data) as Record<string, unknown>);
      }
    }
  })().catch(() => { /* aborted */ });
  return { events, abort: () => ctl.abort() };
}

beforeAll(async () => {
  s = await startServer();
  const r = await s.c.app.inject({
    method: 'POST', url: '/api/runs', headers: s.admin,
    payload: {
      id: 'micro', dataset: 'moby-dick', preset: 'micro',
      train: { batch: 4, H: 8, lr: 3e-3, warmupSteps: 4, totalSteps: 400 },
      // A generous pool wait: the two replicas share two loaded cores, so their rounds drift.
      pairWaitFrac: 3,
    },
  });
  expect(r.statusCode).toBe(201);
});

afterAll(async () => {
  // An open event stream would hold the server's close.
  stream?.abort();
  await Promise.all(volunteers.map((v) => v.stop('test over')));
  await s?.close();
});

describe('murmur volunteer (headless)', () => {
  it('two GPU volunteers join a micro run, the second from the first\'s state, pair with each other, and report to SQLite, REST and SSE', async () => {
    stream = collectStream(`${s.url}/api/runs/micro/stream`);
    // A newcomer's state request waits while the peer it asks is inside an outer round (the
    // snapshot is of a finished outer step), and with pairWaitFrac 3 a lone peer spends most of
    // its time waiting in the pool: give the request all the time the test has.
    const base: VolunteerOptions = {
      url: s.url, run: 'micro', backend: 'gpu', evalEveryRounds: 1, autotune: false, chunkSteps: 4,
      neighbours: { min: 1, max: 2 }, bootstrapTimeoutMs: 100_000,
    };
    const events: RoundEvent[][] = [[], []];
    const paired = (k: number) => events[k]!.filter((e) => e.exchange.outcome === 'paired');
    // A trains until told to stop; B joins once A is in, copies A's state over WebRTC, and trains
    // until it has done 3 rounds and the two have paired (who meets whom is the pool's draw).
    const a = runVolunteer(base, logged('[a]'));
    volunteers.push(a);
    a.onRound((e) => events[0]!.push(e));
    const ja = await a.joined;
    expect(ja.source).toBe('fresh');
    expect(ja.adapter).toMatch(/swiftshader|vulkan/i);
    // The GPU backend reports its matmul rates (here: the default shapes, not measured).
    expect(ja.matmul).toMatch(/^matmul rates not measured/);
    // A serves the state of its last outer step: until its first one there is none, and a
    // newcomer asking then (a loaded machine's slow first loop) rightly starts fresh.
    await until(() => events[0]!.length >= 1, 100_000, 'A\'s first outer step');
    const b = runVolunteer(base, logged('[b]'));
    volunteers.push(b);
    b.onRound((e) => events[1]!.push(e));
    const jb = await b.joined;
    expect(jb.source).toBe('peer');
    const ids = [ja.peerId, jb.peerId];
    await until(() => events[1]!.length >= 3 && paired(0).length > 0 && paired(1).length > 0, 100_000, '3 rounds of B and a pairing seen by both')
      .catch((err: Error) => { throw new Error(`${err.message}; B's rounds: ${JSON.stringify(events[1]!.map((e) => e.exchange.reason))}`); });
    const sb = await b.stop();
    const sa = await a.stop();
    expect(sb.rounds).toBeGreaterThanOrEqual(3);
    expect(sb.joinedFrom).toBe('peer');
    // B continued A's schedule: its step counter starts where A's state was.
    expect(sb.steps).toBeGreaterThanOrEqual(3 * 8);
    expect(sa.rounds).toBeGreaterThanOrEqual(1);
    for (const sum of [sa, sb]) expect(sum.unsentReports).toBe(0);

    // A pairing with each other, as both sides saw it, with both φ and Δ (2 x 35200 f32) each way.
    for (const e of paired(0)) expect(e.report.partner).toBe(ids[1]);
    for (const e of paired(1)) {
      expect(e.report.partner).toBe(ids[0]);
      expect(e.report.partnerDist).toBeGreaterThanOrEqual(0);
      expect(e.report.bytesIn).toBeGreaterThan(2 * 4 * 35_200);
      expect(e.report.bytesOut).toBeGreaterThan(2 * 4 * 35_200);
    }

    // SQLite: every round of both peers, each with train and validation loss.
    const total = sa.rounds + sb.rounds;
    const rows = s.c.db.prepare('SELECT peer_id AS peer, round, step, train_loss AS train, val_loss AS val, partner FROM reports WHERE run_id = ? ORDER BY peer_id, round')
      .all('micro') as { peer: string; round: number; step: number; train: number | null; val: number | null; partner: string | null }[];
    expect(rows).toHaveLength(total);
    expect(new Set(rows.map((r) => r.peer))).toEqual(new Set(ids));
    expect(rows.some((r) => r.peer === ids[1] && r.partner === ids[0])).toBe(true);
    for (const r of rows) {
      expect(r.val).not.toBeNull();
      expect(r.train).not.toBeNull();
    }
    // Learning happened: A's validation loss went down from a fresh model's; B, which copied a
    // trained state, starts below a fresh model's ln(256). (B's own few rounds, 3 × 8 steps on a
    // trained model, move its loss by less than the noise of one validation batch: on a loaded
    // machine its last was 3.342 against a first of 3.336.)
    const aRows = rows.filter((r) => r.peer === ids[0]);
    const bRows = rows.filter((r) => r.peer === ids[1]);
    expect(aRows.at(-1)!.val!).toBeLessThan(aRows[0]!.val!);
    expect(bRows[0]!.val!).toBeLessThan(Math.log(256));
    // B's steps continue the schedule from the state it copied (A's step at A's last outer step).
    expect(bRows.map((r) => r.step)).toEqual(bRows.map((_, k) => bRows[0]!.step + 8 * k));

    // REST: the same rows.
    const q = await (await fetch(`${s.url}/api/runs/micro/metrics`)).json() as { total: number; points: { peerId: string; valLoss: number | null }[] };
    expect(q.total).toBe(total);
    expect(q.points.filter((p) => p.valLoss !== null)).toHaveLength(total);

    // SSE: every report was pushed live.
    const live = stream;
    await until(() => live.events.length >= total, 5000, 'SSE report events');
    live.abort();
    expect(live.events).toHaveLength(total);
    expect(new Set(live.events.map((e) => e.peerId))).toEqual(new Set(ids));
  });

  it('GPU and CPU volunteers share one run: the CPU peer copies the GPU peer\'s state, they pair, and a later peer starts from a checkpoint one of them served', async () => {
    const r = await s.c.app.inject({
      method: 'POST', url: '/api/runs', headers: s.admin,
      payload: { id: 'mixed', dataset: 'moby-dick', preset: 'micro', train: { batch: 4, H: 8, lr: 3e-3, warmupSteps: 4 }, pairWaitFrac: 3 },
    });
    expect(r.statusCode).toBe(201);
    const base: VolunteerOptions = { url: s.url, run: 'mixed', evalEveryRounds: 1, autotune: false, chunkSteps: 4, neighbours: { min: 1, max: 2 } };
    const g = runVolunteer({ ...base, backend: 'gpu' }, logged('[g]'));
    volunteers.push(g);
    const gRounds: RoundEvent[] = [];
    g.onRound((e) => gRounds.push(e));
    const jg = await g.joined;
    await until(() => gRounds.length >= 1, 30_000, 'a first outer round of the GPU peer');

    // A CPU peer joins while the GPU peer is live: state over WebRTC, then pairing across backends.
    // Its state request may wait out the GPU peer's outer round, however long the pool wait; they
    // train until both are off probation (PROBATION_EXCHANGES exchanges with each other).
    // From another client address (127.0.0.2): exchanges within one address never end probation.
    const c = runVolunteer({ ...base, backend: 'cpu', bootstrapTimeoutMs: 100_000 }, { ...logged('[c]'), WebSocket: webSocketFrom('127.0.0.2') });
    volunteers.push(c);
    const cRounds: RoundEvent[] = [];
    c.onRound((e) => cRounds.push(e));
    const jc = await c.joined;
    expect(jc.source).toBe('peer');
    await until(() => s.c.hub.eligibleForDuty(jg.peerId) && s.c.hub.eligibleForDuty(jc.peerId), 160_000, 'G and C off probation')
      .catch((err: Error) => { throw new Error(`${err.message}; C's rounds: ${JSON.stringify(cRounds.map((e) => e.exchange.reason))}`); });
    expect(cRounds.some((e) => e.exchange.outcome === 'paired' && e.report.partner === jg.peerId)).toBe(true);

    // The coordinator asks one of them for its state (φ, momentum), measures it and stores a checkpoint.
    const req = await s.c.app.inject({ method: 'POST', url: '/api/runs/mixed/checkpoints', headers: s.admin });
    expect(req.statusCode).toBe(202);
    expect([jg.peerId, jc.peerId]).toContain(req.json().peerId);
    const ckpt = await until(async () => {
      const list = (await s.c.app.inject({ method: 'GET', url: '/api/runs/mixed/checkpoints' })).json() as { checkpoints: { id: string; step: number; round: number }[] };
      return list.checkpoints[0];
    }, 60_000, 'the checkpoint upload');
    expect(ckpt.step % 8).toBe(0); // labelled with the step of an outer step, where φ is from
    expect(ckpt.round).toBeGreaterThanOrEqual(1);
    await c.stop();
    await g.stop();

    // Nobody live: a new peer starts from the newest checkpoint, at its step.
    const d = runVolunteer({ ...base, backend: 'cpu', rounds: 1 }, logged('[d]'));
    volunteers.push(d);
    const dRounds: RoundEvent[] = [];
    d.onRound((e) => dRounds.push(e));
    expect((await d.joined).source).toBe('checkpoint');
    await d.done;
    expect(dRounds[0]!.report.step).toBe(ckpt.step + 8);
    expect(dRounds[0]!.report.valLoss!).toBeLessThan(Math.log(256) - 0.3);
  });

  it('sends what the run\'s compression setting says: φ as f16 and Δ as int8 on an int8 run', async () => {
    const r = await s.c.app.inject({
      method: 'POST', url: '/api/runs', headers: s.admin,
      payload: { id: 'packed', dataset: 'moby-dick', preset: 'micro', compression: 'int8', train: { batch: 2, H: 4 }, pairWaitFrac: 3 },
    });
    expect(r.statusCode).toBe(201);
    const base: VolunteerOptions = { url: s.url, run: 'packed', backend: 'cpu', evalEveryRounds: 0, chunkSteps: 4, neighbours: { min: 1, max: 2 } };
    const rounds: RoundEvent[] = [];
    // The first trains until stopped, so the second, whenever it is ready, finds it in the pool.
    const first = runVolunteer(base, logged('[p1]'));
    volunteers.push(first);
    first.onRound((e) => rounds.push(e));
    await first.joined;
    const second = runVolunteer({ ...base, rounds: 6 }, logged('[p2]'));
    volunteers.push(second);
    second.onRound((e) => rounds.push(e));
    await second.done;
    await first.stop();
    const paired = rounds.filter((e) => e.exchange.outcome === 'paired');
    expect(paired.length, `rounds: ${JSON.stringify(rounds.map((e) => e.exchange.reason ?? e.exchange.outcome))}`).toBeGreaterThan(0);
    const floats = buildLayout(preset('micro')).total;
    for (const e of paired) {
      // f16 φ (2 B) + int8 Δ (1 B and a scale per block) instead of 2 x 4 B: about 0.38x.
      const ratio = e.exchange.bytesSent / (8 * floats);
      expect(ratio).toBeGreaterThan(0.37);
      expect(ratio).toBeLessThan(0.42);
      expect(e.exchange.bytesReceived).toBe(e.exchange.bytesSent);
      expect(Number.isFinite(e.report.trainLoss as number)).toBe(true);
    }
  });

  it('leaves when a researcher stops the run, saying why', async () => {
    const r = await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id: 'stopme', dataset: 'moby-dick', preset: 'micro', train: { batch: 2, H: 4 } } });
    expect(r.statusCode).toBe(201);
    const v = runVolunteer({ url: s.url, run: 'stopme', backend: 'cpu', evalEveryRounds: 0 }, components);
    volunteers.push(v);
    let rounds = 0;
    v.onRound(() => rounds++);
    await v.joined;
    await until(() => rounds >= 1, 20_000, 'a first round');
    expect((await s.c.app.inject({ method: 'POST', url: '/api/runs/stopme/stop', headers: s.admin })).statusCode).toBe(200);
    const sum = await v.done;
    expect(sum.reason).toMatch(/^coordinator: run-stopped/);
    expect(sum.rounds).toBeGreaterThanOrEqual(1);
  });

  it('stop() ends a join held by a data download that sends nothing', async () => {
    // Before: the download had no end of its own and stop() could not reach it: a coordinator
    // that served the data a byte every few seconds (or none) held the volunteer at its join.
    const stalled: string[] = [];
    const stalling = (async (input: string | URL | Request, init?: RequestInit) => {
      const url = String(input instanceof Request ? input.url : input);
      if (!url.includes('/data/')) return fetch(input, init);
      stalled.push(url);
      return new Response(new ReadableStream<Uint8Array>({
        start(c) { init?.signal?.addEventListener('abort', () => c.error(init.signal!.reason), { once: true }); },
      }));
    }) as typeof fetch;
    const v = runVolunteer({ url: s.url, backend: 'cpu', joinTimeoutMs: 10_000 }, { ...components, fetch: stalling });
    v.joined.catch(() => {});
    await until(() => stalled.length > 0, 20_000, 'the volunteer to start downloading its data');
    await v.stop('stopped by the test');
    await expect(v.done).rejects.toBeInstanceOf(VolunteerStoppedError);
  });

  it('refuses bad options, an unknown run and data that does not match its hash, naming the problem', async () => {
    expect(() => runVolunteer({ url: 'not a url' }, components)).toThrow(VolunteerConfigError);
    expect(() => runVolunteer({ url: s.url, backend: 'tpu' as 'gpu' }, components)).toThrow(/--backend must be one of gpu, cpu/);
    expect(() => runVolunteer({ url: s.url, rounds: 0 }, components)).toThrow(/rounds must be a positive integer/);

    const v = runVolunteer({ url: s.url, run: 'no-such-run', backend: 'cpu', joinTimeoutMs: 10_000 }, components);
    await expect(v.joined).rejects.toBeInstanceOf(CoordinatorRefusedError);
    await expect(v.done).rejects.toThrow(/no-such-run|unknown-run/);

    const ref = { name: 'train.bin', url: '/x', sha256: '0'.repeat(64), bytes: 3, dtype: 'u8' as const };
    const fake = (async () => new Response(new Uint8Array([1, 2, 3]))) as unknown as typeof fetch;
    await expect(downloadVerified('http://127.0.0.1:1', ref, fake)).rejects.toBeInstanceOf(DataIntegrityError);
    await expect(downloadVerified('http://127.0.0.1:1', { ...ref, bytes: 4 }, fake)).rejects.toThrow(/got 3 bytes, the coordinator announced 4/);
  });
});
