// One outer round's communication, as a small state machine:
//
//   pairing (coordinator pool, or neighbours when it is unreachable)
//     -> connecting (only if the partner is not a neighbour yet)
//       -> transfer (send our φ, Δ; receive and verify theirs, under an adaptive deadline)
//         -> validation -> paired result, or a solo result with its reason
//
// Every wait is bounded: pairing by the caller's wait, connecting by connectTimeoutMs, the
// transfer by the deadline. A closed link or a partner's abort of this pairing ends the wait at
// once.
//
// Which messages are this pairing's. In a small swarm the pool pairs the same two peers round
// after round, and a message of their last pairing can arrive after they were paired again (a
// channel still carrying that round's chunks delays it by a second or more): taken for this
// pairing's, a late `xchg` had the partner's real announcement refused or its chunks awaited on old
// transfer ids, and a late `abort` ended the new pairing, both honest peers losing a second round.
// Rounds are each peer's own and count up from one exchange to the next (the volunteer and the
// page count one per outer step; a new session is a new mesh, on new links), and the pairing tells
// each side the other's round of it (the pool's `partnerRound`, a direct pairing's question and
// yes). So the partner's `xchg` is this pairing's iff its `round` is the partner's round, and its
// `abort` iff its `round` is (the partner stopped its exchange of this pairing) or its `yourRound`
// is ours (it answers a message we sent in this round: onAbort). Nothing of an earlier pairing can
// carry either.
import { FrameError } from '../protocol/errors.ts';
import type { ControlMessage, Announce } from '../protocol/peer-messages.ts';
import { chunkHeaderBytes, maxChunkSize, type Dtype } from '../protocol/frame.ts';
import { exchangePayloadBytes } from '../protocol/exchange-link.ts';
import { decodeTensor, encodeTensor, phiBesideOwn } from './compress.ts';
import { LinkClosedError, MeshDestroyedError, PayloadError } from './errors.ts';
import type { MeshCore } from './mesh-core.ts';
import { DirectPairing } from './pairing.ts';
import { Assembler, SendAbort, sendTensor } from './transfer.ts';
import { allFinite, norm2 } from './validate.ts';
import type { ExchangeResult, OuterPayload, PartnerPayload, SoloReason } from './types.ts';

type Xchg = Extract<ControlMessage, { t: 'xchg' }>;
type Abort = Extract<ControlMessage, { t: 'abort' }>;
type Pairing = { partner: string; partnerRound: number; initiator: boolean; via: 'coordinator' | 'direct' } | { reason: SoloReason; via: 'coordinator' | 'direct' | null };

/** Chunks of the partner's φ and Δ as they arrive (or why they cannot be used). */
interface Inbound {
  peer: string;
  msg: Xchg;
  phi: Assembler | null;
  delta: Assembler | null;
  /** An announcement that does not fit this run (sizes, dtype): an offence once this is our partner's. */
  bad: { code: string; detail: string } | null;
  at: number;
}

type Outcome =
  | { kind: 'received'; phi: Uint8Array; delta: Uint8Array; inbound: Inbound }
  | { kind: 'solo'; reason: SoloReason; code?: string; detail?: string }
  | { kind: 'destroyed' }
  /** A direct partner that was never paired with us said so before anything of ours but the announcement went to it (unpairedAbort). */
  | { kind: 'unpaired' };

/**
 * Each mesh's exchange sends, oldest first: this round's and those of earlier rounds still
 * streaming to a partner that may still be receiving. A partner that took our `xchg` and its φ
 * and Δ and then read nothing kept that send waiting, with its copies of φ and Δ, until the
 * send deadline a minute on: one more per paired round. Past MAX_LINGERING_SENDS earlier ones,
 * a new send ends the oldest. Not the last one alone: in a fast swarm (rounds of a few steps,
 * tenths of a second) an honest partner can still be reading our previous round's payload, and
 * cutting it cost that partner its round.
 */
