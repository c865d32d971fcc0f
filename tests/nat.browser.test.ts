// A browser volunteer across NATs: headless Chromium runs inside one home's network namespace
// (`ip netns exec <home> chromium ...`, through a wrapper playwright-core launches) and a Node
// volunteer in another home; both sit behind symmetric NATs and the run is relay-only, so the
// pair can only meet through coturn. The coordinator serves https with a self-signed
// certificate that Chromium trusts by its key, so the page is a secure context with WebGPU
// (SwiftShader here) exactly as on a public host. Needs what tests/nat.test.ts needs, plus
// Chromium and the built web app (built here when stale).
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, calmPage, clickSettled } from './support/browser.ts';
import { createTopology, netnsUnavailable, type Topology } from './support/netns.ts';
import { createMicroRun, startNatRun, swarmUntil, waitFor, type NatRun, type SwarmMember } from './support/nat-run.ts';
import { ensureWebBuild } from '../src/commands/start.ts';

let topo: Topology | null = null;
let run: NatRun | null = null;
let browser: Browser | null = null;
let wrapperDir: string | null = null;

afterEach(async () => {
  await browser?.close().catch(() => {});
  browser = null;
  run?.stop();
  run = null;
  // Also kills whatever is left inside the namespaces (a Chromium helper that outlived close()).
  topo?.destroy();
  topo = null;
  if (wrapperDir) rmSync(wrapperDir, { recursive: true, force: true });
  wrapperDir = null;
});

beforeAll(async () => {
  const missing = netnsUnavailable();
  if (missing) throw new Error(`NAT tests cannot run: ${missing}`);
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM}: install Debian's chromium package (npm test does it when run as root)`);
  await ensureWebBuild((s) => console.log(s));
}, 600_000);

/** Chromium started inside namespace `ns`: playwright-core launches a wrapper that enters it. */
async function chromiumIn(ns: string, args: string[]): Promise<Browser> {
  wrapperDir = mkdtempSync(join(tmpdir(), 'murmur-nat-chromium-'));
  const wrapper = join(wrapperDir, 'chromium-in-netns');
  // `ip netns exec` execs in place, so playwright's pipe and process handle are Chromium's own.
  writeFileSync(wrapper, `#!/bin/sh\nexec /usr/sbin/ip netns exec '${ns}' '${CHROMIUM}' "$@"\n`);
  chmodSync(wrapper, 0o755);
  return chromium.launch({ executablePath: wrapper, args: [...CHROMIUM_ARGS, ...args] });
}

interface PageState { phase: string; error: string | null; peerId: string | null; step: number; rounds: number; exchangesAccepted: number; soloReason: string | null }

const readState = (p: Page): Promise<PageState | null> => p.evaluate(() => {
  const c = (window as unknown as { murmurVolunteer?: { phase: string; error: string | null; peerId: string | null; figures: { step: number; rounds: number; exchangesAccepted: number; soloReason: string | null } } }).murmurVolunteer;
  return c ? { phase: c.phase, error: c.error, peerId: c.peerId, step: c.figures.step, rounds: c.figures.rounds, exchangesAccepted: c.figures.exchangesAccepted, soloReason: c.figures.soloReason } : null;
});

const relayed = (m: SwarmMember) => m.rounds.filter((r) => r.exchange.outcome === 'paired' && r.exchange.link?.local === 'relay' && r.exchange.link.remote === 'relay');

