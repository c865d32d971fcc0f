// Waiting in tests for a condition, never for a guessed time: poll it, and fail after a deadline
// that only guards against a hang, saying what was awaited. No imports, so any test can use it.

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The shortest deadline any wait here gets. A deadline only guards against a hang: a condition
 * that holds in 50 ms alone took seconds while a full suite shared the 2 cores with other work,
 * and a wait that then ran out failed a fresh-clone run for nothing. A wait asked for less gets
 * this; one that passes returns as soon as its condition holds, so it costs nothing.
 */
export const HANG_GUARD_MS = 30_000;

/** A wait's deadline: what it asked for, and never under HANG_GUARD_MS. */
export const guarded = (ms: number) => Math.max(ms, HANG_GUARD_MS);

/**
 * Polls `fn` every `everyMs` until it returns truthy (or throws after `ms`, at least
 * HANG_GUARD_MS, saying `what`: a function says what it saw then).
 */
export async function until<T>(fn: () => T | Promise<T>, ms = HANG_GUARD_MS, what: string | (() => string) = 'condition', everyMs = 20): Promise<T> {
  const deadline = Date.now() + guarded(ms);
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${typeof what === 'function' ? what() : what}`);
    await sleep(everyMs);
  }
}
