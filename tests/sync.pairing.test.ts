// Pairing without the coordinator (src/sync/pairing.ts) against a scripted mesh: only a yes to a
// question we put to that neighbour this round makes it our partner. Before the check, any
// neighbour's unasked `pair-ack ok` did: a hostile one could make itself our partner every round.
import { describe, expect, it } from 'vitest';
import { DirectPairing } from '../src/sync/pairing.ts';
import type { MeshCore } from '../src/sync/mesh-core.ts';
import type { ControlMessage } from '../src/protocol/peer-messages.ts';
import { FakeClock } from './support/fake-clock.ts';

const TIMEOUT_MS = 200;

function scriptedMesh(neighbours: string[]) {
  const clock = new FakeClock();
  const sent: { to: string; msg: ControlMessage }[] = [];
  let nonce = 1000;
  const mesh = {
    clock, settings: { pairRequestTimeoutMs: TIMEOUT_MS }, random: () => 0,
    randomU32: () => ++nonce,
    eligibleNeighbours: () => neighbours,
    isBanned: () => false,
    sendControl: (to: string, msg: ControlMessage) => { sent.push({ to, msg }); return true; },
  } as unknown as MeshCore;
  /** The questions put so far: [peer, nonce]. */
  const asked = () => sent.flatMap(({ to, msg }) => (msg.t === 'pair-req' ? [[to, msg.nonce] as const] : []));
  return { mesh, clock, sent, asked };
}

describe('direct pairing', () => {
  it('pairs with the neighbour that says yes to our question', async () => {
    const m = scriptedMesh(['honest']);
    const p = new DirectPairing(m.mesh, 7, 10_000);
    const [[to, nonce]] = m.asked();
    expect(to).toBe('honest');
    p.onAck('honest', { t: 'pair-ack', nonce, ok: true });
    expect(await p.result).toBe('honest');
  });

  it('refuses a yes it never asked for (another neighbour, or the asked one with another nonce), answers it with an abort and keeps waiting', async () => {
    const m = scriptedMesh(['honest', 'attacker']);
    const p = new DirectPairing(m.mesh, 7, 10_000);
    const [[to, nonce]] = m.asked();
    expect(to).toBe('honest');
    p.onAck('attacker', { t: 'pair-ack', nonce, ok: true });
    p.onAck('attacker', { t: 'pair-ack', nonce: 1, ok: true });
    p.onAck('honest', { t: 'pair-ack', nonce: nonce + 1, ok: true });
    expect(p.asking).toBe('honest');
    expect(m.sent.filter((s) => s.msg.t === 'abort').map((s) => s.to)).toEqual(['attacker', 'attacker', 'honest']);
    p.onAck('honest', { t: 'pair-ack', nonce, ok: true });
    expect(await p.result).toBe('honest');
  });

  it("still takes a late yes to a question that timed out (the neighbour paired with us when it said it)", async () => {
    const m = scriptedMesh(['slow']);
    const p = new DirectPairing(m.mesh, 7, 10_000);
    const [[, first]] = m.asked();
    m.clock.advance(TIMEOUT_MS + 1);
    expect(m.asked()).toHaveLength(2);
    p.onAck('slow', { t: 'pair-ack', nonce: first, ok: true });
    expect(await p.result).toBe('slow');
  });
});
