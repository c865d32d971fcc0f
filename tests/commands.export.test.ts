// Issue 16: `murmur export` finds a checkpoint by the `<id>.json` records beside the files; each
// is read through the schema the coordinator writes it by, and a damaged one is named.
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkpointInfo } from '../src/commands/export.ts';

const dirs: string[] = [];
afterEach(() => { for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true }); });

describe('export: checkpoint records', () => {
  it('reads a record as the coordinator wrote it and names the field of a damaged one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'murmur-export-'));
    dirs.push(dir);
    const info = {
      id: 's10-000000ab', runId: 'default', step: 10, round: 1, valLoss: null, tokens: 1024, peerId: null,
      sha256: '0'.repeat(64), bytes: 9, file: 's10-000000ab.safetensors', createdAt: 5000,
    };
    const at = (name: string, v: unknown) => { writeFileSync(join(dir, name), typeof v === 'string' ? v : JSON.stringify(v)); return join(dir, name); };
    expect(checkpointInfo(at('s10-000000ab.json', info))).toEqual(info);
    // Before, each was cast: createdAt "soon" sorted as NaN, a `file` path was joined as given.
    expect(() => checkpointInfo(at('a.json', { ...info, createdAt: 'soon' }))).toThrow(`${join(dir, 'a.json')}.createdAt must be number, got "soon"`);
    expect(() => checkpointInfo(at('b.json', { ...info, file: '../../etc/passwd' }))).toThrow(`${join(dir, 'b.json')}.file does not match`);
    expect(() => checkpointInfo(at('c.json', '{"id": '))).toThrow(`${join(dir, 'c.json')} is not JSON`);
  });
});
