// Moving one tensor over one link: the sender cuts it into <= 64 KiB frames and never lets the
// data channel queue more than `highWater` bytes (a fast producer would otherwise buffer a whole
// model in the browser); the receiver assembles the chunks in order and hands out bytes only
// after the whole-tensor checksum matched. Nothing here knows what the tensor means.
import type { Clock } from '../protocol/clock.ts';
import { crc32 } from '../protocol/crc32.ts';
import {
  ConfigMismatchError, InconsistentChunkError, MissingChunkError, RunMismatchError, SenderMismatchError, SizeError,
  ChecksumError,
} from '../protocol/errors.ts';
import { encodeChunk, maxChunkSize, payloadBytes, type ChunkHeader, type Dtype, type TensorKind } from '../protocol/frame.ts';
import { LinkClosedError, TransferAbortedError } from './errors.ts';
import type { Link } from './links.ts';

/** Who sends, in which run: written into every chunk and checked by the receiver. */
export interface TransferIdentity {
  runId: string;
  configHash: string;
  sender: string;
}

export interface OutgoingTensor {
  kind: TensorKind;
  dtype: Dtype;
  round: number;
  transferId: number;
  elements: number;
  /** Encoded payload (see compress.ts), payloadBytes(dtype, elements) long. */
  bytes: Uint8Array;
}

/**
 * Stops a send: checked before every chunk, and abort() also ends at once a send that waits for
 * the channel to drain (a receiver that does not read would otherwise keep it waiting for good).
 */
export class SendAbort {
  aborted = false;
  reason = '';
  private readonly wakers = new Set<() => void>();

  abort(reason: string): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    for (const fn of [...this.wakers]) fn();
    this.wakers.clear();
  }

  /** Call `fn` at abort (at once if aborted already); returns the unsubscribe. */
  onAbort(fn: () => void): () => void {
    if (this.aborted) { fn(); return () => {}; }
    this.wakers.add(fn);
    return () => { this.wakers.delete(fn); };
  }
}

export interface SendOptions {
  /** Chunk payload size; at most what keeps a frame within 64 KiB. */
  chunkSize?: number;
  /** Wait while the channel holds more than this many bytes. */
  highWater: number;
  /** Checked before every chunk and raced against every wait for the channel: abort() stops the transfer. */
  abort?: SendAbort;
  /**
   * The send ends by `at` (on `clock`) or not at all: past it the wait is cut short and the link
   * destroyed (what it queued cannot be taken back otherwise), and the send fails.
   */
  deadline?: { clock: Clock; at: number };
}

export interface SendResult {
  frames: number;
  /** Bytes handed to the data channel, headers included. */
  wireBytes: number;
}

export async function sendTensor(link: Link, id: TransferIdentity, t: OutgoingTensor, opts: SendOptions): Promise<SendResult> {
  if (t.bytes.length !== payloadBytes(t.dtype, t.elements)) {
    throw new SizeError(`sendTensor: ${t.elements} ${t.dtype} elements need ${payloadBytes(t.dtype, t.elements)} bytes, got ${t.bytes.length}`);
  }
  const limit = maxChunkSize(id.runId, id.sender);
  const chunkSize = Math.min(limit, opts.chunkSize ?? limit);
  const chunkCount = Math.max(1, Math.ceil(t.bytes.length / chunkSize));
  const tensorCrc = crc32(t.bytes);
  const lowWater = Math.floor(opts.highWater / 2);
  const stop = new SendGuard(link, opts);
  let wireBytes = 0;
  try {
    for (let i = 0; i < chunkCount; i++) {
      stop.check();
      if (link.bufferedAmount > opts.highWater) await stop.wait(link.whenBufferBelow(lowWater, stop.stopped));
      stop.check();
      if (!link.open) throw new LinkClosedError(link.remote);
      const header: ChunkHeader = {
        kind: t.kind, dtype: t.dtype, transferId: t.transferId, round: t.round, elements: t.elements,
        totalBytes: t.bytes.length, chunkSize, chunkIndex: i, chunkCount, tensorCrc,
        configHash: id.configHash, runId: id.runId, sender: id.sender,
      };
      const frame = encodeChunk(header, t.bytes.subarray(i * chunkSize, Math.min(t.bytes.length, (i + 1) * chunkSize)));
      link.send(frame);
      wireBytes += frame.length;
    }
  } finally {
    stop.release();
  }
  return { frames: chunkCount, wireBytes };
}

/** One send's abort and deadline: what ends its waits for the channel, and the timer behind it. */
class SendGuard {
  private expired = false;
  private timer: unknown = null;
  private wake: (() => void) | null = null;
  private readonly offAbort: () => void;

  constructor(private readonly link: Link, private readonly opts: SendOptions) {
    this.offAbort = opts.abort?.onAbort(() => this.wake?.()) ?? (() => {});
    const d = opts.deadline;
    if (d) this.timer = d.clock.setTimeout(() => { this.timer = null; this.expire(); }, Math.max(0, d.at - d.clock.now()));
  }

