import { afterEach, describe, expect, it } from 'vitest';
import wrtc from '@roamhq/wrtc';
import { Assembler, sendTensor, type Expectation, type TransferIdentity } from '../src/sync/transfer.ts';
import { simplePeerLinks, type Link } from '../src/sync/links.ts';
import { decodeFrame, encodeChunk, MAX_FRAME_BYTES, type ChunkHeader } from '../src/protocol/frame.ts';
import { FrameError } from '../src/protocol/errors.ts';
import { encodeTensor, decodeTensor } from '../src/sync/compress.ts';
import { MemoryNet } from './support/memory-links.ts';
import { sameFloats } from './support/swarm.ts';

const id: TransferIdentity = { runId: 'run', configHash: 'aaaabbbbccccdddd', sender: 'A' };

function tensor(n: number): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = Math.sin(i * 0.37) * 0.01;
  return x;
}

/** Connect two links from a factory pair by relaying their signals directly. */
async function pair(make: (local: string) => (o: { remote: string; initiator: boolean }) => Link): Promise<[Link, Link]> {
  const a = make('A')({ remote: 'B', initiator: true });
  const b = make('B')({ remote: 'A', initiator: false });
  a.on('signal', (s) => b.signal(s));
  b.on('signal', (s) => a.signal(s));
  await Promise.all([new Promise((r) => a.on('connect', r)), new Promise((r) => b.on('connect', r))]);
  return [a, b];
}

function expectation(n: number, over: Partial<Expectation> = {}): Expectation {
  return { runId: 'run', configHash: 'aaaabbbbccccdddd', sender: 'A', kind: 'delta', transferId: 5, dtype: 'f32', elements: n, ...over };
}

/** Receive everything b gets into an assembler; optionally transform frames first. */
function receiveInto(b: Link, asm: Assembler, tamper: (f: Uint8Array, i: number) => Uint8Array[] = (f) => [f]): void {
  let i = 0;
  b.on('data', (bytes) => {
    for (const f of tamper(bytes, i++)) {
      try {
        const frame = decodeFrame(f);
        if (frame.type === 'chunk') asm.add(frame.header, frame.payload);
      } catch (err) {
        asm.fail(err);
      }
    }
  });
}

const open: Link[] = [];
afterEach(() => { for (const l of open.splice(0)) { l.destroy(); l.destroy(); } });

describe('sendTensor + Assembler over WebRTC (wrtc)', () => {
  it('moves a 1 MB tensor in <= 64 KiB frames, bit-exact, never queueing past the high-water mark', async () => {
    const [a, b] = await pair((local) => simplePeerLinks({ rtc: wrtc }));
    open.push(a, b);
    const n = 262_144; // 1 MiB of f32
    const x = tensor(n);
    const asm = new Assembler(expectation(n));
    let maxFrame = 0;
    b.on('data', (d) => { maxFrame = Math.max(maxFrame, d.length); });
    receiveInto(b, asm);
    // Watch the queue right after each send.
    let peak = 0;
    const send = a.send.bind(a);
    (a as { send: (x: Uint8Array) => void }).send = (f) => { send(f); peak = Math.max(peak, a.bufferedAmount); };
    const highWater = 256 * 1024;
    const res = await sendTensor(a, id, { kind: 'delta', dtype: 'f32', round: 3, transferId: 5, elements: n, bytes: encodeTensor('f32', x) }, { highWater });
    const got = decodeTensor('f32', await asm.done, n);
    expect(sameFloats(got, x)).toBe('same');
    expect(res.frames).toBe(Math.ceil((4 * n) / (MAX_FRAME_BYTES - (52 + 3 + 1 + 4))));
    expect(maxFrame).toBeLessThanOrEqual(MAX_FRAME_BYTES);
    expect(peak).toBeLessThanOrEqual(highWater + MAX_FRAME_BYTES);
    expect(asm.duplicates).toBe(0);
  });

  it('fails the sender with LinkClosedError when the channel closes mid-transfer', async () => {
    const [a, b] = await pair(() => simplePeerLinks({ rtc: wrtc }));
    open.push(a, b);
    const n = 1_000_000;
    // A receiver that stops reading after 3 frames: the sender sees a full channel from then on
    // and must wait. (On loopback SCTP otherwise swallows all 4 MB before the receiver's close
    // can reach the sender, and the send would "succeed".)
    let sent = 0;
    const stalled = new Proxy(a, {
      get(t, k) {
        if (k === 'send') return (f: Uint8Array) => { sent++; t.send(f); };
        if (k === 'bufferedAmount') return sent >= 3 && t.open ? Number.MAX_SAFE_INTEGER : t.bufferedAmount;
        if (k === 'whenBufferBelow') {
          return (x: number) => sent >= 3
            ? new Promise<void>((resolve) => { if (!t.open) resolve(); else t.on('close', () => resolve()); })
            : t.whenBufferBelow(x);
        }
        const v = Reflect.get(t, k) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
      },
    });
    let frames = 0;
    b.on('data', () => { if (++frames === 3) b.destroy(); });
    const p = sendTensor(stalled, id, { kind: 'phi', dtype: 'f32', round: 1, transferId: 9, elements: n, bytes: encodeTensor('f32', tensor(n)) }, { highWater: 128 * 1024 });
    await expect(p).rejects.toMatchObject({ code: 'ERR_LINK_CLOSED' });
  });
});

