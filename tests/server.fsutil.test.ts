// Durable writes: one file, or several that belong together, all or nothing.
import { describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removeStaleTempsBeside, withDirLock, writeFileAtomic, writeFileAtomicAsync, writeFilesAtomic } from '../server/fsutil.ts';

const bytes = (s: string) => new TextEncoder().encode(s);

describe('durable writes', () => {
  it('writes several files together, or none when one fails, leaving the old ones and no temps', () => {
    const dir = mkdtempSync(join(tmpdir(), 'murmur-fsutil-'));
    try {
      writeFileSync(join(dir, 'model.safetensors'), 'old model');
      writeFilesAtomic([[join(dir, 'model.safetensors'), bytes('new model')], [join(dir, 'config.json'), bytes('{}')]]);
      expect(readFileSync(join(dir, 'model.safetensors'), 'utf8')).toBe('new model');
      expect(readFileSync(join(dir, 'config.json'), 'utf8')).toBe('{}');
      // The second file's folder does not exist: the first is not replaced either.
      expect(() => writeFilesAtomic([[join(dir, 'model.safetensors'), bytes('newer')], [join(dir, 'missing', 'config.json'), bytes('{"x":1}')]]))
        .toThrow(/ENOENT/);
      expect(readFileSync(join(dir, 'model.safetensors'), 'utf8')).toBe('new model');
      expect(readdirSync(dir).sort()).toEqual(['config.json', 'model.safetensors']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('writes one file, from one buffer or from pieces in order, sync and async', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'murmur-fsutil-'));
    try {
      writeFileAtomic(join(dir, 'a'), bytes('abc'));
      await writeFileAtomicAsync(join(dir, 'b'), [bytes('ab'), bytes(''), bytes('cd')]);
      await writeFileAtomicAsync(join(dir, 'c'), bytes('xyz'));
      expect(['a', 'b', 'c'].map((f) => readFileSync(join(dir, f), 'utf8'))).toEqual(['abc', 'abcd', 'xyz']);
      expect(readdirSync(dir).sort()).toEqual(['a', 'b', 'c']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('temps a killed writer left', () => {
  it('removes those whose writer is gone, and keeps those a live process is writing', () => {
    const dir = mkdtempSync(join(tmpdir(), 'murmur-fsutil-'));
    try {
      const gone = spawnSync(process.execPath, ['-e', '']).pid; // exited by now
      const live = process.ppid;
      writeFileSync(join(dir, `bk.tmp-${gone}-0123abcd`), 'half a file');
      mkdirSync(join(dir, `bk.tmp-${gone}-4567abcd`));
      writeFileSync(join(dir, `bk.tmp-${gone}-4567abcd`, 'session-secret'), 'a secret');
      writeFileSync(join(dir, 'bk.tmp-89abcdef'), 'an older Murmur\'s temp: no pid');
      writeFileSync(join(dir, `bk.tmp-${live}-0123abcd`), 'being written');
      writeFileSync(join(dir, `other.tmp-${gone}-0123abcd`), 'not this file\'s');
      // Both sides sorted: where a pid sorts against the others depends on its digits (a pid
      // 9651 sorts after '89abcdef').
      expect(removeStaleTempsBeside(join(dir, 'bk')).sort()).toEqual([`bk.tmp-${gone}-0123abcd`, `bk.tmp-${gone}-4567abcd`, 'bk.tmp-89abcdef'].sort());
      expect(readdirSync(dir).sort()).toEqual([`bk.tmp-${live}-0123abcd`, `other.tmp-${gone}-0123abcd`].sort());
      expect(removeStaleTempsBeside(join(dir, 'missing', 'x'))).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('directory lock', () => {
  it('holders take turns, and the lock goes when the holder finishes or throws', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'murmur-fsutil-'));
    const lock = join(dir, 'build.lock');
    try {
      let release!: () => void;
      const held = new Promise<void>((r) => { release = r; });
      const order: string[] = [];
      const a = withDirLock(lock, async () => { order.push('a in'); await held; order.push('a out'); }, { pollMs: 5 });
      const b = withDirLock(lock, async () => { order.push('b in'); }, { pollMs: 5 });
      // b polls many times while a holds the lock; it must not get in.
      await new Promise((r) => setTimeout(r, 100));
      expect(order).toEqual(['a in']);
      expect(readFileSync(join(lock, 'pid'), 'utf8')).toBe(String(process.pid));
      release();
      await Promise.all([a, b]);
      expect(order).toEqual(['a in', 'a out', 'b in']);
      expect(existsSync(lock)).toBe(false);
      await expect(withDirLock(lock, async () => { throw new Error('build failed'); })).rejects.toThrow('build failed');
      expect(existsSync(lock)).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('takes over a lock whose holder is gone, and names a lock held too long', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'murmur-fsutil-'));
    const lock = join(dir, 'build.lock');
    try {
      const gone = spawnSync(process.execPath, ['-e', '']).pid!;
      mkdirSync(lock);
      writeFileSync(join(lock, 'pid'), String(gone));
      expect(await withDirLock(lock, async () => 'ran')).toBe('ran');
      mkdirSync(lock);
      writeFileSync(join(lock, 'pid'), String(process.pid));
      await expect(withDirLock(lock, async () => 'ran', { timeoutMs: 0 })).rejects.toThrow(`${lock} is still locked by process ${process.pid}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
