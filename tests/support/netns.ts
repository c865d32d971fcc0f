// A small internet on one machine, built from network namespaces, for the NAT tests and
// bench:nat. Only 198.18.0.0/15 (the benchmarking range) and loopback are used, every
// namespace is created here and removed by destroy(), and each namespace drops every packet it
// would send anywhere else (Chromium sends DNS and mDNS as it starts).
//
//   inet   bridge 198.18.0.1/24: the coordinator and coturn; no route to any home
//   r<k>   a NAT router: wan 198.18.0.(10+k)/24 on the bridge, lan 198.18.k.1/24
//   h<k>   a home: 198.18.k.2/24, default route via its router
//
// NAT kinds (nftables on each router, unsolicited inbound dropped in both):
//   cone       masquerade: one mapping per inside socket (port-restricted cone)
//   symmetric  masquerade random,fully-random: a new port for every destination
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

export type NatKind = 'cone' | 'symmetric';

export interface Home {
  ns: string;
  router: string;
  /** The home's own (inside) address. */
  addr: string;
  /** The router's outside address: what the internet sees. */
  wan: string;
}

export interface Topology {
  inet: string;
  /** The internet side's address (coordinator and TURN). */
  inetAddr: string;
  homes: Home[];
  nat: NatKind;
  /** Switch every router's NAT kind (flushes their connection tracking). */
  setNat(kind: NatKind): void;
  /** Starts `cmd args` inside namespace `ns`; killed by destroy() if still running. */
  spawn(ns: string, cmd: string, args: string[], opts?: SpawnOptions): ChildProcess;
  /** Runs to completion inside `ns` and returns stdout. */
  exec(ns: string, cmd: string, args: string[], opts?: { timeoutMs?: number; input?: string; env?: NodeJS.ProcessEnv }): string;
  destroy(): void;
}

const IP = '/usr/sbin/ip';
const NFT = '/usr/sbin/nft';
const CONNTRACK = '/usr/sbin/conntrack';

/** Why namespaces cannot be built here, or null when they can. */
export function netnsUnavailable(): string | null {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    return 'the NAT tests build network namespaces and need root (run `npm test` as root, or in a container with CAP_NET_ADMIN)';
  }
  for (const [bin, pkg] of [[IP, 'iproute2'], [NFT, 'nftables'], [CONNTRACK, 'conntrack'], ['/usr/bin/turnserver', 'coturn']] as const) {
    try {
      execFileSync(bin, ['--version'], { stdio: 'ignore' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return `${bin} is missing: install the Debian package ${pkg} (npm test installs it with apt-get when run as root)`;
    }
  }
  const probe = `murmur-probe-${process.pid}`;
  try {
    execFileSync(IP, ['netns', 'add', probe], { stdio: 'pipe' });
    execFileSync(IP, ['netns', 'del', probe], { stdio: 'pipe' });
  } catch (err) {
    return `\`ip netns add\` fails here (${String((err as { stderr?: Buffer }).stderr ?? err).trim()}): the NAT tests need network namespaces`;
  }
  return null;
}

const sh = (cmd: string, args: string[], input?: string) =>
  execFileSync(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], input, encoding: 'utf8' });

let serial = 0;

