// A hostile peer of the run reaches our links only through the coordinator's relay, but what it
// relays used to go to simple-peer as is: a renegotiation offer with hundreds of m=audio lines
// was answered (92 KB), and `transceiverRequest` / `renegotiate` made the initiator add
// transceivers and offer again (239 KB). Those frames exceed the coordinator's 64 KiB limit, so
// it closed the victim's socket (1009): the victim lost its pending ready, and one more offer
// after each reconnect kept it off. Links now take only the one offer or answer of a data
// channel and bounded candidates (admitSignal), and the signaling client never sends a frame
// over the coordinator's limit.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import wrtc from '@roamhq/wrtc';
import { WebSocket } from 'ws';
import type SimplePeer from 'simple-peer';
import { MAX_SIGNAL_CANDIDATES, MAX_SIGNAL_SDP_BYTES, admitSignal, simplePeerLinks, type Link } from '../src/sync/links.ts';
import type { Logger } from '../src/sync/components.ts';
import { SignalingClient, memorySessionStore, type WebSocketCtor } from '../src/sync/signaling-client.ts';
import type { ErrorMsg } from '../src/protocol/messages.ts';
import { startServer, until, type TestServer } from './support/coordinator.ts';

/** The SDP cap links apply (MAX_SIGNAL_SDP_BYTES); a literal so the link tests run against older code too. */
const CAP = 16 * 1024;
type Sig = { type?: string; sdp?: string; candidate?: unknown };

interface Pair {
  a: Link; // initiator
  b: Link; // responder
  /** Every signal each side emitted, in order, and how many each had emitted when it connected. */
  fromA: Sig[];
  fromB: Sig[];
  refused: { remote: string; reason: string }[];
  /** Stops relaying A's signals to B (the test then plays the remote itself). */
  relay: { aToB: boolean };
}

const links: Link[] = [];
afterEach(() => { for (const l of links.splice(0)) l.destroy(); });

/** Two real links (@roamhq/wrtc, simple-peer) that relay each other's signals; resolves once both are open. */
async function connectedPair(): Promise<Pair> {
  const refused: Pair['refused'] = [];
  const logger: Logger = { debug() {}, info() {}, error() {}, warn: (_m, f) => { refused.push(f as Pair['refused'][number]); } };
  const make = simplePeerLinks({ rtc: wrtc, logger });
  const a = make({ remote: 'B', initiator: true });
  const b = make({ remote: 'A', initiator: false });
  links.push(a, b);
  const p: Pair = { a, b, fromA: [], fromB: [], refused, relay: { aToB: true } };
  a.on('signal', (s) => { p.fromA.push(s as Sig); if (p.relay.aToB) b.signal(s); });
  b.on('signal', (s) => { p.fromB.push(s as Sig); a.signal(s); });
  await Promise.all([new Promise((r) => a.on('connect', r)), new Promise((r) => b.on('connect', r))]);
  return p;
}

const pcOf = (l: Link) => (l as unknown as { peer: SimplePeer.Instance & { _pc: RTCPeerConnection } }).peer._pc;
const spOf = (l: Link) => (l as unknown as { peer: SimplePeer.Instance }).peer;

/** Both directions still carry data. */
async function stillCarries(p: Pair): Promise<void> {
  for (const [from, to] of [[p.a, p.b], [p.b, p.a]] as const) {
    const got = new Promise<Uint8Array>((r) => { const off = to.on('data', (d) => { off(); r(d); }); });
    from.send(new Uint8Array([7, 8, 9]));
    expect([...await got]).toEqual([7, 8, 9]);
  }
}

