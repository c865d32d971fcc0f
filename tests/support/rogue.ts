// A hostile peer written by hand against the wire protocol: it joins the run through the hub,
// answers pairings and sends whatever payload it is told to, with correct framing and
// checksums, so only the honest peers' validation can stop it.
import wrtc from '@roamhq/wrtc';
import { encodeControl, decodeFrame, type ChunkHeader } from '../../src/protocol/frame.ts';
import { parseControl, type ControlMessage } from '../../src/protocol/peer-messages.ts';
import { encodeTensor } from '../../src/sync/compress.ts';
import { simplePeerLinks, type Link, type LinkFactory } from '../../src/sync/links.ts';
import { sendTensor } from '../../src/sync/transfer.ts';
import type { HubClient, SignalHub } from './signal-hub.ts';

export interface RogueOptions {
  runId: string;
  /** Config hash in its hello (pass the honest one to get past the greeting). */
  helloConfigHash: string;
  /** Config hash written in its tensor frames. */
  frameConfigHash: string;
  /** Elements it claims in hello and announcements. */
  elements: number;
  /** φ and Δ it sends (length = elements). */
  payload: () => { phi: Float32Array; delta: Float32Array };
  links?: LinkFactory;
  /** A free rider: it announces its φ and Δ as ever but never streams them. */
  withhold?: boolean;
  /** Called once its own announcement to `peer` is out (what it does next is the test's). */
  onAnnounced?: (peer: string) => void;
  /** Called once the whole of `peer`'s φ and Δ of one round has arrived (the last chunk of each). */
  onTaken?: (peer: string) => void;
}

export class Rogue {
  readonly client: HubClient;
  readonly sentTo: string[] = [];
  /** Control messages the honest side sent it, by sender. */
  readonly received: { from: string; t: string; reason?: string }[] = [];
  /** Payloads (a whole φ and Δ of one round) it has taken, by sender. */
  readonly taken: string[] = [];
  /** Last chunks that arrived, by sender and round: `${peer}:${round}` to the kinds complete. */
  private lastChunks = new Map<string, Set<string>>();
  private links = new Map<string, { link: Link; cid: string }>();
  /** Rounds it has asked the pool for. */
  private round = 0;
  /** The round it announces: the last one its pool answer was for (a partner takes only that one). */
  private pairRound = 0;
  private stopped = false;
  private readonly factory: LinkFactory;

  constructor(hub: SignalHub, id: string, private readonly o: RogueOptions) {
    this.client = hub.client(id);
    this.factory = o.links ?? simplePeerLinks({ rtc: wrtc });
    this.client.on('signal', ({ from, data }) => this.onSignal(from, data as { mesh: 1; cid: string; sig: { type?: string } }));
    this.client.on('paired', (e) => { this.pairRound = e.round; if (e.partner) this.attack(e.partner, e.initiator); });
  }

  /** Keep asking the pool for partners, like an honest peer finishing rounds. */
  async loop(rounds: number, gapMs: number, waitMs: number): Promise<void> {
    for (let r = 0; r < rounds && !this.stopped; r++) {
      await new Promise((res) => setTimeout(res, gapMs));
      this.client.ready(this.round++, waitMs);
    }
  }

  stop(): void {
    this.stopped = true;
    for (const { link } of this.links.values()) link.destroy();
    this.client.close();
  }

