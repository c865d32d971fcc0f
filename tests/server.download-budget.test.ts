// What anonymous downloads may take (server/download-budget.ts): a few open downloads per client
// address and a bounded number in all (each holds a file and a socket), a share of the uplink per
// address and for everyone together, charged up front and given back for what a broken download
// did not send, and a cut for a client that stops reading. Real HTTP over loopback (a download is
// a stream); client addresses come from X-Forwarded-For behind a trusted proxy. The run's token
// file is 48 MiB, more than loopback's socket buffers hold, so a client that pauses stops the
// file's reads. Also: the clients' side (src/protocol/retry-fetch.ts), which waits out a 429 as
// told and asks again, so a crowd behind one address is delayed, not refused.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { get as httpGet, type IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import { buildLayout } from '../src/model/layout.ts';
import { preset } from '../src/model/config.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RawPeer, startServer, type TestServer } from './support/coordinator.ts';
import { until } from './support/wait.ts';
import type { DatasetSource } from '../server/datasets.ts';
import type { DownloadLimits } from '../server/download-budget.ts';
import { byteRange, DEFAULT_DOWNLOAD_LIMITS } from '../server/download-budget.ts';
import { downloadBudgetOption, downloadPlacesOption } from '../src/commands/serve.ts';
import { downloadAssignment, downloadVerified, MAX_ASSIGNMENT_BYTES } from '../src/volunteer/data.ts';
import { DEFAULT_RETRY_AFTER_S, fetchRetrying, fetchWhole, HttpRefusal, MAX_RETRY_AFTER_S, retryAfterMs } from '../src/protocol/retry-fetch.ts';
import type { DataFileRef } from '../src/protocol/messages.ts';
import { WebSocket } from 'ws';
import { SignalingClient, type WebSocketCtor } from '../src/sync/signaling-client.ts';
import { initParams } from '../src/model/init.ts';
import { stateCheckBatchCount } from '../src/data/sampler.ts';
import { encodeStateFrame } from '../src/protocol/state-frame.ts';

const MiB = 1024 * 1024;
const BIG = 48 * MiB;
const dir = mkdtempSync(join(tmpdir(), 'murmur-downloads-'));
const big = new Uint8Array(BIG).map((_, i) => 32 + (i % 90));
const small = new TextEncoder().encode('a small validation file\n');
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** A dataset whose training file is larger than loopback's socket buffers. */
const datasets: DatasetSource = {
  manifest: (name) => name !== 'big' ? null : {
    name, tokenizer: 'bytes', vocab: 256, files: [
      { name: 'train.bin', role: 'train', dtype: 'u8', tokens: BIG, bytes: BIG, sha256: sha(big) },
      { name: 'val.bin', role: 'val', dtype: 'u8', tokens: small.length, bytes: small.length, sha256: sha(small) },
    ],
  },
  filePath: (_d, file) => join(dir, file),
};
const BIG_URL = '/api/runs/r/data/train.bin';
const MICRO_FLOATS = buildLayout(preset('micro')).total;
const SMALL_URL = '/api/runs/r/data/val.bin';

beforeAll(() => {
  writeFileSync(join(dir, 'train.bin'), big);
  writeFileSync(join(dir, 'val.bin'), small);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function server(downloads: Partial<DownloadLimits>): Promise<TestServer> {
  const s = await startServer({ trustProxy: ['127.0.0.1'], defaultRun: false, downloads }, { datasets });
  const r = await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id: 'r', dataset: 'big', preset: 'micro' } });
  expect(r.statusCode, r.body).toBe(201);
  return s;
}

/** A download's response, paused (nothing read past the socket's buffers) unless `read`. */
function open(s: TestServer, url: string, from: string, headers: Record<string, string> = {}): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = httpGet(`${s.url}${url}`, { headers: { 'x-forwarded-for': from, ...headers }, agent: false }, (res) => {
      res.pause();
      res.on('error', () => { /* a download cut or dropped: its 'close' says so */ });
      resolve(res);
    });
    req.on('error', reject);
  });
}

/** The whole body (bytes) and status of a download. */
async function fetchAll(s: TestServer, url: string, from: string, headers: Record<string, string> = {}) {
  const res = await open(s, url, from, headers);
  const chunks: Buffer[] = [];
  res.on('data', (c: Buffer) => chunks.push(c));
  res.resume();
  await new Promise<void>((resolve, reject) => { res.on('end', resolve); res.on('error', reject); });
  const body = Buffer.concat(chunks);
  return { status: res.statusCode!, headers: res.headers, body, json: () => JSON.parse(body.toString()) as { error: string; code: string } };
}

/** fetch, except that a refusal to wait out (429) is thrown with the coordinator's reason instead of waited for. */
const refusing = (async (url: string, init?: RequestInit) => {
  const res = await fetch(url, init);
  if (res.status === 429) throw new Error(`GET ${url} was refused: ${await res.text()}`);
  return res;
}) as typeof fetch;

/** Ends a paused download from the client's side and waits until the coordinator has let go of it. */
async function drop(s: TestServer, res: IncomingMessage, from: string, openBefore: number): Promise<void> {
  res.destroy();
  await until(() => s.c.downloads.open(from) < openBefore, 10_000, `the coordinator to see ${from}'s download end`);
}

/**
 * With the anonymous share in debt, `url` refuses as it refuses any anonymous client a request
 * carrying a forged signature, and then one carrying the session of `joined` once it has left.
 */
