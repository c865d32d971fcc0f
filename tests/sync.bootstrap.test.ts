import { afterEach, describe, expect, it } from 'vitest';
import { chaosLinks, corruptPayload } from './support/chaos.ts';
import { Swarm, gaussian, sameFloats } from './support/swarm.ts';
import type { BootState } from '../src/sync/types.ts';
import { joinRun } from '../src/sync/replica.ts';
import { requestState } from '../src/sync/bootstrap.ts';
import type { MeshCore } from '../src/sync/mesh-core.ts';
import type { ControlMessage } from '../src/protocol/peer-messages.ts';
import { systemClock } from '../src/protocol/clock.ts';
import { silentLogger } from '../src/sync/components.ts';
import { LinkClosedError } from '../src/sync/errors.ts';
import { sendTensor, type Assembler } from '../src/sync/transfer.ts';
import { decodeFrame } from '../src/protocol/frame.ts';
import type { Link } from '../src/sync/links.ts';
import { FakeClock } from './support/fake-clock.ts';
import { until } from './support/wait.ts';
import { DeadlineEstimator } from '../src/sync/deadline.ts';
import { DEFAULT_DEADLINE } from '../src/protocol/exchange-link.ts';

let swarm: Swarm | null = null;
afterEach(() => { swarm?.destroy(); swarm = null; });

const n = 50_000; // a state of 2n floats: 7 chunks

function state(seed: number): Omit<BootState, 'from'> {
  return { phi: gaussian(n, seed, 0.02), momentum: gaussian(n, seed + 1, 1e-3), outerRound: 40 + seed, innerStep: 2000 + seed };
}

describe('bootstrap from a live peer', () => {
  it('pulls φ, momentum and both counters from a random live neighbour, verified', async () => {
    const s = (swarm = new Swarm({ n: 3, transport: 'wrtc', elements: n, seed: 2, verbose: !!process.env.DBG }));
    s.peers.forEach((p, i) => p.mesh.serveState(() => state(10 * i)));
    await s.connected(2);
    // Let the existing links age past the trim grace period: full peers then make room for the
    // newcomer by closing an older link, not the newcomer's fresh one.
    await new Promise((r) => setTimeout(r, 2100));
    const joiner = s.add('newcomer');
    const served: string[] = [];
    for (const p of s.peers) p.mesh.on('state:served', (e) => served.push(`${p.id}->${e.peer}`));
    const got = await joiner.mesh.bootstrap({ timeoutMs: 10_000 });
    expect(got).not.toBeNull();
    const i = s.peers.findIndex((p) => p.id === got!.from);
    expect(i).toBeGreaterThanOrEqual(0);
    const want = state(10 * i);
    expect(sameFloats(got!.phi, want.phi)).toBe('same');
    expect(sameFloats(got!.momentum, want.momentum)).toBe('same');
    expect(got!.outerRound).toBe(want.outerRound);
    expect(got!.innerStep).toBe(want.innerStep);
    expect(served).toEqual([`${got!.from}->newcomer`]);
  });

  it('returns null when nobody serves state (caller falls back to the checkpoint)', async () => {
    const s = (swarm = new Swarm({ n: 2, transport: 'memory', elements: n }));
    await s.connected(1);
    const joiner = s.add('newcomer');
    await s.connected(1, 20_000, [joiner]);
    // Declines are answered, not waited out: with a deadline far beyond the test's own time
    // limit, only the peers' answers can end this (no wall-clock threshold on a shared machine).
    expect(await joiner.mesh.bootstrap({ timeoutMs: 10 * 60_000, tries: 2 })).toBeNull();
  });

  it('returns null when no neighbour appears within the timeout', async () => {
    const s = (swarm = new Swarm({ n: 1, transport: 'memory', elements: n }));
    // The 300 ms deadline ends it; were it ignored, nothing would, and the test's limit fails it.
    expect(await s.peers[0].mesh.bootstrap({ timeoutMs: 300 })).toBeNull();
  });

  it('a corrupted state fails its checksum, is reported and never returned; the next peer is asked', async () => {
    const s = (swarm = new Swarm({
      n: 2, transport: 'memory', elements: n, seed: 3, init: { neighbours: { min: 2, max: 3 } },
      wrap: (id, links) => (id === 'p0' ? chaosLinks(links, (f, { chunk }) => (chunk?.kind === 'state' && chunk.chunkIndex === 2 ? [corruptPayload(f)] : [f])) : links),
    }));
    s.peers[0].mesh.serveState(() => state(0)); // p0 serves, but its chunks get corrupted
    await s.connected(1);
    const joiner = s.add('newcomer');
    await s.connected(2, 5000, [joiner]);
    const offences: string[] = [];
    joiner.mesh.on('offence', (e) => offences.push(`${e.peer}:${e.code}`));
    const asked: string[] = [];
    for (const p of s.peers) p.mesh.on('state:served', () => asked.push(p.id));
    expect(await joiner.mesh.bootstrap({ timeoutMs: 5000, tries: 2 })).toBeNull(); // p1 declines
    expect(offences).toEqual(['p0:ERR_FRAME_CHECKSUM']);
    expect(s.hub.reports.map((r) => [r.from, r.peer])).toEqual([['newcomer', 'p0']]);
    expect(asked).toEqual(['p0']);
  });

  it('refuses a state with NaN, and a neighbour serves one peer at most once per 5 s', async () => {
    const s = (swarm = new Swarm({ n: 1, transport: 'memory', elements: n }));
    s.peers[0].mesh.serveState(() => { const st = state(1); st.momentum[5] = NaN; return st; });
    let served = 0;
    s.peers[0].mesh.on('state:served', () => served++);
    const joiner = s.add('newcomer');
    await s.connected(1);
    const offences: string[] = [];
    joiner.mesh.on('offence', (e) => offences.push(e.code));
    expect(await joiner.mesh.bootstrap({ timeoutMs: 3000, tries: 1 })).toBeNull();
    expect(offences).toEqual(['non-finite']);
    expect(served).toBe(1);
    // One strike does not cut it off, but within 5 s it declines instead of sending again.
    s.peers[0].mesh.serveState(() => state(1));
    expect(await joiner.mesh.bootstrap({ timeoutMs: 1000, tries: 1 })).toBeNull();
    expect(served).toBe(1);
  });
});

