// The TURN host itself is no target. coturn relays to its own relay address on any port (the
// address must stay allowed: two relayed volunteers reach each other through it), so anyone
// with credentials, which every joined peer gets, could send UDP from the TURN host to every
// service it has there (a resolver, syslog, SNMP), past a firewall that filters by source. The
// nftables rules `murmur turn-config --firewall-out` writes (turnFirewall) keep coturn's
// datagrams to this host on its relay ports. Real coturn in a network namespace (198.18.0.1);
// needs root, iproute2, nftables and coturn, like tests/nat.test.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTopology, netnsUnavailable, type Topology } from './support/netns.ts';
import { waitFor } from './support/nat-run.ts';
import { turnCredential, turnUser } from '../server/ice.ts';
import { TURN_DEFAULTS, turnConfig, turnFirewall } from '../server/turn-config.ts';
import { ROOT } from './support/browser.ts';

const SECRET = 'turn-host-test-secret-0123';
const PORT = 3478, MIN = 49160, MAX = 49400;
let topo: Topology | null = null;
let dir = '';
/** coturn's output. */
const log: string[] = [];

beforeAll(async () => {
  const missing = netnsUnavailable();
  if (missing) throw new Error(`NAT tests cannot run: ${missing}`);
  topo = createTopology({ homes: 1, nat: 'cone' });
  dir = mkdtempSync(join(tmpdir(), 'murmur-turn-host-'));
  // The generated config as a public deployment uses it: no extra allow, the relay address allowed,
  // the default bandwidth caps.
  const conf = turnConfig({
    secret: SECRET, realm: 'murmur.test', listenIp: topo.inetAddr, port: PORT, minPort: MIN, maxPort: MAX,
    userQuota: TURN_DEFAULTS.userQuota, totalQuota: 240, maxBps: TURN_DEFAULTS.maxBps, bpsCapacity: TURN_DEFAULTS.bpsCapacity, deny: [], allow: [],
  });
  writeFileSync(join(dir, 'turnserver.conf'), conf, { mode: 0o600 });
  log.length = 0;
  const turn = topo.spawn(topo.inet, '/usr/bin/turnserver', ['-c', join(dir, 'turnserver.conf'), '--pidfile', join(dir, 'turn.pid')]);
  for (const s of [turn.stdout, turn.stderr]) s?.on('data', (d: Buffer) => log.push(...String(d).split('\n')));
  await waitFor('coturn to listen', () => log.some((l) => /Total (UDP|General) servers/i.test(l)), 20_000);
});

afterAll(() => {
  topo?.destroy();
  topo = null;
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A volunteer's credentials: from inside the TURN host, A's relay sends to a UDP service there and to relay B. */
function reach(): { control: boolean; service: number; dropped: number } {
  const { username, credential } = turnCredential(SECRET, turnUser(SECRET, '198.18.1.2'), Math.floor(Date.now() / 1000) + 600);
  const out = topo!.exec(topo!.inet, process.execPath, ['--import', join(ROOT, 'scripts', 'node-register.mjs'), join(ROOT, 'tests', 'support', 'turn-reach.ts'),
    `${topo!.inetAddr}:${PORT}`, username, credential, `${topo!.inetAddr}:5353`, `${MIN}-${MAX}`], { timeoutMs: 60_000 });
  return JSON.parse(out.trim().split('\n').pop()!);
}

describe('the TURN host', () => {
  it('coturn runs the generated config with a per-session and a total bandwidth cap', () => {
    // Before: no bps-capacity line unless --bps-capacity was given, and coturn said
    // "0 bytes per second allowed, combined server capacity": no total at all.
    expect(log).toEqual(expect.arrayContaining([
      expect.stringMatching(new RegExp(`: ${TURN_DEFAULTS.maxBps} bytes per second allowed per session$`)),
      expect.stringMatching(new RegExp(`: ${TURN_DEFAULTS.bpsCapacity} bytes per second allowed, combined server capacity$`)),
    ]));
  });

  it('coturn alone relays to any UDP port of its own address; with turnFirewall only relay ports are reached', () => {
    // Without the rules: the service on 198.18.0.1:5353 gets the datagram a TURN user sent it.
    expect(reach()).toEqual(expect.objectContaining({ service: 1 }));
    const rules = join(dir, 'murmur-turn.nft');
    writeFileSync(rules, turnFirewall({ minPort: MIN, maxPort: MAX, user: 'root' }));
    topo!.exec(topo!.inet, '/usr/sbin/nft', ['-f', rules]);
    topo!.exec(topo!.inet, '/usr/sbin/nft', ['-f', rules]); // loading again replaces, never doubles
    // With them: dropped (counted), while relay A still reaches relay B.
    expect(reach()).toEqual({ control: true, service: 0, dropped: 1 });
  });
});
