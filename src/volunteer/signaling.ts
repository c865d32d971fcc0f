// The SignalingClient as the mesh sees it, with one addition: a 'peers' subscriber made after
// the welcome gets the current peer list at once. The mesh learns who is live only from
// 'peers' events, and a volunteer creates its mesh after the welcome (it needs the run's
// layout, and a trainer first), so without the replay a peer that joined together with others
// would see nobody until someone else joined or left: no neighbours, no bootstrap from a peer.
import type { Signaling, SignalingEventMap } from '../protocol/signaling.ts';
import type { SignalingClient } from '../sync/signaling-client.ts';

/** What the replay needs of the client (a SignalingClient, or a stub in tests). */
export type PeerListSource = Pick<SignalingClient, 'welcome' | 'peerId' | 'connected' | 'sendSignal' | 'ready'> & Partial<Pick<SignalingClient, 'ice'>> & {
  /** Passed through to the mesh: without it offender reports would never reach the coordinator. */
  reportOffender?(peer: string, reason: string): void;
  on<K extends keyof SignalingEventMap>(event: K, fn: (e: SignalingEventMap[K]) => void): () => void;
};

export function withPeerReplay(client: PeerListSource): Signaling {
  let last: SignalingEventMap['peers'] = { peers: client.welcome?.peers ?? [], ...(client.welcome?.probation ? { probation: client.welcome.probation } : {}) };
  client.on('peers', (e) => { last = e; });
  client.on('close', () => { last = { peers: [] }; });
  return {
    get peerId() { return client.peerId; },
    get connected() { return client.connected; },
    sendSignal: (to, data) => client.sendSignal(to, data),
    ready: (round, waitMs) => client.ready(round, waitMs),
    ...(client.ice ? { ice: () => client.ice!() } : {}),
    ...(client.reportOffender ? { reportOffender: (peer: string, reason: string) => client.reportOffender!(peer, reason) } : {}),
    on<K extends keyof SignalingEventMap>(event: K, fn: (e: SignalingEventMap[K]) => void): () => void {
      const off = client.on(event, fn);
      if (event === 'peers' && client.connected && last.peers.length > 0) {
        const e = { ...last, peers: last.peers.slice() };
        queueMicrotask(() => (fn as (e: SignalingEventMap['peers']) => void)(e));
      }
      return off;
    },
  };
}