describe('a newcomer that cannot be poisoned or crashed', () => {
  /** A swarm whose peers serve `served` (null: nothing yet), and a newcomer linked to all; its offences. */
  async function newcomerAmong(served: (Omit<BootState, 'from'> | null)[], seed: number) {
    const s = (swarm = new Swarm({ n: served.length, transport: 'memory', elements: n, seed, init: { neighbours: { min: served.length, max: served.length + 1 } } }));
    served.forEach((st, i) => s.peers[i]!.mesh.serveState(st ? () => st : null));
    await s.connected(served.length - 1);
    const joiner = s.add('newcomer');
    await s.connected(served.length, 10_000, [joiner]);
    const offences: string[] = [];
    joiner.mesh.on('offence', (e) => offences.push(`${e.peer}:${e.code}`));
    return { s, joiner, offences };
  }

  it('refuses a state past the coordinator\'s step bound without reporting its peer (the bound may be stale)', async () => {
    // (tests/sync.join.test.ts: at the bound the state is taken.)
    const { s, joiner, offences } = await newcomerAmong([{ ...state(0), outerRound: 1000, innerStep: 5000 }, null], 5);
    let served = 0;
    s.peers[0]!.mesh.on('state:served', () => { served++; });
    expect(await joiner.mesh.bootstrap({ timeoutMs: 10_000, tries: 2, check: { floats: n, maxStep: () => 4999 } })).toBeNull();
    expect(served).toBe(1);
    expect(offences).toEqual([]);
  });

  it('refuses a state whose round would overflow and one whose measured loss is too high, reports both, and joins from a good source', async () => {
    const overflow = { ...state(0), outerRound: 0xffffffff, innerStep: 0xffffffff };
    const honest = state(1);
    const poisoned = { ...honest, phi: honest.phi.map((x) => -x) };
    const { s, joiner, offences } = await newcomerAmong([overflow, poisoned, null], 4);
    // Stands in for the trainer's validation loss: the negated φ scores as badly as it did in the attack.
    const measured: number[] = [];
    const check = {
      floats: n, maxLoss: 2.8,
      measure: async (c: { phi: Float32Array }) => { const l = c.phi[0] === poisoned.phi[0] ? 7.98 : 2.3; measured.push(l); return { val: l, train: l }; },
    };
    // All three asked: the overflow refused before measuring, the poisoned by its loss, p2 declines.
    expect(await joiner.mesh.bootstrap({ timeoutMs: 10_000, tries: 3, check })).toBeNull();
    expect(offences.sort()).toEqual([`${s.peers[0]!.id}:bad-state`, `${s.peers[1]!.id}:bad-state`]);
    expect(measured).toEqual([7.98]);

    // joinRun goes on to the checkpoint: a bad one (round 2^53 - 1) is skipped, a fresh start follows;
    // a good one is adopted. Nothing throws.
    const refused: string[] = [];
    const onRefused = (src: string, err: Error) => refused.push(`${src}: ${err.message}`);
    const bad = { ...honest, outerRound: 2 ** 53 - 1 };
    expect(await joinRun(joiner.mesh, { checkpoint: async () => bad, timeoutMs: 300, tries: 1, check, onRefused })).toEqual({ source: 'fresh', state: null });
    expect(refused.join('; ')).toMatch(/checkpoint: .*round 9007199254740991 is outside/);
    const got = await joinRun(joiner.mesh, { checkpoint: async () => honest, timeoutMs: 300, tries: 1, check, onRefused });
    expect(got).toMatchObject({ source: 'checkpoint', state: { outerRound: honest.outerRound, innerStep: honest.innerStep } });
  });

  it('refuses a good φ with momentum 1e30 (its norm) or reversed at 50x honest size (the loss where the next outer step carries φ), reports both; an honest state is adopted', async () => {
    const honest = state(1);
    const huge = { ...honest, momentum: new Float32Array(n).fill(1e30) };
    const reversed = { ...honest, momentum: honest.momentum.map((x) => -50 * x) };
    // Stands in for the trainer's validation loss: it grows as φ moves away from the honest φ
    // (10 nats per ||φ||); every φ served here is the honest one, so φ alone always passes.
    const dist = (phi: Float32Array) => { let d = 0, p = 0; for (let i = 0; i < n; i++) { d += (phi[i]! - honest.phi[i]!) ** 2; p += honest.phi[i]! ** 2; } return Math.sqrt(d / p); };
    const measured: number[] = [];
    const check = { floats: n, maxLoss: 2.8, alpha: 0.5, measure: async (c: { phi: Float32Array }) => { const l = 2.3 + 10 * dist(c.phi); measured.push(l); return { val: l, train: l }; } };
    const { s, joiner, offences } = await newcomerAmong([huge, reversed, null], 6);
    expect(await joiner.mesh.bootstrap({ timeoutMs: 10_000, tries: 3, check })).toBeNull();
    expect(offences.sort()).toEqual([`${s.peers[0]!.id}:bad-state`, `${s.peers[1]!.id}:bad-state`]);
    // 1e30 is refused by its norm before anything is measured; the reversed one passes the norm
    // bound (2.5 ||φ||) and fails where the next outer step would carry φ (φ + α·m, 12.5 nats worse).
    expect(measured.filter((l) => l > 2.8)).toHaveLength(1);

    const refused: string[] = [];
    const onRefused = (src: string, err: Error) => refused.push(`${src}: ${err.message}`);
    expect(await joinRun(joiner.mesh, { checkpoint: async () => huge, timeoutMs: 300, tries: 1, check, onRefused })).toEqual({ source: 'fresh', state: null });
    expect(refused.join('; ')).toMatch(/checkpoint: .*momentum/);
    const got = await joinRun(joiner.mesh, { checkpoint: async () => honest, timeoutMs: 300, tries: 1, check, onRefused });
    expect(got).toMatchObject({ source: 'checkpoint', state: { outerRound: honest.outerRound, innerStep: honest.innerStep } });
    expect(got.state!.momentum).toBe(honest.momentum);
  });
});

