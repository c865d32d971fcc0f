// What anonymous downloads may take from the coordinator: its file descriptors and its uplink.
// A run's token files, its checkpoints, their bootstrap states (387 MB on `base`) and Hugging Face
// exports are public files: without a bound one client could open thousands of downloads and
// read none of them (each holds a file and a socket until the process runs out of descriptors,
// and then SQLite, checkpoint saves and new volunteers fail with it), or fetch the same
// checkpoint in a loop until the uplink carries nothing else. So each download:
// - takes one of a few places its client address may hold at once, and one of a bounded number
//   for all anonymous clients together;
// - is charged its size, up front, to its address and to all anonymous clients together, each an
//   allowance that refills at a rate and gathers up to BURST_S seconds of it; a download starts
//   while both hold something, so one overdraws by at most its own size, and what a cut or
//   abandoned download did not send is given back;
// - is cut when it sends less than a floor rate over two windows in a row (a client that stops
//   reading).
// Past a place or an allowance the request gets 429 with a Retry-After; Murmur's own clients wait
// and ask again (src/protocol/retry-fetch.ts), so a crowd behind one NAT is delayed, not refused.
// An answer the client already holds (304, If-None-Match) costs nothing. The admin token is
// never refused, charged or cut.
//
// A live peer of the run downloading the run's files (its data shards and the validation file, and
// the offered checkpoint's state to bootstrap) with its session (the token the coordinator signed in
// its welcome, sent as a Bearer token) is not an anonymous client: its download comes from a share
// of its own, places and an allowance for all the run's peers together that anonymous downloads
// cannot take, and is charged to its session (the per-address allowance, keyed by peer id) as well
// as to its address. Anonymous clients saturating their share then never hold a newcomer back, and
// neither one peer fetching in a loop nor one client holding many sessions takes more of the peers'
// share than one address's part. The /64s of one IPv6 /48 (siteKey) are one client too: each /64
// had places and an allowance of its own, and a /48 is 65,536 of them, so four /64s holding a
// session each took the peers' whole 32 MiB/s and eight their 64 places. A site now has
// DOWNLOAD_ADDRESSES_PER_SITE (2) addresses' worth, together: half the peers' share, a quarter of
// their places. Who is such a peer is the routes' to say (sessionPeer,
// server/routes/guard.ts): a token this coordinator's key signed, not expired, for this run, whose
// peer is connected now; anything else is anonymous. The file sent is the same either way.
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { addressKey, Allowance, OpenCounter, siteKey } from './address-budget.ts';
import { bearer, tokenEquals } from './auth.ts';

const MiB = 1024 * 1024;

export interface DownloadLimits {
  /** Downloads one client address may have open at once, and all anonymous clients together. */
  perAddressStreams: number;
  totalStreams: number;
  /** Bytes a second one address earns, and the most it can gather. */
  perAddressBytesPerS: number;
  perAddressBurstBytes: number;
  /** The same for all anonymous clients together. */
  totalBytesPerS: number;
  totalBurstBytes: number;
  /**
   * The run's live peers' downloads (their data and bootstrap states), all of them together: places
   * and bytes a second, gathering up to `peerBurstBytes`. Each is also charged to its peer's session
   * and its address, each held to the per-address allowance, and takes one of its address's places.
   */
  peerStreams: number;
  peerBytesPerS: number;
  peerBurstBytes: number;
  /** A download that sends less than `minBytesPerS` on average over two windows of `stallWindowMs` in a row is cut. */
  stallWindowMs: number;
  minBytesPerS: number;
  /** Monotonic milliseconds the allowances refill on (default performance.now). */
  now?: () => number;
}

/** Seconds of earnings an allowance can gather: at 8 MiB/s, 1 GiB, room for `base`'s state and its data at once. */
export const DOWNLOAD_BURST_S = 128;

/**
 * Eight downloads open per address (a volunteer joining takes its shards, the validation file and
 * a checkpoint's state; a NAT with many volunteers waits its turn), 256 in all; 8 MiB/s per
 * address and 64 MiB/s in all, each gathering 128 s of it; cut below 16 KiB/s over two 30 s windows.
 * The run's peers' data and bootstrap states have 64 places and 32 MiB/s of their own besides
 * (gathering 4 GiB, ten `base` states at once); each is charged to its session as to its address.
 */
