import type { Method } from '../config.ts';
import type { Strategy } from '../simulator.ts';
import { ddpStrategy } from './ddp.ts';
import { dilocoStrategy } from './diloco.ts';
import { localStrategy } from './local.ts';
import { nolocoAsyncStrategy } from './noloco-async.ts';
import { nolocoLockstepStrategy } from './noloco-lockstep.ts';

/** A fresh strategy (strategies hold per-run state: the pool, the barrier). */
export function makeStrategy(method: Method): Strategy {
  switch (method) {
    case 'noloco-async': return nolocoAsyncStrategy();
    case 'noloco-lockstep': return nolocoLockstepStrategy();
    case 'diloco': return dilocoStrategy();
    case 'ddp': return ddpStrategy();
    case 'local': return localStrategy();
  }
}
