// Offender reports over the real coordinator: a peer reports a partner whose payload failed
// validation; the coordinator stores it as a run event, streams it live, refuses malformed or
// spoofed reports without writing anything, and its ready pool never pairs the two again.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { SignalingClient, memorySessionStore, type WebSocketCtor } from '../src/sync/signaling-client.ts';
import type { PairedMsg, ServerMessage } from '../src/protocol/messages.ts';
import { MAX_OFFENDER_REASON } from '../src/protocol/messages.ts';
import { withPeerReplay } from '../src/volunteer/signaling.ts';
import { PROBATION_EXCHANGES, REST_READIES, REST_WINDOW, SOFT_REPORTS_KEPT } from '../server/peers.ts';
import { RawPeer, report, sleep, startServer, until, type TestServer } from './support/coordinator.ts';
import { PeerList } from '../src/protocol/api.ts';
import { schemaProblem } from '../src/protocol/check.ts';
import { CoordinatorDashboardSource } from '../src/ui/browser/coordinator-dashboard.ts';

let s: TestServer;
beforeAll(async () => {
  // These raw peers answer at once, with no inner loop between rounds: there is no cadence for
  // the pool to predict from, so it runs the plain rule (everyone waits its whole wait).
  // Every peer here is on 127.0.0.1, one address: its offender-report budget is tested alone below.
  s = await startServer({ hub: { heartbeatMs: 200, livenessMs: 5000, helloTimeoutMs: 2000, pairPrediction: false, offenderReportsPerMinute: 1e6, offenderReportBurst: 1e6 } });
  for (const id of ['off', 'soft', 'lag', 'stall', 'rest', 'spread', 'two', 'state', 'elsewhere', 'ids', 'probation', 'one-host', 'lab', 'standing', 'departed']) {
    const r = await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id, dataset: 'moby-dick', preset: 'micro' } });
    expect(r.statusCode).toBe(201);
  }
});
afterAll(async () => {
  await s?.close();
});

const offenderRows = () => s.c.db.prepare("SELECT run_id AS runId, peer_id AS peerId, data_json AS data FROM events WHERE kind = 'peer-offender' ORDER BY id").all() as { runId: string; peerId: string; data: string }[];

/** Reads the run's live SSE stream into `text` until aborted. */
function subscribe(run: string): { text: () => string; stop: () => Promise<void> } {
  const ctl = new AbortController();
  let text = '';
  const pump = (async () => {
    const res = await fetch(`${s.url}/api/runs/${run}/stream`, { signal: ctl.signal });
    const reader = res.body!.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      text += new TextDecoder().decode(value);
    }
  })().catch(() => {});
  return { text: () => text, stop: async () => { ctl.abort(); await pump; } };
}

function heartbeat(...ps: RawPeer[]): () => void {
  const t = setInterval(() => { for (const p of ps) if (p.ws.readyState === 1) p.send({ t: 'hb' }); }, 50);
  return () => clearInterval(t);
}

/**
 * Has the pool pair `a` (raw) with `b` (raw, or a SignalingClient through its ready()): a report
 * is accepted only about a partner the pool gave the reporter.
 */
async function pairUp(a: RawPeer, b: RawPeer | SignalingClient, bId: string, round = 0): Promise<void> {
  const n = a.frames.length;
  a.send({ t: 'ready', round, waitMs: 3000 });
  if (b instanceof RawPeer) b.send({ t: 'ready', round, waitMs: 3000 }); else b.ready(round, 3000);
  const m = await a.next<PairedMsg>((x) => x.t === 'paired' && x.round === round, 5000, n);
  expect(m.partner).toBe(bId);
}

/** Report sequence numbers, unique across the file (each peer's acks are matched by them). */
let reportSeq = 0;
/** `p` reports round `round` as paired with `partner` (null: solo); waits for the ack. */
async function reportRound(p: RawPeer, round: number, partner: string | null): Promise<void> {
  const n = p.frames.length, k = ++reportSeq;
  p.send(report(k, { round, step: round + 1, partner, partnerDist: partner ? 0.5 : null }));
  await p.next((m) => m.t === 'ack' && m.seq === k, 5000, n);
}

/** Both ready for `round` with little wait; resolves with what each was told. */
async function meet(a: RawPeer, b: RawPeer, round: number, waitMs = 300): Promise<[PairedMsg, PairedMsg]> {
  const [na, nb] = [a.frames.length, b.frames.length];
  a.send({ t: 'ready', round, waitMs });
  b.send({ t: 'ready', round, waitMs });
  const got = (p: RawPeer, n: number) => p.next<PairedMsg>((m) => m.t === 'paired' && m.round === round, 5000, n);
  return [await got(a, na), await got(b, nb)];
}

