// Sessions that end: a volunteer's session token carries an expiry the coordinator checks, so a
// replayed old token can no longer take over a peer id (nor evict its owner); each welcome issues
// a fresh token, so a peer that reconnects keeps its id; rotating the session key keeps tokens
// signed by the previous key valid (nobody is logged out) and signs new ones with the new key.
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHmac } from 'node:crypto';
import { SessionSigner, loadSessionKeys, rotateSessionSecret } from '../server/auth.ts';
import { RawPeer, startServer, type TestServer } from './support/coordinator.ts';
import { FakeClock } from './support/fake-clock.ts';
import { PROTOCOL_VERSION } from '../src/protocol/messages.ts';

const HOUR = 3600_000;
const claims = (token: string) => JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString('utf8')) as { p: string; i: number; e: number; k: string };

let s: TestServer | null = null;
const dirs: string[] = [];
afterEach(async () => {
  await s?.close();
  s = null;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('volunteer sessions', () => {
  it('refuses a replayed expired session and leaves its owner connected', async () => {
    const clock = new FakeClock();
    // The fake hours pass at once: the owner is not dropped for silence meanwhile.
    s = await startServer({ sessionTtlMs: HOUR, hub: { livenessMs: 100 * HOUR } }, { clock });
    const owner = await RawPeer.join(s.wsUrl);
    const stolen = owner.welcome.session;
    expect(claims(stolen).e).toBe(clock.now() + HOUR);
    clock.advance(HOUR - 1000);
    try {
      // Past its expiry the same token is refused, and the owner (who renewed by reconnecting
      // or simply stays connected) is not evicted.
      clock.advance(2000);
      const replay = await RawPeer.connect(s.wsUrl);
      replay.send({ t: 'hello', v: PROTOCOL_VERSION, session: stolen });
      expect(await replay.next((m) => m.t === 'error')).toMatchObject({ code: 'bad-session', fatal: true });
      expect((await replay.waitClosed())?.code).toBe(4003);
      expect(s.c.hub.isLive(owner.welcome.peerId)).toBe(true);
      expect(owner.peer.closed).toBeNull();
    } finally {
      owner.peer.close();
    }
  });

  it('renews the session on every reconnect', async () => {
    const clock = new FakeClock();
    s = await startServer({ sessionTtlMs: HOUR }, { clock });
    const first = await RawPeer.join(s.wsUrl);
    first.peer.close();
    let token = first.welcome.session;
    // Reconnecting every 50 minutes keeps the same id for five hours.
    for (let k = 0; k < 6; k++) {
      clock.advance(50 * 60_000);
      const again = await RawPeer.join(s.wsUrl, { session: token });
      expect(again.welcome).toMatchObject({ peerId: first.welcome.peerId, resumed: true });
      expect(claims(again.welcome.session).e).toBe(clock.now() + HOUR);
      token = again.welcome.session;
      again.peer.close();
    }
  });

  it('rotates the signing key without logging anyone out', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'murmur-sessions-'));
    dirs.push(dir);
    s = await startServer({}, {}, dir);
    const before = await RawPeer.join(s.wsUrl);
    before.peer.close();
    await s.close();
    s = null;
    const oldKey = loadSessionKeys(dir)[0]!;
    expect(rotateSessionSecret(dir)).toEqual([expect.stringMatching(/^[0-9a-f]{64}$/), oldKey]);
    s = await startServer({}, {}, dir);
    const resumed = await RawPeer.join(s.wsUrl, { session: before.welcome.session });
    expect(resumed.welcome).toMatchObject({ peerId: before.welcome.peerId, resumed: true });
    expect(claims(resumed.welcome.session).k).not.toBe(claims(before.welcome.session).k);
    resumed.peer.close();
    await s.close();
    s = null;
    // After a second rotation the first key is gone: a token only it signed is refused, one
    // renewed since is still good.
    rotateSessionSecret(dir);
    s = await startServer({}, {}, dir);
    const dropped = await RawPeer.connect(s.wsUrl);
    dropped.send({ t: 'hello', v: PROTOCOL_VERSION, session: before.welcome.session });
    expect(await dropped.next((m) => m.t === 'error')).toMatchObject({ code: 'bad-session' });
    const renewed = await RawPeer.join(s.wsUrl, { session: resumed.welcome.session });
    expect(renewed.welcome).toMatchObject({ peerId: before.welcome.peerId, resumed: true });
    renewed.peer.close();
  });

  it('two rotations before a restart keep the key the running coordinator signs with', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'murmur-sessions-'));
    dirs.push(dir);
    s = await startServer({}, {}, dir);
    const inUse = loadSessionKeys(dir)[0]!;
    // Rotated twice while it runs: it still signs every welcome with the key it started with.
    rotateSessionSecret(dir);
    const keys = rotateSessionSecret(dir);
    expect(keys).toHaveLength(3);
    expect(keys[2]).toBe(inUse);
    const welcomed = await RawPeer.join(s.wsUrl);
    welcomed.peer.close();
    await s.close();
    s = null;
    s = await startServer({}, {}, dir);
    const resumed = await RawPeer.join(s.wsUrl, { session: welcomed.welcome.session });
    expect(resumed.welcome).toMatchObject({ peerId: welcomed.welcome.peerId, resumed: true });
    resumed.peer.close();
    // Since this start the newest key signs: the next rotation keeps it and drops the others.
    const after = rotateSessionSecret(dir);
    expect(after).toHaveLength(2);
    expect(after[1]).toBe(keys[0]);
  });

  it('rotates nothing in a folder that is not a coordinator\'s data dir (a mistyped --data-dir)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'murmur-sessions-'));
    dirs.push(dir);
    expect(() => rotateSessionSecret(dir)).toThrow(`${dir} holds no murmur.sqlite: not a coordinator's data dir (--data-dir); nothing rotated`);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('refuses forged, tampered and foreign tokens', () => {
    const now = 1_700_000_000_000;
    const a = new SessionSigner(['a'.repeat(64)], () => now, HOUR);
    const b = new SessionSigner(['b'.repeat(64)], () => now, HOUR);
    const t = a.sign({ p: 'p-0123456789abcdef', r: 'default', i: now });
    expect(a.verify(t)).toMatchObject({ p: 'p-0123456789abcdef' });
    expect(b.verify(t)).toBeNull();
    const [body, mac] = t.split('.');
    const longer = Buffer.from(JSON.stringify({ ...claims(t), e: now + 1000 * HOUR })).toString('base64url');
    expect(a.verify(`${longer}.${mac}`)).toBeNull();
    expect(a.verify(`${body}.${mac!.slice(1)}`)).toBeNull();
    const later = new SessionSigner(['a'.repeat(64)], () => now + HOUR, HOUR);
    expect(later.verify(t)).toBeNull();
    expect(later.verify(t, { allowExpired: true })).toMatchObject({ p: 'p-0123456789abcdef' });
  });

  it('refuses a correctly signed token whose claims do not fit their schema', () => {
    // Even with the key (a bug elsewhere, an old format), claims of the wrong shape are no session.
    const secret = 'a'.repeat(64);
    const now = 1_700_000_000_000;
    const signer = new SessionSigner([secret], () => now, HOUR);
    const k = claims(signer.sign({ p: 'p-0123456789abcdef', r: 'default', i: now })).k;
    const signed = (c: object) => {
      const body = Buffer.from(JSON.stringify(c)).toString('base64url');
      return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
    };
    const good = { p: 'p-0123456789abcdef', r: 'default', i: now, e: now + HOUR, k };
    expect(signer.verify(signed(good))).toEqual(good);
    for (const bad of [{ ...good, i: String(now) }, { ...good, e: 'never' }, { ...good, p: 7 }, { ...good, admin: true }, [good]]) {
      expect(signer.verify(signed(bad)), JSON.stringify(bad)).toBeNull();
    }
  });
});
