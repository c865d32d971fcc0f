// Durable writes: one file, or several that belong together, all or nothing.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic, writeFileAtomicAsync, writeFilesAtomic } from '../server/fsutil.ts';

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
