// `murmur <args>` in its own process, as an operator runs it; with `kill`, SIGKILLed at the
// Nth fs.<fn> call whose first argument contains `match` (tests/support/kill-at.mjs).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..', '..');
const KILL_AT = join(import.meta.dirname, 'kill-at.mjs');

export function murmurCli(args: string[], kill?: { fn: string; match: string; nth?: number }): { status: number | null; signal: NodeJS.Signals | null; out: string; err: string } {
  const env = { ...process.env, ...(kill ? { KILL_FN: kill.fn, KILL_MATCH: kill.match, KILL_NTH: String(kill.nth ?? 1) } : {}) };
  const r = spawnSync(process.execPath, ['--import', KILL_AT, join(ROOT, 'bin', 'murmur.mjs'), ...args], { cwd: ROOT, env, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, signal: r.signal, out: r.stdout, err: r.stderr };
}