async function expectAnonymous(s: TestServer, url: string, joined: { peer: { close(): void }; welcome: { session: string; peerId: string } }): Promise<void> {
  const [body] = joined.welcome.session.split('.');
  const forged = await fetchAll(s, url, '198.18.0.5', { authorization: `Bearer ${body}.${'A'.repeat(43)}` });
  expect(forged.status).toBe(429);
  expect(forged.json().error).toMatch(/^anonymous clients together/);
  joined.peer.close();
  await until(() => !s.c.hub.livePeers('r').includes(joined.welcome.peerId), 10_000, 'the peer to leave');
  const left = await fetchAll(s, url, '198.18.0.5', { authorization: `Bearer ${joined.welcome.session}` });
  expect(left.status).toBe(429);
  expect(left.json().error).toMatch(/^anonymous clients together/);
}

/**
 * Three anonymous addresses download 48 MiB each (and read none of it): 144 MiB of the anonymous
 * 100 (a server whose clock never moves), which are now in debt, and the next anonymous client is
 * refused. The paused downloads, to destroy at the end.
 */
async function anonymousInDebt(s: TestServer): Promise<IncomingMessage[]> {
  const held: IncomingMessage[] = [];
  for (const from of ['198.18.0.1', '198.18.0.2', '198.18.0.3']) {
    const res = await open(s, BIG_URL, from);
    held.push(res);
    expect(res.statusCode).toBe(200);
  }
  return held;
}