/** Builds the topology with `homes` homes behind NATs of kind `nat`. */
export function createTopology(opts: { homes: number; nat: NatKind }): Topology {
  if (opts.homes < 1 || opts.homes > 40) throw new Error(`homes must be in [1, 40], got ${opts.homes}`);
  // Interface names live briefly in the root namespace: keep them unique and under 15 bytes.
  const tag = `${(process.pid % 100000).toString(36)}${(serial++).toString(36)}`;
  const inet = `mur-${tag}-inet`;
  const created: string[] = [];
  const children = new Set<ChildProcess>();
  const inNs = (ns: string, cmd: string, args: string[], input?: string) => sh(IP, ['netns', 'exec', ns, cmd, ...args], input);
  const addNs = (ns: string) => {
    sh(IP, ['netns', 'add', ns]);
    created.push(ns);
    inNs(ns, IP, ['link', 'set', 'lo', 'up']);
    inNs(ns, 'sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    // Nothing leaves this namespace except towards loopback and the test range.
    inNs(ns, NFT, ['-f', '-'], [
      'table inet murmur_guard {',
      '  chain guard_out { type filter hook output priority 0; policy drop;',
      '    oif "lo" accept; ip daddr { 127.0.0.0/8, 198.18.0.0/15 } accept; }',
      '}',
    ].join('\n'));
  };
  const homes: Home[] = [];
  const topo: Topology = {
    inet,
    inetAddr: '198.18.0.1',
    homes,
    nat: opts.nat,
    setNat(kind) {
      for (const h of homes) {
        inNs(h.router, NFT, ['-f', '-'], natRules(kind));
        try { inNs(h.router, CONNTRACK, ['-F']); } catch { /* an empty table is fine */ }
      }
      topo.nat = kind;
    },
    spawn(ns, cmd, args, o = {}) {
      const child = spawn(IP, ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...o, detached: true });
      children.add(child);
      child.once('exit', () => children.delete(child));
      return child;
    },
    exec(ns, cmd, args, o = {}) {
      return execFileSync(IP, ['netns', 'exec', ns, cmd, ...args], {
        encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], input: o.input, timeout: o.timeoutMs ?? 60_000, env: o.env,
      });
    },
    destroy() {
      for (const child of children) {
        // Each child leads its own process group: take helpers it started (Chromium's) with it.
        try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* already gone */ }
      }
      children.clear();
      for (const ns of created.reverse()) {
        // Processes still inside (a grandchild that left the group) would keep it alive.
        try { sh(IP, ['netns', 'pids', ns]).split('\n').filter(Boolean).forEach((p) => { try { process.kill(Number(p), 'SIGKILL'); } catch { /* gone */ } }); } catch { /* ns gone */ }
        try { sh(IP, ['netns', 'del', ns]); } catch { /* already gone */ }
      }
      created.length = 0;
    },
  };
  try {
    addNs(inet);
    inNs(inet, IP, ['link', 'add', 'br0', 'type', 'bridge']);
    inNs(inet, IP, ['addr', 'add', '198.18.0.1/24', 'dev', 'br0']);
    inNs(inet, IP, ['link', 'set', 'br0', 'up']);
    for (let k = 1; k <= opts.homes; k++) {
      const router = `mur-${tag}-r${k}`, ns = `mur-${tag}-h${k}`;
      addNs(router);
      addNs(ns);
      const wan = `198.18.0.${10 + k}`, lan = `198.18.${k}.1`, addr = `198.18.${k}.2`;
      // wan: router <-> bridge port in inet
      const a = `m${tag}w${k}`, b = `m${tag}W${k}`, c = `m${tag}l${k}`, d = `m${tag}L${k}`;
      sh(IP, ['link', 'add', a, 'netns', router, 'type', 'veth', 'peer', 'name', b, 'netns', inet]);
      inNs(router, IP, ['link', 'set', a, 'name', 'wan']);
      inNs(router, IP, ['addr', 'add', `${wan}/24`, 'dev', 'wan']);
      inNs(router, IP, ['link', 'set', 'wan', 'up']);
      inNs(inet, IP, ['link', 'set', b, 'master', 'br0']);
      inNs(inet, IP, ['link', 'set', b, 'up']);
      // lan: router <-> home
      sh(IP, ['link', 'add', c, 'netns', router, 'type', 'veth', 'peer', 'name', d, 'netns', ns]);
      inNs(router, IP, ['link', 'set', c, 'name', 'lan']);
      inNs(router, IP, ['addr', 'add', `${lan}/24`, 'dev', 'lan']);
      inNs(router, IP, ['link', 'set', 'lan', 'up']);
      inNs(ns, IP, ['link', 'set', d, 'name', 'eth0']);
      inNs(ns, IP, ['addr', 'add', `${addr}/24`, 'dev', 'eth0']);
      inNs(ns, IP, ['link', 'set', 'eth0', 'up']);
      inNs(ns, IP, ['route', 'add', 'default', 'via', lan]);
      inNs(router, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0']);
      inNs(router, NFT, ['-f', '-'], natRules(opts.nat));
      homes.push({ ns, router, addr, wan });
    }
  } catch (err) {
    topo.destroy();
    throw err;
  }
  return topo;
}

/** The router's NAT and filter: outbound from the lan is masqueraded, inbound only as replies. */
function natRules(kind: NatKind): string {
  const masq = kind === 'symmetric' ? 'masquerade random,fully-random' : 'masquerade';
  return [
    'table ip murmur_nat', 'delete table ip murmur_nat',
    'table ip murmur_nat {',
    `  chain nat_post { type nat hook postrouting priority 100; oifname "wan" ${masq}; }`,
    '  chain filter_forward { type filter hook forward priority 0; policy drop;',
    '    ct state established,related accept;',
    '    iifname "lan" oifname "wan" accept; }',
    // Unsolicited packets to the router itself are dropped before conntrack confirms them: an
    // entry for one would occupy the port a later outbound mapping wants to keep, and turn a
    // cone NAT symmetric for that destination.
    '  chain filter_input { type filter hook input priority 0; policy accept;',
    '    iifname "wan" ct state new,invalid drop; }',
    '}',
  ].join('\n');
}

/**
 * The reference "topology" for benchmarks: everything on this machine's loopback, no
 * namespaces, no NAT (one home, the host itself).
 */
export function loopbackTopology(homes = 2): Topology {
  const children = new Set<ChildProcess>();
  return {
    inet: '', inetAddr: '127.0.0.1', nat: 'cone',
    homes: Array.from({ length: homes }, () => ({ ns: '', router: '', addr: '127.0.0.1', wan: '127.0.0.1' })),
    setNat() { /* no NAT on loopback */ },
    spawn(_ns, cmd, args, o = {}) {
      const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...o, detached: true });
      children.add(child);
      child.once('exit', () => children.delete(child));
      return child;
    },
    exec(_ns, cmd, args, o = {}) {
      return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], input: o.input, timeout: o.timeoutMs ?? 60_000, env: o.env });
    },
    destroy() {
      for (const child of children) try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ }
      children.clear();
    },
  };
}
