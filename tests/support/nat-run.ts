// A Murmur run across the namespace internet (tests/support/netns.ts): coturn and the
// coordinator (`murmur serve`) in the internet namespace, headless volunteers (`murmur
// volunteer`, CPU backend) in the homes. Used by tests/nat.*.test.ts and bench/nat.ts.
import { execFileSync, type ChildProcess } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { turnConfig, TURN_DEFAULTS } from '../../server/turn-config.ts';
import { ROOT } from './browser.ts';
import type { Topology } from './netns.ts';

export const COORDINATOR_PORT = 8787;
export const TURN_PORT = 3478;
const NODE = process.execPath;
const REGISTER = join(ROOT, 'scripts', 'node-register.mjs');
const MURMUR = join(ROOT, 'bin', 'murmur.mjs');

/** Lines a child printed, kept for the failure message. */
function capture(child: ChildProcess, into: string[]): void {
  const keep = (d: Buffer) => {
    for (const line of String(d).split('\n')) if (line) into.push(line);
    if (into.length > 400) into.splice(0, into.length - 400);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
}

/**
 * Every line `child` prints (stdout and stderr), each after the ms since it started, appended to
 * `file` as it comes: the whole log, where SwarmMember.log keeps the last 400 lines.
 */
export function keepLog(child: ChildProcess, file: string): void {
  const t0 = Date.now();
  const out = createWriteStream(file, { flags: 'a' });
  // Per stream, a line split across two chunks is written whole once its end comes.
  const keep = (stream: NodeJS.ReadableStream | null) => {
    let buf = '';
    stream?.on('data', (d: Buffer) => {
      buf += String(d);
      const lines = buf.split('\n');
      buf = lines.pop()!;
      for (const line of lines) if (line) out.write(`${Date.now() - t0} ${line}\n`);
    });
    return () => { if (buf) out.write(`${Date.now() - t0} ${buf}\n`); buf = ''; };
  };
  const flushOut = keep(child.stdout), flushErr = keep(child.stderr);
  child.once('close', () => { flushOut(); flushErr(); out.end(); });
}

/** Resolves once `test()` holds, checking every `everyMs`; rejects with `what` after `timeoutMs`. */
export async function waitFor<T>(what: string, test: () => T | null | undefined | false | Promise<T | null | undefined | false>, timeoutMs: number, everyMs = 200): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await test();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export interface IceMode {
  stun: boolean;
  turn: boolean;
  /** Secret coturn checks; the coordinator's is this unless `coordinatorSecret` differs. */
  secret?: string;
  coordinatorSecret?: string;
  ttlS?: number;
}

export interface NatRunOptions {
  /** Serve the coordinator over https with a fresh self-signed certificate for its address. */
  tls?: boolean;
  /** coturn's max-bps and bps-capacity (server/turn-config.ts); default 0 and 0, no caps. */
  turnCaps?: { maxBps: number; bpsCapacity: number };
}

export interface NatRun {
  dir: string;
  base: string;
  /** With `tls`: the certificate file (PEM) and its SPKI sha256 (base64) for Chromium's --ignore-certificate-errors-spki-list. */
  tls: { cert: string; spki: string } | null;
  adminToken: string;
  coordinatorLog: string[];
  turnLog: string[];
  /** GET (or send) JSON to the coordinator from inside the internet namespace. */
  api<T = unknown>(path: string, init?: { method?: string; body?: unknown; admin?: boolean }): T;
  /** A volunteer in home `k` (0-based); resolves with its exit code and output. */
  volunteer(k: number, args: string[]): { child: ChildProcess; log: string[]; exit: Promise<number | null> };
  stop(): void;
}

const DEFAULT_SECRET = 'nat-test-secret-0123456789';

export async function startNatRun(topo: Topology, ice: IceMode, opts: NatRunOptions = {}): Promise<NatRun> {
  const dir = mkdtempSync(join(tmpdir(), 'murmur-nat-'));
  let tls: NatRun['tls'] = null;
  // Node children (api calls, volunteers) trust the test certificate, and only it, besides the usual CAs.
  let env: NodeJS.ProcessEnv | undefined;
  const children: ChildProcess[] = [];
  const coordinatorLog: string[] = [], turnLog: string[] = [];
  const secret = ice.secret ?? DEFAULT_SECRET;
  const ip = topo.inetAddr;
  try {
    if (ice.stun || ice.turn) {
      // The generated config as an operator would use it, with the test's internet segment as the
      // one range relays may reach (everything else in 198.18.0.0/15 stays denied: the homes).
      const conf = turnConfig({
        secret, realm: 'murmur.test', listenIp: ip, port: TURN_PORT, minPort: 49160, maxPort: 49400,
        userQuota: TURN_DEFAULTS.userQuota, totalQuota: 240, maxBps: opts.turnCaps?.maxBps ?? 0, bpsCapacity: opts.turnCaps?.bpsCapacity ?? 0, deny: [], allow: ['198.18.0.0/24'],
      });
      writeFileSync(join(dir, 'turnserver.conf'), conf, { mode: 0o600 });
      const turn = topo.spawn(topo.inet, '/usr/bin/turnserver', ['-c', join(dir, 'turnserver.conf'), '--pidfile', join(dir, 'turn.pid')]);
      capture(turn, turnLog);
      children.push(turn);
      await waitFor('coturn to listen', () => turnLog.some((l) => /Total (UDP|General) servers/i.test(l) || /IPv4. UDP listener opened/i.test(l)), 20_000);
    }
    writeFileSync(join(dir, 'turn-secret'), ice.coordinatorSecret ?? secret, { mode: 0o600 });
    // A fresh namespace has every port free; on loopback let the system pick one.
    const args = [MURMUR, 'serve', '--host', ip, '--port', String(topo.inet === '' ? 0 : COORDINATOR_PORT), '--data-dir', join(dir, 'coord'), '--checkpoint-every', '0', '--log-level', 'warn'];
    if (ice.stun) args.push('--stun', `stun:${ip}:${TURN_PORT}`);
    if (ice.turn) args.push('--turn', `turn:${ip}:${TURN_PORT}`, '--turn-secret-file', join(dir, 'turn-secret'));
    if (ice.ttlS) args.push('--turn-ttl', String(ice.ttlS));
    if (opts.tls) {
      tls = selfSignedCert(dir, ip);
      args.push('--tls-cert', tls.cert, '--tls-key', join(dir, 'tls-key.pem'));
      env = { ...process.env, NODE_EXTRA_CA_CERTS: tls.cert };
    }
    const coord = topo.spawn(topo.inet, NODE, args, { cwd: ROOT, env });
    capture(coord, coordinatorLog);
    children.push(coord);
    await waitFor('the coordinator to listen', () => {
      if (coord.exitCode !== null) throw new Error(`murmur serve exited (${coord.exitCode}):\n${coordinatorLog.join('\n')}`);
      return coordinatorLog.some((l) => l.startsWith('murmur listening on'));
    }, 60_000);
  } catch (err) {
    for (const c of children) try { process.kill(-c.pid!, 'SIGKILL'); } catch { /* gone */ }
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const base = /^murmur listening on (\S+)/.exec(coordinatorLog.find((l) => l.startsWith('murmur listening on'))!)![1]!;
  const adminToken = readFileSync(join(dir, 'coord', 'admin-token'), 'utf8').trim();
  const run: NatRun = {
    dir, base, tls, adminToken, coordinatorLog, turnLog,
    api<T>(path: string, init: { method?: string; body?: unknown; admin?: boolean } = {}): T {
      const req = {
        method: init.method ?? 'GET',
        headers: { 'content-type': 'application/json', ...(init.admin ? { authorization: `Bearer ${adminToken}` } : {}) },
        ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
      };
      const script = 'const [u, r] = JSON.parse(process.argv[1]); fetch(u, r).then(async (x) => { const t = await x.text(); ' +
        'if (!x.ok) { console.error(x.status + " " + t); process.exit(1); } process.stdout.write(t); }, (e) => { console.error(String(e)); process.exit(1); });';
      const out = topo.exec(topo.inet, NODE, ['-e', script, JSON.stringify([base + path, req])], { timeoutMs: 30_000, env });
      return JSON.parse(out) as T;
    },
    volunteer(k, extra) {
      const home = topo.homes[k]!;
      const child = topo.spawn(home.ns, NODE, [MURMUR, 'volunteer', '--url', base, '--backend', 'cpu', ...extra], { cwd: ROOT, env });
      const log: string[] = [];
      capture(child, log);
      children.push(child);
      const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      return { child, log, exit };
    },
    stop() {
      for (const c of children) try { process.kill(-c.pid!, 'SIGKILL'); } catch { /* gone */ }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return run;
}

/** A self-signed certificate (and key) for `ip`, as an operator testing TLS without a CA would make. */
function selfSignedCert(dir: string, ip: string): { cert: string; spki: string } {
  const cert = join(dir, 'tls-cert.pem'), key = join(dir, 'tls-key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', `/CN=${ip}`, '-addext', `subjectAltName=IP:${ip}`, '-keyout', key, '-out', cert], { stdio: 'pipe' });
  const der = new X509Certificate(readFileSync(cert)).publicKey.export({ type: 'spki', format: 'der' });
  return { cert, spki: createHash('sha256').update(der).digest('base64') };
}

/** The `micro` run every NAT case trains: small enough for two CPU volunteers on two cores. */
export function createMicroRun(run: NatRun, id: string, extra: Record<string, unknown> = {}): void {
  run.api('/api/runs', {
    method: 'POST', admin: true,
    body: {
      id, dataset: 'moby-dick', preset: 'micro',
      train: { batch: 4, H: 10, lr: 3e-3, warmupSteps: 4, totalSteps: 2000 },
      // Both volunteers share two cores with everything else: a generous pool wait pairs them.
      pairWaitFrac: 2,
      ...extra,
    },
  });
}

/** What coturn answers a client in `ns` (tests/support/turn-probe.ts). */
export function turnProbe(topo: Topology, ns: string, username: string, password: string, peers: string[] = []): {
  allocate: 'ok' | number | 'timeout'; relayed: boolean; permissions: Record<string, 'ok' | number | 'timeout'>;
} {
  const out = topo.exec(ns, NODE, ['--import', REGISTER, join(ROOT, 'tests', 'support', 'turn-probe.ts'), `${topo.inetAddr}:${TURN_PORT}`, username, password, ...peers], { timeoutMs: 60_000 });
  return JSON.parse(out.trim().split('\n').pop()!);
}

/** One outer round as `murmur volunteer --json` prints it. */
export interface RoundLine {
  report: { round: number; step: number; valLoss: number | string | null; partner: string | null; linkLocal: string | null; linkRemote: string | null; connectMs: number | null; linkFailures: number; linkError: string | null };
  exchange: { partner: string | null; outcome: 'paired' | 'solo'; reason: string | null; elapsedMs: number; budgetMs: number; pairMs: number; transferMs: number; link: { local: string; remote: string; connectMs: number | null } | null; linkError: string | null; bytesReceived: number };
}

export interface SwarmMember {
  home: number;
  rounds: RoundLine[];
  summary: Record<string, unknown> | null;
  log: string[];
}

/**
 * Volunteers in homes `homes` (one each) on run `runId`, until `done(members)` holds; then each
 * is asked to stop (SIGTERM: it leaves after its current chunk and prints its summary).
 */
export async function swarmUntil(
  run: NatRun, runId: string, homes: number[], done: (m: SwarmMember[]) => boolean, timeoutMs: number,
  opts: { extra?: string[]; startWhen?: Record<number, (m: SwarmMember[]) => boolean>; logDir?: string } = {},
): Promise<SwarmMember[]> {
  const members: SwarmMember[] = homes.map((home) => ({ home, rounds: [], summary: null, log: [] }));
  const procs: (ReturnType<NatRun['volunteer']> | null)[] = homes.map(() => null);
  const start = (i: number) => {
    const m = members[i]!;
    const v = run.volunteer(m.home, ['--run', runId, '--json', '--eval-every', '2', ...(opts.extra ?? [])]);
    let buf = '';
    v.child.stdout!.on('data', (d: Buffer) => {
      buf += String(d);
      let cut: number;
      while ((cut = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, cut);
        buf = buf.slice(cut + 1);
        if (!line.startsWith('{')) continue;
        const o = JSON.parse(line) as { kind: string } & RoundLine & Record<string, unknown>;
        if (o.kind === 'round') m.rounds.push({ report: o.report, exchange: o.exchange });
        else if (o.kind === 'summary') m.summary = o;
      }
    });
    m.log = v.log;
    if (opts.logDir) keepLog(v.child, join(opts.logDir, `volunteer-home${m.home}.log`));
    procs[i] = v;
  };
  try {
    await waitFor('the volunteers to reach the test\'s condition', () => {
      for (const [i, p] of procs.entries()) {
        if (!p) {
          const when = opts.startWhen?.[homes[i]!];
          if (!when || when(members)) start(i);
        } else if (p.child.exitCode !== null) {
          throw new Error(`volunteer in home ${homes[i]} exited early (${p.child.exitCode}):\n${p.log.slice(-30).join('\n')}`);
        }
      }
      return procs.every((p) => p !== null) && done(members);
    }, timeoutMs, 250);
  } catch (err) {
    for (const p of procs) p?.child.kill('SIGKILL');
    throw new Error(`${(err as Error).message}\nrounds: ${members.map((m) => m.rounds.map((r) => r.exchange.outcome === 'paired' ? 'P' : (r.exchange.reason ?? 's')[0]).join('')).join(' | ')}\ncoordinator:\n${run.coordinatorLog.slice(-20).join('\n')}`);
  }
  for (const p of procs) p!.child.kill('SIGTERM');
  await Promise.all(procs.map((p, i) => waitFor('a volunteer to leave', () => p!.child.exitCode !== null || members[i]!.summary !== null, 30_000)));
  return members;
}
