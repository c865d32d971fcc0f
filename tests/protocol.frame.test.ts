import { describe, expect, it } from 'vitest';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { crc32 } from '../src/protocol/crc32.ts';
import { canonicalJson, configHash } from '../src/protocol/hash.ts';
import {
  MAX_FRAME_BYTES, Q8_BLOCK, chunkHeaderBytes, decodeFrame, encodeChunk, encodeControl, maxChunkSize, payloadBytes,
  type ChunkHeader,
} from '../src/protocol/frame.ts';
import { FrameError } from '../src/protocol/errors.ts';
import { parseControl } from '../src/protocol/peer-messages.ts';

function randomBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; out[i] = x & 0xff; }
  return out;
}

function header(over: Partial<ChunkHeader> = {}): ChunkHeader {
  const elements = 1000;
  return {
    kind: 'delta', dtype: 'f32', transferId: 7, round: 3, elements, totalBytes: 4 * elements,
    chunkSize: 1500, chunkIndex: 1, chunkCount: 3, tensorCrc: 0xdeadbeef,
    configHash: '0123456789abcdef', runId: 'run-1', sender: 'peer-a', ...over,
  };
}

function codeOf(fn: () => unknown): string {
  try { fn(); } catch (e) { expect(e).toBeInstanceOf(FrameError); return (e as FrameError).code; }
  throw new Error('expected a FrameError');
}

describe('crc32', () => {
  it('matches the IEEE check value and zlib on every length 0..70 and 1 MB', () => {
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
    for (let n = 0; n <= 70; n++) {
      const b = randomBytes(n, n + 1);
      expect(crc32(b)).toBe(zlibCrc32(b));
    }
    const big = randomBytes(1 << 20, 99);
    expect(crc32(big)).toBe(zlibCrc32(big));
  });

  it('continues across pieces like one pass', () => {
    const b = randomBytes(1000, 5);
    expect(crc32(b.subarray(333), crc32(b.subarray(0, 333)))).toBe(crc32(b));
  });
});

describe('configHash', () => {
  it('is FNV-1a 64 of the canonical JSON, independent of key order', () => {
    const ref = (s: string) => {
      let h = 0xcbf29ce484222325n;
      for (const c of new TextEncoder().encode(s)) { h ^= BigInt(c); h = (h * 0x100000001b3n) & 0xffffffffffffffffn; }
      return h.toString(16).padStart(16, '0');
    };
    const cfg = { model: { d: 32, heads: 2 }, H: 50, name: 'micro ✓' };
    expect(configHash(cfg)).toBe(ref(canonicalJson(cfg)));
    expect(configHash({ H: 50, name: 'micro ✓', model: { heads: 2, d: 32 } })).toBe(configHash(cfg));
    expect(configHash({ ...cfg, H: 51 })).not.toBe(configHash(cfg));
    expect(configHash('')).toBe(ref('""')); // a string hashes as its JSON form
  });
});