describe('housekeeping around transfers', () => {
  it('never trims a link while a state transfer runs on it', async () => {
    const s = (swarm = new Swarm({ n: 1, transport: 'memory', elements: n, init: { neighbours: { min: 1, max: 1 } }, verbose: !!process.env.DBG }));
    const server = s.peers[0];
    // A provider that takes a while (a GPU readback): the request holds the link meanwhile.
    server.mesh.serveState(async () => { await new Promise((r) => setTimeout(r, 400)); return state(3); });
    const joiner = s.add('joiner');
    await s.connected(1);
    // The joiner's link is past its grace period, so without the hold it would be the one to go.
    await new Promise((r) => setTimeout(r, 2100));
    const closed: string[] = [];
    server.mesh.on('neighbour:down', (e) => closed.push(e.peer));
    const pending = joiner.mesh.bootstrap({ timeoutMs: 10_000, tries: 1 });
    await new Promise((r) => setTimeout(r, 20));
    s.add('late'); // dials the server, which is then over max and trims one link
    const got = await pending;
    expect(got?.from).toBe(server.id);
    expect(got!.innerStep).toBe(state(3).innerStep);
    expect(closed).toContain('late');
    expect(closed).not.toContain('joiner');
  });
});

describe('joinRun', () => {
  it('prefers a live peer, then the checkpoint, then a fresh start', async () => {
    const s = (swarm = new Swarm({ n: 1, transport: 'memory', elements: n, init: { neighbours: { min: 2, max: 3 } } }));
    const ckpt = state(99);
    const joiner = s.add('newcomer');
    await s.connected(1);
    let asked = 0;
    const checkpoint = async () => { asked++; return ckpt; };
    // Nobody serves: the checkpoint.
    expect(await joinRun(joiner.mesh, { checkpoint, timeoutMs: 2000, tries: 1 })).toMatchObject({ source: 'checkpoint', state: { innerStep: ckpt.innerStep, from: 'checkpoint' } });
    expect(asked).toBe(1);
    // No checkpoint either: fresh.
    expect(await joinRun(joiner.mesh, { checkpoint: async () => null, timeoutMs: 300, tries: 1 })).toEqual({ source: 'fresh', state: null });
    // A live peer serves: the peer, and the checkpoint is not fetched.
    const server = s.add('server');
    server.mesh.serveState(() => state(5));
    await s.connected(2, 5000, [joiner]);
    const got = await joinRun(joiner.mesh, { checkpoint, timeoutMs: 3000, tries: 2 });
    expect(got.source).toBe('peer');
    expect(got.state!.from).toBe('server');
    expect(got.state!.innerStep).toBe(state(5).innerStep);
    expect(asked).toBe(1);
  });
});

