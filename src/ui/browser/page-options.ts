// Options of the volunteer page that its URL may set, beside ?run= (runs.ts):
//   ?evalEvery=N   validation loss every N outer steps (0: never); default: the controller's (5).
// For tests and researchers watching a run closely; a value out of range is ignored with a
// console warning rather than breaking the page.
export interface PageOptions {
  evalEveryRounds?: number;
}

export const MAX_EVAL_EVERY = 1000;

export function pageOptions(search: string, warn: (msg: string) => void = (m) => console.warn(m)): PageOptions {
  const q = new URLSearchParams(search);
  const out: PageOptions = {};
  const raw = q.get('evalEvery');
  if (raw !== null) {
    const n = /^\d{1,4}$/.test(raw) ? Number(raw) : NaN;
    if (Number.isInteger(n) && n <= MAX_EVAL_EVERY) out.evalEveryRounds = n;
    else warn(`ignoring ?evalEvery=${raw.slice(0, 20)}: expected an integer from 0 to ${MAX_EVAL_EVERY}`);
  }
  return out;
}
