// What bench:swarm (bench/swarm.ts) reads from its volunteers' round lines, apart from the script
// (which runs on import) so that tests can hold it to what it claims.
import type { ReportFields } from '../src/protocol/messages.ts';

/** What `murmur volunteer --json` prints for each outer round (the fields used here). */
export interface RoundLine {
  report: ReportFields;
  exchange: { outcome: 'paired' | 'solo'; reason: string | null; pairMs: number; elapsedMs: number };
}

/**
 * The swarm's validation loss and the step it stands at: the mean of each volunteer's last
 * measured validation loss (volunteers measure every few rounds) and the mean of the steps of the
 * rounds that measured them, the step to read the simulator and a replica alone at. Volunteers
 * with no measurement are left out of both; null when none has one. (Before 2026-12-07 the loss
 * was read against the mean of the volunteers' last steps, up to a few rounds past their last
 * measurement.)
 */
export function measuredVal(rounds: readonly (readonly RoundLine[])[]): { loss: number; step: number } | null {
  const last = rounds.map((rs) => rs.findLast((e) => typeof e.report.valLoss === 'number')).filter((e): e is RoundLine => e !== undefined);
  if (last.length === 0) return null;
  const mean = (f: (e: RoundLine) => number) => last.reduce((a, e) => a + f(e), 0) / last.length;
  return { loss: mean((e) => e.report.valLoss as number), step: mean((e) => e.report.step) };
}
