// Volunteers across NATs, on one machine: an "internet" namespace with the coordinator and
// coturn, and homes behind NAT routers (tests/support/netns.ts). Every case runs real
// `murmur serve` and `murmur volunteer` processes (CPU backend, `micro`) and checks what the
// volunteers and the coordinator saw. Needs root, iproute2, nftables, conntrack and coturn (npm
// test installs them when run as root); without them these tests fail saying what is missing.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createTopology, netnsUnavailable, type NatKind, type Topology } from './support/netns.ts';
import { createMicroRun, startNatRun, swarmUntil, turnProbe, type IceMode, type NatRun, type SwarmMember } from './support/nat-run.ts';
import { turnCredential } from '../server/ice.ts';
import { DENIED_RANGES } from '../server/turn-config.ts';
import { ROOT } from './support/browser.ts';

let topo: Topology | null = null;
let run: NatRun | null = null;

async function setup(nat: NatKind, ice: IceMode, runExtra: Record<string, unknown> = {}): Promise<NatRun> {
  topo = createTopology({ homes: 2, nat });
  run = await startNatRun(topo, ice);
  createMicroRun(run, 'micro', runExtra);
  return run;
}

afterEach(() => {
  run?.stop();
  run = null;
  topo?.destroy();
  topo = null;
});

beforeAll(() => {
  const missing = netnsUnavailable();
  if (missing) throw new Error(`NAT tests cannot run: ${missing}`);
});

/** Rounds in which the coordinator's pool gave the volunteer a partner. */
const partnered = (m: SwarmMember) => m.rounds.filter((r) => r.exchange.partner !== null);
const paired = (m: SwarmMember) => m.rounds.filter((r) => r.exchange.outcome === 'paired');
const everyone = (n: number, f: (m: SwarmMember) => unknown[]) => (ms: SwarmMember[]) => ms.every((m) => f(m).length >= n);
// An exchange ends at its own budget (pool wait + connect timeout + transfer deadline); a timer
// can fire late by what one training chunk holds the event loop for on a loaded machine.
const TIMER_SLACK_MS = 5_000;

function expectNoLinkAndAReason(ms: SwarmMember[], why: RegExp): void {
  for (const m of ms) {
    expect(paired(m), `home ${m.home} paired across NATs that should block it`).toHaveLength(0);
    for (const r of partnered(m)) {
      expect(r.exchange.reason).toBe('connect-failed');
      expect(r.exchange.linkError).toMatch(why);
    }
    for (const r of m.rounds) expect(r.exchange.elapsedMs).toBeLessThanOrEqual(r.exchange.budgetMs + TIMER_SLACK_MS);
    // The volunteer's own reports say why it trains alone.
    expect(m.rounds.some((r) => r.report.linkFailures > 0 && why.test(r.report.linkError ?? ''))).toBe(true);
  }
}

