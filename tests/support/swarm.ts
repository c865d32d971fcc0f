// A swarm of meshes in one process for tests: N peers on a SignalHub, over in-memory links or
// real WebRTC (@roamhq/wrtc), each with seeded randomness.
import { sleep } from './wait.ts';
import wrtc from '@roamhq/wrtc';
import { createMesh, type Mesh } from '../../src/sync/mesh.ts';
import { simplePeerLinks, type LinkFactory } from '../../src/sync/links.ts';
import type { ExchangeResult, MeshInit, OuterPayload } from '../../src/sync/types.ts';
import { consoleLogger, silentLogger } from '../../src/sync/components.ts';
import { MemoryNet } from './memory-links.ts';
import { SignalHub, type HubClient } from './signal-hub.ts';
import { seededRandom } from './stats.ts';

export interface SwarmPeer {
  id: string;
  client: HubClient;
  mesh: Mesh;
  results: ExchangeResult[];
}

export interface SwarmOptions {
  n: number;
  transport: 'memory' | 'wrtc';
  elements: number;
  seed?: number;
  init?: Partial<MeshInit>;
  /** Wrap a peer's link factory (chaos tests). */
  wrap?: (id: string, links: LinkFactory) => LinkFactory;
  /** Per-peer init overrides (a malicious peer with another config, ...). */
  initFor?: (id: string) => Partial<MeshInit>;
  verbose?: boolean;
}

export const CONFIG_HASH = '00112233445566ff';

export class Swarm {
  readonly hub: SignalHub;
  readonly peers: SwarmPeer[] = [];
  readonly net = new MemoryNet();

  constructor(readonly opts: SwarmOptions) {
    const seed = opts.seed ?? 1;
    this.hub = new SignalHub({ random: seededRandom(seed * 7919) });
    for (let i = 0; i < opts.n; i++) this.add(`p${i}`);
  }

  add(id: string): SwarmPeer {
    const { opts } = this;
    const client = this.hub.client(id);
    let links: LinkFactory = opts.transport === 'memory' ? this.net.links(id) : simplePeerLinks({ rtc: wrtc });
    if (opts.wrap) links = opts.wrap(id, links);
    const init: MeshInit = {
      runId: 'test-run', configHash: CONFIG_HASH, elements: opts.elements,
      neighbours: { min: Math.max(1, Math.min(4, opts.n - 1)), max: Math.max(1, Math.min(8, opts.n - 1)) },
      maintainMs: 50, connectTimeoutMs: 5_000,
      ...opts.init, ...opts.initFor?.(id),
    };
    const mesh = createMesh(init)({
      signaling: client, links,
      random: seededRandom((opts.seed ?? 1) * 1000 + this.peers.length + 1),
      logger: opts.verbose ? consoleLogger(`[${id}]`, true) : silentLogger,
    });
    const peer: SwarmPeer = { id, client, mesh, results: [] };
    mesh.on('exchange', (r) => peer.results.push(r));
    this.peers.push(peer);
    return peer;
  }

  peer(id: string): SwarmPeer {
    const p = this.peers.find((x) => x.id === id);
    if (!p) throw new Error(`no peer ${id}`);
    return p;
  }

  /** Resolves when every peer has at least `min` open neighbours. */
  async connected(min: number, timeoutMs = 20_000, peers = this.peers): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (peers.some((p) => p.mesh.neighbours().length < min)) {
      if (Date.now() > end) {
        throw new Error(`swarm not connected after ${timeoutMs} ms: ${peers.map((p) => `${p.id}:${p.mesh.neighbours().length}`).join(' ')}`);
      }
      await sleep(20);
    }
  }

  destroy(): void {
    for (const p of this.peers) { p.mesh.destroy(); p.client.close(); }
  }
}

export { sleep };

/** Gaussian vector from a seed (Box-Muller on a seeded uniform). */
export function gaussian(n: number, seed: number, scale: number): Float32Array {
  const r = seededRandom(seed);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = scale * Math.sqrt(-2 * Math.log(r() || 1e-12)) * Math.cos(2 * Math.PI * r());
  return x;
}

/** An honest synthetic payload: shared base φ plus a small per-peer offset, and a fresh Δ. */
export function syntheticPayload(n: number, peerIndex: number, round: number): OuterPayload {
  const base = gaussian(n, 1, 0.02);
  const off = gaussian(n, 100 + peerIndex, 1e-3);
  const phi = base.map((x, i) => x + off[i]);
  return { phi, delta: gaussian(n, 10_000 + peerIndex * 1000 + round, 1e-3) };
}

/**
 * Exact equality of two float arrays, reporting only the first difference: vitest's toEqual
 * would render a diff of 100K elements on failure, which takes minutes.
 */
export function sameFloats(a: Float32Array, b: Float32Array): string {
  if (a.length !== b.length) return `lengths ${a.length} != ${b.length}`;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return `first difference at ${i}: ${a[i]} != ${b[i]}`;
  return 'same';
}

/**
 * Watches this process's event-loop lag. A timer can fire no earlier than the loop gets to it:
 * on a loaded machine "never past the deadline" means within the deadline plus this lag.
 */
export function lagMonitor(periodMs = 20): { readonly max: number; during(fromMs: number, toMs: number): number; stop(): void } {
  let max = 0;
  let last = performance.now();
  let lastWall = Date.now();
  // Each stall of the event loop, as wall-clock spans: a wait that ends late can have met more
  // than one (its timer fired late, then what runs after it waited again).
  const stalls: { from: number; to: number; ms: number }[] = [];
  const iv = setInterval(() => {
    const now = performance.now(), wall = Date.now();
    const stall = now - last - periodMs;
    max = Math.max(max, stall);
    if (stall > 1) stalls.push({ from: lastWall, to: wall, ms: stall });
    last = now;
    lastWall = wall;
  }, periodMs);
  return {
    get max() { return max; },
    /** The event loop's stalls, ms, in ticks that overlap [fromMs, toMs] (Date.now() times). */
    during(fromMs: number, toMs: number) {
      let sum = 0;
      for (const x of stalls) if (x.to >= fromMs && x.from <= toMs) sum += x.ms;
      return sum;
    },
    stop: () => clearInterval(iv),
  };
}
