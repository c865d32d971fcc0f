// `npm start -- --local-volunteers N`: N headless volunteers as child processes of this one,
// each a `murmur volunteer` against the given coordinator. Separate processes, not in-process
// peers: each has its own event loop, Dawn instance and WebRTC stack, as separate machines would.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { BackendKind } from './backend.ts';
import { VolunteerConfigError } from './errors.ts';

export interface LocalVolunteersOptions {
  run?: string;
  backend?: BackendKind;
  rounds?: number;
  steps?: number;
  evalEvery?: number;
  autotune?: boolean;
  /** Train this many times slower than the machine allows (`--throttle`, >= 1). */
  throttle?: number;
  /** One JSON object per outer round on stdout (`--json`), for a caller that reads it. */
  json?: boolean;
  /**
   * Where each child's output goes: this process's (prefixed lines), nowhere, or the child's own
   * stdout/stderr pipes for the caller to read. Default 'prefixed'.
   */
  output?: 'prefixed' | 'ignore' | 'pipe';
  /** Extra arguments for every child (after the others). */
  extraArgs?: string[];
}

export interface LocalVolunteers {
  readonly children: readonly ChildProcess[];
  /** Exit codes (null when killed by a signal) once every child ended. */
  readonly exited: Promise<(number | null)[]>;
  /** SIGINT to every child (each leaves cleanly), SIGKILL to those still there after `graceMs`. */
  stop(graceMs?: number): Promise<(number | null)[]>;
}

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'murmur.mjs');

/** The `murmur volunteer` argument list for one child (exported for tests and the lead's wiring). */
export function volunteerArgs(url: string, opts: LocalVolunteersOptions = {}): string[] {
  const args = ['volunteer', '--url', url, '--backend', opts.backend ?? 'gpu'];
  if (opts.run) args.push('--run', opts.run);
  if (opts.rounds !== undefined) args.push('--rounds', String(opts.rounds));
  if (opts.steps !== undefined) args.push('--steps', String(opts.steps));
  if (opts.evalEvery !== undefined) args.push('--eval-every', String(opts.evalEvery));
  if (opts.throttle !== undefined) args.push('--throttle', String(opts.throttle));
  if (opts.autotune === false) args.push('--no-autotune');
  if (opts.json) args.push('--json');
  return [...args, ...(opts.extraArgs ?? [])];
}

export function startLocalVolunteers(url: string, n: number, opts: LocalVolunteersOptions = {}): LocalVolunteers {
  if (!(Number.isInteger(n) && n >= 1 && n <= 64)) throw new VolunteerConfigError(`--local-volunteers must be an integer in [1, 64], got ${n}`);
  const args = volunteerArgs(url, opts);
  const children: ChildProcess[] = [];
  const codes: Promise<number | null>[] = [];
  for (let i = 0; i < n; i++) {
    const child = spawn(process.execPath, [BIN, ...args], {
      stdio: opts.output === 'ignore' ? 'ignore' : ['ignore', 'pipe', 'pipe'],
      env: process.env,
    });
    if (opts.output === undefined || opts.output === 'prefixed') {
      const prefix = `[volunteer ${i + 1}/${n}] `;
      for (const [from, to] of [[child.stdout, process.stdout], [child.stderr, process.stderr]] as const) {
        let rest = '';
        from?.setEncoding('utf8');
        from?.on('data', (chunk: string) => {
          const lines = (rest + chunk).split('\n');
          rest = lines.pop()!;
          for (const l of lines) to.write(prefix + l + '\n');
        });
        from?.on('end', () => { if (rest) to.write(prefix + rest + '\n'); });
      }
    }
    children.push(child);
    codes.push(new Promise((resolve) => {
      child.on('exit', (code) => resolve(code));
      child.on('error', (err) => { process.stderr.write(`volunteer ${i + 1}: could not start: ${err.message}\n`); resolve(null); });
    }));
  }
  const exited = Promise.all(codes);
  return {
    children,
    exited,
    async stop(graceMs = 15_000) {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGINT');
      const timer = setTimeout(() => { for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL'); }, graceMs);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
