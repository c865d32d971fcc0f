// Seeded fuzz of every decoder that reads bytes or JSON from a party we do not trust. The cases
// it found are kept below, each named by what went wrong.
import { describe, expect, it } from 'vitest';
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
});