describe('links refuse what would make them renegotiate', () => {
  it('honest pairs connect with nothing refused, signalling only one offer, one answer and candidates', async () => {
    const pairs = [await connectedPair(), await connectedPair()];
    for (const p of pairs) {
      expect(p.refused).toEqual([]);
      expect(p.a.open && p.b.open).toBe(true);
      expect(p.fromA.filter((s) => s.type !== 'candidate').map((s) => s.type)).toEqual(['offer']);
      expect(p.fromB.filter((s) => s.type !== 'candidate').map((s) => s.type)).toEqual(['answer']);
      await stillCarries(p);
    }
  });

  it('a renegotiation offer with 400 m=audio sections gets no answer, and the link stays up', async () => {
    const p = await connectedPair();
    const answersBefore = p.fromB.filter((s) => s.type === 'answer').length;
    // The hostile initiator adds 400 audio transceivers: its simple-peer offers again (~49 KB).
    const hostile = spOf(p.a);
    for (let i = 0; i < 400; i++) hostile.addTransceiver('audio', {});
    const offer = (await until(() => p.fromA.find((s, i) => i > 0 && s.type === 'offer'), 10_000, 'the hostile renegotiation offer'))!;
    expect((offer.sdp!.match(/^m=audio /gm) ?? []).length).toBe(400);
    expect(offer.sdp!.length).toBeGreaterThan(CAP);
    // Relayed to B: either it is refused, or B answers (what it did before).
    await until(() => p.refused.length > 0 || p.fromB.filter((s) => s.type === 'answer').length > answersBefore, 10_000, 'B to refuse or answer the offer');
    expect(p.fromB.filter((s) => s.type === 'answer').length).toBe(answersBefore);
    expect(p.fromB.filter((s) => JSON.stringify(s).length > CAP)).toEqual([]);
    expect(p.refused[0]).toEqual(expect.objectContaining({ remote: 'A', reason: expect.stringMatching(/never renegotiate/) }));
    expect(pcOf(p.b).getTransceivers()).toHaveLength(0);
    expect(pcOf(p.b).signalingState).toBe('stable');
    expect(p.b.open).toBe(true);
    await stillCarries(p);
  });

  it('a small renegotiation offer on an open link is refused as well (one description per link)', async () => {
    const p = await connectedPair();
    const first = p.fromA.find((s) => s.type === 'offer')!;
    p.b.signal({ type: 'offer', sdp: first.sdp });
    expect(p.refused).toEqual([expect.objectContaining({ remote: 'A', reason: expect.stringMatching(/never renegotiate/) })]);
    expect(p.b.open).toBe(true);
    await stillCarries(p);
  });

  it('transceiverRequest and renegotiate make the initiator neither grow nor offer again', async () => {
    const p = await connectedPair();
    const offersBefore = p.fromA.filter((s) => s.type === 'offer').length;
    const attacks = [
      ...Array.from({ length: 10 }, () => ({ type: 'transceiverRequest', transceiverRequest: { kind: 'audio' } })),
      { type: 'renegotiate', renegotiate: true },
      // Riding along on a signal the link would take is no way in either.
      { type: 'candidate', candidate: { candidate: '', sdpMid: '0', sdpMLineIndex: 0 }, transceiverRequest: { kind: 'audio' }, renegotiate: true },
    ];
    for (const x of attacks) p.a.signal(x);
    await until(() => p.refused.length >= attacks.length - 1 || p.fromA.filter((s) => s.type === 'offer').length > offersBefore
      || pcOf(p.a).getTransceivers().length > 0, 10_000, 'A to refuse or act on the requests');
    expect(pcOf(p.a).getTransceivers()).toHaveLength(0);
    expect(p.fromA.filter((s) => s.type === 'offer').length).toBe(offersBefore);
    expect(p.refused).toHaveLength(attacks.length - 1); // all but the (stripped) candidate
    expect(p.a.open).toBe(true);
    await stillCarries(p);
    expect(pcOf(p.a).signalingState).toBe('stable');
  });
});

