// One WebRTC data channel to one remote peer, behind a small interface so the mesh never
// touches simple-peer directly: tests swap in an in-memory link, and chaos tests wrap a real one.
import SimplePeer from 'simple-peer';
import type { CandidateType } from '../protocol/messages.ts';
import type { IceConfig } from '../protocol/signaling.ts';
import { systemClock, type Clock } from '../protocol/clock.ts';
import type { Logger } from './components.ts';
import { Emitter } from './emitter.ts';
import { LinkClosedError } from './errors.ts';

export interface LinkEvents {
  /** Signal data to relay to the remote through the coordinator. */
  signal: unknown;
  /** The data channel is open. */
  connect: undefined;
  /** One whole message from the remote. */
  data: Uint8Array;
  /** Closed for good (by either side, or the network); emitted once. */
  close: { reason: string };
}

export interface Link {
  readonly remote: string;
  readonly initiator: boolean;
  /** The data channel is open and send() will not throw. */
  readonly open: boolean;
  /** Bytes queued in the data channel and not yet handed to the network. */
  readonly bufferedAmount: number;
  /** Feed a signal the remote produced. */
  signal(data: unknown): void;
  /** Queue one message; throws LinkClosedError if the channel is not open. */
  send(bytes: Uint8Array): void;
  /**
   * Resolves once bufferedAmount <= threshold, or the link closed, or `stopped()` is true (the
   * waiter gave up: a poll must not outlive it while a partner that does not read keeps the link).
   */
  whenBufferBelow(threshold: number, stopped?: () => boolean): Promise<void>;
  on<K extends keyof LinkEvents>(event: K, fn: (e: LinkEvents[K]) => void): () => void;
  /** Close the channel; safe to call any number of times. */
  destroy(reason?: string): void;
  /** How the link connected or why it has not (optional: in-memory test links have no ICE). */
  info?(): LinkInfo;
}

/** What ICE did for one link: the candidates each side offered and the pair it chose. */
export interface LinkInfo {
  /** Candidate types we gathered and signalled, and those the remote signalled. */
  localTypes: CandidateType[];
  remoteTypes: CandidateType[];
  /** The selected candidate pair once connected (null before, or if stats were unavailable). */
  route: { local: CandidateType; remote: CandidateType } | null;
  /** Creation to open, ms; null while not open. */
  connectMs: number | null;
  /** Whether ICE servers were configured: STUN (srflx possible) and TURN (relay possible). */
  stun: boolean;
  turn: boolean;
  policy: 'all' | 'relay';
}

/**
 * Why a link never opened, in words a volunteer or operator can act on: which candidates each
 * side offered, and what would have given a path.
 */
export function describeLinkFailure(i: LinkInfo, reason: string): string {
  const list = (t: CandidateType[]) => (t.length ? t.join(',') : 'none');
  const sides = `ours ${list(i.localTypes)}, theirs ${list(i.remoteTypes)}`;
  let hint: string;
  if (!i.turn && !i.stun) hint = 'no STUN or TURN server is configured, so only host addresses were tried: peers behind different NATs need the coordinator to hand out STUN and TURN (murmur serve --stun/--turn)';
  else if (!i.turn) hint = 'no TURN server is configured: NATs that map each destination to a new port (symmetric) need a relay (murmur serve --turn)';
  else if (!i.localTypes.includes('relay')) hint = 'the TURN server gave us no relay candidate: it is unreachable or refused our credentials';
  else if (!i.remoteTypes.includes('relay')) hint = 'the partner offered no relay candidate: its TURN server is unreachable or refused its credentials';
  else hint = 'even relayed candidates found no path';
  return `${reason}: no ICE path (${sides}); ${hint}`;
}

export interface LinkOptions {
  remote: string;
  initiator: boolean;
}

export type LinkFactory = (opts: LinkOptions) => Link;

/** What simple-peer needs as `wrtc` in Node (the @roamhq/wrtc module); browsers use globals. */
export interface RtcImplementation {
  RTCPeerConnection: unknown;
  RTCSessionDescription: unknown;
  RTCIceCandidate: unknown;
}

