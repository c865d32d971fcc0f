import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadDataset, prepareDataset, saveDataset, splitPoint } from '../src/data/dataset.ts';
import { parseManifest, verifySplit } from '../src/data/manifest.ts';
import { DirDatasetSource } from '../server/datasets.ts';
import { decode, encode } from '../src/data/tokenizer.ts';

// Disk faults to inject part-way through a write (running as root, permissions cannot fail it).
const faults = vi.hoisted(() => ({ fsync: false, renameTmp: false }));
vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>();
  const ioError = (what: string) => Object.assign(new Error(`EIO: i/o error, ${what}`), { code: 'EIO' });
  const mocked = {
    ...real,
    fsyncSync: (fd: number) => {
      if (faults.fsync) throw ioError('fsync');
      return real.fsyncSync(fd);
    },
    renameSync: (from: fs.PathLike, to: fs.PathLike) => {
      if (faults.renameTmp && String(from).includes('.tmp-')) throw ioError('rename');
      return real.renameSync(from, to);
    },
  };
  return { ...mocked, default: mocked };
});

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const lines = (n: number, tag = 'line') => Array.from({ length: n }, (_, i) => `${tag} ${i}: the whale swam on.\n`).join('');

let dir: string;
beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'murmur-data-')); });
afterEach(() => {
  faults.fsync = false;
  faults.renameTmp = false;
  fs.rmSync(dir, { recursive: true, force: true });
});

function write(name: string, content: string | Uint8Array): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, content);
  return p;
}

/** Asserts a failed prepare left nothing: no output, no temp or aside directories. */
async function expectNoOutput(run: () => Promise<unknown>, message: RegExp, inputs: string[]): Promise<void> {
  await expect(run()).rejects.toThrow(message);
  expect(fs.readdirSync(dir).sort()).toEqual(inputs.map((p) => path.basename(p)).sort());
}

