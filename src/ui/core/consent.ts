// The volunteer's opt-in: explicit, remembered, revocable, and it expires. Stored in
// localStorage as one small JSON record. Granting consent never starts training by itself:
// it only means the volunteer need not read the explanation again before pressing Start.
//
// A record stops counting when it expires, when it was given for another run, or when the text
// the volunteer agreed to changes (CONSENT_TEXT_VERSION): people agree to what they were shown.
import Type, { type Static } from 'typebox';
import Value from 'typebox/value';

/** Bump when the "what runs / what leaves your machine" text changes materially. */
export const CONSENT_TEXT_VERSION = '1';
/** Long enough not to nag a regular volunteer, short enough that a forgotten opt-in lapses. */
export const CONSENT_DAYS = 30;
export const CONSENT_KEY = 'murmur.consent';

/** ms since epoch: no real grant or expiry lies past year 5000 (a hand-edited 1e300 would never lapse). */
const time = Type.Integer({ minimum: 0, maximum: 1e14 });
/** The stored record, exactly as grant() writes it; anything else read back is no consent. */
const ConsentRecord = Type.Object({
  runId: Type.String({ maxLength: 200 }),
  textVersion: Type.String({ maxLength: 40 }),
  grantedAt: time,
  expiresAt: time,
}, { additionalProperties: false });
export type ConsentRecord = Static<typeof ConsentRecord>;

/** The part of Storage we use; localStorage can be missing or throw (blocked storage). */
export type ConsentStorage = Pick<Storage, 'getItem' | 'setItem' | 'removeItem'>;

export class ConsentStore {
  /** The record when storage refused it: consent then lasts only as long as the page. */
  private memory: ConsentRecord | null = null;
  /** False when the browser blocks storage here; the UI says consent will not be remembered. */
  persistent: boolean;

  constructor(
    private readonly storage: ConsentStorage | null,
    private readonly now: () => number = Date.now,
    private readonly key = CONSENT_KEY,
  ) {
    this.persistent = storage !== null && probe(storage, key);
  }

  /** The valid record for `runId`, or null (none, expired, other run, other text). */
  get(runId: string): ConsentRecord | null {
    const rec = this.persistent ? parse(safeGet(this.storage!, this.key)) : this.memory;
    if (!rec) return null;
    if (rec.runId !== runId || rec.textVersion !== CONSENT_TEXT_VERSION || rec.expiresAt <= this.now()) return null;
    return rec;
  }

  grant(runId: string, days = CONSENT_DAYS): ConsentRecord {
    if (!(days > 0)) throw new Error(`consent duration must be a positive number of days, got ${days}`);
    const grantedAt = this.now();
    const rec: ConsentRecord = { runId, textVersion: CONSENT_TEXT_VERSION, grantedAt, expiresAt: grantedAt + days * 86_400_000 };
    this.memory = rec;
    if (this.persistent) {
      try {
        this.storage!.setItem(this.key, JSON.stringify(rec));
      } catch {
        // Writing is refused (quota, or storage blocked for writes only): this page only.
        this.persistent = false;
      }
    }
    return rec;
  }

  revoke(): void {
    this.memory = null;
    if (this.persistent) {
      try { this.storage!.removeItem(this.key); } catch { /* nothing stored, nothing to remove */ }
    }
  }
}

/**
 * Browsers with storage blocked throw on any access. Only a read here: nothing is written to the
 * visitor's machine before they agree.
 */
function probe(storage: ConsentStorage, key: string): boolean {
  try {
    storage.getItem(key);
    return true;
  } catch {
    return false;
  }
}

function safeGet(storage: ConsentStorage, key: string): string | null {
  try { return storage.getItem(key); } catch { return null; }
}

/** A malformed record (hand-edited, older format) counts as no consent, never as consent. */
function parse(raw: string | null): ConsentRecord | null {
  if (!raw) return null;
  let v: unknown;
  try { v = JSON.parse(raw); } catch { return null; }
  // The caller can only ask again, so the problem is not worded: the record just does not count.
  // TypeBox's Value module interprets the schema (pages run without 'unsafe-eval'; ui/core
  // depends on nothing of ours, as frame-bridge.ts checks the host's messages).
  return Value.Check(ConsentRecord, v) ? v : null;
}
