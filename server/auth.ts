// Secrets of one coordinator, both kept in the data directory with mode 0600:
// - the admin token (Bearer) that guards create / stop / change a run and deleting checkpoints;
//   generated and printed once, on the first start;
// - the session secret that signs volunteers' session tokens (HMAC-SHA256), so a peer keeps its
//   id across reconnects and coordinator restarts and nobody can mint a token for another peer.
//   A token expires (default 7 days after it was issued; every welcome issues a fresh one, so a
//   peer that reconnects keeps renewing it): a replayed old token cannot take over a peer id.
//   The file holds one key per line, the signing key first: rotateSessionSecret adds a new
//   signing key and keeps the previous one for checking, so rotation logs nobody out; and the
//   key the running coordinator signs with (SESSION_KEY_IN_USE_FILE names it, by its id), when
//   a second rotation comes before the restart that would have retired it.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Type, { type Static } from 'typebox';
import { schemaProblem } from '../src/protocol/check.ts';
import { DB_FILE } from './db.ts';
import { writeFileAtomic } from './fsutil.ts';

export const ADMIN_TOKEN_FILE = 'admin-token';
export const SESSION_SECRET_FILE = 'session-secret';
/** The id (keyId) of the key the coordinator started with signs: rotation keeps that key. */
export const SESSION_KEY_IN_USE_FILE = 'session-key-in-use';

/** Reads a secret file, or creates it (0600) with 32 random bytes; `created` says which. */
export function loadOrCreateSecret(dataDir: string, name: string): { value: string; created: boolean } {
  const path = join(dataDir, name);
  if (existsSync(path)) {
    const mode = statSync(path).mode & 0o777;
    // Repair a copy restored with loose permissions rather than refuse to start.
    if (mode & 0o077) chmodSync(path, 0o600);
    const value = readFileSync(path, 'utf8').trim();
    if (!/^[0-9a-f]{64}$/.test(value)) throw new Error(`${path} is not a 64-hex-digit secret; delete it to generate a new one`);
    return { value, created: false };
  }
  const value = randomBytes(32).toString('hex');
  // 'wx' fails if another process created it meanwhile: never overwrite a secret.
  writeFileSync(path, value + '\n', { mode: 0o600, flag: 'wx' });
  chmodSync(path, 0o600);
  return { value, created: true };
}

const KEY = /^[0-9a-f]{64}$/;

/** The session keys of a data dir, signing key first (created on first use). */
export function loadSessionKeys(dataDir: string): string[] {
  const path = join(dataDir, SESSION_SECRET_FILE);
  if (!existsSync(path)) return [loadOrCreateSecret(dataDir, SESSION_SECRET_FILE).value];
  if (statSync(path).mode & 0o077) chmodSync(path, 0o600);
  const keys = readFileSync(path, 'utf8').split('\n').map((l) => l.trim()).filter((l) => l !== '');
  if (keys.length === 0 || !keys.every((k) => KEY.test(k))) throw new Error(`${path} must hold 64-hex-digit keys, one a line; delete it to generate a new one`);
  return keys;
}

/**
 * The coordinator's session keys as it starts, signing key first; notes which one it signs with
 * (SESSION_KEY_IN_USE_FILE), so that a rotation before its next start keeps that key.
 */
export function startSessionKeys(dataDir: string): string[] {
  const keys = loadSessionKeys(dataDir);
  writeFileAtomic(join(dataDir, SESSION_KEY_IN_USE_FILE), Buffer.from(keyId(keys[0]!) + '\n'), 0o600);
  return keys;
}

/**
 * A new signing key. The previous signing key is kept for checking the tokens it signed, and so
 * is the key the running coordinator signs with, where that is another (two rotations before a
 * restart: dropping it logged out every peer the coordinator had welcomed since its start). Older
 * keys are dropped: their tokens have had a whole rotation period to be renewed, and a key kept
 * longer would keep a leaked one valid longer. Takes effect when the coordinator starts.
 */