export interface SimplePeerLinkOptions {
  /** @roamhq/wrtc in Node; undefined in browsers (simple-peer then uses the page's globals). */
  rtc?: RtcImplementation;
  /** STUN/TURN servers; [] on loopback and in tests. */
  iceServers?: RTCIceServer[];
  /** The coordinator's current ICE servers and policy, read as each link is made (renewals apply). */
  ice?: () => IceConfig | null;
  clock?: Clock;
  /** Where refused remote signals are told (admitSignal); by default the first per link goes to console.warn. */
  logger?: Logger;
}

/** Links over simple-peer data channels (reliable, ordered: chunks arrive in order or not at all). */
export function simplePeerLinks(opts: SimplePeerLinkOptions = {}): LinkFactory {
  const clock = opts.clock ?? systemClock;
  const o = opts.rtc ? { ...opts, rtc: withoutNativeDescriptions(opts.rtc) } : opts;
  return ({ remote, initiator }) => new SimplePeerLink(remote, initiator, o, clock);
}

const safeRtc = new WeakMap<object, RtcImplementation>();

/**
 * @roamhq/wrtc's `localDescription` getter serializes the native description on this thread
 * while its network thread adds the candidates it gathers to that description: a data race that
 * kills the process (SIGSEGV in webrtc::SdpSerialize, from RTCPeerConnection::GetLocalDescription;
 * node-webrtc#696, simple-peer#812; a core dump of a fresh-clone CI run showed exactly that stack).
 * simple-peer reads it once, right after setLocalDescription, to send its offer or answer. So in
 * Node each connection is wrapped: `localDescription` is the description this side last set
 * (what simple-peer falls back to anyway; with trickle ICE the candidates follow on their own),
 * and the native getter is never called. `remoteDescription`, which simple-peer reads for every
 * remote candidate while wrtc may still be adding the previous one to it, is the one set the same
 * way. Everything else goes to the connection itself.
 */