const sending = new WeakMap<MeshCore, SendAbort[]>();
/** Earlier rounds' sends that may go on beside this round's. */
export const MAX_LINGERING_SENDS = 2;
/**
 * An abort's reasons that say its sender was never paired with us: it had no exchange running,
 * or a yes or announcement of ours found it paired with someone else or pairing by the pool
 * (mesh.ts onControl, pairing.ts onAck, onXchg and onControl here).
 */
const NEVER_PAIRED = new Set(['not-ready', 'paired elsewhere', 'not paired with you', 'busy with another partner', 'not pairing directly']);

export class ExchangeRun {
  phase: 'pairing' | 'connecting' | 'transfer' | 'done' = 'pairing';
  /** Set while pairing via the coordinator said this peer: it may connect past the hard cap. */
  expectedPartner: string | null = null;
  private partner: string | null = null;
  /**
   * The partner's own round of this pairing, once the pairing named the partner: the round its
   * `xchg` and its `abort` of this pairing carry (see the top of this file).
   */
  private partnerRound: number | null = null;
  /** The coordinator's pool said our partner is on probation (a new id). */
  private probation = false;
  private direct: DirectPairing | null = null;
  private viaCoordinator = false;
  /**
   * Announcements that came before we could take them: before our own pool answer any neighbour
   * may be the partner (its answer can come first), after it only the partner's of this pairing
   * (its round is the partner's round: keepOnlyStash, onXchg). The message
   * alone, one per linked peer, each replacing its own: no buffers, since a sender streams only
   * once its partner's own `xchg` arrived (transfer). So no number of neighbours announcing can
   * push the partner's announcement out, and each costs us a control message (at most 4 KiB), not a φ and a Δ.
   */
  private stash = new Map<string, Xchg>();
  private inbound: Inbound | null = null;
  private settle: ((o: Outcome) => void) | null = null;
  private destroyed = false;
  private onDestroy: (() => void)[] = [];
  /** Ends this pairing's send; a new one for each pairing (pairAgain). */
  private abortSend = new SendAbort();
  /** Direct partners of this round that said they were never paired with us: not asked again. */
  private readonly excluded = new Set<string>();
  /** Called once the partner's announcement is taken (adopt): our chunks may follow. */
  private onAnnounced: (() => void) | null = null;
  private readonly t0: number;
  private bytesSent = 0;
  /** Every chunk of our φ and Δ was handed to the partner's link (stalled). */
  private sendDone = false;
  /** The partner's announcement was taken and our chunks may be on their way to it. */
  private streaming = false;
  /** Grows as the exchange enters each bounded phase: connect timeout, then transfer deadline. */
  private budgetExtra = 0;

  constructor(
    private readonly mesh: MeshCore,
    readonly round: number,
    private readonly payload: OuterPayload,
    private readonly waitMs: number,
  ) {
    this.t0 = mesh.clock.now();
  }

  /** Whether `peer`'s link is in use by this round (housekeeping must not close it). */
  involves(peer: string): boolean {
    return this.partner === peer || this.expectedPartner === peer || this.direct?.asking === peer;
  }

  async start(): Promise<ExchangeResult> {
    const { mesh, payload, round } = this;
    const n = mesh.settings.elements;
    if (!(Number.isInteger(round) && round >= 0 && round <= 0xffffffff)) throw new PayloadError(`round must be a uint32, got ${round}`);
    if (!(this.waitMs >= 0)) throw new PayloadError(`waitMs must be >= 0, got ${this.waitMs}`);
    if (payload.phi?.length !== n || payload.delta?.length !== n) {
      throw new PayloadError(`payload must be φ and Δ of ${n} floats each, got ${payload.phi?.length} and ${payload.delta?.length}`);
    }
    if (!allFinite(payload.phi) || !allFinite(payload.delta)) {
      throw new PayloadError('our own φ or Δ contains NaN/Inf: the local training diverged; not sending it to a partner');
    }
    try {
      if (!mesh.signaling.peerId) return this.solo('no-identity', null, 0);
      mesh.validator.observeOwn(norm2(payload.delta));
      let p = await this.pair();
      for (;;) {
        if (this.destroyed) throw new MeshDestroyedError('exchange');
        const pairMs = mesh.clock.now() - this.t0;
        if ('reason' in p) return this.solo(p.reason, null, pairMs, p.via);
        this.partner = p.partner;
        this.partnerRound = p.partnerRound;
        if (mesh.isBanned(p.partner)) return this.solo('banned-partner', p.partner, pairMs, p.via);
        this.phase = 'connecting';
        this.budgetExtra += mesh.settings.connectTimeoutMs;
        try {
          await this.guard(mesh.ensureOpen(p.partner, p.initiator, mesh.settings.connectTimeoutMs));
        } catch (err) {
          if (this.destroyed) throw new MeshDestroyedError('exchange');
          mesh.logger.info('no connection to partner', { partner: p.partner, error: String(err) });
          return this.solo('connect-failed', p.partner, pairMs, p.via);
        }
        const r = await this.transfer(p.partner, p.via, pairMs);
        if (r !== 'unpaired') return r;
        p = await this.pairAgain(p.partner);
      }
    } finally {
      this.cleanup();
    }
  }

