// The browser volunteer's Stop and the coordinator's end of a session, through the real
// TrainingController, CoordinatorVolunteerBackend and engine-wiring's createTrainer against an
// in-process coordinator on 127.0.0.1 (fetch and Worker stubbed where a test needs to hold or
// break them). "Stopped" must be true when the page says it: the data download aborted, no
// worker started after it, the connection closed, and a new Start joins alone; a session the
// coordinator ends (the run stopped, another tab took it over) stops training and says why; a
// worker that fails to load ends the join with an error instead of "Starting…" for ever.
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { WebSocket } from 'ws';
import { TrainingController } from '../src/ui/controllers/training-controller.ts';
import { ConsentStore } from '../src/ui/core/consent.ts';
import { CoordinatorVolunteerBackend, type RunMesh, type VolunteerBackendInit } from '../src/ui/browser/volunteer-backend.ts';
import { createTrainer } from '../src/ui/pages/engine-wiring.ts';
import type { SessionStore, WebSocketCtor } from '../src/sync/signaling-client.ts';
import type { ExchangeResult, MeshStats } from '../src/ui/ports.ts';
import type { Logger } from '../src/sync/components.ts';
import { startServer, until, type TestServer } from './support/coordinator.ts';
import { FAKE_GPU, FakeSensors, FakeTrainer, MemoryStorage } from './support/ui-fakes.ts';
import { buildLayout } from '../src/model/layout.ts';
import type { RunInfo } from '../src/protocol/messages.ts';

const RUN = 'life';
let s: TestServer;
let P = 0;
const realFetch = globalThis.fetch;
const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };

beforeAll(async () => {
  s = await startServer({ hub: { pairPrediction: false } });
  for (const id of [RUN, 'life-stop']) {
    const r = await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id, dataset: 'moby-dick', preset: 'micro', train: { H: 4, batch: 2 } } });
    expect(r.statusCode).toBe(201);
  }
  const run = (await s.c.app.inject({ method: 'GET', url: `/api/runs/${RUN}` })).json() as RunInfo;
  P = buildLayout(run.model).total;
});
afterAll(async () => { await s?.close(); });
afterEach(() => { vi.unstubAllGlobals(); });

const live = (run = RUN) => s.c.hub.livePeers(run).length;

function sharedSession(): SessionStore {
  let t: string | null = null;
  return { load: () => t, save: (x) => { t = x; } };
}

/** A fetch whose /data/ answers wait until released or aborted; records each data request. */
function gatedFetch() {
  const seen: { url: string; signal: AbortSignal | undefined }[] = [];
  let open!: () => void;
  const gate = new Promise<void>((r) => { open = r; });
  const f = (async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = String(input);
    if (url.includes('/data/')) {
      const signal = init?.signal ?? undefined;
      seen.push({ url, signal });
      await new Promise<void>((resolve, reject) => {
        void gate.then(resolve);
        signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
      });
    }
    return realFetch(input, init);
  }) as typeof fetch;
  return { f, seen, release: open };
}

/** A mesh with nobody to pair with. */
const loneMesh = (): RunMesh => ({
  async exchange(): Promise<ExchangeResult> { await new Promise((r) => setTimeout(r, 5)); return { partner: null, payload: null, partnerDist: null, bytesIn: 0, bytesOut: 0, solo: 'no-partner' }; },
  stats(): MeshStats { return { peers: 0, bytesIn: 0, bytesOut: 0 }; },
  async bootstrap() { return null; }, serveState() {}, destroy() {},
});

/** The page's backend over the test coordinator: the real createTrainer and no mesh, unless told. */
function pageBackend(o: Partial<VolunteerBackendInit> = {}): CoordinatorVolunteerBackend {
  return new CoordinatorVolunteerBackend({
    baseUrl: s.url, runId: RUN, WebSocket: WebSocket as unknown as WebSocketCtor, session: sharedSession(), fetch: realFetch, logger: quiet,
    createTrainer, createMesh: async () => { throw new Error('mesh not reached'); }, ...o,
  });
}

async function controllerOver(backend: CoordinatorVolunteerBackend) {
  backend.probeGpu = async () => FAKE_GPU; // no WebGPU in Node: the probe passes as on a page with a GPU
  const c = new TrainingController({ backend, sensors: new FakeSensors(), consent: new ConsentStore(new MemoryStorage()), intensity: 1 });
  await c.init();
  c.giveConsent();
  return c;
}