describe('tensor chunk frames', () => {
  it('round-trips every field and the payload', () => {
    const h = header();
    const payload = randomBytes(1500, 3);
    const f = decodeFrame(encodeChunk(h, payload));
    expect(f.type).toBe('chunk');
    if (f.type !== 'chunk') return;
    expect(f.header).toEqual(h);
    expect([...f.payload]).toEqual([...payload]);
  });

  it('sizes the last chunk to the remainder and keeps every frame within 64 KiB', () => {
    const cs = maxChunkSize('run-1', 'peer-a');
    expect(cs + chunkHeaderBytes('run-1', 'peer-a')).toBe(MAX_FRAME_BYTES);
    const elements = 40_000;
    const total = 4 * elements;
    const count = Math.ceil(total / cs);
    const last = total - (count - 1) * cs;
    const frame = encodeChunk(header({ elements, totalBytes: total, chunkSize: cs, chunkCount: count, chunkIndex: count - 1 }), new Uint8Array(last));
    expect(frame.length).toBeLessThanOrEqual(MAX_FRAME_BYTES);
    const full = encodeChunk(header({ elements, totalBytes: total, chunkSize: cs, chunkCount: count, chunkIndex: 0 }), new Uint8Array(cs));
    expect(full.length).toBe(MAX_FRAME_BYTES);
    expect(codeOf(() => encodeChunk(header({ elements, totalBytes: total, chunkSize: cs + 1, chunkCount: Math.ceil(total / (cs + 1)), chunkIndex: 0 }), new Uint8Array(cs + 1)))).toBe('ERR_FRAME_TOO_LARGE');
  });

  it('knows each dtype size', () => {
    expect(payloadBytes('f32', 10)).toBe(40);
    expect(payloadBytes('f16', 10)).toBe(20);
    expect(payloadBytes('q8', Q8_BLOCK + 1)).toBe(8 + Q8_BLOCK + 1);
  });

  it('rejects every corruption with a named error', () => {
    const good = encodeChunk(header(), randomBytes(1500, 4));
    const flip = (at: number) => { const b = good.slice(); b[at] ^= 0x10; return b; };
    expect(codeOf(() => decodeFrame(good.subarray(0, 10)))).toBe('ERR_FRAME_TRUNCATED');
    expect(codeOf(() => decodeFrame(good.subarray(0, 60)))).toBe('ERR_FRAME_TRUNCATED');
    expect(codeOf(() => decodeFrame(flip(0)))).toBe('ERR_FRAME_MAGIC');
    expect(codeOf(() => decodeFrame(flip(4)))).toBe('ERR_FRAME_VERSION');
    expect(codeOf(() => { const b = good.slice(); b[5] = 9; return decodeFrame(b); })).toBe('ERR_FRAME_TYPE');
    // Any flipped header byte after the prefix is caught by the header checksum.
    for (const at of [6, 7, 9, 13, 17, 21, 25, 29, 33, 37, 41, 45, 53]) {
      expect(codeOf(() => decodeFrame(flip(at)))).toBe('ERR_FRAME_HEADER_CRC');
    }
    // A payload truncated by a byte: the header is intact, the length is wrong.
    expect(codeOf(() => decodeFrame(good.subarray(0, good.length - 1)))).toBe('ERR_FRAME_SIZE');
    expect(codeOf(() => decodeFrame(new Uint8Array(MAX_FRAME_BYTES + 1)))).toBe('ERR_FRAME_TOO_LARGE');
  });

  it('refuses to encode inconsistent headers', () => {
    expect(codeOf(() => encodeChunk(header({ totalBytes: 3999 }), new Uint8Array(1500)))).toBe('ERR_FRAME_SIZE');
    expect(codeOf(() => encodeChunk(header({ chunkCount: 4 }), new Uint8Array(1500)))).toBe('ERR_FRAME_FIELD');
    expect(codeOf(() => encodeChunk(header({ chunkIndex: 3 }), new Uint8Array(1500)))).toBe('ERR_FRAME_FIELD');
    expect(codeOf(() => encodeChunk(header({ configHash: 'xyz' }), new Uint8Array(1500)))).toBe('ERR_FRAME_FIELD');
    expect(codeOf(() => encodeChunk(header({ round: -1 }), new Uint8Array(1500)))).toBe('ERR_FRAME_FIELD');
    expect(codeOf(() => encodeChunk(header(), new Uint8Array(1499)))).toBe('ERR_FRAME_SIZE');
    expect(codeOf(() => encodeChunk(header({ sender: 'x'.repeat(256) }), new Uint8Array(1500)))).toBe('ERR_FRAME_FIELD');
  });
});