describe('offender reports', () => {
  it('SignalingClient.reportOffender is stored as a run event and shown on the live stream, up to the veto', async () => {
    const live = subscribe('off');
    const accused = await RawPeer.join(s.wsUrl, { run: 'off' });
    const client = new SignalingClient({ url: s.url, run: 'off', WebSocket: WebSocket as unknown as WebSocketCtor, client: { kind: 'node' }, session: memorySessionStore() });
    const stopHb = heartbeat(accused.peer);
    client.start();
    try {
      await until(() => client.connected, 5000, 'the client to join');
      await pairUp(accused.peer, client, client.peerId!);
      const before = offenderRows().length;
      const long = 'ERR_BAD_PAYLOAD: ' + 'x'.repeat(2 * MAX_OFFENDER_REASON);
      client.reportOffender(accused.welcome.peerId, long);
      await until(() => offenderRows().length > before, 5000, 'the offender event');
      const row = offenderRows().at(-1)!;
      expect(row).toMatchObject({ runId: 'off', peerId: client.peerId });
      const data = JSON.parse(row.data) as { accused: string; reason: string };
      expect(data.accused).toBe(accused.welcome.peerId);
      expect(data.reason.startsWith('ERR_BAD_PAYLOAD: xxx')).toBe(true);
      expect(data.reason.length).toBe(MAX_OFFENDER_REASON); // cut to fit, not refused

      await until(() => live.text().includes('"kind":"peer-offender"'), 5000, 'the event on the live stream');
      const block = live.text().split('\n\n').find((b) => b.includes('"kind":"peer-offender"'))!;
      expect(block.startsWith('event: peer\n')).toBe(true);
      expect(JSON.parse(block.split('\ndata: ')[1]!)).toMatchObject({ runId: 'off', kind: 'peer-offender', peerId: client.peerId, data: { accused: accused.welcome.peerId } });

      // REST shows it too. The second report of the pair is its second strike and the veto;
      // reports past it write nothing more.
      const r = await s.c.app.inject({ method: 'GET', url: '/api/runs/off/events' });
      expect((r.json() as { events: { kind: string }[] }).events.filter((e) => e.kind === 'peer-offender')).toHaveLength(1);
      expect(data).toMatchObject({ strike: 1, vetoed: false });
      client.reportOffender(accused.welcome.peerId, 'ERR_BAD_PAYLOAD: again');
      await until(() => offenderRows().length > before + 1, 5000, 'the second strike');
      expect(JSON.parse(offenderRows().at(-1)!.data)).toMatchObject({ strike: 2, vetoed: true });
      client.reportOffender(accused.welcome.peerId, 'ERR_BAD_PAYLOAD: and again');
      await sleep(200);
      expect(offenderRows()).toHaveLength(before + 2);
    } finally {
      stopHb();
      client.stop();
      accused.peer.close();
      await live.stop();
    }
  });

  it('reaches the coordinator through the volunteers\' signaling wrapper (browser and Node) too', async () => {
    const accused = await RawPeer.join(s.wsUrl, { run: 'off' });
    const client = new SignalingClient({ url: s.url, run: 'off', WebSocket: WebSocket as unknown as WebSocketCtor, client: { kind: 'node' }, session: memorySessionStore() });
    const stopHb = heartbeat(accused.peer);
    client.start();
    try {
      await until(() => client.connected, 5000, 'the client to join');
      await pairUp(accused.peer, client, client.peerId!);
      const meshSide = withPeerReplay(client); // what src/ui/pages/engine-wiring.ts and src/volunteer give the mesh
      expect(meshSide.reportOffender).toBeTypeOf('function');
      const before = offenderRows().length;
      meshSide.reportOffender!(accused.welcome.peerId, 'phi-distance: 12.5 > 4');
      await until(() => offenderRows().length === before + 1, 5000, 'the offender event');
      expect(offenderRows().at(-1)).toMatchObject({ peerId: client.peerId, data: expect.stringContaining(accused.welcome.peerId) });
    } finally {
      stopHb();
      client.stop();
      accused.peer.close();
    }
  });

  it('refuses malformed and spoofed reports with an error and writes nothing', async () => {
    const a = await RawPeer.join(s.wsUrl, { run: 'off' });
    const b = await RawPeer.join(s.wsUrl, { run: 'off' });
    const other = await RawPeer.join(s.wsUrl, { run: 'elsewhere' });
    const stopHb = heartbeat(a.peer, b.peer, other.peer);
    const before = offenderRows().length;
    try {
      const bad: [unknown, string, RegExp][] = [
        [{ t: 'offender', peer: b.welcome.peerId }, 'bad-message', /reason/],
        [{ t: 'offender', peer: b.welcome.peerId, reason: '' }, 'bad-message', /reason/],
        [{ t: 'offender', peer: b.welcome.peerId, reason: 'r'.repeat(MAX_OFFENDER_REASON + 1) }, 'bad-message', /reason/],
        [{ t: 'offender', peer: 'p-XYZ', reason: 'x' }, 'bad-message', /peer/],
        [{ t: 'offender', peer: b.welcome.peerId, reason: 7 }, 'bad-message', /reason/],
        // Spoofing: naming the reporter is not a field; reporting oneself, a peer of another run,
        // or a peer the coordinator never saw is refused.
        [{ t: 'offender', from: other.welcome.peerId, peer: b.welcome.peerId, reason: 'x' }, 'bad-message', /from/],
        [{ t: 'offender', peer: a.welcome.peerId, reason: 'x' }, 'bad-message', /itself/],
        [{ t: 'offender', peer: other.welcome.peerId, reason: 'x' }, 'unknown-peer', /not a peer of run off/],
        [{ t: 'offender', peer: 'p-0000000000000000', reason: 'x' }, 'unknown-peer', /not a peer of run off/],
        // A peer of the run that the pool never paired with the reporter (issue 15: fresh ids
        // accusing a peer they never met).
        [{ t: 'offender', peer: b.welcome.peerId, reason: 'ERR_BAD_HASH: mismatch' }, 'unknown-peer', /not one of your recent partners/],
      ];
      for (const [msg, code, re] of bad) {
        const n = a.peer.frames.length;
        a.peer.send(msg);
        const err = await a.peer.next<Extract<ServerMessage, { t: 'error' }>>((m) => m.t === 'error', 3000, n);
        expect(err.code, JSON.stringify(msg)).toBe(code);
        expect(err.message, JSON.stringify(msg)).toMatch(re);
        expect(err.fatal).toBeUndefined();
      }
      // Before hello, an offender frame ends the connection.
      const stranger = await RawPeer.connect(s.wsUrl);
      stranger.send({ t: 'offender', peer: b.welcome.peerId, reason: 'x' });
      expect(await stranger.waitClosed(3000)).not.toBeNull();
      await sleep(100);
      expect(offenderRows()).toHaveLength(before);
      // The connection survived its rejected frames and still works: once the pool paired the
      // two, the same report is accepted.
      await pairUp(a.peer, b.peer, b.welcome.peerId);
      a.peer.send({ t: 'offender', peer: b.welcome.peerId, reason: 'ERR_BAD_HASH: mismatch' });
      await until(() => offenderRows().length === before + 1, 5000, 'the valid report after the refused ones');
      // Reports are frames like any other: a flood is rate-limited.
      const n = a.peer.frames.length;
      for (let i = 0; i < 260; i++) a.peer.send({ t: 'offender', peer: b.welcome.peerId, reason: `flood ${i}` });
      expect(await a.peer.next((m) => m.t === 'error' && m.code === 'rate-limited', 3000, n)).toBeTruthy();
      await sleep(100);
      // The flood's first report got through as the pair's second strike (the veto); no more.
      expect(offenderRows()).toHaveLength(before + 2);
    } finally {
      stopHb();
      a.peer.close(); b.peer.close(); other.peer.close();
    }
  });

  it('after two reports the ready pool never pairs the reporter with the accused again; others still pair with both', async () => {
    const [a, b, c] = [
      await RawPeer.join(s.wsUrl, { run: 'off' }),
      await RawPeer.join(s.wsUrl, { run: 'off' }),
      await RawPeer.join(s.wsUrl, { run: 'off' }),
    ];
    const stopHb = heartbeat(a.peer, b.peer, c.peer);
    const ids = [a, b, c].map((p) => p.welcome.peerId);
    const paired = (p: RawPeer, round: number, from: number) => p.next<PairedMsg>((m) => m.t === 'paired' && m.round === round, 5000, from);
    try {
      // Before the report a and b do pair.
      let na = a.peer.frames.length, nb = b.peer.frames.length;
      a.peer.send({ t: 'ready', round: 0, waitMs: 2000 });
      b.peer.send({ t: 'ready', round: 0, waitMs: 2000 });
      expect((await paired(a.peer, 0, na)).partner).toBe(ids[1]);
      expect((await paired(b.peer, 0, nb)).partner).toBe(ids[0]);

      // b reports a once: one strike is not a veto, they still pair.
      const strikes = () => offenderRows().filter((r) => r.peerId === ids[1] && r.data.includes(ids[0]!)).length;
      b.peer.send({ t: 'offender', peer: ids[0], reason: 'ERR_NONFINITE: NaN in phi' });
      await until(() => strikes() === 1, 5000, 'the first report');
      na = a.peer.frames.length; nb = b.peer.frames.length;
      a.peer.send({ t: 'ready', round: 100, waitMs: 2000 });
      b.peer.send({ t: 'ready', round: 100, waitMs: 2000 });
      expect((await paired(a.peer, 100, na)).partner).toBe(ids[1]);
      expect((await paired(b.peer, 100, nb)).partner).toBe(ids[0]);

      // A second report is the veto (the reverse direction is covered by the pool being symmetric).
      b.peer.send({ t: 'offender', peer: ids[0], reason: 'ERR_NONFINITE: NaN in phi' });
      await until(() => strikes() === 2, 5000, 'the second report');

      // Now a and b alone in the pool both go solo, round after round.
      for (let round = 1; round <= 3; round++) {
        na = a.peer.frames.length; nb = b.peer.frames.length;
        a.peer.send({ t: 'ready', round, waitMs: 300 });
        b.peer.send({ t: 'ready', round, waitMs: 300 });
        expect((await paired(a.peer, round, na)).partner).toBeNull();
        expect((await paired(b.peer, round, nb)).partner).toBeNull();
      }
      // With c in the pool, c meets a or b, never a with b; the odd one out goes solo.
      const partnersOfC = new Set<string>();
      for (let round = 4; round <= 15; round++) {
        const n = [a, b, c].map((p) => p.peer.frames.length);
        for (const p of [a, b, c]) p.peer.send({ t: 'ready', round, waitMs: 400 });
        const got = await Promise.all([a, b, c].map((p, i) => paired(p.peer, round, n[i]!)));
        expect(got[0]!.partner === ids[1] || got[1]!.partner === ids[0]).toBe(false);
        expect(got[2]!.partner).not.toBeNull();
        partnersOfC.add(got[2]!.partner!);
        expect(got.filter((m) => m.partner === null)).toHaveLength(1);
      }
      // The shuffle is random: over 12 rounds c meets both (chance it does not: 2 / 2^12).
      expect(partnersOfC).toEqual(new Set([ids[0], ids[1]]));
    } finally {
      stopHb();
      a.peer.close(); b.peer.close(); c.peer.close();
    }
  });
});

