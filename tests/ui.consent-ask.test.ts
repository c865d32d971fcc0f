// The widget frame's side of the consent window (askConsent, src/ui/embed/frame-bridge.ts), on a
// fake window and coordinator: the window opens at once with a fresh nonce in its fragment, the
// frame names the site it is on, and only the coordinator's 'allowed' for that nonce resolves
// 'allowed'; a refusal, a forgotten nonce, a deadline passed or a coordinator that refuses the
// request each end the wait with what to say.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { webcrypto } from 'node:crypto';
import { askConsent, CONSENT, CONSENT_GRACE_MS, CONSENT_HOLD_MS, CONSENT_POLL_MS, CONSENT_WAIT_MS, holdConsent, newNonce, type FrameConsent } from '../src/ui/embed/frame-bridge.ts';
import type { ConsentPort } from '../src/ui/ports.ts';

type Claim = Awaited<ReturnType<ConsentPort['claim']>>;

function fakeWindow(ancestors: string[] | null) {
  const opened: [string, string, string][] = [];
  const win = {
    location: ancestors === null ? {} : { ancestorOrigins: Object.assign([...ancestors], { contains: () => false, item: (i: number) => ancestors[i] ?? null }) },
    performance: { now: () => Date.now() },
    open: (url: string, target: string, features: string) => { opened.push([url, target, features]); return null; },
  } as unknown as Window;
  return { win, opened };
}

function fakePort(claims: (Claim | Error)[], register: () => Promise<void> = async () => {}, otherwise: Claim = 'pending') {
  const calls: string[] = [];
  const port: ConsentPort = {
    register: async (nonce, site, maxIntensity) => { calls.push(`register ${nonce} ${site} ${maxIntensity}`); await register(); },
    claim: async (nonce) => {
      calls.push(`claim ${nonce}`);
      const c = claims.shift() ?? otherwise;
      if (c instanceof Error) throw c;
      return c;
    },
    release: (nonce) => { calls.push(`release ${nonce}`); },
  };
  return { port, calls };
}

const NONCE = 'A'.repeat(22);

beforeEach(() => { vi.useFakeTimers(); });
afterEach(() => { vi.useRealTimers(); });

describe('askConsent', () => {
  it('opens the consent window at once, registers the site, and resolves allowed only when the coordinator says so', async () => {
    const { win, opened } = fakeWindow(['https://whales.example']);
    const { port, calls } = fakePort(['pending', 'pending', 'allowed']);
    const consent: FrameConsent = { port, path: '/consent' };
    const answer = askConsent(consent, win, NONCE, () => true, 0.4);
    // In the click's own task: before anything was awaited.
    expect(opened).toEqual([[`/consent#${NONCE}`, '_blank', expect.stringMatching(/^popup,noopener/)]]);
    await vi.advanceTimersByTimeAsync(3 * CONSENT_POLL_MS);
    expect(await answer).toBe('allowed');
    // With the frame's intensity ceiling, which the window states.
    expect(calls).toEqual([`register ${NONCE} https://whales.example 0.4`, `claim ${NONCE}`, `claim ${NONCE}`, `claim ${NONCE}`]);
  });

  it('resolves denied, and expired for a nonce the coordinator no longer knows', async () => {
    for (const [last, want] of [['denied', 'denied'], ['gone', 'expired']] as const) {
      const { win } = fakeWindow(['https://whales.example']);
      const answer = askConsent({ port: fakePort(['pending', last]).port, path: '/consent' }, win, NONCE, () => true);
      await vi.advanceTimersByTimeAsync(2 * CONSENT_POLL_MS);
      expect(await answer).toBe(want);
    }
  });

  it('gives up once its deadline has passed, or once no longer wanted', async () => {
    const { win } = fakeWindow(['https://whales.example']);
    const { port, calls } = fakePort([]);
    const answer = askConsent({ port, path: '/consent' }, win, NONCE, () => true);
    await vi.advanceTimersByTimeAsync(CONSENT_WAIT_MS + 2 * CONSENT_POLL_MS);
    expect(await answer).toBe('expired');
    // One question a poll interval, no more.
    expect(calls.length).toBeLessThanOrEqual(1 + CONSENT_WAIT_MS / CONSENT_POLL_MS + 1);
    let wanted = true;
    const dropped = askConsent({ port: fakePort([]).port, path: '/consent' }, win, NONCE, () => wanted);
    await vi.advanceTimersByTimeAsync(CONSENT_POLL_MS);
    wanted = false;
    await vi.advanceTimersByTimeAsync(CONSENT_POLL_MS);
    expect(await dropped).toBe('expired');
  });

  it('withdraws a request that was no longer wanted by the time it was registered (a Stop while it was on its way), so its window asks no more', async () => {
    const { win } = fakeWindow(['https://whales.example']);
    let registered!: () => void;
    const { port, calls } = fakePort([], () => new Promise<void>((r) => { registered = r; }));
    let wanted = true;
    const answer = askConsent({ port, path: '/consent' }, win, NONCE, () => wanted);
    await vi.advanceTimersByTimeAsync(0);
    wanted = false;
    registered();
    expect(await answer).toBe('expired');
    expect(calls).toEqual([`register ${NONCE} https://whales.example 1`, `release ${NONCE}`]);
  });

  it('says why when the coordinator refuses the request, and opens nothing where the browser names no site', async () => {
    const { win } = fakeWindow(['https://evil.example']);
    const refused = askConsent({ port: fakePort([], async () => { throw new Error('https://evil.example is not an embedding site of run default'); }).port, path: '/consent' }, win, NONCE, () => true);
    const e = await refused;
    expect(e).toBeInstanceOf(Error);
    expect((e as Error).message).toBe(CONSENT.failed('https://evil.example is not an embedding site of run default'));
    const bare = fakeWindow(null);
    const none = await askConsent({ port: fakePort([]).port, path: '/consent' }, bare.win, NONCE, () => true);
    expect((none as Error).message).toBe(CONSENT.unplaced);
    expect(bare.opened).toEqual([]);
  });
});