describe('requestState', () => {
  it('a link that closes before the request is sent uses up neither the try nor the peer', async () => {
    // Two peers that dial each other at once keep one of the two links: a newcomer that picked
    // the other one finds it closed. It must ask again over the link that stays.
    const asked: string[] = [];
    let listener: ((msg: ControlMessage) => void) | null = null;
    const core = {
      clock: systemClock, random: () => 0, logger: silentLogger, isDestroyed: false, settings: { elements: 4 },
      eligibleNeighbours: () => ['p-0000000000000001'],
      onProbation: () => false,
      conn: (peer: string) => ({ peer, link: { on: () => () => {} } }),
      holding: <T>(_c: unknown, fn: () => Promise<T>) => fn(),
      randomU32: () => 7,
      listen: (_p: string, fn: (msg: ControlMessage) => void) => { listener = fn; return () => { listener = null; }; },
      sendControl: (peer: string, msg: ControlMessage) => {
        asked.push(`${peer} ${msg.t}`);
        if (asked.length === 1) return false; // the link replaced by the remote's
        queueMicrotask(() => listener?.({ t: 'state-offer', nonce: 7, ok: false, reason: 'no state yet' }));
        return true;
      },
      offence: () => { throw new Error('a closed link is no offence'); },
    } as unknown as MeshCore;
    expect(await requestState(core, 2000, 1)).toBeNull();
    expect(asked).toEqual(['p-0000000000000001 state-req', 'p-0000000000000001 state-req']);
  });
});