describe('a bootstrap source that served a bad state', () => {
  it('is reportable by the newcomer it signalled (stored as unpaired: the alert does not count it); a peer that never signalled it, or another reason, is refused', async () => {
    // k and c were there first: the newcomer n's welcome lists them.
    const [k, c, n] = [await RawPeer.join(s.wsUrl, { run: 'state' }), await RawPeer.join(s.wsUrl, { run: 'state' }), await RawPeer.join(s.wsUrl, { run: 'state' })];
    const stopHb = heartbeat(n.peer, k.peer, c.peer);
    const [ni, ki, ci] = [n, k, c].map((p) => p.welcome.peerId);
    const rows = () => offenderRows().filter((r) => r.runId === 'state');
    const refused = async (msg: Record<string, unknown>, why: RegExp) => {
      const at = n.peer.frames.length;
      n.peer.send(msg);
      const err = await n.peer.next<Extract<ServerMessage, { t: 'error' }>>((m) => m.t === 'error', 3000, at);
      expect(err.message).toMatch(why);
    };
    try {
      // The newcomer n asks k for its state over the mesh: k's answer comes through the relay.
      n.peer.send({ t: 'signal', to: ki, data: { type: 'offer', sdp: 'v=0' } });
      await k.peer.next((m) => m.t === 'signal', 3000);
      k.peer.send({ t: 'signal', to: ni, data: { type: 'answer', sdp: 'v=0' } });
      await n.peer.next((m) => m.t === 'signal', 3000);
      // c never signalled n: a state n "got" from it is a lie, as is a payload report about k.
      await refused({ t: 'offender', peer: ci, reason: 'bad-state: state from neighbour has validation loss 7.4, worse than the bound 6.05' }, /nor a peer whose state you asked for/);
      await refused({ t: 'offender', peer: ki, reason: 'delta-norm: ||Δ|| = 9 > 30 × median 0.1' }, /nor a peer whose state you asked for/);
      expect(rows()).toEqual([]);
      n.peer.send({ t: 'offender', peer: ki, reason: 'bad-state: state from neighbour has validation loss 7.4, worse than the bound 6.05' });
      await until(() => rows().length === 1, 5000, 'the bad-state report');
      expect(rows()[0]!.peerId).toBe(ni);
      expect(JSON.parse(rows()[0]!.data)).toMatchObject({ accused: ki, paired: false, strike: 1 });
    } finally {
      stopHb();
      n.peer.close(); k.peer.close(); c.peer.close();
    }
  });
});

