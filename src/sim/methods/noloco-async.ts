// NoLoCo with the ready pool: the one pool rule (src/protocol/ready-pool.ts, docs/pairing.md)
// that the coordinator runs, here on the simulated clock (in seconds: with no wait clamps the
// rule has no unit, and no conversion can round a deadline to just before itself). A
// replica that finished its H inner steps enters with a wait of `wait` × the inner loop it just
// ran (as a volunteer times it; a nominal loop time would shrink every wait by the jitter's mean
// correction); the pool pairs it, holds it while a partner is due, or sends it to a solo step.
// Nobody waits for the slowest.
//
// Replicas finishing at the same instant enter in a random order (one shuffle from the pairing
// generator), as messages reach the coordinator one at a time.
import type { Replica, Simulation, Strategy } from '../simulator.ts';
import { PRIORITY } from '../simulator.ts';
import { shuffle } from '../metrics.ts';
import { ReadyPool, type PoolEvents } from '../../protocol/ready-pool.ts';
import { joinNow, pairExchange, prepareMessage, soloStep } from './common.ts';

export function nolocoAsyncStrategy(): Strategy {
  let pool: ReadyPool | null = null;
  const bySlot = new Map<string, Replica>();
  /** Simulated time of the pool timer already scheduled, if any. */
  let armedAt: number | null = null;

  const poolOf = (sim: Simulation): ReadyPool =>
    pool ??= new ReadyPool({ now: () => sim.now, random: () => sim.pairRng.uniform(), minWaitMs: 0, maxWaitMs: Infinity });

  const apply = (sim: Simulation, e: PoolEvents) => {
    for (const m of e.matches) pairExchange(sim, bySlot.get(m.responder.peer)!, bySlot.get(m.initiator.peer)!);
    for (const s of e.solos) soloStep(sim, bySlot.get(s.peer)!);
    const next = poolOf(sim).nextDeadline();
    if (next === null) return;
    const t = next;
    if (armedAt !== null && armedAt <= t && armedAt >= sim.now) return;
    armedAt = t;
    sim.at(t, PRIORITY.timeout, () => {
      if (armedAt === t) armedAt = null;
      apply(sim, poolOf(sim).tick());
    });
  };

  const arrive = (sim: Simulation, r: Replica) => {
    prepareMessage(sim, r);
    const key = String(r.slot);
    bySlot.set(key, r);
    sim.setState(r, 'wait');
    apply(sim, poolOf(sim).enter(key, r.outerSteps, sim.cfg.wait * r.lastLoopTime(sim.H, sim.cfg.stepTime)));
  };

  return {
    method: 'noloco-async',
    loopLength: (sim) => sim.H,
    onLoopsDone(sim, rs) {
      for (const r of rs.length > 1 ? shuffle(rs, sim.pairRng) : rs) arrive(sim, r);
    },
    onGone(_sim, r) {
      pool?.forget(String(r.slot));
    },
    onJoin: joinNow,
  };
}