describe('volunteers across NATs (network namespaces, coturn)', () => {
  it('no ICE servers across two NATs: no link, both solo with the reason, every wait ends at its deadline, the dashboard flags both', async () => {
    const r = await setup('cone', { stun: false, turn: false });
    const ms = await swarmUntil(r, 'micro', [0, 1], everyone(2, partnered), 240_000);
    expectNoLinkAndAReason(ms, /no STUN or TURN server is configured/);
    const c = r.api<{ linkFailures: number; reasons: { reason: string }[]; peers: { failing: boolean; lastLinkError: string | null }[]; exchanges: { direct: number; relayed: number } }>('/api/runs/micro/connectivity');
    expect(c.linkFailures).toBeGreaterThan(0);
    expect(c.reasons[0]!.reason).toMatch(/no STUN or TURN server is configured/);
    expect(c.exchanges).toEqual({ direct: 0, relayed: 0 });
    expect(c.peers.filter((p) => p.failing)).toHaveLength(2);
  });

  it('STUN only, cone NATs: links open on server-reflexive candidates', async () => {
    const r = await setup('cone', { stun: true, turn: false });
    const ms = await swarmUntil(r, 'micro', [0, 1], everyone(2, paired), 240_000);
    for (const m of ms) {
      for (const x of paired(m)) {
        expect(x.exchange.link, 'a paired exchange names its link').not.toBeNull();
        const { local, remote } = x.exchange.link!;
        expect([local, remote]).not.toContain('relay');
        // Host addresses cannot reach across two NATs: at least one side is srflx or prflx.
        expect([local, remote].some((t) => t === 'srflx' || t === 'prflx')).toBe(true);
      }
    }
    const c = r.api<{ exchanges: { direct: number; relayed: number }; relayFraction: number }>('/api/runs/micro/connectivity');
    expect(c.exchanges.direct).toBeGreaterThan(0);
    expect(c.relayFraction).toBe(0);
  });

  it('STUN only, symmetric NATs: no link, reported as needing TURN', async () => {
    const r = await setup('symmetric', { stun: true, turn: false });
    const ms = await swarmUntil(r, 'micro', [0, 1], everyone(2, partnered), 240_000);
    expectNoLinkAndAReason(ms, /no TURN server is configured/);
  });

  it('TURN, symmetric NATs: links open through the relay, >= 95% of partnered rounds exchange, validation loss falls', async () => {
    const r = await setup('symmetric', { stun: true, turn: true });
    // A 95% bound needs a sample where one miss is not already a failure: with 8 partnered rounds
    // each (16 in all) a single round lost to a slow relay allocation on a busy machine read as
    // 94% (a fresh-clone run with a core busy). 20 each: one or two misses are within the bound.
    const enough = (m: SwarmMember) => partnered(m).length >= 20 && m.rounds.filter((x) => typeof x.report.valLoss === 'number').length >= 3;
    const ms = await swarmUntil(r, 'micro', [0, 1], (all) => all.every(enough), 400_000);
    const given = ms.flatMap(partnered), done = ms.flatMap(paired);
    // A payload the partner's checks refused (honest peers are refused now and then: about 2% of
    // rounds in bench:swarm) crossed the link all the same: it counts as carried, not as missed.
    // A fresh-clone run saw 3 such refusals in 42 rounds, which read as 93% before.
    const refused = given.filter((x) => x.exchange.reason === 'rejected'); // 'rejected': the payload arrived and failed the checks
    const missed = given.filter((x) => x.exchange.outcome !== 'paired' && !refused.includes(x)).map((x) => `round ${x.report.round}: ${x.exchange.reason}`);
    const carried = done.length + refused.length;
    expect(carried / given.length, `${carried} of ${given.length} partnered rounds carried over the link (${refused.length} of them refused by the checks); missed: ${missed.join(', ')}`).toBeGreaterThanOrEqual(0.95);
    expect(refused.length, 'refusals between two honest volunteers stay rare').toBeLessThanOrEqual(Math.ceil(0.1 * given.length));
    for (const x of done) expect(x.exchange.link?.local === 'relay' || x.exchange.link?.remote === 'relay').toBe(true);
    for (const m of ms) {
      const val = m.rounds.map((x) => x.report.valLoss).filter((v): v is number => typeof v === 'number');
      expect(val.at(-1)!, `home ${m.home} validation loss ${val.join(' -> ')}`).toBeLessThan(val[0]!);
    }
    const c = r.api<{ exchanges: { relayed: number }; relayFraction: number; medianConnectMs: number }>('/api/runs/micro/connectivity');
    expect(c.relayFraction).toBe(1);
    expect(c.medianConnectMs).toBeGreaterThan(0);
  });

  it('relay-only policy: every selected candidate pair is a relay, even where a direct path exists', async () => {
    const r = await setup('cone', { stun: true, turn: true }, { icePolicy: 'relay' });
    const ms = await swarmUntil(r, 'micro', [0, 1], everyone(3, paired), 240_000);
    for (const x of ms.flatMap(paired)) expect(x.exchange.link).toMatchObject({ local: 'relay', remote: 'relay' });
  });

  it('TURN credentials: renewed before they expire (a link opens through the relay after the first ones expired)', async () => {
    // 10 s credentials: the first volunteer's welcome credentials have expired by the time the
    // second one starts, so their link opens only if the coordinator renewed the first one's.
    const r = await setup('symmetric', { stun: true, turn: true, ttlS: 10 }, { icePolicy: 'relay' });
    let firstRoundAt = 0;
    const ms = await swarmUntil(r, 'micro', [0, 1], everyone(2, paired), 280_000, {
      startWhen: {
        1: ([a]) => {
          if (a!.rounds.length > 0 && firstRoundAt === 0) firstRoundAt = Date.now();
          return firstRoundAt > 0 && Date.now() - firstRoundAt > 14_000;
        },
      },
    });
    for (const x of ms.flatMap(paired)) expect(x.exchange.link).toMatchObject({ local: 'relay', remote: 'relay' });
  });

  it('TURN credentials the TURN server refuses: a clear error in every report, never a silent solo run', async () => {
    const r = await setup('symmetric', { stun: true, turn: true, secret: 'the-real-turn-secret-000', coordinatorSecret: 'a-stale-secret-0000000000' }, { icePolicy: 'relay' });
    const ms = await swarmUntil(r, 'micro', [0, 1], everyone(2, partnered), 240_000);
    expectNoLinkAndAReason(ms, /TURN server gave us no relay candidate: it is unreachable or refused our credentials/);
    // What the coordinator hands out is what coturn refuses.
    const stale = turnCredential('a-stale-secret-0000000000', 'p-0000000000000001', Math.floor(Date.now() / 1000) + 600);
    expect(turnProbe(topo!, topo!.homes[0]!.ns, stale.username, stale.credential).allocate).toBe(401);
  });

  it('coturn from `murmur turn-config`: credentials expire, and relaying into private, loopback and link-local ranges is refused', async () => {
    const r = await setup('cone', { stun: true, turn: true });
    const conf = readFileSync(join(r.dir, 'turnserver.conf'), 'utf8');
    for (const line of ['use-auth-secret', 'no-cli', 'no-multicast-peers', 'no-tcp-relay', 'realm=murmur.test', 'min-port=49160', 'max-port=49400', 'user-quota=16']) {
      expect(conf.split('\n')).toContain(line);
    }
    // Every range the config module denies is in the file (which ranges those are is pinned by
    // the turn-config unit test); the probe below shows coturn refusing them.
    expect(DENIED_RANGES).toContain('127.0.0.0-127.255.255.255');
    for (const range of DENIED_RANGES) expect(conf.split('\n')).toContain(`denied-peer-ip=${range}`);
    const secret = 'nat-test-secret-0123456789';
    const now = Math.floor(Date.now() / 1000);
    const fresh = turnCredential(secret, 'p-00000000000000aa', now + 600);
    const home = topo!.homes[0]!.ns;
    // 198.18.1.2 is a home behind its NAT (denied: only the internet segment is allowed). The
    // private ranges are covered by the coturn file's check against DENIED_RANGES above; the test
    // names no address outside loopback, the test range and link-local/multicast.
    const denied = ['127.0.0.1', '169.254.169.254', '198.18.1.2', '224.0.0.1'];
    const p = turnProbe(topo!, home, fresh.username, fresh.credential, ['198.18.0.12', ...denied]);
    expect(p.allocate).toBe('ok');
    expect(p.relayed).toBe(true);
    expect(p.permissions['198.18.0.12']).toBe('ok');
    for (const ip of denied) expect(p.permissions[ip], `relay to ${ip}`).toBe(403);
    const expired = turnCredential(secret, 'p-00000000000000aa', now - 5);
    expect(turnProbe(topo!, home, expired.username, expired.credential).allocate).toBe(401);
    const forged = turnCredential('not-the-secret-at-all-000', 'p-00000000000000aa', now + 600);
    expect(turnProbe(topo!, home, forged.username, forged.credential).allocate).toBe(401);
    // docs/deploy.md's check: a relay-only link through the deployed TURN, from behind a NAT.
    const check = topo!.exec(home, process.execPath, [join(ROOT, 'bin', 'murmur.mjs'), 'ice-check', '--url', r.base, '--admin-token', r.adminToken], { timeoutMs: 60_000 });
    expect(check).toMatch(/link open in \d+ ms via relay -> relay; 1 MiB in \d+ ms/);
  });
});
