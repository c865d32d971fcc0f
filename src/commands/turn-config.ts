// `murmur turn-config`: writes a coturn config that matches this coordinator's TURN secret, with
// the deny lists and caps a public TURN server needs (server/turn-config.ts, docs/deploy.md).
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { intInRange, nonNegativeInt, positiveNum } from './options.ts';
import { bpsFor, RELAY_OVERHEAD, TURN_DEFAULTS, type RelayedRun } from '../../server/turn-config.ts';
import { preset as presetConfig } from '../model/config.ts';
import { buildLayout } from '../model/layout.ts';
import { DEFAULT_DEADLINE, exchangeLink } from '../protocol/exchange-link.ts';

const collect = (v: string, acc: string[]) => [...acc, v];

/** A run's exchange as a relay carries it: bytes each way, φ and Δ of every parameter slot in its encodings. */
export function runExchangeBytes(run: { preset: string; compression: string }): RelayedRun {
  const { bytes } = exchangeLink(run.compression, buildLayout(presetConfig(run.preset)).total);
  return { ...run, bytes };
}

interface TurnConfigCli {
  secretFile: string; realm: string; listenIp: string; relayIp?: string; externalIp?: string; port: string;
  tlsCert?: string; tlsKey?: string; tlsPort: string; minPort: string; maxPort: string; userQuota: string; totalQuota: string;
  maxBps: number; bpsCapacity: number; deny: string[]; allow: string[]; out: string; firewallOut?: string; turnUser: string;
  preset: string; compression: string; exchangeS?: number;
}

