// NoLoCo with the ready pool (DESIGN.md section 3): a replica that finished its H inner steps
// pairs at once with a replica already waiting in the pool (uniformly at random among them), or
// joins the pool and waits up to `wait` x its own inner-loop time, then steps alone. Nobody waits
// for the slowest.
//
// Replicas finishing at the same instant are served in a random order (one shuffle from the
// pairing generator); with equal speeds and a jitter-free network this makes the same pairs as
// noloco-lockstep, which shuffles all replicas once per round with the same generator.
import type { Replica, Simulation, Strategy } from '../simulator.ts';
import { PRIORITY } from '../simulator.ts';
import { shuffle } from '../metrics.ts';
import { joinNow, pairExchange, prepareMessage, soloStep } from './common.ts';

export function nolocoAsyncStrategy(): Strategy {
  const pool: Replica[] = [];
  const token = new Map<Replica, number>();

  const arrive = (sim: Simulation, r: Replica) => {
    prepareMessage(r);
    if (pool.length > 0) {
      // One waiting replica needs no draw, so a 2-at-a-time pool consumes the generator exactly
      // like lockstep's shuffle does.
      const i = pool.length === 1 ? 0 : sim.pairRng.int(pool.length);
      const partner = pool.splice(i, 1)[0];
      token.set(partner, (token.get(partner) ?? 0) + 1); // cancels its timeout
      pairExchange(sim, partner, r);
      return;
    }
    pool.push(r);
    sim.setState(r, 'wait');
    const mine = (token.get(r) ?? 0) + 1;
    token.set(r, mine);
    const deadline = sim.now + sim.cfg.wait * r.loopTime(sim.H, sim.cfg.stepTime);
    sim.atFor(r, deadline, PRIORITY.timeout, () => {
      if (token.get(r) !== mine || r.state !== 'wait') return;
      pool.splice(pool.indexOf(r), 1);
      soloStep(sim, r);
    });
  };

  return {
    method: 'noloco-async',
    loopLength: (sim) => sim.H,
    onLoopsDone(sim, rs) {
      for (const r of rs.length > 1 ? shuffle(rs, sim.pairRng) : rs) arrive(sim, r);
    },
    onGone(_sim, r) {
      const i = pool.indexOf(r);
      if (i >= 0) pool.splice(i, 1);
      token.set(r, (token.get(r) ?? 0) + 1);
    },
    onJoin: joinNow,
  };
}
