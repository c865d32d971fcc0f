// A short, stable fingerprint of a run's configuration. Two peers may exchange weights only
// when their fingerprints match: same model shape, same layout, same outer-step settings.

/**
 * FNV-1a, 64-bit, over the canonical JSON of `value` (object keys sorted at every level).
 * Returns 16 lowercase hex digits: exactly the 8 bytes a tensor frame carries.
 */
export function configHash(value: unknown): string {
  const bytes = new TextEncoder().encode(canonicalJson(value));
  // 64-bit arithmetic on two 32-bit halves: FNV prime 0x100000001b3 = 2^40 + 0x1b3.
  let hi = 0xcbf29ce4, lo = 0x84222325;
  for (const b of bytes) {
    lo = (lo ^ b) >>> 0; // keep unsigned: the carry below needs the true product
    // (hi:lo) * 0x1b3 + (lo << 40)
    const loMul = lo * 0x1b3;
    const carry = Math.floor(loMul / 0x100000000);
    const newLo = loMul >>> 0;
    const newHi = (Math.imul(hi, 0x1b3) + carry + ((lo << 8) >>> 0)) >>> 0;
    hi = newHi; lo = newLo;
  }
  return hex8(hi) + hex8(lo);
}

function hex8(x: number): string {
  return (x >>> 0).toString(16).padStart(8, '0');
}

/** JSON with sorted object keys, so key order never changes a hash. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) {
      throw new TypeError(`canonicalJson: non-finite number ${value} has no JSON form`);
    }
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return '[' + value.map(canonicalJson).join(',') + ']';
  const keys = Object.keys(value as object).filter((k) => (value as Record<string, unknown>)[k] !== undefined).sort();
  return '{' + keys.map((k) => JSON.stringify(k) + ':' + canonicalJson((value as Record<string, unknown>)[k])).join(',') + '}';
}

/** The shape of what configHash returns: 16 lowercase hex digits (schemas use the pattern). */
export const CONFIG_HASH_PATTERN = '^[0-9a-f]{16}$';
const CONFIG_HASH_RE = new RegExp(CONFIG_HASH_PATTERN);

/** True for the 16-hex-digit strings configHash returns. */
export function isConfigHash(s: unknown): s is string {
  return typeof s === 'string' && CONFIG_HASH_RE.test(s);
}
