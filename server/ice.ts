// ICE servers for volunteers: STUN to learn their public address, TURN (coturn) to relay
// where no direct path exists (symmetric NATs, strict firewalls). TURN credentials follow the
// TURN REST convention that coturn's `use-auth-secret` checks: the username is
// `<unix expiry>:<user>` and the credential is base64(HMAC-SHA1(secret, username)). The user is
// the client's address (turnUser: a keyed tag of addressKey, not the address itself; the /64s
// of one IPv6 /48 share TURN_USERS_PER_SITE users), so coturn's per-user quota holds for a whole
// host: with a user per peer id, 17 hellos from one address took all 200 relay ports of the old
// defaults for an hour, and no volunteer joining after could get a relay. The secret never leaves this process: peers get only short-lived
// credentials, renewed before they expire while the peer stays connected, and afresh with every welcome.
import { createHmac } from 'node:crypto';
import { isIP } from 'node:net';
import { addressKey, siteKey } from './address-budget.ts';
import { readFileSync, statSync } from 'node:fs';
import type { WireIce, WireIceServer } from '../src/protocol/messages.ts';

export interface IceSettings {
  /** stun: URLs handed to every volunteer. */
  stun: string[];
  /** turn:/turns: URLs; they need `turnSecret`. */
  turn: string[];
  /** coturn's static-auth-secret. */
  turnSecret: string | null;
  /** Lifetime of a TURN credential, seconds. */
  ttlS: number;
}

export const DEFAULT_TURN_TTL_S = 3600;
/** Credentials are renewed once this fraction of their lifetime has passed. */
export const RENEW_AT = 0.8;

const URL_RE = /^(stun|turns?):([^?]*)(?:\?transport=(?:udp|tcp))?$/;
/** A DNS host name: labels of letters, digits and inner hyphens; written absolute, a trailing dot. */
const HOST_NAME = /^(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/**
 * What is wrong with a STUN or TURN URL (`schemes`: those allowed), or null. A volunteer's WebRTC
 * refuses the whole server list for one URL with a port outside 1-65535 or an IPv6 host out of
 * brackets ("ICE server parse failed"), and then no link ever opens: so the coordinator refuses
 * them when it starts, with names that could not be a host.
 */
export function iceUrlProblem(u: string, schemes: readonly string[]): string | null {
  const m = URL_RE.exec(u);
  if (!m || !schemes.includes(m[1]!)) return `must look like ${schemes.map((s) => `${s}:host[:port]`).join(' or ')}${schemes[0] === 'stun' ? '' : '[?transport=udp|tcp]'}`;
  const authority = m[2]!;
  let host: string, port: string | undefined;
  const bracketed = /^\[([^\]]*)\](?::(.*))?$/.exec(authority);
  if (bracketed) {
    [host, port] = [bracketed[1]!, bracketed[2]];
    if (isIP(host) !== 6) return `host "[${host}]" is not an IPv6 address`;
  } else {
    const colon = authority.indexOf(':');
    if (authority.startsWith('[') || colon !== authority.lastIndexOf(':')) {
      return `host "${authority}" is not a host name or an IP address (an IPv6 address goes in brackets: [2001:db8::1]:3478)`;
    }
    [host, port] = colon < 0 ? [authority, undefined] : [authority.slice(0, colon), authority.slice(colon + 1)];
    // All digits and dots is an IPv4 address or nothing (999.1.1.1 is no name).
    if (!HOST_NAME.test(host) || (/^[\d.]+$/.test(host) && isIP(host) !== 4)) return `host "${host}" is not a host name or an IP address`;
  }
  if (port !== undefined && !(/^\d{1,5}$/.test(port) && Number(port) >= 1 && Number(port) <= 65535)) return `port "${port}" is not in 1-65535`;
  return null;
}

