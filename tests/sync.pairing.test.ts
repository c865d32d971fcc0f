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
  it('pairs with the neighbour that says yes to our question, and knows its round from the yes', async () => {
    const m = scriptedMesh(['honest']);
    const p = new DirectPairing(m.mesh, 7, 10_000);
    const [[to, nonce]] = m.asked();
    expect(to).toBe('honest');
    expect(m.sent[0]!.msg).toEqual({ t: 'pair-req', round: 7, nonce });
    p.onAck('honest', { t: 'pair-ack', nonce, ok: true, round: 12 });
    expect(await p.result).toBe('honest');
    expect(p.partnerRound).toBe(12);
  });

  it('says yes to a question, naming our round, and knows the asker\'s round from the question', async () => {
    const m = scriptedMesh([]);
    const p = new DirectPairing(m.mesh, 7, 10_000);
    p.onRequest('asker', { t: 'pair-req', round: 30, nonce: 5 });
    expect(await p.result).toBe('asker');
    expect(p.partnerRound).toBe(30);
    expect(m.sent.map((s) => s.msg)).toEqual([{ t: 'pair-ack', nonce: 5, ok: true, round: 7 }]);
  });

  it('refuses a yes it never asked for (another neighbour, or the asked one with another nonce), answers it with an abort and keeps waiting', async () => {
    const m = scriptedMesh(['honest', 'attacker']);
    const p = new DirectPairing(m.mesh, 7, 10_000);
    const [[to, nonce]] = m.asked();
    expect(to).toBe('honest');
    p.onAck('attacker', { t: 'pair-ack', nonce, ok: true, round: 1 });
    p.onAck('attacker', { t: 'pair-ack', nonce: 1, ok: true, round: 2 });
    p.onAck('honest', { t: 'pair-ack', nonce: nonce + 1, ok: true, round: 3 });
    expect(p.asking).toBe('honest');
    // Each abort names the round the yes carried: the one its sender thinks it is paired with us for.
    expect(m.sent.filter((s) => s.msg.t === 'abort').map((s) => [s.to, s.msg])).toEqual([
      ['attacker', { t: 'abort', round: 7, reason: 'paired elsewhere', yourRound: 1 }],
      ['attacker', { t: 'abort', round: 7, reason: 'paired elsewhere', yourRound: 2 }],
      ['honest', { t: 'abort', round: 7, reason: 'paired elsewhere', yourRound: 3 }],
    ]);
    p.onAck('honest', { t: 'pair-ack', nonce, ok: true, round: 4 });
    expect(await p.result).toBe('honest');
    expect(p.partnerRound).toBe(4);
  });

  it("still takes a late yes to a question that timed out (the neighbour paired with us when it said it)", async () => {
    const m = scriptedMesh(['slow']);
    const p = new DirectPairing(m.mesh, 7, 10_000);
    const [[, first]] = m.asked();
    m.clock.advance(TIMEOUT_MS + 1);
    expect(m.asked()).toHaveLength(2);
    p.onAck('slow', { t: 'pair-ack', nonce: first, ok: true, round: 9 });
    expect(await p.result).toBe('slow');
    expect(p.partnerRound).toBe(9);
  });
});