export function rotateSessionSecret(dataDir: string): string[] {
  // A mistyped --data-dir would otherwise get a secret of its own and the rotation be reported
  // done, while the coordinator's key stayed as it was.
  if (!existsSync(join(dataDir, DB_FILE))) throw new Error(`${dataDir} holds no ${DB_FILE}: not a coordinator's data dir (--data-dir); nothing rotated`);
  const old = loadSessionKeys(dataDir);
  const marker = join(dataDir, SESSION_KEY_IN_USE_FILE);
  const inUseId = existsSync(marker) ? readFileSync(marker, 'utf8').trim() : null;
  const inUse = old.find((k) => keyId(k) === inUseId);
  const keys = [randomBytes(32).toString('hex'), old[0]!, ...(inUse !== undefined && inUse !== old[0] ? [inUse] : [])];
  const path = join(dataDir, SESSION_SECRET_FILE);
  const tmp = `${path}.tmp-${randomBytes(4).toString('hex')}`;
  writeFileSync(tmp, keys.join('\n') + '\n', { mode: 0o600, flag: 'wx' });
  renameSync(tmp, path);
  return keys;
}

/** Constant-time comparison of a presented token with the expected one. */
export function tokenEquals(presented: string, expected: string): boolean {
  const a = Buffer.from(presented, 'utf8');
  const b = Buffer.from(expected, 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The Bearer token of an Authorization header, or null when absent / not Bearer. */
export function bearer(header: string | undefined): string | null {
  if (!header) return null;
  const m = /^Bearer ([\x21-\x7e]{1,512})$/.exec(header);
  return m ? m[1]! : null;
}

const SessionClaims = Type.Object({
  /** Peer id. */
  p: Type.String({ maxLength: 64 }),
  /** Run id. */
  r: Type.String({ maxLength: 64 }),
  /** Issued at (ms). */
  i: Type.Number(),
  /** Expires at (ms); tokens from before expiry existed expire `ttl` after `i`. */
  e: Type.Optional(Type.Number()),
  /** Which key signed it (a short hash of the key): rotation keeps old tokens checkable. */
  k: Type.Optional(Type.String({ maxLength: 64 })),
}, { additionalProperties: false });
export type SessionClaims = Static<typeof SessionClaims>;

export const DEFAULT_SESSION_TTL_MS = 7 * 24 * 3600_000;

const keyId = (secret: string) => createHash('sha256').update(secret).digest('hex').slice(0, 8);

/**
 * Signs and checks session tokens: base64url(JSON claims) "." base64url(HMAC-SHA256). Signs with
 * the first key; checks with whichever key the token names.
 */
export class SessionSigner {
  private readonly keys: Map<string, string>;
  private readonly signing: string;

  constructor(secrets: string | string[], private readonly now: () => number = Date.now, readonly ttlMs = DEFAULT_SESSION_TTL_MS) {
    const list = Array.isArray(secrets) ? secrets : [secrets];
    this.keys = new Map(list.map((k) => [keyId(k), k]));
    this.signing = list[0]!;
  }

  /** A token for `c`, expiring ttlMs after it was issued. */
  sign(c: SessionClaims): string {
    const body = Buffer.from(JSON.stringify({ p: c.p, r: c.r, i: c.i, e: c.i + this.ttlMs, k: keyId(this.signing) })).toString('base64url');
    return `${body}.${this.mac(body, this.signing)}`;
  }

  /**
   * The claims of a valid token, or null for anything forged, truncated, malformed, signed by a
   * key this coordinator no longer has, or expired (unless `allowExpired`: an upload answering
   * the coordinator's own request to a live peer).
   */
  verify(token: string, opts: { allowExpired?: boolean } = {}): SessionClaims | null {
    if (token.length > 512) return null;
    const dot = token.indexOf('.');
    if (dot <= 0) return null;
    const body = token.slice(0, dot);
    const mac = token.slice(dot + 1);
    let c: unknown;
    try {
      c = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
    } catch {
      return null;
    }
    if (schemaProblem(SessionClaims, c, 'session') !== null) return null;
    const claims = c as SessionClaims;
    // Tokens from before key ids were written were signed by the first key there was.
    const secret = claims.k === undefined ? this.signing : this.keys.get(claims.k);
    if (!secret || !tokenEquals(mac, this.mac(body, secret))) return null;
    const expires = claims.e ?? claims.i + this.ttlMs;
    if (!opts.allowExpired && !(this.now() < expires)) return null;
    return claims;
  }

  private mac(body: string, secret: string): string {
    return createHmac('sha256', secret).update(body).digest('base64url');
  }
}
