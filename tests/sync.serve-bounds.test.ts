// Sends to a peer that does not read: a state serve or an exchange's send must not wait for it
// for good, nor stack up copies of φ ‖ m. One serve per neighbour at a time, MAX_STATE_SERVES in
// all, each cut off (link closed) at its deadline; an exchange's stopAndAbort ends its send at
// once. Time on the serving peer is a fake clock, so no assertion depends on the machine's speed.
import { afterEach, describe, expect, it } from 'vitest';
import { createMesh, type Mesh } from '../src/sync/mesh.ts';
import { MAX_STATE_SERVES } from '../src/sync/bootstrap.ts';
import { MAX_LINGERING_SENDS } from '../src/sync/exchange.ts';
import type { MeshCore } from '../src/sync/mesh-core.ts';
import { SendAbort, sendTensor, type TransferIdentity } from '../src/sync/transfer.ts';
import { DEFAULT_DEADLINE } from '../src/protocol/exchange-link.ts';
import { LinkClosedError, TransferAbortedError } from '../src/sync/errors.ts';
import { decodeFrame, encodeControl } from '../src/protocol/frame.ts';
import { parseControl, type ControlMessage } from '../src/protocol/peer-messages.ts';
import type { Clock } from '../src/protocol/clock.ts';
import type { Logger } from '../src/sync/components.ts';
import type { Link, LinkEvents, LinkFactory } from '../src/sync/links.ts';
import type { BootState } from '../src/sync/types.ts';
import { FakeClock } from './support/fake-clock.ts';
import { MemoryNet } from './support/memory-links.ts';
import { Rogue } from './support/rogue.ts';
import { SignalHub } from './support/signal-hub.ts';
import { CONFIG_HASH, gaussian, sameFloats, sleep, syntheticPayload } from './support/swarm.ts';
import { seededRandom } from './support/stats.ts';
import { until } from './support/wait.ts';

const n = 50_000; // a state of 2n floats: 400 KB, far past the 64 KiB high-water mark used here
const HIGH_WATER = 64 * 1024;

const cleanup: (() => void)[] = [];
afterEach(() => { for (const fn of cleanup.splice(0).reverse()) fn(); });

/** Lets every pending promise callback run (one macrotask turn). */
const flush = () => new Promise<void>((r) => setImmediate(r));

/**
 * A link whose remote never reads: what is sent queues without end (bufferedAmount grows) and a
 * wait for it to drain ends only when the link closes. Control frames are recorded.
 */
class DeafLink implements Link {
  buffered = 0;
  queued: Uint8Array[] = [];
  waiting = 0;
  /** What the last wait for the channel was told would end it early (the sender gave up). */
  stopped: (() => boolean) | undefined;
  destroyedWith: string | null = null;
  private drains: (() => void)[] = [];

  /** `readsControl`: control messages still reach the other side (a partner that took our `xchg`, then stopped reading). */
  constructor(private readonly inner: Link, private readonly sent?: { to: string; msg: ControlMessage }[], private readonly readsControl = false) {
    inner.on('close', () => this.closed());
  }

  get remote() { return this.inner.remote; }
  get initiator() { return this.inner.initiator; }
  get open() { return this.inner.open; }
  get bufferedAmount() { return this.buffered; }
  signal(d: unknown) { this.inner.signal(d); }
  on<K extends keyof LinkEvents>(e: K, fn: (x: LinkEvents[K]) => void) { return this.inner.on(e, fn); }

  send(bytes: Uint8Array): void {
    if (!this.inner.open) throw new LinkClosedError(this.remote);
    let control = false;
    try {
      const f = decodeFrame(bytes);
      if (f.type === 'control') {
        control = true;
        this.sent?.push({ to: this.remote, msg: parseControl(f.message) });
      }
    } catch { /* not a frame we judge */ }
    if (control && this.readsControl) { this.inner.send(bytes); return; }
    this.queued.push(bytes);
    this.buffered += bytes.length;
  }

  whenBufferBelow(threshold: number, stopped?: () => boolean): Promise<void> {
    if (!this.open || this.buffered <= threshold) return Promise.resolve();
    this.stopped = stopped;
    this.waiting++;
    return new Promise((resolve) => this.drains.push(() => { this.waiting--; resolve(); }));
  }