describe('prepareDataset', () => {
  it('writes train.bin, val.bin and a manifest whose sizes and hashes match', async () => {
    const a = write('a.txt', lines(100, 'a'));
    const b = write('b.txt', lines(50, 'b'));
    const out = path.join(dir, 'ds');
    const m = await prepareDataset([a, b], out, { ctx: 16 });
    expect(fs.readdirSync(out).sort()).toEqual(['manifest.json', 'train.bin', 'val.bin']);
    expect(fs.readdirSync(dir).sort()).toEqual(['a.txt', 'b.txt', 'ds']); // no temp leftovers

    const train = new Uint8Array(fs.readFileSync(path.join(out, 'train.bin')));
    const val = new Uint8Array(fs.readFileSync(path.join(out, 'val.bin')));
    const onDisk = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'));
    expect(onDisk).toEqual(m);
    expect(m).toMatchObject({ format: 'murmur-dataset', version: 1, vocab: 256, tokenizer: 'bytes', valFraction: 0.05, ctx: 16 });
    expect(m.train).toEqual({ file: 'train.bin', tokens: train.length, sha256: sha(train) });
    expect(m.val).toEqual({ file: 'val.bin', tokens: val.length, sha256: sha(val) });
    expect(m.sources).toEqual([
      { file: a, bytes: fs.statSync(a).size, sha256: sha(fs.readFileSync(a)) },
      { file: b, bytes: fs.statSync(b).size, sha256: sha(fs.readFileSync(b)) },
    ]);
    expect(Date.parse(m.created)).not.toBeNaN();

    // Files are joined in order with one blank line; validation is the tail, cut at a line start.
    const all = decode(train) + decode(val);
    expect(all).toBe(lines(100, 'a') + '\n' + lines(50, 'b'));
    expect(decode(train).endsWith('\n')).toBe(true);
    expect(val.length / all.length).toBeGreaterThan(0.04);
    expect(val.length / all.length).toBeLessThan(0.06);

    const loaded = loadDataset(out);
    expect(loaded.manifest).toEqual(m);
    expect(loaded.train).toEqual(train);
    expect(loaded.val).toEqual(val);
    await verifySplit(loaded.val, m.val, out); // the WebCrypto check agrees with node:crypto
  });

  it('drops a UTF-8 byte-order mark and separates files that lack a final newline', async () => {
    const a = write('a.txt', new Uint8Array([0xef, 0xbb, 0xbf, ...encode('first file, no newline')]));
    const b = write('b.txt', lines(40));
    const m = await prepareDataset([a, b], path.join(dir, 'ds'));
    const { train, val } = loadDataset(path.join(dir, 'ds'));
    expect(decode(train) + decode(val)).toBe('first file, no newline\n\n' + lines(40));
    expect(m.sources[0].bytes).toBe(25); // as read, BOM included
  });

  it('refuses an existing output unless forced, and only replaces a dataset', async () => {
    const a = write('a.txt', lines(60));
    const out = path.join(dir, 'ds');
    const first = await prepareDataset([a], out);
    await expect(prepareDataset([a], out)).rejects.toThrow(/ds already exists; .*--force/);
    write('a.txt', lines(80));
    const second = await prepareDataset([a], out, { force: true });
    expect(second.train.sha256).not.toBe(first.train.sha256);
    expect(loadDataset(out).manifest).toEqual(second);
    expect(fs.readdirSync(dir).sort()).toEqual(['a.txt', 'ds']);

    const other = path.join(dir, 'photos');
    fs.mkdirSync(other);
    fs.writeFileSync(path.join(other, 'keep.jpg'), 'x');
    await expect(prepareDataset([a], other, { force: true })).rejects.toThrow(/refusing to replace .*photos: it is not a Murmur dataset/);
    expect(fs.readdirSync(other)).toEqual(['keep.jpg']);
  });

  it('creates missing parent directories', async () => {
    const a = write('a.txt', lines(30));
    await prepareDataset([a], path.join(dir, 'runs', 'one', 'ds'));
    expect(loadDataset(path.join(dir, 'runs', 'one', 'ds')).manifest.train.tokens).toBeGreaterThan(0);
  });

  describe('errors name the problem and leave no output', () => {
    it('missing file', async () => {
      const a = write('a.txt', lines(30));
      const missing = path.join(dir, 'nope.txt');
      await expectNoOutput(() => prepareDataset([a, missing], path.join(dir, 'ds')), /cannot read input .*nope\.txt: file not found/, [a]);
    });

    it('a directory given as a file', async () => {
      const sub = path.join(dir, 'sub');
      fs.mkdirSync(sub);
      await expectNoOutput(() => prepareDataset([sub], path.join(dir, 'ds')), /cannot read input .*sub: it is a directory/, [sub]);
    });

    it('empty input', async () => {
      const e1 = write('e1.txt', '');
      const e2 = write('e2.txt', new Uint8Array([0xef, 0xbb, 0xbf]));
      await expectNoOutput(() => prepareDataset([e1], path.join(dir, 'ds')), /no text to prepare: .*e1\.txt is empty/, [e1, e2]);
      await expectNoOutput(() => prepareDataset([e1, e2], path.join(dir, 'ds')), /all of .*e1\.txt, .*e2\.txt are empty/, [e1, e2]);
      await expectNoOutput(() => prepareDataset([], path.join(dir, 'ds')), /no input files/, [e1, e2]);
    });

    it('invalid UTF-8, with file and byte offset', async () => {
      const good = write('good.txt', lines(30));
      const bad = write('latin1.txt', new Uint8Array([...encode('caf'), 0xe9, ...encode(' au lait\n')]));
      await expectNoOutput(() => prepareDataset([good, bad], path.join(dir, 'ds')), /latin1\.txt: invalid UTF-8 at byte 3 \(line 1\)/, [good, bad]);
    });

    it('a context longer than the validation or training text', async () => {
      const a = write('a.txt', lines(20)); // ~570 bytes, ~5% is ~30 for validation
      await expectNoOutput(() => prepareDataset([a], path.join(dir, 'ds'), { ctx: 64 }),
        /validation text is \d+ tokens but a context of 64 needs at least 65; raise --val-fraction/, [a]);
      await expectNoOutput(() => prepareDataset([a], path.join(dir, 'ds'), { ctx: 64, valFraction: 0.95 }),
        /training text is \d+ tokens but a context of 64 needs at least 65; lower --val-fraction/, [a]);
      const tiny = write('tiny.txt', 'x');
      await expectNoOutput(() => prepareDataset([tiny], path.join(dir, 'ds')), /text is \d+ tokens but training needs at least 2/, [a, tiny]);
    });

    it('bad options', async () => {
      const a = write('a.txt', lines(30));
      await expectNoOutput(() => prepareDataset([a], path.join(dir, 'ds'), { valFraction: 1 }), /valFraction must be a number between 0 and 1/, [a]);
      await expectNoOutput(() => prepareDataset([a], path.join(dir, 'ds'), { ctx: 0 }), /ctx must be a positive integer/, [a]);
    });

    it('more input files than a dataset records, or a manifest its loader would refuse', async () => {
      const a = write('a.txt', lines(30));
      // Refused before any is read: the names need not even exist.
      const many = Array.from({ length: 100_001 }, (_, i) => path.join(dir, `${i}.txt`));
      await expectNoOutput(() => prepareDataset(many, path.join(dir, 'ds')), /^100001 input files given; a dataset records at most 100000: join them into fewer files first$/, [a]);
      // Whatever reaches the writer is checked by the loader's own parse before anything is written.
      const m = await prepareDataset([a], path.join(dir, 'ds'));
      const ds = loadDataset(path.join(dir, 'ds'));
      const sources = Array.from({ length: 100_001 }, () => m.sources[0]!);
      expect(() => saveDataset({ ...ds, manifest: { ...m, sources } }, path.join(dir, 'copy')))
        .toThrow(`cannot write dataset to ${path.join(dir, 'copy')}: its manifest would not load: manifest.sources must have at most 100000 items; nothing written`);
      expect(() => saveDataset({ ...ds, manifest: { ...m, train: { ...m.train, file: '..' } } }, path.join(dir, 'copy'))).toThrow(/manifest\.train\.file is not a plain file name/);
      expect(fs.readdirSync(dir).sort()).toEqual(['a.txt', 'ds']);
    });

    it('a disk error part-way through the write', async () => {
      const a = write('a.txt', lines(30));
      faults.fsync = true;
      await expectNoOutput(() => prepareDataset([a], path.join(dir, 'new', 'ds')), /cannot write dataset to .*ds: EIO: i\/o error, fsync/, [a]);
    });

    it('a failed replace puts the previous dataset back', async () => {
      const a = write('a.txt', lines(30));
      const out = path.join(dir, 'ds');
      const before = await prepareDataset([a], out);
      write('a.txt', lines(90));
      faults.renameTmp = true;
      await expect(prepareDataset([a], out, { force: true })).rejects.toThrow(/cannot write dataset .*EIO: i\/o error, rename/);
      faults.renameTmp = false;
      expect(loadDataset(out).manifest).toEqual(before);
      expect(fs.readdirSync(dir).sort()).toEqual(['a.txt', 'ds']);
    });
  });
});

