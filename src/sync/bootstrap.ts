// Joining a run mid-way: a new peer pulls φ, the outer momentum and the step counters from a
// random live neighbour (one off probation when it has one), as one 'state' tensor (φ ‖ m, f32)
// verified like any other transfer, then checked before it is adopted (state-check.ts). Without
// a state that passes, the caller falls back to the coordinator's newest checkpoint.
import { FrameError } from '../protocol/errors.ts';
import type { ControlMessage } from '../protocol/peer-messages.ts';
import { sleep } from '../protocol/clock.ts';
import { pick } from './components.ts';
import { BootstrapError, LinkClosedError, StateAheadError, StateCheckError } from './errors.ts';
import { checkState, type StateCheck } from './state-check.ts';
import type { Conn, MeshCore } from './mesh-core.ts';
import { Assembler, sendTensor } from './transfer.ts';
import { allFinite, forgetOldest } from './validate.ts';
import type { BootState, StateProvider } from './types.ts';

/** One bootstrap request per neighbour per this long: a state transfer is the largest we make. */
const MIN_STATE_REQUEST_GAP_MS = 5_000;
/**
 * State transfers a peer runs at once, to all neighbours together (and one per neighbour): each
 * holds its own copy of φ ‖ m (8n bytes, 87 MB on `small`) until it ends.
 */
export const MAX_STATE_SERVES = 2;
/** Neighbours each mesh is sending a state to now. */
const serving = new WeakMap<MeshCore, Set<string>>();
/**
 * When each peer last asked each mesh for a state, by peer id, not by link: a neighbour that
 * closed its link and dialled again had a fresh link and so no gap, and was served a copy of
 * φ ‖ m per reconnect (20 in 0.4 s on loopback). The oldest ids go past MAX_REMEMBERED.
 */
const lastRequest = new WeakMap<MeshCore, Map<string, number>>();
/** How long a neighbour may take to say yes or no. */
const OFFER_TIMEOUT_MS = 5_000;
const POLL_MS = 50;

type StateOffer = Extract<ControlMessage, { t: 'state-offer' }>;

/**
 * Pulls a state from up to `tries` neighbours in turn, neighbours the coordinator trusts first
 * (off probation), until one passes `check` (state-check.ts); a neighbour whose state fails is
 * reported and not asked again. Null when none did in time.
 */
export async function requestState(mesh: MeshCore, timeoutMs: number, tries: number, check?: StateCheck): Promise<BootState | null> {
  const end = mesh.clock.now() + timeoutMs;
  const tried = new Set<string>();
  const next = (): string | undefined => {
    const open = mesh.eligibleNeighbours().filter((p) => !tried.has(p));
    const trusted = open.filter((p) => !mesh.onProbation(p));
    return pick(mesh.random, trusted.length > 0 ? trusted : open);
  };
  for (let attempt = 0; attempt < tries; attempt++) {
    let peer: string | undefined;
    while (!(peer = next())) {
      if (mesh.isDestroyed || mesh.clock.now() >= end) return null;
      await sleep(mesh.clock, POLL_MS);
    }
    const conn = mesh.conn(peer);
    try {
      if (!conn) throw new LinkClosedError(peer);
      const got = await mesh.holding(conn, () => pullFrom(mesh, peer, end));
      if (check) await checkState(got.state, check, `neighbour ${peer}`);
      // The state came over a link like the ones our exchanges take: its rate is the first
      // measure our receive deadlines get, so the first exchange waits what this link needs
      // rather than the 15 s a volunteer gives one before it knows (behind a capped relay, a
      // tiny exchange at 1 MB/s took up to 15.5 s). Only a state we take: the rate is its
      // sender's to choose, and one whose state was refused (non-finite, a momentum 1e30) set
      // the deadline of our first exchanges all the same, minMs sent fast, maxMs trickled.
      mesh.estimator.observe(got.bytes, got.ms);
      return got.state;
    } catch (err) {
      mesh.logger.info('bootstrap from a neighbour failed', { peer, error: String(err) });
      if (err instanceof LinkClosedError) {
        // The link went before we could ask (two peers dialling each other at once replace one
        // link by the other): not an answer, so neither a try nor this peer used up. Once asked,
        // a closed link is an answer (pullFrom): a neighbour that offered and hung up, dialling
        // again each time, was asked over and over until the timeout, and never anyone else.
        attempt--;
        if (mesh.isDestroyed || mesh.clock.now() >= end) return null;
        await sleep(mesh.clock, POLL_MS);
        continue;
      }
      tried.add(peer);
      if (err instanceof StateCheckError && !(err instanceof StateAheadError)) mesh.offence(peer, 'bad-state', err.message);
      else if (err instanceof FrameError) mesh.offence(peer, err.code, err.message);
      else if (err instanceof BootstrapError && err.message.includes('non-finite')) mesh.offence(peer, 'non-finite', err.message);
    }
  }
  return null;
}

