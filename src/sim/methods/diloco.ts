// DiLoCo: H inner steps, a global barrier, an all-reduce of every replica's delta, and the same
// outer momentum step (gamma = 0; heavy-ball or Nesterov, cfg.dilocoMomentum) on every replica,
// whose slow weights therefore stay identical.
import { dilocoOuterStep, localDelta, meanInto } from '../../train/outer.ts';
import type { Strategy } from '../simulator.ts';
import { makeBarrier } from './barrier.ts';

export function dilocoStrategy(): Strategy {
  const barrier = makeBarrier(
    (sim, members) => {
      const deltas = members.map((r) => localDelta(new Float32Array(r.phi.length), r.theta, r.phi));
      const meanDelta = meanInto(new Float32Array(sim.factory.size), deltas);
      return (r) => {
        dilocoOuterStep({ phi: r.phi, momentum: r.mom, theta: r.theta }, meanDelta, sim.cfg.outer, sim.cfg.dilocoMomentum);
        sim.countOuter(r, false);
      };
    },
    (sim, joiner, donor) => sim.bootstrapFrom(joiner, donor),
  );
  return {
    method: 'diloco',
    loopLength: (sim) => sim.H,
    onLoopsDone: (sim, rs) => barrier.arrive(sim, rs),
    onGone: (sim, r) => barrier.gone(sim, r),
    onJoin: (sim, r) => barrier.join(sim, r),
  };
}