// Once allowed, the frame trains only while the consent window holds the session: it claims the
// session on, and stops when the window's Stop or its closing ended it (the page may have masked
// the frame's own Stop), or pauses once the coordinator has not answered for its grace.
describe('holdConsent', () => {
  const fakeWin = () => fakeWindow(['https://whales.example']).win;

  it('holds the session while the coordinator says allowed, and ends it when the window stopped it, or says the coordinator forgot it', async () => {
    for (const [last, want] of [['stopped', 'stopped'], ['closed', 'closed'], ['gone', 'forgotten'], ['released', 'closed']] as const) {
      const { port, calls } = fakePort(['allowed', 'allowed', last]);
      const ends: string[] = [];
      holdConsent(port, NONCE, fakeWin(), () => true, (why) => ends.push(why));
      await vi.advanceTimersByTimeAsync(2 * CONSENT_HOLD_MS);
      expect(ends).toEqual([]);
      await vi.advanceTimersByTimeAsync(CONSENT_HOLD_MS);
      expect(ends).toEqual([want]);
      // And asks no more.
      await vi.advanceTimersByTimeAsync(5 * CONSENT_HOLD_MS);
      expect(calls).toEqual([`claim ${NONCE}`, `claim ${NONCE}`, `claim ${NONCE}`]);
      expect(ends).toEqual([want]);
    }
  });

  it('trains on through a coordinator out of reach for less than its grace, and pauses once it has been out of reach for the whole grace', async () => {
    const down = new Error('fetch failed');
    const misses = Math.ceil(CONSENT_GRACE_MS / CONSENT_HOLD_MS) - 1;
    // Out of reach for a while, then back: the session goes on.
    const back = fakePort([...Array<Error>(misses).fill(down), 'allowed'], undefined, 'allowed');
    const kept: string[] = [];
    holdConsent(back.port, NONCE, fakeWin(), () => true, (why) => kept.push(why));
    await vi.advanceTimersByTimeAsync(3 * CONSENT_GRACE_MS);
    expect(kept).toEqual([]);
    // Out of reach for good: 'lost' once the grace has passed, not before.
    const gone = fakePort([], undefined, 'allowed');
    gone.port.claim = async () => { throw down; };
    const ends: string[] = [];
    holdConsent(gone.port, NONCE, fakeWin(), () => true, (why) => ends.push(why));
    await vi.advanceTimersByTimeAsync(CONSENT_GRACE_MS - 1);
    expect(ends).toEqual([]);
    await vi.advanceTimersByTimeAsync(CONSENT_HOLD_MS + 1);
    expect(ends).toEqual(['lost']);
    // A claim that never answers is no answer either.
    const hung = fakePort([]);
    hung.port.claim = () => new Promise(() => {});
    const hungEnds: string[] = [];
    holdConsent(hung.port, NONCE, fakeWin(), () => true, (why) => hungEnds.push(why));
    await vi.advanceTimersByTimeAsync(CONSENT_GRACE_MS + 3 * CONSENT_HOLD_MS);
    expect(hungEnds).toEqual(['lost']);
  });

  it('stops holding once the frame no longer trains under the session', async () => {
    const { port, calls } = fakePort([], undefined, 'allowed');
    let held = true;
    const ends: string[] = [];
    holdConsent(port, NONCE, fakeWin(), () => held, (why) => ends.push(why));
    await vi.advanceTimersByTimeAsync(2 * CONSENT_HOLD_MS);
    held = false;
    await vi.advanceTimersByTimeAsync(5 * CONSENT_HOLD_MS);
    expect(calls).toEqual([`claim ${NONCE}`, `claim ${NONCE}`]);
    expect(ends).toEqual([]);
  });
});

describe('newNonce', () => {
  it('is 16 random bytes in base64url, fresh each time', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 1000; i++) {
      const n = newNonce(webcrypto as unknown as Crypto);
      expect(n).toMatch(/^[A-Za-z0-9_-]{22}$/);
      seen.add(n);
    }
    expect(seen.size).toBe(1000);
  });
});