  destroy(reason = 'destroyed locally'): void {
    this.destroyedWith ??= reason;
    this.inner.destroy(reason);
    this.closed();
  }

  private closed(): void {
    this.queued = [];
    this.buffered = 0;
    for (const fn of this.drains.splice(0)) fn();
  }
}

/** A link that is open, has no remote and never drains (for sendTensor alone). */
function stuckLink(): DeafLink {
  let open = true;
  const closers: ((e: { reason: string }) => void)[] = [];
  const inner = {
    remote: 'B', initiator: true,
    get open() { return open; },
    bufferedAmount: 0,
    signal() {}, send() {}, whenBufferBelow: () => Promise.resolve(),
    on: (e: string, fn: (x: { reason: string }) => void) => { if (e === 'close') closers.push(fn); return () => {}; },
    destroy: (reason = 'destroyed locally') => { if (!open) return; open = false; for (const fn of closers) fn({ reason }); },
  } as unknown as Link;
  return new DeafLink(inner);
}

function state(seed: number): Omit<BootState, 'from'> {
  return { phi: gaussian(n, seed, 0.02), momentum: gaussian(n, seed + 1, 1e-3), outerRound: 40 + seed, innerStep: 2000 + seed };
}

function recordingLogger(into: { msg: string; fields?: Record<string, unknown> }[]): Logger {
  const log = (msg: string, fields?: Record<string, unknown>) => { into.push({ msg, fields }); };
  return { debug: log, info: log, warn: log, error: log };
}

/**
 * A serving peer `p0` (on `clock`) whose links to rogues ('r…') are deaf, rogues that dial it,
 * and a way to add an honest newcomer (real clock, ordinary links) once the rogues have left the
 * coordinator's list.
 */
async function scene(rogueCount: number, clock?: Clock) {
  const hub = new SignalHub({ random: seededRandom(5) });
  const net = new MemoryNet();
  const sent: { to: string; msg: ControlMessage }[] = [];
  const log: { msg: string; fields?: Record<string, unknown> }[] = [];
  const deaf = new Map<string, DeafLink>();
  const links: LinkFactory = (o) => {
    const inner = net.links('p0')(o);
    if (!o.remote.startsWith('r')) return inner;
    const l = new DeafLink(inner, sent);
    deaf.set(o.remote, l);
    return l;
  };
  const init = {
    runId: 'test-run', configHash: CONFIG_HASH, elements: n, neighbours: { min: 1, max: 8 },
    maintainMs: 50, rewireMs: 1e12, connectTimeoutMs: 5_000, highWaterBytes: HIGH_WATER,
  };
  const server = createMesh(init)({ signaling: hub.client('p0'), links, clock, random: seededRandom(11), logger: recordingLogger(log) });
  cleanup.push(() => server.destroy());
  server.serveState(() => state(3));
  const rogues: Rogue[] = [];
  for (let i = 0; i < rogueCount; i++) {
    const r = new Rogue(hub, `r${i}`, {
      runId: 'test-run', helloConfigHash: CONFIG_HASH, frameConfigHash: CONFIG_HASH, elements: n,
      payload: () => syntheticPayload(n, 1, 0), links: net.links(`r${i}`),
    });
    cleanup.push(() => r.stop());
    rogues.push(r);
    await r.dial('p0');
    await until(() => server.neighbours().includes(`r${i}`), 20_000, `p0 to see r${i}`, 5);
  }
  // Only the rogues' open links to p0 matter from here: the newcomer must find p0 alone.
  for (const r of rogues) hub.leave(r.client.id);
  /** The rogue asks p0 for its state on its open link. */
  const ask = (i: number, nonce: number) => {
    const link = net.all.find((l) => l.local === `r${i}` && l.remote === 'p0' && l.open);
    if (!link) throw new Error(`r${i} has no open link to p0`);
    link.send(encodeControl({ t: 'state-req', nonce }));
  };
  const replies = (to: string) => sent.filter((s) => s.to === to && s.msg.t === 'state-offer').map((s) => s.msg as Extract<ControlMessage, { t: 'state-offer' }>);
  let newcomers = 0;
  const newcomer = async (): Promise<Mesh> => {
    const id = `n${++newcomers}`;
    const m = createMesh({ ...init, neighbours: { min: 1, max: 2 } })({ signaling: hub.client(id), links: net.links(id), random: seededRandom(13) });
    cleanup.push(() => m.destroy());
    await until(() => m.neighbours().includes('p0'), 20_000, 'the newcomer to reach p0', 5);
    return m;
  };
  return { server, rogues, ask, replies, deaf, log, newcomer, net };
}

