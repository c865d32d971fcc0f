// Byte-level tokenizer: a token is one UTF-8 byte (vocab 256). No merge tables or vocab files
// to ship or version, any UTF-8 text works, and the token stream is the file's bytes, so a
// prepared dataset can be checked with a plain sha256 of the text.

export const VOCAB = 256;

const encoder = new TextEncoder();
// Lenient: model samples can be any byte sequence; bad bytes become U+FFFD instead of throwing.
const lenient = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
// Strict: input text must be valid UTF-8 so that decode(encode(text)) gives it back exactly.
const strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Text -> (N,) byte tokens. */
export function encode(text: string): Uint8Array {
  return encoder.encode(text);
}

/** (N,) tokens -> text. Lossless for tokens that came from `encode`; invalid bytes show as U+FFFD. */
export function decode(tokens: ArrayLike<number>): string {
  return lenient.decode(toBytes(tokens));
}

/** Invalid UTF-8 in a named source, with the byte offset where the bad sequence starts. */
export class Utf8Error extends Error {
  constructor(
    readonly source: string,
    readonly offset: number,
    readonly line: number,
    readonly reason: string,
  ) {
    super(
      `${source}: invalid UTF-8 at byte ${offset} (line ${line}): ${reason}. ` +
        'Murmur reads text as UTF-8; convert the file first (for example `iconv -f latin1 -t utf-8`).',
    );
    this.name = 'Utf8Error';
  }
}

/** Bytes -> text, throwing a Utf8Error naming `source` and the offset of the first bad byte. */
export function decodeStrict(bytes: Uint8Array, source: string): string {
  try {
    return strict.decode(bytes);
  } catch (cause) {
    // TextDecoder says only that the input is bad; our scan says where and why.
    const bad = findInvalidUtf8(bytes);
    if (bad === null) throw cause; // the two disagree: surface the decoder's own error
    throw new Utf8Error(source, bad.offset, lineAt(bytes, bad.offset), bad.reason);
  }
}

/**
 * First ill-formed sequence per RFC 3629 (the same rules TextDecoder's fatal mode applies:
 * no overlongs, no surrogates, nothing above U+10FFFF), or null when all of `bytes` is valid.
 */
export function findInvalidUtf8(bytes: Uint8Array): { offset: number; reason: string } | null {
  const n = bytes.length;
  let i = 0;
  while (i < n) {
    const b = bytes[i];
    if (b < 0x80) { i++; continue; }
    let len: number, lo = 0x80, hi = 0xbf; // allowed range of the second byte
    if (b >= 0xc2 && b <= 0xdf) len = 2;
    else if (b >= 0xe0 && b <= 0xef) {
      len = 3;
      if (b === 0xe0) lo = 0xa0; // below is an overlong encoding
      if (b === 0xed) hi = 0x9f; // above is a UTF-16 surrogate
    } else if (b >= 0xf0 && b <= 0xf4) {
      len = 4;
      if (b === 0xf0) lo = 0x90; // overlong
      if (b === 0xf4) hi = 0x8f; // above U+10FFFF
    } else if (b >= 0x80 && b <= 0xbf) {
      return { offset: i, reason: `unexpected continuation byte ${hex(b)}` };
    } else {
      return { offset: i, reason: `byte ${hex(b)} never appears in UTF-8` };
    }
    for (let k = 1; k < len; k++) {
      if (i + k >= n) return { offset: i, reason: `sequence starting ${hex(b)} is cut off by the end of the input` };
      const c = bytes[i + k];
      const min = k === 1 ? lo : 0x80, max = k === 1 ? hi : 0xbf;
      if (c < min || c > max) {
        return { offset: i, reason: `sequence starting ${hex(b)} has bad byte ${hex(c)} at position ${k + 1}` };
      }
    }
    i += len;
  }
  return null;
}

/**
 * Incremental decoder for generated tokens: a multibyte character arrives as several tokens,
 * so text is released only once its character is complete.
 */
export class TokenStreamDecoder {
  private readonly dec = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

  /** Feeds tokens; returns the text they complete (possibly ''). */
  push(tokens: ArrayLike<number>): string {
    return this.dec.decode(toBytes(tokens), { stream: true });
  }

  /** Ends the stream; a dangling partial character comes out as U+FFFD. */
  flush(): string {
    return this.dec.decode();
  }
}

function toBytes(tokens: ArrayLike<number>): Uint8Array {
  if (tokens instanceof Uint8Array) return tokens;
  const out = new Uint8Array(tokens.length);
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (!Number.isInteger(t) || t < 0 || t >= VOCAB) {
      throw new RangeError(`token ${t} at index ${i} is not a byte (vocab is ${VOCAB}: 0..255)`);
    }
    out[i] = t;
  }
  return out;
}

/** 1-based line of byte `offset`. */
function lineAt(bytes: Uint8Array, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset; i++) if (bytes[i] === 0x0a) line++;
  return line;
}

function hex(b: number): string {
  return '0x' + b.toString(16).toUpperCase().padStart(2, '0');
}