describe('loadDataset', () => {
  async function prepared(): Promise<string> {
    const out = path.join(dir, 'ds');
    await prepareDataset([write('a.txt', lines(80))], out);
    return out;
  }

  it('detects a corrupted split and names it', async () => {
    const out = await prepared();
    const p = path.join(out, 'val.bin');
    const bytes = fs.readFileSync(p);
    bytes[5] ^= 0x20; // same size, different content
    fs.writeFileSync(p, bytes);
    expect(() => loadDataset(out)).toThrow(/val\.bin is corrupted: sha256 .* does not match/);
  });

  it('detects a truncated or missing split', async () => {
    const out = await prepared();
    fs.truncateSync(path.join(out, 'train.bin'), 10);
    expect(() => loadDataset(out)).toThrow(/train\.bin has 10 bytes but the manifest says \d+ tokens/);
    fs.rmSync(path.join(out, 'train.bin'));
    expect(() => loadDataset(out)).toThrow(/cannot read train\.bin \(ENOENT\)/);
  });

  it('rejects a directory that is not a dataset, and a bad manifest', async () => {
    expect(() => loadDataset(dir)).toThrow(/is not a prepared dataset: it has no manifest\.json/);
    const out = await prepared();
    const mp = path.join(out, 'manifest.json');
    const m = JSON.parse(fs.readFileSync(mp, 'utf8'));
    fs.writeFileSync(mp, '{"format": "murmur-dataset",');
    expect(() => loadDataset(out)).toThrow(/manifest\.json is not valid JSON/);
    fs.writeFileSync(mp, JSON.stringify({ ...m, version: 2 }));
    expect(() => loadDataset(out)).toThrow(/version 2 is not supported/);
    fs.writeFileSync(mp, JSON.stringify({ ...m, train: { ...m.train, file: '../../etc/passwd' } }));
    expect(() => loadDataset(out)).toThrow(/manifest\.train\.file does not match .*, got "\.\.\/\.\.\/etc\/passwd"/);
    fs.writeFileSync(mp, JSON.stringify({ ...m, val: { ...m.val, file: '..' } }));
    expect(() => loadDataset(out)).toThrow(/manifest\.val\.file is not a plain file name/);
  });

  it('parseManifest checks every field', () => {
    expect(() => parseManifest([], 'm')).toThrow(/m: manifest must be object, got array/);
    expect(() => parseManifest({ format: 'other' }, 'm')).toThrow(/format is "other"/);
    const good = {
      format: 'murmur-dataset', version: 1, vocab: 256, tokenizer: 'bytes',
      train: { file: 'train.bin', tokens: 10, sha256: 'a'.repeat(64) },
      val: { file: 'val.bin', tokens: 2, sha256: 'b'.repeat(64) },
      sources: [{ file: 'a.txt', bytes: 12, sha256: 'c'.repeat(64) }],
      valFraction: 0.1, created: '2026-01-01T00:00:00.000Z',
    };
    expect(parseManifest(good, 'm')).toEqual(good);
    // Each refusal names the field, as the one schema words it.
    expect(() => parseManifest({ ...good, train: { ...good.train, tokens: '10' } }, 'm')).toThrow(/^m: manifest\.train\.tokens must be integer, got "10"/);
    expect(() => parseManifest({ ...good, val: { ...good.val, tokens: 2 ** 60 } }, 'm')).toThrow(/m: manifest\.val\.tokens must be <= \d+/);
    expect(() => parseManifest({ ...good, sources: [{ file: 'a.txt', sha256: 'c'.repeat(64) }] }, 'm')).toThrow(/m: manifest\.sources\[0\]\.bytes is required/);
    expect(() => parseManifest({ ...good, ctx: 1.5 }, 'm')).toThrow(/m: manifest\.ctx must be integer/);
    expect(() => parseManifest({ ...good, created: 'x'.repeat(10_000) }, 'm')).toThrow(/m: manifest\.created must have at most 64 characters/);
    expect(() => parseManifest({ ...good, extra: 'x'.repeat(10_000) }, 'm')).toThrow(/m: manifest\.extra is not an allowed field/);
  });
});

