// `murmur ice-check`: proves a deployment's TURN server relays. It asks the coordinator for ICE
// credentials (admin token), then opens a WebRTC data channel between two local peers with the
// relay-only policy, so the only possible path is volunteer -> TURN -> TURN -> volunteer, and
// sends 1 MiB through it. Prints the route, the time to open and the transfer rate, or why not.
import type { Command } from 'commander';
import { schemaProblem } from '../protocol/check.ts';
import { WireIce } from '../protocol/messages.ts';

interface IceCheckOptions { url: string; adminToken?: string; timeout: string; all: boolean }

export function register(program: Command): void {
  program.command('ice-check')
    .description('open a relayed WebRTC link through the coordinator\'s TURN server and send 1 MiB through it')
    .requiredOption('--url <url>', 'coordinator base URL, e.g. https://murmur.example.org')
    .option('--admin-token <token>', 'the coordinator\'s admin token (or env MURMUR_ADMIN_TOKEN)')
    .option('--timeout <seconds>', 'give up after this long', '20')
    .option('--all', 'allow direct candidates too (default: relay only, which tests TURN itself)')
    .action(async (o: IceCheckOptions) => {
      const token = o.adminToken ?? process.env.MURMUR_ADMIN_TOKEN;
      if (!token) throw new Error('--admin-token (or MURMUR_ADMIN_TOKEN) is required: ICE credentials for checks are an admin action');
      const res = await fetch(new URL('/api/ice-check', o.url), { method: 'POST', headers: { authorization: `Bearer ${token}` } });
      if (!res.ok) throw new Error(`the coordinator answered ${res.status}: ${(await res.text()).slice(0, 300)}`);
      const ice = readIce(await res.json());
      if (!o.all && !ice.iceServers.some((s) => s.urls.some((u) => u.startsWith('turn')))) {
        throw new Error('the coordinator hands out no TURN server: start it with --turn and --turn-secret-file (docs/deploy.md)');
      }
      const r = await checkRelay(ice, o.all ? 'all' : 'relay', Number(o.timeout) * 1000);
      console.log(`murmur ice-check: link open in ${r.connectMs.toFixed(0)} ms via ${r.route ? `${r.route.local} -> ${r.route.remote}` : 'an unknown route'}; ` +
        `1 MiB in ${r.transferMs.toFixed(0)} ms (${(1.048576 / (r.transferMs / 1000)).toFixed(1)} MB/s)`);
      process.exit(0);
    });
}

/** The coordinator's reply, checked against the schema volunteers read their ICE servers by. */
export function readIce(body: unknown): WireIce {
  const problem = schemaProblem(WireIce, body, 'ice');
  if (problem !== null) throw new Error(`the coordinator's ICE servers are not in the form volunteers get them: ${problem}`);
  return body as WireIce;
}

async function checkRelay(ice: WireIce, policy: 'all' | 'relay', timeoutMs: number) {
  const [{ default: wrtc }, { simplePeerLinks, describeLinkFailure }] = await Promise.all([import('@roamhq/wrtc'), import('../sync/links.ts')]);
  const links = simplePeerLinks({ rtc: wrtc, ice: () => ({ iceServers: ice.iceServers, policy, expiresAt: ice.expiresAt }) });
  const a = links({ remote: 'b', initiator: true }), b = links({ remote: 'a', initiator: false });
  a.on('signal', (s) => b.signal(s));
  b.on('signal', (s) => a.signal(s));
  const t0 = performance.now();
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(describeLinkFailure(a.info!(), `no link within ${timeoutMs} ms`))), timeoutMs);
      a.on('connect', () => { clearTimeout(timer); resolve(); });
      a.on('close', ({ reason }) => { clearTimeout(timer); reject(new Error(describeLinkFailure(a.info!(), reason))); });
    });
    const connectMs = performance.now() - t0;
    const payload = new Uint8Array(64 * 1024);
    const t1 = performance.now();
    const got = new Promise<void>((resolve) => {
      let n = 0;
      b.on('data', (d) => { n += d.length; if (n >= 16 * payload.length) resolve(); });
    });
    for (let i = 0; i < 16; i++) {
      await a.whenBufferBelow(1 << 20);
      a.send(payload);
    }
    await Promise.race([got, new Promise((_, reject) => setTimeout(() => reject(new Error('the link opened but 1 MiB did not arrive in time')), timeoutMs))]);
    // The route is read from the connection's stats just after it opened.
    await new Promise((r) => setTimeout(r, 100));
    return { connectMs, transferMs: performance.now() - t1, route: a.info!().route };
  } finally {
    a.destroy();
    b.destroy();
  }
}
