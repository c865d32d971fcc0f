// A network model for volunteers on home links, after the NoLoCo paper's section 5.3: every
// message takes (latency + bytes / uplink) times a log-normal factor, so some messages are slow
// and a collective that waits for many of them pays for its slowest path. The simulator charges
// these times (a pair exchange for NoLoCo, an all-reduce for DiLoCo and data-parallel), and the
// Monte-Carlo table compares the collectives for n = 2 ... 1024.
//
// Model, stated once:
//  - a node's uplink is the bottleneck (home links upload slower than they download), so a
//    node's sends are serial: its second message starts when its first has been delivered;
//    receiving two messages at once costs nothing extra;
//  - each message's time is (latency + 8*bytes/upBps) * exp(sigma * Z), Z ~ N(0, 1): the median
//    message takes the nominal time, and sigma sets how heavy the slow tail is.
import { Rng } from '../model/rng.ts';

export interface NetworkModel {
  /** Median one-way latency per message, seconds. */
  latency: number;
  /** Uplink bandwidth, bits per second. */
  upBps: number;
  /** Log-normal spread of each message's time (0 = every message takes the nominal time). */
  sigma: number;
}

/** A home link: 20 Mbit/s up, 50 ms latency, and a tail where 1 message in 20 takes over 2.3x the median. */
export const HOME_LINK: NetworkModel = { latency: 0.05, upBps: 20e6, sigma: 0.5 };

export function validateNetwork(net: NetworkModel): void {
  if (!(Number.isFinite(net.latency) && net.latency >= 0)) throw new Error(`network: latency must be >= 0 seconds, got ${net.latency}`);
  if (!(Number.isFinite(net.upBps) && net.upBps > 0)) throw new Error(`network: upload bandwidth must be > 0 bit/s, got ${net.upBps}`);
  if (!(Number.isFinite(net.sigma) && net.sigma >= 0)) throw new Error(`network: sigma must be >= 0, got ${net.sigma}`);
}

/** Nominal (median) time of one message of `bytes`. */
export function nominalMessageTime(bytes: number, net: NetworkModel): number {
  return net.latency + (8 * bytes) / net.upBps;
}

/** One sampled message time. */
export function messageTime(bytes: number, net: NetworkModel, rng: Rng): number {
  const t = nominalMessageTime(bytes, net);
  return net.sigma === 0 ? t : t * Math.exp(net.sigma * rng.normal());
}

/**
 * A NoLoCo pair exchange: each side sends its phi and delta (`bytesEach`, both tensors in one
 * message) on its own uplink at the same time; the exchange is done when both have arrived.
 */
export function pairExchangeTime(bytesEach: number, net: NetworkModel, rng: Rng): number {
  return Math.max(messageTime(bytesEach, net, rng), messageTime(bytesEach, net, rng));
}

/**
 * Binary-tree all-reduce of `bytes` per node over n nodes (heap order: node k's children are
 * 2k+1 and 2k+2): reduce to the root, each node forwarding its partial sum once both children's
 * have arrived; then broadcast back down, a parent sending to its children one after the other.
 */
export function treeAllReduceTime(n: number, bytes: number, net: NetworkModel, rng: Rng): number {
  checkN(n);
  if (n === 1) return 0;
  // Reduce: ready[k] = when node k holds the sum of its subtree.
  const ready = new Float64Array(n);
  for (let k = n - 1; k >= 1; k--) {
    const arrive = ready[k] + messageTime(bytes, net, rng);
    const parent = (k - 1) >> 1;
    if (arrive > ready[parent]) ready[parent] = arrive;
  }
  // Broadcast: have[k] = when node k holds the result.
  const have = new Float64Array(n);
  have[0] = ready[0];
  let done = 0;
  for (let k = 0; k < n; k++) {
    let t = have[k];
    for (const c of [2 * k + 1, 2 * k + 2]) {
      if (c >= n) break;
      t += messageTime(bytes, net, rng); // serial on k's uplink
      have[c] = t;
    }
    if (have[k] > done) done = have[k];
  }
  return done;
}

