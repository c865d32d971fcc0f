// `murmur serve`: the coordinator (HTTP + WebSocket on one port, SQLite under the data dir).
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { coordinatorOptions, intInRange } from './options.ts';

export function register(program: Command): void {
  coordinatorOptions(program.command('serve')
    .description('run the coordinator: web app, volunteer WebSocket, metrics, checkpoints and data on one port'))
    .option('--checkpoint-every <seconds>', 'seconds between scheduled checkpoints per run (0: only on request)', '600')
    .option('--keep <n>', 'newest checkpoints kept per run', '5')
    .option('--log-level <level>', 'fatal | error | warn | info | debug', 'info')
    .action(async (o: { dataDir: string; port: string; host: string; checkpointEvery: string; keep: string; logLevel: string }) => {
      const port = intInRange(o.port, '--port', 0, 65535);
      const every = intInRange(o.checkpointEvery, '--checkpoint-every', 0, 365 * 24 * 3600);
      const keep = intInRange(o.keep, '--keep', 1, 10_000);
      const { buildApp } = await import('../../server/app.ts');
      const dataDir = resolve(o.dataDir);
      const c = await buildApp({ dataDir, logLevel: o.logLevel, logStream: process.stderr }, {
        checkpointEveryMs: every * 1000, checkpointKeep: keep,
      });
      const address = await c.app.listen({ port, host: o.host });
      if (c.adminTokenCreated) {
        process.stdout.write(`murmur admin token (shown once; also in ${dataDir}/admin-token): ${c.adminToken}\n`);
      }
      process.stdout.write(`murmur listening on ${address}\n`);
      const stop = (sig: string) => {
        c.app.log.info({ signal: sig }, 'shutting down');
        c.close().then(() => process.exit(0), () => process.exit(1));
      };
      process.once('SIGINT', () => stop('SIGINT'));
      process.once('SIGTERM', () => stop('SIGTERM'));
    });
}
