// The global barrier DiLoCo and data-parallel share: everyone still training must reach it,
// then one all-reduce (charged from the network model) and one identical update on each member.
// A volunteer who joins while an all-reduce is in flight waits for it, then bootstraps from a
// member, so it starts from the weights everybody else now holds.
import { allReduceBytesPerNode, allReduceTime } from '../../train/network.ts';
import type { Replica, Simulation } from '../simulator.ts';
import { PRIORITY } from '../simulator.ts';

export interface Barrier {
  arrive(sim: Simulation, rs: Replica[]): void;
  gone(sim: Simulation, r: Replica): void;
  join(sim: Simulation, r: Replica): void;
}

/**
 * `reduce(members)` runs when the barrier opens and returns the update to apply to each member
 * once the all-reduce is done; `bootstrap(joiner, donor)` copies what a joiner needs.
 */
export function makeBarrier(
  reduce: (sim: Simulation, members: Replica[]) => (r: Replica) => void,
  bootstrap: (sim: Simulation, joiner: Replica, donor: Replica | null) => void,
): Barrier {
  const waiting = new Set<Replica>();
  let inFlight = false;
  let heldJoiners: Replica[] = [];

  const release = (sim: Simulation) => {
    const active = sim.active();
    if (inFlight || waiting.size === 0 || active.some((r) => !waiting.has(r))) return;
    waiting.clear();
    const members = active; // slot order: every member sums in the same order
    const apply = reduce(sim, members);
    const bytes = sim.factory.messageBytes;
    const seconds = allReduceTime(sim.cfg.allReduce, members.length, bytes, sim.cfg.network, sim.netRng);
    sim.beginComm(members, allReduceBytesPerNode(members.length, bytes));
    inFlight = true;
    sim.at(sim.now + seconds, PRIORITY.comm, () => {
      inFlight = false;
      const survivors = members.filter((r) => r.alive && r.state === 'comm');
      for (const r of survivors) { apply(r); sim.startLoop(r); }
      const held = heldJoiners;
      heldJoiners = [];
      // Joiners held together bootstrap from members, never from each other: pickDonor skips
      // a joiner that has not bootstrapped yet.
      for (const j of held) {
        if (!j.alive) continue;
        bootstrap(sim, j, sim.pickDonor(j));
        sim.startLoop(j);
      }
      release(sim); // everyone else may have gone meanwhile
    });
  };

  return {
    arrive(sim, rs) {
      for (const r of rs) { sim.setState(r, 'wait'); waiting.add(r); }
      release(sim);
    },
    gone(sim, r) {
      waiting.delete(r);
      heldJoiners = heldJoiners.filter((j) => j !== r);
      release(sim);
    },
    join(sim, r) {
      if (inFlight) { heldJoiners.push(r); return; } // stays in 'wait' until the all-reduce lands
      bootstrap(sim, r, sim.pickDonor(r));
      sim.startLoop(r);
    },
  };
}
