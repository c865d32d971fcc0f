// The mesh end to end in browsers (the must-hold): the coordinator in-process and three
// headless Chromium pages, each in its own browser context, open the volunteer page and train
// the `micro` preset in their Web Workers (WebGPU on SwiftShader); they connect over WebRTC on
// loopback and exchange outer updates. The proof is read from the coordinator's SQLite, not
// from the pages: its metric reports must show paired outer rounds involving all three peers,
// and every peer's validation loss lower at its last report than at its first.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { calmPage as calmPageIn, clickSettled, createRun, launchWebRtcBrowser, startAll, startBuiltApp } from './support/browser.ts';
import type { TestServer } from './support/coordinator.ts';

const RUN = 'mesh-e2e';
const PEERS = 3;
/** Paired outer rounds (reports with a partner) the run must log, over all peers. */
const MIN_PAIRED = 6;
/** Validation reports each peer needs before "falling" means anything. */
const MIN_VAL = 3;
/** Bound on the training phase; the whole file stays under ~4 minutes. */
const TRAIN_MS = 150_000;

let server: TestServer;
let browser: Browser;
const errors: string[] = [];
const pages: Page[] = [];

interface Row { peer: string; round: number; partner: string | null; valLoss: number | null }

/** The coordinator's own records of the run: one row per committed metric report. */
function reports(): Row[] {
  return server.c.db.prepare(`SELECT peer_id AS peer, round, partner, val_loss AS valLoss FROM reports
    WHERE run_id = ? ORDER BY peer_id, t, seq`).all(RUN) as Row[];
}

interface Summary {
  peers: string[];
  /** Distinct (peer, round) outer steps taken with a partner. */
  paired: number;
  /** Peers seen on either side of a paired round. */
  inPairs: Set<string>;
  val: Map<string, number[]>;
}

function summarize(rows: Row[]): Summary {
  const peers = [...new Set(rows.map((r) => r.peer))];
  const pairedKeys = new Set<string>();
  const inPairs = new Set<string>();
  const val = new Map<string, number[]>();
  for (const r of rows) {
    if (r.partner !== null) {
      pairedKeys.add(`${r.peer}#${r.round}`);
      inPairs.add(r.peer).add(r.partner);
    }
    if (r.valLoss !== null) {
      const v = val.get(r.peer) ?? [];
      // Reports between outer steps repeat the last validation figure; keep each value once.
      if (v.at(-1) !== r.valLoss) v.push(r.valLoss);
      val.set(r.peer, v);
    }
  }
  return { peers, paired: pairedKeys.size, inPairs, val };
}

const describeVal = (s: Summary) => [...s.val].map(([p, v]) => `${p}: ${v.map((x) => x.toFixed(3)).join(' -> ')}`).join('; ');

/** The pages' "partner rejected" warnings (reason, validator numbers, strikes): why a pair failed. */
const rejections: string[] = [];
const lastRejections = () => (rejections.length ? `; rejections (last ${Math.min(5, rejections.length)} of ${rejections.length}): ${rejections.slice(-5).join(' | ')}` : '; no partner was rejected');

/** A calm page (tests/support/browser.ts), closed with the others at the end. */
async function calmPage(): Promise<Page> {
  const p = await calmPageIn(browser, errors);
  const tab = pages.length;
  p.on('console', (m) => {
    if (m.type() !== 'warning' || !m.text().includes('partner rejected')) return;
    const line = `tab ${tab}: ${m.text()}`;
    rejections.push(line);
    console.warn(`[browser warning] ${line}`);
  });
  pages.push(p);
  return p;
}

const phase = (p: Page) => p.evaluate(() => {
  const c = (window as unknown as { murmurVolunteer?: { phase: string; error: string | null } }).murmurVolunteer;
  return c ? { phase: c.phase, error: c.error } : { phase: 'loading', error: null };
});

beforeAll(async () => {
  server = await startBuiltApp();
  // micro on a software GPU: a short inner loop so outer rounds come every few seconds, and a
  // short warm-up at a higher rate so the loss visibly falls within the test's minutes.
  await createRun(server, { id: RUN, name: 'mesh end-to-end', dataset: 'moby-dick', preset: 'micro', train: { H: 4, batch: 4, lr: 3e-3, warmupSteps: 4 } });
  browser = await launchWebRtcBrowser();
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
});

describe('three browser volunteers over WebRTC', () => {
  it('pair for outer steps, and the coordinator records pairs and falling validation loss', async () => {
    for (let i = 0; i < PEERS; i++) {
      const p = await calmPage();
      // ?evalEvery=1: validation loss at every outer step, so it is reported often enough to compare.
      await p.goto(`${server.url}/?run=${RUN}&evalEvery=1`);
      await clickSettled(p, 'consent', 60_000);
      // Full intensity: rests between steps would only slow the rounds down.
      const slider = p.getByRole('slider', { name: 'GPU intensity' });
      await slider.focus();
      await p.keyboard.press('End');
    }
    await startAll(pages);

    const end = Date.now() + TRAIN_MS;
    let s = summarize(reports());
    const done = (x: Summary) => x.peers.length === PEERS && x.paired >= MIN_PAIRED && x.inPairs.size === PEERS &&
      x.peers.every((p) => (x.val.get(p)?.length ?? 0) >= MIN_VAL && x.val.get(p)!.at(-1)! < x.val.get(p)![0]!);
    while (!done(s)) {
      for (const p of pages) {
        const ph = await phase(p);
        if (ph.phase === 'error') throw new Error(`a volunteer page failed: ${ph.error}`);
      }
      if (Date.now() > end) break;
      await new Promise((r) => setTimeout(r, 2000));
      s = summarize(reports());
    }
    console.log(`[mesh-e2e] peers ${s.peers.length}, paired outer rounds ${s.paired}, peers in pairs ${s.inPairs.size}; val loss ${describeVal(s)}${lastRejections()}`);

    expect(s.peers, 'every page joined and reported').toHaveLength(PEERS);
    expect(s.paired, `paired outer rounds in the coordinator's reports${lastRejections()}`).toBeGreaterThanOrEqual(MIN_PAIRED);
    expect([...s.inPairs].sort(), `every peer took part in a pair${lastRejections()}`).toEqual([...s.peers].sort());
    // Partners are peers of this run, never strangers.
    for (const r of reports()) if (r.partner !== null) expect(s.peers).toContain(r.partner);
    for (const p of s.peers) {
      const v = s.val.get(p) ?? [];
      expect(v.length, `validation reports of ${p}`).toBeGreaterThanOrEqual(MIN_VAL);
      expect(v.at(-1)!, `validation loss of ${p}: ${v.join(' -> ')}`).toBeLessThan(v[0]!);
    }
    // The median over peers of the last validation loss is below the median of the first.
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    expect(median(s.peers.map((p) => s.val.get(p)!.at(-1)!))).toBeLessThan(median(s.peers.map((p) => s.val.get(p)![0]!)));

    // The pair-forming came from the coordinator's ready pool: its counter moved too.
    expect(server.c.hub.pool(RUN).stats.pairs).toBeGreaterThanOrEqual(Math.ceil(MIN_PAIRED / 2));
    for (const p of pages) await p.getByRole('button', { name: 'Stop' }).click();
    expect(errors).toEqual([]);
  });
});
