// What a run's exchange asks of a volunteer's link (src/protocol/exchange-link.ts exchangeLink,
// linkWarning): the numbers follow exchangePayloadBytes and DEFAULT_DEADLINE, POST/PATCH
// /api/runs answer with a warning past a home uplink, and `murmur serve` prints it at start.
import { afterAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildLayout } from '../src/model/layout.ts';
import { preset } from '../src/model/config.ts';
import { DEFAULT_DEADLINE, HOME_UPLINK_BYTES_PER_S, REFERENCE_LINKS, compressionForRun, exchangeLink, exchangePayloadBytes, linkWarning } from '../src/protocol/exchange-link.ts';
import { RunWriteReply } from '../src/protocol/api.ts';
import { schemaProblem } from '../src/protocol/check.ts';
import { startServer } from './support/coordinator.ts';

const total = (p: string) => buildLayout(preset(p)).total;
const dirs: string[] = [];
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('exchangeLink', () => {
  it('gives the bytes each way, the least rate inside the longest wait, and the seconds at reference rates', () => {
    for (const p of ['micro', 'tiny', 'small', 'base']) {
      for (const c of ['none', 'fp16', 'bf16', 'int8']) {
        const bytes = exchangePayloadBytes(compressionForRun(c), total(p));
        const l = exchangeLink(c, total(p));
        expect(l.bytes).toBe(bytes);
        // At the least rate the exchange ends inside maxMs; a byte a second less and it does not.
        expect((bytes / l.leastBytesPerS) * 1000).toBeLessThanOrEqual(DEFAULT_DEADLINE.maxMs);
        expect((bytes / (l.leastBytesPerS - 1)) * 1000).toBeGreaterThan(DEFAULT_DEADLINE.maxMs);
        expect((bytes / l.firstBytesPerS) * 1000).toBeLessThanOrEqual(DEFAULT_DEADLINE.initialMs);
        expect((bytes / (l.firstBytesPerS - 1)) * 1000).toBeGreaterThan(DEFAULT_DEADLINE.initialMs);
        expect(l.secondsAt).toEqual(REFERENCE_LINKS.map((r) => ({ bytesPerS: r, seconds: bytes / r })));
      }
    }
    // The finding in docs/design.md: small without compression needs more than a 10 Mbit/s uplink.
    expect(exchangeLink('none', total('small')).leastBytesPerS).toBeGreaterThan(HOME_UPLINK_BYTES_PER_S);
    expect(exchangeLink('none', total('tiny')).leastBytesPerS).toBeLessThan(HOME_UPLINK_BYTES_PER_S);
  });

  it('warns past a home uplink and names the least compression that fits, or that none does', () => {
    expect(linkWarning({ preset: 'tiny', compression: 'none' }, total('tiny'))).toBeNull();
    expect(linkWarning({ preset: 'small', compression: 'int8' }, total('small'))).toBeNull();
    const small = linkWarning({ preset: 'small', compression: 'none' }, total('small'))!;
    expect(small).toContain(`${exchangePayloadBytes(compressionForRun('none'), total('small'))} bytes`);
    expect(small).toContain('1.45 MB/s (11.6 Mbit/s)');
    expect(small).toContain('Compression fp16 needs 723 KB/s (5.8 Mbit/s)');
    const base = linkWarning({ preset: 'base', compression: 'int8' }, total('base'))!;
    expect(base).toContain('No compression fits such a link (int8 needs 2.44 MB/s');
  });
});

describe('the run routes and murmur serve', () => {
  it('POST and PATCH /api/runs answer with the warning when the run needs more than a home uplink, and make the run', async () => {
    const s = await startServer();
    try {
      const post = async (id: string, p: string, compression: string) => {
        const r = await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id, dataset: 'moby-dick', preset: p, compression } });
        expect(r.statusCode).toBe(201);
        expect(schemaProblem(RunWriteReply, r.json(), 'reply')).toBeNull();
        return r.json() as RunWriteReply;
      };
      const small = await post('small', 'small', 'none');
      expect(small.warning).toBe(linkWarning({ preset: 'small', compression: 'none' }, total('small')));
      expect(small.warning).toContain('Compression fp16');
      expect((await post('tiny', 'tiny', 'none')).warning).toBeUndefined();
      expect((await post('small8', 'small', 'int8')).warning).toBeUndefined();
      // The run is made all the same.
      expect((await s.c.app.inject({ method: 'GET', url: '/api/runs/small' })).json()).toMatchObject({ id: 'small', preset: 'small', compression: 'none' });

      const patch = async (id: string, body: Record<string, unknown>) => {
        const r = await s.c.app.inject({ method: 'PATCH', url: `/api/runs/${id}`, headers: s.admin, payload: body });
        expect(r.statusCode).toBe(200);
        expect(schemaProblem(RunWriteReply, r.json(), 'reply')).toBeNull();
        return r.json() as RunWriteReply;
      };
      expect((await patch('small', { compression: 'int8' })).warning).toBeUndefined();
      expect((await patch('small', { compression: 'none' })).warning).toContain('1.45 MB/s');
      // GET answers RunReply, as before: the dashboard and the volunteer page compute it themselves.
      expect((await s.c.app.inject({ method: 'GET', url: '/api/runs/small' })).json()).not.toHaveProperty('warning');
    } finally {
      await s.close();
    }
  });

  it('murmur serve prints the warning for each of its runs that needs more than a home uplink, at start', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'murmur-run-link-'));
    dirs.push(dataDir);
    const s = await startServer({}, {}, dataDir);
    for (const [id, p, compression] of [['wide', 'small', 'none'], ['narrow', 'small', 'int8'], ['huge', 'base', 'none']]) {
      const r = await s.c.app.inject({ method: 'POST', url: '/api/runs', headers: s.admin, payload: { id, dataset: 'moby-dick', preset: p, compression } });
      expect(r.statusCode).toBe(201);
    }
    // A stopped run has no volunteers to warn about.
    expect((await s.c.app.inject({ method: 'POST', url: '/api/runs/huge/stop', headers: s.admin })).statusCode).toBe(200);
    await s.close();

    const child = spawn(process.execPath, ['bin/murmur.mjs', 'serve', '--data-dir', dataDir, '--port', '0', '--checkpoint-every', '0', '--log-level', 'warn'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let err = '';
    child.stderr!.on('data', (d) => { err += d; });
    const out = await new Promise<string>((resolve, reject) => {
      let text = '';
      child.stdout!.on('data', (d) => {
        text += d;
        if (/murmur listening on /.test(text)) resolve(text);
      });
      child.on('exit', (code) => reject(new Error(`murmur serve exited with ${code}: ${err.slice(-2000)}`)));
    });
    child.kill('SIGTERM');
    const lines = out.split('\n').filter((l) => l.startsWith('murmur: run '));
    expect(lines).toEqual([`murmur: run wide: ${linkWarning({ preset: 'small', compression: 'none' }, total('small'))}`]);
  });
});