describe('probe CUSUM reports', () => {
  it('are stored as evidence (at most SOFT_REPORTS_KEPT per pair) but are no strike, as are lag reports (phi-lag); a second CUSUM report rests the pair for REST_READIES of the reporter\'s readies, then they pair again; a gross harm still counts', async () => {
    // Honest partners' noisy probe losses add up to a CUSUM report about once in a few hundred
    // exchanges; two such reports used to part the only pair of a swarm of two for the run.
    // A third peer stays live and idle: a rest holds only while the run has someone else.
    const [a, b, idle] = [await RawPeer.join(s.wsUrl, { run: 'soft' }), await RawPeer.join(s.wsUrl, { run: 'soft' }), await RawPeer.join(s.wsUrl, { run: 'soft' })];
    const stopHb = heartbeat(a.peer, b.peer, idle.peer);
    const ids = [a, b].map((p) => p.welcome.peerId);
    const rows = () => offenderRows().filter((r) => r.runId === 'soft');
    // The third is the mesh's lag report (src/sync/validate.ts): evidence too.
    const soft = (k: number) => b.peer.send({ t: 'offender', peer: ids[0], reason: k === 2 ? 'phi-lag: φ_j sat 3.4 Δ scales behind ours along its own Δ; lag sum 2.9 > 2.5 (slack 1 a payload)'
      : `probe-harm: paired 2.08 vs solo 2.09 on 4 probe windows: excess 0.02, margin 0.03; cusum 4.4 > 4 (${k})` });
    try {
      await pairUp(a.peer, b.peer, ids[1]!, 0);
      // One report is free: the two pair again at once.
      soft(0);
      await until(() => rows().length === 1, 5000, 'the first report');
      await pairUp(a.peer, b.peer, ids[1]!, 1);
      // The second rests them for b's next REST_READIES readies (each a solo step for both), then
      // they pair again.
      soft(1);
      await until(() => rows().length === 2, 5000, 'the second report');
      let round = 2;
      for (let k = 0; k < REST_READIES; k++, round++) {
        const [ma, mb] = await meet(a.peer, b.peer, round);
        expect([ma.partner, mb.partner], `b's ready ${k + 1} of the rest`).toEqual([null, null]);
      }
      await pairUp(a.peer, b.peer, ids[1]!, round++);
      // Later reports: stored up to SOFT_REPORTS_KEPT, and each rests the pair again (longer).
      for (let k = 2; k < SOFT_REPORTS_KEPT + 3; k++) soft(k);
      // Each report answers nothing; a gross one after them shows when all were handled.
      b.peer.send({ t: 'offender', peer: ids[0], reason: 'probe-gross: paired 3.1 vs solo 2.1' });
      await until(() => rows().some((r) => r.data.includes('probe-gross')), 5000, 'the gross report');
      const stored = rows().filter((r) => r.data.includes('probe-harm') || r.data.includes('phi-lag'));
      expect(stored).toHaveLength(SOFT_REPORTS_KEPT);
      for (const r of stored) expect(JSON.parse(r.data)).toMatchObject({ accused: ids[0], vetoed: false });
      expect(JSON.parse(rows().at(-1)!.data)).toMatchObject({ reason: 'probe-gross: paired 3.1 vs solo 2.1', strike: 1, vetoed: false });
      const [ma, mb] = await meet(a.peer, b.peer, round++);
      expect([ma.partner, mb.partner]).toEqual([null, null]);
      // A second gross harm is the veto.
      b.peer.send({ t: 'offender', peer: ids[0], reason: 'probe-gross: paired 3.2 vs solo 2.1' });
      await until(() => rows().filter((r) => r.data.includes('probe-gross')).length === 2, 5000, 'the second gross report');
      expect(JSON.parse(rows().at(-1)!.data)).toMatchObject({ strike: 2, vetoed: true });
    } finally {
      stopHb();
      a.peer.close(); b.peer.close(); idle.peer.close();
    }
  });
  it('a lag report (phi-lag) rests a pair for REST_READIES at most, never longer: a peer behind the reporter catches up only by pairing with it', async () => {
    const [a, b, idle] = [await RawPeer.join(s.wsUrl, { run: 'lag' }), await RawPeer.join(s.wsUrl, { run: 'lag' }), await RawPeer.join(s.wsUrl, { run: 'lag' })];
    const stopHb = heartbeat(a.peer, b.peer, idle.peer);
    const ids = [a, b].map((p) => p.welcome.peerId);
    const rows = () => offenderRows().filter((r) => r.runId === 'lag');
    const lag = (k: number) => b.peer.send({ t: 'offender', peer: ids[0], reason: `phi-lag: φ_j sat 3.4 Δ scales behind ours along its own Δ; lag sum 2.9 > 2.5 (slack 1 a payload) (${k})` });
    try {
      let round = 0;
      await pairUp(a.peer, b.peer, ids[1]!, round++);
      lag(0);
      await until(() => rows().length === 1, 5000, 'the first report');
      // Each later report soon after rests the pair for REST_READIES of b's readies, the third and
      // fourth no longer than the second (a CUSUM report's rest doubles).
      for (let k = 1; k < 4; k++) {
        await pairUp(a.peer, b.peer, ids[1]!, round++);
        lag(k);
        await until(() => rows().length === k + 1, 5000, `report ${k + 1}`);
        for (let r = 0; r < REST_READIES; r++, round++) {
          const [ma, mb] = await meet(a.peer, b.peer, round);
          expect([ma.partner, mb.partner], `report ${k + 1}, b's ready ${r + 1} of the rest`).toEqual([null, null]);
        }
      }
      await pairUp(a.peer, b.peer, ids[1]!, round++);
      for (const r of rows()) expect(JSON.parse(r.data)).toMatchObject({ accused: ids[0], vetoed: false });
    } finally {
      stopHb();
      a.peer.close(); b.peer.close(); idle.peer.close();
    }
  });

  it('a stall report (a partner\'s payload missed the deadline twice in a row) is evidence, no strike nor veto, and rests the pair at once: REST_READIES of the reporter\'s readies, twice that at the next', async () => {
    // The mesh sends it only at the second stall in a row (src/sync/mesh.ts noteStall), each one a
    // whole deadline of the reporter's; before, the pool learnt of no missed deadline and paired
    // the two again next round.
    const [a, b, idle] = [await RawPeer.join(s.wsUrl, { run: 'stall' }), await RawPeer.join(s.wsUrl, { run: 'stall' }), await RawPeer.join(s.wsUrl, { run: 'stall' })];
    const stopHb = heartbeat(a.peer, b.peer, idle.peer);
    const ids = [a, b].map((p) => p.welcome.peerId);
    const rows = () => offenderRows().filter((r) => r.runId === 'stall');
    const stall = (k: number) => b.peer.send({ t: 'offender', peer: ids[0], reason: `stall: its payload missed our deadline ${k + 2} exchanges in a row (round ${k})` });
    try {
      let round = 0;
      for (const [k, readies] of [[0, REST_READIES], [1, 2 * REST_READIES]] as const) {
        await pairUp(a.peer, b.peer, ids[1]!, round++);
        stall(k);
        await until(() => rows().length === k + 1, 5000, `stall report ${k + 1}`);
        expect(JSON.parse(rows()[k]!.data)).toMatchObject({ accused: ids[0], strike: k + 1, vetoed: false, paired: true });
        expect(s.c.hub.canPair('stall', ids[1]!, ids[0]!)).toBe(false);
        for (let r = 0; r < readies; r++, round++) {
          const [ma, mb] = await meet(a.peer, b.peer, round);
          expect([ma.partner, mb.partner], `stall report ${k + 1}, b's ready ${r + 1} of the rest`).toEqual([null, null]);
        }
      }
      // The rest is over and two reports made no veto: they pair again. A gross harm is then the
      // pair's first strike: the stall reports were none.
      await pairUp(a.peer, b.peer, ids[1]!, round++);
      b.peer.send({ t: 'offender', peer: ids[0], reason: 'probe-gross: paired 3.1 vs solo 2.1' });
      await until(() => rows().length === 3, 5000, 'the gross report');
      expect(JSON.parse(rows()[2]!.data)).toMatchObject({ reason: 'probe-gross: paired 3.1 vs solo 2.1', strike: 1, vetoed: false });
    } finally {
      stopHb();
      a.peer.close(); b.peer.close(); idle.peer.close();
    }
  });

  it('reports spread out (as honest CUSUM false alarms are) rest nothing: a report REST_WINDOW readies after the last is free, one soon after it rests the pair', async () => {
    const [a, b, idle] = [await RawPeer.join(s.wsUrl, { run: 'spread' }), await RawPeer.join(s.wsUrl, { run: 'spread' }), await RawPeer.join(s.wsUrl, { run: 'spread' })];
    const stopHb = heartbeat(a.peer, b.peer, idle.peer);
    const ids = [a, b].map((p) => p.welcome.peerId);
    const rows = () => offenderRows().filter((r) => r.runId === 'spread');
    const soft = (k: number) => b.peer.send({ t: 'offender', peer: ids[0], reason: `probe-harm: paired 2.08 vs solo 2.09 on 4 probe windows: excess 0.02, margin 0.03; cusum 4.4 > 4 (${k})` });
    try {
      let round = 0;
      await pairUp(a.peer, b.peer, ids[1]!, round++);
      soft(0);
      await until(() => rows().length === 1, 5000, 'the first report');
      // REST_WINDOW of b's readies later (each a pairing: nothing rests), the window has closed.
      for (let k = 0; k < REST_WINDOW; k++) {
        const [ma, mb] = await meet(a.peer, b.peer, round++);
        expect([ma.partner, mb.partner]).toEqual([ids[1], ids[0]]);
      }
      soft(1);
      await until(() => rows().length === 2, 5000, 'the second report');
      expect(s.c.hub.canPair('spread', ids[1]!, ids[0]!)).toBe(true);
      await pairUp(a.peer, b.peer, ids[1]!, round++);
      // The next report comes one ready after it: the pair rests (for its third report: 2 × REST_READIES).
      soft(2);
      await until(() => rows().length === 3, 5000, 'the third report');
      expect(s.c.hub.canPair('spread', ids[1]!, ids[0]!)).toBe(false);
      const [ma, mb] = await meet(a.peer, b.peer, round++);
      expect([ma.partner, mb.partner]).toEqual([null, null]);
    } finally {
      stopHb();
      a.peer.close(); b.peer.close(); idle.peer.close();
    }
  });
  it('a rest holds only while someone else is live: the only pair of a run is never rested apart', async () => {
    const [a, b] = [await RawPeer.join(s.wsUrl, { run: 'two' }), await RawPeer.join(s.wsUrl, { run: 'two' })];
    const stopHb = heartbeat(a.peer, b.peer);
    const ids = [a, b].map((p) => p.welcome.peerId);
    const rows = () => offenderRows().filter((r) => r.runId === 'two');
    let c: RawPeer | null = null;
    try {
      await pairUp(a.peer, b.peer, ids[1]!, 0);
      for (let k = 0; k < 2; k++) b.peer.send({ t: 'offender', peer: ids[0], reason: `probe-harm: paired 2.08 vs solo 2.09; cusum 4.4 > 4 (${k})` });
      await until(() => rows().length === 2, 5000, 'the two reports');
      // Rested, but with nobody else to pair with: they pair on.
      expect(s.c.hub.canPair('two', ids[1]!, ids[0]!)).toBe(true);
      await pairUp(a.peer, b.peer, ids[1]!, 1);
      // A third peer joins: now the rest holds.
      c = (await RawPeer.join(s.wsUrl, { run: 'two' })).peer;
      await until(() => s.c.hub.livePeers('two').length === 3, 5000, 'the third peer');
      expect(s.c.hub.canPair('two', ids[1]!, ids[0]!)).toBe(false);
    } finally {
      stopHb();
      a.peer.close(); b.peer.close(); c?.close();
    }
  });
  it('a hostile reporter rests only its own pairings: the peer it reports at once pairs with another, and a report about a peer it never met rests nothing', async () => {
    const [r, h, c] = [await RawPeer.join(s.wsUrl, { run: 'rest' }), await RawPeer.join(s.wsUrl, { run: 'rest' }), await RawPeer.join(s.wsUrl, { run: 'rest' })];
    const stopHb = heartbeat(r.peer, h.peer, c.peer);
    const [ri, hi, ci] = [r, h, c].map((p) => p.welcome.peerId);
    try {
      await pairUp(r.peer, h.peer, hi!, 0);
      const before = s.c.hub.remembered().rests;
      for (let k = 0; k < 4; k++) r.peer.send({ t: 'offender', peer: hi, reason: `probe-harm: paired 2.08 vs solo 2.09; cusum 4.4 > 4 (${k})` });
      // About c, whom the pool never gave it: refused, and (in order on the socket) after the four.
      const n = r.peer.frames.length;
      r.peer.send({ t: 'offender', peer: ci, reason: 'probe-harm: paired 2.08 vs solo 2.09; cusum 4.4 > 4' });
      const err = await r.peer.next<Extract<ServerMessage, { t: 'error' }>>((m) => m.t === 'error', 3000, n);
      expect(err.message).toMatch(/not one of your recent partners/);
      expect(s.c.hub.remembered().rests).toBe(before + 1); // r → h only
      expect(s.c.hub.canPair('rest', ri!, hi!)).toBe(false);
      expect(s.c.hub.canPair('rest', ri!, ci!)).toBe(true);
      expect(s.c.hub.canPair('rest', hi!, ci!)).toBe(true);
      // h pairs with c at once, as if nothing had been said.
      await pairUp(h.peer, c.peer, ci!, 1);
    } finally {
      stopHb();
      r.peer.close(); h.peer.close(); c.peer.close();
    }
  });
});

