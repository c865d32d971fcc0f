// The attacks of issue 16 as reusable pieces: each test of one defence (server.metrics-bounds,
// server.signal-flood, server.budgets, server.downloads, server.peer-list) runs one of them at
// full size, and server.attack-aftermath runs them all against one coordinator and checks what
// is left standing.
import { createHash } from 'node:crypto';
import { get, type ClientRequest, type IncomingMessage } from 'node:http';
import { WebSocket } from 'ws';
import type { Db } from '../../server/db.ts';
import { RawPeer } from './coordinator.ts';
import { PROTOCOL_VERSION } from '../../src/protocol/messages.ts';

// ---------- metrics ----------

/** Reports that satisfy the schema but could never be true, each with the error it must draw. */
export const ABSURD_REPORTS: [Record<string, unknown>, RegExp][] = [
  [{ step: Number.MAX_SAFE_INTEGER }, /step 9007199254740991 is more than this peer could have trained/],
  [{ step: 10, round: 50 }, /round 50 is ahead of step 10/],
  [{ trainLoss: 0 }, /trainLoss 0 is outside/],
  [{ valLoss: 1e5 }, /valLoss 100000 is outside/],
  [{ tokensPerS: 1e12 }, /tokensPerS 1000000000000 exceeds/],
  [{ bytesIn: Number.MAX_SAFE_INTEGER }, /bytesIn 9007199254740991 exceeds/],
  [{ bytesOut: 2 ** 40 }, /bytesOut 1099511627776 exceeds/],
  [{ probeSolo: 0 }, /probeSolo 0 is outside/],
  [{ probePaired: 1e-5 }, /probePaired 0.00001 is outside/],
];

/**
 * Rows as a coordinator without the report bounds stored them: `n` reports of 2^53-1 bytes each
 * from one peer, one a millisecond from `t0`. 1,000 or more in one bucket overflow an integer SUM.
 */
export function insertOverflowRows(db: Db, runId: string, t0: number, n = 2000, peerId = 'p-00000000000000ff'): void {
  const insert = db.prepare(`INSERT INTO reports (run_id, peer_id, seq, t, received_at, step, round, train_loss, val_loss, tokens_per_s, bytes_in, bytes_out, partner, partner_dist, adapter)
    VALUES (?, ?, ?, ?, ?, ?, 0, 3, NULL, 1, ?, ?, NULL, NULL, NULL)`);
  db.transaction(() => {
    for (let i = 0; i < n; i++) insert.run(runId, peerId, 100_000 + i, t0 + i, t0 + i, i, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  })();
}

// ---------- the signal relay ----------

/**
 * Makes `p` answer every signal it gets as simple-peer would (an answer and two ICE
 * candidates), and heartbeat. `answered` counts the signals it sent back.
 */
export function answerEverySignal(p: RawPeer): { readonly answered: number; stop(): void } {
  const state = { answered: 0, stop: () => {} };
  p.ws.on('message', (data: Buffer) => {
    const m = JSON.parse(String(data)) as { t: string; from?: string };
    if (m.t !== 'signal' || p.ws.readyState !== 1) return;
    for (const sig of [{ type: 'answer', sdp: 'v=0' }, { candidate: 'a' }, { candidate: 'b' }]) {
      p.send({ t: 'signal', to: m.from, data: { mesh: 1, cid: 'c', sig } });
      state.answered++;
    }
  });
  const hb = setInterval(() => p.ws.readyState === 1 && p.send({ t: 'hb' }), 1000);
  state.stop = () => clearInterval(hb);
  return state;
}

/**
 * The offer flood: `count` fresh ids join `run`, each sends `perFlooder` offers at `victim` at
 * once and goes on until the relay closes it. Returns the flooders (the caller waits for their
 * close).
 */
export async function floodOffers(wsUrl: string, run: string, victim: string, count: number, perFlooder: number): Promise<{ peer: RawPeer; peers: string[] }[]> {
  const flooders = await Promise.all(Array.from({ length: count }, () => RawPeer.join(wsUrl, { run })));
  const offer = (f: RawPeer, i: number) => f.send({ t: 'signal', to: victim, data: { mesh: 1, cid: `f${i}`, sig: { type: 'offer', sdp: 'v=0' } } });
  for (const f of flooders) for (let i = 0; i < perFlooder; i++) offer(f.peer, i);
  // The relay's rate is measured when it reads the frames: on a loaded machine it reads slowly
  // and its bucket refills meanwhile, so a fixed burst may not be over the rate. A flooder keeps
  // sending, as fast as its socket drains, until it is closed (at most 20 times the first burst).
  for (let sent = perFlooder; sent < 20 * perFlooder && flooders.some((f) => !f.peer.closed); sent += 50) {
    await new Promise((r) => setTimeout(r, 0));
    for (const f of flooders) if (!f.peer.closed) for (let i = 0; i < 50; i++) offer(f.peer, sent + i);
  }
  return flooders.map((f) => ({ peer: f.peer, peers: f.welcome.peers }));
}

// ---------- HTTP: streams and downloads ----------

/** Opens GET url from `localAddress`; resolves with the response (its body left streaming) and the request. */
export function openStream(url: string, localAddress = '127.0.0.1'): Promise<{ res: IncomingMessage; req: ClientRequest }> {
  return new Promise((resolve, reject) => {
    const req = get(url, { agent: false, localAddress }, (res) => resolve({ res, req }));
    req.on('error', reject);
  });
}

/** The SSE flood: `n` dashboard streams from one address; the admitted ones are held open. */
export async function floodStreams(url: string, n: number, localAddress = '127.0.0.1'): Promise<{ held: ClientRequest[]; status: Record<number, number> }> {
  const held: ClientRequest[] = [];
  const status: Record<number, number> = {};
  for (let i = 0; i < n; i++) {
    const { res, req } = await openStream(url, localAddress);
    status[res.statusCode!] = (status[res.statusCode!] ?? 0) + 1;
    if (res.statusCode === 200) held.push(req);
    else res.resume();
  }
  return { held, status };
}

/** Downloads `url` and returns the body's sha256 and length, holding no more than a chunk. */
export async function drain(url: string, localAddress?: string): Promise<{ status: number; sha: string; bytes: number }> {
  if (localAddress) return drainFrom(url, localAddress);
  const res = await fetch(url);
  const h = createHash('sha256');
  let bytes = 0;
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) { h.update(chunk); bytes += chunk.length; }
  return { status: res.status, sha: h.digest('hex'), bytes };
}

