// Byte counts and link rates for people, in one place: the coordinator's warning to a run's
// creator (linkWarning, exchange-link.ts) and the pages (src/ui/core/format.ts re-exports these)
// name a rate in the same words. A leaf: it imports nothing, so the UI's core may use it.

/** 1234 -> "1.23 KB", 139_000 -> "139 KB"; "–" for what is no byte count. */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n) || n < 0) return '–';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0, v = n;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${units[i]}`;
}

/** A link rate for people: "1.45 MB/s (11.6 Mbit/s)", "139 KB/s (1.1 Mbit/s)". */
export function formatRate(bytesPerS: number): string {
  if (!Number.isFinite(bytesPerS) || bytesPerS < 0) return '–';
  return `${formatBytes(bytesPerS)}/s (${((bytesPerS * 8) / 1e6).toFixed(1)} Mbit/s)`;
}