export const DEFAULT_DOWNLOAD_LIMITS: DownloadLimits = {
  perAddressStreams: 8,
  totalStreams: 256,
  perAddressBytesPerS: 8 * MiB,
  perAddressBurstBytes: 8 * MiB * DOWNLOAD_BURST_S,
  totalBytesPerS: 64 * MiB,
  totalBurstBytes: 64 * MiB * DOWNLOAD_BURST_S,
  stallWindowMs: 30_000,
  minBytesPerS: 16 * 1024,
  peerStreams: 64,
  peerBytesPerS: 32 * MiB,
  peerBurstBytes: 32 * MiB * DOWNLOAD_BURST_S,
};

/**
 * What the /64s of one IPv6 /48 may take together, in addresses' places and allowances: 2, so a
 * site, like an IPv4 address, never takes the peers' share whole (16 of 32 MiB/s, 16 of 64 places).
 */
export const DOWNLOAD_ADDRESSES_PER_SITE = 2;

/**
 * When to ask again after finding no free place: nothing says when an open download will end,
 * and most are a run's token files, sent in milliseconds.
 */
export const DOWNLOAD_PLACE_RETRY_S = 1;

/**
 * Windows a download may take to hand over its last bytes once all of them were read from disk:
 * what the socket and the kernel still buffer reaches a slow client at its own pace.
 */
const END_WINDOWS = 4;

const mib = (n: number) => `${(n / MiB).toFixed(n >= 10 * MiB ? 0 : 1)} MiB`;

/** A file to stream: where it is and how large it is (the response's content-length). */
export interface DownloadFile { path: string; bytes: number }

/** Whose share a download comes from: all anonymous clients', or all the run's peers'. */
interface Share { places: OpenCounter; allowance: Allowance }

/** The key a peer's session is charged under, beside addressKey's keys (never "peer:…"). */
const sessionKey = (peerId: string) => `peer:${peerId}`;

export class DownloadBudget {
  /** Per client address; the allowance also per peer's session (sessionKey). */
  private readonly placesPerAddress: OpenCounter;
  private readonly perAddress: Allowance;
  /** Per IPv6 /48 (siteKey), all its /64s together. */
  private readonly placesPerSite: OpenCounter;
  private readonly perSite: Allowance;
  private readonly anonymous: Share;
  private readonly peers: Share;
  readonly stats = { served: 0, refused: 0, cut: 0, bytes: 0 };
  /** Responses of the downloads being sent, so that a closing coordinator need not wait for them. */
  private readonly sending = new Set<FastifyReply['raw']>();

  constructor(readonly limits: DownloadLimits, private readonly adminToken: string) {
    const now = limits.now ?? performance.now.bind(performance);
    this.placesPerAddress = new OpenCounter(limits.perAddressStreams);
    this.perAddress = new Allowance(limits.perAddressBytesPerS, limits.perAddressBurstBytes, now);
    const k = DOWNLOAD_ADDRESSES_PER_SITE;
    this.placesPerSite = new OpenCounter(limits.perAddressStreams * k);
    this.perSite = new Allowance(limits.perAddressBytesPerS * k, limits.perAddressBurstBytes * k, now);
    this.anonymous = { places: new OpenCounter(limits.totalStreams), allowance: new Allowance(limits.totalBytesPerS, limits.totalBurstBytes, now) };
    this.peers = { places: new OpenCounter(limits.peerStreams), allowance: new Allowance(limits.peerBytesPerS, limits.peerBurstBytes, now) };
  }

  /**
   * Ends every anonymous download being sent: a closing coordinator waits for each open
   * connection, and a client reading slowly would hold `murmur start` after Ctrl-C for as long
   * as its download takes.
   */
  closeAll(): void {
    for (const res of [...this.sending]) res.destroy();
  }

  /** Downloads open for `address`, or for every anonymous client without one. */
  open(address?: string): number {
    return address === undefined ? this.anonymous.places.count('') : this.placesPerAddress.count(addressKey(address));
  }

  /** Downloads open for all the run's peers together (data and bootstrap states). */
  openForPeers(): number {
    return this.peers.places.count('');
  }