/** `drain` from a loopback address of its own (the coordinator budgets downloads per address). */
function drainFrom(url: string, localAddress: string): Promise<{ status: number; sha: string; bytes: number }> {
  return new Promise((resolve, reject) => {
    const req = get(url, { localAddress, agent: false }, (res) => {
      const h = createHash('sha256');
      let bytes = 0;
      res.on('data', (chunk: Buffer) => { h.update(chunk); bytes += chunk.length; });
      res.on('end', () => resolve({ status: res.statusCode!, sha: h.digest('hex'), bytes }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

// ---------- silent joins ----------

/** A peer that joins and says nothing more; counts the bytes the coordinator pushes to it. */
export class SilentPeer {
  bytes = 0;
  id = '';
  /** Peers it has heard of (kept only where asked: parsing every list would cost the test more than the server). */
  readonly known = new Set<string>();
  readonly ws: WebSocket;
  /** `localAddress`: the loopback address it joins from (each address has its own budgets). */
  constructor(url: string, track: boolean, localAddress?: string) {
    this.ws = new WebSocket(url, localAddress ? { localAddress } : {});
    this.ws.on('open', () => this.ws.send(JSON.stringify({ t: 'hello', v: PROTOCOL_VERSION })));
    this.ws.on('error', () => { /* the close follows */ });
    this.ws.on('message', (data: Buffer) => {
      this.bytes += data.length;
      if (!track && this.id) return;
      const m = JSON.parse(String(data)) as { t: string; peerId?: string; peers?: string[]; joined?: string[]; left?: string[] };
      if (m.t === 'welcome') { this.id = m.peerId!; for (const p of m.peers!) this.known.add(p); }
      if (m.t === 'peers-change') { for (const p of m.joined!) this.known.add(p); for (const p of m.left!) this.known.delete(p); }
      if ((m as { t: string }).t === 'peers') { this.known.clear(); for (const p of m.peers!) this.known.add(p); } // main's full lists, for the comparison
    });
  }
}

// ---------- memory ----------

/** Samples the process's memory every few ms and keeps the peaks. */
export class MemoryPeaks {
  readonly before = process.memoryUsage();
  rss = this.before.rss;
  heap = this.before.heapUsed;
  buffers = this.before.arrayBuffers;
  private readonly timer = setInterval(() => this.sample(), 5);

  sample(): void {
    const m = process.memoryUsage();
    this.rss = Math.max(this.rss, m.rss);
    this.heap = Math.max(this.heap, m.heapUsed);
    this.buffers = Math.max(this.buffers, m.arrayBuffers);
  }

  stop(): { rss: number; heap: number; buffers: number } {
    clearInterval(this.timer);
    this.sample();
    return { rss: this.rss - this.before.rss, heap: this.heap - this.before.heapUsed, buffers: this.buffers - this.before.arrayBuffers };
  }
}