  // ---- pairing ----------------------------------------------------------------------------

  private async pair(): Promise<Pairing> {
    const { mesh } = this;
    if (mesh.signaling.connected && !mesh.coordinatorSuspect) {
      const r = await this.pairViaCoordinator();
      if (r !== 'coordinator-down') return r;
    }
    return this.pairDirect();
  }

  private async pairDirect(): Promise<Pairing> {
    const { mesh } = this;
    const remaining = Math.max(0, this.waitMs - (mesh.clock.now() - this.t0));
    const direct = (this.direct = new DirectPairing(mesh, this.round, remaining, mesh.lastPartner, this.excluded));
    this.onDestroy.push(() => direct.cancel());
    if (this.destroyed) direct.cancel();
    const partner = await direct.result;
    const partnerRound = this.direct.partnerRound;
    return partner !== null && partnerRound !== null ? { partner, partnerRound, initiator: false, via: 'direct' } : { reason: 'no-partner', via: 'direct' };
  }

  /**
   * A direct partner said it was never paired with us (unpairedAbort): a question of its that
   * arrived after it had left that round, which we said yes to. Pair again through neighbours for
   * what is left of the wait, that peer left out for the rest of this round. Nothing of this
   * pairing's is kept: its announcement never came, no chunk of ours left, and the send waiting
   * for it is ended. The budget starts again from the wait: the pairing that holds is the one
   * whose connect and deadline bound this exchange.
   */
  private async pairAgain(unpaired: string): Promise<Pairing> {
    const { mesh } = this;
    mesh.logger.info('direct partner was never paired with us; pairing again', { peer: unpaired, round: this.round });
    this.abortSend.abort('partner was never paired with us');
    this.abortSend = new SendAbort();
    this.excluded.add(unpaired);
    this.stash.delete(unpaired);
    this.partner = null;
    this.partnerRound = null;
    this.partnerAborted = false;
    this.partnerUnpaired = false;
    this.onAnnounced = null;
    this.bytesSent = 0;
    this.budgetExtra = 0;
    this.phase = 'pairing';
    return this.pairDirect();
  }

  private pairViaCoordinator(): Promise<Pairing | 'coordinator-down'> {
    const { mesh, round } = this;
    this.viaCoordinator = true;
    return new Promise((resolve) => {
      const offs: (() => void)[] = [];
      const done = (r: Pairing | 'coordinator-down') => {
        for (const off of offs) off();
        mesh.clock.clearTimeout(timer);
        resolve(r);
      };
      offs.push(mesh.signaling.on('paired', (e) => {
        if (e.round !== round) return;
        if (e.partner === null) { this.keepOnlyStash(null, null); done({ reason: 'no-partner', via: 'coordinator' }); }
        else {
          this.expectedPartner = e.partner;
          this.partnerRound = e.partnerRound;
          this.probation = e.probation === true;
          this.keepOnlyStash(e.partner, e.partnerRound);
          done({ partner: e.partner, partnerRound: e.partnerRound, initiator: e.initiator, via: 'coordinator' });
        }
      }));
      offs.push(mesh.signaling.on('close', () => done('coordinator-down')));
      const timer = mesh.clock.setTimeout(() => {
        // No answer: treat the coordinator as unreachable until it says hello again.
        mesh.suspectCoordinator();
        mesh.logger.warn('coordinator did not answer ready in time; pairing through neighbours', { round });
        done({ reason: 'coordinator-timeout', via: 'coordinator' });
      }, this.waitMs + mesh.settings.coordinatorGraceMs);
      this.onDestroy.push(() => done({ reason: 'no-partner', via: null }));
      mesh.signaling.ready(round, this.waitMs);
    });
  }

