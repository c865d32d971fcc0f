import { describe, expect, it } from 'vitest';
import { Rng } from '../src/model/rng.ts';
import {
  TokenStreamDecoder, Utf8Error, VOCAB, decode, decodeStrict, encode, findInvalidUtf8,
} from '../src/data/tokenizer.ts';

const fatal = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const isValid = (b: Uint8Array) => { try { fatal.decode(b); return true; } catch { return false; } };

/** A random code point from every UTF-8 length class, never a surrogate. */
function randomCodePoint(rng: Rng): number {
  const ranges: [number, number][] = [[0, 0x7f], [0x80, 0x7ff], [0x800, 0xd7ff], [0xe000, 0xffff], [0x10000, 0x10ffff]];
  const [lo, hi] = ranges[rng.int(ranges.length)];
  return lo + rng.int(hi - lo + 1);
}

describe('byte tokenizer', () => {
  it('has one token per byte', () => {
    expect(VOCAB).toBe(256);
    expect(Array.from(encode('Call me Ishmael.'))).toEqual(Array.from(Buffer.from('Call me Ishmael.')));
    expect(Array.from(encode('é'))).toEqual([0xc3, 0xa9]);
    expect(encode('🐋').length).toBe(4);
  });

  it('round-trips ASCII, multibyte text and emoji', () => {
    for (const s of ['', 'hello\nworld\t!', 'naïve café — “quoted”', '日本語のテキスト', 'whale 🐋 + family 👨‍👩‍👧 + flag 🇳🇴']) {
      expect(decode(encode(s))).toBe(s);
      expect(decodeStrict(encode(s), 'x')).toBe(s);
    }
  });

  it('round-trips random valid UTF-8', () => {
    const rng = new Rng(1234, 0);
    for (let k = 0; k < 200; k++) {
      const cps = Array.from({ length: rng.int(50) }, () => randomCodePoint(rng));
      const s = String.fromCodePoint(...cps);
      const bytes = encode(s);
      expect(findInvalidUtf8(bytes)).toBeNull();
      expect(decode(bytes)).toBe(s);
      // Tokens that come back from a model are numbers, not a Uint8Array.
      expect(decode(Array.from(bytes))).toBe(s);
    }
  });

  it('rejects tokens outside the vocabulary, naming the index', () => {
    expect(() => decode([104, 300, 105])).toThrow(/token 300 at index 1/);
    expect(() => decode([1.5])).toThrow(/not a byte/);
  });

  it('decodeStrict names the source and the byte offset of the bad sequence', () => {
    const bytes = new Uint8Array([...encode('ok\nline é\n'), 0xff, ...encode('tail')]);
    let err: unknown;
    try { decodeStrict(bytes, 'notes.txt'); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(Utf8Error);
    const u = err as Utf8Error;
    expect(u.source).toBe('notes.txt');
    expect(u.offset).toBe(11); // 'ok\n' (3 bytes) + 'line é\n' (8: é is 2 bytes)
    expect(u.line).toBe(3);
    expect(u.message).toMatch(/notes\.txt: invalid UTF-8 at byte 11 \(line 3\)/);
  });

  it('reports where each kind of bad sequence starts', () => {
    const cases: [number[], number, RegExp][] = [
      [[0x61, 0x80], 1, /unexpected continuation/],
      [[0x61, 0xc0, 0x80], 1, /never appears/], // overlong lead byte
      [[0xe0, 0x80, 0x80], 0, /bad byte 0x80/], // overlong 3-byte
      [[0x61, 0x62, 0xed, 0xa0, 0x80], 2, /bad byte 0xA0/], // UTF-16 surrogate
      [[0xf4, 0x90, 0x80, 0x80], 0, /bad byte 0x90/], // above U+10FFFF
      [[0x61, 0xe2, 0x82], 1, /cut off/],
      [[0xf5, 0x80, 0x80, 0x80], 0, /never appears/],
    ];
    for (const [b, offset, reason] of cases) {
      const bad = findInvalidUtf8(new Uint8Array(b));
      expect(bad, `bytes ${b}`).not.toBeNull();
      expect(bad!.offset).toBe(offset);
      expect(bad!.reason).toMatch(reason);
      expect(() => decodeStrict(new Uint8Array(b), 'f')).toThrow(new RegExp(`f: invalid UTF-8 at byte ${offset} `));
    }
  });

  it('agrees with TextDecoder on random bytes, and the prefix before the offset is valid', () => {
    const rng = new Rng(99, 1);
    let invalid = 0;
    for (let k = 0; k < 2000; k++) {
      // Mostly valid text with a few random bytes spliced in, so errors land mid-stream.
      const parts: number[] = [];
      for (let i = rng.int(12); i > 0; i--) {
        if (rng.uniform() < 0.15) parts.push(rng.int(256));
        else parts.push(...encode(String.fromCodePoint(randomCodePoint(rng))));
      }
      const bytes = new Uint8Array(parts);
      const bad = findInvalidUtf8(bytes);
      expect(bad === null).toBe(isValid(bytes));
      if (bad) {
        invalid++;
        expect(isValid(bytes.subarray(0, bad.offset))).toBe(true);
      }
    }
    expect(invalid).toBeGreaterThan(200);
  });

  it('streams generated tokens, holding back partial characters', () => {
    const d = new TokenStreamDecoder();
    const whale = Array.from(encode('a🐋b'));
    const out = whale.map((t) => d.push([t]));
    expect(out).toEqual(['a', '', '', '', '🐋', 'b']);
    expect(d.push([0xe2])).toBe('');
    expect(d.flush()).toBe('\ufffd');
  });
});
