// PROTOCOL_VERSION (src/protocol/messages.ts) names the wire schemas. They are strict, so a client
// of another version cannot read what the coordinator sends it: a page left open across an
// upgrade dropped the new welcome (its `stepBase` "is not an allowed field") and waited for one
// forever. Now the coordinator refuses another version's hello with a fatal `bad-version` that
// says what to do, the client stops instead of reconnecting, and a schema change that is not a
// new version fails here.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { WebSocket } from 'ws';
import { CLIENT_SCHEMAS, MeshSignal, PROTOCOL_VERSION, SERVER_SCHEMAS } from '../src/protocol/messages.ts';
import { CONTROL_SCHEMAS } from '../src/protocol/peer-messages.ts';
import { memorySessionStore, SignalingClient, type WebSocketCtor } from '../src/sync/signaling-client.ts';
import { RawPeer, startServer, until, type TestServer } from './support/coordinator.ts';

/**
 * The digest of every schema PROTOCOL_VERSION covers, per version. Version 1 went through several
 * schema revisions before this guard existed, so it has none.
 */
const DIGESTS: Record<number, string> = {
  2: '8bd12877eca26050e098cc10c81c07a43975bfb7b2e4384ae9eabec2edbf0fe0',
  3: 'cf5037a7f360fb32e3c84c677f2bfd2e9b907468064da789d4cadfa624c79048',
  4: '7089b4d0ca159ab72b58cd61dd7bd3c174d49d24f1186d5c981a4a5b8e8c169a',
  5: 'c8ea69b5e96e54bf9ac1248b94e448c399c7e875f0c3e78b4766e734b115ac8e',
  6: 'ebbb4e6b4e9e29b04fcd2f147babe345068496e32685d4df71c92b86a49ecf2c',
};

/** JSON with sorted keys: the same schemas give the same text whatever order they were built in. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

function schemaDigest(): string {
  const all = { client: CLIENT_SCHEMAS, server: SERVER_SCHEMAS, control: CONTROL_SCHEMAS, meshSignal: MeshSignal };
  return createHash('sha256').update(canonical(all)).digest('hex');
}

describe('the protocol version', () => {
  it('names the schemas: a change to them is a new PROTOCOL_VERSION with its digest recorded here', () => {
    expect(DIGESTS[PROTOCOL_VERSION], `PROTOCOL_VERSION ${PROTOCOL_VERSION} has no digest in this file`).toBeDefined();
    expect(schemaDigest(), 'the wire schemas changed without a new PROTOCOL_VERSION (src/protocol/messages.ts says why)').toBe(DIGESTS[PROTOCOL_VERSION]);
  });

  it('the digest sees a change anywhere in the schemas, a nested bound included', () => {
    const before = schemaDigest();
    const hello = CLIENT_SCHEMAS.hello as unknown as { properties: { v: { maximum: number } } };
    const max = hello.properties.v.maximum;
    hello.properties.v.maximum = max + 1;
    try {
      expect(schemaDigest()).not.toBe(before);
    } finally {
      hello.properties.v.maximum = max;
    }
    expect(schemaDigest()).toBe(before);
  });
});

describe('a client of another version', () => {
  let s: TestServer;
  beforeAll(async () => { s = await startServer(); });
  afterAll(async () => { await s?.close(); });

  it('an older one is told to reload or update, with no welcome, and the connection closes', async () => {
    // Version 1: its welcome schema has no stepBase, so it could not read the welcome it was sent.
    const p = await RawPeer.connect(s.wsUrl);
    p.send({ t: 'hello', v: 1 });
    const err = await p.next((m) => m.t === 'error');
    expect(err).toMatchObject({ t: 'error', code: 'bad-version', fatal: true });
    expect((err as { message: string }).message).toBe(
      `protocol version 1 is not supported; this coordinator speaks ${PROTOCOL_VERSION}: reload the page (a browser) or update murmur (a headless volunteer)`);
    expect(await p.waitClosed()).toMatchObject({ reason: 'bad-version' });
    expect(p.frames.some((m) => m.t === 'welcome')).toBe(false);
  });

  it('a newer one is told the coordinator must be updated', async () => {
    const p = await RawPeer.connect(s.wsUrl);
    p.send({ t: 'hello', v: PROTOCOL_VERSION + 1 });
    const err = await p.next((m) => m.t === 'error');
    expect((err as { message: string }).message).toMatch(/this coordinator is older than the client; it must be updated$/);
    expect(await p.waitClosed()).toMatchObject({ reason: 'bad-version' });
  });

  it('the signaling client stops with that message and does not reconnect', async () => {
    // The real client, its hello rewritten to the previous version: a page left open across an upgrade.
    let sockets = 0;
    class OldPage extends WebSocket {
      constructor(url: string) {
        super(url);
        sockets++;
      }
      override send(data: string): void {
        const m = JSON.parse(data) as { t: string; v?: number };
        super.send(m.t === 'hello' ? JSON.stringify({ ...m, v: PROTOCOL_VERSION - 1 }) : data);
      }
    }
    const c = new SignalingClient({ url: s.url, WebSocket: OldPage as unknown as WebSocketCtor, session: memorySessionStore(), backoff: { initialMs: 10, maxMs: 20, jitter: 0 } });
    const stopped: string[] = [];
    let welcomed = false;
    c.on('stopped', (e) => stopped.push(e.reason));
    c.on('welcome', () => { welcomed = true; });
    c.start();
    await until(() => stopped.length > 0, 10_000, 'the client to stop');
    expect(stopped).toEqual([`bad-version: protocol version ${PROTOCOL_VERSION - 1} is not supported; this coordinator speaks ${PROTOCOL_VERSION}: reload the page (a browser) or update murmur (a headless volunteer)`]);
    expect(welcomed).toBe(false);
    // Ten reconnect delays later it has still opened only the one socket.
    await new Promise((r) => setTimeout(r, 200));
    expect(sockets).toBe(1);
    c.stop();
  });
});
