// Relayed signals never close their recipient. A stranger joined as a fresh id (its welcome lists
// every live peer) and sent a burst of large signals at a victim; the hub queued them all, and
// once the victim's unsent bytes passed maxSendBufferBytes the hub closed the victim (1013), not
// the sender: a victim on a 16 Mbit/s downlink was gone in 3 s. Now a signal over maxSignalBytes
// is refused to its sender, and one towards a peer with over relayBufferBytes unsent is dropped
// and its sender told (`rate-limited`, ref `signal`). server.signal-flood.test.ts missed it: its
// victim reads at loopback speed. Here the victim's socket stops reading.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Socket } from 'node:net';
import { DEFAULT_LIMITS, type ServerMessage } from '../src/protocol/messages.ts';
import { RawPeer, startServer, until, type TestServer } from './support/coordinator.ts';
import { FakeClock } from './support/fake-clock.ts';

let s: TestServer;
beforeAll(async () => {
  // No frame rate limit: the flood goes on until the relay pushes back (or the victim is closed)
  // however much the kernel's socket buffers take first, not until the sender's bucket runs out.
  // Nor a byte budget for unasked signals (the last test's): one sender alone fills the buffer here.
  s = await startServer({ hub: { limits: { ...DEFAULT_LIMITS, messagesPerSecond: 1e6, burst: 1e6 }, diallerBytesPerS: Infinity, diallerBurstBytes: Infinity } });
});
afterAll(async () => {
  await s?.close();
});

const isRefusal = (code: string) => (m: ServerMessage) => m.t === 'error' && m.code === code && m.ref === 'signal';
/** A signal `data` whose relayed frame is about `bytes` long. */
const padded = (bytes: number, tag: string) => ({ mesh: 1, cid: tag, sig: { type: 'candidate', pad: 'x'.repeat(bytes - 200) } });

describe('signal relay towards a peer that reads slowly', () => {
  it('drops the signals and tells the sender; the victim is not closed', async () => {
    const victim = await RawPeer.join(s.wsUrl);
    const attacker = await RawPeer.join(s.wsUrl);
    const victimId = victim.welcome.peerId;
    expect(attacker.welcome.peers).toContain(victimId);
    // The victim stops reading: what the hub sends it piles up, past the kernel's buffers, in ws.
    const socket = (victim.peer.ws as unknown as { _socket: Socket })._socket;
    socket.pause();
    try {
      const hub = s.c.hub;
      const { maxSignalBytes } = hub.o;
      const frame = maxSignalBytes - 1024;
      const refused = () => attacker.peer.frames.some(isRefusal('rate-limited'));
      let sent = 0;
      // In batches, each processed by the hub before the next: until it pushes back or the victim is gone.
      while (!refused() && hub.isLive(victimId)) {
        if (sent > 20_000) throw new Error(`${sent} signals of ${frame} bytes sent and neither refused nor the victim closed`);
        const base = hub.stats.frames;
        for (let i = 0; i < 32; i++) attacker.peer.send({ t: 'signal', to: victimId, data: padded(frame, `f${sent + i}`) });
        sent += 32;
        await until(() => hub.stats.frames >= base + 32, 10_000, 'the hub to read the batch');
      }
      console.log(`relay backpressure: ${sent} signals of ~${frame} bytes sent; relayed ${hub.stats.relayed}, dropped ${hub.stats.relayDropped}`);
      expect(hub.isLive(victimId), 'the hub closed the victim for what another peer sent it').toBe(true);
      const err = attacker.peer.frames.find(isRefusal('rate-limited')) as Extract<ServerMessage, { t: 'error' }>;
      expect(err.fatal).toBeUndefined();
      expect(err.message).toContain(victimId);
      expect(attacker.peer.closed).toBeNull();
      // Reading again, the victim gets every signal that was relayed, and is still connected: a
      // signal sent once it has them reaches it.
      socket.resume();
      const relayed = hub.stats.relayed;
      const signals = () => victim.peer.frames.filter((m) => m.t === 'signal').length;
      await until(() => signals() >= relayed, 20_000, () => `the victim to read the ${relayed} relayed signals (has ${signals()})`);
      attacker.peer.send({ t: 'signal', to: victimId, data: { mesh: 1, cid: 'after', sig: {} } });
      await until(() => victim.peer.frames.some((m) => m.t === 'signal' && (m.data as { cid?: string }).cid === 'after'), 20_000, 'the victim to get a signal sent after it read its queue');
      expect(victim.peer.closed).toBeNull();
      expect(victim.peer.frames.filter((m) => m.t === 'error')).toEqual([]);
      expect(hub.isLive(victimId)).toBe(true);
    } finally {
      socket.resume();
      victim.peer.close(); attacker.peer.close();
    }
  });

  it('refuses a signal over maxSignalBytes to its sender and does not relay it', async () => {
    const victim = await RawPeer.join(s.wsUrl);
    const sender = await RawPeer.join(s.wsUrl);
    const victimId = victim.welcome.peerId;
    try {
      const big = s.c.hub.o.maxSignalBytes + 1024;
      expect(big).toBeLessThan(s.c.hub.o.limits.maxMessageBytes); // a frame the hub reads, then refuses to relay
      sender.peer.send({ t: 'signal', to: victimId, data: padded(big, 'big') });
      const err = await sender.peer.next(isRefusal('too-large')) as Extract<ServerMessage, { t: 'error' }>;
      expect(err.fatal).toBeUndefined();
      // The hub relays one sender's signals in order: once the next one arrived, the big one never will.
      sender.peer.send({ t: 'signal', to: victimId, data: { mesh: 1, cid: 'small', sig: {} } });
      await victim.peer.next((m) => m.t === 'signal' && (m.data as { cid?: string }).cid === 'small');
      expect(victim.peer.frames.filter((m) => m.t === 'signal').map((m) => (m as { data: { cid?: unknown } }).data.cid)).toEqual(['small']);
      expect(sender.peer.closed).toBeNull();
      expect(victim.peer.closed).toBeNull();
    } finally {
      victim.peer.close(); sender.peer.close();
    }
  });
});

