import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { tableCounts } from '../server/db.ts';
import { SignalingClient, memorySessionStore, type WebSocketCtor } from '../src/sync/signaling-client.ts';
import type { PairAssignment } from '../src/protocol/signaling.ts';
import { RawPeer, report, sleep, startServer, until, type TestServer } from './support/coordinator.ts';
import { PROTOCOL_VERSION } from '../src/protocol/messages.ts';

let s: TestServer;
beforeAll(async () => {
  s = await startServer({ hub: { heartbeatMs: 200, livenessMs: 1500, helloTimeoutMs: 800 } });
  const r = await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id: 'other', dataset: 'moby-dick', preset: 'micro' } });
  expect(r.statusCode).toBe(201);
});
afterAll(async () => {
  await s?.close();
});

/** Keeps a raw peer alive with heartbeats until stopped. */
function heartbeat(p: RawPeer): () => void {
  const t = setInterval(() => p.ws.readyState === 1 && p.send({ t: 'hb' }), 50);
  return () => clearInterval(t);
}

describe('volunteer WebSocket', () => {
  it('welcomes a peer with id, signed session, run config and its own data assignment', async () => {
    const a = await RawPeer.join(s.wsUrl, { client: { kind: 'node', adapter: 'test' } });
    const b = await RawPeer.join(s.wsUrl);
    const stopA = heartbeat(a.peer), stopB = heartbeat(b.peer);
    try {
      for (const { welcome } of [a, b]) {
        expect(welcome.peerId).toMatch(/^p-[0-9a-f]{16}$/);
        expect(welcome.session).toMatch(/^[\w-]+\.[\w-]+$/);
        expect(welcome.run).toMatchObject({ id: 'default', preset: 'tiny' });
        expect(welcome.assignment.val.url).toBe('/api/runs/default/data/val.bin');
        expect(welcome.assignment.train[0]!.sha256).toMatch(/^[0-9a-f]{64}$/);
        expect(welcome.limits.maxMessageBytes).toBe(64 * 1024);
      }
      expect(a.welcome.assignment.replica).not.toBe(b.welcome.assignment.replica);
      expect(a.welcome.assignment.seed).not.toBe(b.welcome.assignment.seed);
      expect(b.welcome.peers).toContain(a.welcome.peerId);
      await a.peer.next((m) => m.t === 'peers-change' && m.joined.includes(b.welcome.peerId));
      expect(s.c.hub.livePeers('default')).toEqual(expect.arrayContaining([a.welcome.peerId, b.welcome.peerId]));
    } finally {
      stopA(); stopB(); a.peer.close(); b.peer.close();
    }
  });

  it('relays signals only between live peers of the same run, stamped with the true sender', async () => {
    const a = await RawPeer.join(s.wsUrl);
    const b = await RawPeer.join(s.wsUrl);
    const c = await RawPeer.join(s.wsUrl, { run: 'other' });
    try {
      // a hears of b as a peer-list change; only then may it signal b.
      await a.peer.next((m) => m.t === 'peers-change' && m.joined.includes(b.welcome.peerId));
      a.peer.send({ t: 'signal', to: b.welcome.peerId, data: { type: 'offer', sdp: 'v=0' } });
      const got = await b.peer.next((m) => m.t === 'signal');
      expect(got).toEqual({ t: 'signal', from: a.welcome.peerId, data: { type: 'offer', sdp: 'v=0' } });

      // Spoofing: a `from` field is refused, not relayed.
      a.peer.send({ t: 'signal', to: b.welcome.peerId, from: c.welcome.peerId, data: {} });
      expect(await a.peer.next((m) => m.t === 'error' && /from is not an allowed field/.test(m.message))).toBeTruthy();
      // Across runs, to unknown peers and to oneself: refused.
      for (const to of [c.welcome.peerId, 'p-0000000000000000', a.welcome.peerId]) {
        const n = a.peer.frames.length;
        a.peer.send({ t: 'signal', to, data: { x: 1 } });
        expect(await a.peer.next((m) => m.t === 'error' && m.code === 'unknown-peer', 2000, n)).toMatchObject({ ref: 'signal' });
      }
      await sleep(100);
      expect(b.peer.frames.filter((m) => m.t === 'signal')).toHaveLength(1);
      expect(c.peer.frames.filter((m) => m.t === 'signal')).toHaveLength(0);
    } finally {
      a.peer.close(); b.peer.close(); c.peer.close();
    }
  });

  it('relays only between peers it introduced: listed to the sender, its pool partner, or answering a signal', async () => {
    // Peer-list changes held back for the whole test: a later joiner is never listed to earlier ones.
    const t = await startServer({ hub: { peersEveryMs: 600_000 } });
    const peers: RawPeer[] = [];
    try {
      const a = await RawPeer.join(t.wsUrl);
      const b = await RawPeer.join(t.wsUrl);
      peers.push(a.peer, b.peer);
      expect(b.welcome.peers).toEqual([a.welcome.peerId]);
      // b was never listed to a: a cannot reach it.
      a.peer.send({ t: 'signal', to: b.welcome.peerId, data: { type: 'offer' } });
      expect(await a.peer.next((m) => m.t === 'error' && m.code === 'unknown-peer')).toMatchObject({ message: expect.stringMatching(/not introduced/) });
      // b knows a from its welcome; a may then answer b.
      b.peer.send({ t: 'signal', to: a.welcome.peerId, data: { type: 'offer' } });
      expect(await a.peer.next((m) => m.t === 'signal')).toMatchObject({ from: b.welcome.peerId });
      a.peer.send({ t: 'signal', to: b.welcome.peerId, data: { type: 'answer' } });
      expect(await b.peer.next((m) => m.t === 'signal')).toMatchObject({ from: a.welcome.peerId, data: { type: 'answer' } });
      // A pair the pool made may signal each other, listed or not.
      const c = await RawPeer.join(t.wsUrl);
      peers.push(c.peer);
      a.peer.send({ t: 'ready', round: 0, waitMs: 5000 });
      c.peer.send({ t: 'ready', round: 0, waitMs: 5000 });
      await a.peer.next((m) => m.t === 'paired' && m.partner === c.welcome.peerId);
      a.peer.send({ t: 'signal', to: c.welcome.peerId, data: { type: 'offer' } });
      expect(await c.peer.next((m) => m.t === 'signal')).toMatchObject({ from: a.welcome.peerId });
      expect(b.peer.frames.filter((m) => m.t === 'signal')).toHaveLength(1);
    } finally {
      for (const p of peers) p.close();
      await t.close();
    }
  });

  it('resumes a peer id from its session token and refuses forged ones', async () => {
    const first = await RawPeer.join(s.wsUrl);
    first.peer.close();
    await until(() => !s.c.hub.isLive(first.welcome.peerId), 2000, 'the peer to leave');
    const again = await RawPeer.join(s.wsUrl, { session: first.welcome.session });
    expect(again.welcome).toMatchObject({ peerId: first.welcome.peerId, resumed: true });
    expect(again.welcome.assignment.replica).toBe(first.welcome.assignment.replica);
    // A second connection with the same session replaces the first (code 4000), never duplicates it.
    const third = await RawPeer.join(s.wsUrl, { session: first.welcome.session });
    expect((await again.peer.waitClosed())?.code).toBe(4000);
    expect(s.c.hub.livePeers('default').filter((p) => p === first.welcome.peerId)).toHaveLength(1);
    third.peer.close();

    const [body, mac] = first.welcome.session.split('.') as [string, string];
    const claims = JSON.parse(Buffer.from(body, 'base64url').toString());
    const forgedBody = Buffer.from(JSON.stringify({ ...claims, p: 'p-ffffffffffffffff' })).toString('base64url');
    for (const session of [`${forgedBody}.${mac}`, `${body}.${mac.slice(0, -2)}AA`, 'garbage', `${body}.`]) {
      const p = await RawPeer.connect(s.wsUrl);
      p.send({ t: 'hello', v: PROTOCOL_VERSION, session });
      expect(await p.next((m) => m.t === 'error')).toMatchObject({ code: 'bad-session', fatal: true });
      expect((await p.waitClosed())?.code).toBe(4003);
    }
    const p = await RawPeer.connect(s.wsUrl);
    p.send({ t: 'hello', v: PROTOCOL_VERSION, run: 'other', session: first.welcome.session });
    expect(await p.next((m) => m.t === 'error')).toMatchObject({ code: 'bad-session', message: expect.stringMatching(/belongs to run default/) });
  });

  it('pairs ready peers with each other, and sends a lone peer solo after its wait', async () => {
    const a = await RawPeer.join(s.wsUrl);
    const b = await RawPeer.join(s.wsUrl);
    try {
      a.peer.send({ t: 'ready', round: 3, waitMs: 2000 });
      b.peer.send({ t: 'ready', round: 5, waitMs: 2000 });
      const pa = await a.peer.next((m) => m.t === 'paired');
      const pb = await b.peer.next((m) => m.t === 'paired');
      expect(pa).toMatchObject({ round: 3, partner: b.welcome.peerId });
      expect(pb).toMatchObject({ round: 5, partner: a.welcome.peerId });
      expect((pa as { initiator: boolean }).initiator).not.toBe((pb as { initiator: boolean }).initiator);
      const t0 = Date.now();
      a.peer.send({ t: 'ready', round: 4, waitMs: 150 });
      const solo = await a.peer.next((m) => m.t === 'paired' && m.round === 4);
      expect(solo).toMatchObject({ partner: null });
      expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
    } finally {
      a.peer.close(); b.peer.close();
    }
  });

  it('acknowledges reports after they are stored, once per sequence number', async () => {
    const { peer, welcome } = await RawPeer.join(s.wsUrl);
    try {
      peer.send(report(7, { valLoss: 4.5, partner: 'p-0123456789abcdef', partnerDist: 0.25 }));
      expect(await peer.next((m) => m.t === 'ack' && m.seq === 7)).toEqual({ t: 'ack', seq: 7 });
      const row = s.c.db.prepare('SELECT * FROM reports WHERE peer_id = ? AND seq = 7').get(welcome.peerId) as Record<string, unknown>;
      // A partner the pool never gave this peer is not stored as one (server.metrics-bounds.test.ts).
      expect(row).toMatchObject({ run_id: 'default', val_loss: 4.5, partner: null, partner_dist: null, adapter: 'test' });
      const before = tableCounts(s.c.db).reports;
      peer.send(report(7, { trainLoss: 99 }));
      expect(await peer.next((m) => m.t === 'ack' && m.seq === 7 && m.duplicate === true)).toBeTruthy();
      expect(tableCounts(s.c.db).reports).toBe(before);
    } finally {
      peer.close();
    }
  });

  it('drops silent peers after the liveness window and keeps those that heartbeat', async () => {
    const silent = await RawPeer.join(s.wsUrl);
    const alive = await RawPeer.join(s.wsUrl);
    const stop = heartbeat(alive.peer);
    try {
      const closed = await silent.peer.waitClosed(6000);
      expect(closed?.code).toBe(4001);
      expect(silent.peer.frames.at(-1)).toMatchObject({ t: 'error', code: 'timeout' });
      expect(s.c.hub.isLive(silent.welcome.peerId)).toBe(false);
      expect(s.c.hub.isLive(alive.welcome.peerId)).toBe(true);
      const left = s.c.db.prepare("SELECT COUNT(*) AS n FROM events WHERE kind = 'peer-left' AND peer_id = ?").get(silent.welcome.peerId) as { n: number };
      expect(left.n).toBe(1);
    } finally {
      stop(); alive.peer.close();
    }
  });

  it('closes connections that send frames out of order or never say hello', async () => {
    const early = await RawPeer.connect(s.wsUrl);
    early.send(report(1));
    expect(await early.next((m) => m.t === 'error')).toMatchObject({ code: 'not-joined', fatal: true });
    expect((await early.waitClosed())?.code).toBe(1008);
    const mute = await RawPeer.connect(s.wsUrl);
    expect((await mute.waitClosed(3000))?.code).toBe(1008);
    expect(mute.frames[0]).toMatchObject({ code: 'timeout' });
    const twice = await RawPeer.join(s.wsUrl);
    twice.peer.send({ t: 'hello', v: PROTOCOL_VERSION });
    expect(await twice.peer.next((m) => m.t === 'error')).toMatchObject({ code: 'already-joined' });
    twice.peer.close();
  });

  it('the signaling client joins, reports, pairs and hands out signals through the Signaling interface', async () => {
    const mk = () => new SignalingClient({ url: s.url, WebSocket: WebSocket as unknown as WebSocketCtor, client: { kind: 'node' }, session: memorySessionStore() });
    const a = mk(), b = mk();
    const pairedA: PairAssignment[] = [];
    const signalsB: { from: string; data: unknown }[] = [];
    a.on('paired', (e) => pairedA.push(e));
    b.on('signal', (e) => signalsB.push(e));
    a.start(); b.start();
    try {
      await until(() => a.connected && b.connected, 5000, 'both clients to join');
      a.report({ time: Date.now(), step: 1, round: 0, trainLoss: 5, valLoss: null, tokensPerS: 1, bytesIn: 0, bytesOut: 0, partner: null, partnerDist: null, adapter: null });
      await until(() => a.pendingReports === 0, 3000, 'the ack');
      a.ready(1, 2000); b.ready(5, 2000);
      await until(() => pairedA.length === 1, 3000, 'pairing');
      // Each peer counts its own rounds: a is told the round b entered the pool with.
      expect(pairedA[0]).toMatchObject({ round: 1, partner: b.peerId, partnerRound: 5 });
      a.sendSignal(b.peerId!, { candidate: 'x' });
      await until(() => signalsB.length === 1, 3000, 'the signal');
      expect(signalsB[0]).toEqual({ from: a.peerId, data: { candidate: 'x' } });
    } finally {
      a.stop(); b.stop();
    }
  });

  it('stopping a run tells its peers and closes them; new joins are refused', async () => {
    await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id: 'brief', dataset: 'moby-dick', preset: 'micro' } });
    const { peer } = await RawPeer.join(s.wsUrl, { run: 'brief' });
    const r = await s.c.app.inject({ method: 'POST', url: '/api/runs/brief/stop', headers: s.admin });
    expect(r.statusCode).toBe(200);
    expect(await peer.next((m) => m.t === 'config')).toMatchObject({ run: { id: 'brief', status: 'stopped' } });
    expect(await peer.waitClosed()).toEqual({ code: 4002, reason: 'run-stopped' });
    const late = await RawPeer.connect(s.wsUrl);
    late.send({ t: 'hello', v: PROTOCOL_VERSION, run: 'brief' });
    expect(await late.next((m) => m.t === 'error')).toMatchObject({ code: 'run-stopped' });
  });
});
