// The message checks run in the browser under the coordinator's own content security policy
// (no 'unsafe-eval'): the page bundles the same parse functions the pages use, and Chromium
// must run them without a single policy violation, while `new Function` on that page is refused.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { chromium, type Browser } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, ROOT } from './support/browser.ts';
import { startServer, type TestServer } from './support/coordinator.ts';

const ENTRY = `
import { parseClientMessage, parseServerMessage } from './src/protocol/messages.ts';
import { parseControl } from './src/protocol/peer-messages.ts';
const violations = [];
document.addEventListener('securitypolicyviolation', (e) => violations.push(e.violatedDirective));
const control = (m) => { try { parseControl(m); return 'ok'; } catch (err) { return err.message; } };
const result = {
  ack: parseServerMessage('{"t":"ack","seq":3}').ok,
  badAck: parseServerMessage('{"t":"ack","seq":-3}').error,
  ready: parseClientMessage('{"t":"ready","round":1,"waitMs":5}').ok,
  badReady: parseClientMessage('{"t":"ready","round":1,"waitMs":5,"x":1}').error,
  xchg: control({ t: 'xchg', round: 1, phi: { tid: 1, dtype: 'f32', elements: 2, bytes: 8 }, delta: { tid: 2, dtype: 'f64', elements: 2, bytes: 8 } }),
};
setTimeout(() => {
  result.violations = [...violations];
  try { new Function('return 1')(); result.evalAllowed = true; } catch { result.evalAllowed = false; }
  window.result = result;
}, 0);
`;

let web: string;
let s: TestServer;
let browser: Browser;

beforeAll(async () => {
  web = mkdtempSync(join(tmpdir(), 'murmur-csp-'));
  const out = await build({ stdin: { contents: ENTRY, resolveDir: ROOT, loader: 'js' }, bundle: true, format: 'esm', write: false, platform: 'browser' });
  writeFileSync(join(web, 'check.js'), out.outputFiles[0]!.text);
  writeFileSync(join(web, 'index.html'), '<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,"><script type="module" src="/check.js"></script></head><body></body></html>');
  s = await startServer({ webRoot: web });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
});
afterAll(async () => {
  await browser?.close();
  await s?.close();
  rmSync(web, { recursive: true, force: true });
});

describe('message checks in the browser', () => {
  it('run under the pages\' CSP without eval, with the words Node gives', async () => {
    const page = await browser.newPage();
    const res = await page.goto(s.url + '/');
    expect(res!.headers()['content-security-policy']).not.toContain('unsafe-eval');
    await page.waitForFunction(() => (window as unknown as { result?: unknown }).result !== undefined);
    const r = await page.evaluate(() => (window as unknown as { result: Record<string, unknown> }).result);
    expect(r).toEqual({
      ack: true,
      badAck: 'ack.seq must be >= 0, got -3',
      ready: true,
      badReady: 'ready.x is not an allowed field',
      xchg: 'xchg.delta.dtype must be one of "f32", "f16", "q8", "bf16", got "f64"',
      violations: [],
      // The policy is in force: the page itself may not evaluate code.
      evalAllowed: false,
    });
    await page.close();
  });
});