  // ---- transfer ---------------------------------------------------------------------------

  private async transfer(partner: string, via: 'coordinator' | 'direct', pairMs: number): Promise<ExchangeResult | 'unpaired'> {
    const { mesh, round, payload } = this;
    const s = mesh.settings;
    const n = s.elements;
    const id = mesh.identity();
    const tStart = mesh.clock.now();
    const expectBytes = exchangePayloadBytes(s.compression, n);
    const deadlineMs = mesh.estimator.deadlineMs(expectBytes);
    this.phase = 'transfer';
    this.budgetExtra += deadlineMs;

    // Our half: encode (copies, so the caller may overwrite its buffers), announce, stream.
    const phiBytes = encodeTensor(s.compression.phi, payload.phi);
    const deltaBytes = encodeTensor(s.compression.delta, payload.delta, s.compression.delta === 'q8' ? mesh.q8Residual() : undefined);
    const phiA: Announce = { tid: mesh.randomU32(), dtype: s.compression.phi, elements: n, bytes: phiBytes.length };
    const deltaA: Announce = { tid: mesh.randomU32(), dtype: s.compression.delta, elements: n, bytes: deltaBytes.length };
    const conn = mesh.conn(partner);
    if (this.partnerAborted) return this.partnerUnpaired ? 'unpaired' : this.solo('partner-aborted', partner, pairMs, via);
    if (!conn || !mesh.sendControl(partner, { t: 'xchg', round, phi: phiA, delta: deltaA })) {
      return this.solo('partner-gone', partner, pairMs, via);
    }
    this.bytesSent = wireBytes(id.runId, id.sender, phiBytes.length, s.chunkSize) + wireBytes(id.runId, id.sender, deltaBytes.length, s.chunkSize);
    // Announced, our Δ may reach the partner whatever comes back: a replay of it is caught later.
    mesh.validator.sending(payload.delta, round);
    // Keeps streaming after this round resolves while the partner may still be receiving: no
    // longer than its own deadline could wait, and not past our stopAndAbort.
    const opts = {
      chunkSize: s.chunkSize, highWater: s.highWaterBytes, abort: this.abortSend,
      deadline: { clock: mesh.clock, at: mesh.clock.now() + mesh.estimator.sendDeadlineMs() },
    };
    // Our chunks follow only the partner's own announcement: until then it may not know it is
    // paired with us (its pool answer can come later) and keeps no buffers for us. A partner
    // that never announces ends this round at the deadline, whose stopAndAbort ends this wait.
    const announced = new Promise<boolean>((resolve) => {
      const off = this.abortSend.onAbort(() => resolve(false));
      this.onAnnounced = () => { off(); this.streaming = true; resolve(true); };
    });
    let sends = sending.get(mesh);
    if (!sends) sending.set(mesh, (sends = []));
    sends.push(this.abortSend);
    while (sends.length > MAX_LINGERING_SENDS + 1) sends.shift()!.abort(`round ${round}'s send started`);
    void mesh.holding(conn, async () => {
      if (!(await announced)) return;
      await sendTensor(conn.link, id, { kind: 'phi', dtype: phiA.dtype, round, transferId: phiA.tid, elements: n, bytes: phiBytes }, opts);
      await sendTensor(conn.link, id, { kind: 'delta', dtype: deltaA.dtype, round, transferId: deltaA.tid, elements: n, bytes: deltaBytes }, opts);
      this.sendDone = true;
    }).catch((err) => mesh.logger.debug('send to partner ended early', { partner, error: String(err) })).finally(() => {
      const i = sends.indexOf(this.abortSend);
      if (i >= 0) sends.splice(i, 1);
    });

    // Their half.
    const outcome = await new Promise<Outcome>((resolve) => {
      const timer = mesh.clock.setTimeout(() => resolve({ kind: 'solo', reason: 'deadline' }), deadlineMs);
      this.settle = (o) => { mesh.clock.clearTimeout(timer); this.settle = null; resolve(o); };
      if (this.destroyed) this.settle({ kind: 'destroyed' });
      // Only this pairing's (its round is the partner's round): one kept while we waited for a pool
      // answer that never came (the coordinator went down and we paired directly) may be a late
      // one of an earlier pairing of the two, which no pool answer sorted out (keepOnlyStash).
      const early = this.stash.get(partner);
      this.stash.delete(partner);
      if (early && early.round === this.partnerRound) this.adopt(this.prepare(partner, early));
    });
    const transferMs = mesh.clock.now() - tStart;
    if (outcome.kind === 'destroyed') throw new MeshDestroyedError('exchange');
    if (outcome.kind === 'unpaired') return 'unpaired';
    if (outcome.kind === 'solo') {
      // Read before stopAndAbort, whose abort could close what the check reads.
      const stalled = this.stalled(outcome.reason, conn.link);
      this.stopAndAbort(partner, outcome.reason);
      if (outcome.reason === 'deadline') {
        // A miss must relax the estimate too: fed only completed receives, one fast exchange would
        // set a deadline that every slower honest partner misses from then on.
        const inb = this.inbound;
        const received = (inb?.phi?.receivedBytes ?? 0) + (inb?.delta?.receivedBytes ?? 0);
        mesh.estimator.miss(expectBytes, deadlineMs, received, inb ? mesh.clock.now() - inb.at : transferMs);
      }
      if (stalled) mesh.noteStall(partner, round, via === 'coordinator');
      if (outcome.reason === 'rejected') mesh.offence(partner, outcome.code ?? 'rejected', outcome.detail ?? '');
      return this.solo(outcome.reason, partner, pairMs, via, transferMs, outcome.code);
    }

    // Everything arrived and matched its checksum: now judge the values.
    const { inbound } = outcome;
    // φ rounded on the wire is judged and applied beside ours rounded alike (phiBesideOwn).
    const phi = phiBesideOwn(inbound.msg.phi.dtype, decodeTensor(inbound.msg.phi.dtype, outcome.phi, n), payload.phi, phiBytes);
    const delta = decodeTensor(inbound.msg.delta.dtype, outcome.delta, n);
    const verdict = mesh.validator.check(payload.phi, { phi, delta }, { peer: partner, round, peerRound: inbound.msg.round, probation: this.probation, readyAt: this.t0 }, payload.delta);
    if (!verdict.ok) {
      this.stopAndAbort(partner, 'rejected');
      if (verdict.offence) mesh.offence(partner, verdict.reason, verdict.detail);
      else mesh.logger.warn('partner refused (not yet an offence)', { peer: partner, code: verdict.reason, detail: verdict.detail });
      const result = this.solo('rejected', partner, pairMs, via, transferMs, verdict.reason);
      return verdict.offence ? result : { ...result, unreported: true };
    }
    mesh.notePartner(partner);
    const received = outcome.phi.length + outcome.delta.length;
    mesh.estimator.observe(received, mesh.clock.now() - inbound.at);
    const result: PartnerPayload = {
      peer: partner, round: inbound.msg.round, phi, delta: verdict.delta,
      deltaNorm: verdict.deltaNorm, phiDistance: verdict.phiDistance, clipped: verdict.clipped, deltaCosine: verdict.cosine, phiCosine: verdict.phiCosine, phiLag: verdict.phiLag, phiLagTheirs: verdict.phiLagTheirs,
    };
    return {
      ...this.base(partner, pairMs, via, transferMs),
      outcome: 'paired', payload: result, reason: null, rejection: null, ...(this.probation ? { probation: true } : {}),
      bytesReceived: wireBytes(s.runId, partner, outcome.phi.length, undefined) + wireBytes(s.runId, partner, outcome.delta.length, undefined),
    };
  }