describe('unasked signals of one client towards a peer that reads slowly', () => {
  it('are held to a byte budget per address, so they never fill its buffer and the relay keeps passing other peers\' signals to it', async () => {
    // Before: two ids of one address sent 15 KB signals until the victim had relayBufferBytes
    // unsent, and from then on the relay dropped every signal to it: an honest dialler's offer too.
    const clock = new FakeClock(); // no refill while the test runs, however slowly
    const h = await startServer({ hub: { limits: { ...DEFAULT_LIMITS, messagesPerSecond: 1e6, burst: 1e6 } } }, { clock });
    const victim = await RawPeer.join(h.wsUrl, {}, { localAddress: '127.0.0.2' });
    const attackers = [await RawPeer.join(h.wsUrl, {}, { localAddress: '127.0.0.3' }), await RawPeer.join(h.wsUrl, {}, { localAddress: '127.0.0.3' })];
    const honest = await RawPeer.join(h.wsUrl, {}, { localAddress: '127.0.0.4' });
    const victimId = victim.welcome.peerId, hub = h.c.hub;
    const socket = (victim.peer.ws as unknown as { _socket: Socket })._socket;
    socket.pause();
    try {
      const frame = hub.o.maxSignalBytes - 1024;
      const refused = (p: RawPeer) => p.frames.some(isRefusal('rate-limited'));
      let sent = 0;
      while (!attackers.every((a) => refused(a.peer))) {
        if (sent > 20_000) throw new Error(`${sent} signals of ${frame} bytes sent and not refused`);
        const base = hub.stats.frames, busy = attackers.filter((a) => !refused(a.peer));
        for (const a of busy) for (let i = 0; i < 16; i++) a.peer.send({ t: 'signal', to: victimId, data: padded(frame, `f${sent + i}`) });
        sent += 16;
        await until(() => hub.stats.frames >= base + 16 * busy.length, 10_000, 'the hub to read the batch');
      }
      const relayedBefore = hub.stats.relayed;
      console.log(`dialler bytes: ${sent} signals of ~${frame} bytes sent by each of two ids of one address; ${relayedBefore} relayed`);
      expect(relayedBefore * frame).toBeLessThanOrEqual(hub.o.diallerBurstBytes + frame);
      const told = attackers[0]!.peer.frames.find(isRefusal('rate-limited')) as Extract<ServerMessage, { t: 'error' }>;
      expect(told.message).toMatch(/^this address sent peer .* more unasked signals than 16384 bytes a second/);
      // A peer from elsewhere dials the victim: relayed, and the victim, reading again, gets it.
      const from = honest.peer.frames.length;
      honest.peer.send({ t: 'signal', to: victimId, data: { mesh: 1, cid: 'honest', sig: { type: 'offer', sdp: 'v=0' } } });
      socket.resume();
      const arrived = () => victim.peer.frames.some((m) => m.t === 'signal' && (m.data as { cid?: string }).cid === 'honest');
      await until(() => arrived() || honest.peer.frames.slice(from).some(isRefusal('rate-limited')), 20_000, 'the honest offer to arrive or be refused');
      expect(arrived(), JSON.stringify(honest.peer.frames.slice(from))).toBe(true);
      expect(hub.isLive(victimId)).toBe(true);
    } finally {
      socket.resume();
      for (const p of [victim, honest, ...attackers]) p.peer.close();
      await h.close();
    }
  });
});