export function register(program: Command): void {
  program.command('turn-config')
    .description('write a coturn config for this coordinator: shared-secret auth, private ranges denied, bounded ports and quotas')
    .requiredOption('--secret-file <file>', 'the TURN shared secret (mode 600), the same file `murmur serve --turn-secret-file` reads')
    .requiredOption('--realm <name>', 'TURN realm, e.g. your domain')
    .requiredOption('--listen-ip <ip>', 'address coturn listens on')
    .option('--relay-ip <ip>', 'address relays are allocated on (default: --listen-ip)')
    .option('--external-ip <ip>', 'public address when the host is behind 1:1 NAT (cloud instances)')
    .option('--port <n>', 'TURN/STUN UDP and TCP port', '3478')
    .option('--tls-cert <file>', 'also listen for turns: with this certificate')
    .option('--tls-key <file>', 'its private key')
    .option('--tls-port <n>', 'turns: port', '5349')
    .option('--min-port <n>', 'lowest relay port', '49160')
    .option('--max-port <n>', 'highest relay port (the range holds at least --total-quota ports)', '50359')
    .option('--user-quota <n>', 'concurrent allocations per client address (a host\'s volunteers together; an IPv6 /48 has at most 4 such users, whose allocations at --max-bps reserve at most 4/5 of --bps-capacity)', String(TURN_DEFAULTS.userQuota))
    .option('--total-quota <n>', 'concurrent allocations in all', '1200')
    .option('--max-bps <n>', 'bytes/s per relayed session, each way (0: no cap)', (v) => nonNegativeInt(v, '--max-bps'), TURN_DEFAULTS.maxBps)
    .option('--preset <name>', 'the largest model relayed volunteers train (the run\'s preset: micro, tiny, small, base); its exchange at --max-bps must fit a volunteer\'s wait', 'tiny')
    .option('--compression <name>', 'that run\'s compression (none, fp16, bf16, int8)', 'none')
    .option('--exchange-s <s>', `instead of --max-bps: the seconds a relayed exchange of --preset may take; max-bps is its bytes each way x the relay overhead (${RELAY_OVERHEAD}) / s`, (v) => positiveNum(v, '--exchange-s'))
    .option('--bps-capacity <n>', 'bytes/s for the whole server, each way (0: no cap); one /48\'s users at --max-bps reserve at most 4/5 of it', (v) => nonNegativeInt(v, '--bps-capacity'), TURN_DEFAULTS.bpsCapacity)
    .option('--deny <range>', 'also deny relaying to this range (CIDR, a-b or one address); e.g. the coordinator\'s private addresses (repeatable)', collect, [])
    .option('--allow <range>', 'exception to every deny (repeatable; only what volunteers must reach)', collect, [])
    .option('--out <file>', 'where to write the config (mode 600)', 'turnserver.conf')
    .option('--firewall-out <file>', 'also write nftables rules that keep coturn off this host\'s other UDP services (load with nft -f)')
    .option('--turn-user <name>', 'the user coturn runs as, for --firewall-out', 'turnserver')
    .action(async (o: TurnConfigCli, cmd: Command) => {
      const [{ readSecretFile }, { relayedExchange, turnConfig, turnFirewall }, { writeFileAtomic }] = await Promise.all([
        import('../../server/ice.ts'), import('../../server/turn-config.ts'), import('../../server/fsutil.ts')]);
      if ((o.tlsCert === undefined) !== (o.tlsKey === undefined)) throw new Error('--tls-cert and --tls-key go together');
      // The cap follows the run: its exchange's bytes each way over the time it may take.
      const run = runExchangeBytes({ preset: o.preset, compression: o.compression });
      if (o.exchangeS !== undefined) {
        if (cmd.getOptionValueSource('maxBps') === 'cli') throw new Error('give --max-bps or --exchange-s, not both');
        o.maxBps = bpsFor(run.bytes * RELAY_OVERHEAD, o.exchangeS * 1000);
      }
      const exchange = relayedExchange(o.maxBps, run, DEFAULT_DEADLINE);
      if (exchange.warning) console.warn(`murmur turn-config: warning: ${exchange.warning}`);
      const relay = { minPort: intInRange(o.minPort, '--min-port', 1024, 65535), maxPort: intInRange(o.maxPort, '--max-port', 1024, 65535) };
      const text = turnConfig({
        secret: readSecretFile(resolve(o.secretFile)), realm: o.realm, listenIp: o.listenIp, relayIp: o.relayIp, externalIp: o.externalIp,
        port: intInRange(o.port, '--port', 1, 65535),
        tls: o.tlsCert && o.tlsKey ? { cert: resolve(o.tlsCert), key: resolve(o.tlsKey), port: intInRange(o.tlsPort, '--tls-port', 1, 65535) } : undefined,
        ...relay,
        userQuota: intInRange(o.userQuota, '--user-quota', 1, 10_000), totalQuota: intInRange(o.totalQuota, '--total-quota', 1, 1_000_000),
        maxBps: o.maxBps, bpsCapacity: o.bpsCapacity, deny: o.deny, allow: o.allow,
      });
      // Written whole or not at all, never readable by others: it holds the secret. The temp file
      // has a random name and is created afresh (flag 'wx', mode 600): a file or symlink someone
      // left at a predictable name would have kept its mode or had its target overwritten.
      const rules = o.firewallOut === undefined ? null : turnFirewall({ ...relay, user: o.turnUser });
      const out = resolve(o.out);
      writeFileAtomic(out, Buffer.from(text, 'utf8'), 0o600);
      console.log(`murmur turn-config: wrote ${out} (mode 600; run: turnserver -c ${out})`);
      console.log(exchange.seconds === null
        ? `murmur turn-config: no per-session cap; a relayed exchange of ${run.preset} (${run.bytes} bytes each way) goes as fast as the relay's links`
        : `murmur turn-config: max-bps ${o.maxBps}: a relayed exchange of ${run.preset} (compression ${run.compression}, ${run.bytes} bytes each way, x ${RELAY_OVERHEAD} relay overhead) takes ${exchange.seconds} s`);
      if (rules !== null) {
        const fw = resolve(o.firewallOut!);
        writeFileAtomic(fw, Buffer.from(rules, 'utf8'), 0o644);
        console.log(`murmur turn-config: wrote ${fw} (load it now and at boot: nft -f ${fw})`);
      }
    });
}