  /**
   * Whether an exchange that ended `reason`, without the partner's payload, stalled us: it ran to
   * our deadline, or the partner ended it (an abort, its link closed) once it had ours. Only the
   * deadline counted before, and a free rider that took our φ and Δ and then aborted or hung up
   * just before it was never rested nor reported. An honest partner ends an exchange too (its
   * own shorter deadline, a rejection, a closed tab): a stall stays soft, and one alone rests
   * nothing (noteStall). One that ended before our payload reached the partner is no stall of
   * its. No acks come back, so "reached it" is what our side can see: every chunk handed to the
   * link and, while the link is open, none of them still queued on it (the channel is reliable
   * and ordered). A closed link's queue reads empty whatever it held, so there the chunks handed
   * over are all we know.
   */
  private stalled(reason: SoloReason, link: { readonly open: boolean; readonly bufferedAmount: number }): boolean {
    if (reason === 'deadline') return true;
    if (reason !== 'partner-aborted' && reason !== 'partner-gone') return false;
    return this.sendDone && (!link.open || link.bufferedAmount === 0);
  }

  /** Take the partner's announcement: check its sizes, then wait for both tensors. */
  private adopt(inb: Inbound): void {
    if (!this.settle) return;
    this.inbound = inb;
    if (inb.bad) {
      this.settle({ kind: 'solo', reason: 'rejected', code: inb.bad.code, detail: inb.bad.detail });
      return;
    }
    this.onAnnounced?.();
    Promise.all([inb.phi!.done, inb.delta!.done]).then(
      ([phi, delta]) => this.settle?.({ kind: 'received', phi, delta, inbound: inb }),
      (err) => {
        if (err instanceof FrameError) this.settle?.({ kind: 'solo', reason: 'rejected', code: err.code, detail: err.message });
        else if (err instanceof LinkClosedError) this.settle?.({ kind: 'solo', reason: 'partner-gone' });
        else this.settle?.({ kind: 'solo', reason: 'partner-aborted', detail: String(err) });
      },
    );
  }

