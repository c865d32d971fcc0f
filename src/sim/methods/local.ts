// No communication at all: every replica trains alone on its own stream. The floor every
// method that communicates must beat.
import type { Strategy } from '../simulator.ts';
import { joinNow } from './common.ts';

export function localStrategy(): Strategy {
  return {
    method: 'local',
    loopLength: (sim) => sim.H,
    onLoopsDone(sim, rs) {
      // phi tracks the weights at loop ends so a joiner bootstraps from a recent point.
      for (const r of rs) { r.phi.set(r.theta); sim.startLoop(r); }
    },
    onGone() {},
    onJoin: joinNow,
  };
}