describe('control messages', () => {
  it('round-trips and validates each type', () => {
    const msgs = [
      { t: 'hello', peer: 'a', runId: 'r', configHash: '0123456789abcdef', elements: 10 },
      { t: 'pair-req', round: 4, nonce: 99 },
      { t: 'pair-ack', nonce: 99, ok: false, reason: 'busy' },
      { t: 'pair-ack', nonce: 99, ok: true, round: 12 },
      { t: 'xchg', round: 4, phi: { tid: 1, dtype: 'f16', elements: 10, bytes: 20 }, delta: { tid: 2, dtype: 'q8', elements: 10, bytes: 14 } },
      { t: 'abort', round: 4, reason: 'deadline' },
      { t: 'abort', round: 4, reason: 'deadline', yourRound: 7 },
      { t: 'bye' },
      { t: 'state-req', nonce: 1 },
      { t: 'state-offer', nonce: 1, ok: true, tensor: { tid: 3, dtype: 'f32', elements: 20, bytes: 80 }, outerRound: 5, innerStep: 250 },
      { t: 'state-offer', nonce: 1, ok: false, reason: 'no state yet' },
    ];
    for (const m of msgs) {
      const f = decodeFrame(encodeControl(m));
      expect(f.type).toBe('control');
      if (f.type === 'control') expect(parseControl(f.message)).toEqual(m);
    }
  });

  it('rejects malformed messages naming the field', () => {
    const bad: [unknown, RegExp][] = [
      [null, /object/],
      [{ t: 'nope' }, /unknown control message/],
      [{ t: 'pair-req', round: -1, nonce: 1 }, /pair-req.round/],
      [{ t: 'pair-req', round: 1.5, nonce: 1 }, /pair-req.round/],
      // A yes names the responder's round: its partner tells this pairing's messages by it.
      [{ t: 'pair-ack', nonce: 1, ok: true }, /pair-ack.round is required/],
      [{ t: 'pair-ack', nonce: 1, ok: true, round: 2 ** 32 }, /pair-ack.round/],
      [{ t: 'pair-ack', nonce: 1, ok: true, round: 3, reason: 'yes' }, /pair-ack.reason is not an allowed field/],
      [{ t: 'pair-ack', nonce: 1, ok: false, round: 3 }, /pair-ack.round is not an allowed field/],
      [{ t: 'hello', peer: 'a', runId: 'r', configHash: 'ABC', elements: 1 }, /hello.configHash/],
      [{ t: 'xchg', round: 1, phi: { tid: 1, dtype: 'f64', elements: 1, bytes: 8 }, delta: {} }, /xchg.phi.dtype/],
      [{ t: 'xchg', round: 1, phi: { tid: 1, dtype: 'f32', elements: 10, bytes: 41 }, delta: { tid: 2, dtype: 'f32', elements: 1, bytes: 4 } }, /xchg\.phi: 10 f32 elements take 40 bytes, not 41/],
      [{ t: 'state-offer', nonce: 1, ok: true, tensor: { tid: 3, dtype: 'q8', elements: 200, bytes: 200 }, outerRound: 1, innerStep: 1 }, /state-offer\.tensor: 200 q8 elements take 208 bytes/],
      [{ t: 'bye', extra: 1 }, /bye\.extra is not an allowed field/],
      [{ t: 'abort', round: 1, reason: 'x'.repeat(500) }, /abort.reason/],
      [{ t: 'abort', round: 1, reason: 'deadline', yourRound: -1 }, /abort.yourRound/],
      [{ t: 'abort', round: 1, reason: 'deadline', yourRound: '3' }, /abort.yourRound/],
    ];
    for (const [m, re] of bad) expect(() => parseControl(m)).toThrow(re);
  });

  it('catches corrupt or oversized control frames', () => {
    const f = encodeControl({ t: 'bye' });
    const b = f.slice(); b[b.length - 2] ^= 1;
    expect(codeOf(() => decodeFrame(b))).toBe('ERR_FRAME_HEADER_CRC');
    expect(codeOf(() => encodeControl({ t: 'abort', round: 1, reason: 'x'.repeat(5000) }))).toBe('ERR_FRAME_TOO_LARGE');
  });
});
