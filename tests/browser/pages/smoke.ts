// Page side of the browser smoke test: starts the module worker, wraps it with comlink and
// exposes a small API on window.smoke for tests/browser.smoke.test.ts (page.evaluate).
import * as Comlink from 'comlink';
import type { SmokeWorkerApi } from './smoke.worker.ts';

const worker = new Worker(new URL('./smoke.worker.ts', import.meta.url), { type: 'module', name: 'smoke' });
const remote = Comlink.wrap<SmokeWorkerApi>(worker);

const smoke = {
  remote,

  /** Sends a buffer to the worker by transfer; reports that it left this thread and what came back. */
  async roundTrip(values: number[], factor: number, tag: string) {
    const sent = new Float32Array(values).buffer;
    const reply = await remote.scale(Comlink.transfer(sent, [sent]), factor, tag);
    return {
      detachedAfterSend: sent.byteLength === 0,
      tag: reply.tag,
      received: reply.received,
      result: Array.from(new Float32Array(reply.result)),
    };
  },

  /** The main thread must be able to open WebRTC connections: make an offer with a data channel. */
  async mainThreadRtc() {
    if (typeof RTCPeerConnection !== 'function') return { hasRTCPeerConnection: false, offerHasDataChannel: false };
    const pc = new RTCPeerConnection({ iceServers: [] });
    try {
      pc.createDataChannel('smoke');
      const offer = await pc.createOffer();
      return { hasRTCPeerConnection: true, offerHasDataChannel: /webrtc-datachannel/.test(offer.sdp ?? '') };
    } finally {
      pc.close();
    }
  },
};

declare global {
  interface Window { smoke: typeof smoke }
}
window.smoke = smoke;