/** A state pulled from `peer`, with how many bytes it took how long to arrive (from its offer). */
interface Pulled {
  state: BootState;
  bytes: number;
  ms: number;
}

function pullFrom(mesh: MeshCore, peer: string, end: number): Promise<Pulled> {
  const n = mesh.settings.elements;
  const nonce = mesh.randomU32();
  const conn = mesh.conn(peer);
  if (!conn) return Promise.reject(new LinkClosedError(peer));
  return new Promise<Pulled>((resolve, reject) => {
    let asm: Assembler | null = null;
    let timer: unknown = null;
    // Asked, the neighbour's link closing is its answer: the pull ends now, not at the offer's
    // timeout, and the neighbour is not asked again (requestState).
    const asked = (cause?: unknown) => new BootstrapError(`${peer} closed the link before its state arrived`, { cause });
    let offClose = () => {};
    // The offer is waited for until the join's own end at most; a state offered is then given its
    // transfer deadline in full, past that end if need be. Cut at the end, a newcomer behind a
    // capped relay (tiny's 8.3 MB state at 1 MB/s, offered 2.8 s into a 15 s join) gave up at
    // 12.3 s of its 15 s deadline, destroying the one link its first exchange then needed.
    const arm = (ms: number, what: string, untilEnd: boolean) => {
      if (timer !== null) mesh.clock.clearTimeout(timer);
      const wait = untilEnd ? Math.min(ms, end - mesh.clock.now()) : ms;
      timer = mesh.clock.setTimeout(() => giveUp(new BootstrapError(`${what} from ${peer} timed out`)), Math.max(0, wait));
    };
    const finish = () => {
      off();
      offClose();
      if (timer !== null) mesh.clock.clearTimeout(timer);
      if (asm) conn.inbound.delete(asm.expect.transferId);
    };
    let failed = false;
    const fail = (err: unknown) => { if (failed) return; failed = true; finish(); asm?.fail(err); reject(err); };
    // Given up on a neighbour that may be sending (it offered, or may yet): the link goes, so its
    // serve ends now, not at its own deadline a minute on, holding one of its few serve slots
    // (MAX_STATE_SERVES) and our downlink, which the next neighbour's state needs.
    const giveUp = (err: unknown) => { if (failed) return; fail(err); conn.link.destroy('state pull given up'); };
    // Registered synchronously on the offer: the state's chunks follow it on the same channel.
    const off = mesh.listen(peer, (msg) => {
      if (msg.t !== 'state-offer' || msg.nonce !== nonce || asm) return;
      if (!msg.ok) { fail(new BootstrapError(`${peer} declined: ${msg.reason}`)); return; }
      const offer = msg as Extract<StateOffer, { ok: true }>;
      if (offer.tensor.elements !== 2 * n || offer.tensor.dtype !== 'f32') {
        giveUp(new BootstrapError(`${peer} offered ${offer.tensor.elements} ${offer.tensor.dtype} values; a state is ${2 * n} f32`));
        return;
      }
      const id = mesh.identity();
      asm = new Assembler({ runId: id.runId, configHash: id.configHash, sender: peer, kind: 'state', transferId: offer.tensor.tid, dtype: 'f32', elements: 2 * n });
      conn.inbound.set(offer.tensor.tid, asm);
      arm(mesh.estimator.deadlineMs(offer.tensor.bytes), 'state transfer', false);
      const offeredAt = mesh.clock.now();
      asm.done.then((bytes) => {
        finish();
        const ms = mesh.clock.now() - offeredAt;
        const all = new Float32Array(bytes.buffer, bytes.byteOffset, 2 * n);
        if (!allFinite(all)) { reject(new BootstrapError(`state from ${peer} has non-finite values`)); return; }
        resolve({ state: { from: peer, phi: all.slice(0, n), momentum: all.slice(n), outerRound: offer.outerRound, innerStep: offer.innerStep }, bytes: offer.tensor.bytes, ms });
      }, (err) => giveUp(err instanceof LinkClosedError ? asked(err) : err));
    });
    arm(OFFER_TIMEOUT_MS, 'state offer', true);
    if (!mesh.sendControl(peer, { t: 'state-req', nonce })) fail(new LinkClosedError(peer));
    else offClose = conn.link.on('close', () => fail(asked()));
  });
}