  /** Bytes `address` may still start downloads with (negative: its debt). */
  level(address: string): number {
    return this.perAddress.level(addressKey(address));
  }

  private isAdmin(req: FastifyRequest): boolean {
    const presented = bearer(req.headers.authorization);
    return presented !== null && tokenEquals(presented, this.adminToken);
  }

  /**
   * Streams `file` as the reply's body (its other headers set by the caller), or refuses with 429
   * when the client's address, or all anonymous clients, have no free place or allowance left.
   * `peer`: the download is this live peer's of the run (its data or its bootstrap), whose session
   * the route checked: it comes from the peers' share and is charged to that session and to the address.
   */
  send(req: FastifyRequest, reply: FastifyReply, file: DownloadFile, o: { peer?: string } = {}): FastifyReply {
    // A client gone before its download starts (during the route's own awaits) takes nothing: its
    // response will never emit 'close' again, so a place taken now would never be given back.
    if (reply.raw.destroyed) return reply;
    // One byte range (RFC 9110 14.2), so a broken download goes on where it stopped; If-Range
    // against the ETag (the content's sha256) makes sure the rest is of the same file.
    const ifRange = req.headers['if-range'];
    const part = byteRange(req.headers.range, typeof ifRange === 'string' ? ifRange : undefined, reply.getHeader('etag'), file.bytes);
    if (part === 'unsatisfiable') {
      return reply.code(416).type('application/json; charset=utf-8').header('content-range', `bytes */${file.bytes}`)
        .send({ error: `range ${String(req.headers.range).slice(0, 100)} is outside the file's ${file.bytes} bytes` });
    }
    const bytes = part ? part.end - part.start + 1 : file.bytes;
    void reply.header('accept-ranges', 'bytes').header('content-length', bytes);
    if (part) void reply.code(206).header('content-range', `bytes ${part.start}-${part.end}/${file.bytes}`);
    const open = () => (bytes === 0 ? Readable.from([]) : createReadStream(file.path, part ? { start: part.start, end: part.end } : {}));
    if (this.isAdmin(req)) return reply.send(open());
    const key = addressKey(req.ip);
    const site = siteKey(key);
    const session = o.peer !== undefined ? sessionKey(o.peer) : null;
    const share = session !== null ? this.peers : this.anonymous;
    const together = session !== null ? 'the run\'s peers' : 'anonymous clients';
    const refuse = (error: string, waitMs: number): FastifyReply => {
      this.stats.refused++;
      void reply.removeHeader('content-length').removeHeader('content-disposition').removeHeader('content-range').removeHeader('accept-ranges');
      return reply.code(429).type('application/json; charset=utf-8')
        .header('retry-after', String(Math.max(1, Math.ceil(waitMs / 1000)))).send({ error, code: 'download-budget' });
    };
    // A peer's download is charged to its address as well as its session: one client holding many
    // sessions (a WebSocket each) takes no more of the peers' share than one address's.
    // And the /64s of a /48 together as one client (siteKey), so that many /64s, each holding a
    // session, take no more than a site's part.
    const mine = this.perAddress.waitMs(key);
    const ours = session !== null ? this.perAddress.waitMs(session) : 0;
    const theirs = site !== null ? this.perSite.waitMs(site) : 0;
    const all = share.allowance.waitMs('');
    if (mine > 0 || ours > 0 || theirs > 0 || all > 0) {
      const waitMs = Math.max(mine, ours, theirs, all);
      const l = this.limits, k = DOWNLOAD_ADDRESSES_PER_SITE;
      const [allPerS, allBurst] = session !== null ? [l.peerBytesPerS, l.peerBurstBytes] : [l.totalBytesPerS, l.totalBurstBytes];
      const client = ours === waitMs ? 'this session' : mine === waitMs ? 'this address' : theirs === waitMs ? 'this address\'s /48' : null;
      const [perS, burst] = client === 'this address\'s /48' ? [l.perAddressBytesPerS * k, l.perAddressBurstBytes * k] : [l.perAddressBytesPerS, l.perAddressBurstBytes];
      return refuse(`${client !== null
        ? `${client} has downloaded its share, ${mib(perS)}/s gathering up to ${mib(burst)}`
        : `${together} together have downloaded their share, ${mib(allPerS)}/s gathering up to ${mib(allBurst)}`
      }; retry in ${Math.ceil(waitMs / 1000)} s`, waitMs);
    }
    const releaseMine = this.placesPerAddress.acquire(key);
    if (!releaseMine) return refuse(`this address has ${this.limits.perAddressStreams} downloads open, the limit; retry when one has ended`, DOWNLOAD_PLACE_RETRY_S * 1000);
    const releaseSite = site === null ? () => {} : this.placesPerSite.acquire(site);
    if (!releaseSite) {
      releaseMine();
      return refuse(`this address's /48 has ${this.placesPerSite.cap} downloads open, the limit; retry when one has ended`, DOWNLOAD_PLACE_RETRY_S * 1000);
    }
    const releaseAll = share.places.acquire('');
    if (!releaseAll) {
      releaseMine();
      releaseSite();
      return refuse(`${share.places.cap} downloads are open, the limit for ${together} together; retry shortly`, DOWNLOAD_PLACE_RETRY_S * 1000);
    }
    this.perAddress.charge(key, bytes);
    if (session !== null) this.perAddress.charge(session, bytes);
    if (site !== null) this.perSite.charge(site, bytes);
    share.allowance.charge('', bytes);
    this.stats.served++;

    const stream = open();
    let sent = 0;
    stream.on('data', (chunk: Buffer) => { sent += chunk.length; });
    // A client that stops reading stops the file's reads (the pipe waits for the socket): a
    // download is cut after two windows in a row below the floor rate (one alone may be this
    // process's own pause: after one, timers run before the I/O that waited), and one read whole
    // must finish within END_WINDOWS.
    const need = (this.limits.minBytesPerS * this.limits.stallWindowMs) / 1000;
    let mark = 0, slow = 0, windowsAtEnd = 0;
    const timer = setInterval(() => {
      const moved = sent - mark;
      mark = sent;
      slow = moved >= need ? 0 : slow + 1;
      if (sent >= bytes ? ++windowsAtEnd <= END_WINDOWS : slow < 2) return;
      this.stats.cut++;
      req.log.info({ address: key, peer: o.peer, sent, bytes, url: req.url.slice(0, 200) }, 'download cut: the client stopped reading');
      reply.raw.destroy();
    }, this.limits.stallWindowMs);
    timer.unref();
    let ended = false;
    this.sending.add(reply.raw);
    reply.raw.once('close', () => {
      if (ended) return;
      ended = true;
      this.sending.delete(reply.raw);
      clearInterval(timer);
      stream.destroy();
      releaseMine();
      releaseSite();
      releaseAll();
      this.stats.bytes += sent;
      // What was never read for it is given back: a client whose download broke (or that asked
      // only for the headers, HEAD) pays for what it got.
      const unsent = Math.max(0, bytes - sent);
      if (unsent > 0) {
        this.perAddress.charge(key, -unsent);
        if (session !== null) this.perAddress.charge(session, -unsent);
        if (site !== null) this.perSite.charge(site, -unsent);
        share.allowance.charge('', -unsent);
      }
    });
    return reply.send(stream);
  }
}

/**
 * The byte range a request asks for, if it is one this coordinator serves: a single range
 * ("bytes=a-b", "bytes=a-", "bytes=-n"), asked without If-Range or with the file's current
 * ETag. Null: send the whole file (no Range, several ranges, a malformed one, or If-Range naming
 * other content, as RFC 9110 allows). 'unsatisfiable': the range starts past the end (416).
 */
export function byteRange(range: string | undefined, ifRange: string | undefined, etag: unknown, size: number): { start: number; end: number } | 'unsatisfiable' | null {
  if (!range) return null;
  if (ifRange !== undefined && (typeof etag !== 'string' || ifRange !== etag)) return null;
  const m = /^bytes=(\d{0,15})-(\d{0,15})$/.exec(range.trim());
  if (!m || (m[1] === '' && m[2] === '')) return null;
  let start: number, end: number;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) return 'unsatisfiable';
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (m[2] !== '' && Number(m[2]) < start) return null;
  }
  if (start >= size) return 'unsatisfiable';
  return { start, end };
}