describe('download budget', () => {
  it('holds each address to a few open downloads and all clients to a bound, names the limit, and frees a place when one ends', async () => {
    const s = await server({ perAddressStreams: 2, totalStreams: 3 });
    try {
      const a1 = await open(s, BIG_URL, '198.18.0.1');
      const a2 = await open(s, BIG_URL, '198.18.0.1');
      expect([a1.statusCode, a2.statusCode]).toEqual([200, 200]);
      expect(s.c.downloads.open('198.18.0.1')).toBe(2);
      const third = await fetchAll(s, BIG_URL, '198.18.0.1');
      expect(third.status).toBe(429);
      expect(third.headers['retry-after']).toBe('1');
      expect(third.headers['content-disposition']).toBeUndefined();
      expect(third.json()).toEqual({ code: 'download-budget', error: 'this address has 2 downloads open, the limit; retry when one has ended' });
      // Another address has places of its own, until all anonymous clients together hold theirs.
      const b1 = await open(s, BIG_URL, '198.18.0.2');
      expect(b1.statusCode).toBe(200);
      const c1 = await fetchAll(s, SMALL_URL, '198.18.0.3');
      expect(c1.status).toBe(429);
      expect(c1.json().error).toBe('3 downloads are open, the limit for anonymous clients together; retry shortly');
      // The admin token is never refused.
      const admin = await fetchAll(s, SMALL_URL, '198.18.0.3', s.admin);
      expect(admin.status).toBe(200);
      expect(admin.body.toString()).toBe('a small validation file\n');
      // A download that ends frees its place.
      await drop(s, a1, '198.18.0.1', 2);
      const again = await fetchAll(s, SMALL_URL, '198.18.0.1');
      expect(again.status).toBe(200);
      expect(again.body.toString()).toBe('a small validation file\n');
      expect(s.c.downloads.stats).toMatchObject({ refused: 2, cut: 0 });
      a2.destroy();
      b1.destroy();
      await until(() => s.c.downloads.open() === 0, 10_000, 'every download to end');
      // The coordinator is still up and answering.
      expect((await s.c.app.inject({ method: 'GET', url: '/health' })).statusCode).toBe(200);
    } finally {
      await s.close();
    }
  });

  it('charges each address, and all clients together, what they download: past the share a client waits as long as it is told; 304s cost nothing', async () => {
    let mono = 0;
    const s = await server({ perAddressBytesPerS: MiB, perAddressBurstBytes: 60 * MiB, totalBytesPerS: 2 * MiB, totalBurstBytes: 150 * MiB, now: () => mono });
    try {
      // 60 MiB to start with: the first 48 MiB leaves 12, the second overdraws by 36.
      for (let i = 0; i < 2; i++) {
        const r = await fetchAll(s, BIG_URL, '198.18.0.1');
        expect(r.status).toBe(200);
        expect(r.body.length).toBe(BIG);
      }
      expect(s.c.downloads.level('198.18.0.1')).toBe(-36 * MiB);
      const refused = await fetchAll(s, SMALL_URL, '198.18.0.1');
      expect(refused.status).toBe(429);
      expect(refused.headers['retry-after']).toBe('37');
      expect(refused.json().error).toBe('this address has downloaded its share, 1.0 MiB/s gathering up to 60 MiB; retry in 37 s');
      // A refusal is about this moment, not the file: no cache (a proxy in front of a crowd) may
      // keep it, and it carries no validator a revalidation could renew it with.
      expect([refused.headers['cache-control'], refused.headers.etag]).toEqual(['no-store', undefined]);
      // A file the client holds costs nothing, and the admin token is not charged.
      const etag = `"${sha(small)}"`;
      expect((await fetchAll(s, SMALL_URL, '198.18.0.1', { 'if-none-match': etag })).status).toBe(304);
      expect((await fetchAll(s, SMALL_URL, '198.18.0.1', s.admin)).status).toBe(200);
      // Another address has its own share: 96 of the 150 MiB all clients may take are gone.
      expect((await fetchAll(s, BIG_URL, '198.18.0.2')).status).toBe(200);
      // 6 MiB left in all: the next 48 starts and overdraws everyone's share, which then holds the rest back.
      expect((await fetchAll(s, BIG_URL, '198.18.0.3')).status).toBe(200);
      const crowd = await fetchAll(s, SMALL_URL, '198.18.0.4');
      expect(crowd.status).toBe(429);
      expect(crowd.json().error).toMatch(/^anonymous clients together have downloaded their share, 2\.0 MiB\/s gathering up to 150 MiB; retry in 22 s$/);
      // After the wait it was told, the first address downloads again.
      mono += 37_000;
      expect((await fetchAll(s, SMALL_URL, '198.18.0.1')).status).toBe(200);

      // What a broken download did not send is given back (the clock stands still: no refill).
      mono += 1_000_000;
      const before = s.c.downloads.level('198.18.0.5');
      const broken = await open(s, BIG_URL, '198.18.0.5');
      expect(broken.statusCode).toBe(200);
      expect(s.c.downloads.level('198.18.0.5')).toBe(before - BIG);
      await drop(s, broken, '198.18.0.5', 1);
      const back = s.c.downloads.level('198.18.0.5') - (before - BIG);
      expect(back).toBeGreaterThan(0);
      expect(back).toBeLessThanOrEqual(BIG);
      // A HEAD request is charged nothing for the body it does not get.
      const head = await s.c.app.inject({ method: 'HEAD', url: BIG_URL, headers: { 'x-forwarded-for': '198.18.0.6' } });
      expect(head.statusCode).toBe(200);
      await until(() => s.c.downloads.open('198.18.0.6') === 0, 10_000, 'the HEAD request to end');
      expect(s.c.downloads.level('198.18.0.6')).toBe(60 * MiB - (s.c.downloads.stats.bytes - (4 * BIG + small.length + (BIG - back))));
      // Every byte charged was read for a client or given back.
      expect(s.c.downloads.stats.bytes).toBe(4 * BIG + small.length + (BIG - back));
    } finally {
      await s.close();
    }
  });

  it('cuts a download whose client stops reading and frees its place; a client that reads is not cut', async () => {
    const s = await server({ stallWindowMs: 400, minBytesPerS: 256 * 1024, perAddressStreams: 1 });
    try {
      const stalled = await open(s, BIG_URL, '198.18.0.1');
      expect(stalled.statusCode).toBe(200);
      // Two windows without progress: the coordinator cuts it and frees its place.
      await until(() => s.c.downloads.stats.cut === 1 && s.c.downloads.open('198.18.0.1') === 0, 20_000, 'the stalled download to be cut');
      // The client, reading again, gets what the buffers held and then the end: the download was cut short.
      let got = 0;
      stalled.on('data', (c: Buffer) => { got += c.length; });
      const closed = new Promise<void>((resolve) => stalled.once('close', () => resolve()));
      stalled.resume();
      await closed;
      expect(got).toBeLessThan(BIG);
      const reader = await fetchAll(s, BIG_URL, '198.18.0.1');
      expect(reader.status).toBe(200);
      expect(sha(reader.body)).toBe(sha(big));
      expect(s.c.downloads.stats.cut).toBe(1);
    } finally {
      await s.close();
    }
  });

  it('a volunteer waits out a refusal as told and asks again: delayed, not refused', async () => {
    const s = await server({ perAddressStreams: 1 });
    try {
      const held = await open(s, BIG_URL, '127.0.0.1');
      expect(held.statusCode).toBe(200);
      const waits: { status: number; waitMs: number; reason: string }[] = [];
      const ref: DataFileRef = { name: 'val.bin', url: SMALL_URL, bytes: small.length, sha256: sha(small), dtype: 'u8' } as DataFileRef;
      const bytes = await downloadVerified(s.url, ref, fetch, {
        onWait: (w) => { waits.push(w); held.destroy(); },
        // The wait is for the held download's place, not for a guessed time.
        sleep: async () => { await until(() => s.c.downloads.open('127.0.0.1') === 0, 10_000, 'the held download to end'); },
      });
      expect(new TextDecoder().decode(bytes)).toBe('a small validation file\n');
      expect(waits).toEqual([{ status: 429, waitMs: 1000, reason: 'this address has 1 downloads open, the limit; retry when one has ended' }]);
      // Past its total wait it gives up with the coordinator's reason.
      const held2 = await open(s, BIG_URL, '127.0.0.1');
      await expect(downloadVerified(s.url, ref, fetch, { maxWaitMs: 500 })).rejects.toThrow(
        `downloading val.bin from ${s.url}${SMALL_URL} failed: HTTP 429: this address has 1 downloads open, the limit; retry when one has ended`);
      held2.destroy();
    } finally {
      await s.close();
    }
  });

  it('takes no place for a client gone before its download starts, whose socket will not close again', async () => {
    const s = await server({ perAddressStreams: 2 });
    try {
      // Deterministic: a reply whose response is already destroyed, as after the route's own awaits.
      const reply = { raw: { destroyed: true, once: () => { throw new Error('a listener on a closed response never fires'); } } };
      const req = { ip: '198.18.0.9', headers: {}, log: s.c.app.log, url: BIG_URL };
      s.c.downloads.send(req as never, reply as never, { path: join(dir, 'train.bin'), bytes: BIG });
      expect(s.c.downloads.open('198.18.0.9')).toBe(0);
      expect(s.c.downloads.level('198.18.0.9')).toBe(DEFAULT_DOWNLOAD_LIMITS.perAddressBurstBytes);
      // Over sockets: requests whose clients reset their connections at once (the state route awaits
      // its derived file before it starts the download) leave this address its places.
      const ck = await s.c.checkpoints.save(s.c.runs.get('r')!, { meta: { runId: 'r', step: 4, round: 1, floats: MICRO_FLOATS, valLoss: 5, tokens: 100 }, phi: new Float32Array(MICRO_FLOATS), momentum: new Float32Array(MICRO_FLOATS) }, null, Date.now());
      const path = `/api/runs/r/checkpoints/${ck.id}/state`;
      const { port } = new URL(s.url);
      await Promise.all(Array.from({ length: 50 }, () => new Promise<void>((resolve) => {
        const sock = connect(Number(port), '127.0.0.1', () => {
          sock.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.18.0.10\r\n\r\n`);
          sock.resetAndDestroy();
        });
        sock.on('error', () => {});
        sock.on('close', () => resolve());
      })));
      await until(async () => (await fetchAll(s, path, '198.18.0.10')).status === 200, 20_000, 'a download from the address whose clients hung up');
      await until(() => s.c.downloads.open() === 0, 10_000, 'every download to end');
    } finally {
      await s.close();
    }
  });

  it('serves one byte range, charged only its bytes, so a broken download goes on where it stopped', async () => {
    const s = await server({ now: () => 0 });
    try {
      const from = '198.18.0.20';
      const full = DEFAULT_DOWNLOAD_LIMITS.perAddressBurstBytes;
      const part = await fetchAll(s, BIG_URL, from, { range: 'bytes=100-199' });
      expect(part.status).toBe(206);
      expect(part.headers['content-range']).toBe(`bytes 100-199/${BIG}`);
      expect(part.headers['accept-ranges']).toBe('bytes');
      expect(Buffer.compare(part.body, Buffer.from(big.subarray(100, 200)))).toBe(0);
      expect(s.c.downloads.level(from)).toBe(full - 100);
      const tail = await fetchAll(s, BIG_URL, from, { range: 'bytes=-10' });
      expect([tail.status, tail.headers['content-range'], Buffer.compare(tail.body, Buffer.from(big.subarray(BIG - 10)))]).toEqual([206, `bytes ${BIG - 10}-${BIG - 1}/${BIG}`, 0]);
      // Of the same content only: a range with another ETag's If-Range gets the whole file.
      const etag = `"${sha(big)}"`;
      expect((await fetchAll(s, BIG_URL, from, { range: 'bytes=5-', 'if-range': etag })).body.length).toBe(BIG - 5);
      const other = await fetchAll(s, BIG_URL, from, { range: 'bytes=5-', 'if-range': '"0000"' });
      expect([other.status, other.body.length]).toEqual([200, BIG]);
      const past = await fetchAll(s, BIG_URL, from, { range: `bytes=${BIG}-` });
      expect([past.status, past.headers['content-range'], past.headers['cache-control'], past.headers.etag]).toEqual([416, `bytes */${BIG}`, 'no-store', undefined]);
      expect(byteRange('bytes=0-1,5-6', undefined, etag, 10)).toBeNull();
      expect(byteRange('bytes=5-2', undefined, etag, 10)).toBeNull();
      expect(byteRange('bytes=-0', undefined, etag, 10)).toBe('unsatisfiable');
      expect(byteRange('bytes=3-99', undefined, etag, 10)).toEqual({ start: 3, end: 9 });
      expect(byteRange('bytes=-99', undefined, etag, 10)).toEqual({ start: 0, end: 9 });

      // A client's transfer breaks after 5 MiB: fetchWhole asks for the rest, of the same content.
      const ranges: (string | null)[] = [];
      let broken = false;
      const flaky = (async (url: string, init?: RequestInit) => {
        ranges.push(new Headers(init?.headers).get('range'));
        const res = await fetch(url, init);
        if (broken || res.status !== 200) return res;
        broken = true;
        const reader = res.body!.getReader();
        let got = 0;
        const body = new ReadableStream<Uint8Array>({
          async pull(c) {
            if (got >= 5 * MiB) { await reader.cancel(); c.error(new Error('connection reset')); return; }
            const { done, value } = await reader.read();
            if (done) return c.close();
            got += value.length;
            c.enqueue(value);
          },
        });
        return new Response(body, { status: res.status, headers: res.headers });
      }) as unknown as typeof fetch;
      const whole = await fetchWhole(flaky, `${s.url}${BIG_URL}`);
      expect(sha(whole)).toBe(sha(big));
      expect(ranges).toHaveLength(2);
      expect(ranges[0]).toBeNull();
      expect(Number(/^bytes=(\d+)-$/.exec(ranges[1]!)![1])).toBeGreaterThanOrEqual(5 * MiB);
      // (The broken transfer's socket stays open on the client's side until the coordinator cuts it; closing the server ends it.)
    } finally {
      await s.close();
    }
  });

  it('a closing coordinator ends the downloads it is sending and connections that never asked anything', async () => {
    const s = await server({});
    const paused = await open(s, BIG_URL, '198.18.0.30');
    expect(paused.statusCode).toBe(200);
    const { port } = new URL(s.url);
    const idle = connect(Number(port), '127.0.0.1');
    await new Promise((resolve) => idle.once('connect', resolve));
    const idleClosed = new Promise<void>((resolve) => idle.once('close', () => resolve()));
    idle.on('error', () => {});
    const pausedClosed = new Promise<void>((resolve) => paused.once('close', () => resolve()));
    paused.resume();
    await s.close();
    await Promise.all([idleClosed, pausedClosed]);
    expect(s.c.downloads.open()).toBe(0);
  });

  it('a live peer\'s bootstrap comes from the peers\' own share, charged to its session: anonymous clients saturating theirs do not hold it back', async () => {
    // A clock that never moves: no allowance refills, so what is spent stays spent.
    const s = await server({ perAddressBytesPerS: MiB, perAddressBurstBytes: 1024, totalBytesPerS: MiB, totalBurstBytes: 100 * MiB, now: () => 0 });
    const newcomer = new SignalingClient({ url: s.url, run: 'r', WebSocket: WebSocket as unknown as WebSocketCtor, fetch: refusing });
    const anonymous: IncomingMessage[] = [];
    const others: RawPeer[] = [];
    try {
      const run = s.c.runs.get('r')!;
      const layout = buildLayout(run.model);
      const phi = initParams(layout, 7);
      const momentum = new Float32Array(layout.total).fill(1e-3);
      const ck = await s.c.checkpoints.save(run, { meta: { runId: 'r', step: 40, round: 4, floats: layout.total, valLoss: 3.25, tokens: 40960 }, phi, momentum }, null, Date.now(), stateCheckBatchCount(run.model, run.train));
      const stateUrl = `/api/runs/r/checkpoints/${ck.id}/state`;
      anonymous.push(...await anonymousInDebt(s));
      const queued = await fetchAll(s, stateUrl, '198.18.0.4');
      expect(queued.status).toBe(429);
      expect(queued.json().error).toMatch(/^anonymous clients together have downloaded their share/);

      // A newcomer joins and is offered the checkpoint: its bootstrap, with its session, starts at
      // once (`refusing` throws at any 429) while the anonymous downloads still hold their share.
      newcomer.start();
      await until(() => newcomer.connected, 10_000, 'the newcomer to join');
      expect(newcomer.welcome!.checkpoint).toMatchObject({ id: ck.id, step: 40 });
      const boot = (await newcomer.fetchCheckpointState(layout.total))!;
      expect(boot.meta).toMatchObject({ runId: 'r', step: 40, floats: layout.total });
      expect(sha(new Uint8Array(boot.phi.buffer, boot.phi.byteOffset, boot.phi.byteLength))).toBe(sha(new Uint8Array(phi.buffer)));
      expect(s.c.downloads.open()).toBe(3);
      expect((await fetchAll(s, stateUrl, '198.18.0.4')).status).toBe(429);

      // Charged to its session and its address, not shared with the run's other peers: the state
      // is more than their 1 KiB, so the same peer asking again waits, from its address or from
      // another, and so does another session from its address; another live peer does not.
      await expect(newcomer.fetchCheckpointState(layout.total)).rejects.toThrow(/this session has downloaded its share, 1\.0 MiB\/s/);
      const elsewhere = await fetchAll(s, stateUrl, '198.18.0.6', { authorization: `Bearer ${newcomer.welcome!.session}` });
      expect(elsewhere.status).toBe(429);
      expect(elsewhere.json().error).toMatch(/^this session has downloaded its share/);
      const joined = await RawPeer.join(s.wsUrl, { run: 'r' });
      others.push(joined.peer);
      const second = await fetchAll(s, stateUrl, '198.18.0.4', { authorization: `Bearer ${joined.welcome.session}` });
      expect(second.status).toBe(200);
      expect(sha(second.body)).toBe(sha(encodeStateFrame(boot)));
      const third = await RawPeer.join(s.wsUrl, { run: 'r' });
      others.push(third.peer);
      const sameAddress = await fetchAll(s, stateUrl, '198.18.0.4', { authorization: `Bearer ${third.welcome.session}` });
      expect(sameAddress.status).toBe(429);
      expect(sameAddress.json().error).toMatch(/^this address has downloaded its share/);

      // A credential that is not a live peer's of this run is an anonymous client's, refused here as
      // any other.
      await expectAnonymous(s, stateUrl, joined);
    } finally {
      newcomer.stop();
      for (const p of others) p.close();
      for (const res of anonymous) res.destroy();
      await s.close();
    }
  });

  it('a live peer\'s data comes from the peers\' own share too: its shards and validation file are not held behind anonymous downloads; a refusal is never cached', async () => {
    // Room in each address's and session's allowance for the run's data (48 MiB and the small file).
    const s = await server({ perAddressBytesPerS: MiB, perAddressBurstBytes: 64 * MiB, totalBytesPerS: MiB, totalBurstBytes: 100 * MiB, now: () => 0 });
    const anonymous: IncomingMessage[] = [];
    const peers: RawPeer[] = [];
    try {
      anonymous.push(...await anonymousInDebt(s));
      const queued = await fetchAll(s, SMALL_URL, '198.18.0.4');
      expect(queued.status).toBe(429);
      expect(queued.json().error).toMatch(/^anonymous clients together have downloaded their share/);
      // The refusal is this client's alone: no ETag a cache could revalidate it with, and not stored.
      expect(queued.headers['cache-control']).toBe('no-store');
      expect(queued.headers.etag).toBeUndefined();

      // A peer joins: its data, downloaded as the volunteers download it (downloadAssignment with
      // the welcome's session; `refusing` throws at any 429), comes at once and whole.
      const joined = await RawPeer.join(s.wsUrl, { run: 'r' });
      peers.push(joined.peer);
      const a = joined.welcome.assignment;
      expect(a.shards).toEqual([0]);
      const data = await downloadAssignment(s.url, a, refusing, { session: joined.welcome.session });
      expect(sha(data.train)).toBe(sha(big));
      expect(sha(data.val)).toBe(sha(small));
      // The same bytes and ETag as an anonymous client's, so a cache may serve either to either.
      const mine = await fetchAll(s, SMALL_URL, '198.18.0.4', { authorization: `Bearer ${joined.welcome.session}` });
      expect(mine.status).toBe(200);
      expect(mine.headers.etag).toBe(`"${sha(small)}"`);
      expect(mine.headers['cache-control']).toBe('public, max-age=300');
      // The anonymous share is as much in debt as before: anonymous clients are still refused.
      expect(s.c.downloads.open()).toBe(3);
      expect((await fetchAll(s, SMALL_URL, '198.18.0.4')).status).toBe(429);
      // Without its session the same peer is anonymous, and waits like any other.
      await expect(downloadAssignment(s.url, a, refusing)).rejects.toThrow(/anonymous clients together have downloaded their share/);

      // A credential that is not a live peer's of this run is anonymous.
      await expectAnonymous(s, SMALL_URL, joined);
    } finally {
      for (const p of peers) p.close();
      for (const res of anonymous) res.destroy();
      await s.close();
    }
  });

  it('the /64s of one /48, each with a live session, take a site\'s part of the peers\' share, not all of it: a peer elsewhere is still served', async () => {
    // Before: each /64 had an address's places and allowance, and sessions cost a hello each, so
    // four /64s of one /48 downloaded 4 x 48 MiB from the peers' share and left the next peer, from
    // another address, refused. Each address may take 64 MiB, the peers together 160 (no refill).
    const s = await server({ perAddressBytesPerS: MiB, perAddressBurstBytes: 64 * MiB, peerBytesPerS: MiB, peerBurstBytes: 160 * MiB, now: () => 0 });
    const peers: RawPeer[] = [];
    const held: IncomingMessage[] = [];
    const join = async (from: string) => {
      const j = await RawPeer.join(s.wsUrl, { run: 'r' }, { headers: { 'x-forwarded-for': from } });
      peers.push(j.peer);
      return { authorization: `Bearer ${j.welcome.session}` };
    };
    try {
      const statuses: number[] = [];
      for (let i = 1; i <= 4; i++) {
        const from = `2001:db8:77:${i}::1`;
        const res = await open(s, BIG_URL, from, await join(from));
        statuses.push(res.statusCode!);
        if (res.statusCode === 200) held.push(res);
        else {
          const body = await new Promise<string>((resolve) => { let t = ''; res.on('data', (c: Buffer) => { t += c; }); res.on('end', () => resolve(t)); res.resume(); });
          expect(JSON.parse(body).error).toMatch(/^this address's \/48 has downloaded its share, 2\.0 MiB\/s gathering up to 128 MiB/);
        }
      }
      // A site has two addresses' allowance (128 MiB): the third download starts while some is
      // left, the fourth waits.
      expect(statuses).toEqual([200, 200, 200, 429]);
      const elsewhere = await open(s, BIG_URL, '198.18.0.9', await join('198.18.0.9'));
      held.push(elsewhere);
      expect(elsewhere.statusCode).toBe(200);
      expect(s.c.downloads.openForPeers()).toBe(4);
    } finally {
      for (const res of held) res.destroy();
      for (const p of peers) p.close();
      await s.close();
    }
  });

  it('downloadAssignment sends the session only to the coordinator that gave it', async () => {
    const bytes = new TextEncoder().encode('tokens');
    const ref = (url: string): DataFileRef => ({ name: 'f', url, bytes: bytes.length, sha256: sha(bytes), dtype: 'u8' });
    const seen: { url: string; authorization: string | null }[] = [];
    const fn = (async (url: string, init?: RequestInit) => {
      seen.push({ url, authorization: new Headers(init?.headers).get('authorization') });
      return new Response(bytes);
    }) as typeof fetch;
    const a = { dataset: 'd', train: [ref('/api/runs/r/data/t0')], val: ref('https://elsewhere.example/v'), seed: 1, replica: 0, shards: [0] };
    await downloadAssignment('http://coordinator.example:8080', a, fn, { session: 'tok' });
    expect(seen).toEqual([
      { url: 'http://coordinator.example:8080/api/runs/r/data/t0', authorization: 'Bearer tok' },
      { url: 'https://elsewhere.example/v', authorization: null },
    ]);
  });

  it('murmur serve --download-budget and --download-places: the defaults, "off", and a clear refusal of anything else', () => {
    expect({ ...DEFAULT_DOWNLOAD_LIMITS, ...downloadBudgetOption('8,64'), ...downloadPlacesOption('8,256') }).toEqual(DEFAULT_DOWNLOAD_LIMITS);
    for (const bad of ['8', '0,256', '300,256', '8,x']) {
      expect(() => downloadPlacesOption(bad), bad).toThrow(`--download-places takes "<per address>,<all clients>", downloads open at once (1 to 100000 each, the first no more than the second; default 8,256), got "${bad}"`);
    }
    expect(DEFAULT_DOWNLOAD_LIMITS.perAddressBurstBytes).toBe(1024 * MiB);
    expect(downloadBudgetOption('off').totalBytesPerS).toBe(Infinity);
    for (const bad of ['8', '0,64', '65,64', 'a,b', '8,64,1', '1.5,64']) {
      expect(() => downloadBudgetOption(bad), bad).toThrow(`--download-budget takes "<per address>,<all clients>" in MiB per second (1 to 100000 each, the first no more than the second; default 8,64) or "off", got "${bad}"`);
    }
  });
});

describe('fetchRetrying', () => {
  const answer = (status: number, headers: Record<string, string> = {}, body = '{"error":"wait"}') => new Response(body, { status, headers });
  const scripted = (answers: Response[]) => {
    const calls: string[] = [];
    const fn = (async (url: string) => { calls.push(url); return answers.shift()!; }) as unknown as typeof fetch;
    return { fn, calls };
  };

  it('waits what a 429 asks (5 s when it names nothing, a minute at most) and asks again', async () => {
    const slept: number[] = [];
    const sleep = async (ms: number) => { slept.push(ms); };
    const { fn, calls } = scripted([answer(429, { 'retry-after': '2' }), answer(429), answer(429, { 'retry-after': '86400' }), answer(200, {}, 'ok')]);
    const res = await fetchRetrying(fn, 'http://x/a', {}, { sleep });
    expect(await res.text()).toBe('ok');
    expect(calls).toHaveLength(4);
    expect(slept).toEqual([2000, DEFAULT_RETRY_AFTER_S * 1000, MAX_RETRY_AFTER_S * 1000]);
  });

  it('hands back the refusal past its retries or its total wait, and an outage (503 without a time) at once', async () => {
    const sleep = async () => {};
    let s = scripted([answer(429), answer(429), answer(429), answer(200)]);
    expect((await fetchRetrying(s.fn, 'u', {}, { sleep, retries: 2 })).status).toBe(429);
    expect(s.calls).toHaveLength(3);
    s = scripted([answer(429, { 'retry-after': '30' }), answer(429, { 'retry-after': '30' }), answer(200)]);
    expect((await fetchRetrying(s.fn, 'u', {}, { sleep, maxWaitMs: 45_000 })).status).toBe(429);
    expect(s.calls).toHaveLength(2);
    s = scripted([answer(503), answer(200)]);
    expect((await fetchRetrying(s.fn, 'u', {}, { sleep })).status).toBe(503);
    s = scripted([answer(503, { 'retry-after': '1' }), answer(200)]);
    expect((await fetchRetrying(s.fn, 'u', {}, { sleep })).status).toBe(200);
  });

  it('fetchWhole: a refusal is an HttpRefusal with the reason; a broken transfer from a server without ranges is not resumed', async () => {
    const { fn } = scripted([answer(404, {}, '{"error":"no such file"}')]);
    await expect(fetchWhole(fn, 'http://x/a')).rejects.toEqual(new HttpRefusal(404, 'no such file', 'http://x/a'));
    const breaking = () => new Response(new ReadableStream({ start(c) { c.enqueue(new Uint8Array(3)); c.error(new Error('connection reset')); } }), { headers: { etag: '"e"' } });
    const s = scripted([breaking(), answer(200)]);
    await expect(fetchWhole(s.fn, 'http://x/a')).rejects.toThrow('connection reset');
    expect(s.calls).toHaveLength(1);
  });

  it('fetchWhole: a body past what the caller expects is dropped at once, not held (a server that sends without end)', async () => {
    let pulled = 0, cancelled = false;
    const endless = new Response(new ReadableStream<Uint8Array>({
      pull(c) { pulled++; c.enqueue(new Uint8Array(64 * 1024)); },
      cancel() { cancelled = true; },
    }), { headers: { etag: '"e"', 'accept-ranges': 'bytes' } });
    const { fn, calls } = scripted([endless]);
    await expect(fetchWhole(fn, 'http://x/a', { maxBytes: 1024 * 1024 })).rejects.toThrow('GET http://x/a sent more than the 1048576 bytes expected');
    expect(cancelled).toBe(true);
    expect(pulled).toBeLessThan(40);
    expect(calls).toHaveLength(1); // not resumed
    // The volunteer's data download expects the announced size.
    const ref: DataFileRef = { name: 'val.bin', url: '/v', bytes: 10, sha256: '0'.repeat(64), dtype: 'u8' };
    const more = scripted([answer(200, {}, 'x'.repeat(11))]);
    await expect(downloadVerified('http://x', ref, more.fn)).rejects.toThrow('downloading val.bin from http://x/v failed: GET http://x/v sent more than the 10 bytes expected');
  });

  it('fetchWhole: a transfer that goes quiet is broken (taken up again where it can be), and one that trickles fails at its deadline', async () => {
    // Before: a body that sent nothing, or a byte every few seconds, held the caller for good (a
    // volunteer at its join, a newcomer fetching its checkpoint); stop() could not end it.
    let cancelled = 0;
    const silent = () => new Response(new ReadableStream<Uint8Array>({ start(c) { c.enqueue(new Uint8Array(4)); }, cancel() { cancelled++; } }), { headers: { etag: '"e"' } });
    const quiet = scripted([silent()]);
    await expect(fetchWhole(quiet.fn, 'http://x/a', { idleMs: 50 })).rejects.toThrow('GET http://x/a sent nothing for 0.05 s');
    expect(cancelled).toBe(1);
    expect(quiet.calls).toHaveLength(1); // no ranges: not resumed
    // A server that serves ranges: the quiet transfer is taken up again from byte 4.
    const rest = new Response(new Uint8Array(6).fill(7), { status: 206, headers: { 'content-range': 'bytes 4-9/10' } });
    const resumable = scripted([new Response(new ReadableStream<Uint8Array>({ start(c) { c.enqueue(new Uint8Array(4)); } }), { headers: { etag: '"e"', 'accept-ranges': 'bytes' } }), rest]);
    expect([...await fetchWhole(resumable.fn, 'http://x/a', { idleMs: 50, maxBytes: 1e6 })]).toEqual([0, 0, 0, 0, 7, 7, 7, 7, 7, 7]);
    // A byte every 10 ms is never quiet for 500 ms, but 1,000 bytes at that pace outlast 500 ms plus 1,000 bytes at 16 KiB/s.
    let timer: ReturnType<typeof setInterval> | undefined;
    const trickle = new Response(new ReadableStream<Uint8Array>({
      start(c) { timer = setInterval(() => c.enqueue(new Uint8Array(1)), 10); },
      cancel() { clearInterval(timer); },
    }), { headers: { etag: '"e"' } });
    const slow = scripted([trickle]);
    try {
      await expect(fetchWhole(slow.fn, 'http://x/a', { idleMs: 500, maxBytes: 1000 })).rejects.toThrow(/GET http:\/\/x\/a was still sending past its deadline/);
      expect(slow.calls).toHaveLength(1); // a slow server is not asked again
    } finally {
      clearInterval(timer);
    }
  });

  it('fetchWhole: the deadline runs from the answer, not through the waits a 429 asked for', async () => {
    // Before: it ran from the first ask, so a 1 MiB file waited out for two minutes behind a
    // crowd's download budget (a 124 s deadline) failed as "still sending" at its first chunk.
    let timer: ReturnType<typeof setTimeout> | undefined;
    // The second chunk comes 20 ms after the first is read.
    let pulls = 0;
    const twoChunks = new Response(new ReadableStream<Uint8Array>({
      pull(c) {
        if (pulls++ === 0) { c.enqueue(new Uint8Array(5).fill(1)); return; }
        return new Promise<void>((done) => { timer = setTimeout(() => { c.enqueue(new Uint8Array(5).fill(2)); c.close(); done(); }, 20); });
      },
    }, { highWaterMark: 0 }));
    const { fn, calls } = scripted([answer(429, { 'retry-after': '0.3' }), twoChunks]);
    try {
      // 500 ms quiet allowed, 10 bytes: a deadline of about 0.5 s, shorter than the wait plus the transfer.
      expect([...await fetchWhole(fn, 'http://x/a', { idleMs: 500, maxBytes: 10, sleep: (ms) => new Promise((r) => setTimeout(r, ms + 300)) })]).toEqual([1, 1, 1, 1, 1, 2, 2, 2, 2, 2]);
      expect(calls).toHaveLength(2);
    } finally {
      clearTimeout(timer);
    }
  });

  it('downloadAssignment: takes no shard twice, and no more data than a volunteer takes, before downloading anything', async () => {
    const file = (name: string, bytes: number): DataFileRef => ({ name, url: `/${name}`, bytes, sha256: '0'.repeat(64), dtype: 'u8' });
    const none = scripted([]);
    const base = { dataset: 'd', train: [file('t0', 10), file('t1', 10)], val: file('v', 10), seed: 1, replica: 0 };
    await expect(downloadAssignment('http://x', { ...base, shards: [0, 1, 0] }, none.fn)).rejects.toThrow('the assignment names a shard more than once (3 entries, 2 shards)');
    await expect(downloadAssignment('http://x', { ...base, train: [file('t0', 2 ** 40)], shards: [0] }, none.fn)).rejects.toThrow(`the assignment announces ${2 ** 40 + 10} bytes of data; a volunteer takes at most ${MAX_ASSIGNMENT_BYTES}`);
    expect(none.calls).toEqual([]);
  });

  it('reads both forms of Retry-After and stops waiting when aborted', async () => {
    expect(retryAfterMs(answer(200))).toBeNull();
    expect(retryAfterMs(answer(429, { 'retry-after': '1.5' }))).toBe(1500);
    const at = new Date(Date.now() + 30_000).toUTCString();
    expect(retryAfterMs(answer(429, { 'retry-after': at }))).toBeGreaterThan(25_000);
    expect(retryAfterMs(answer(429, { 'retry-after': 'soon' }))).toBe(DEFAULT_RETRY_AFTER_S * 1000);
    const ctl = new AbortController();
    const { fn } = scripted([answer(429, { 'retry-after': '60' })]);
    const pending = fetchRetrying(fn, 'u', {}, { signal: ctl.signal, onWait: () => ctl.abort(new Error('volunteer stopped')) });
    await expect(pending).rejects.toThrow('volunteer stopped');
  });
});