describe('a link takes a bounded number of candidates', () => {
  /** The candidate cap links apply (MAX_SIGNAL_CANDIDATES); a literal so the test runs against older code too. */
  const CANDIDATES = 64;
  const candidate = (port: number) => ({ type: 'candidate', candidate: { candidate: `candidate:${port} 1 udp 2122260223 127.0.0.1 ${port} typ host generation 0`, sdpMid: '0', sdpMLineIndex: 0 } });

  it('a remote trickling candidates without end adds at most the cap to our connection, and the link stays up', async () => {
    // Each remote candidate is an address our connection sends ICE checks to and holds candidate
    // pairs for, for as long as the link lives: a neighbour kept adding them to an open link.
    const p = await connectedPair();
    const pc = pcOf(p.b);
    let added = 0;
    const add = pc.addIceCandidate.bind(pc);
    pc.addIceCandidate = ((c: RTCIceCandidateInit) => { added++; return add(c); }) as typeof pc.addIceCandidate;
    const before = p.fromA.filter((s) => s.type === 'candidate').length;
    expect(before, 'an honest initiator trickles a few candidates').toBeGreaterThan(0);
    expect(before).toBeLessThan(CANDIDATES);
    p.relay.aToB = false;
    for (let i = 0; i < 500; i++) p.b.signal(candidate(40_000 + i));
    expect(added).toBe(CANDIDATES - before);
    expect(p.refused.length).toBe(500 - (CANDIDATES - before));
    expect(p.refused.at(-1)).toEqual(expect.objectContaining({ remote: 'A', reason: expect.stringMatching(/64 candidates/) }));
    expect(p.b.open).toBe(true);
    await stillCarries(p);
  });
});

describe('a link carries the one data channel its offer set up', () => {
  /** Simple-peer's 5 s "closing" timers on `l`: one per channel it ever took as its own. */
  function countIntervals(l: Link): { count: () => number } {
    const sp = spOf(l) as unknown as { _setupData: (e: unknown) => void };
    let n = 1; // the channel it already has
    const setup = sp._setupData.bind(sp);
    sp._setupData = (e) => { n++; setup(e); };
    return { count: () => n };
  }

  it('a dialler opening more channels in-band loses the link, and the responder takes none of them', async () => {
    // Before: the responder's simple-peer took every channel the remote opened as its own, each
    // with a fresh interval only the last of which was ever cleared: 500 channels, 500 timers
    // running after the link closed, for every link the remote made.
    const p = await connectedPair();
    const taken = countIntervals(p.b);
    const closed = new Promise<string>((r) => p.b.on('close', (e) => r(e.reason)));
    const pc = pcOf(p.a);
    for (let i = 0; i < 50; i++) pc.createDataChannel(`extra-${i}`);
    expect(await closed).toMatch(/second data channel/);
    expect(p.b.open).toBe(false);
    expect(taken.count()).toBe(1);
  });

  it('a responder opening a channel of its own loses the link as well', async () => {
    const p = await connectedPair();
    const closed = new Promise<string>((r) => p.a.on('close', (e) => r(e.reason)));
    pcOf(p.b).createDataChannel('extra');
    expect(await closed).toMatch(/second data channel/);
  });

  it('an honest pair keeps its one channel', async () => {
    const p = await connectedPair();
    await stillCarries(p);
    expect(p.a.open && p.b.open).toBe(true);
  });
});

