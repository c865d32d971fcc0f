// The SignalingClient as the mesh sees it, with two additions for a mesh made after the welcome
// (it needs the run's layout, and a trainer first):
// - A 'peers' subscriber gets the current peer list at once. The mesh learns who is live only
//   from 'peers' events, so without the replay a peer that joined together with others would
//   see nobody until someone else joined or left: no neighbours, no bootstrap from a peer.
// - The first 'signal' subscriber gets the signals that came before it, in order (at most
//   MAX_EARLY_SIGNALS; past that, the peer holding the most gives up its oldest candidate, its
//   offer or answer kept). Live peers dial a newcomer as soon as the coordinator lists it, seconds
//   before its mesh exists. Lost, their offers left every peer whose id is smaller than the
//   newcomer's waiting out the connect timeout (10 s): the newcomer's own offer to it loses the
//   glare rule (the smaller id's offer wins), and the winning offer never arrived. In a pairing
//   that was 10 s idle for both sides (issue 15's rejoiner: honest pairs fell to a tenth).
import type { Signaling, SignalingEventMap } from '../protocol/signaling.ts';
import type { SignalingClient } from '../sync/signaling-client.ts';

/** What the replay needs of the client (a SignalingClient, or a stub in tests). */
export type PeerListSource = Pick<SignalingClient, 'welcome' | 'peerId' | 'connected' | 'sendSignal' | 'ready'> & Partial<Pick<SignalingClient, 'ice'>> & {
  /** Passed through to the mesh: without it offender reports would never reach the coordinator. */
  reportOffender?(peer: string, reason: string): void;
  on<K extends keyof SignalingEventMap>(event: K, fn: (e: SignalingEventMap[K]) => void): () => void;
};

/** Signals kept for a mesh not made yet: an offer and its candidates are about 5, per peer. */
export const MAX_EARLY_SIGNALS = 64;

/** Whether a relayed signal is a link's offer or answer (a mesh signal: `{mesh, cid, sig}`). */
function isDescription(e: SignalingEventMap['signal']): boolean {
  const type = (e.data as { sig?: { type?: unknown } } | null)?.sig?.type;
  return type === 'offer' || type === 'answer';
}

export function withPeerReplay(client: PeerListSource): Signaling {
  let last: SignalingEventMap['peers'] = { peers: client.welcome?.peers ?? [], ...(client.welcome?.probation ? { probation: client.welcome.probation } : {}) };
  client.on('peers', (e) => { last = e; });
  /** Signals no subscriber took yet (null: one has, from then on they pass straight through). */
  let early: SignalingEventMap['signal'][] | null = [];
  client.on('signal', (e) => {
    if (!early) return;
    early.push(e);
    if (early.length <= MAX_EARLY_SIGNALS) return;
    // Full: the peer holding the most gives up its oldest signal other than an offer or answer
    // (on a tie, the peer that came later). Any peer of the run may signal a newcomer, and the
    // plain newest 64 let one send 64 after an honest offer and push it out; now a flooder pushes
    // out only its own signals. A description stays while its sender holds anything else: without
    // it the rest are useless (giving up the oldest threw away every offer of 13 honest diallers).
    const held = new Map<string, number>();
    for (const x of early) held.set(x.from, (held.get(x.from) ?? 0) + 1);
    let top = e.from, most = 0;
    for (const [from, n] of held) if (n >= most) [top, most] = [from, n];
    const i = early.findIndex((x) => x.from === top && !isDescription(x));
    early.splice(i >= 0 ? i : early.findIndex((x) => x.from === top), 1);
  });
  client.on('close', () => { last = { peers: [] }; if (early) early.length = 0; });
  return {
    get peerId() { return client.peerId; },
    get connected() { return client.connected; },
    sendSignal: (to, data) => client.sendSignal(to, data),
    ready: (round, waitMs) => client.ready(round, waitMs),
    ...(client.ice ? { ice: () => client.ice!() } : {}),
    ...(client.reportOffender ? { reportOffender: (peer: string, reason: string) => client.reportOffender!(peer, reason) } : {}),
    on<K extends keyof SignalingEventMap>(event: K, fn: (e: SignalingEventMap[K]) => void): () => void {
      if (event === 'signal' && early) {
        // Delivered asynchronously, like a frame (the mesh subscribes in its constructor); what
        // arrives until then joins the backlog, so the order holds.
        let off: (() => void) | null = null;
        let cancelled = false;
        queueMicrotask(() => {
          if (cancelled) return;
          const backlog = early ?? [];
          early = null;
          for (const e of backlog) (fn as (e: SignalingEventMap['signal']) => void)(e);
          if (!cancelled) off = client.on(event, fn);
        });
        return () => { cancelled = true; off?.(); };
      }
      const off = client.on(event, fn);
      if (event === 'peers' && client.connected && last.peers.length > 0) {
        const e = { ...last, peers: last.peers.slice() };
        queueMicrotask(() => (fn as (e: SignalingEventMap['peers']) => void)(e));
      }
      return off;
    },
  };
}