  /** Register assemblers for an announcement so its chunks are kept from the first one on. */
  private prepare(peer: string, msg: Xchg): Inbound {
    const { mesh } = this;
    const n = mesh.settings.elements;
    const want = mesh.settings.compression;
    const inb: Inbound = { peer, msg, phi: null, delta: null, bad: null, at: mesh.clock.now() };
    if (msg.phi.elements !== n || msg.delta.elements !== n) {
      inb.bad = { code: 'ERR_FRAME_SIZE', detail: `announced φ of ${msg.phi.elements} and Δ of ${msg.delta.elements} elements; this run's tensors have ${n}` };
      return inb;
    }
    // The run fixes the wire dtypes: a sender that picks its own could make us allocate and
    // decode 4 bytes an element where the run sends 1, or round-trip values the run never rounds.
    if (msg.phi.dtype !== want.phi || msg.delta.dtype !== want.delta) {
      inb.bad = { code: 'ERR_FRAME_DTYPE', detail: `announced φ ${msg.phi.dtype} and Δ ${msg.delta.dtype}; this run sends φ ${want.phi} and Δ ${want.delta}` };
      return inb;
    }
    const conn = mesh.conn(peer);
    if (!conn) { inb.bad = { code: 'ERR_FRAME_SIZE', detail: 'link closed' }; return inb; }
    const id = mesh.identity();
    const make = (kind: 'phi' | 'delta', a: Announce) => {
      const asm = new Assembler({ runId: id.runId, configHash: id.configHash, sender: peer, kind, transferId: a.tid, dtype: a.dtype as Dtype, elements: n });
      conn.inbound.set(a.tid, asm);
      return asm;
    };
    inb.phi = make('phi', msg.phi);
    inb.delta = make('delta', msg.delta);
    return inb;
  }