const deadlineOf = (settings = DEFAULT_DEADLINE) => settings.maxMs + settings.minMs;

describe('sendTensor to a receiver that never reads', () => {
  const id: TransferIdentity = { runId: 'run', configHash: 'aaaabbbbccccdddd', sender: 'A' };
  const tensor = () => ({ kind: 'phi' as const, dtype: 'f32' as const, round: 1, transferId: 9, elements: n, bytes: new Uint8Array(4 * n) });

  it('abort() ends a send that waits for the channel to drain, at once', async () => {
    const link = stuckLink();
    const abort = new SendAbort();
    let error: unknown = null;
    const sending = sendTensor(link, id, tensor(), { highWater: HIGH_WATER, abort }).then(() => { error = 'finished'; }, (e) => { error = e; });
    await until(() => link.waiting === 1, 20_000, 'the send to wait for the channel', 5);
    await flush();
    expect(error).toBeNull();
    // The link's own wait (a poll on a real channel) is told when the sender gave up, so it does
    // not poll on for as long as a partner that does not read keeps the link open.
    expect(link.stopped?.()).toBe(false);
    abort.abort('rejected');
    expect(link.stopped?.()).toBe(true);
    await flush();
    expect(error).toBeInstanceOf(TransferAbortedError);
    expect(String(error)).toMatch(/rejected/);
    expect(link.open).toBe(true); // an abort stops the send; the link stays a neighbour
    await sending;
  });

  it('a deadline ends the wait, destroys the link (dropping what it queued) and fails the send; a send that ends in time leaves no timer', async () => {
    const clock = new FakeClock();
    const link = stuckLink();
    let error: unknown = null;
    void sendTensor(link, id, tensor(), { highWater: HIGH_WATER, deadline: { clock, at: clock.now() + 1000 } }).then(() => { error = 'finished'; }, (e) => { error = e; });
    await until(() => link.waiting === 1, 20_000, 'the send to wait for the channel', 5);
    expect(link.buffered).toBeGreaterThan(HIGH_WATER);
    clock.advance(999);
    await flush();
    expect(error).toBeNull();
    clock.advance(1);
    await flush();
    expect(error).toBeInstanceOf(TransferAbortedError);
    expect(String(error)).toMatch(/deadline/);
    expect(link.destroyedWith).toBe('send deadline passed');
    expect(link.queued).toEqual([]);
    expect(clock.pending).toBe(0);

    const net = new MemoryNet();
    const a = net.links('A')({ remote: 'B', initiator: true });
    const b = net.links('B')({ remote: 'A', initiator: false });
    a.on('signal', (s) => b.signal(s));
    b.on('signal', (s) => a.signal(s));
    await until(() => a.open && b.open, 20_000, 'the memory link to open', 5);
    await sendTensor(a, id, tensor(), { highWater: HIGH_WATER, deadline: { clock, at: clock.now() + 1000 } });
    expect(clock.pending).toBe(0);
    a.destroy();
  });
});