export function withoutNativeDescriptions(rtc: RtcImplementation): RtcImplementation {
  const known = safeRtc.get(rtc);
  if (known) return known;
  const Native = rtc.RTCPeerConnection as new (config?: RTCConfiguration) => RTCPeerConnection;
  function RTCPeerConnection(config?: RTCConfiguration): RTCPeerConnection {
    const pc = new Native(config);
    let local: RTCSessionDescriptionInit | null = null, remote: RTCSessionDescriptionInit | null = null;
    const setLocalDescription = async (d?: RTCSessionDescriptionInit) => {
      await pc.setLocalDescription(d);
      if (d) local = { type: d.type, sdp: d.sdp ?? '' };
    };
    const setRemoteDescription = async (d: RTCSessionDescriptionInit) => {
      await pc.setRemoteDescription(d);
      remote = { type: d.type, sdp: d.sdp ?? '' };
    };
    return new Proxy(pc, {
      get(target, key) {
        if (key === 'localDescription') return local;
        if (key === 'setLocalDescription') return setLocalDescription;
        if (key === 'remoteDescription') return remote;
        if (key === 'setRemoteDescription') return setRemoteDescription;
        const v: unknown = Reflect.get(target, key, target);
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
      set: (target, key, value) => Reflect.set(target, key, value, target),
    });
  }
  const wrapped: RtcImplementation = { ...rtc, RTCPeerConnection };
  safeRtc.set(rtc, wrapped);
  safeRtc.set(wrapped, wrapped);
  return wrapped;
}

// While a sender waits for the channel to drain it checks this often. Polling instead of the
// channel's bufferedamountlow event: simple-peer owns that handler and does not re-emit it.
const DRAIN_POLL_MS = 2;

class SimplePeerLink implements Link {
  private readonly peer: SimplePeer.Instance;
  private readonly events = new Emitter<LinkEvents>();
  private closed = false;
  private readonly createdAt: number;
  private readonly state: LinkInfo;
  /** The remote's offer or answer has been taken: the one description a link ever takes. */
  private described = false;
  /** Remote candidates handed to simple-peer so far (admitSignal stops at MAX_SIGNAL_CANDIDATES). */
  private candidates = 0;
  private refused = 0;
  /** Own candidates sent so far, by type (never past what the remote takes). */
  private readonly sentCandidates = new SentCandidates();
  private readonly logger: Logger | undefined;

  constructor(readonly remote: string, readonly initiator: boolean, opts: SimplePeerLinkOptions, private readonly clock: Clock) {
    const ice = opts.ice?.() ?? null;
    const iceServers = (ice?.iceServers ?? opts.iceServers ?? []) as RTCIceServer[];
    const urls = iceServers.flatMap((s) => (Array.isArray(s.urls) ? s.urls : [s.urls]));
    const policy = ice?.policy ?? 'all';
    this.createdAt = clock.now();
    this.logger = opts.logger;
    this.state = {
      localTypes: [], remoteTypes: [], route: null, connectMs: null, policy,
      stun: urls.some((u) => u.startsWith('stun:') || u.startsWith('turn')), turn: urls.some((u) => u.startsWith('turn')),
    };
    this.peer = new SimplePeer({
      initiator,
      wrtc: opts.rtc as SimplePeer.Options['wrtc'],
      config: { iceServers, iceTransportPolicy: policy },
      trickle: true,
    });
    this.admitOneChannel();
    this.peer.on('signal', (data) => {
      const kept = withoutTcpCandidates(data);
      if (kept === null || !this.sentCandidates.admit(kept)) return;
      noteCandidateTypes(kept, this.state.localTypes);
      this.events.emit('signal', kept);
    });
    this.peer.on('connect', () => {
      this.state.connectMs = this.clock.now() - this.createdAt;
      void this.readRoute();
      this.events.emit('connect', undefined);
    });
    this.peer.on('data', (data: Uint8Array) => this.events.emit('data', data));
    let lastError = '';
    this.peer.on('error', (err: Error & { code?: string }) => { lastError = err.code ?? err.message; });
    this.peer.on('close', () => this.onClose(lastError || 'closed by remote'));
  }

  get open(): boolean {
    return !this.closed && this.peer.connected;
  }

  /**
   * A link has one data channel, the one the initiator's offer sets up. A remote can open more
   * in-band on an open connection (no offer, so admitSignal never sees them), up to 511: the
   * responder's simple-peer took each as its channel, replacing the last and starting another
   * 5 s timer that only the last is cleared of, so every closed link left hundreds running for
   * good. The first channel the responder is given goes to simple-peer; any other, and any the
   * initiator is given, is closed with the link.
   */
  private admitOneChannel(): void {
    const pc = (this.peer as unknown as { _pc?: RTCPeerConnection })._pc;
    if (!pc) return;
    const setup = this.initiator ? null : pc.ondatachannel;
    let taken = false;
    pc.ondatachannel = (event: RTCDataChannelEvent) => {
      if (setup && !taken) {
        taken = true;
        setup.call(pc, event);
        return;
      }
      try { event.channel?.close(); } catch { /* already closing */ }
      this.destroy('the remote opened a second data channel');
    };
  }

  get bufferedAmount(): number {
    return this.peer.bufferSize;
  }

  info(): LinkInfo {
    return { ...this.state, localTypes: [...this.state.localTypes], remoteTypes: [...this.state.remoteTypes] };
  }

  /** The selected candidate pair from the connection's stats (standard getStats in both runtimes). */
  private async readRoute(): Promise<void> {
    const pc = (this.peer as unknown as { _pc?: RTCPeerConnection })._pc;
    if (!pc) return;
    try {
      this.state.route = selectedRoute(await pc.getStats());
    } catch { /* closed meanwhile: no route to record */ }
  }

  signal(data: unknown): void {
    if (this.closed) return;
    // Only an offer or answer that sets up the one data channel, once, and bounded candidates
    // reach simple-peer (admitSignal): it would answer a renegotiation offer, add a transceiver
    // or renegotiate on request, and the answer or offer outgrows the coordinator's frame limit.
    const v = admitSignal(data, { initiator: this.initiator, described: this.described || this.peer.connected, candidates: this.candidates });
    if (!v.ok) {
      this.refused++;
      // Dropped, not an offence: the mesh drops malformed relayed signals the same way (mesh.ts
      // onSignal), and a refused signal changes nothing here. Logged once per link.
      const fields = { remote: this.remote, reason: v.reason, refused: this.refused };
      if (this.logger) this.logger.warn('refused a relayed signal', fields);
      else if (this.refused === 1) console.warn(`murmur link: refused a relayed signal ${JSON.stringify(fields)}`);
      return;
    }
    if (v.signal.type === 'offer' || v.signal.type === 'answer') this.described = true;
    const kept = withoutTcpCandidates(v.signal);
    if (kept === null) return;
    if (v.signal.type === 'candidate') this.candidates++;
    noteCandidateTypes(kept, this.state.remoteTypes);
    try {
      this.peer.signal(kept as SimplePeer.SignalData);
    } catch (err) {
      this.destroy(`bad signal: ${(err as Error).message}`);
    }
  }

  send(bytes: Uint8Array): void {
    if (!this.open) throw new LinkClosedError(this.remote);
    try {
      this.peer.send(bytes);
    } catch (err) {
      throw new LinkClosedError(this.remote, { cause: err });
    }
  }

  whenBufferBelow(threshold: number, stopped?: () => boolean): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        if (!this.open || this.peer.bufferSize <= threshold || stopped?.()) resolve();
        else this.clock.setTimeout(check, DRAIN_POLL_MS);
      };
      check();
    });
  }

  on<K extends keyof LinkEvents>(event: K, fn: (e: LinkEvents[K]) => void): () => void {
    return this.events.on(event, fn);
  }

  destroy(reason = 'destroyed locally'): void {
    if (this.closed) return;
    this.peer.destroy();
    this.onClose(reason);
  }

  private onClose(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.events.emit('close', { reason });
    this.events.clear();
  }
}

