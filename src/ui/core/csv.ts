// CSV (RFC 4180) of metric reports: one row per report, a header line, CRLF line ends.
// Spreadsheets and pandas read it as is; empty cells are missing values.

export type Cell = string | number | boolean | null | undefined;

export function csvCell(v: Cell): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'number') {
    if (Number.isNaN(v)) return 'NaN';
    if (!Number.isFinite(v)) return v > 0 ? 'Infinity' : '-Infinity';
    return String(v);
  }
  const s = String(v);
  // Quote anything a reader would split on; a leading = + - @ stays as text in a spreadsheet only
  // when quoted, but quoting alone does not stop formula injection, so prefix a single quote. Not
  // only at the start: Excel splits a .csv on the locale's list separator (';' in much of Europe),
  // where our quotes, mid-field, are plain characters and a line break inside them ends the row,
  // so a volunteer's adapter "GPU;=1+cmd|..." or "GPU\n=1+1" put a formula in a cell of its own.
  // So a trigger after ';', a tab or a line break gets the quote too.
  // (No lookbehind: Safari before 16.4 cannot parse one, and the whole dashboard would not load.)
  const safe = s.replace(/(^|[;\t\r\n])(?=[=+\-@\t\r])/g, "$1'");
  return /[",\r\n]/.test(safe) || safe !== s ? `"${safe.replace(/"/g, '""')}"` : safe;
}

export function toCsv<T>(rows: Iterable<T>, columns: { name: string; get: (r: T) => Cell }[]): string {
  const lines = [columns.map((c) => csvCell(c.name)).join(',')];
  for (const r of rows) lines.push(columns.map((c) => csvCell(c.get(r))).join(','));
  return lines.join('\r\n') + '\r\n';
}
