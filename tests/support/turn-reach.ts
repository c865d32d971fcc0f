// Whether a TURN client can reach a UDP service on the TURN host itself through the relay. Run
// inside the TURN server's namespace, as root:
//   node --import ./scripts/node-register.mjs tests/support/turn-reach.ts \
//        <turn host:port> <username> <password> <service ip:port> <relay ports min-max>
// It binds the service, takes two relays (A and B) and from A sends one datagram to B's relay
// (the control: two volunteers relayed by the same server reach each other that way), then one
// to the service (in that order: coturn gives up on a relay whose send the firewall refused). It waits until the service has its datagram, or until the control arrived and the
// TURN host's firewall (turnFirewall, server/turn-config.ts) counted a drop, and prints
// {"control":bool,"service":n,"dropped":n}. A dropped datagram never arrives, so with a drop
// counted and nothing at the service, the service was not reached.
import { createSocket, type Socket } from 'node:dgram';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { TURN_FIREWALL_TABLE } from '../../server/turn-config.ts';
import { ALLOCATE, ATTR, CREATE_PERMISSION, MAGIC, decode, encode, xorPeer, type Attr } from './turn-probe.ts';

const SEND = 0x0016, DATA_INDICATION = 0x0017, DATA = 0x0013;

function fromXor(v: Buffer): { ip: string; port: number } {
  const port = v.readUInt16BE(2) ^ (MAGIC >>> 16);
  const n = (v.readUInt32BE(4) ^ MAGIC) >>> 0;
  return { ip: [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.'), port };
}

/**
 * A client socket on a port outside the relay range: this client runs as root in the TURN
 * host's namespace, as coturn does here, so the firewall's rule (coturn's user, from a relay
 * port) would drop its own requests to coturn from an ephemeral port that fell in that range.
 */
async function clientSocket(avoid: readonly [number, number]): Promise<Socket> {
  for (;;) {
    const sock = createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, r));
    const { port } = sock.address();
    if (port < avoid[0] || port > avoid[1]) return sock;
    sock.close();
  }
}

async function relay(host: string, port: number, username: string, password: string, avoid: readonly [number, number]) {
  const sock = await clientSocket(avoid);
  const ask = (m: Buffer) => new Promise<ReturnType<typeof decode>>((resolve, reject) => {
    const timer = setTimeout(() => { sock.off('message', on); reject(new Error('the TURN server did not answer')); }, 5000);
    const on = (data: Buffer) => { clearTimeout(timer); sock.off('message', on); resolve(decode(data)); };
    sock.on('message', on);
    sock.send(m, port, host);
  });
  const transport: Attr = [ATTR.REQUESTED_TRANSPORT, Buffer.from([17, 0, 0, 0])];
  const first = await ask(encode(ALLOCATE, [transport], null));
  const realm = first.attrs.get(ATTR.REALM)!, nonce = first.attrs.get(ATTR.NONCE)!;
  const key = createHash('md5').update(`${username}:${realm.toString()}:${password}`).digest();
  const auth: Attr[] = [[ATTR.USERNAME, Buffer.from(username)], [ATTR.REALM, realm], [ATTR.NONCE, nonce]];
  const alloc = await ask(encode(ALLOCATE, [transport, ...auth], key));
  if (alloc.cls !== 'success') throw new Error('allocate refused');
  const relayed = fromXor(alloc.attrs.get(ATTR.XOR_RELAYED_ADDRESS)!);
  return {
    sock, relayed,
    async permit(ip: string) {
      const r = await ask(encode(CREATE_PERMISSION, [[ATTR.XOR_PEER_ADDRESS, xorPeer(ip, 9)], ...auth], key));
      if (r.cls !== 'success') throw new Error(`permission to ${ip} refused`);
    },
    send(ip: string, to: number, text: string) {
      sock.send(encode(SEND, [[ATTR.XOR_PEER_ADDRESS, xorPeer(ip, to)], [DATA, Buffer.from(text)]], null), port, host);
    },
  };
}

async function main(): Promise<void> {
  const [server, username, password, service, range] = process.argv.slice(2);
  if (!server || !username || !password || !service || !range) throw new Error('usage: turn-reach.ts <turn host:port> <username> <password> <service ip:port> <relay ports min-max>');
  const avoid = range.split('-').map(Number) as [number, number];
  const [host, portText] = server.split(':') as [string, string];
  const [serviceIp, servicePortText] = service.split(':') as [string, string];
  const got: string[] = [];
  const svc: Socket = createSocket('udp4');
  svc.on('message', (d) => got.push(d.toString()));
  await new Promise<void>((r) => svc.bind(Number(servicePortText), serviceIp, r));
  const a = await relay(host, Number(portText), username, password, avoid);
  const b = await relay(host, Number(portText), username, password, avoid);
  await a.permit(serviceIp);
  await a.permit(b.relayed.ip);
  await b.permit(a.relayed.ip);
  let control = false;
  b.sock.on('message', (m: Buffer) => { if (m.readUInt16BE(0) === DATA_INDICATION) control = true; });
  a.send(b.relayed.ip, b.relayed.port, 'to relay B');
  a.send(serviceIp, Number(servicePortText), 'to the service');
  const dropped = () => {
    let text = '';
    try { text = execFileSync('/usr/sbin/nft', ['list', 'table', 'inet', TURN_FIREWALL_TABLE], { stdio: ['ignore', 'pipe', 'ignore'] }).toString(); } catch { return 0; }
    return Number(/counter packets (\d+)/.exec(text)?.[1] ?? 0);
  };
  const give = Date.now() + 15_000; // a failure, not a measurement: one of the two conditions holds within milliseconds
  while (!(got.length > 0 || (control && dropped() > 0)) && Date.now() < give) await new Promise((r) => setTimeout(r, 20));
  console.log(JSON.stringify({ control, service: got.length, dropped: dropped() }));
  process.exit(0);
}

main().catch((err) => { console.error(String(err)); process.exit(1); });