describe('state serves towards a requester that never reads', () => {
  it('serves one state at a time to it, however often it asks; cuts that serve off at its deadline; honest newcomers are served meanwhile and after', async () => {
    const clock = new FakeClock();
    const { server, ask, replies, deaf, log, newcomer } = await scene(1, clock);
    // Asks every 5 s (the per-neighbour gap) for a minute, never reading a byte.
    for (let k = 0; k < 12; k++) {
      ask(0, 100 + k);
      await until(() => replies('r0').length === k + 1, 20_000, `p0's answer to request ${k}`, 5);
      if (k === 0) await until(() => deaf.get('r0')!.waiting === 1, 20_000, 'the first serve to fill the channel', 5);
      clock.advance(5_001);
    }
    const answers = replies('r0');
    expect(answers.filter((r) => r.ok).length).toBe(1);
    expect(answers.filter((r) => !r.ok).map((r) => (r as { reason: string }).reason)).toEqual(Array(11).fill('busy'));
    expect(deaf.get('r0')!.waiting).toBe(1);
    expect(deaf.get('r0')!.buffered).toBeLessThan(HIGH_WATER + 64 * 1024 + 4096); // one serve's window, not twelve

    // An honest newcomer is served while the rogue's serve hangs.
    const honest = await newcomer();
    const got = await honest.bootstrap({ timeoutMs: 20_000, tries: 1 });
    expect(got?.from).toBe('p0');
    expect(sameFloats(got!.momentum, state(3).momentum)).toBe('same');

    // The rogue's serve ends at its deadline: its link is closed, the copy and the queue let go.
    const down: string[] = [];
    server.on('neighbour:down', (e) => down.push(e.peer));
    clock.advance(deadlineOf() - 12 * 5_001 + 1);
    await until(() => down.includes('r0'), 20_000, 'the rogue to be cut off', 5);
    expect(deaf.get('r0')!.destroyedWith).toBe('send deadline passed');
    expect(deaf.get('r0')!.queued).toEqual([]);
    expect(deaf.get('r0')!.waiting).toBe(0);
    await until(() => log.some((l) => l.msg === 'state transfer ended early' && l.fields?.peer === 'r0'), 20_000, 'the serve to end', 5);
    expect(String(log.find((l) => l.msg === 'state transfer ended early')!.fields!.error)).toMatch(/deadline/);

    // And after: the newcomer is served again once its own 5 s have passed.
    clock.advance(5_001);
    const again = await honest.bootstrap({ timeoutMs: 20_000, tries: 1 });
    expect(again?.from).toBe('p0');
  });

  it(`serves at most ${MAX_STATE_SERVES} states at once to everyone; the next requester is declined until one ends`, async () => {
    const clock = new FakeClock();
    const rogues = MAX_STATE_SERVES + 1;
    const { server, ask, replies, deaf, newcomer } = await scene(rogues, clock);
    for (let i = 0; i < rogues; i++) {
      ask(i, 200 + i);
      await until(() => replies(`r${i}`).length === 1, 20_000, `p0's answer to r${i}`, 5);
    }
    const ok = [...Array(rogues).keys()].filter((i) => replies(`r${i}`)[0]!.ok);
    expect(ok.length).toBe(MAX_STATE_SERVES);
    const declined = [...Array(rogues).keys()].filter((i) => !replies(`r${i}`)[0]!.ok);
    expect(declined.map((i) => (replies(`r${i}`)[0] as { reason: string }).reason)).toEqual(['busy']);
    for (const i of ok) await until(() => deaf.get(`r${i}`)!.waiting === 1, 20_000, `the serve to r${i} to fill its channel`, 5);

    // Every slot is taken by a rogue: an honest newcomer is declined, not queued.
    const honest = await newcomer();
    expect(await honest.bootstrap({ timeoutMs: 20_000, tries: 1 })).toBeNull();

    const down: string[] = [];
    server.on('neighbour:down', (e) => down.push(e.peer));
    clock.advance(deadlineOf() + 1);
    await until(() => ok.every((i) => down.includes(`r${i}`)), 20_000, 'the stuck serves to be cut off', 5);
    const got = await honest.bootstrap({ timeoutMs: 20_000, tries: 1 });
    expect(got?.from).toBe('p0');
  });
});

