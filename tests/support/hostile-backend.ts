// A hostile volunteer's trainer for tests and benchmarks: Murmur's own backend with its payload
// altered just before it is sent, as an attacker would build it from our code (issue 15). The
// volunteer takes it through its createBackend component, so everything else (signaling, mesh,
// pool, reports) is the honest code path.
import { createBackend, type BackendInit, type BackendKind, type ReplicaBackend } from '../../src/volunteer/backend.ts';
import type { OuterPayload } from '../../src/sync/types.ts';

/**
 * The direction attacks of issue 15 that the size checks of src/sync/validate.ts cannot see:
 * Δ negated at the honest norm, and Δ × −20 (inside the 30× reject bound, clipped to 3×).
 */
export type Attack = 'sign-flip' | 'scale-flip';

function alter(attack: Attack, p: OuterPayload): OuterPayload {
  switch (attack) {
    case 'sign-flip': return { phi: p.phi, delta: p.delta.map((x) => -x) };
    case 'scale-flip': return { phi: p.phi, delta: p.delta.map((x) => -20 * x) };
  }
}

/** The backend with `attack` applied to every payload it sends; its own outer step stays honest. */
export function hostile(b: ReplicaBackend, attack: Attack): ReplicaBackend {
  return new Proxy(b, {
    get(target, prop, receiver) {
      if (prop === 'outerPayload') return async () => alter(attack, await target.outerPayload());
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

/** A createBackend for VolunteerComponents that makes a hostile backend. */
export function hostileFactory(attack: Attack): (kind: BackendKind, init: BackendInit) => Promise<ReplicaBackend> {
  return async (kind, init) => hostile(await createBackend(kind, init), attack);
}