  // ---- events routed from the mesh --------------------------------------------------------

  onControl(peer: string, msg: ControlMessage): void {
    const { mesh } = this;
    switch (msg.t) {
      case 'pair-req':
        if (this.phase === 'pairing' && this.direct) this.direct.onRequest(peer, msg);
        else mesh.sendControl(peer, { t: 'pair-ack', nonce: msg.nonce, ok: false, reason: 'busy' });
        return;
      case 'pair-ack':
        if (this.direct) this.direct.onAck(peer, msg);
        else if (msg.ok) mesh.sendControl(peer, { t: 'abort', round: this.round, reason: 'not pairing directly', yourRound: msg.round });
        return;
      case 'xchg':
        this.onXchg(peer, msg);
        return;
      case 'abort':
        this.onAbort(peer, msg);
        return;
      default:
        return;
    }
  }

  private partnerAborted = false;
  /** The partner's abort came while connecting and says it was never paired with us (unpairedAbort). */
  private partnerUnpaired = false;

  /**
   * An abort from `peer`. It ends this pairing only if it is this pairing's: its `round` is the
   * partner's round of this pairing (the partner stopped its exchange of it: a deadline, a
   * rejection, or it was never in it), or its `yourRound` is our round (it answers our `xchg` or
   * our yes of this round: the partner is not exchanging with us). An abort of an earlier pairing
   * with the same peer names neither: the partner's rounds and ours both differ from one exchange
   * to the next. An announcement of `peer`'s kept for later goes with the abort of its own round.
   */
  private onAbort(peer: string, msg: Abort): void {
    if (this.stash.get(peer)?.round === msg.round) this.stash.delete(peer);
    if (peer !== this.partner || !(msg.round === this.partnerRound || msg.yourRound === this.round)) return;
    if (this.phase === 'connecting' || this.phase === 'transfer') {
      const unpaired = this.unpairedAbort(peer, msg);
      if (this.settle) this.settle(unpaired ? { kind: 'unpaired' } : { kind: 'solo', reason: 'partner-aborted', detail: msg.reason });
      else { this.partnerAborted = true; this.partnerUnpaired = unpaired; }
    }
  }

  /**
   * Whether the partner's abort says it was never paired with us, early enough to pair again.
   * A direct pairing can take a question the asker put in the last moments of its round, which
   * landed in ours: we said yes, but the asker has moved on and answers the yes or our
   * announcement with one of NEVER_PAIRED, naming our round. Ending solo there lost the round
   * although most of the wait was left and an honest neighbour was ready. Only while nothing of
   * ours went to it but the announcement (its own announcement of this pairing never came, so no
   * chunk followed), and only with wait left: a neighbour that says so on purpose gets no
   * payload, is not asked again this round, and can cost us no more than the wait we had (the
   * pool's pairing is the coordinator's word, never undone here). An abort after its
   * announcement is the partner ending an exchange it was in (stalled).
   */
  private unpairedAbort(peer: string, msg: Abort): boolean {
    return this.direct !== null && msg.yourRound === this.round && NEVER_PAIRED.has(msg.reason)
      && this.inbound === null && this.stash.get(peer)?.round !== this.partnerRound && !this.streaming
      && this.mesh.clock.now() - this.t0 < this.waitMs;
  }

  private onXchg(peer: string, msg: Xchg): void {
    const named = this.partner ?? this.expectedPartner;
    if (named === null && this.phase === 'pairing' && this.viaCoordinator && !this.direct) {
      // Early: the coordinator told our partner before us, or our link opened after theirs.
      // Before our own answer any neighbour may be the partner, so each one's latest is kept (never
      // refused for want of room: two neighbours filling a few slots got the partner's refused,
      // and both honest peers lost the round); the answer keeps only the partner's of this
      // pairing (keepOnlyStash).
      this.stash.set(peer, msg);
      return;
    }
    if (peer === named) {
      // Another round's: a late announcement of an earlier pairing of the two, whose sender left
      // that round long since. No answer: an abort names our round, the one the partner was told
      // for this pairing, and would end it.
      if (msg.round !== this.partnerRound) return;
      // A second one of this round (no honest partner sends it): the first stands.
      if (this.inbound) return;
      if (this.phase === 'transfer' && this.settle) this.adopt(this.prepare(peer, msg));
      else this.stash.set(peer, msg); // our own announcement is not out yet (connecting)
      return;
    }
    // Not our partner: it thinks we are its partner (or will be) for the round it names, which we
    // answer so it need not wait for us.
    this.mesh.sendControl(peer, { t: 'abort', round: this.round, reason: this.partner ? 'busy with another partner' : 'not paired with you', yourRound: msg.round });
  }

