// The one piece of Node's `process` that simple-peer's stream dependency (readable-stream) uses
// in a browser: process.nextTick. Imported first by the page entries that load the mesh.
// (Sixteen lines here rather than the npm `process` polyfill: nextTick is all that is used.)

type ProcessLike = { nextTick?: unknown; env?: Record<string, string>; browser?: boolean };

/** Gives `g.process` an env and a nextTick (arguments passed on, run after the current task). */
export function installProcessShim(g: { process?: ProcessLike }): void {
  g.process ??= { browser: true };
  g.process.env ??= {};
  if (typeof g.process.nextTick !== 'function') {
    g.process.nextTick = (fn: (...a: unknown[]) => void, ...args: unknown[]) => queueMicrotask(() => fn(...args));
  }
}

installProcessShim(globalThis as { process?: ProcessLike });
