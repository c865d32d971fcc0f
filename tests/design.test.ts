// docs/design.md is the design the code cites. Every mention of the design in src/, server/,
// tests/, bench/, scripts/, web/ and README must name that file, and a `docs/design.md section N`
// (or N.M) citation must name a heading that exists, so a reader who follows one lands somewhere.
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ROOT } from './support/browser.ts';

const DESIGN = readFileSync(join(ROOT, 'docs', 'design.md'), 'utf8');
const SELF = relative(ROOT, new URL(import.meta.url).pathname);

/** Section numbers of the design's `## N. ` and `### N.M ` headings. */
export function headings(markdown: string): Set<string> {
  return new Set([...markdown.matchAll(/^#{2,3} (\d+(?:\.\d+)?)\.? /gm)].map((m) => m[1]!));
}

/** Problems with the design citations in one text: a mention not in the citation form, or a missing section. */
export function badCitations(text: string, sections: Set<string>): string[] {
  const bad: string[] = [];
  for (const m of text.matchAll(/(?:docs\/)?design\.md(?: section (\d+(?:\.\d+)?))?|design doc/gi)) {
    const line = text.slice(0, m.index).split('\n').length;
    if (!m[0].startsWith('docs/design.md')) bad.push(`line ${line}: "${m[0]}" is not docs/design.md (cite "docs/design.md section N")`);
    else if (m[1] !== undefined && !sections.has(m[1])) bad.push(`line ${line}: docs/design.md has no section ${m[1]}`);
  }
  return bad;
}

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(ROOT, dir))) {
    const rel = join(dir, name);
    if (name === 'results' || name === 'fixtures' || name === 'node_modules') continue;
    if (statSync(join(ROOT, rel)).isDirectory()) out.push(...sources(rel));
    else if (/\.(ts|mjs|js|wgsl|html|sh)$/.test(name)) out.push(rel);
  }
  return out;
}

describe('docs/design.md citations', () => {
  const sections = headings(DESIGN);

  it('has the numbered sections the code cites', () => {
    for (const s of ['1', '1.1', '1.2', '2', '3', '4', '5', '6', '7']) expect(sections.has(s), `section ${s}`).toBe(true);
  });

  it('every citation in the code and README names a heading of docs/design.md', () => {
    const files = ['src', 'server', 'tests', 'bench', 'scripts', 'web'].flatMap(sources).filter((f) => f !== SELF);
    expect(files.length).toBeGreaterThan(150);
    const bad = [...files, 'README.md'].flatMap((f) => badCitations(readFileSync(join(ROOT, f), 'utf8'), sections).map((b) => `${f} ${b}`));
    expect(bad).toEqual([]);
  });

  it('catches a citation that does not resolve (the checker itself)', () => {
    expect(badCitations('// see DESIGN.md section 3', sections)).toHaveLength(1);
    expect(badCitations('// the design doc says so', sections)).toHaveLength(1);
    expect(badCitations('// docs/design.md section 9', sections)).toEqual(['line 1: docs/design.md has no section 9']);
    expect(badCitations('// docs/design.md section 1.1 and docs/design.md section 3', sections)).toEqual([]);
    expect(badCitations('see [the design](docs/design.md)', sections)).toEqual([]);
  });
});
