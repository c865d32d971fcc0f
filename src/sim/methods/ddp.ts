// Data-parallel AdamW: every replica computes a gradient on its own batch, all wait for the
// slowest, the gradients are all-reduced (charged every step), and each replica applies the same
// AdamW update with the mean gradient, so all weights stay identical.
import { meanInto } from '../../train/outer.ts';
import type { Strategy } from '../simulator.ts';
import { makeBarrier } from './barrier.ts';

export function ddpStrategy(): Strategy {
  const barrier = makeBarrier(
    (sim, members) => {
      const mean = meanInto(new Float32Array(sim.factory.size), members.map((r) => r.learner.grads));
      const lr = sim.cfg.lr(members[0].learner.step, sim.now);
      return (r) => r.learner.applyGrads(mean, lr);
    },
    (sim, joiner, donor) => {
      // A joiner takes the shared weights and the (identical) AdamW state.
      sim.replaceLearner(joiner, sim.factory.create(joiner.stream, sim.factory.initial));
      if (donor) joiner.learner.copyStateFrom(donor.learner);
    },
  );
  return {
    method: 'ddp',
    loopLength: () => 1,
    work(_sim, r) { r.learner.computeGrads(); },
    onLoopsDone: (sim, rs) => barrier.arrive(sim, rs),
    onGone: (sim, r) => barrier.gone(sim, r),
    onJoin: (sim, r) => barrier.join(sim, r),
  };
}