  /** Dial `peer` unasked (a neighbour link, not a pairing); resolves when the link is open. */
  async dial(peer: string, timeoutMs = 5000): Promise<void> {
    this.connect(peer, true, `rogue${Math.random().toString(36).slice(2)}`);
    const end = Date.now() + timeoutMs;
    while (!this.links.get(peer)?.link.open) {
      if (Date.now() > end) throw new Error(`rogue ${this.client.id}: no link to ${peer} after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 10));
    }
    await new Promise((r) => setTimeout(r, 30)); // let both hellos land
  }

  /** End its exchange of the round it was paired for with `peer`, as an honest peer's abort does. */
  abort(peer: string, reason: string): void {
    this.links.get(peer)?.link.send(encodeControl({ t: 'abort', round: this.pairRound, reason }));
  }

  /** Close its link to `peer`, as a closed tab does. */
  hangUp(peer: string): void {
    this.links.get(peer)?.link.destroy('hung up');
  }

  /** Announce and stream a φ, Δ exchange to `peer` on an open link, paired or not. */
  announce(peer: string): Promise<void> {
    return this.send(peer);
  }

  private connect(peer: string, initiator: boolean, cid: string): Link {
    const link = this.factory({ remote: peer, initiator });
    this.links.set(peer, { link, cid });
    link.on('signal', (sig) => this.client.sendSignal(peer, { mesh: 1, cid, sig }));
    link.on('connect', () => link.send(encodeControl({
      t: 'hello', peer: this.client.id, runId: this.o.runId, configHash: this.o.helloConfigHash, elements: this.o.elements,
    })));
    link.on('data', (b) => {
      try {
        const f = decodeFrame(b);
        if (f.type === 'control') this.onControl(peer, link, parseControl(f.message));
        else if (f.type === 'chunk') this.onChunk(peer, f.header);
      } catch { /* ignore */ }
    });
    link.on('close', () => { if (this.links.get(peer)?.link === link) this.links.delete(peer); });
    return link;
  }

  private onSignal(from: string, data: { mesh: 1; cid: string; sig: { type?: string } }): void {
    const cur = this.links.get(from);
    if (cur && cur.cid === data.cid) { cur.link.signal(data.sig); return; }
    if (data.sig?.type !== 'offer') return;
    cur?.link.destroy();
    this.connect(from, false, data.cid).signal(data.sig);
  }

  private onControl(peer: string, link: Link, msg: ControlMessage): void {
    this.received.push({ from: peer, t: msg.t, ...(msg.t === 'abort' ? { reason: msg.reason } : {}) });
    // Accept every direct pairing request: a rogue wants partners.
    if (msg.t === 'pair-req') link.send(encodeControl({ t: 'pair-ack', nonce: msg.nonce, ok: true, round: this.pairRound }));
    if (msg.t === 'pair-req' || msg.t === 'xchg') void this.send(peer);
  }

  /** Links are ordered: a tensor's last chunk means the whole of it arrived. */
  private onChunk(peer: string, h: ChunkHeader): void {
    if (h.chunkIndex !== h.chunkCount - 1) return;
    const key = `${peer}:${h.round}`;
    const kinds = this.lastChunks.get(key) ?? new Set<string>();
    this.lastChunks.set(key, kinds.add(h.kind));
    if (kinds.size < 2) return;
    this.lastChunks.delete(key);
    this.taken.push(peer);
    this.o.onTaken?.(peer);
  }

  /** Paired: dial the partner if it is no neighbour yet. Its chunks follow the partner's announcement (onControl), as an honest peer's do. */
  private attack(partner: string, initiator: boolean): void {
    if (!this.links.has(partner) && initiator) this.connect(partner, true, `rogue${Math.random().toString(36).slice(2)}`);
  }

  private sending = new Set<string>();

  private async send(peer: string): Promise<void> {
    const entry = this.links.get(peer);
    if (!entry?.link.open || this.sending.has(peer)) return;
    this.sending.add(peer);
    try {
      const { phi, delta } = this.o.payload();
      const pb = encodeTensor('f32', phi), db = encodeTensor('f32', delta);
      const tPhi = (Math.random() * 2 ** 32) >>> 0, tDelta = (Math.random() * 2 ** 32) >>> 0;
      const round = this.pairRound;
      entry.link.send(encodeControl({
        t: 'xchg', round,
        phi: { tid: tPhi, dtype: 'f32', elements: phi.length, bytes: pb.length },
        delta: { tid: tDelta, dtype: 'f32', elements: delta.length, bytes: db.length },
      }));
      this.o.onAnnounced?.(peer);
      if (this.o.withhold) return;
      const id = { runId: this.o.runId, configHash: this.o.frameConfigHash, sender: this.client.id };
      await sendTensor(entry.link, id, { kind: 'phi', dtype: 'f32', round, transferId: tPhi, elements: phi.length, bytes: pb }, { highWater: 1 << 20 });
      await sendTensor(entry.link, id, { kind: 'delta', dtype: 'f32', round, transferId: tDelta, elements: delta.length, bytes: db }, { highWater: 1 << 20 });
      this.sentTo.push(peer);
    } catch { /* the honest side may hang up */ } finally {
      this.sending.delete(peer);
    }
  }
}