describe('Assembler refuses anything but the announced, intact tensor', () => {
  const n = 50_000; // 4 chunks
  async function run(tamper: (f: Uint8Array, i: number) => Uint8Array[], exp: Partial<Expectation> = {}, sendId = id): Promise<Assembler> {
    const net = new MemoryNet();
    const [a, b] = await pair((local) => net.links(local));
    const asm = new Assembler(expectation(n, exp));
    receiveInto(b, asm, tamper);
    await sendTensor(a, sendId, { kind: 'delta', dtype: 'f32', round: 2, transferId: 5, elements: n, bytes: encodeTensor('f32', tensor(n)) }, { highWater: 1 << 20 });
    await new Promise((r) => setTimeout(r, 20));
    return asm;
  }
  const code = async (asm: Assembler) => {
    try { await asm.done; return 'ok'; } catch (e) { expect(e).toBeInstanceOf(FrameError); return (e as FrameError).code; }
  };
  const rewrite = (f: Uint8Array, change: (h: ChunkHeader) => void) => {
    const fr = decodeFrame(f);
    if (fr.type !== 'chunk') return f;
    change(fr.header);
    return encodeChunk(fr.header, fr.payload);
  };

  it('accepts a duplicated chunk once and still verifies', async () => {
    const asm = await run((f, i) => (i === 1 ? [f, f] : [f]));
    expect(await code(asm)).toBe('ok');
    expect(asm.duplicates).toBe(1);
  });
  it('a dropped chunk: ERR_FRAME_MISSING_CHUNK as soon as the next one arrives', async () => {
    expect(await code(await run((f, i) => (i === 1 ? [] : [f])))).toBe('ERR_FRAME_MISSING_CHUNK');
  });
  it('a flipped payload bit: ERR_FRAME_CHECKSUM on the whole tensor', async () => {
    expect(await code(await run((f, i) => { if (i === 2) { f = f.slice(); f[f.length - 100] ^= 4; } return [f]; }))).toBe('ERR_FRAME_CHECKSUM');
  });
  it('a flipped header bit: ERR_FRAME_HEADER_CRC', async () => {
    expect(await code(await run((f, i) => { if (i === 0) { f = f.slice(); f[30] ^= 1; } return [f]; }))).toBe('ERR_FRAME_HEADER_CRC');
  });
  it('another run, another config, a spoofed sender, another size', async () => {
    expect(await code(await run((f) => [f], {}, { ...id, runId: 'other' }))).toBe('ERR_FRAME_RUN');
    expect(await code(await run((f) => [f], {}, { ...id, configHash: '0000000000000000' }))).toBe('ERR_FRAME_CONFIG');
    expect(await code(await run((f) => [f], {}, { ...id, sender: 'M' }))).toBe('ERR_FRAME_SENDER');
    expect(await code(await run((f) => [f], { elements: n + 1 }))).toBe('ERR_FRAME_SIZE');
    expect(await code(await run((f) => [f], { dtype: 'f16' }))).toBe('ERR_FRAME_INCONSISTENT');
  });
  it('a chunk whose fixed fields changed mid-transfer (re-encoded with a valid header CRC)', async () => {
    expect(await code(await run((f, i) => [i === 2 ? rewrite(f, (h) => { h.tensorCrc = (h.tensorCrc ^ 1) >>> 0; }) : f]))).toBe('ERR_FRAME_INCONSISTENT');
    expect(await code(await run((f, i) => [i === 2 ? rewrite(f, (h) => { h.round += 1; }) : f]))).toBe('ERR_FRAME_INCONSISTENT');
  });
});
