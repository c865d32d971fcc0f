// Seeded fuzz of every decoder that reads bytes or JSON from a party we do not trust. The cases
// it found are kept below, each named by what went wrong.
import { describe, expect, it } from 'vitest';
import { crc32 } from '../src/protocol/crc32.ts';
import { FieldError } from '../src/protocol/errors.ts';
import { decodeFrame, encodeChunk, encodeControl } from '../src/protocol/frame.ts';
import { DEFAULT_LIMITS, parseClientMessage, parseServerMessage } from '../src/protocol/messages.ts';
import { parseControl } from '../src/protocol/peer-messages.ts';

// ---------- what the fuzz found, kept as named cases ----------

describe('fuzz: the cases it found', () => {
  it('a type tag nested 32,000 arrays deep is refused by its kind, not with a RangeError', () => {
    // parseClientMessage, seed 0xc1e7: JSON.stringify of the tag, for the error, recursed through it.
    const deep = '['.repeat(32_000) + ']'.repeat(32_000);
    const raw = `{"t":${deep}}`;
    expect(raw.length).toBeLessThanOrEqual(DEFAULT_LIMITS.maxMessageBytes);
    expect(parseClientMessage(raw)).toMatchObject({ ok: false, code: 'bad-message', error: expect.stringMatching(/^unknown message type an array; expected one of hello,/) });
    expect(parseServerMessage(raw)).toMatchObject({ ok: false, error: expect.stringMatching(/^unknown message type an array; expected one of welcome,/) });
    expect(() => parseControl(JSON.parse(raw))).toThrow(/^unknown control message type an array$/);
    expect(parseClientMessage(`{"t":${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}}`)).toMatchObject({ ok: false, error: expect.stringMatching(/^unknown message type an object;/) });
  });

  it('a relayed signal nested deeper than the coordinator relays is refused by the client too', () => {
    // parseServerMessage, seed 0x5e7e: it took a signal 30,000 arrays deep, which no JSON.stringify could write again.
    const signal = (data: string) => `{"t":"signal","from":"p-fedcba9876543210","data":{"sig":${data}}}`;
    for (const depth of [DEFAULT_LIMITS.maxSignalDepth + 1, 30_000]) {
      expect(parseServerMessage(signal('['.repeat(depth) + ']'.repeat(depth)))).toEqual({ ok: false, error: `signal.data nests deeper than ${DEFAULT_LIMITS.maxSignalDepth}` });
    }
    const ok = signal('['.repeat(DEFAULT_LIMITS.maxSignalDepth) + ']'.repeat(DEFAULT_LIMITS.maxSignalDepth));
    expect(parseServerMessage(ok).ok).toBe(true);
    expect(parseClientMessage(ok.replace('"from"', '"to"')).ok).toBe(true);
  });

  it('a frame whose reserved bytes are not zero is refused: what decodes re-encodes to the same bytes', () => {
    // decodeFrame, seed 0xf00d: a chunk with byte 50 set to 32 and its header CRC made again was
    // accepted, and encodeChunk of what it decoded to gave other bytes.
    const payload = new Uint8Array([1, 2, 3, 4]);
    const chunk = encodeChunk({
      kind: 'delta', dtype: 'f32', transferId: 7, round: 3, elements: 1, totalBytes: 4, chunkSize: 1, chunkIndex: 1, chunkCount: 4,
      tensorCrc: 0x89d2984c, configHash: '0123456789abcdef', runId: 'default', sender: 'p-0123456789abcdef',
    }, payload.subarray(1, 2));
    expect(decodeFrame(chunk).type).toBe('chunk');
    const crcAt = chunk.length - 1 - 4;
    for (const at of [50, 51]) {
      const bad = chunk.slice();
      bad[at] = 32;
      new DataView(bad.buffer).setUint32(crcAt, crc32(bad.subarray(0, crcAt)), true);
      expect(() => decodeFrame(bad)).toThrow(FieldError);
      expect(() => decodeFrame(bad)).toThrow(/bytes 50\.\.51 are reserved and must be zero/);
    }
    for (const at of [6, 7]) {
      const bad = encodeControl({ t: 'bye' });
      bad[at] = 1;
      expect(() => decodeFrame(bad)).toThrow(/control frame bytes 6\.\.7 are reserved and must be zero/);
    }
  });
});