describe('requestState gives up on a neighbour', () => {
  it('closes the link to a neighbour whose offered state did not arrive in time, so its serve ends now; a decline keeps it', async () => {
    // The serving side holds one of its few serve slots (MAX_STATE_SERVES) until its send ends;
    // a newcomer that gave up and left the link open kept it there a minute, and other newcomers
    // were told `busy` meanwhile.
    const PEER = 'p-0000000000000001';
    const destroyed: string[] = [];
    let listener: ((msg: ControlMessage) => void) | null = null;
    let answer: (nonce: number) => ControlMessage;
    const core = {
      clock: systemClock, random: () => 0, logger: silentLogger, isDestroyed: false, settings: { elements: 4 },
      eligibleNeighbours: () => [PEER],
      onProbation: () => false,
      conn: (peer: string) => ({ peer, inbound: new Map(), link: { destroy: (reason: string) => destroyed.push(reason), on: () => () => {} } }),
      holding: <T>(_c: unknown, fn: () => Promise<T>) => fn(),
      randomU32: () => 7,
      identity: () => ({ runId: 'run', configHash: 'aaaabbbbccccdddd', sender: 'me' }),
      estimator: { deadlineMs: () => 50, observe: () => {} },
      listen: (_p: string, fn: (msg: ControlMessage) => void) => { listener = fn; return () => { listener = null; }; },
      sendControl: (_peer: string, msg: ControlMessage) => {
        if (msg.t === 'state-req') queueMicrotask(() => listener?.(answer(msg.nonce)));
        return true;
      },
      offence: () => {},
    } as unknown as MeshCore;
    // Offered, then nothing: the transfer deadline (50 ms) passes.
    answer = (nonce) => ({ t: 'state-offer', nonce, ok: true, tensor: { tid: 3, dtype: 'f32', elements: 8, bytes: 32 }, outerRound: 1, innerStep: 5 });
    expect(await requestState(core, 60_000, 1)).toBeNull();
    expect(destroyed).toEqual(['state pull given up']);
    // Declined: nothing is being sent, the neighbour stays.
    destroyed.length = 0;
    answer = (nonce) => ({ t: 'state-offer', nonce, ok: false, reason: 'busy' });
    expect(await requestState(core, 60_000, 1)).toBeNull();
    expect(destroyed).toEqual([]);
  });
});

/**
 * A fake mesh core with one neighbour, PEER, that offers an 8-float state (φ and momentum of 4)
 * when asked, `delayMs` of the fake clock into the join; `send` delivers that state's frames, at
 * whatever time the test has moved the clock to.
 */
function offeringCore(opts: { delayMs?: number; offence: (peer: string, code: string) => void }) {
  const PEER = 'p-0000000000000001';
  const clock = new FakeClock();
  const destroyed: string[] = [];
  const conn = { peer: PEER, inbound: new Map<number, Assembler>(), link: { destroy: (reason: string) => destroyed.push(reason), on: () => () => {} } };
  let listener: ((msg: ControlMessage) => void) | null = null;
  const t = { offered: false };
  const estimator = new DeadlineEstimator(DEFAULT_DEADLINE);
  const core = {
    clock, random: () => 0, logger: silentLogger, isDestroyed: false, settings: { elements: 4 },
    eligibleNeighbours: () => [PEER],
    onProbation: () => false,
    conn: () => conn,
    holding: <T>(_c: unknown, fn: () => Promise<T>) => fn(),
    randomU32: () => 7,
    identity: () => ({ runId: 'run', configHash: 'aaaabbbbccccdddd', sender: 'me' }),
    estimator,
    listen: (_p: string, fn: (msg: ControlMessage) => void) => { listener = fn; return () => { listener = null; }; },
    sendControl: (_peer: string, msg: ControlMessage) => {
      if (msg.t === 'state-req') {
        queueMicrotask(() => {
          if (opts.delayMs) clock.advance(opts.delayMs);
          listener?.({ t: 'state-offer', nonce: msg.nonce, ok: true, tensor: { tid: 3, dtype: 'f32', elements: 8, bytes: 32 }, outerRound: 1, innerStep: 5 });
          t.offered = true;
        });
      }
      return true;
    },
    offence: opts.offence,
  } as unknown as MeshCore;
  const link = {
    remote: 'me', open: true, bufferedAmount: 0,
    send: (frame: Uint8Array) => { const f = decodeFrame(frame); if (f.type === 'chunk') conn.inbound.get(f.header.transferId)?.add(f.header, f.payload); },
  } as unknown as Link;
  const send = (values: number[]) =>
    sendTensor(link, { runId: 'run', configHash: 'aaaabbbbccccdddd', sender: PEER }, { kind: 'state', dtype: 'f32', round: 1, transferId: 3, elements: 8, bytes: new Uint8Array(new Float32Array(values).buffer) }, { highWater: 1 << 20 });
  return { core, clock, destroyed, estimator, t, send };
}