describe('control messages towards a neighbour that never reads', () => {
  it('answers its questions only until its link holds a backlog: 20,000 questions do not queue 20,000 answers', async () => {
    const { deaf, net, server } = await scene(1);
    const link = net.all.find((l) => l.local === 'r0' && l.remote === 'p0' && l.open)!;
    // p0 runs no exchange: every question is answered (not-ready), and nothing p0 sends is read.
    const QUESTIONS = 20_000;
    for (let k = 0; k < QUESTIONS; k++) link.send(encodeControl({ t: 'pair-req', round: 1, nonce: k }));
    await until(() => link.bufferedAmount === 0, 60_000, 'p0 to take every question', 5);
    const queued = deaf.get('r0')!;
    // The answers queued stop at the backlog (the link's high-water mark and 8 frames), not 1.4 MB.
    expect(queued.buffered).toBeLessThanOrEqual(HIGH_WATER + 8 * 64 * 1024 + 4096);
    expect(queued.queued.length).toBeGreaterThan(0);
    expect(queued.queued.length).toBeLessThan(QUESTIONS);
    expect(server.neighbours()).toContain('r0');
  });
});

describe('state requests from one peer id', () => {
  it('get one answer per 5 s from the provider, however often the peer dials again (the gap is by peer, not by link)', async () => {
    // Before: the gap lived on the link, and a new link started without one, so a peer that
    // closed and dialled again was served a fresh copy of φ ‖ m per reconnect.
    const clock = new FakeClock();
    const hub = new SignalHub({ random: seededRandom(21) });
    const net = new MemoryNet();
    const sent: { to: string; msg: ControlMessage }[] = [];
    const links: LinkFactory = (o) => new DeafLink(net.links('p0')(o), sent, true);
    const server = createMesh({
      runId: 'test-run', configHash: CONFIG_HASH, elements: n, neighbours: { min: 1, max: 8 }, maintainMs: 50, rewireMs: 1e12, connectTimeoutMs: 5_000,
    })({ signaling: hub.client('p0'), links, clock, random: seededRandom(23) });
    cleanup.push(() => server.destroy());
    let provided = 0;
    server.serveState(() => { provided++; return null; }); // asked, and nothing to send yet
    const rogue = new Rogue(hub, 'r0', {
      runId: 'test-run', helloConfigHash: CONFIG_HASH, frameConfigHash: CONFIG_HASH, elements: n,
      payload: () => syntheticPayload(n, 1, 0), links: net.links('r0'),
    });
    cleanup.push(() => rogue.stop());
    const answers = () => sent.filter((s) => s.to === 'r0' && s.msg.t === 'state-offer').map((s) => (s.msg as { reason?: string }).reason);
    const askOnNewLink = async (k: number) => {
      await rogue.dial('p0');
      const { link, cid } = (rogue as unknown as { links: Map<string, { link: Link; cid: string }> }).links.get('p0')!;
      const conn = () => (server as unknown as MeshCore).conn('r0');
      await until(() => conn()?.cid === cid && conn()?.state === 'open', 20_000, 'p0 to take the new link', 5);
      link.send(encodeControl({ t: 'state-req', nonce: 300 + k }));
      await until(() => answers().length === k + 1, 20_000, `p0's answer to request ${k}`, 5);
    };
    for (let k = 0; k < 6; k++) await askOnNewLink(k);
    expect(answers()).toEqual(['no state yet', ...Array(5).fill('rate-limited')]);
    expect(provided).toBe(1);
    clock.advance(5_001);
    await askOnNewLink(6);
    expect(answers()[6]).toBe('no state yet');
    expect(provided).toBe(2);
  });
});

/**
 * Mesh p0 with one neighbour, the rogue r0, whose link to p0 carries control both ways but never
 * drains our chunks: it hears our announcement, so it streams its own (chunks follow their
 * partner's xchg), then reads nothing. `payload` is what r0 sends.
 */
