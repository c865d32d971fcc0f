// The signaling client against a scripted WebSocket and a fake clock: backoff with jitter,
// the report buffer across outages, paced flushing, and solo steps when the coordinator is gone.
import { describe, expect, it } from 'vitest';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { WebSocket } from 'ws';
import { SignalingClient, memorySessionStore, type WebSocketCtor, type WebSocketLike } from '../src/sync/signaling-client.ts';
import type { ReportFields, ServerMessage, WelcomeMsg } from '../src/protocol/messages.ts';
import { FakeClock } from './support/fake-clock.ts';
import { PROTOCOL_VERSION } from '../src/protocol/messages.ts';
import type { StateFrame } from '../src/protocol/state-frame.ts';

class FakeSocket implements WebSocketLike {
  static all: FakeSocket[] = [];
  readyState = 0;
  sent: Record<string, unknown>[] = [];
  onopen: ((ev: unknown) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  constructor(readonly url: string) {
    FakeSocket.all.push(this);
  }
  send(data: string): void {
    this.sent.push(JSON.parse(data));
  }
  close(): void {
    this.readyState = 3;
  }
  // Test side:
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }
  deliver(m: ServerMessage): void {
    this.onmessage?.({ data: JSON.stringify(m) });
  }
  drop(code = 1006, reason = ''): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}

// A welcome the client's schema check accepts (src/protocol/messages.ts).
const run: WelcomeMsg['run'] = {
  id: 'default', name: 'default', dataset: 'moby-dick', preset: 'micro',
  model: { vocab: 256, ctx: 32, layers: 1, d: 32, heads: 2 },
  train: {
    batch: 4, seqLen: 32, lr: 0.001, warmupSteps: 0, totalSteps: 100, minLrFrac: 0.1, weightDecay: 0, beta1: 0.9,
    beta2: 0.95, eps: 1e-8, gradClip: 1, H: 10, outerMomentum: 0.5, outerLr: 0.7, consensus: 0.5,
  },
  compression: 'none', pairWaitFrac: 1, seed: 1, status: 'running', createdAt: 0, updatedAt: 0,
};
const file = { name: 'val.bin', url: '/api/runs/default/data/val.bin', sha256: '0'.repeat(64), bytes: 10, dtype: 'u8' as const };
const welcome = (over: Partial<WelcomeMsg> = {}): WelcomeMsg => ({
  t: 'welcome', peerId: 'p-00000000000000aa', session: 'sess.mac', resumed: false,
  run, assignment: { dataset: 'moby-dick', train: [file], val: file, shards: [0], seed: 1, replica: 0 }, checkpoint: null, peers: [], heartbeatMs: 1000, stepRate: 1000,
  limits: { maxMessageBytes: 65536, messagesPerSecond: 50, burst: 200 }, ...over,
});
const [X, Y, Z, NEVER, W] = ['a1', 'a2', 'a3', 'a4', 'a5'].map((h) => `p-00000000000000${h}`) as [string, string, string, string, string];
const fields = (step: number): ReportFields => ({
  time: 1, step, round: 0, trainLoss: 1, valLoss: null, tokensPerS: 1, bytesIn: 0, bytesOut: 0, partner: null, partnerDist: null, adapter: null,
});

function setup(random = () => 0.5) {
  FakeSocket.all = [];
  const clock = new FakeClock();
  const session = memorySessionStore();
  const c = new SignalingClient({
    url: 'http://127.0.0.1:9', WebSocket: FakeSocket, timers: clock, random, session,
    backoff: { initialMs: 100, maxMs: 1600, jitter: 0.5 },
  });
  const sock = () => FakeSocket.all.at(-1)!;
  const join = (w: Partial<WelcomeMsg> = {}) => { sock().open(); sock().deliver(welcome(w)); };
  return { clock, session, c, sock, join };
}