describe('requestState gives an offered state its transfer deadline', () => {
  it('past the join\'s own end: a state still arriving over a slow link is taken, and its link kept', async () => {
    // A newcomer behind a capped relay (bench:nat --turn-cap --preset tiny, 1 MB/s) was offered
    // tiny's 8.3 MB state 2.8 s into its 15 s join; cut at the join's end, the pull gave up 12.3 s
    // into the transfer's 15 s deadline and destroyed the link its first exchange then needed.
    // The offer comes 2.8 s into the join.
    const { core, clock, destroyed, estimator, t, send } = offeringCore({ delayMs: 2_800, offence: () => { throw new Error('a slow state is no offence'); } });
    let result: BootState | null | undefined;
    void requestState(core, 15_000, 1).then((r) => { result = r; });
    await until(() => t.offered, 3_000, () => 'the state offer', 5);
    // The join's 15 s end passes while the state is on its way (12.3 s into the transfer).
    clock.advance(12_300);
    await Promise.resolve();
    expect(destroyed).toEqual([]);
    expect(result).toBeUndefined();
    // Then the state arrives, inside its own 15 s.
    await send([1, 2, 3, 4, 0.5, 0.25, 0.125, 0.0625]);
    await until(() => result !== undefined, 3_000, () => 'the pull to end', 5);
    expect(result).not.toBeNull();
    expect([...result!.phi]).toEqual([1, 2, 3, 4]);
    expect([...result!.momentum]).toEqual([0.5, 0.25, 0.125, 0.0625]);
    expect(destroyed).toEqual([]);
    // Its rate is the receive deadlines' first measure: 32 bytes in 12.3 s, so a transfer of the
    // same size now waits 4 x 12.3 s, not the 15 s of a link never measured (the old pull told the
    // estimator nothing, and the first exchange behind a capped relay missed its 15 s).
    expect(estimator.deadlineMs(32)).toBe(4 * 12_300);
    // Past the state's own deadline it is given up as before (the link closed, its serve ended).
    destroyed.length = 0;
    t.offered = false;
    result = undefined;
    void requestState(core, 15_000, 1).then((r) => { result = r; });
    await until(() => t.offered, 3_000, () => 'the second state offer', 5);
    clock.advance(4 * 12_300);
    await until(() => result !== undefined, 3_000, () => 'the second pull to end', 5);
    expect(result).toBeNull();
    expect(destroyed).toEqual(['state pull given up']);
  });
});

describe('requestState learns a link\'s rate only from a state it takes', () => {
  it('a state refused (NaN, or a momentum 1e30) leaves the first exchange\'s deadline as it was; a state taken sets it', async () => {
    // The rate is the sender's to choose: trickled over 12.3 s, a refused state had set the first
    // exchanges' deadline to 4 x 12.3 s (sent at once, to the 2 s floor) all the same.
    const honest = [1, 2, 3, 4, 0.5, 0.25, 0.125, 0.0625];
    const cases = [
      { name: 'NaN in the momentum', values: [1, 2, 3, 4, 0.5, NaN, 0.125, 0.0625], offence: 'non-finite', taken: false },
      { name: 'momentum 1e30', values: [1, 2, 3, 4, 1e30, 1e30, 1e30, 1e30], offence: 'bad-state', taken: false },
      { name: 'an honest state', values: honest, offence: null, taken: true },
    ];
    for (const c of cases) {
      const offences: string[] = [];
      const { core, clock, estimator, t, send } = offeringCore({ offence: (_peer, code) => { offences.push(code); } });
      let result: BootState | null | undefined;
      void requestState(core, 15_000, 1, { floats: 4 }).then((r) => { result = r; });
      await until(() => t.offered, 3_000, () => `${c.name}: the state offer`, 5);
      clock.advance(12_300);
      await send(c.values);
      await until(() => result !== undefined, 3_000, () => `${c.name}: the pull to end`, 5);
      expect(result === null, c.name).toBe(!c.taken);
      expect(offences, c.name).toEqual(c.offence ? [c.offence] : []);
      expect(estimator.deadlineMs(32), c.name).toBe(c.taken ? 4 * 12_300 : DEFAULT_DEADLINE.initialMs);
    }
  });
});

