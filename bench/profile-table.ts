// A per-kernel profile's rows and their table: no GPU code, so the Node side of bench:step (run
// by tsx, without the loader that imports WGSL) can print what the page measured.

export interface ProfileRow { kernel: string; dispatches: number; ms: number; share: number }

/** The rows as a table, one line each. */
export function profileLines(rows: ProfileRow[]): string[] {
  return [`${'kernel'.padEnd(44)} ${'n'.padStart(3)} ${'ms'.padStart(9)} ${'share'.padStart(6)}`,
    ...rows.map((r) => `${r.kernel.padEnd(44)} ${String(r.dispatches).padStart(3)} ${r.ms.toFixed(2).padStart(9)} ${(100 * r.share).toFixed(1).padStart(5)}%`)];
}
