// Pieces NoLoCo's two pairing rules share: a pair exchange and a solo step.
import { STALE_NONE, nolocoOuterStep, outerMessage, staleOuter } from '../../train/outer.ts';
import { pairExchangeTime } from '../../train/network.ts';
import type { Replica, Simulation } from '../simulator.ts';
import { PRIORITY } from '../simulator.ts';

/** Freezes what r would send now: copies of phi and delta = theta - phi. */
export function prepareMessage(sim: Simulation, r: Replica): void {
  r.msg = outerMessage(r.phi, r.theta);
  sim.observeOwn(r);
}

/**
 * a and b exchange phi and delta (each sends both tensors); when both messages have arrived each
 * checks the other's as its mesh would (src/sync/validate.ts), judges the pair step with the probe
 * (its forward passes on its own clock; src/round/probe.ts), applies the pair outer step or, if
 * the checks or the probe refused it, a solo step (counted solo when the checks refused it, as
 * the mesh's 'rejected'), and starts its next inner loop. A member that left meanwhile is skipped; its message had already been sent, so the
 * other still completes its step.
 */
export function pairExchange(sim: Simulation, a: Replica, b: Replica): void {
  const bytes = 2 * sim.factory.messageBytes;
  const seconds = pairExchangeTime(bytes, sim.cfg.network, sim.netRng);
  sim.beginComm([a, b], bytes);
  for (const [r, other] of [[a, b], [b, a]] as const) {
    const sent = other.msg!, partnerId = `${other.slot}/${other.stream}`;
    // The rounds the two messages were sent at, as a volunteer's payload names its round.
    const behind = r.outerSteps - other.outerSteps;
    sim.atFor(r, sim.now + seconds + sim.probeSeconds(r), PRIORITY.comm, () => {
      // As the mesh passes it on (clipped, or refused), then as the probe judges it.
      const checked = sim.checkPartner(r, partnerId, sent, behind);
      // The consensus rule for a partner rounds behind (SimConfig.stale): a smaller γ, or no pair step.
      const h = staleOuter(sim.cfg.outer, behind, sim.cfg.stale ?? STALE_NONE);
      const partner = h === null ? null : checked;
      const accept = partner !== null && sim.probePair(r, partnerId, partner, behind, h!);
      nolocoOuterStep({ phi: r.phi, momentum: r.mom, theta: r.theta }, accept ? [r.msg!, partner] : [r.msg!], h ?? sim.cfg.outer);
      // A payload the checks refused is a solo step, as the mesh reports it (reason 'rejected'); one
      // the probe rejected counts as paired, as a volunteer's exchange did pair (the probe counts
      // its rejections). Before 2026-12-07 a refused payload counted as paired too.
      sim.countOuter(r, partner === null);
      sim.startLoop(r);
    });
  }
}

/** r found no partner: an outer step with a group of one, no communication. */
export function soloStep(sim: Simulation, r: Replica): void {
  nolocoOuterStep({ phi: r.phi, momentum: r.mom, theta: r.theta }, [r.msg!], sim.cfg.outer);
  sim.countOuter(r, true);
  sim.startLoop(r);
}

/** Default join: bootstrap from a random present replica and start training at once. */
export function joinNow(sim: Simulation, r: Replica): void {
  sim.bootstrapFrom(r, sim.pickDonor(r));
  sim.startLoop(r);
}
