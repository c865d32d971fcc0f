// `murmur volunteer`: a headless peer that donates this machine's GPU (or CPU) to a run on a
// coordinator, with the same Trainer, mesh and signaling client as the browser page.
import type { Command } from 'commander';
import { atLeastOne, nonNegativeInt, positiveInt } from './options.ts';
import type { BackendKind } from '../volunteer/backend.ts';
import type { WebSocketCtor } from '../sync/signaling-client.ts';
import type { WireLoss } from '../protocol/messages.ts';

interface VolunteerCliOptions {
  url: string;
  run?: string;
  backend: string;
  rounds?: number;
  steps?: number;
  seed?: number;
  evalEvery: number;
  throttle: number;
  autotune: boolean;
  probe: boolean;
  quiet: boolean;
  verbose: boolean;
  json: boolean;
}

export function register(program: Command): void {
  program.command('volunteer')
    .description('join a run on a coordinator and train headless (GPU via Dawn, or the CPU reference) with NoLoCo gossip')
    .requiredOption('--url <url>', 'coordinator base URL, e.g. http://127.0.0.1:8787')
    .option('--run <id>', 'run to join (default: the coordinator\'s default run)')
    .option('--backend <kind>', 'gpu (the WGSL Trainer on Dawn) or cpu (the TypeScript reference)', 'gpu')
    .option('--rounds <n>', 'stop after this many outer rounds', (v) => positiveInt(v, '--rounds'))
    .option('--steps <n>', 'stop after the outer round that reaches this many inner steps', (v) => positiveInt(v, '--steps'))
    .option('--seed <n>', 'data-window stream of this replica (default: the replica number the coordinator assigns)', (v) => nonNegativeInt(v, '--seed'))
    .option('--eval-every <n>', 'validation loss every n outer rounds (0: never)', (v) => nonNegativeInt(v, '--eval-every'), 5)
    .option('--throttle <x>', 'train x times slower than this machine allows (>= 1): rest (x − 1) × each chunk\'s compute time, to donate a share of it', (v) => atLeastOne(v, '--throttle'), 1)
    .option('--no-autotune', 'GPU: use the default kernel shapes instead of measuring (cached per adapter)')
    .option('--no-probe', 'apply partners\' updates unjudged (only to measure what the probe costs; docs/design.md section 6.1)')
    .option('--quiet', 'print only the summary')
    .option('--verbose', 'print mesh and link events too')
    .option('--json', 'print one JSON object per outer round (report and exchange) and one for the summary, nothing else')
    .action(async (o: VolunteerCliOptions) => {
      const [{ WebSocket }, { default: wrtc }, { runVolunteer }, { consoleLogger }] = await Promise.all([
        import('ws'), import('@roamhq/wrtc'), import('../volunteer/volunteer.ts'), import('../sync/components.ts'),
      ]);
      const logger = consoleLogger('[volunteer]', o.verbose);
      const v = runVolunteer({
        url: o.url, run: o.run, backend: o.backend as BackendKind, rounds: o.rounds, steps: o.steps, seed: o.seed,
        evalEveryRounds: o.evalEvery, throttle: o.throttle, autotune: o.autotune, probe: o.probe,
      }, { WebSocket: WebSocket as unknown as WebSocketCtor, rtc: wrtc, logger });
      v.done.catch(() => { /* the same failure arrives through joined or the await below */ });
      let interrupts = 0;
      const onSignal = (sig: string) => {
        if (++interrupts > 1) process.exit(130); // a second Ctrl-C: leave now
        process.stderr.write(`murmur volunteer: ${sig}, leaving after the current chunk (again to quit at once)\n`);
        void v.stop(`${sig} received`);
      };
      process.on('SIGINT', () => onSignal('SIGINT'));
      process.on('SIGTERM', () => onSignal('SIGTERM'));
      let j;
      try {
        j = await v.joined;
      } catch (err) {
        if ((err as { code?: string }).code !== 'ERR_STOPPED') throw err;
        console.log(`murmur volunteer: ${(err as Error).message}`);
        process.exit(0);
      }
      if (o.json) {
        v.onRound(({ report, exchange, waitMs }) => {
          const { payload: _p, ...ex } = exchange;
          console.log(JSON.stringify({ kind: 'round', report, exchange: ex, waitMs }));
        });
        const s = await v.done;
        console.log(JSON.stringify({ kind: 'summary', ...s }));
        process.exit(0);
      }
      let warnedLinks = false;
      if (!o.quiet) {
        console.log(`murmur volunteer: peer ${j.peerId} in run ${j.run.id} (${j.run.preset}, H=${j.run.train.H}), ${o.backend} on ${j.adapter}; state from ${j.source}`);
        console.log('  round    step   train loss   val loss   tokens/s   partner');
        v.onRound(({ report: r }) => {
          const f = (x: WireLoss) => (x === null ? '       -' : typeof x === 'string' ? x.padStart(8) : x.toFixed(4).padStart(8));
          console.log(`${String(r.round).padStart(7)} ${String(r.step).padStart(7)}     ${f(r.trainLoss)}   ${f(r.valLoss)}   ${r.tokensPerS.toFixed(0).padStart(8)}   ${r.partner ?? 'solo'}`);
        });
      }
      // Links that never open turn every outer step into a solo step: say so, and why, once.
      v.onRound(({ report: r }) => {
        if (warnedLinks || !r.linkError) return;
        warnedLinks = true;
        console.warn(`murmur volunteer: WebRTC links to partners fail, so this volunteer trains alone: ${r.linkError}`);
      });
      const s = await v.done;
      console.log(`murmur volunteer: ${s.reason}; ${s.rounds} outer rounds (${s.paired} paired), ${s.steps} inner steps` +
        `${s.unsentReports > 0 ? `, ${s.unsentReports} reports not delivered` : ''}`);
      // wrtc and Dawn keep native handles alive; the work is done.
      process.exit(0);
    });
}
