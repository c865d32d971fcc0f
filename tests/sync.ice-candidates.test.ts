// Links never offer or accept ICE-TCP candidates: libwebrtc gathers one per local address, gathers
// them again while several connections are being set up at once, and opens a TCP connection per
// candidate pair (six peers in one Node process reached the open-file limit). Data channels
// between volunteers go over UDP host candidates or TURN relays.
import { afterEach, describe, expect, it } from 'vitest';
import wrtc from '@roamhq/wrtc';
import { admitSignal, MAX_SIGNAL_CANDIDATES, simplePeerLinks, withoutTcpCandidates, type Link, type RtcImplementation } from '../src/sync/links.ts';

const TCP = 'candidate:1 1 tcp 1518280447 192.0.2.2 9 typ host tcptype active generation 0';
const UDP = 'candidate:2 1 udp 2122260223 127.0.0.1 50000 typ host generation 0';

describe('withoutTcpCandidates', () => {
  it('drops a trickled TCP candidate and keeps a UDP one untouched', () => {
    expect(withoutTcpCandidates({ type: 'candidate', candidate: { candidate: TCP, sdpMid: '0' } })).toBeNull();
    const udp = { type: 'candidate', candidate: { candidate: UDP, sdpMid: '0' } };
    expect(withoutTcpCandidates(udp)).toBe(udp);
    // The protocol's case does not matter; the end-of-candidates marker (an empty candidate) passes.
    expect(withoutTcpCandidates({ candidate: { candidate: TCP.replace('tcp', 'TCP') } })).toBeNull();
    const end = { type: 'candidate', candidate: { candidate: '', sdpMid: '0' } };
    expect(withoutTcpCandidates(end)).toBe(end);
  });

  it('strips TCP candidate lines from an SDP and leaves the rest and the original alone', () => {
    const sdp = ['v=0', 'm=application 9 UDP/DTLS/SCTP webrtc-datachannel', `a=${UDP}`, `a=${TCP}`, 'a=mid:0', ''].join('\r\n');
    const offer = { type: 'offer', sdp };
    const out = withoutTcpCandidates(offer) as { type: string; sdp: string };
    expect(out).not.toBe(offer);
    expect(out.type).toBe('offer');
    expect(out.sdp).toBe(['v=0', 'm=application 9 UDP/DTLS/SCTP webrtc-datachannel', `a=${UDP}`, 'a=mid:0', ''].join('\r\n'));
    expect(offer.sdp).toBe(sdp);
    const clean = { type: 'answer', sdp: out.sdp };
    expect(withoutTcpCandidates(clean)).toBe(clean);
  });

  it('passes anything else through for the link to judge', () => {
    for (const x of [null, undefined, 'text', 42, { renegotiate: true }, { candidate: { candidate: 7 } }, { sdp: 5 }]) {
      expect(withoutTcpCandidates(x)).toBe(x);
    }
  });
});

/**
 * @roamhq/wrtc with every ICE candidate libwebrtc gathers counted by protocol, and every remote
 * candidate handed to a connection recorded.
 */
function countingRtc(): { rtc: RtcImplementation; gathered: { udp: number; tcp: number }; added: string[] } {
  const gathered = { udp: 0, tcp: 0 };
  const added: string[] = [];
  class CountingPeerConnection extends (wrtc.RTCPeerConnection as unknown as typeof RTCPeerConnection) {
    constructor(config?: RTCConfiguration) {
      super(config);
      this.addEventListener('icecandidate', (e) => {
        const c = (e as RTCPeerConnectionIceEvent).candidate?.candidate;
        if (c) gathered[/ tcp /i.test(c) ? 'tcp' : 'udp']++;
      });
      const add = this.addIceCandidate.bind(this);
      this.addIceCandidate = ((c?: RTCIceCandidateInit | null) => {
        if (c?.candidate) added.push(c.candidate);
        return add(c);
      }) as typeof this.addIceCandidate;
    }
  }
  return { rtc: { ...wrtc, RTCPeerConnection: CountingPeerConnection }, gathered, added };
}

const links: Link[] = [];
afterEach(() => { for (const l of links.splice(0)) l.destroy(); });