describe('identities that cost something (issue 15)', () => {
  it('a veto follows the accused across a reconnect and to a new id from its address; a peer from elsewhere still pairs', async () => {
    const r = await RawPeer.join(s.wsUrl, { run: 'ids' });
    let x = await RawPeer.join(s.wsUrl, { run: 'ids' }, { localAddress: '127.0.0.2' });
    const stops = [heartbeat(r.peer, x.peer)];
    try {
      const [rx] = await meet(r.peer, x.peer, 0, 3000);
      expect(rx.partner).toBe(x.welcome.peerId);
      for (let i = 0; i < 2; i++) r.peer.send({ t: 'offender', peer: x.welcome.peerId, reason: 'ERR_NONFINITE: NaN in delta' });
      await until(() => offenderRows().filter((row) => row.runId === 'ids').length === 2, 5000, 'the two strikes');

      // The same peer back with its session: the same id, still vetoed.
      x.peer.close();
      x = await RawPeer.join(s.wsUrl, { run: 'ids', session: x.welcome.session }, { localAddress: '127.0.0.2' });
      expect(x.welcome.resumed).toBe(true);
      stops.push(heartbeat(x.peer));
      expect((await meet(r.peer, x.peer, 1))[0].partner).toBeNull();

      // A new id from the same address (no session): the veto follows it.
      x.peer.close();
      const x2 = await RawPeer.join(s.wsUrl, { run: 'ids' }, { localAddress: '127.0.0.2' });
      expect(x2.welcome.peerId).not.toBe(x.welcome.peerId);
      stops.push(heartbeat(x2.peer));
      for (let round = 2; round <= 4; round++) {
        const [a, b] = await meet(r.peer, x2.peer, round);
        expect(a.partner).toBeNull();
        expect(b.partner).toBeNull();
      }
      // A peer from another address is not touched by it.
      const y = await RawPeer.join(s.wsUrl, { run: 'ids' }, { localAddress: '127.0.0.3' });
      stops.push(heartbeat(y.peer));
      x2.peer.close();
      await until(() => !s.c.hub.isLive(x2.welcome.peerId), 5000, 'x2 to leave');
      expect((await meet(r.peer, y.peer, 5, 3000))[0].partner).toBe(y.welcome.peerId);
      y.peer.close();
    } finally {
      for (const stop of stops) stop();
      r.peer.close();
    }
  });

  // Before: the address's strike was taken from the accused's live connection, so a rogue that
  // hung up once its payload was sent (its data channel needs no coordinator) left none, and its
  // next id from the same address was paired with its victim again, strikes or not.
  it('a veto follows the accused to a new id from its address when it left before the reports came', async () => {
    const r = await RawPeer.join(s.wsUrl, { run: 'departed' });
    const x = await RawPeer.join(s.wsUrl, { run: 'departed' }, { localAddress: '127.0.0.2' });
    const stops = [heartbeat(r.peer, x.peer)];
    try {
      const [rx] = await meet(r.peer, x.peer, 0, 3000);
      expect(rx.partner).toBe(x.welcome.peerId);
      x.peer.close();
      await until(() => !s.c.hub.isLive(x.welcome.peerId), 5000, 'x to leave');
      for (let i = 0; i < 2; i++) r.peer.send({ t: 'offender', peer: x.welcome.peerId, reason: 'ERR_NONFINITE: NaN in delta' });
      await until(() => offenderRows().filter((row) => row.runId === 'departed').length === 2, 5000, 'the two strikes');

      const x2 = await RawPeer.join(s.wsUrl, { run: 'departed' }, { localAddress: '127.0.0.2' });
      stops.push(heartbeat(x2.peer));
      for (let round = 1; round <= 3; round++) {
        const [a, b] = await meet(r.peer, x2.peer, round);
        expect(a.partner).toBeNull();
        expect(b.partner).toBeNull();
      }
      x2.peer.close();
    } finally {
      for (const stop of stops) stop();
      r.peer.close();
    }
  });

  it('a new id is on probation until it has PROBATION_EXCHANGES accepted exchanges: partners are told, peer lists mark it, no duty', async () => {
    // From two addresses: exchanges between one address's ids do not count (the next test).
    const a = await RawPeer.join(s.wsUrl, { run: 'probation' }, { localAddress: '127.0.0.2' });
    const b = await RawPeer.join(s.wsUrl, { run: 'probation' }, { localAddress: '127.0.0.3' });
    const stop = heartbeat(a.peer, b.peer);
    const [ia, ib] = [a.welcome.peerId, b.welcome.peerId];
    try {
      // b joined after a: its welcome names a as a peer on probation.
      expect(b.welcome.peers).toContain(ia);
      expect(b.welcome.probation).toContain(ia);
      expect(s.c.hub.onProbation(ia)).toBe(true);
      expect(s.c.hub.eligibleForDuty(ia)).toBe(false);

      let round = 0;
      for (let k = 0; k < PROBATION_EXCHANGES; k++, round++) {
        const [ma, mb] = await meet(a.peer, b.peer, round, 3000);
        // Both are new: each is told its partner is on probation.
        expect(ma).toMatchObject({ partner: ib, partnerRound: round, probation: true });
        expect(mb).toMatchObject({ partner: ia, partnerRound: round, probation: true });
        // Only one side reporting the pairing is not an accepted exchange.
        await reportRound(a.peer, round, ib);
        expect(s.c.hub.acceptedExchanges(ia)).toBe(k);
        await reportRound(b.peer, round, ia);
        expect(s.c.hub.acceptedExchanges(ia)).toBe(k + 1);
        expect(s.c.hub.acceptedExchanges(ib)).toBe(k + 1);
      }
      expect(s.c.hub.onProbation(ia)).toBe(false);
      expect(s.c.hub.eligibleForDuty(ia)).toBe(true);
      // Off probation: the pair message says nothing, and a peer-list change says it is trusted now.
      const [ma] = await meet(a.peer, b.peer, round, 3000);
      expect(ma.partner).toBe(ib);
      expect(ma).not.toHaveProperty('probation');
      const change = await a.peer.next<Extract<ServerMessage, { t: 'peers-change' }>>((m) => m.t === 'peers-change' && (m.trusted ?? []).includes(ib), 5000, 0);
      expect(change.probation ?? []).not.toContain(ib);

      // A report about an exchange takes its acceptance back from both sides.
      await reportRound(a.peer, round, ib);
      await reportRound(b.peer, round, ia);
      expect(s.c.hub.acceptedExchanges(ib)).toBe(PROBATION_EXCHANGES + 1);
      a.peer.send({ t: 'offender', peer: ib, reason: 'probe: paired loss 3.1 > solo 2.4 + margin 0.05' });
      await until(() => s.c.hub.acceptedExchanges(ib) === PROBATION_EXCHANGES, 5000, 'the acceptance taken back');
      expect(s.c.hub.acceptedExchanges(ia)).toBe(PROBATION_EXCHANGES);

      // A newcomer is on probation, and not eligible for duty; a peer that left is not either.
      const c = await RawPeer.join(s.wsUrl, { run: 'probation' });
      expect(c.welcome.probation ?? []).not.toContain(ia);
      expect(s.c.hub.eligibleForDuty(c.welcome.peerId)).toBe(false);
      c.peer.close();
      b.peer.close();
      await until(() => !s.c.hub.isLive(ib), 5000, 'b to leave');
      expect(s.c.hub.eligibleForDuty(ib)).toBe(false);
    } finally {
      stop();
      a.peer.close(); b.peer.close();
    }
  });

  it('two ids from one address never take each other off probation while the run has a peer from elsewhere; alone on a run (a lab, a local run) they do', async () => {
    // A host's two connections send `ready` together, so the pool pairs them, and both report
    // every round as paired with the other: before exchanges had to cross addresses, three such
    // rounds made both trusted (checkpoint duty, preferred as bootstrap sources, a looser probe).
    const rounds = async (run: string, address: string, others: RawPeer[]): Promise<[string, string]> => {
      const a = await RawPeer.join(s.wsUrl, { run }, { localAddress: address });
      const b = await RawPeer.join(s.wsUrl, { run }, { localAddress: address });
      const stop = heartbeat(a.peer, b.peer, ...others);
      const [ia, ib] = [a.welcome.peerId, b.welcome.peerId];
      try {
        for (let round = 0; round < PROBATION_EXCHANGES + 2; round++) {
          const [ma, mb] = await meet(a.peer, b.peer, round, 3000);
          expect(ma).toMatchObject({ partner: ib });
          expect(mb).toMatchObject({ partner: ia });
          await reportRound(a.peer, round, ib);
          await reportRound(b.peer, round, ia);
        }
        return [ia, ib];
      } finally {
        stop();
        a.peer.close(); b.peer.close();
      }
    };
    // A peer from another address is live in the run (it only keeps its connection).
    const outsider = await RawPeer.join(s.wsUrl, { run: 'one-host' }, { localAddress: '127.0.0.5' });
    try {
      for (const p of await rounds('one-host', '127.0.0.4', [outsider.peer])) {
        expect(s.c.hub.acceptedExchanges(p)).toBe(0);
        expect(s.c.hub.onProbation(p)).toBe(true);
        expect(s.c.hub.eligibleForDuty(p)).toBe(false);
      }
    } finally {
      outsider.peer.close();
    }
    // Alone on their run, one address's ids have nobody else to earn trust from: they count.
    for (const p of await rounds('lab', '127.0.0.6', [])) {
      expect(s.c.hub.acceptedExchanges(p)).toBe(PROBATION_EXCHANGES + 2);
      expect(s.c.hub.onProbation(p)).toBe(false);
    }
  });
});

