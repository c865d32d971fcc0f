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
});
