import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadDataset } from '../src/data/dataset.ts';
import { murmurCli } from './support/murmur-cli.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const murmur = (...args: string[]) =>
  spawnSync(process.execPath, [path.join(root, 'bin', 'murmur.mjs'), ...args], { encoding: 'utf8', timeout: 60_000 });

let dir: string;
beforeAll(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'murmur-cli-')); });
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('murmur prepare', () => {
  it('prepares a dataset and prints a summary', () => {
    const input = path.join(dir, 'book.txt');
    fs.writeFileSync(input, Array.from({ length: 200 }, (_, i) => `Line ${i} of the book.\n`).join(''));
    const out = path.join(dir, 'ds');
    const r = murmur('prepare', input, '--out', out, '--val-fraction', '0.1', '--ctx', '32');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const { manifest } = loadDataset(out);
    expect(manifest.valFraction).toBe(0.1);
    expect(manifest.ctx).toBe(32);
    expect(r.stdout).toContain(`${manifest.train.tokens} tokens  sha256 ${manifest.train.sha256.slice(0, 12)}`);
    expect(r.stdout).toContain(`${manifest.val.tokens} tokens  sha256 ${manifest.val.sha256.slice(0, 12)}`);
  });

  it('exits non-zero with the error and writes nothing on bad input', () => {
    const bad = path.join(dir, 'latin1.txt');
    fs.writeFileSync(bad, Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0a]));
    const out = path.join(dir, 'bad-ds');
    const r = murmur('prepare', bad, '--out', out);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/murmur: .*latin1\.txt: invalid UTF-8 at byte 3 \(line 1\)/);
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('rejects a bad --val-fraction before reading anything', () => {
    const r = murmur('prepare', path.join(dir, 'book.txt'), '--out', path.join(dir, 'x'), '--val-fraction', '1.5');
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/--val-fraction .* expected a number between 0 and 1/);
  });
});

describe('murmur prepare killed part way', () => {
  const text = (name: string, line: string) => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, line.repeat(2000));
    return p;
  };

  it('--force killed between moving the old dataset aside and renaming the new one in: the old one is back at the next load or prepare', () => {
    const parent = path.join(dir, 'force');
    const out = path.join(parent, 'books');
    const first = text('first.txt', 'the first edition, a line of text\n');
    expect(murmurCli(['prepare', first, '--out', out]).status).toBe(0);
    const before = loadDataset(out).manifest;
    const killed = murmurCli(['prepare', text('second.txt', 'the second edition, a line of text\n'), '--out', out, '--force'], { fn: 'renameSync', match: 'books.tmp-' });
    expect(killed.signal).toBe('SIGKILL');
    expect(fs.readdirSync(parent).sort()).toEqual([expect.stringMatching(/^books\.old-/), expect.stringMatching(/^books\.tmp-/)]);
    // The next reader finds the dataset as it was before the replace began; nothing else is left.
    expect(loadDataset(out).manifest).toEqual(before);
    expect(fs.readdirSync(parent)).toEqual(['books']);
  });

  it('killed while writing: the temp folder it left is removed by the next prepare', () => {
    const parent = path.join(dir, 'killed');
    fs.mkdirSync(parent);
    const out = path.join(parent, 'novel');
    const input = text('novel.txt', 'another line of text\n');
    const killed = murmurCli(['prepare', input, '--out', out], { fn: 'openSync', match: 'val.bin' });
    expect(killed.signal).toBe('SIGKILL');
    expect(fs.readdirSync(parent)).toEqual([expect.stringMatching(/^novel\.tmp-/)]);
    expect(murmurCli(['prepare', input, '--out', out]).status).toBe(0);
    expect(fs.readdirSync(parent)).toEqual(['novel']);
  });
});
