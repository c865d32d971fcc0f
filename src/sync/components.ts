// What the mesh takes from its environment, injected so tests can replace each piece
// (js-libp2p's components pattern): logging and randomness here; time is the one Clock of
// src/protocol/clock.ts. Signaling and the RTC layer are declared beside the code that uses them
// (src/protocol/signaling.ts, links.ts).

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** Logs warnings and errors to the console with a prefix; debug/info only when `verbose`. */
export function consoleLogger(prefix: string, verbose = false): Logger {
  const fmt = (m: string, f?: Record<string, unknown>) => (f ? `${prefix} ${m} ${JSON.stringify(f)}` : `${prefix} ${m}`);
  return {
    debug: (m, f) => { if (verbose) console.debug(fmt(m, f)); },
    info: (m, f) => { if (verbose) console.info(fmt(m, f)); },
    warn: (m, f) => console.warn(fmt(m, f)),
    error: (m, f) => console.error(fmt(m, f)),
  };
}

/** Uniform index in [0, n). */
export function pickIndex(random: () => number, n: number): number {
  return Math.min(n - 1, Math.floor(random() * n));
}

export function pick<T>(random: () => number, items: readonly T[]): T | undefined {
  return items.length === 0 ? undefined : items[pickIndex(random, items.length)];
}
