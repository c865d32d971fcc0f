// Test helpers for the coordinator: an in-process server on 127.0.0.1:0 with a temp data dir,
// and a raw WebSocket peer that records every frame it receives.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { buildApp, type AppDeps, type AppOptions, type Coordinator } from '../../server/app.ts';
import type { ReportFields, ServerMessage } from '../../src/protocol/messages.ts';
import { SignalingClient, memorySessionStore, type WebSocketCtor } from '../../src/sync/signaling-client.ts';
import { PROTOCOL_VERSION } from '../../src/protocol/messages.ts';
import { CHECK_WINDOW_SEED } from './states.ts';

export interface TestServer {
  c: Coordinator;
  url: string;
  wsUrl: string;
  dataDir: string;
  admin: Record<string, string>;
  close(): Promise<void>;
}

export async function startServer(opts: Partial<AppOptions> = {}, deps: Partial<AppDeps> = {}, dataDir?: string): Promise<TestServer> {
  const dir = dataDir ?? mkdtempSync(join(tmpdir(), 'murmur-server-'));
  const c = await buildApp({ dataDir: dir, ...deps }, { checkpointEveryMs: 0, evalWindowSeed: () => CHECK_WINDOW_SEED, ...opts });
  const address = await c.app.listen({ port: 0, host: '127.0.0.1' });
  return {
    c, url: address, wsUrl: address.replace('http', 'ws') + '/api/ws', dataDir: dir,
    admin: { authorization: `Bearer ${c.adminToken}` },
    close: async () => {
      await c.close();
      if (!dataDir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A raw WebSocket peer: sends anything, records every frame and the close. */
export interface RawPeerOptions { localAddress?: string; headers?: Record<string, string> }

export class RawPeer {
  readonly ws: WebSocket;
  readonly frames: ServerMessage[] = [];
  closed: { code: number; reason: string } | null = null;
  private waiters: (() => void)[] = [];
  readonly opened: Promise<void>;

  /**
   * `localAddress`: the loopback address to connect from (127.0.0.2 looks like another client);
   * `headers`: sent with the upgrade (X-Forwarded-For, to a coordinator that trusts 127.0.0.1).
   */
  constructor(url: string, opts: RawPeerOptions = {}) {
    this.ws = new WebSocket(url, { ...(opts.localAddress ? { localAddress: opts.localAddress } : {}), ...(opts.headers ? { headers: opts.headers } : {}) });
    this.opened = new Promise((resolve, reject) => {
      this.ws.on('open', () => resolve());
      this.ws.on('error', reject);
    });
    this.ws.on('message', (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
      if (isBinary) return;
      this.frames.push(JSON.parse(String(data)) as ServerMessage);
      this.wake();
    });
    this.ws.on('close', (code: number, reason: Buffer) => {
      this.closed = { code, reason: reason.toString() };
      this.wake();
    });
    this.ws.on('error', () => { /* the close event follows */ });
  }

  static async connect(url: string, opts: RawPeerOptions = {}): Promise<RawPeer> {
    const p = new RawPeer(url, opts);
    await p.opened;
    return p;
  }

  /** Joins (hello) and waits for the welcome. */
  static async join(url: string, hello: Record<string, unknown> = {}, opts: RawPeerOptions = {}): Promise<{ peer: RawPeer; welcome: Extract<ServerMessage, { t: 'welcome' }> }> {
    const peer = await RawPeer.connect(url, opts);
    peer.send({ t: 'hello', v: PROTOCOL_VERSION, ...hello });
    const welcome = await peer.next((m) => m.t === 'welcome');
    return { peer, welcome: welcome as Extract<ServerMessage, { t: 'welcome' }> };
  }

  send(m: unknown): void {
    this.ws.send(typeof m === 'string' ? m : JSON.stringify(m));
  }

  sendRaw(data: string | Buffer): void {
    this.ws.send(data);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** The first frame (from index `from` on) matching `pred`; rejects after `ms` or on close. */
  async next<T extends ServerMessage = ServerMessage>(pred: (m: ServerMessage) => boolean, ms = HANG_GUARD_MS, from = 0): Promise<T> {
    const deadline = Date.now() + guarded(ms);
    for (;;) {
      const hit = this.frames.slice(from).find(pred);
      if (hit) return hit as T;
      if (this.closed) throw new Error(`connection closed (${this.closed.code} ${this.closed.reason}) before the expected frame; got ${JSON.stringify(this.frames.slice(-3))}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for a frame; last frames: ${JSON.stringify(this.frames.slice(-3))}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  }

  /** Resolves once `cond()` holds, re-checked on every frame and on close; false after `ms`. */
  async waitUntil(cond: () => boolean, ms = HANG_GUARD_MS): Promise<boolean> {
    const deadline = Date.now() + guarded(ms);
    while (!cond()) {
      if (Date.now() >= deadline) return false;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, deadline - Date.now());
        this.waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
    return true;
  }

  /** Resolves when the server closed the connection (or after `ms`, with null). */
  async waitClosed(ms = HANG_GUARD_MS): Promise<{ code: number; reason: string } | null> {
    const deadline = Date.now() + guarded(ms);
    while (!this.closed && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, deadline - Date.now());
        this.waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
    return this.closed;
  }

  close(): void {
    this.ws.close();
  }
}

/** The 'ws' WebSocket, connecting from `localAddress` (another loopback address is another client to the coordinator). */
export function webSocketFrom(localAddress: string): WebSocketCtor {
  return class extends WebSocket {
    constructor(url: string) {
      super(url, { localAddress });
    }
  } as unknown as WebSocketCtor;
}

/**
 * Where earnTrust's witness joins from: an exchange counts towards leaving probation only
 * between two addresses (server/peers.ts), and the peers under test join from 127.0.0.1.
 */
export const TRUST_WITNESS_ADDRESS = '127.0.0.254';

export function report(seq: number, over: Partial<Record<string, unknown>> = {}): Record<string, unknown> {
  return {
    t: 'report', seq, time: Date.now(), step: seq, round: Math.floor(seq / 10), trainLoss: 5 - seq * 0.001, valLoss: null,
    tokensPerS: 1000, bytesIn: 10, bytesOut: 20, partner: null, partnerDist: null, adapter: 'test', ...over,
  };
}

export { sleep, until } from './wait.ts';
import { guarded, HANG_GUARD_MS, until } from './wait.ts';

/**
 * `client` reports `step`, as a live peer does after each outer step, and the coordinator has
 * taken it: a checkpoint upload is held to the step the run's peers report (holdCounters).
 */
export async function reportedStep(s: TestServer, client: SignalingClient, step: number, H: number): Promise<void> {
  client.report({ time: Date.now(), step, round: Math.floor(step / H), trainLoss: 3, valLoss: null, tokensPerS: 100, bytesIn: 0, bytesOut: 0, partner: null, partnerDist: null, adapter: null });
  await until(() => s.c.hub.lastStep(client.peerId!) >= step, 5000, `the coordinator to take the report of step ${step}`);
}

/**
 * For an `until` over volunteers' progress: a check that throws, naming who and why, once any of
 * them ended (or failed) before the condition held, so a test never waits out its deadline on a
 * volunteer that is gone. Call it in the condition after testing what is awaited.
 */
export function whileRunning(volunteers: readonly { done: Promise<unknown> }[], names: readonly string[] = []): () => void {
  const ended: string[] = [];
  volunteers.forEach((v, i) => {
    const who = names[i] ?? `volunteer ${i}`;
    v.done.then(() => { ended.push(`${who} ended`); }, (e: unknown) => { ended.push(`${who} failed: ${e instanceof Error ? e.message : String(e)}`); });
  });
  return () => {
    if (ended.length > 0) throw new Error(`before the condition held: ${ended.join('; ')}`);
  };
}

/** What earnTrust needs of a peer: a SignalingClient, or anything with its ready/report/events. */
export interface TrustSeeker {
  readonly peerId: string | null;
  ready(round: number, waitMs: number): void;
  report(fields: ReportFields): number;
  on(event: 'paired', fn: (e: { round: number; partner: string | null }) => void): () => void;
  on(event: 'peers', fn: (e: { peers: string[]; probation?: string[] }) => void): () => void;
}

/**
 * Takes `a` and `b` (two peers of one run, joined from two addresses) off probation the way the
 * coordinator's rule says (server/peers.ts): exchanges the ready pool paired them for and that
 * both reported as paired with each other, until each has `exchanges` (PROBATION_EXCHANGES). Each round reports H steps
 * of progress, as a real inner loop would. Resolves once `b` hears that `a` is trusted; returns
 * the seqs of the reports each made.
 */
export async function earnTrustTogether(a: TrustSeeker, b: TrustSeeker, o: { exchanges: number; H: number }): Promise<{ a: number[]; b: number[] }> {
  const [ia, ib] = [a.peerId!, b.peerId!];
  const trusted = new Promise<void>((resolve) => {
    const off = b.on('peers', (e) => { if (e.peers.includes(ia) && !(e.probation ?? []).includes(ia)) { off(); resolve(); } });
  });
  const seqs = { a: [] as number[], b: [] as number[] };
  const answer = (p: TrustSeeker, round: number) => new Promise<string | null>((resolve) => {
    const off = p.on('paired', (e) => { if (e.round === round) { off(); resolve(e.partner); } });
  });
  let done = 0;
  for (let round = 0; done < o.exchanges; round++) {
    if (round > 6 * o.exchanges) throw new Error(`earnTrust: only ${done} of ${o.exchanges} exchanges paired after ${round} rounds`);
    const [pa, pb] = [answer(a, round), answer(b, round)];
    a.ready(round, 3000);
    b.ready(round, 3000);
    const paired = (await pa) === ib && (await pb) === ia;
    const step = (round + 1) * o.H;
    const fields = (partner: string) => ({
      time: Date.now(), step, round, trainLoss: 5, valLoss: null, tokensPerS: 100, bytesIn: 1, bytesOut: 1,
      partner: paired ? partner : null, partnerDist: paired ? 0.5 : null, adapter: 'earn-trust',
    });
    seqs.a.push(a.report(fields(ib)));
    seqs.b.push(b.report(fields(ia)));
    if (paired) done++;
  }
  await trusted;
  return seqs;
}

/**
 * earnTrustTogether with a witness joined to the run for it, which leaves once `peer` is trusted
 * (so it never takes checkpoint duty itself). Returns the seqs of the reports `peer` made.
 */
export async function earnTrust(url: string, run: string, peer: TrustSeeker, o: { exchanges: number; H: number }): Promise<number[]> {
  const witness = new SignalingClient({ url, run, WebSocket: webSocketFrom(TRUST_WITNESS_ADDRESS), session: memorySessionStore() });
  witness.start();
  try {
    await until(() => witness.connected, 10_000, 'the trust witness to join');
    const seqs = (await earnTrustTogether(peer, witness, o)).a;
    // Gone once the coordinator tells `peer` it left: from then on it cannot be drawn for duty.
    const id = witness.peerId!;
    const left = new Promise<void>((resolve) => {
      const off = peer.on('peers', (e) => { if (!e.peers.includes(id)) { off(); resolve(); } });
    });
    witness.stop();
    await left;
    return seqs;
  } finally {
    witness.stop();
  }
}
