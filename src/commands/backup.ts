// `murmur backup --to <dir>`: a consistent copy of a coordinator's data dir, taken while it runs
// (server/backup.ts). Restore by starting `murmur serve --data-dir <dir>`.
import type { Command } from 'commander';
import { resolve } from 'node:path';

export function register(program: Command): void {
  program.command('backup')
    .description('copy a coordinator\'s data dir consistently while it runs: database, secrets, checkpoints and datasets (restore: murmur serve --data-dir <the copy>)')
    .requiredOption('--to <dir>', 'a new folder for the backup (or an empty one)')
    .option('--data-dir <dir>', 'the coordinator\'s data directory', '.murmur')
    .option('--no-datasets', 'leave the prepared datasets out (prepare them again before restoring)')
    .action(async (o: { to: string; dataDir: string; datasets: boolean }) => {
      const { backupDataDir } = await import('../../server/backup.ts');
      const r = backupDataDir(resolve(o.dataDir), resolve(o.to), { datasets: o.datasets });
      process.stdout.write(`backed up ${resolve(o.dataDir)} to ${r.dir} in ${(r.ms / 1000).toFixed(1)} s: ${r.runs} runs, ${r.reports} report rows, ` +
        `${r.checkpoints} checkpoints (${r.checkpointFiles} files), ${r.datasetFiles} dataset files, ${(r.bytes / 1e6).toFixed(1)} MB\n` +
        `  restore: murmur serve --data-dir ${r.dir}\n`);
    });
}
