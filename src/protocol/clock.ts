// Time as an injected dependency, one interface for the coordinator, the mesh and the UI, so
// timer-driven code (pairing waits, heartbeats, deadlines, duty cycles) runs on a fake clock in
// tests and never sleeps. Lives in src/protocol because that is the leaf both the server and the
// volunteer side may import.
//
// One time base: `now()` is milliseconds since the Unix epoch, as Date.now(). The coordinator
// stores it, the dashboard shows it, and the mesh only takes differences of it, so one base
// serves all three and a value never needs converting between them.
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The real clock. Its timers keep the process alive, as a volunteer waiting for a partner must. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

/** The real clock for background sweeps: its timers do not keep a closing process alive. */
export const backgroundClock: Clock = {
  ...systemClock,
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    (t as { unref?: () => void }).unref?.();
    return t;
  },
};

/** Resolves after `ms` on the given clock. */
export function sleep(clock: Clock, ms: number): Promise<void> {
  return new Promise((resolve) => { clock.setTimeout(resolve, Math.max(0, ms)); });
}
