// Pairing without the coordinator: a ready peer asks random neighbours, one at a time, "be my
// partner for this round?". A neighbour says yes only while it is itself ready and has no
// other open question, so every peer ends with at most one partner. Two peers that asked each
// other at once both say yes and pair. A yes that arrives after we moved on is answered with an
// abort so the asker does not wait for us. The question names the asker's round and a yes the
// responder's: each side knows the round its partner's messages of this pairing carry (exchange.ts).
// A question can still land after its asker left that round; the asker then answers our yes with
// an abort, and the exchange pairs again with that peer excluded (exchange.ts, unpairedAbort).
//
// Partners finish an exchange together, so equal-speed peers would find each other ready first
// every round and never change partners; for the first quarter of the wait we neither ask nor
// accept our last partner, which gives the others the chance to be found. A partner that stalled
// us lately (its payload never came by the deadline) is neither asked nor accepted for a few of
// our rounds, more after each stall in a row (mesh.ts, MAX_STALL_REST_ROUNDS).
import { pick } from './components.ts';
import type { MeshCore } from './mesh-core.ts';
import type { ControlMessage } from '../protocol/peer-messages.ts';

type PairReq = Extract<ControlMessage, { t: 'pair-req' }>;
type PairAck = Extract<ControlMessage, { t: 'pair-ack' }>;

/** Between two unanswered questions: long enough for a crossing question to land. */
const RETRY_JITTER_MS = 15;
/** How often to look again when no neighbour is connected. */
const NO_NEIGHBOUR_POLL_MS = 20;
/** Fraction of the wait during which the last partner is skipped. */
const AVOID_LAST_FRAC = 0.25;

export class DirectPairing {
  private outstanding: { to: string; nonce: number; timer: unknown } | null = null;
  /** Every question put this round, as `peer/nonce` (a few per round: one at a time, each answered or timed out). */
  private readonly asked = new Set<string>();
  private partner: string | null = null;
  /** The partner's round, as its question or its yes named it; null until paired. */
  partnerRound: number | null = null;
  private finished = false;
  private timers = new Set<unknown>();
  private resolve!: (peer: string | null) => void;
  readonly result: Promise<string | null>;

  private readonly avoidUntil: number;

  /**
   * `exclude`: neighbours neither asked nor accepted this round whatever the time: ones that said
   * they were never paired with us after we took them (ExchangeRun, pairing again).
   */
  constructor(
    private readonly mesh: MeshCore, private readonly round: number, budgetMs: number,
    private readonly avoid: string | null = null, private readonly exclude: ReadonlySet<string> = new Set(),
  ) {
    this.result = new Promise((r) => { this.resolve = r; });
    this.avoidUntil = mesh.clock.now() + AVOID_LAST_FRAC * budgetMs;
    this.later(() => this.finish(null), Math.max(0, budgetMs));
    this.attempt();
  }

  /** The peer we asked and are waiting on, if any. */
  get asking(): string | null {
    return this.outstanding?.to ?? null;
  }

  onRequest(from: string, msg: PairReq): void {
    const busy = () => this.mesh.sendControl(from, { t: 'pair-ack', nonce: msg.nonce, ok: false, reason: 'busy' });
    if (this.finished || this.mesh.isBanned(from) || this.avoiding(from)) { busy(); return; }
    if (this.outstanding && this.outstanding.to !== from) { busy(); return; }
    // Not asking anyone, or asking exactly this peer (crossed questions): yes, naming our round.
    this.mesh.sendControl(from, { t: 'pair-ack', nonce: msg.nonce, ok: true, round: this.round });
    this.finish(from, msg.round);
  }

  onAck(from: string, msg: PairAck): void {
    if (msg.ok) {
      // Only a yes to a question we put to that peer this round (a late one too: it paired with
      // us when it said yes). An unasked yes would let any neighbour make itself our partner.
      if (!this.finished && this.asked.has(`${from}/${msg.nonce}`) && !this.mesh.isBanned(from)) { this.finish(from, msg.round); return; }
      // A yes after we paired elsewhere or gave up, or one we never asked for: free the other side
      // now, naming its round the yes carried (it is paired with us for that round).
      if (from !== this.partner) this.mesh.sendControl(from, { t: 'abort', round: this.round, reason: 'paired elsewhere', yourRound: msg.round });
      return;
    }
    if (this.outstanding?.to === from && this.outstanding.nonce === msg.nonce) {
      this.clearOutstanding();
      this.later(() => this.attempt(), this.mesh.random() * RETRY_JITTER_MS);
    }
  }

  /** A neighbour's link closed: stop waiting on it. */
  onLinkClosed(peer: string): void {
    if (this.outstanding?.to === peer) {
      this.clearOutstanding();
      this.attempt();
    }
  }

  /** Stop (the exchange ended): resolves null if no partner was found yet. */
  cancel(): void {
    this.finish(null);
  }

  private attempt(): void {
    if (this.finished || this.outstanding) return;
    const to = pick(this.mesh.random, this.mesh.eligibleNeighbours().filter((p) => !this.avoiding(p)));
    if (!to) { this.later(() => this.attempt(), NO_NEIGHBOUR_POLL_MS); return; }
    const nonce = this.mesh.randomU32();
    if (!this.mesh.sendControl(to, { t: 'pair-req', round: this.round, nonce })) {
      this.later(() => this.attempt(), NO_NEIGHBOUR_POLL_MS);
      return;
    }
    this.asked.add(`${to}/${nonce}`);
    const timer = this.later(() => {
      if (this.outstanding?.nonce !== nonce) return;
      this.outstanding = null;
      this.attempt();
    }, this.mesh.settings.pairRequestTimeoutMs);
    this.outstanding = { to, nonce, timer };
  }

  /** Our last partner for the first part of the wait, one excluded this round, and a partner that stalled us lately (MeshCore.resting). */
  private avoiding(peer: string): boolean {
    return (peer === this.avoid && this.mesh.clock.now() < this.avoidUntil) || this.exclude.has(peer) || this.mesh.resting(peer, this.round);
  }

  private clearOutstanding(): void {
    if (!this.outstanding) return;
    this.mesh.clock.clearTimeout(this.outstanding.timer);
    this.timers.delete(this.outstanding.timer);
    this.outstanding = null;
  }

  private finish(partner: string | null, partnerRound: number | null = null): void {
    if (this.finished) return;
    this.finished = true;
    this.partner = partner;
    this.partnerRound = partner === null ? null : partnerRound;
    this.outstanding = null;
    for (const t of this.timers) this.mesh.clock.clearTimeout(t);
    this.timers.clear();
    this.resolve(partner);
  }

  private later(fn: () => void, ms: number): unknown {
    const t = this.mesh.clock.setTimeout(() => { this.timers.delete(t); fn(); }, ms);
    this.timers.add(t);
    return t;
  }
}
