// `murmur start` (what `npm start` runs): the main job on the embedded default run. Builds the
// web app when its sources changed, starts the coordinator, prints where to volunteer, watch and
// embed, optionally starts N headless volunteers, and prints the run's progress as it trains.
import type { Command } from 'commander';
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { withDirLock } from '../../server/fsutil.ts';
import type { MetricsStore } from '../../server/metrics.ts';
import { coordinatorOptions, intInRange } from './options.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const WEB_DIST = join(ROOT, 'dist', 'web');
const STAMP = join(WEB_DIST, '.built');

/** Newest modification time under the web app's sources (page entries, src, config). */
function newestSource(): number {
  let newest = 0;
  const walk = (p: string) => {
    const st = statSync(p);
    if (st.isDirectory()) for (const e of readdirSync(p)) walk(join(p, e));
    else newest = Math.max(newest, st.mtimeMs);
  };
  for (const p of ['src', 'web', 'public', 'vite.config.ts', 'package-lock.json']) if (existsSync(join(ROOT, p))) walk(join(ROOT, p));
  return newest;
}

const fresh = () => existsSync(STAMP) && statSync(STAMP).mtimeMs >= newestSource();

/**
 * Runs `vite build` unless dist/web is newer than every source. One build at a time: vite empties
 * dist/web first, so a second build (another test file, another `murmur start`) would delete what
 * the first is writing; the second waits and then finds the build fresh.
 */
export async function ensureWebBuild(log: (s: string) => void = console.log): Promise<void> {
  if (fresh()) return;
  mkdirSync(join(ROOT, 'dist'), { recursive: true });
  await withDirLock(join(ROOT, 'dist', '.web-build.lock'), async () => {
    if (fresh()) return;
    log('murmur start: building the web app (vite build)...');
    const { build } = await import('vite');
    await build({ root: ROOT, configFile: join(ROOT, 'vite.config.ts'), logLevel: 'warn' });
    writeFileSync(STAMP, new Date().toISOString() + '\n');
  });
}

/** One line on the run's state: live reporters, newest round, median of each peer's latest val loss. */
export function progressLine(metrics: MetricsStore, runId: string, now: number, windowMs = 120_000): string | null {
  const r = metrics.query({ runId, from: now - windowMs, to: now, maxPoints: 20_000 });
  if (r.downsampled || r.points.length === 0) return null;
  const latest = new Map<string, { round: number; valLoss: number | null; tokensPerS: number | null }>();
  for (const p of r.points) {
    const prev = latest.get(p.peerId);
    // A non-finite loss ("NaN" on the wire) is no level to take a median of; the dashboard alerts on it.
    const val = typeof p.valLoss === 'number' ? p.valLoss : null;
    latest.set(p.peerId, { round: p.round, valLoss: val ?? prev?.valLoss ?? null, tokensPerS: p.tokensPerS });
  }
  const vals = [...latest.values()].map((x) => x.valLoss).filter((x): x is number => x !== null).sort((a, b) => a - b);
  const median = vals.length ? vals[Math.floor((vals.length - 1) / 2)]! : null;
  const round = Math.max(...[...latest.values()].map((x) => x.round));
  const tps = [...latest.values()].reduce((a, x) => a + (x.tokensPerS ?? 0), 0);
  return `run ${runId}: ${latest.size} peer(s) reporting, outer round ${round}, ` +
    `val loss ${median === null ? '-' : median.toFixed(4)} (median of latest), ${Math.round(tps)} tokens/s`;
}

interface StartOptions {
  dataDir: string; port: string; host: string; localVolunteers: string; volunteerBackend: string; progressEvery: string;
}

export function register(program: Command): void {
  coordinatorOptions(program.command('start')
    .description('the main job: coordinator + web app on the default run, optional local volunteers, progress lines'))
    .option('--local-volunteers <n>', 'also start N headless volunteers on this machine', '0')
    .option('--volunteer-backend <kind>', 'gpu (WGSL on Dawn) or cpu (TypeScript reference) for local volunteers', 'gpu')
    .option('--progress-every <seconds>', 'seconds between progress lines (0: none)', '20')
    .action(async (o: StartOptions) => {
      const n = intInRange(o.localVolunteers, '--local-volunteers', 0, 64);
      if (o.volunteerBackend !== 'gpu' && o.volunteerBackend !== 'cpu') throw new Error(`--volunteer-backend must be gpu or cpu, got "${o.volunteerBackend}"`);
      const port = intInRange(o.port, '--port', 0, 65535);
      const every = Number(o.progressEvery);
      if (!(every >= 0)) throw new Error(`--progress-every must be a number >= 0, got "${o.progressEvery}"`);

      await ensureWebBuild();
      const { buildApp } = await import('../../server/app.ts');
      const dataDir = resolve(o.dataDir);
      const c = await buildApp({ dataDir, logLevel: 'warn', logStream: process.stderr });
      const address = await c.app.listen({ port, host: o.host });
      const base = address.replace('://0.0.0.0', '://127.0.0.1');
      if (c.adminTokenCreated) console.log(`admin token (shown once; also in ${dataDir}/admin-token): ${c.adminToken}`);
      const run = c.runs.list().find((r) => r.id === 'default') ?? c.runs.list()[0];
      console.log(`murmur coordinator on ${base} — run "${run?.id}" (${run?.preset ?? '?'} on ${run?.dataset ?? '?'})`);
      console.log(`  volunteer page  ${base}/`);
      console.log(`  dashboard       ${base}/dashboard`);
      console.log(`  embed           <script src="${base}/embed.js" data-run="${run?.id ?? 'default'}"></script>`);
      console.log(`                  on sites the run allows: PATCH /api/runs/${run?.id ?? 'default'} {"embedSites": ["https://your.site"]}`);

      let volunteers: { stop(graceMs?: number): Promise<unknown> } | null = null;
      if (n > 0) {
        const { startLocalVolunteers } = await import('../volunteer/local.ts');
        volunteers = startLocalVolunteers(base, n, { backend: o.volunteerBackend as 'gpu' | 'cpu', run: run?.id });
        console.log(`  started ${n} headless ${o.volunteerBackend} volunteer(s)`);
      } else {
        console.log('  no volunteers yet: open the volunteer page in a WebGPU browser, or run with -- --local-volunteers 2');
      }

      const timer = every > 0 && run ? setInterval(() => {
        const line = progressLine(c.metrics, run.id, Date.now());
        if (line) console.log(line);
      }, every * 1000) : null;
      let stopping = false;
      const stop = async (sig: string) => {
        if (stopping) process.exit(130);
        stopping = true;
        console.log(`murmur start: ${sig}, stopping volunteers and the coordinator`);
        if (timer) clearInterval(timer);
        await volunteers?.stop(10_000);
        await c.close();
        process.exit(0);
      };
      process.on('SIGINT', () => void stop('SIGINT'));
      process.on('SIGTERM', () => void stop('SIGTERM'));
    });
}
