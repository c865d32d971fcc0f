// One outer round's communication, as a small state machine:
//
//   pairing (coordinator pool, or neighbours when it is unreachable)
//     -> connecting (only if the partner is not a neighbour yet)
//       -> transfer (send our φ, Δ; receive and verify theirs, under an adaptive deadline)
//         -> validation -> paired result, or a solo result with its reason
//
// Every wait is bounded: pairing by the caller's wait, connecting by connectTimeoutMs, the
// transfer by the deadline. A closed link or a partner's abort of this pairing ends the wait at
// once (one of an earlier pairing with the same peer, come late, does not: `ours`).
import { FrameError } from '../protocol/errors.ts';
import type { ControlMessage, Announce } from '../protocol/peer-messages.ts';
import { chunkHeaderBytes, maxChunkSize, payloadBytes, type Dtype } from '../protocol/frame.ts';
import { decodeTensor, encodeTensor } from './compress.ts';
import { LinkClosedError, MeshDestroyedError, PayloadError } from './errors.ts';
import type { Conn, MeshCore } from './mesh-core.ts';
import { DirectPairing } from './pairing.ts';
import { Assembler, SendAbort, sendTensor } from './transfer.ts';
import { allFinite, norm2 } from './validate.ts';
import type { ExchangeResult, OuterPayload, PartnerPayload, SoloReason } from './types.ts';