describe('real WebRTC links', () => {
  it('connect over UDP with no TCP candidate signalled either way, though libwebrtc gathered some', async () => {
    const { rtc, gathered, added } = countingRtc();
    const make = simplePeerLinks({ rtc });
    const a = make({ remote: 'B', initiator: true });
    const b = make({ remote: 'A', initiator: false });
    links.push(a, b);
    const signalled: string[] = [];
    // Hold every signal until the initiator has gathered a TCP candidate (they come after the UDP
    // ones, and libwebrtc stops gathering once connected), then relay as they come.
    const held: [Link, unknown][] = [];
    let relaying = false;
    const deliver = (to: Link, s: unknown) => { if (relaying) to.signal(s); else held.push([to, s]); };
    a.on('signal', (s) => { signalled.push(JSON.stringify(s)); deliver(b, s); });
    b.on('signal', (s) => { signalled.push(JSON.stringify(s)); deliver(a, s); });
    const connected = Promise.all([new Promise((r) => a.on('connect', r)), new Promise((r) => b.on('connect', r))]);
    const deadline = Date.now() + 10_000;
    while (gathered.tcp === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(gathered.tcp, 'libwebrtc gathered no TCP candidate, so this test shows nothing').toBeGreaterThan(0);
    relaying = true;
    for (const [to, s] of held.splice(0)) to.signal(s);
    await connected;
    expect(signalled.filter((s) => / tcp /i.test(s))).toEqual([]);
    expect(signalled.some((s) => / udp /i.test(s))).toBe(true);
    // A TCP candidate fed to a link from outside never reaches its connection, and the link stays up.
    const before = added.length;
    a.signal({ type: 'candidate', candidate: { candidate: TCP, sdpMid: '0', sdpMLineIndex: 0 } });
    a.signal({ type: 'candidate', candidate: { candidate: UDP, sdpMid: '0', sdpMLineIndex: 0 } });
    await new Promise((r) => setTimeout(r, 50));
    expect(added.slice(before)).toEqual([UDP]);
    expect(added.filter((c) => / tcp /i.test(c))).toEqual([]);
    a.send(new Uint8Array([1, 2, 3]));
    const got = await new Promise<Uint8Array>((r) => b.on('data', r));
    expect([...got]).toEqual([1, 2, 3]);
  });
});

/**
 * @roamhq/wrtc whose connections, once they have a local description, first report the
 * candidates of a host with many interfaces (`lines`, in gathering order), then their real ones.
 */
function manyInterfacesRtc(lines: string[]): RtcImplementation {
  class Crowded extends (wrtc.RTCPeerConnection as unknown as typeof RTCPeerConnection) {
    override async setLocalDescription(d?: RTCLocalSessionDescriptionInit): Promise<void> {
      await super.setLocalDescription(d);
      for (const candidate of lines) {
        this.onicecandidate?.({ candidate: { candidate, sdpMid: '0', sdpMLineIndex: 0 } } as unknown as RTCPeerConnectionIceEvent);
      }
    }
  }
  return { ...wrtc, RTCPeerConnection: Crowded };
}

describe('a link on a host with many interfaces', () => {
  // A Node volunteer gathers on every interface: a server with a dozen container bridges has a
  // host and a server-reflexive candidate on each, and its TURN relays come last. The remote takes
  // MAX_SIGNAL_CANDIDATES of them (admitSignal); sent all, the relays were past it and refused,
  // and two volunteers behind symmetric NATs had no route left.
  it('sends what its remote takes, relays included: each type within its share', async () => {
    const iface = (i: number) => `198.18.${Math.floor(i / 200)}.${(i % 200) + 1}`;
    const lines = [
      ...Array.from({ length: 40 }, (_, i) => `candidate:${i} 1 udp 2122260223 ${iface(i)} ${50000 + i} typ host generation 0`),
      ...Array.from({ length: 40 }, (_, i) => `candidate:${100 + i} 1 udp 1686052607 198.19.0.${i + 1} ${51000 + i} typ srflx raddr ${iface(i)} rport ${50000 + i} generation 0`),
      ...Array.from({ length: 6 }, (_, i) => `candidate:${200 + i} 1 udp 41885439 198.19.1.1 ${52000 + i} typ relay raddr 198.19.0.1 rport ${51000 + i} generation 0`),
    ];
    const a = simplePeerLinks({ rtc: manyInterfacesRtc(lines) })({ remote: 'B', initiator: true });
    links.push(a);
    const sent: unknown[] = [];
    a.on('signal', (s) => sent.push(s));
    const ours = () => sent.filter((s) => lines.includes((s as { candidate?: { candidate?: string } }).candidate?.candidate ?? ''));
    const deadline = Date.now() + 10_000;
    // Every one of the crowd is reported before the real ones; wait for the last relay's turn.
    while (!sent.some((s) => /typ relay/.test(JSON.stringify(s)) && / 52005 /.test(JSON.stringify(s))) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    // What the remote's link makes of them, in order: every relay is taken.
    let taken = 0;
    const relays: string[] = [];
    for (const s of sent) {
      const v = admitSignal(s, { initiator: false, described: true, candidates: taken });
      if (!v.ok) continue;
      const line = (v.signal as { candidate?: { candidate?: string } }).candidate?.candidate;
      if (line === undefined) continue;
      taken++;
      if (/typ relay/.test(line)) relays.push(line);
    }
    expect(relays).toEqual(lines.slice(80));
    expect(sent.filter((s) => (s as { type?: string }).type === 'candidate').length).toBeLessThanOrEqual(MAX_SIGNAL_CANDIDATES);
    expect(ours().length).toBe(24 + 16 + 6);
  });
});