/**
 * Ring all-reduce (reduce-scatter then all-gather): 2(n-1) rounds in which every node sends a
 * chunk of bytes/n to its successor; a node's round r send starts when it has finished its own
 * round r-1 send and received its predecessor's round r-1 chunk.
 */
export function ringAllReduceTime(n: number, bytes: number, net: NetworkModel, rng: Rng): number {
  checkN(n);
  if (n === 1) return 0;
  const chunk = bytes / n;
  let prev = new Float64Array(n); // finish time of each node's previous send
  let next = new Float64Array(n);
  for (let r = 0; r < 2 * (n - 1); r++) {
    for (let i = 0; i < n; i++) {
      const pred = i === 0 ? n - 1 : i - 1;
      const start = prev[i] > prev[pred] ? prev[i] : prev[pred];
      next[i] = start + messageTime(chunk, net, rng);
    }
    [prev, next] = [next, prev];
  }
  let done = 0;
  for (let i = 0; i < n; i++) if (prev[i] > done) done = prev[i];
  return done;
}

export type AllReduceKind = 'tree' | 'ring';

export function allReduceTime(kind: AllReduceKind, n: number, bytes: number, net: NetworkModel, rng: Rng): number {
  return kind === 'tree' ? treeAllReduceTime(n, bytes, net, rng) : ringAllReduceTime(n, bytes, net, rng);
}

/** Bytes each node sends in one all-reduce of `bytes` (both kinds move 2(n-1)/n of the tensor per node). */
export function allReduceBytesPerNode(n: number, bytes: number): number {
  return n <= 1 ? 0 : (2 * (n - 1) * bytes) / n;
}

export interface SyncRow {
  n: number;
  /** Mean tree all-reduce time of `bytes` per node, seconds. */
  allreduce_s: number;
  /** Mean ring all-reduce time, seconds. */
  ring_s: number;
  /** Mean pair exchange time (phi and delta: 2*bytes each way), seconds. */
  pair_s: number;
  /** allreduce_s / pair_s. */
  ratio: number;
  /** ring_s / pair_s. */
  ring_ratio: number;
  /** Monte-Carlo draws behind each mean. */
  trials: { tree: number; ring: number; pair: number };
}

export interface SyncTrials {
  tree: number;
  pair: number;
  /** The ring at n=1024 draws 2M message times per trial, so its count may shrink with n. */
  ring: (n: number) => number;
}

export const DEFAULT_SYNC_TRIALS: SyncTrials = { tree: 400, pair: 4000, ring: (n) => (n <= 64 ? 400 : n <= 256 ? 100 : 20) };

/**
 * Monte-Carlo sync times for each n. The all-reduce moves one tensor (`bytes`, DiLoCo's delta);
 * the pair exchange moves two (phi and delta), exactly what the simulator charges each method.
 * A pair exchange does not depend on n, but it is drawn afresh for each row so that every row
 * is an independent estimate.
 */
export function syncTable(ns: number[], bytes: number, net: NetworkModel, seed: number,
  trials: SyncTrials = DEFAULT_SYNC_TRIALS): SyncRow[] {
  validateNetwork(net);
  return ns.map((n) => {
    const rng = new Rng(seed, 0x5c00 + n);
    const ringTrials = trials.ring(n);
    const avg = (count: number, draw: () => number) => {
      let s = 0;
      for (let t = 0; t < count; t++) s += draw();
      return s / count;
    };
    const tree = avg(trials.tree, () => treeAllReduceTime(n, bytes, net, rng));
    const ring = avg(ringTrials, () => ringAllReduceTime(n, bytes, net, rng));
    const pair = avg(trials.pair, () => pairExchangeTime(2 * bytes, net, rng));
    return { n, allreduce_s: tree, ring_s: ring, pair_s: pair, ratio: tree / pair, ring_ratio: ring / pair,
      trials: { tree: trials.tree, ring: ringTrials, pair: trials.pair } };
  });
}

function checkN(n: number): void {
  if (!(Number.isInteger(n) && n >= 1)) throw new Error(`all-reduce: the number of nodes must be a positive integer, got ${n}`);
}
