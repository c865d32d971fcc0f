// Issue 16: `murmur ice-check` reads the coordinator's ICE servers through the schema volunteers
// read them by, so a reply it cannot use is named before any WebRTC link is tried.
import { describe, expect, it } from 'vitest';
import { readIce } from '../src/commands/ice-check.ts';

describe('ice-check reply', () => {
  it('takes ICE servers in the form volunteers get them and names the field of anything else', () => {
    const ice = { iceServers: [{ urls: ['turn:turn.example:3478'], username: 'u', credential: 'c' }], expiresAt: 5000 };
    expect(readIce(ice)).toEqual(ice);
    // Before, each was cast and failed later (urls.some is not a function) or not at all.
    expect(() => readIce({ iceServers: [{ urls: 'turn:turn.example:3478' }], expiresAt: null }))
      .toThrow("the coordinator's ICE servers are not in the form volunteers get them: ice.iceServers[0].urls must be array");
    expect(() => readIce({ iceServers: [], expiresAt: -1 })).toThrow(/ice\.expiresAt must be /);
    expect(() => readIce({ error: 'unauthorized' })).toThrow(/ice\.iceServers is required/);
  });
});
