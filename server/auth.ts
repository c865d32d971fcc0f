// Secrets of one coordinator, both kept in the data directory with mode 0600:
// - the admin token (Bearer) that guards create / stop / change a run and deleting checkpoints;
//   generated and printed once, on the first start;
// - the session secret that signs volunteers' session tokens (HMAC-SHA256), so a peer keeps its
//   id across reconnects and coordinator restarts and nobody can mint a token for another peer.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const ADMIN_TOKEN_FILE = 'admin-token';
export const SESSION_SECRET_FILE = 'session-secret';

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

export interface SessionClaims {
  /** Peer id. */
  p: string;
  /** Run id. */
  r: string;
  /** Issued at (ms). */
  i: number;
}

/** Signs and checks session tokens: base64url(JSON claims) "." base64url(HMAC-SHA256). */
export class SessionSigner {
  constructor(private readonly secret: string) {}

  sign(c: SessionClaims): string {
    const body = Buffer.from(JSON.stringify({ p: c.p, r: c.r, i: c.i })).toString('base64url');
    return `${body}.${this.mac(body)}`;
  }

  /** The claims of a valid token, or null for anything forged, truncated or malformed. */
  verify(token: string): SessionClaims | null {
    if (token.length > 512) return null;
    const dot = token.indexOf('.');
    if (dot <= 0) return null;
    const body = token.slice(0, dot);
    const mac = token.slice(dot + 1);
    if (!tokenEquals(mac, this.mac(body))) return null;
    try {
      const c = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as SessionClaims;
      if (typeof c.p !== 'string' || typeof c.r !== 'string' || typeof c.i !== 'number') return null;
      return c;
    } catch {
      return null;
    }
  }

  private mac(body: string): string {
    return createHmac('sha256', this.secret).update(body).digest('base64url');
  }
}