describe('signaling client', () => {
  it('says hello (with its session once it has one) and heartbeats', () => {
    const { c, sock, join, clock, session } = setup();
    c.start();
    expect(sock().url).toBe('ws://127.0.0.1:9/api/ws');
    join();
    expect(sock().sent[0]).toEqual({ t: 'hello', v: PROTOCOL_VERSION });
    expect(session.load()).toBe('sess.mac');
    expect(c.peerId).toBe('p-00000000000000aa');
    clock.advance(3000);
    expect(sock().sent.filter((m) => m.t === 'hb')).toHaveLength(3);
    sock().drop();
    clock.advance(100);
    sock().open();
    expect(sock().sent[0]).toEqual({ t: 'hello', v: PROTOCOL_VERSION, session: 'sess.mac' });
  });

  it('keeps the live peer list from the welcome and applies the changes the coordinator sends; a new welcome replaces it', () => {
    const { c, sock, join, clock } = setup();
    const lists: string[][] = [];
    c.on('peers', (e) => lists.push([...e.peers].sort()));
    c.start();
    join({ peers: [X, Y] });
    sock().deliver({ t: 'peers-change', joined: [Z, 'p-00000000000000aa'], left: [X, NEVER] });
    sock().deliver({ t: 'peers-change', joined: [Z], left: [] });
    expect(lists).toEqual([[X, Y], [Y, Z], [Y, Z]]);
    sock().drop();
    clock.advance(100);
    join({ peers: [W] });
    expect(lists.at(-1)).toEqual([W]);
  });

  it('reports a coordinator frame its schema refuses, and does not act on it', () => {
    const { c, sock, join } = setup();
    const errors: string[] = [];
    const lists: string[][] = [];
    c.on('error', (e) => errors.push(e.message));
    c.on('peers', (e) => lists.push([...e.peers]));
    c.start();
    join({ peers: [X] });
    sock().deliver({ t: 'peers-change', joined: ['../x'], left: [X] } as unknown as ServerMessage);
    expect(errors).toEqual(['refused a coordinator frame: peers-change.joined[0] does not match ^p-[0-9a-f]{16}$, got "../x"']);
    expect(lists).toEqual([[X]]);
  });

  it('sends its session and its state only to the coordinator: a named path that would leave its origin is refused', async () => {
    FakeSocket.all = [];
    const fetched: string[] = [];
    const fetchFn = (async (url: string | URL) => { fetched.push(String(url)); return new Response('no', { status: 500 }); }) as typeof fetch;
    const c = new SignalingClient({ url: 'http://127.0.0.1:9', WebSocket: FakeSocket, timers: new FakeClock(), session: memorySessionStore(), fetch: fetchFn });
    const errors: string[] = [];
    const served: { ok: boolean; error?: string }[] = [];
    c.on('error', (e) => errors.push(e.message));
    c.on('state-served', (e) => served.push(e));
    c.setStateProvider(() => ({ meta: { floats: 1 } as StateFrame['meta'], phi: new Float32Array(1), momentum: new Float32Array(1) }));
    c.start();
    const sock = FakeSocket.all.at(-1)!;
    sock.open();
    // '@host/…' appended to the coordinator's address is userinfo: the request would go to 198.18.0.9.
    const ref = { id: 'c1', step: 1, round: 1, sha256: '0'.repeat(64), valLoss: null, stateUrl: '@198.18.0.9/steal' };
    sock.deliver(welcome({ checkpoint: ref }));
    expect(errors[0]).toMatch(/^refused a coordinator frame: welcome\.checkpoint\.stateUrl does not match/);
    sock.deliver(welcome({ checkpoint: { ...ref, stateUrl: '/api/runs/default/checkpoints/c1/state' } }));
    sock.deliver({ t: 'state-request', id: 'r1', url: '@198.18.0.9/steal' } as ServerMessage);
    expect(errors[1]).toMatch(/^refused a coordinator frame: state-request\.url does not match/);
    for (const url of ['//198.18.0.9/steal', '/api/x']) sock.deliver({ t: 'state-request', id: 'r2', url } as ServerMessage);
    await expect.poll(() => served.length).toBe(1);
    await c.fetchCheckpointState().catch(() => null);
    c.stop();
    expect(fetched.every((u) => new URL(u).origin === 'http://127.0.0.1:9')).toBe(true);
    expect(fetched).toEqual(['http://127.0.0.1:9/api/x', 'http://127.0.0.1:9/api/runs/default/checkpoints/c1/state']);
  });

  it('reconnects with exponential backoff, capped, with jitter, reset after a welcome', () => {
    const draws = [0, 1, 0.5, 0, 0, 0, 0, 0, 0];
    let i = 0;
    const { c, sock, clock, join } = setup(() => draws[i++] ?? 0);
    c.start();
    const delays: number[] = [];
    for (let k = 0; k < 7; k++) {
      const n = FakeSocket.all.length;
      sock().drop();
      let waited = 0;
      while (FakeSocket.all.length === n) { clock.advance(1); waited++; }
      delays.push(waited);
    }
    // base 100·2^k capped at 1600, times (1 - 0.5·draw): draws 0, 1, 0.5, then 0.
    expect(delays).toEqual([100, 100, 300, 800, 1600, 1600, 1600]);
    join();
    const n = FakeSocket.all.length;
    sock().drop();
    clock.advance(99);
    expect(FakeSocket.all.length).toBe(n);
    clock.advance(1);
    expect(FakeSocket.all.length).toBe(n + 1);
  });

  it('buffers reports while the coordinator is down and flushes them after reconnect, paced', () => {
    const { c, sock, clock, join } = setup();
    c.start();
    join();
    const first = c.report(fields(1));
    expect(sock().sent.at(-1)).toMatchObject({ t: 'report', seq: first, step: 1 });
    sock().deliver({ t: 'ack', seq: first });
    expect(c.pendingReports).toBe(0);
    const unacked = c.report(fields(2));
    sock().drop();
    for (let i = 3; i < 53; i++) c.report(fields(i));
    expect(c.pendingReports).toBe(51);
    clock.advance(100);
    join();
    // 50 frames/s announced: reports get at most half, sent in 100 ms ticks.
    const reports = () => sock().sent.filter((m) => m.t === 'report');
    expect(reports()).toHaveLength(2);
    expect(reports()[0]).toMatchObject({ seq: unacked, step: 2 });
    clock.advance(2500);
    expect(reports()).toHaveLength(51);
    expect(reports().map((m) => m.step)).toEqual(Array.from({ length: 51 }, (_, k) => k + 2));
    for (const m of reports()) sock().deliver({ t: 'ack', seq: m.seq as number });
    expect(c.pendingReports).toBe(0);
  });

  it('drops the oldest reports beyond its buffer bound', () => {
    FakeSocket.all = [];
    const clock = new FakeClock();
    const c = new SignalingClient({ url: 'http://x', WebSocket: FakeSocket, timers: clock, maxBufferedReports: 10 });
    for (let i = 0; i < 25; i++) c.report(fields(i));
    expect(c.pendingReports).toBe(10);
    expect(c.droppedReports).toBe(15);
  });

  it('keeps sequence numbers unique across client restarts', () => {
    const clock = new FakeClock();
    const a = new SignalingClient({ url: 'http://x', WebSocket: FakeSocket, timers: clock });
    const seqA = [a.report(fields(0)), a.report(fields(1))];
    clock.advance(1);
    const b = new SignalingClient({ url: 'http://x', WebSocket: FakeSocket, timers: clock });
    expect(b.report(fields(0))).toBeGreaterThan(Math.max(...seqA));
  });

  it('answers ready with a solo step when the coordinator is unreachable or drops', () => {
    const { c, sock, clock, join } = setup();
    const paired: unknown[] = [];
    c.on('paired', (e) => paired.push(e));
    c.ready(1, 500);
    clock.advance(499);
    expect(paired).toEqual([]);
    clock.advance(1);
    expect(paired).toEqual([{ round: 1, partner: null, initiator: false }]);
    c.start();
    join();
    c.ready(2, 500);
    expect(sock().sent.at(-1)).toEqual({ t: 'ready', round: 2, waitMs: 500 });
    sock().drop();
    expect(paired.at(-1)).toEqual({ round: 2, partner: null, initiator: false });
    c.ready(3, 500);
    clock.advance(100);
    join();
    sock().deliver({ t: 'paired', round: 3, partner: 'p-00000000000000bb', partnerRound: 8, initiator: true });
    expect(paired.at(-1)).toEqual({ round: 3, partner: 'p-00000000000000bb', partnerRound: 8, initiator: true });
    expect(paired).toHaveLength(3);
  });

  it('forgets a rejected session, and stops for good when replaced or the run is stopped', () => {
    const { c, sock, clock, join, session } = setup();
    const stopped: string[] = [];
    c.on('stopped', (e) => stopped.push(e.reason));
    c.start();
    join();
    sock().deliver({ t: 'error', code: 'bad-session', message: 'x', fatal: true });
    sock().drop(4003, 'bad-session');
    expect(session.load()).toBe(null);
    clock.advance(100);
    sock().open();
    expect(sock().sent[0]).toEqual({ t: 'hello', v: PROTOCOL_VERSION });
    sock().deliver(welcome());
    sock().drop(4000, 'replaced by a newer connection');
    const n = FakeSocket.all.length;
    clock.advance(60_000);
    expect(FakeSocket.all.length).toBe(n);
    expect(stopped).toEqual(['replaced by a newer connection of this peer']);
    const s2 = setup();
    const st2: string[] = [];
    s2.c.on('stopped', (e) => st2.push(e.reason));
    s2.c.start();
    s2.join();
    s2.sock().deliver({ t: 'error', code: 'run-stopped', message: 'run "default" is stopped', fatal: true });
    s2.sock().drop(4002, 'run-stopped');
    expect(st2).toEqual(['run-stopped: run "default" is stopped']);
  });

  it('stop() closes for good and is safe twice', () => {
    const { c, sock, clock, join } = setup();
    const closes: string[] = [];
    c.on('close', (e) => closes.push(e.reason));
    c.start();
    join();
    c.stop();
    c.stop();
    expect(closes).toHaveLength(1);
    const n = FakeSocket.all.length;
    clock.advance(60_000);
    expect(FakeSocket.all.length).toBe(n);
    expect(c.connected).toBe(false);
    void sock;
  });

  it('stop() while the socket is still connecting (Node\'s ws) throws nothing and leaves no uncaught error', async () => {
    // A server that accepts the TCP connection and never answers the upgrade: the socket stays
    // CONNECTING. Closing it then makes `ws` emit an error; with the handler gone it was uncaught.
    const held: Socket[] = [];
    const server = createServer((sock) => { held.push(sock); sock.resume(); }); // read, so its end is seen
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const uncaught: unknown[] = [];
    const onUncaught = (e: unknown) => { uncaught.push(e); };
    process.on('uncaughtException', onUncaught);
    try {
      const c = new SignalingClient({ url: `http://127.0.0.1:${port}`, WebSocket: WebSocket as unknown as WebSocketCtor });
      c.start();
      await new Promise<void>((r) => { const t = setInterval(() => { if (held.length > 0) { clearInterval(t); r(); } }, 10); });
      expect(() => c.stop()).not.toThrow();
      // ws emits the error on a later tick; wait until the socket's close reached the server.
      await new Promise<void>((r) => { if (held[0]!.destroyed || held[0]!.readableEnded) r(); else held[0]!.once('close', () => r()); });
      await new Promise((r) => setImmediate(r));
      expect(uncaught).toEqual([]);
    } finally {
      process.off('uncaughtException', onUncaught);
      for (const sock of held) sock.destroy();
      await new Promise((r) => server.close(r));
    }
  });
});