/** Largest SDP a link takes: a data-channel-only offer or answer is about 1 KB with a few candidates. */
export const MAX_SIGNAL_SDP_BYTES = 16 * 1024;
/** Longest trickled candidate line a link takes (a real one is under 300 characters). */
export const MAX_SIGNAL_CANDIDATE_CHARS = 1024;
/**
 * Remote candidates a link takes in all. Each is an address the connection sends ICE checks to and
 * keeps candidate pairs for while the link lives, and a remote could trickle them without end (on
 * an open link too): 100 named after the link opened made it send checks to all 100 addresses. An
 * honest remote sends one per local address, STUN server and TURN transport: a few, a few dozen
 * on a host with many interfaces.
 */
export const MAX_SIGNAL_CANDIDATES = 64;
const MAX_SIGNAL_MID_CHARS = 64;

/**
 * What a link sends of its own candidates, by type, so that it never passes the remote's
 * MAX_SIGNAL_CANDIDATES and its relay candidates, which libwebrtc gathers last, always fit: a Node
 * volunteer gathers on every interface (a server with a dozen container bridges has as many host
 * and server-reflexive candidates), and past the remote's cap its relays were refused, the only
 * route between two volunteers behind symmetric NATs. The shares sum to MAX_SIGNAL_CANDIDATES;
 * a line of no known type (the end-of-candidates marker) takes the `other` share.
 */
export const SENT_CANDIDATE_SHARES: Readonly<Record<CandidateType | 'other', number>> = { host: 24, srflx: 16, prflx: 4, relay: 16, other: 4 };

/** Counts a link's own trickled candidates against SENT_CANDIDATE_SHARES. */
export class SentCandidates {
  private readonly sent: Record<CandidateType | 'other', number> = { host: 0, srflx: 0, prflx: 0, relay: 0, other: 0 };
  /** How many candidates this link held back (past their type's share). */
  held = 0;

