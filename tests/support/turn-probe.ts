// A minimal TURN client (RFC 5766 over UDP, long-term credentials) for the NAT tests: it asks
// a TURN server for a relay (Allocate) and for permission to relay to given peers
// (CreatePermission), and prints what the server answered as JSON. It is how a test proves that
// coturn refuses expired or forged credentials and never relays into denied ranges. Run inside a
// namespace:  node --import ./scripts/node-register.mjs tests/support/turn-probe.ts \
//               <host:port> <username> <password> [peer-ip ...]
import { createSocket } from 'node:dgram';
import { createHash, createHmac, randomBytes } from 'node:crypto';

export const MAGIC = 0x2112a442;
export const ATTR = { USERNAME: 0x0006, MESSAGE_INTEGRITY: 0x0008, ERROR_CODE: 0x0009, REALM: 0x0014, NONCE: 0x0015, XOR_PEER_ADDRESS: 0x0012, REQUESTED_TRANSPORT: 0x0019, XOR_RELAYED_ADDRESS: 0x0016 };
export const ALLOCATE = 0x0003, CREATE_PERMISSION = 0x0008;

export type Attr = [type: number, value: Buffer];

export function encode(method: number, attrs: Attr[], key: Buffer | null): Buffer {
  const tx = randomBytes(12);
  const body = (list: Attr[]) => Buffer.concat(list.map(([t, v]) => {
    const head = Buffer.alloc(4);
    head.writeUInt16BE(t, 0);
    head.writeUInt16BE(v.length, 2);
    return Buffer.concat([head, v, Buffer.alloc((4 - (v.length % 4)) % 4)]);
  }));
  const header = (len: number) => {
    const h = Buffer.alloc(20);
    h.writeUInt16BE(method, 0);
    h.writeUInt16BE(len, 2);
    h.writeUInt32BE(MAGIC, 4);
    tx.copy(h, 8);
    return h;
  };
  const b = body(attrs);
  if (!key) return Buffer.concat([header(b.length), b]);
  // MESSAGE-INTEGRITY covers the header (its length already counting the 24-byte attribute) and
  // every attribute before it.
  const mac = createHmac('sha1', key).update(Buffer.concat([header(b.length + 24), b])).digest();
  return Buffer.concat([header(b.length + 24), b, body([[ATTR.MESSAGE_INTEGRITY, mac]])]);
}

export function decode(msg: Buffer): { cls: 'success' | 'error'; attrs: Map<number, Buffer> } {
  const type = msg.readUInt16BE(0);
  const attrs = new Map<number, Buffer>();
  for (let off = 20; off + 4 <= msg.length;) {
    const t = msg.readUInt16BE(off), len = msg.readUInt16BE(off + 2);
    attrs.set(t, msg.subarray(off + 4, off + 4 + len));
    off += 4 + len + ((4 - (len % 4)) % 4);
  }
  return { cls: (type & 0x0110) === 0x0110 ? 'error' : 'success', attrs };
}

export const errorCode = (attrs: Map<number, Buffer>) => {
  const v = attrs.get(ATTR.ERROR_CODE);
  return v ? v[2]! * 100 + v[3]! : null;
};

export function xorPeer(ip: string, port: number): Buffer {
  const v = Buffer.alloc(8);
  v.writeUInt8(1, 1); // IPv4
  v.writeUInt16BE(port ^ (MAGIC >>> 16), 2);
  const n = ip.split('.').reduce((a, o) => (a * 256 + Number(o)) >>> 0, 0);
  v.writeUInt32BE((n ^ MAGIC) >>> 0, 4);
  return v;
}

export interface ProbeResult {
  /** 'ok' or the error code the server gave the authenticated Allocate (401: credentials refused). */
  allocate: 'ok' | number | 'timeout';
  relayed: boolean;
  /** Per peer address: 'ok' or the CreatePermission error code (403: forbidden IP). */
  permissions: Record<string, 'ok' | number | 'timeout'>;
}

async function probe(server: string, username: string, password: string, peers: string[]): Promise<ProbeResult> {
  const [host, portText] = server.split(':');
  const sock = createSocket('udp4');
  const ask = (m: Buffer) => new Promise<ReturnType<typeof decode> | null>((resolve) => {
    const timer = setTimeout(() => { sock.off('message', on); resolve(null); }, 3000);
    const on = (data: Buffer) => { clearTimeout(timer); sock.off('message', on); resolve(decode(data)); };
    sock.on('message', on);
    sock.send(m, Number(portText), host);
  });
  try {
    const transport: Attr = [ATTR.REQUESTED_TRANSPORT, Buffer.from([17, 0, 0, 0])];
    const first = await ask(encode(ALLOCATE, [transport], null));
    if (!first) return { allocate: 'timeout', relayed: false, permissions: {} };
    const realm = first.attrs.get(ATTR.REALM), nonce = first.attrs.get(ATTR.NONCE);
    if (!realm || !nonce) return { allocate: errorCode(first.attrs) ?? 'ok', relayed: first.cls === 'success', permissions: {} };
    const key = createHash('md5').update(`${username}:${realm.toString()}:${password}`).digest();
    const auth: Attr[] = [[ATTR.USERNAME, Buffer.from(username)], [ATTR.REALM, realm], [ATTR.NONCE, nonce]];
    const alloc = await ask(encode(ALLOCATE, [transport, ...auth], key));
    if (!alloc) return { allocate: 'timeout', relayed: false, permissions: {} };
    if (alloc.cls === 'error') return { allocate: errorCode(alloc.attrs) ?? 0, relayed: false, permissions: {} };
    const permissions: ProbeResult['permissions'] = {};
    for (const peer of peers) {
      const r = await ask(encode(CREATE_PERMISSION, [[ATTR.XOR_PEER_ADDRESS, xorPeer(peer, 9)], ...auth], key));
      permissions[peer] = !r ? 'timeout' : r.cls === 'success' ? 'ok' : (errorCode(r.attrs) ?? 0);
    }
    return { allocate: 'ok', relayed: alloc.attrs.has(ATTR.XOR_RELAYED_ADDRESS), permissions };
  } finally {
    sock.close();
  }
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop()!)) {
  const [server, username, password, ...peers] = process.argv.slice(2);
  if (!server || !username || !password) {
    console.error('usage: turn-probe.ts <host:port> <username> <password> [peer-ip ...]');
    process.exit(2);
  }
  probe(server, username, password, peers).then((r) => { console.log(JSON.stringify(r)); process.exit(0); }, (err) => { console.error(String(err)); process.exit(1); });
}