describe('links never read wrtc\'s native descriptions', () => {
  // Its getter serializes the description while wrtc's network thread adds gathered candidates to
  // it: a race that killed a CI worker with SIGSEGV in webrtc::SdpSerialize (node-webrtc#696).
  it('an honest pair connects and carries data without one read of the native getters', async () => {
    let nativeReads = 0;
    function Counting(config?: RTCConfiguration) {
      const pc = new (wrtc.RTCPeerConnection as unknown as new (c?: RTCConfiguration) => RTCPeerConnection)(config);
      return new Proxy(pc, {
        get(target, key) {
          if (key === 'localDescription' || key === 'remoteDescription') nativeReads++;
          const v: unknown = Reflect.get(target, key, target);
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
        set: (target, key, value) => Reflect.set(target, key, value, target),
      });
    }
    const make = simplePeerLinks({ rtc: { ...wrtc, RTCPeerConnection: Counting } });
    const a = make({ remote: 'B', initiator: true });
    const b = make({ remote: 'A', initiator: false });
    links.push(a, b);
    const sdps: string[] = [];
    a.on('signal', (s) => { if ((s as Sig).sdp) sdps.push((s as Sig).sdp!); b.signal(s); });
    b.on('signal', (s) => { if ((s as Sig).sdp) sdps.push((s as Sig).sdp!); a.signal(s); });
    await Promise.all([new Promise((r) => a.on('connect', r)), new Promise((r) => b.on('connect', r))]);
    await stillCarries({ a, b } as Pair);
    expect(nativeReads).toBe(0);
    // The offer and the answer went out, each the description its side set.
    expect(sdps).toHaveLength(2);
    expect(pcOf(a).localDescription).toEqual({ type: 'offer', sdp: sdps[0] });
    expect(pcOf(b).localDescription).toEqual({ type: 'answer', sdp: sdps[1] });
    expect(pcOf(b).remoteDescription).toMatchObject({ type: 'offer' });
    expect(pcOf(a).remoteDescription).toMatchObject({ type: 'answer' });
  });
});

describe('admitSignal', () => {
  const sdp = (media: string[]) => ['v=0', 'o=- 1 2 IN IP4 127.0.0.1', 's=-', 't=0 0', ...media.flatMap((m) => [m, 'a=mid:0']), ''].join('\r\n');
  const dc = 'm=application 9 UDP/DTLS/SCTP webrtc-datachannel';
  const responder = { initiator: false, described: false };

  it('takes every signal an honest simple-peer pair sends, with the documented cap', async () => {
    expect(MAX_SIGNAL_SDP_BYTES).toBe(CAP);
    const p = await connectedPair();
    expect(p.fromA.length + p.fromB.length).toBeGreaterThan(2);
    for (const x of p.fromA) expect(admitSignal(x, { initiator: false, described: x.type !== 'offer' }).ok, JSON.stringify(x)).toBe(true);
    for (const x of p.fromB) expect(admitSignal(x, { initiator: true, described: x.type !== 'answer' }).ok, JSON.stringify(x)).toBe(true);
  });

  it('takes one data-channel offer to a responder, copying only type and sdp', () => {
    const v = admitSignal({ type: 'offer', sdp: sdp([dc]), renegotiate: true, transceiverRequest: { kind: 'audio' } }, responder);
    expect(v).toEqual({ ok: true, signal: { type: 'offer', sdp: sdp([dc]) } });
  });

  it('refuses media sections, oversized SDPs, the wrong direction and a second description', () => {
    const refused = (x: unknown, link = responder) => { const v = admitSignal(x, link); return !v.ok; };
    expect(refused({ type: 'offer', sdp: sdp([dc, 'm=audio 9 UDP/TLS/RTP/SAVPF 111']) })).toBe(true);
    expect(refused({ type: 'offer', sdp: sdp(['m=audio 9 UDP/TLS/RTP/SAVPF 111']) })).toBe(true);
    expect(refused({ type: 'offer', sdp: sdp([]) })).toBe(true);
    expect(refused({ type: 'offer', sdp: sdp([dc]).replace(/\r\n/g, '\n') + 'm=video 9 RTP/AVP 96\n' })).toBe(true);
    expect(refused({ type: 'offer', sdp: sdp([dc]) + 'a=x:' + 'y'.repeat(MAX_SIGNAL_SDP_BYTES) + '\r\n' })).toBe(true);
    expect(refused({ type: 'answer', sdp: sdp([dc]) })).toBe(true);
    expect(refused({ type: 'offer', sdp: sdp([dc]) }, { initiator: true, described: false })).toBe(true);
    expect(refused({ type: 'answer', sdp: sdp([dc]) }, { initiator: true, described: true })).toBe(true);
    expect(refused({ type: 'offer', sdp: sdp([dc]) }, { initiator: false, described: true })).toBe(true);
    for (const x of [null, 'text', [1], { type: 'pranswer', sdp: sdp([dc]) }, { type: 'rollback' }, { sdp: sdp([dc]) },
      { type: 'renegotiate', renegotiate: true }, { type: 'transceiverRequest', transceiverRequest: { kind: 'audio' } },
      { candidate: { candidate: '' } }, { type: 'candidate', candidate: { candidate: 'x'.repeat(2000) } },
      { type: 'candidate', candidate: { candidate: '', sdpMid: 'x'.repeat(100) } }, { type: 'candidate', candidate: 5 }]) {
      expect(refused(x), JSON.stringify(x)?.slice(0, 80)).toBe(true);
    }
  });

  it('takes bounded candidates at any time, keeping only the candidate fields', () => {
    const c = { candidate: 'candidate:2 1 udp 2122260223 127.0.0.1 50000 typ host generation 0', sdpMid: '0', sdpMLineIndex: 0 };
    expect(admitSignal({ type: 'candidate', candidate: { ...c, extra: 1 }, renegotiate: true }, { initiator: true, described: true }))
      .toEqual({ ok: true, signal: { type: 'candidate', candidate: c } });
    expect(MAX_SIGNAL_CANDIDATES).toBe(64);
    expect(admitSignal({ type: 'candidate', candidate: c }, { initiator: true, described: true, candidates: MAX_SIGNAL_CANDIDATES - 1 }).ok).toBe(true);
    expect(admitSignal({ type: 'candidate', candidate: c }, { initiator: true, described: true, candidates: MAX_SIGNAL_CANDIDATES }))
      .toEqual({ ok: false, reason: 'a candidate past the first 64 candidates: a link takes no more' });
  });
});

describe('SignalingClient.send against the real coordinator', () => {
  let s: TestServer;
  const clients: SignalingClient[] = [];
  beforeAll(async () => {
    s = await startServer();
    const r = await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id: 'guard', dataset: 'moby-dick', preset: 'micro' } });
    expect(r.statusCode).toBe(201);
  });
  afterAll(async () => {
    for (const c of clients) c.stop();
    await s?.close();
  });

  it('drops a frame over the limit the welcome announced, and the socket stays open', async () => {
    const client = new SignalingClient({ url: s.url, run: 'guard', WebSocket: WebSocket as unknown as WebSocketCtor, session: memorySessionStore() });
    clients.push(client);
    const closes: string[] = [];
    const errors: ErrorMsg[] = [];
    let welcomes = 0;
    client.on('close', (e) => closes.push(e.reason));
    client.on('error', (e) => errors.push(e));
    client.on('welcome', () => { welcomes++; });
    client.start();
    await until(() => client.connected, 5000, 'the client to join');
    const limit = client.welcome!.limits.maxMessageBytes;
    // The answer a victim produced for a 400-section offer: larger than the coordinator takes.
    client.sendSignal('p-0000000000000001', { mesh: 1, cid: 'c1', sig: { type: 'answer', sdp: 'a=x\r\n'.repeat(Math.ceil(limit / 5) + 10) } });
    // A frame sent after it: acknowledged on this same connection.
    const seq = client.report({ time: Date.now(), step: 1, round: 0, trainLoss: 3, valLoss: null, tokensPerS: 100, bytesIn: 0, bytesOut: 0, partner: null, partnerDist: null, adapter: null });
    await until(() => client.pendingReports === 0, 10_000, `the ack of report ${seq}`);
    expect(closes).toEqual([]);
    expect(welcomes).toBe(1);
    expect(client.connected).toBe(true);
    expect(client.droppedFrames).toBe(1);
    expect(errors).toEqual([expect.objectContaining({ code: 'too-large', message: expect.stringMatching(/dropped an outgoing signal frame/) })]);
  });
});