  /** Whether to send `data`: anything but a trickled candidate always; a candidate while its type has room. */
  admit(data: unknown): boolean {
    if (typeof data !== 'object' || data === null) return true;
    const c = (data as { candidate?: { candidate?: unknown } }).candidate;
    if (typeof c !== 'object' || c === null) return true;
    const line = typeof c.candidate === 'string' ? c.candidate : '';
    const type = (new RegExp(CANDIDATE_TYPE.source).exec(line)?.[1] ?? 'other') as CandidateType | 'other';
    if (this.sent[type] >= SENT_CANDIDATE_SHARES[type]) { this.held++; return false; }
    this.sent[type]++;
    return true;
  }
}

export type SignalVerdict = { ok: true; signal: SimplePeer.SignalData } | { ok: false; reason: string };

/**
 * Whether a link takes a signal its remote sent, and if so the copy it hands simple-peer (only
 * the fields named here, so nothing rides along). Taken: the one description a link ever gets,
 * `{type, sdp}` (an offer to the responder, an answer to the initiator) whose SDP is at most
 * MAX_SIGNAL_SDP_BYTES and has exactly one media section, `m=application` (the data channel);
 * and `{type: 'candidate', candidate}` with a bounded candidate line, MAX_SIGNAL_CANDIDATES of
 * them per link (`candidates`: how many the link took so far). Everything else is refused:
 * `renegotiate` and `transceiverRequest` (Murmur never renegotiates, and simple-peer would
 * renegotiate or add a transceiver on request), a second description, media sections. What an
 * honest simple-peer (trickle on, as links use it) sends is exactly those three signal types.
 */
export function admitSignal(data: unknown, link: { initiator: boolean; described: boolean; candidates?: number }): SignalVerdict {
  const no = (reason: string): SignalVerdict => ({ ok: false, reason });
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return no(`not an object (${data === null ? 'null' : typeof data})`);
  const d = data as Record<string, unknown>;
  const type = typeof d.type === 'string' ? d.type.slice(0, 32) : `(${typeof d.type})`;
  if (d.type === 'candidate') {
    const c = d.candidate;
    if (typeof c !== 'object' || c === null || Array.isArray(c)) return no('a candidate signal without a candidate object');
    if ((link.candidates ?? 0) >= MAX_SIGNAL_CANDIDATES) return no(`a candidate past the first ${MAX_SIGNAL_CANDIDATES} candidates: a link takes no more`);
    const { candidate, sdpMid, sdpMLineIndex } = c as Record<string, unknown>;
    if (typeof candidate !== 'string') return no('candidate.candidate is not a string');
    if (candidate.length > MAX_SIGNAL_CANDIDATE_CHARS) return no(`a candidate of ${candidate.length} characters (at most ${MAX_SIGNAL_CANDIDATE_CHARS})`);
    if (sdpMid != null && (typeof sdpMid !== 'string' || sdpMid.length > MAX_SIGNAL_MID_CHARS)) return no('candidate.sdpMid is not a short string');
    if (sdpMLineIndex != null && !(Number.isInteger(sdpMLineIndex) && (sdpMLineIndex as number) >= 0 && (sdpMLineIndex as number) < 16)) return no('candidate.sdpMLineIndex is not a small index');
    const init: RTCIceCandidateInit = { candidate };
    if (sdpMid !== undefined) init.sdpMid = sdpMid as string | null;
    if (sdpMLineIndex !== undefined) init.sdpMLineIndex = sdpMLineIndex as number | null;
    return { ok: true, signal: { type: 'candidate', candidate: init as RTCIceCandidate } };
  }
  if (d.type === 'offer' || d.type === 'answer') {
    const want = link.initiator ? 'answer' : 'offer';
    if (d.type !== want) return no(`an ${d.type} sent to the ${link.initiator ? 'initiator' : 'responder'}`);
    if (link.described) return no(`another ${d.type} after the first: links never renegotiate`);
    const sdp = d.sdp;
    if (typeof sdp !== 'string') return no(`an ${d.type} without an SDP string`);
    const bytes = sdp.length > MAX_SIGNAL_SDP_BYTES ? sdp.length : new TextEncoder().encode(sdp).length;
    if (bytes > MAX_SIGNAL_SDP_BYTES) return no(`an SDP of ${bytes} bytes or more (at most ${MAX_SIGNAL_SDP_BYTES})`);
    const media = sdp.split(/[\r\n]+/).filter((l) => l.startsWith('m='));
    if (media.length !== 1 || !/^m=application /.test(media[0]!)) {
      return no(`an SDP with ${media.length} media sections (${media.slice(0, 3).map((l) => l.slice(0, 24)).join('; ')}): a link carries one data channel`);
    }
    return { ok: true, signal: { type: d.type, sdp } };
  }
  return no(`signal type ${type}: a link takes an offer, an answer or candidates`);
}