describe('the browser volunteer stops, and is stopped', () => {
  it('Stop during the data download aborts it: no worker is started, the connection is closed, and Start again joins once', async () => {
    const g = gatedFetch();
    vi.stubGlobal('fetch', g.f);
    let workers = 0;
    vi.stubGlobal('Worker', class { constructor() { workers++; throw new Error('no Worker in this test'); } });
    const backend = pageBackend();
    const before = live();
    const c = await controllerOver(backend);
    c.start();
    await until(() => g.seen.length > 0, 10_000, 'the data download to begin');
    expect(c.phase).toBe('starting');
    expect(live()).toBe(before + 1);

    await c.stop();
    expect(c.phase).toBe('stopped');
    expect(c.error).toBeNull();
    expect(g.seen.length).toBeGreaterThan(0);
    expect(g.seen.every((x) => x.signal?.aborted === true)).toBe(true);
    // The connection is closed when Stop returns: the coordinator drops the page.
    await until(() => live() === before, 5000, 'the coordinator to drop the stopped page');
    g.release();
    expect(workers).toBe(0);

    // Start again: one join, one worker.
    c.start();
    await until(() => c.phase === 'error', 20_000, 'the new join to reach the (missing) worker');
    expect(c.error).toMatch(/no Worker in this test/);
    expect(workers).toBe(1);
    await until(() => live() === before, 5000, 'the failed join to leave');
  });

  it('Stop while the coordinator is unreachable ends the connection attempts; nothing joins when it is back', async () => {
    const g = gatedFetch();
    vi.stubGlobal('fetch', g.f);
    let down = true;
    let sockets = 0;
    // Port 1 refuses connections (the coordinator is down); later the real one answers.
    class Ws extends WebSocket { constructor(url: string) { super(down ? 'ws://127.0.0.1:1/api/ws' : url); sockets++; this.on('error', () => {}); } }
    const backend = pageBackend({ WebSocket: Ws as unknown as WebSocketCtor });
    const before = live();
    const c = await controllerOver(backend);
    c.start();
    await until(() => sockets >= 2, 10_000, 'a few connection attempts');
    await c.stop();
    expect(c.phase).toBe('stopped');
    const atStop = sockets;
    // The client's backoff (500 ms · 2^attempt, SignalingClient's default) puts its next retry
    // after attempt n at most 500 · 2^(n-1) ms away: within 4 s for n <= 4. The wait below is that
    // bound, not a guess: a retry still scheduled at Stop would have connected within it.
    expect(atStop).toBeLessThanOrEqual(4);
    down = false;
    const w = pageBackend({ bootstrapTimeoutMs: 100, createTrainer: async () => new FakeTrainer(2, P), createMesh: async () => loneMesh() });
    await new Promise((r) => setTimeout(r, 4000));
    const witness = await w.join();
    expect(sockets).toBe(atStop);
    expect(live()).toBe(before + 1);
    expect(g.seen).toEqual([]);
    await witness.close();
    await until(() => live() === before, 5000, 'the witness to leave');
  });

  it('a worker whose script fails to load ends the join with an error, and leaves the run', async () => {
    vi.stubGlobal('Worker', class extends EventTarget {
      constructor() { super(); queueMicrotask(() => this.dispatchEvent(Object.assign(new Event('error'), { message: 'Failed to fetch a worker script' }))); }
      postMessage() {}
      terminate() {}
    });
    const backend = pageBackend();
    const before = live();
    const c = await controllerOver(backend);
    c.start();
    await until(() => c.phase === 'error', 20_000, 'the join to fail');
    expect(c.error).toMatch(/the training worker failed: Failed to fetch a worker script/);
    await until(() => live() === before, 5000, 'the failed page to leave the run');
  });

  it('the coordinator stops the run: the page stops training and says why', async () => {
    const id = 'life-stop';
    const backend = pageBackend({ runId: id, bootstrapTimeoutMs: 200, createTrainer: async () => new FakeTrainer(2, P), createMesh: async () => loneMesh() });
    const c = await controllerOver(backend);
    c.start();
    await until(() => c.phase === 'training', 10_000, 'training');
    const stop = await s.c.app.inject({ method: 'POST', url: `/api/runs/${id}/stop`, headers: s.admin });
    expect(stop.statusCode).toBeLessThan(300);
    await until(() => c.phase === 'error', 10_000, 'the page to stop training');
    expect(c.error).toMatch(/the coordinator ended this session: .*stop/);
    expect(c.running).toBe(false);
    expect(c.figures.peersOnline).toBe(0);
  });

  it('a second tab takes the session over: the first stops training and says so', async () => {
    const storage = sharedSession(); // localStorage 'murmur.session', shared by the tabs of one origin
    const tab = () => pageBackend({ session: storage, bootstrapTimeoutMs: 200, createTrainer: async () => new FakeTrainer(2, P), createMesh: async () => loneMesh() });
    const c1 = await controllerOver(tab());
    c1.start();
    await until(() => c1.phase === 'training', 10_000, 'tab 1 training');
    const c2 = await controllerOver(tab());
    c2.start();
    await until(() => c2.phase === 'training', 10_000, 'tab 2 training');
    await until(() => c1.phase === 'error', 10_000, 'tab 1 to stop');
    expect(c1.error).toMatch(/the coordinator ended this session/);
    expect(c2.phase).toMatch(/training|waiting-peers/);
    await c2.stop();
  });
});
