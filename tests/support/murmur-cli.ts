// `murmur <args>` in its own process, as an operator runs it; with `kill`, SIGKILLed at the
// Nth fs.<fn> call whose first argument contains `match` (tests/support/kill-at.mjs).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..', '..');
const KILL_AT = join(import.meta.dirname, 'kill-at.mjs');

export function murmurCli(args: string[], kill?: { fn: string; match: string; nth?: number }): { status: number | null; signal: NodeJS.Signals | null; out: string; err: string } {
  const env = { ...process.env, ...(kill ? { KILL_FN: kill.fn, KILL_MATCH: kill.match, KILL_NTH: String(kill.nth ?? 1) } : {}) };
  const r = spawnSync(process.execPath, ['--import', KILL_AT, join(ROOT, 'bin', 'murmur.mjs'), ...args], { cwd: ROOT, env, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, signal: r.signal, out: r.stdout, err: r.stderr };
}

/**
 * `murmur serve --data-dir dataDir` in its own process, as an operator runs it: loopback, a free
 * port, checkpoints off and warn logs unless `args` say otherwise (a later option wins). Resolves
 * with its URL once it listens; a start that exits first rejects with the tail of its stderr
 * (which `stderr: 'inherit'` passes through instead).
 */
export async function murmurServe(dataDir: string, args: string[] = [], opts: { stderr?: 'pipe' | 'inherit' } = {}): Promise<{ child: ChildProcess; url: string }> {
  const stderr = opts.stderr ?? 'pipe';
  const child = spawn(process.execPath, [join(ROOT, 'bin', 'murmur.mjs'), 'serve', '--data-dir', dataDir, '--port', '0', '--checkpoint-every', '0', '--log-level', 'warn', ...args], {
    cwd: ROOT, stdio: ['ignore', 'pipe', stderr],
  });
  let out: string | null = '', err = '';
  child.stderr?.on('data', (d) => { err = (err + d).slice(-4000); });
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      if (out === null) return; // listening: the rest is drained, not kept
      out += d;
      const m = /murmur listening on (http:\/\/[\d.]+:\d+)/.exec(out);
      if (m) { out = null; resolve(m[1]!); }
    });
    child.on('exit', (code, signal) => reject(new Error(`murmur serve exited with ${code ?? signal} before it listened${err ? `: ${err.slice(-2000)}` : ''}`)));
  });
  return { child, url };
}