describe('what offender reports can make the coordinator keep', () => {
  // Before: ids of one address that the pool paired with each other reported each other a dozen
  // times a pair, ~600 stored events a second from one address (ids are free), none ever capped,
  // and the hub's strike tables grew with them.
  it('one address has at most its burst of reports stored, then a non-fatal rate-limited, for every id of that address', async () => {
    const t = await startServer({ hub: { heartbeatMs: 200, livenessMs: 5000, pairPrediction: false, offenderReportsPerMinute: 1e-6, offenderReportBurst: 3 } });
    try {
      const r = await t.c.app.inject({ method: 'POST', url: '/api/runs', headers: t.admin, payload: { id: 'budget', dataset: 'moby-dick', preset: 'micro' } });
      expect(r.statusCode).toBe(201);
      const a = await RawPeer.join(t.wsUrl, { run: 'budget' });
      const b = await RawPeer.join(t.wsUrl, { run: 'budget' });
      const A = a.welcome.peerId, B = b.welcome.peerId;
      const stopHb = heartbeat(a.peer, b.peer);
      try {
        const [ma] = await meet(a.peer, b.peer, 0, 3000);
        expect(ma.partner).toBe(B);
        const n = a.peer.frames.length;
        for (const reason of ['probe-harm', 'probe-harm', 'probe-harm', 'probe-harm']) a.peer.send({ t: 'offender', peer: B, reason });
        const err = await a.peer.next<Extract<ServerMessage, { t: 'error' }>>((m) => m.t === 'error', 5000, n);
        expect(err).toMatchObject({ code: 'rate-limited', ref: 'offender' });
        expect(err.message).toMatch(/offender reports a minute; this one is not kept/);
        const stored = () => t.c.db.prepare("SELECT COUNT(*) AS n FROM events WHERE run_id = 'budget' AND kind = 'peer-offender'").get() as { n: number };
        await until(() => t.c.hub.stats.offenderReportsDropped === 1, 5000, 'the fourth report to be dropped');
        expect(stored().n).toBe(3);
        expect(a.peer.closed).toBeNull();
        // B (the same address) files nothing more either: the budget is the address's.
        b.peer.send({ t: 'offender', peer: A, reason: 'bad-delta: x' });
        await until(() => t.c.hub.stats.offenderReportsDropped === 2, 5000, "B's report to be dropped");
        expect(stored().n).toBe(3);
      } finally {
        stopHb();
        a.peer.close();
        b.peer.close();
      }
    } finally {
      await t.close();
    }
  });

  it('a run keeps at most maxOffenderEventsPerRun reports, and the hub counts its strikes again from those', async () => {
    const CAP = 8;
    const t = await startServer({ maxOffenderEventsPerRun: CAP, hub: { heartbeatMs: 200, livenessMs: 5000, pairPrediction: false, offenderReportsPerMinute: 1e6, offenderReportBurst: 1e6 } });
    try {
      const r = await t.c.app.inject({ method: 'POST', url: '/api/runs', headers: t.admin, payload: { id: 'cap', dataset: 'moby-dick', preset: 'micro' } });
      expect(r.statusCode).toBe(201);
      const stored = () => (t.c.db.prepare("SELECT COUNT(*) AS n FROM events WHERE run_id = 'cap' AND kind = 'peer-offender'").get() as { n: number }).n;
      let most = 0, filed = 0;
      // Pairs of fresh ids meet once and report each other: two strikes and four CUSUM reports each way.
      for (let pair = 0; pair < 4; pair++) {
        const a = await RawPeer.join(t.wsUrl, { run: 'cap' });
        const b = await RawPeer.join(t.wsUrl, { run: 'cap' });
        const stopHb = heartbeat(a.peer, b.peer);
        try {
          const [ma] = await meet(a.peer, b.peer, 0, 3000);
          expect(ma.partner).toBe(b.welcome.peerId);
          for (const [from, to] of [[a, b], [b, a]] as const) {
            for (const reason of ['bad-delta: x', 'bad-delta: y', 'probe-harm', 'probe-harm', 'probe-harm', 'probe-harm']) {
              from.peer.send({ t: 'offender', peer: to.welcome.peerId, reason });
              filed++;
            }
          }
          // A heartbeat answered after the reports: every report before it has been handled.
          const n = a.peer.frames.length;
          a.peer.send({ t: 'ready', round: 1, waitMs: 50 });
          await a.peer.next((m) => m.t === 'paired' && (m as PairedMsg).round === 1, 5000, n);
          const n2 = b.peer.frames.length;
          b.peer.send({ t: 'ready', round: 1, waitMs: 50 });
          await b.peer.next((m) => m.t === 'paired' && (m as PairedMsg).round === 1, 5000, n2);
          most = Math.max(most, stored());
        } finally {
          stopHb();
          a.peer.close();
          b.peer.close();
        }
      }
      console.log(`offender cap: ${filed} reports filed, at most ${most} stored (cap ${CAP}), ${stored()} at the end; hub remembers ${JSON.stringify(t.c.hub.remembered())}`);
      expect(filed).toBe(48);
      expect(most).toBeLessThanOrEqual(CAP);
      const kept = t.c.hub.remembered();
      expect(kept.strikes + kept.softReports).toBeLessThanOrEqual(CAP);
    } finally {
      await t.close();
    }
  });

  // A peer's reported tokens/s and step are its own claims: one new id inside the report bounds
  // claimed 1,024,000 tokens/s beside three honest peers' 6,300, and the dashboard summed it in.
  // The peer list tells anyone reading it whose claims the coordinator vouches for (ids off
  // probation) and which ids are one client (a tag, never the address), and the dashboard counts
  // by it (src/ui/core/throughput.ts).
  it('the run\'s peer list says who is off probation and which ids share a client address, never the address', async () => {
    const a = await RawPeer.join(s.wsUrl, { run: 'standing' }, { localAddress: '127.0.0.2' });
    const b = await RawPeer.join(s.wsUrl, { run: 'standing' }, { localAddress: '127.0.0.3' });
    // One host's two ids.
    const c = await RawPeer.join(s.wsUrl, { run: 'standing' }, { localAddress: '127.0.0.7' });
    const d = await RawPeer.join(s.wsUrl, { run: 'standing' }, { localAddress: '127.0.0.7' });
    const stop = heartbeat(a.peer, b.peer, c.peer, d.peer);
    const [ia, ib, ic, id] = [a, b, c, d].map((p) => p.welcome.peerId) as [string, string, string, string];
    const list = async () => {
      const r = await s.c.app.inject({ method: 'GET', url: '/api/runs/standing/peers' });
      expect(r.statusCode).toBe(200);
      expect(r.body).not.toMatch(/127\.0\.0/);
      const body = r.json() as PeerList;
      expect(schemaProblem(PeerList, body, 'reply')).toBeNull();
      return new Map(body.peers.map((p) => [p.id, p]));
    };
    try {
      const before = await list();
      expect([...before.keys()].sort()).toEqual([ia, ib, ic, id].sort());
      expect([...before.values()].every((p) => p.probation)).toBe(true);
      expect(before.get(ic)!.client).toBe(before.get(id)!.client);
      expect(new Set([ia, ib, ic].map((p) => before.get(p)!.client)).size).toBe(3);
      for (let round = 0; round < PROBATION_EXCHANGES; round++) {
        await meet(a.peer, b.peer, round, 3000);
        await reportRound(a.peer, round, ib);
        await reportRound(b.peer, round, ia);
      }
      const after = await list();
      expect([ia, ib, ic, id].map((p) => after.get(p)!.probation)).toEqual([false, false, true, true]);
      // The tag of a client stays the same from one answer to the next.
      expect(after.get(ia)!.client).toBe(before.get(ia)!.client);
      // What the dashboard reads of it.
      const standings = await new CoordinatorDashboardSource({ baseUrl: s.url, runId: 'standing' }).standings();
      expect(new Map(standings.map((p) => [p.id, p.probation]))).toEqual(new Map([[ia, false], [ib, false], [ic, true], [id, true]]));
    } finally {
      stop();
      for (const p of [a, b, c, d]) p.peer.close();
    }
  });
});
