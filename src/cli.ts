// The `murmur` command line. Subcommands live beside the code they drive; this file only
// parses arguments and dispatches.
import { Command } from 'commander';
import { register as registerPrepare } from './commands/prepare.ts';
import { register as registerTrain } from './commands/train.ts';
import { register as registerServe } from './commands/serve.ts';
import { register as registerExport } from './commands/export.ts';
import { register as registerTrainGpu } from './commands/train-gpu.ts';
import { register as registerSim } from './commands/sim.ts';
import { register as registerVolunteer } from './commands/volunteer.ts';
import { register as registerStart } from './commands/start.ts';
import { register as registerTurnConfig } from './commands/turn-config.ts';
import { register as registerIceCheck } from './commands/ice-check.ts';
import { register as registerRotateSessionKey } from './commands/rotate-session-key.ts';
import { register as registerBackup } from './commands/backup.ts';

export async function main(argv: string[]): Promise<void> {
  const program = new Command('murmur')
    .description('Train small language models on donated GPUs with NoLoCo gossip')
    .showHelpAfterError();
  program.exitOverride();
  registerPrepare(program);
  registerTrain(program);
  registerServe(program);
  registerExport(program);
  registerTrainGpu(program);
  registerSim(program);
  registerVolunteer(program);
  registerStart(program);
  registerTurnConfig(program);
  registerIceCheck(program);
  registerRotateSessionKey(program);
  registerBackup(program);
  try {
    await program.parseAsync(argv);
  } catch (err) {
    const e = err as { code?: string; exitCode?: number; message?: string };
    if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version') return;
    if (e.code?.startsWith('commander.')) process.exit(e.exitCode ?? 1);
    console.error(`murmur: ${e.message ?? String(err)}`);
    process.exit(1);
  }
}