/** Answer one state request on `conn`. */
export async function serveState(mesh: MeshCore, conn: Conn, nonce: number, provider: StateProvider | null): Promise<void> {
  const peer = conn.peer;
  const no = (reason: string) => { mesh.sendControl(peer, { t: 'state-offer', nonce, ok: false, reason }); };
  let busy = serving.get(mesh);
  if (!busy) serving.set(mesh, (busy = new Set()));
  // A requester that reads slowly or not at all must not stack up sends (and copies): one at a
  // time to it, a few to everyone, and each ends by its deadline (below).
  if (busy.has(peer)) { no('busy'); return; }
  let asked = lastRequest.get(mesh);
  if (!asked) lastRequest.set(mesh, (asked = new Map()));
  const now = mesh.clock.now();
  if (now - (asked.get(peer) ?? -Infinity) < MIN_STATE_REQUEST_GAP_MS) { no('rate-limited'); return; }
  asked.delete(peer);
  asked.set(peer, now);
  forgetOldest(asked);
  if (!provider) { no('not serving state'); return; }
  if (busy.size >= MAX_STATE_SERVES) { no('busy'); return; }
  busy.add(peer);
  try {
    await serve(mesh, conn, nonce, provider, no);
  } finally {
    busy.delete(peer);
  }
}

async function serve(mesh: MeshCore, conn: Conn, nonce: number, provider: StateProvider, no: (reason: string) => void): Promise<void> {
  const peer = conn.peer;
  const n = mesh.settings.elements;
  // A requester that closed its link meanwhile gets nothing: neither the provider's copy (in
  // a browser, a read of φ and m from the worker between training calls) nor ours.
  const gone = () => !conn.link.open || mesh.conn(peer) !== conn;
  if (gone()) return;
  let snap;
  try {
    snap = await provider();
  } catch (err) {
    mesh.logger.warn('state provider failed', { error: String(err) });
    no('state unavailable');
    return;
  }
  if (!snap) { no('no state yet'); return; }
  if (gone()) return;
  if (snap.phi.length !== n || snap.momentum.length !== n) {
    mesh.logger.error('state provider returned wrong sizes', { phi: snap.phi.length, momentum: snap.momentum.length, want: n });
    no('state unavailable');
    return;
  }
  const all = new Float32Array(2 * n); // φ ‖ m
  all.set(snap.phi, 0);
  all.set(snap.momentum, n);
  const bytes = new Uint8Array(all.buffer);
  const tid = mesh.randomU32();
  if (!mesh.sendControl(peer, {
    t: 'state-offer', nonce, ok: true, tensor: { tid, dtype: 'f32', elements: 2 * n, bytes: bytes.length },
    outerRound: snap.outerRound, innerStep: snap.innerStep,
  })) return;
  try {
    // No honest requester waits longer than its transfer deadline, at most maxMs whatever it
    // measured (a newcomer has measured nothing): past that the send is cut off and the link
    // closed, releasing the copy and what the channel still queues.
    const deadline = { clock: mesh.clock, at: mesh.clock.now() + mesh.estimator.sendDeadlineMs() };
    await mesh.holding(conn, () => sendTensor(conn.link, mesh.identity(), { kind: 'state', dtype: 'f32', round: snap.outerRound, transferId: tid, elements: 2 * n, bytes }, {
      chunkSize: mesh.settings.chunkSize, highWater: mesh.settings.highWaterBytes, deadline,
    }));
    mesh.events.emit('state:served', { peer, bytes: bytes.length });
  } catch (err) {
    mesh.logger.info('state transfer ended early', { peer, error: String(err) });
  }
}
