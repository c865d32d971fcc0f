// In-memory links for fast mesh tests: same Link interface and the same signaling dance as
// simple-peer (the initiator's offer and the answer travel through the signaling hub), but the
// "data channel" is a FIFO of macrotasks in this process.
import { Emitter } from '../../src/sync/emitter.ts';
import { LinkClosedError } from '../../src/sync/errors.ts';
import type { Link, LinkEvents, LinkFactory } from '../../src/sync/links.ts';

export class MemoryNet {
  private offers = new Map<string, MemoryLink>();
  private seq = 0;
  /** Every link made, for assertions. */
  readonly all: MemoryLink[] = [];

  /** A factory for links of peer `local`. */
  links(local: string): LinkFactory {
    return ({ remote, initiator }) => {
      const link = new MemoryLink(this, local, remote, initiator);
      this.all.push(link);
      if (initiator) {
        const token = `${local}>${remote}#${++this.seq}`;
        this.offers.set(token, link);
        setTimeout(() => link.emitSignal({ type: 'offer', token }), 0);
      }
      return link;
    };
  }

  /** Bytes sent on any link and not yet delivered: 0 once every message sent so far has landed. */
  get inFlight(): number {
    return this.all.reduce((n, link) => n + link.bufferedAmount, 0);
  }

  /** A non-initiator got an offer: pair it with the initiator that made the token. */
  answer(link: MemoryLink, token: string): void {
    const other = this.offers.get(token);
    if (!other || other.remote !== link.local || other.local !== link.remote) return;
    this.offers.delete(token);
    link.peer = other;
    other.peer = link;
    link.emitSignal({ type: 'answer', token });
  }
}

export class MemoryLink implements Link {
  peer: MemoryLink | null = null;
  bufferedAmount = 0;
  sent = 0;
  private events = new Emitter<LinkEvents>();
  private isOpen = false;
  private closed = false;

  constructor(private net: MemoryNet, readonly local: string, readonly remote: string, readonly initiator: boolean) {}

  get open(): boolean {
    return this.isOpen && !this.closed;
  }

  emitSignal(data: unknown): void {
    if (!this.closed) this.events.emit('signal', data);
  }

  signal(data: unknown): void {
    if (this.closed) return;
    const d = data as { type?: string; token?: string };
    if (d.type === 'offer' && !this.initiator && d.token) this.net.answer(this, d.token);
    else if (d.type === 'answer' && this.initiator && this.peer) {
      const peer = this.peer;
      setTimeout(() => { this.markOpen(); peer.markOpen(); }, 0);
    }
  }

  markOpen(): void {
    if (this.closed || this.isOpen) return;
    this.isOpen = true;
    this.events.emit('connect', undefined);
  }

  send(bytes: Uint8Array): void {
    if (!this.open || !this.peer) throw new LinkClosedError(this.remote);
    const copy = bytes.slice();
    const peer = this.peer;
    this.bufferedAmount += copy.length;
    this.sent++;
    setTimeout(() => {
      this.bufferedAmount -= copy.length;
      if (!peer.closed && !this.closed) peer.events.emit('data', copy);
    }, 0);
  }

  whenBufferBelow(threshold: number, stopped?: () => boolean): Promise<void> {
    return new Promise((resolve) => {
      const check = () => (!this.open || this.bufferedAmount <= threshold || stopped?.() ? resolve() : setTimeout(check, 1));
      check();
    });
  }

  on<K extends keyof LinkEvents>(event: K, fn: (e: LinkEvents[K]) => void): () => void {
    return this.events.on(event, fn);
  }

  destroy(reason = 'destroyed locally'): void {
    if (this.closed) return;
    this.closed = true;
    this.events.emit('close', { reason });
    this.events.clear();
    const peer = this.peer;
    if (peer) setTimeout(() => peer.destroy('closed by remote'), 0);
  }
}