describe('requestState moves on from a neighbour that closed its link once asked', () => {
  /** A fake mesh core of neighbours that answer a state-req as `answer` says; each ask gets a fresh link (the neighbour dials again). */
  function core(peers: string[], answer: (peer: string, nonce: number, link: FakeLink) => void, clock: MeshCore['clock'] = systemClock) {
    const asked: string[] = [];
    const listeners = new Map<string, (msg: ControlMessage) => void>();
    const conns = new Map<string, { peer: string; inbound: Map<number, Assembler>; link: FakeLink }>();
    const conn = (peer: string) => {
      let c = conns.get(peer);
      if (!c || c.link.closed) conns.set(peer, (c = { peer, inbound: new Map(), link: new FakeLink() }));
      return c;
    };
    const mesh = {
      clock, random: () => 0, logger: silentLogger, isDestroyed: false, settings: { elements: 4 },
      eligibleNeighbours: () => peers,
      onProbation: () => false,
      conn,
      holding: <T>(_c: unknown, fn: () => Promise<T>) => fn(),
      randomU32: () => 7,
      identity: () => ({ runId: 'run', configHash: 'aaaabbbbccccdddd', sender: 'me' }),
      estimator: { deadlineMs: () => 60_000, observe: () => {} },
      listen: (p: string, fn: (msg: ControlMessage) => void) => { listeners.set(p, fn); return () => { listeners.delete(p); }; },
      sendControl: (p: string, msg: ControlMessage) => {
        if (msg.t !== 'state-req') return true;
        asked.push(p);
        const c = conn(p);
        queueMicrotask(() => answer(p, msg.nonce, c.link));
        return true;
      },
      offence: () => { throw new Error('a closed link is no offence'); },
    } as unknown as MeshCore;
    /** What the mesh does when `peer`'s link closes: its assemblers fail, its listeners go, then the link says so. */
    const close = (p: string) => {
      const c = conns.get(p)!;
      for (const a of c.inbound.values()) a.fail(new LinkClosedError(p));
      c.inbound.clear();
      listeners.delete(p);
      c.link.destroy('closed by remote');
    };
    const offer = (p: string, nonce: number) => listeners.get(p)?.({ t: 'state-offer', nonce, ok: true, tensor: { tid: 3, dtype: 'f32', elements: 8, bytes: 32 }, outerRound: 1, innerStep: 5 });
    const decline = (p: string, nonce: number) => listeners.get(p)?.({ t: 'state-offer', nonce, ok: false, reason: 'no state yet' });
    return { mesh, asked, close, offer, decline };
  }

  it('one that offered its state and closed the link mid-transfer is not asked again and again until the timeout', async () => {
    // It reconnects at once each time (eligible again): before, each close was taken for a link
    // replaced before the request, using up neither the try nor the peer.
    const c = core(['p-0000000000000001'], (p, nonce) => { c.offer(p, nonce); c.close(p); });
    expect(await requestState(c.mesh, 2_000, 1)).toBeNull();
    expect(c.asked).toEqual(['p-0000000000000001']);
  });

  it('one that closed the link without answering ends the wait for its offer at once: the next neighbour is asked', async () => {
    // The offer's 5 s timeout is on a clock that never moves here: only the close can end the wait.
    const clock = new FakeClock();
    const c = core(['p-0000000000000001', 'p-0000000000000002'], (p, nonce) => (p.endsWith('1') ? c.close(p) : c.decline(p, nonce)), clock);
    let result: BootState | null | undefined;
    void requestState(c.mesh, 60_000, 2).then((r) => { result = r; });
    await until(() => result !== undefined, 3_000, () => `the pull to end (asked ${c.asked.join(', ')})`, 5);
    expect(result).toBeNull();
    expect(c.asked).toEqual(['p-0000000000000001', 'p-0000000000000002']);
  });
});

class FakeLink {
  closed = false;
  private readonly closeFns = new Set<(e: { reason: string }) => void>();
  readonly open = true;
  on(event: string, fn: (e: { reason: string }) => void): () => void {
    if (event !== 'close' || this.closed) return () => {};
    this.closeFns.add(fn);
    return () => { this.closeFns.delete(fn); };
  }
  destroy(reason = 'destroyed locally'): void {
    if (this.closed) return;
    this.closed = true;
    for (const fn of [...this.closeFns]) fn({ reason });
    this.closeFns.clear();
  }
}
