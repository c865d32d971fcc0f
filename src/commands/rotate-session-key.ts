// `murmur rotate-session-key`: a new key signs volunteers' sessions from the coordinator's next
// start; the previous key still checks the sessions it signed, so nobody is logged out.
import type { Command } from 'commander';
import { resolve } from 'node:path';

export function register(program: Command): void {
  program.command('rotate-session-key')
    .description('sign volunteer sessions with a new key from the next start (tokens signed by the previous key, and by the key the running coordinator signs with, stay valid)')
    .option('--data-dir <dir>', 'the coordinator\'s data directory', '.murmur')
    .action(async (o: { dataDir: string }) => {
      const { rotateSessionSecret } = await import('../../server/auth.ts');
      const keys = rotateSessionSecret(resolve(o.dataDir));
      console.log(`session key rotated in ${resolve(o.dataDir)}: ${keys.length} keys kept (the new one signs); restart the coordinator to use it`);
    });
}
