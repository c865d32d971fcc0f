// Checkpoint duty is shared out by client, not by id: the scheduler draws one client (an address,
// or an IPv6 /48) and then one of its eligible ids. Ids of one address vouch for each other on a
// run where nobody else is live (server/peers.ts, noteExchange), so a host can bring many trusted
// ids at no cost; drawn per id, 10 of them beside one honest peer took 10 of every 11 duties.
import { describe, expect, it } from 'vitest';
import type { FastifyBaseLogger } from 'fastify';
import { CheckpointScheduler } from '../server/checkpoint-scheduler.ts';
import type { PeerHub } from '../server/peers.ts';
import type { RunStore } from '../server/runs.ts';
import type { EventLog } from '../server/events.ts';
import { Rng } from '../src/model/rng.ts';
import { addressKey } from '../server/address-budget.ts';
import { FakeClock } from './support/fake-clock.ts';

/** A hub with these live, eligible peers of run `r`, each from the address its entry names. */
function hubOf(clients: Record<string, string>): PeerHub {
  return {
    livePeers: () => Object.keys(clients),
    eligibleForDuty: (p: string) => p in clients,
    addressOf: (p: string) => (p in clients ? addressKey(clients[p]!) : null),
    sendTo: () => true,
  } as unknown as PeerHub;
}

function scheduler(hub: PeerHub, seed: number): CheckpointScheduler {
  const rng = new Rng(seed);
  const logger = { info: () => {}, warn: () => {} } as unknown as FastifyBaseLogger;
  return new CheckpointScheduler(
    { hub, runs: {} as RunStore, events: { append: () => {} } as unknown as EventLog, clock: new FakeClock(), rng: () => rng.uniform(), logger },
    { intervalMs: 0, requestTimeoutMs: 60_000 },
  );
}

/** How many of `n` requests went to each peer (each request answered before the next). */
function duties(s: CheckpointScheduler, n: number): Map<string, number> {
  const got = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const p = s.request('r')!;
    got.set(p.peerId, (got.get(p.peerId) ?? 0) + 1);
    s.take(p.id, p.peerId);
  }
  return got;
}

describe('checkpoint duty per client', () => {
  it('ten ids of one address and one honest peer elsewhere: each client gets about half the duty', () => {
    const clients: Record<string, string> = { honest: '198.51.100.7' };
    for (let i = 0; i < 10; i++) clients[`host-${i}`] = '203.0.113.9';
    const got = duties(scheduler(hubOf(clients), 1), 2000);
    const honest = got.get('honest') ?? 0;
    // Drawn per id the honest peer had 1 in 11 (about 180 of 2,000); per client, half.
    expect(honest).toBeGreaterThan(800);
    expect(honest).toBeLessThan(1200);
    // Within the host, its ids share its half.
    expect([...got.keys()].filter((p) => p.startsWith('host-')).length).toBe(10);
  });

  it('the /64s of one IPv6 /48 are one client, as its ids are', () => {
    const clients: Record<string, string> = { honest: '198.51.100.7' };
    // Eight /64s of 2001:db8:1::/48, an id each.
    for (let i = 0; i < 8; i++) clients[`site-${i}`] = `2001:db8:1:${i.toString(16)}::1`;
    const honest = duties(scheduler(hubOf(clients), 2), 2000).get('honest') ?? 0;
    expect(honest).toBeGreaterThan(800);
    expect(honest).toBeLessThan(1200);
  });
});
