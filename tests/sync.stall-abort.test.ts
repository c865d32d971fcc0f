// A partner that takes our φ and Δ and then ends the exchange without its own stalled us as
// surely as one that lets it run to our deadline. Only the deadline counted: a free rider that
// aborted, or hung up, just before it was never rested nor reported. An exchange that ended
// before our payload reached the partner is no stall of its (exchange.ts, stalled). Time on our
// side is a fake clock: "just before the deadline" is one millisecond before it, whatever the
// machine's speed.
import { afterEach, describe, expect, it } from 'vitest';
import { createMesh, type Mesh } from '../src/sync/mesh.ts';
import type { MeshCore } from '../src/sync/mesh-core.ts';
import { isSoftOffence } from '../src/protocol/messages.ts';
import { FakeClock } from './support/fake-clock.ts';
import { MemoryNet } from './support/memory-links.ts';
import { Rogue, type RogueOptions } from './support/rogue.ts';
import { SignalHub } from './support/signal-hub.ts';
import { CONFIG_HASH, syntheticPayload } from './support/swarm.ts';
import { seededRandom } from './support/stats.ts';
import { until } from './support/wait.ts';

const n = 50_000;

const cleanup: (() => void)[] = [];
afterEach(() => { for (const fn of cleanup.splice(0).reverse()) fn(); });

/** Mesh p0 (on a fake clock) with one neighbour, the scripted partner r0, paired by the pool. */
async function withPartner(script: (ctx: { mesh: () => Mesh; clock: FakeClock; rogue: () => Rogue }) => Pick<RogueOptions, 'withhold' | 'onAnnounced' | 'onTaken'>) {
  // The rounds follow each other with no inner loop: the pool pairs whoever waits, at once.
  const hub = new SignalHub({ random: seededRandom(31), pool: { predict: false, repeatHoldFrac: 0 } });
  const net = new MemoryNet();
  const clock = new FakeClock();
  const mesh = createMesh({
    runId: 'test-run', configHash: CONFIG_HASH, elements: n, neighbours: { min: 1, max: 4 }, maintainMs: 50, rewireMs: 1e12,
    connectTimeoutMs: 5_000,
  })({ signaling: hub.client('p0'), links: net.links('p0'), clock, random: seededRandom(7) });
  cleanup.push(() => mesh.destroy());
  const rogue: Rogue = new Rogue(hub, 'r0', {
    runId: 'test-run', helloConfigHash: CONFIG_HASH, frameConfigHash: CONFIG_HASH, elements: n,
    payload: () => syntheticPayload(n, 1, 0), links: net.links('r0'),
    ...script({ mesh: () => mesh, clock, rogue: () => rogue }),
  });
  cleanup.push(() => rogue.stop());
  await rogue.dial('p0');
  await until(() => mesh.neighbours().includes('r0'), 20_000, 'p0 to see r0', 5);
  const stalls = () => hub.reports.filter((r) => r.reason.split(':')[0] === 'stall');
  const round = async (k: number) => {
    const result = mesh.exchange(k, syntheticPayload(n, 0, k), { waitMs: 30_000 });
    void rogue.loop(1, 0, 30_000);
    return result;
  };
  return { mesh, hub, rogue, stalls, round, resting: (round: number) => (mesh as unknown as MeshCore).resting('r0', round) };
}

describe('a partner that takes our payload and ends the exchange without its own', () => {
  it('aborting 1 ms before our deadline, twice in a row, is reported as a stall (soft) and rested, as a deadline miss is', async () => {
    let deadlineAtStart = 0;
    const { round, stalls, resting, rogue } = await withPartner(({ mesh, clock, rogue }) => ({
      withhold: true,
      // Our deadline of this exchange is the estimator's (stats) as the transfer began: nothing
      // completed or missed since.
      onAnnounced: () => { deadlineAtStart = mesh().stats().deadlineMs; },
      onTaken: (peer) => { clock.advance(deadlineAtStart - 1); rogue().abort(peer, 'deadline'); },
    }));
    const a = await round(1);
    expect(`${a.partner}:${a.reason}`).toBe('r0:partner-aborted');
    expect(rogue.taken).toEqual(['p0']);
    // One stall alone is nothing: an honest partner ends an exchange now and then.
    expect(stalls()).toEqual([]);
    expect(resting(2)).toBe(false);
    const b = await round(2);
    expect(`${b.partner}:${b.reason}`).toBe('r0:partner-aborted');
    expect(rogue.taken).toEqual(['p0', 'p0']);
    const got = stalls();
    expect(got.map((r) => [r.from, r.peer])).toEqual([['p0', 'r0']]);
    expect(isSoftOffence(got[0]!.reason)).toBe(true);
    expect(got[0]!.reason).toMatch(/ended the exchange once it had ours, 2 exchanges in a row/);
    expect(resting(3)).toBe(true);
  });

  it('closing its link 1 ms before our deadline, twice in a row, is reported as a stall (soft) too', async () => {
    let deadlineAtStart = 0;
    const { mesh, round, stalls, resting, rogue } = await withPartner(({ mesh, clock, rogue }) => ({
      withhold: true,
      onAnnounced: () => { deadlineAtStart = mesh().stats().deadlineMs; },
      onTaken: (peer) => { clock.advance(deadlineAtStart - 1); rogue().hangUp(peer); },
    }));
    const a = await round(1);
    expect(`${a.partner}:${a.reason}`).toBe('r0:partner-gone');
    expect(stalls()).toEqual([]);
    // It dials again for the next round, as a free rider that wants our next payload would.
    await until(() => !mesh.neighbours().includes('r0'), 20_000, 'p0 to see the link closed', 5);
    await rogue.dial('p0');
    await until(() => mesh.neighbours().includes('r0'), 20_000, 'p0 to see r0 again', 5);
    const b = await round(2);
    expect(`${b.partner}:${b.reason}`).toBe('r0:partner-gone');
    expect(rogue.taken).toEqual(['p0', 'p0']);
    expect(stalls().map((r) => [r.from, r.peer])).toEqual([['p0', 'r0']]);
    expect(resting(3)).toBe(true);
  });

  it('an honest partner whose abort comes before our payload reached it, twice in a row, is neither reported nor rested', async () => {
    // Its own deadline passed (or it refused us) as it announced: our chunks, which follow its
    // announcement, were still on the link when its abort reached us.
    const { round, stalls, resting } = await withPartner(({ rogue }) => ({
      withhold: true,
      onAnnounced: (peer) => rogue().abort(peer, 'deadline'),
    }));
    for (const k of [1, 2]) {
      const r = await round(k);
      expect(`${r.partner}:${r.reason}`, `round ${k}`).toBe('r0:partner-aborted');
    }
    expect(stalls()).toEqual([]);
    expect(resting(3)).toBe(false);
  });
});
