// A question (`pair-req`) a neighbour put in the last moments of its round can land in our next
// one: we say yes and take it as our partner, but the asker has moved on and answers our yes and
// our announcement with an abort saying it was never paired with us. Our exchange ended solo
// ('partner-aborted') there, though most of the wait was left and an honest neighbour was ready.
// Now it pairs again through neighbours (exchange.ts, unpairedAbort). A partner that says so
// after our payload went to it is still a stall.
import { afterEach, describe, expect, it } from 'vitest';
import { decodeFrame } from '../src/protocol/frame.ts';
import type { ControlMessage } from '../src/protocol/peer-messages.ts';
import type { MeshCore } from '../src/sync/mesh-core.ts';
import { chaosLinks } from './support/chaos.ts';
import { Swarm, syntheticPayload } from './support/swarm.ts';
import { HANG_GUARD_MS, until } from './support/wait.ts';

const n = 20_000;

function control(frame: Uint8Array): ControlMessage | null {
  try {
    const f = decodeFrame(frame);
    return f.type === 'control' ? (f.message as ControlMessage) : null;
  } catch { return null; }
}

describe('direct pairing with a stale question', () => {
  let swarm: Swarm | null = null;
  afterEach(() => { swarm?.destroy(); swarm = null; });

  it('pairs again with the honest neighbour in the same round when the stale asker says it was never paired with us', async () => {
    let s!: Swarm;
    let staleSent = false;
    // p2 has left its round 41 (no exchange running). Its question of that round reaches p0 just as
    // p0 asks p2 (crossed questions: p0 says yes at once, whatever order the two land in).
    const toP2: ControlMessage[] = [];
    const fromP2: ControlMessage[] = [];
    const tamper = (f: Uint8Array, { remote }: { remote: string }) => {
      const msg = control(f);
      if (remote === 'p2' && msg) toP2.push(msg);
      if (!staleSent && remote === 'p2' && msg?.t === 'pair-req') {
        staleSent = true;
        (s.peer('p2').mesh as unknown as MeshCore).sendControl('p0', { t: 'pair-req', round: 41, nonce: 77 });
      }
      return [f];
    };
    s = swarm = new Swarm({
      n: 3, transport: 'memory', elements: n, seed: 5,
      init: { deadline: { minMs: 100, initialMs: HANG_GUARD_MS, maxMs: HANG_GUARD_MS }, neighbours: { min: 2, max: 2 } },
      wrap: (id, links) => {
        if (id === 'p0') return chaosLinks(links, tamper);
        if (id === 'p2') return chaosLinks(links, (f, { remote }) => { const m = control(f); if (remote === 'p0' && m) fromP2.push(m); return [f]; });
        return links;
      },
    });
    await s.connected(2);
    s.hub.stop(); // the coordinator is down: pairing goes through neighbours
    const [p0, p1] = s.peers;
    const a = p0!.mesh.exchange(5, syntheticPayload(n, 0, 5), { waitMs: HANG_GUARD_MS });
    await until(() => staleSent, HANG_GUARD_MS, 'p0 to ask p2');
    // p1 is ready only once p0 took p2's stale question: p0 can pair with it only by pairing again.
    const b = p1!.mesh.exchange(9, syntheticPayload(n, 1, 9), { waitMs: HANG_GUARD_MS });
    const [ra, rb] = await Promise.all([a, b]);
    const both = JSON.stringify({ p0: { ...ra, payload: null }, p1: { ...rb, payload: null }, toP2, fromP2 });
    // It happened as told: p0 said yes to the stale question, and p2 answered that it was not ready.
    expect(toP2, both).toContainEqual({ t: 'pair-ack', nonce: 77, ok: true, round: 5 });
    expect(fromP2, both).toContainEqual({ t: 'abort', round: 0, reason: 'not-ready', yourRound: 5 });
    expect(ra.via, both).toBe('direct');
    expect(ra.partner, both).toBe('p1');
    expect(ra.outcome, both).toBe('paired');
    expect(rb.partner, both).toBe('p0');
    expect(rb.outcome, both).toBe('paired');
    // Bounded as ever: the wait, one connect and one deadline.
    expect(ra.elapsedMs).toBeLessThanOrEqual(ra.budgetMs);
    // p2 was not counted as stalling us, nor rested.
    expect((p0!.mesh as unknown as MeshCore).resting('p2', 6)).toBe(false);
  });

  it('still counts a direct partner that says it was never paired with us after our payload went to it as a stall', async () => {
    // p2 pairs with p0 and announces, but none of its chunks leave; once p0's whole Δ reached it,
    // it claims it was never paired with us. It had our payload: no second pairing, a stall.
    let s!: Swarm;
    let lied = false;
    const onReceive = (remote: string, bytes: Uint8Array) => {
      let f;
      try { f = decodeFrame(bytes); } catch { return; }
      if (lied || remote !== 'p0' || f.type !== 'chunk' || f.header.kind !== 'delta' || f.header.chunkIndex !== f.header.chunkCount - 1) return;
      lied = true;
      (s.peer('p2').mesh as unknown as MeshCore).sendControl('p0', { t: 'abort', round: 0, reason: 'paired elsewhere', yourRound: f.header.round });
    };
    s = swarm = new Swarm({
      n: 3, transport: 'memory', elements: n, seed: 5,
      init: { deadline: { minMs: 100, initialMs: HANG_GUARD_MS, maxMs: HANG_GUARD_MS }, neighbours: { min: 2, max: 2 } },
      wrap: (id, links) => (id === 'p2' ? chaosLinks(links, (f, { chunk }) => (chunk ? [] : [f]), onReceive) : links),
    });
    await s.connected(2);
    s.hub.stop();
    const [p0, , p2] = s.peers;
    const core = p0!.mesh as unknown as MeshCore;
    const stalls: string[] = [];
    const noteStall = core.noteStall.bind(core);
    core.noteStall = (peer, round, pooled) => { stalls.push(peer); noteStall(peer, round, pooled); };
    // p1 is busy elsewhere (not exchanging): p0's only ready neighbour is p2.
    const [a] = await Promise.all([
      p0!.mesh.exchange(5, syntheticPayload(n, 0, 5), { waitMs: HANG_GUARD_MS }),
      p2!.mesh.exchange(8, syntheticPayload(n, 2, 8), { waitMs: HANG_GUARD_MS }),
    ]);
    const got = JSON.stringify({ ...a, payload: null });
    expect(lied, got).toBe(true);
    expect(a.partner, got).toBe('p2');
    expect(a.reason, got).toBe('partner-aborted');
    expect(stalls).toEqual(['p2']);
  });
});
