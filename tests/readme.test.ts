// README keeps its promises about the project itself: the Quick start gives exactly the two
// commands, CI runs the test one, and every runtime dependency has its line under Dependencies.
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { ROOT } from './support/browser.ts';

// npm's own range parser, already in the lockfile; typed here for the two calls we make.
const semver = createRequire(import.meta.url)('semver') as {
  satisfies(version: string, range: string): boolean;
  minVersion(range: string): { version: string } | null;
};

const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
  engines: { node: string };
};
type Locked = { version?: string; engines?: { node?: string } };
const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, Locked> };

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

  it('promises a Node that every locked package accepts', () => {
    // README's Quick start names the oldest Node we support; a locked package whose
    // `engines.node` excludes it makes `npm ci` warn there and may break at run time.
    const promised = /Needs only Node \d+ \((\d+\.\d+) or newer\)/.exec(section('Quick start'))?.[1];
    expect(promised, 'README Quick start names no "Node N (N.M or newer)"').toBeDefined();
    const version = `${promised}.0`;
    expect(semver.satisfies(version, pkg.engines.node), `package.json engines.node ${pkg.engines.node}`).toBe(true);
    expect(semver.minVersion(pkg.engines.node)?.version, 'package.json engines.node and README disagree').toBe(version);
    const excluded = Object.entries(lock.packages)
      .filter(([, p]) => p.engines?.node && !semver.satisfies(version, p.engines.node))
      .map(([path, p]) => `${path.replace(/^.*node_modules\//, '')}@${p.version} needs Node ${p.engines!.node}`);
    expect(excluded, `locked packages that refuse Node ${version}`).toEqual([]);
  });
});