type Xchg = Extract<ControlMessage, { t: 'xchg' }>;
type Abort = Extract<ControlMessage, { t: 'abort' }>;
type Pairing = { partner: string; initiator: boolean; via: 'coordinator' | 'direct' } | { reason: SoloReason; via: 'coordinator' | 'direct' | null };

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
  | { kind: 'destroyed' };

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
 * Links whose peer was our partner in a round we gave up at its deadline before its `xchg` came.
 * It may still be on the way: sent just before our abort reached the partner (a channel still
 * carrying an earlier round's chunks delays it by a second or more), and the partner, aborted,
 * sends nothing after it for that round. Taken by the next round as an early announcement, it
 * was that round's partner's announcement if the pool named the same peer again: our chunks then
 * waited on its old transfer ids, the partner's own announcement was refused (`busy with another
 * partner`) and both lost the round, or its old chunks still arriving failed as missing ones and
 * the honest partner took a strike. On the ordered channel the late `xchg` comes before anything
 * the partner sends for a later round, so the next `xchg` on that link is dropped; an `abort` or
 * a pairing question first says the partner has left that round (it sends those only after its
 * `xchg`, or without one), and the link is no longer marked. Keyed by the link: a new one carries
 * nothing of the old one's. The abort that follows the dropped `xchg` is of that round too, and
 * the next round does not take it for its own (`ExchangeRun.ours`).
 */
const overdue = new WeakSet<Conn>();

/**
 * Whether `msg` from `conn`'s peer is the late announcement of a round we gave up on (see
 * `overdue`): the mesh drops it before any exchange sees it.
 */
export function lateAnnouncement(conn: Conn, msg: ControlMessage): boolean {
  if (!overdue.has(conn)) return false;
  if (msg.t === 'xchg') { overdue.delete(conn); return true; }
  if (msg.t === 'abort' || msg.t === 'pair-req' || msg.t === 'pair-ack') overdue.delete(conn);
  return false;
}

export class ExchangeRun {
  phase: 'pairing' | 'connecting' | 'transfer' | 'done' = 'pairing';
  /** Set while pairing via the coordinator said this peer: it may connect past the hard cap. */
  expectedPartner: string | null = null;
  private partner: string | null = null;
  /** The coordinator's pool said our partner is on probation (a new id). */
  private probation = false;
  private direct: DirectPairing | null = null;
  private viaCoordinator = false;
  /**
   * Announcements that came before we could take them: before our own pool answer any neighbour
   * may be the partner (its answer can come first), after it only the partner's. The message
   * alone, one per linked peer, each replacing its own: no buffers, since a sender streams only
   * once its partner's own `xchg` arrived (transfer). So no number of neighbours announcing can
   * push the partner's announcement out, and each costs us a control message (at most 4 KiB), not a φ and a Δ.
   */
  private stash = new Map<string, Xchg>();
  private inbound: Inbound | null = null;
  private settle: ((o: Outcome) => void) | null = null;
  private destroyed = false;
  private onDestroy: (() => void)[] = [];
  private readonly abortSend = new SendAbort();
  /** Called once the partner's announcement is taken (adopt): our chunks may follow. */
  private onAnnounced: (() => void) | null = null;
  private readonly t0: number;
  private bytesSent = 0;
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
      const p = await this.pair();
      if (this.destroyed) throw new MeshDestroyedError('exchange');
      const pairMs = mesh.clock.now() - this.t0;
      if ('reason' in p) return this.solo(p.reason, null, pairMs, p.via);
      this.partner = p.partner;
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
      return await this.transfer(p.partner, p.via, pairMs);
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
    const remaining = Math.max(0, this.waitMs - (mesh.clock.now() - this.t0));
    this.direct = new DirectPairing(mesh, this.round, remaining, mesh.lastPartner);
    const onDestroy = () => this.direct?.cancel();
    this.onDestroy.push(onDestroy);
    const partner = await this.direct.result;
    return partner ? { partner, initiator: false, via: 'direct' } : { reason: 'no-partner', via: 'direct' };
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
        if (e.partner === null) { this.keepOnlyStash(null); done({ reason: 'no-partner', via: 'coordinator' }); }
        else {
          this.expectedPartner = e.partner;
          this.probation = e.probation === true;
          this.keepOnlyStash(e.partner);
          done({ partner: e.partner, initiator: e.initiator, via: 'coordinator' });
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

  private async transfer(partner: string, via: 'coordinator' | 'direct', pairMs: number): Promise<ExchangeResult> {
    const { mesh, round, payload } = this;
    const s = mesh.settings;
    const n = s.elements;
    const id = mesh.identity();
    const tStart = mesh.clock.now();
    const expectBytes = payloadBytes(s.compression.phi, n) + payloadBytes(s.compression.delta, n);
    const deadlineMs = mesh.estimator.deadlineMs(expectBytes);
    this.phase = 'transfer';
    this.budgetExtra += deadlineMs;

    // Our half: encode (copies, so the caller may overwrite its buffers), announce, stream.
    const phiBytes = encodeTensor(s.compression.phi, payload.phi);
    const deltaBytes = encodeTensor(s.compression.delta, payload.delta, s.compression.delta === 'q8' ? mesh.q8Residual() : undefined);
    const phiA: Announce = { tid: mesh.randomU32(), dtype: s.compression.phi, elements: n, bytes: phiBytes.length };
    const deltaA: Announce = { tid: mesh.randomU32(), dtype: s.compression.delta, elements: n, bytes: deltaBytes.length };
    const conn = mesh.conn(partner);
    if (this.partnerAborted) return this.solo('partner-aborted', partner, pairMs, via);
    if (!conn || !mesh.sendControl(partner, { t: 'xchg', round, phi: phiA, delta: deltaA })) {
      return this.solo('partner-gone', partner, pairMs, via);
    }
    this.bytesSent = wireBytes(id.runId, id.sender, phiBytes.length, s.chunkSize) + wireBytes(id.runId, id.sender, deltaBytes.length, s.chunkSize);
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
      this.onAnnounced = () => { off(); resolve(true); };
    });
    let sends = sending.get(mesh);
    if (!sends) sending.set(mesh, (sends = []));
    sends.push(this.abortSend);
    while (sends.length > MAX_LINGERING_SENDS + 1) sends.shift()!.abort(`round ${round}'s send started`);
    void mesh.holding(conn, async () => {
      if (!(await announced)) return;
      await sendTensor(conn.link, id, { kind: 'phi', dtype: phiA.dtype, round, transferId: phiA.tid, elements: n, bytes: phiBytes }, opts);
      await sendTensor(conn.link, id, { kind: 'delta', dtype: deltaA.dtype, round, transferId: deltaA.tid, elements: n, bytes: deltaBytes }, opts);
    }).catch((err) => mesh.logger.debug('send to partner ended early', { partner, error: String(err) })).finally(() => {
      const i = sends.indexOf(this.abortSend);
      if (i >= 0) sends.splice(i, 1);
    });

    // Their half.
    const outcome = await new Promise<Outcome>((resolve) => {
      const timer = mesh.clock.setTimeout(() => resolve({ kind: 'solo', reason: 'deadline' }), deadlineMs);
      this.settle = (o) => { mesh.clock.clearTimeout(timer); this.settle = null; resolve(o); };
      if (this.destroyed) this.settle({ kind: 'destroyed' });
      const early = this.stash.get(partner);
      if (early) { this.stash.delete(partner); this.adopt(this.prepare(partner, early)); }
    });
    const transferMs = mesh.clock.now() - tStart;
    if (outcome.kind === 'destroyed') throw new MeshDestroyedError('exchange');
    if (outcome.kind === 'solo') {
      this.stopAndAbort(partner, outcome.reason);
      if (outcome.reason === 'deadline') {
        // Its announcement never came: it may yet, once this round is over (overdue).
        if (!this.inbound && mesh.conn(partner) === conn) overdue.add(conn);
        // A miss must relax the estimate too: fed only completed receives, one fast exchange would
        // set a deadline that every slower honest partner misses from then on.
        const inb = this.inbound;
        const received = (inb?.phi?.receivedBytes ?? 0) + (inb?.delta?.receivedBytes ?? 0);
        mesh.estimator.miss(expectBytes, deadlineMs, received, inb ? mesh.clock.now() - inb.at : transferMs);
      }
      if (outcome.reason === 'rejected') mesh.offence(partner, outcome.code ?? 'rejected', outcome.detail ?? '');
      return this.solo(outcome.reason, partner, pairMs, via, transferMs, outcome.code);
    }

    // Everything arrived and matched its checksum: now judge the values.
    const { inbound } = outcome;
    const phi = decodeTensor(inbound.msg.phi.dtype, outcome.phi, n);
    const delta = decodeTensor(inbound.msg.delta.dtype, outcome.delta, n);
    const verdict = mesh.validator.check(payload.phi, { phi, delta }, { peer: partner, round, peerRound: inbound.msg.round, probation: this.probation }, payload.delta);
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
        else if (msg.ok) mesh.sendControl(peer, { t: 'abort', round: this.round, reason: 'not pairing directly' });
        return;
      case 'xchg':
        this.onXchg(peer, msg);
        return;
      case 'abort':
        if (!this.ours(peer, msg)) return;
        this.stash.delete(peer);
        if (peer === this.partner && (this.phase === 'connecting' || this.phase === 'transfer')) {
          if (this.settle) this.settle({ kind: 'solo', reason: 'partner-aborted', detail: msg.reason });
          else this.partnerAborted = true;
        }
        return;
      default:
        return;
    }
  }

  private partnerAborted = false;

  /**
   * Whether `peer`'s abort is about this round's pairing, not about an earlier pairing with it
   * that comes late. In a small swarm the pool pairs the same two peers round after round: a
   * partner that gave up our last round at its deadline (while we had all of its payload, or had
   * given up too) may have its abort still on the way when the next pairing begins; taken for this
   * round's, it ended the new pairing as well, and both honest peers lost a second round. Rounds
   * are each peer's own, so the abort's `round` (the sender's) says nothing we could compare. One
   * that names our round (`yourRound`: our `xchg` had reached the sender, or it answers that) is
   * this round's; one that names another round of ours is not (our round numbers differ from one
   * exchange to the next, as the pool's answers already assume). One that names none relies on the
   * ordered channel, as `overdue` does: a peer sends its partner an abort only after its own `xchg`
   * of that pairing (transfer), and nothing of a later pairing before it, so it is this round's
   * only once this round's announcement from that peer is here (stashed or taken), or when we
   * paired directly (the question or answer that paired us came after anything of the peer's
   * earlier pairings).
   */
  private ours(peer: string, msg: Abort): boolean {
    if (msg.yourRound !== undefined) return msg.yourRound === this.round;
    return this.direct !== null || this.stash.has(peer) || this.inbound?.peer === peer;
  }

  private onXchg(peer: string, msg: Xchg): void {
    const { mesh } = this;
    if (this.phase === 'transfer' && peer === this.partner && this.settle && !this.inbound) {
      this.adopt(this.prepare(peer, msg));
      return;
    }
    // Early: the coordinator told our partner before us, or our link opened after theirs.
    // Before our own answer any neighbour may be the partner, so each one's latest is kept (never
    // refused for want of room: two neighbours filling a few slots got the partner's refused, and
    // both honest peers lost the round); once the pool named one, only its announcement is.
    const beforeAnswer = this.phase === 'pairing' && this.viaCoordinator && !this.direct && this.expectedPartner === null;
    const early = beforeAnswer ||
      (this.phase === 'pairing' && this.expectedPartner === peer) ||
      (this.phase === 'connecting' && peer === this.partner) ||
      (this.phase === 'transfer' && peer === this.partner && !this.settle);
    if (early) {
      this.stash.set(peer, msg);
      return;
    }
    mesh.sendControl(peer, { t: 'abort', round: this.round, reason: this.partner ? 'busy with another partner' : 'not paired with you', yourRound: msg.round });
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
   * partner, naming its round where its `xchg` told us (see `ours`).
   */
  private stopAndAbort(partner: string, reason: string): void {
    this.abortSend.abort(reason);
    if (reason !== 'partner-gone' && reason !== 'partner-aborted') {
      const theirs = this.inbound?.peer === partner ? { yourRound: this.inbound.msg.round } : {};
      this.mesh.sendControl(partner, { t: 'abort', round: this.round, reason, ...theirs });
    }
  }

  /** The pool answered: announcements from anyone but `partner` are released (and told so). */
  private keepOnlyStash(partner: string | null): void {
    for (const [peer, msg] of [...this.stash]) {
      if (peer === partner) continue;
      this.stash.delete(peer);
      this.mesh.sendControl(peer, { t: 'abort', round: this.round, reason: 'not paired with you', yourRound: msg.round });
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