describe('a browser volunteer across NATs (network namespaces, coturn, https)', () => {
  it('headless Chromium in one home pairs with a Node volunteer in another through TURN, and trains', async () => {
    topo = createTopology({ homes: 2, nat: 'symmetric' });
    run = await startNatRun(topo, { stun: true, turn: true }, { tls: true });
    expect(run.base).toBe('https://198.18.0.1:8787');
    // Small inner loops: a software GPU and a CPU volunteer share two cores, and what this case
    // needs is exchanges, not a long curve.
    createMicroRun(run, 'micro', { icePolicy: 'relay', train: { batch: 2, H: 4, lr: 3e-3, warmupSteps: 4, totalSteps: 2000 } });

    browser = await chromiumIn(topo.homes[0]!.ns, [`--ignore-certificate-errors-spki-list=${run.tls!.spki}`]);
    const errors: string[] = [];
    const page = await calmPage(browser, errors);
    await page.goto(`${run.base}/?run=micro&evalEvery=0`);
    expect(await page.evaluate(() => window.isSecureContext), 'the https page is a secure context').toBe(true);
    await clickSettled(page, 'consent', 120_000);
    const slider = page.getByRole('slider', { name: 'GPU intensity' });
    await slider.focus();
    await page.keyboard.press('End');
    await clickSettled(page, 'start');

    // The page's figures, read in the background while the Node volunteer runs.
    let state: PageState | null = null;
    let firstStep: number | null = null;
    let polling = true;
    const poller = (async () => {
      while (polling) {
        state = await readState(page).catch(() => state);
        if (state && state.step > 0 && firstStep === null) firstStep = state.step;
        await new Promise((r) => setTimeout(r, 1000));
      }
    })();
    const pageDone = () => {
      const s = state as PageState | null;
      if (s?.phase === 'error') throw new Error(`the Chromium volunteer failed: ${s.error}`);
      return s !== null && firstStep !== null && s.step > firstStep && s.exchangesAccepted >= 1;
    };

    let members: SwarmMember[];
    try {
      members = await swarmUntil(run, 'micro', [1], ([node]) => relayed(node!).length >= 2 && pageDone(), 420_000, {
        // The Node volunteer joins once the page trains, so it does not spend the wait solo.
        startWhen: { 1: () => firstStep !== null },
      });
    } catch (err) {
      throw new Error(`${(err as Error).message}\npage: ${JSON.stringify(state)}\npage errors: ${errors.join(' | ')}`);
    } finally {
      polling = false;
      await poller;
    }
    const node = members[0]!;
    // A fresh read: the poller's last one may be a second old.
    const s = (await readState(page))!;
    console.log(`[nat-browser] Chromium: step ${firstStep} -> ${s.step}, ${s.rounds} outer rounds, ${s.exchangesAccepted} accepted; ` +
      `Node: ${node.rounds.length} rounds, ${relayed(node).length} paired through the relay`);

    // Every exchange the Node volunteer made was with the Chromium peer, over relay candidates.
    expect(s.peerId).not.toBeNull();
    for (const r of node.rounds.filter((x) => x.exchange.outcome === 'paired')) {
      expect(r.exchange.partner).toBe(s.peerId);
      expect(r.exchange.link).toMatchObject({ local: 'relay', remote: 'relay' });
    }
    // The page trained: its step counter moved and it took in a partner's update.
    expect(s.step).toBeGreaterThan(firstStep!);
    expect(s.exchangesAccepted).toBeGreaterThanOrEqual(1);
    // The coordinator saw the exchanges travel through the relay, none directly.
    const c = run.api<{ exchanges: { direct: number; relayed: number }; relayFraction: number }>('/api/runs/micro/connectivity');
    expect(c.exchanges.relayed).toBeGreaterThan(0);
    expect(c.exchanges.direct).toBe(0);
    expect(c.relayFraction).toBe(1);
    expect(errors).toEqual([]);
  });

  it('the volunteer page over plain http on a public address says WebGPU needs https and what the operator must do', async () => {
    topo = createTopology({ homes: 1, nat: 'cone' });
    run = await startNatRun(topo, { stun: false, turn: false });
    createMicroRun(run, 'micro');
    await waitFor('the coordinator to warn about plain http', () => run!.coordinatorLog.some((l) => l.includes('serving plain HTTP on a non-loopback address')), 10_000);
    browser = await chromiumIn(topo.homes[0]!.ns, []);
    const page = await calmPage(browser, []);
    await page.goto(`${run.base}/?run=micro`);
    const gpu = page.locator('[data-gpu="unsupported"][data-code="insecure-context"]');
    await gpu.waitFor({ timeout: 120_000 });
    const text = (await gpu.innerText()).replace(/\s+/g, ' ');
    expect(text).toContain('WebGPU needs https');
    expect(text).toContain('"http://198.18.0.1:8787"');
    expect(text).toContain('murmur serve --tls-cert FILE --tls-key FILE');
    expect(text).toContain('docs/deploy.md');
  });
});
