// Chaos for mesh tests: wrap a peer's links so its outgoing frames can be dropped, duplicated,
// corrupted or observed, exactly as they would be by a faulty or hostile sender.
import { decodeFrame, type ChunkHeader } from '../../src/protocol/frame.ts';
import type { Link, LinkEvents, LinkFactory } from '../../src/sync/links.ts';

/** Decides what really goes on the wire for one outgoing frame. */
export type Tamper = (frame: Uint8Array, info: { remote: string; chunk: ChunkHeader | null }) => Uint8Array[];

export function chaosLinks(inner: LinkFactory, tamper: Tamper, onReceive?: (remote: string, bytes: Uint8Array) => void): LinkFactory {
  return (opts) => {
    const link = inner(opts);
    if (onReceive) link.on('data', (b) => onReceive(opts.remote, b));
    return new ChaosLink(link, tamper);
  };
}

class ChaosLink implements Link {
  constructor(private readonly inner: Link, private readonly tamper: Tamper) {}
  get remote() { return this.inner.remote; }
  get initiator() { return this.inner.initiator; }
  get open() { return this.inner.open; }
  get bufferedAmount() { return this.inner.bufferedAmount; }
  signal(d: unknown) { this.inner.signal(d); }
  whenBufferBelow(t: number, stopped?: () => boolean) { return this.inner.whenBufferBelow(t, stopped); }
  on<K extends keyof LinkEvents>(e: K, fn: (x: LinkEvents[K]) => void) { return this.inner.on(e, fn); }
  destroy(r?: string) { this.inner.destroy(r); }
  send(bytes: Uint8Array): void {
    let chunk: ChunkHeader | null = null;
    try {
      const f = decodeFrame(bytes);
      if (f.type === 'chunk') chunk = f.header;
    } catch { /* not ours to judge */ }
    for (const out of this.tamper(bytes, { remote: this.remote, chunk })) this.inner.send(out);
  }
}

/** Flip one payload byte of a chunk frame (the header CRC stays valid; the tensor CRC will not). */
export function corruptPayload(frame: Uint8Array): Uint8Array {
  const out = frame.slice();
  out[out.length - 7] ^= 0x5a;
  return out;
}