/** Clear error for a bad URL list or a TURN URL without a secret; settings otherwise. */
export function iceSettings(o: { stun?: string[]; turn?: string[]; turnSecret?: string | null; ttlS?: number }): IceSettings {
  const stun = o.stun ?? [], turn = o.turn ?? [];
  for (const u of stun) {
    const problem = iceUrlProblem(u, ['stun']);
    if (problem) throw new Error(`STUN URL "${u}": ${problem}`);
  }
  for (const u of turn) {
    const problem = iceUrlProblem(u, ['turn', 'turns']);
    if (problem) throw new Error(`TURN URL "${u}": ${problem}`);
  }
  const secret = o.turnSecret ?? null;
  if (turn.length > 0 && !secret) throw new Error('TURN URLs need the TURN shared secret (--turn-secret-file or MURMUR_TURN_SECRET): coturn checks credentials made from it');
  if (secret !== null && secret.length < 16) throw new Error('the TURN secret must be at least 16 characters');
  const ttlS = o.ttlS ?? DEFAULT_TURN_TTL_S;
  if (!(Number.isInteger(ttlS) && ttlS >= 10 && ttlS <= 7 * 86400)) throw new Error(`TURN credential lifetime must be an integer in [10, 604800] s, got ${ttlS}`);
  return { stun, turn, turnSecret: secret, ttlS };
}

/**
 * Reads the TURN secret from a file that only its owner may read (mode 0600 or stricter): a
 * secret other users can read is as good as published.
 */
export function readSecretFile(path: string): string {
  const st = statSync(path);
  if ((st.mode & 0o077) !== 0) {
    throw new Error(`${path} is readable by others (mode ${(st.mode & 0o777).toString(8)}): chmod 600 it; the TURN secret must stay with its owner`);
  }
  const secret = readFileSync(path, 'utf8').trim();
  if (!secret) throw new Error(`${path} is empty: it must hold the TURN shared secret`);
  return secret;
}

/**
 * TURN users one IPv6 /48 (siteKey) may have: its /64s share out this many, so a site holds at
 * most TURN_USERS_PER_SITE x coturn's user-quota allocations (4 x 24 = 96 of the default 1,200,
 * reserving at most 4/5 of its bandwidth capacity: MAX_SITE_SHARE, server/turn-config.ts),
 * where a user per /64 let 25 /64s of one /48 take every relay.
 */
export const TURN_USERS_PER_SITE = 4;

/**
 * The TURN user of a client address: one per host (addressKey: an IPv4 address, or an IPv6 /64),
 * a tag keyed by the secret so that coturn's logs name no address and no client can pick another's.
 * An IPv6 /64 gets one of its /48's TURN_USERS_PER_SITE users (which one is keyed by the secret
 * too), so two /64s of one site may share a user and its quota.
 */
export function turnUser(secret: string, address: string): string {
  const key = addressKey(address), site = siteKey(key);
  const tag = (what: string) => createHmac('sha256', secret).update(what).digest();
  const user = site === null ? key : `${site}#${tag(`turn-share:${key}`).readUInt32BE(0) % TURN_USERS_PER_SITE}`;
  return `h-${tag(`turn-user:${user}`).toString('hex').slice(0, 20)}`;
}

/** One TURN REST credential for `user`, valid until `expiresAtS` (unix seconds). */
export function turnCredential(secret: string, user: string, expiresAtS: number): { username: string; credential: string } {
  const username = `${expiresAtS}:${user}`;
  return { username, credential: createHmac('sha1', secret).update(username).digest('base64') };
}

/**
 * What a volunteer gets in its welcome (and again before the TURN credential expires): TURN
 * credentials for the user of its address (turnUser).
 */
export function iceFor(s: IceSettings, address: string, nowMs: number): WireIce {
  const servers: WireIceServer[] = [];
  if (s.stun.length > 0) servers.push({ urls: s.stun });
  let expiresAt: number | null = null;
  if (s.turn.length > 0 && s.turnSecret) {
    const expiresAtS = Math.floor(nowMs / 1000) + s.ttlS;
    expiresAt = expiresAtS * 1000;
    servers.push({ urls: s.turn, ...turnCredential(s.turnSecret, turnUser(s.turnSecret, address), expiresAtS) });
  }
  return { iceServers: servers, expiresAt };
}

/** When to send fresh credentials to a peer given ones that expire at `expiresAt` (ms). */
export function renewDelayMs(s: IceSettings, nowMs: number, expiresAt: number | null): number | null {
  if (expiresAt === null) return null;
  const life = s.ttlS * 1000;
  return Math.max(1000, expiresAt - life * (1 - RENEW_AT) - nowMs);
}