describe('a prepare killed between its renames', () => {
  it('the coordinator finds the previous dataset put back, and a live prepare\'s folders are left alone', async () => {
    const a = write('a.txt', lines(40));
    const root = path.join(dir, 'datasets');
    const m = await prepareDataset([a], path.join(root, 'books'));
    // What `prepare --force` killed between moving the old dataset aside and renaming the new one in leaves.
    const gone = spawnSync(process.execPath, ['-e', '']).pid;
    fs.renameSync(path.join(root, 'books'), path.join(root, `books.old-${gone}-0123abcd`));
    fs.mkdirSync(path.join(root, `books.tmp-${gone}-0123abcd`));
    fs.mkdirSync(path.join(root, `books.tmp-${process.ppid}-4567abcd`)); // a prepare still running
    expect(new DirDatasetSource(root).manifest('books')?.files.map((f) => f.sha256)).toEqual([m.train.sha256, m.val.sha256]);
    expect(fs.readdirSync(root).sort()).toEqual(['books', `books.tmp-${process.ppid}-4567abcd`]);
  });
});

describe('saveDataset and splitPoint', () => {
  it('saves an in-memory dataset that loads back identically', async () => {
    const a = write('a.txt', lines(40));
    const m = await prepareDataset([a], path.join(dir, 'ds'));
    const ds = loadDataset(path.join(dir, 'ds'));
    saveDataset(ds, path.join(dir, 'copy'));
    expect(loadDataset(path.join(dir, 'copy')).manifest).toEqual(m);
  });

  it('cuts at the nearest line start, else at a character boundary', () => {
    const text = encode('aaaa\nbbbb\ncccc\ndddd\n');
    expect(splitPoint(text, 0.25)).toBe(15); // 'dddd\n' starts at 15
    // One long line of 3-byte characters: no newline in reach, so step back to a lead byte.
    const wide = encode('€'.repeat(100));
    for (const f of [0.05, 0.1, 0.33]) {
      const p = splitPoint(wide, f);
      expect(p % 3).toBe(0);
      expect(decode(wide.subarray(p))).toBe('€'.repeat((wide.length - p) / 3));
    }
  });
});