  /** Whether the send must stop (aborted or expired): what ends the link's wait for the channel too. */
  readonly stopped = (): boolean => this.opts.abort?.aborted === true || this.expired;

  /** Throws if the send must stop. */
  check(): void {
    const { abort, deadline } = this.opts;
    if (abort?.aborted) throw new TransferAbortedError(abort.reason || 'stopped by sender');
    if (deadline && !this.expired && deadline.clock.now() >= deadline.at) this.expire();
    if (this.expired) throw new TransferAbortedError('not sent within its deadline');
  }

  /** Wait for `drained`, or for an abort or the deadline, whichever comes first. */
  wait(drained: Promise<void>): Promise<void> {
    return new Promise<void>((resolve) => {
      this.wake = resolve;
      drained.then(resolve, resolve);
      // Aborted or expired before the wait began: do not wait at all.
      if (this.opts.abort?.aborted || this.expired) resolve();
    }).finally(() => { this.wake = null; });
  }

  release(): void {
    this.offAbort();
    if (this.timer !== null) this.opts.deadline!.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  private expire(): void {
    if (this.expired) return;
    this.expired = true;
    this.link.destroy('send deadline passed');
    this.wake?.();
  }
}

/** What the receiver was promised (by the sender's announcement) before any chunk arrives. */
export interface Expectation {
  runId: string;
  configHash: string;
  /** The link's remote peer: chunks claiming another sender are refused. */
  sender: string;
  kind: TensorKind;
  transferId: number;
  dtype: Dtype;
  elements: number;
}

/**
 * Collects one tensor's chunks. `done` resolves with the verified payload, or rejects with the
 * first FrameError (or the error passed to fail()); after that every further chunk is ignored.
 */
export class Assembler {
  readonly done: Promise<Uint8Array>;
  duplicates = 0;
  receivedBytes = 0;
  private buffer: Uint8Array | null = null;
  private first: ChunkHeader | null = null;
  private next = 0;
  private settled = false;
  private resolve!: (b: Uint8Array) => void;
  private reject!: (e: unknown) => void;

  constructor(readonly expect: Expectation) {
    this.done = new Promise<Uint8Array>((res, rej) => { this.resolve = res; this.reject = rej; });
    this.done.catch(() => {}); // a failed transfer is handled by whoever awaits it, if anyone
  }

  get finished(): boolean {
    return this.settled;
  }

  /** Feed one decoded chunk. Never throws: errors reject `done`. */
  add(h: ChunkHeader, payload: Uint8Array): void {
    if (this.settled) return;
    try {
      this.accept(h, payload);
    } catch (err) {
      this.fail(err);
    }
  }

  fail(err: unknown): void {
    if (this.settled) return;
    this.settled = true;
    this.buffer = null;
    this.reject(err);
  }

  private accept(h: ChunkHeader, payload: Uint8Array): void {
    const e = this.expect;
    if (h.runId !== e.runId) throw new RunMismatchError(h.runId, e.runId);
    if (h.configHash !== e.configHash) throw new ConfigMismatchError(h.configHash, e.configHash);
    if (h.sender !== e.sender) throw new SenderMismatchError(h.sender, e.sender);
    if (h.kind !== e.kind || h.dtype !== e.dtype) {
      throw new InconsistentChunkError(`chunk is ${h.kind}/${h.dtype}, the announcement said ${e.kind}/${e.dtype}`);
    }
    if (h.elements !== e.elements) throw new SizeError(`chunk says ${h.elements} elements, expected ${e.elements}`);
    if (!this.first) {
      this.first = h;
      // Allocation is bounded by our own expected size, never by what a peer claims.
      this.buffer = new Uint8Array(payloadBytes(e.dtype, e.elements));
    } else {
      const f = this.first;
      for (const k of ['round', 'totalBytes', 'chunkSize', 'chunkCount', 'tensorCrc'] as const) {
        if (h[k] !== f[k]) throw new InconsistentChunkError(`chunk ${h.chunkIndex} has ${k}=${h[k]}, chunk ${f.chunkIndex} had ${f[k]}`);
      }
    }
    if (h.chunkIndex < this.next) { this.duplicates++; return; } // a repeat of a chunk we hold
    if (h.chunkIndex > this.next) {
      throw new MissingChunkError(`chunk ${h.chunkIndex} of ${h.chunkCount} arrived but chunk ${this.next} never did`);
    }
    this.buffer!.set(payload, h.chunkIndex * h.chunkSize);
    this.receivedBytes += payload.length;
    this.next++;
    if (this.next === h.chunkCount) {
      const got = crc32(this.buffer!);
      if (got !== h.tensorCrc) throw new ChecksumError(got, h.tensorCrc);
      this.settled = true;
      const b = this.buffer!;
      this.buffer = null;
      this.resolve(b);
    }
  }
}
