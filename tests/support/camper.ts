// A volunteer that never trains but always waits (issue 15's camper): the real headless
// volunteer, whose backend's train() returns at once. Its step counter still advances, so its
// reports claim a round's steps every round, and it is back in the ready pool right after each
// exchange. Its Δ is zero (θ never leaves φ), so it cannot damage anyone: the tests built on it
// measure how often the pool pairs it, not what it sends.
import type { ReplicaBackend } from '../../src/volunteer/backend.ts';

/** `backend` with a train() that does nothing: `steps` copies of a plausible loss, at once. */
export function camping(backend: ReplicaBackend): ReplicaBackend {
  const train = async (steps: number): Promise<number[]> => new Array<number>(steps).fill(4);
  return new Proxy(backend, {
    get(target, prop, receiver) {
      if (prop === 'train') return train;
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}