  onLinkClosed(peer: string): void {
    this.stash.delete(peer);
    this.direct?.onLinkClosed(peer);
    if (peer === this.partner && this.settle) this.settle({ kind: 'solo', reason: 'partner-gone' });
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.abortSend.abort('mesh destroyed');
    for (const fn of this.onDestroy.splice(0)) fn();
    this.settle?.({ kind: 'destroyed' });
  }

  // ---- helpers ----------------------------------------------------------------------------

  /** Race a promise with destroy(). */
  private guard<T>(p: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.onDestroy.push(() => reject(new MeshDestroyedError('exchange')));
      p.then(resolve, reject);
    });
  }

  /**
   * Stop our send at once (a send waiting for a partner that does not read included) and tell the
   * partner: our round is the one it was told for this pairing (onAbort).
   */
  private stopAndAbort(partner: string, reason: string): void {
    this.abortSend.abort(reason);
    if (reason !== 'partner-gone' && reason !== 'partner-aborted') {
      this.mesh.sendControl(partner, { t: 'abort', round: this.round, reason });
    }
  }

  /**
   * The pool answered: only the partner's announcement of this pairing (its round is
   * `partnerRound`) is kept. Anyone else's is released and told so; one of the partner's of
   * another round is a late one of an earlier pairing, dropped unanswered (onXchg).
   */
  private keepOnlyStash(partner: string | null, partnerRound: number | null): void {
    for (const [peer, msg] of [...this.stash]) {
      if (peer === partner && msg.round === partnerRound) continue;
      this.stash.delete(peer);
      if (peer !== partner) this.mesh.sendControl(peer, { t: 'abort', round: this.round, reason: 'not paired with you', yourRound: msg.round });
    }
  }

  private cleanup(): void {
    this.phase = 'done';
    this.direct?.cancel();
    this.stash.clear();
    if (this.inbound) {
      const conn = this.mesh.conn(this.inbound.peer);
      for (const a of [this.inbound.phi, this.inbound.delta]) if (a) conn?.inbound.delete(a.expect.transferId);
    }
  }

  private base(partner: string | null, pairMs: number, via: 'coordinator' | 'direct' | null, transferMs: number) {
    const s = this.mesh.settings;
    const pairBudget = this.waitMs + (this.viaCoordinator ? s.coordinatorGraceMs : 0);
    return {
      round: this.round, partner, via, pairMs, transferMs,
      elapsedMs: this.mesh.clock.now() - this.t0,
      budgetMs: pairBudget + this.budgetExtra,
      bytesSent: this.bytesSent,
    };
  }

  private solo(
    reason: SoloReason, partner: string | null, pairMs: number, via: 'coordinator' | 'direct' | null = null,
    transferMs = 0, rejection?: string,
  ): ExchangeResult {
    return {
      ...this.base(partner, pairMs, via, transferMs),
      outcome: 'solo', payload: null, reason, rejection: rejection ?? null, bytesReceived: 0,
    };
  }
}

/** Wire bytes (frames with headers) of a payload of `bytes` sent by `sender`. */
export function wireBytes(runId: string, sender: string, bytes: number, chunkSize: number | undefined): number {
  const size = Math.min(maxChunkSize(runId, sender), chunkSize ?? Infinity);
  const frames = Math.max(1, Math.ceil(bytes / size));
  return bytes + frames * chunkHeaderBytes(runId, sender);
}