async function deafPartner(payload: () => { phi: Float32Array; delta: Float32Array }) {
  // The rounds follow each other with no inner loop: the pool pairs whoever waits, at once.
  const hub = new SignalHub({ random: seededRandom(9), pool: { predict: false, repeatHoldFrac: 0 } });
  const net = new MemoryNet();
  const log: { msg: string; fields?: Record<string, unknown> }[] = [];
  let deaf: DeafLink | null = null;
  const links: LinkFactory = (o) => {
    const inner = net.links('p0')(o);
    return o.remote === 'r0' ? (deaf = new DeafLink(inner, undefined, true)) : inner;
  };
  const mesh = createMesh({
    runId: 'test-run', configHash: CONFIG_HASH, elements: n, neighbours: { min: 1, max: 4 }, maintainMs: 50,
    connectTimeoutMs: 5_000, highWaterBytes: HIGH_WATER,
  })({ signaling: hub.client('p0'), links, random: seededRandom(3), logger: recordingLogger(log) });
  cleanup.push(() => mesh.destroy());
  const rogue = new Rogue(hub, 'r0', {
    runId: 'test-run', helloConfigHash: CONFIG_HASH, frameConfigHash: CONFIG_HASH, elements: n, payload, links: net.links('r0'),
  });
  cleanup.push(() => rogue.stop());
  await rogue.dial('p0');
  await until(() => mesh.neighbours().includes('r0'), 20_000, 'p0 to see r0', 5);
  const ended = () => log.filter((l) => l.msg === 'send to partner ended early');
  return { mesh, rogue, ended, deaf: () => deaf! };
}

describe("an exchange's send to a partner that never reads", () => {
  it('ends as soon as the exchange gives up on the partner (stopAndAbort), not when the channel drains', async () => {
    // A partner whose Δ is all NaN: rejected as soon as it has arrived.
    const { mesh, rogue, ended, deaf } = await deafPartner(() => ({ phi: syntheticPayload(n, 1, 0).phi, delta: new Float32Array(n).fill(NaN) }));
    const result = mesh.exchange(0, syntheticPayload(n, 0, 0), { waitMs: 5_000 });
    void rogue.loop(1, 0, 5_000);
    const r = await result;
    expect(r.partner).toBe('r0');
    expect(r.reason).toBe('rejected');
    expect(deaf().open).toBe(true);
    await until(() => ended().length > 0, 20_000, 'our send to end', 5);
    expect(String(ended()[0]!.fields!.error)).toMatch(/transfer aborted: rejected/);
    expect(deaf().open).toBe(true); // the partner stays a neighbour (until housekeeping or its strikes say otherwise)
  });

  it(`a partner that takes our φ and Δ and then never reads keeps at most ${MAX_LINGERING_SENDS + 1} sends waiting, not one per round`, async () => {
    // Before: a round that resolved left its send streaming (an honest partner may still be
    // receiving) until the send deadline a minute on; a paired partner that read nothing after
    // our xchg kept one send, with its copies of φ and Δ, per round.
    // Honest-looking payloads: every round is paired, no strike (each its own Δ: one sent again
    // would be a replay, src/sync/replay.ts).
    let sent = 0;
    const { mesh, rogue, ended, deaf } = await deafPartner(() => syntheticPayload(n, 1, sent++));
    const rounds = 6;
    const endedBy = (k: number) => Math.max(0, k - MAX_LINGERING_SENDS);
    for (let k = 0; k < rounds; k++) {
      // Waits the pairing ends at once (the pool pairs whoever waits): long only for a loaded machine.
      const result = mesh.exchange(k, syntheticPayload(n, 0, k), { waitMs: 30_000 });
      void rogue.loop(1, 0, 30_000);
      const r = await result;
      expect(`${r.outcome}:${r.partner}`, `round ${k}`).toBe('paired:r0');
      // DeafLink keeps a wait it was given until the link closes; each of ours began after the last.
      await until(() => deaf().waiting === k + 1, 20_000, `round ${k}'s send to wait on the partner`, 5);
      await until(() => ended().length === endedBy(k), 20_000, `${endedBy(k)} sends to have ended by round ${k}`, 5);
    }
    await flush();
    // Of `rounds` sends, the last MAX_LINGERING_SENDS + 1 are still going; each older one was
    // ended by the send MAX_LINGERING_SENDS + 1 rounds after it.
    expect(ended().length).toBe(rounds - MAX_LINGERING_SENDS - 1);
    expect(ended().map((l) => String(l.fields!.error))).toEqual([...Array(rounds - MAX_LINGERING_SENDS - 1).keys()].map((k) => expect.stringMatching(new RegExp(`round ${k + MAX_LINGERING_SENDS + 1}'s send started`))));
  });
});
