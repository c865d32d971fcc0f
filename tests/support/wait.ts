// Waiting in tests for a condition, never for a guessed time: poll it, and fail after a deadline
// that only guards against a hang, saying what was awaited. No imports, so any test can use it.

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `fn` every `everyMs` until it returns truthy (or throws after `ms`, saying `what`: a
 * function says what it saw then).
 */
export async function until<T>(fn: () => T | Promise<T>, ms = 5000, what: string | (() => string) = 'condition', everyMs = 20): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${typeof what === 'function' ? what() : what}`);
    await sleep(everyMs);
  }
}
