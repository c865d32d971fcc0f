// README keeps its promises about the project itself: the Quick start gives exactly the two
// commands, CI runs the test one, and every runtime dependency has its line under Dependencies.
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './support/browser.ts';

const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };

/** The text of a `## name` section, up to the next `## `. */
function section(name: string): string {
  const start = readme.indexOf(`\n## ${name}\n`);
  if (start < 0) throw new Error(`README has no "## ${name}" section`);
  const end = readme.indexOf('\n## ', start + 4);
  return readme.slice(start, end < 0 ? undefined : end);
}

describe('README', () => {
  it('gives npm start and npm test in its Quick start, and CI runs npm test', () => {
    const quick = section('Quick start');
    expect(quick).toMatch(/^\s+npm start\b/m);
    expect(quick).toMatch(/^\s+npm test\b/m);
    expect(readFileSync(join(ROOT, '.ci', 'run'), 'utf8')).toMatch(/^npm test$/m);
  });

  it('says why each runtime dependency is there', () => {
    const runtime = section('Dependencies').split(/\nDevelopment only:/)[0]!;
    const missing = Object.keys(pkg.dependencies).filter((d) => !runtime.includes(`\`${d}\``));
    expect(missing, 'runtime dependencies with no line under README "## Dependencies"').toEqual([]);
  });
});
