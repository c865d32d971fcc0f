// Numbers for people: bytes, durations, token counts, losses, relative times.

// Bytes and rates are shared with the coordinator's link warning: one text for both.
export { formatBytes, formatRate } from '../../protocol/units.ts';

export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '–';
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  const h = Math.floor(m / 60);
  return `${h} h ${m % 60} min`;
}

/** 1234 -> "1.2 K", 5_600_000 -> "5.6 M" */
export function formatCount(n: number): string {
  if (!Number.isFinite(n)) return '–';
  const a = Math.abs(n);
  if (a < 1000) return String(Math.round(n));
  const units = ['K', 'M', 'G', 'T'];
  let i = -1, v = a;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  // 2.2 K, not 2.20 K: trailing zeros read as precision we do not have.
  return `${n < 0 ? '-' : ''}${Number(v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0))} ${units[i]}`;
}

export function formatLoss(x: number | null | undefined): string {
  if (x === null || x === undefined) return '–';
  if (Number.isNaN(x)) return 'NaN';
  if (!Number.isFinite(x)) return x > 0 ? '∞' : '-∞';
  return x.toFixed(3);
}

/** "4 s ago", "3 min ago" */
export function formatAgo(ms: number): string {
  if (!Number.isFinite(ms)) return 'never';
  if (ms < 1000) return 'now';
  return `${formatDuration(ms)} ago`;
}
