// NoLoCo as the paper runs it: every replica finishes its H inner steps, all wait for all, then
// a fresh random pairing (one shuffle of the replicas; an odd one out steps alone) and each
// pair exchanges and starts its next loop when its own exchange is done.
import type { Replica, Simulation, Strategy } from '../simulator.ts';
import { shuffle } from '../metrics.ts';
import { joinNow, pairExchange, prepareMessage, soloStep } from './common.ts';

export function nolocoLockstepStrategy(): Strategy {
  const waiting = new Set<Replica>();

  const release = (sim: Simulation) => {
    const active = sim.active();
    if (waiting.size === 0 || active.some((r) => !waiting.has(r))) return;
    waiting.clear();
    const order = shuffle(active, sim.pairRng);
    for (let i = 0; i + 1 < order.length; i += 2) pairExchange(sim, order[i], order[i + 1]);
    if (order.length % 2 === 1) soloStep(sim, order[order.length - 1]);
  };

  return {
    method: 'noloco-lockstep',
    loopLength: (sim) => sim.H,
    onLoopsDone(sim, rs) {
      for (const r of rs) { prepareMessage(sim, r); sim.setState(r, 'wait'); waiting.add(r); }
      release(sim);
    },
    onGone(sim, r) {
      waiting.delete(r);
      release(sim);
    },
    onJoin: joinNow, // joins the current round; the barrier now waits for it too
  };
}