// ICE over TCP is left out, both ways: a TCP host candidate costs a listening socket per local
// address and a TCP connection per candidate pair, and while several connections are being set
// up at once libwebrtc gathers them again and again (six peers in one Node process signalled
// 924 TCP candidates against 144 UDP ones, reached 11,000 open sockets and hit the open-file
// limit). UDP host candidates and TURN relays (which reach the peer over UDP whatever carries
// them to the TURN server) are what a data channel between volunteers uses.
const TCP_CANDIDATE = /^(?:a=)?candidate:\S+ \d+ tcp /i;

/**
 * The signal without its ICE-TCP candidates: null for a trickled TCP candidate (dropped), the
 * same object when nothing changes, else a copy whose SDP lacks its TCP candidate lines.
 */
export function withoutTcpCandidates(data: unknown): unknown {
  if (typeof data !== 'object' || data === null) return data;
  const d = data as { candidate?: { candidate?: unknown }; sdp?: unknown };
  if (typeof d.candidate?.candidate === 'string' && TCP_CANDIDATE.test(d.candidate.candidate)) return null;
  if (typeof d.sdp === 'string') {
    const lines = d.sdp.split('\r\n');
    const kept = lines.filter((l) => !TCP_CANDIDATE.test(l));
    if (kept.length !== lines.length) return { ...d, sdp: kept.join('\r\n') };
  }
  return data;
}

const CANDIDATE_TYPE = /\btyp (host|srflx|prflx|relay)\b/g;

/** Adds the candidate types a signal carries (trickled candidate or SDP lines) to `into`. */
export function noteCandidateTypes(data: unknown, into: CandidateType[]): void {
  if (typeof data !== 'object' || data === null) return;
  const d = data as { candidate?: { candidate?: unknown }; sdp?: unknown };
  const text = typeof d.candidate?.candidate === 'string' ? d.candidate.candidate : typeof d.sdp === 'string' ? d.sdp : '';
  for (const m of text.matchAll(CANDIDATE_TYPE)) {
    const t = m[1] as CandidateType;
    if (!into.includes(t)) into.push(t);
  }
}

interface StatLike { type?: string; id?: string; selectedCandidatePairId?: string; selected?: boolean; nominated?: boolean; state?: string;
  localCandidateId?: string; remoteCandidateId?: string; candidateType?: string }

/** The candidate types of the pair ICE selected, from an RTCStatsReport (null if not found). */
export function selectedRoute(stats: { forEach(fn: (v: StatLike) => void): void }): { local: CandidateType; remote: CandidateType } | null {
  const byId = new Map<string, StatLike>();
  let selectedId: string | undefined;
  stats.forEach((v) => {
    if (v.id) byId.set(v.id, v);
    if (v.type === 'transport' && v.selectedCandidatePairId) selectedId = v.selectedCandidatePairId;
  });
  let pair = selectedId ? byId.get(selectedId) : undefined;
  if (!pair) {
    for (const v of byId.values()) {
      if (v.type === 'candidate-pair' && (v.selected || (v.nominated && v.state === 'succeeded'))) { pair = v; break; }
    }
  }
  const local = pair?.localCandidateId ? byId.get(pair.localCandidateId)?.candidateType : undefined;
  const remote = pair?.remoteCandidateId ? byId.get(pair.remoteCandidateId)?.candidateType : undefined;
  const ok = (t: string | undefined): t is CandidateType => t === 'host' || t === 'srflx' || t === 'prflx' || t === 'relay';
  return ok(local) && ok(remote) ? { local, remote } : null;
}
