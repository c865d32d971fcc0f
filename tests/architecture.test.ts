// docs/design.md section 2, "dependencies point one way", checked on every import in src/ and
// server/: the leaves import nothing of ours, the mesh knows only the wire protocol, the UI's
// components see ports rather than the worker or the mesh, and only the page entry files and
// the CLI wire the pieces together. A new import that breaks a rule fails here, naming the file.
import { describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { ROOT } from './support/browser.ts';

/** Every .ts file below `dir`, relative to the repo root. */
function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(ROOT, dir))) {
    const rel = join(dir, name);
    if (statSync(join(ROOT, rel)).isDirectory()) out.push(...tsFiles(rel));
    else if (name.endsWith('.ts')) out.push(rel);
  }
  return out;
}

/** Relative module specifiers a file imports or re-exports (static and dynamic), resolved to repo paths. */
function imports(file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  const specs = [
    ...text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'";]*?\bfrom\s+'([^']+)'/g),
    ...text.matchAll(/(?:^|\n)\s*import\s+'([^']+)'/g),
    ...text.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g),
  ].map((m) => m[1]!);
  return specs.filter((s) => s.startsWith('.')).map((s) => relative(ROOT, resolve(ROOT, dirname(file), s.replace(/\?.*$/, ''))));
}

/** The area a repo path belongs to: src/<folder> (src/ui/<folder> for the UI), server, or the file itself. */
function area(path: string): string {
  const parts = path.split('/');
  if (parts[0] === 'server') return 'server';
  if (parts[0] !== 'src') return parts[0]!;
  if (parts.length === 2) return path; // src/cli.ts
  if (parts[1] === 'ui' && parts.length > 3) return `src/ui/${parts[2]}`;
  return `src/${parts[1]}`;
}

/** What each constrained area may import besides itself (areas, or single files). */
const ALLOWED: Record<string, string[]> = {
  'src/protocol': [],
  'src/shaders': [],
  // The reference model takes the data pipeline's Batch type, nothing else of it; a file's header
  // goes through the one schema check.
  'src/model': ['src/data/batch.ts', 'src/protocol/check.ts'],
  // A prepared dataset's manifest is read through the one schema check.
  'src/data': ['src/model', 'src/protocol/check.ts'],
  // The GPU's typed errors share the one error base, and its cache is read through the one schema
  // check (both leaf files of the protocol).
  'src/gpu': ['src/shaders', 'src/model', 'src/data/batch.ts', 'src/protocol/errors.ts', 'src/protocol/check.ts'],
  'src/train': ['src/model', 'src/data'],
  'src/worker': ['src/train', 'src/gpu', 'src/model', 'src/data'],
  'src/sync': ['src/protocol'],
  // The one outer round (wait, exchange, apply, evaluate, report) that the page and the headless
  // volunteer share: it knows the wire protocol's report and nothing else of ours.
  'src/round': ['src/protocol'],
  // The coordinator: the wire protocol (with what a run's exchange asks of a link,
  // src/protocol/exchange-link.ts), plus the model (export, evaluation) and the dataset format.
  // Nothing of the mesh.
  server: ['src/protocol', 'src/model', 'src/data'],
  // Lit components, their state and the widget see only the UI's own ports and helpers, and the
  // protocol's leaf of byte counts and rates for people (the coordinator's link warning says them too).
  'src/ui/core': ['src/ui/ports.ts', 'src/protocol/units.ts'],
  // Controllers may run the shared outer round: it sees its trainer and mesh only through the
  // RoundPorts the controller hands it (built from the UI's ports), so this edge brings in no
  // worker, GPU or mesh code, and the page cannot drift from the headless volunteer (issue 14).
  'src/ui/controllers': ['src/ui/core', 'src/ui/ports.ts', 'src/round'],
  'src/ui/elements': ['src/ui/core', 'src/ui/controllers', 'src/ui/ports.ts'],
  'src/ui/embed': ['src/ui/core', 'src/ui/controllers', 'src/ui/ports.ts'],
};

/** Who may import the apps: the CLI's commands start the server; only src/cli.ts runs commands. */
const APPS: Record<string, string[]> = {
  server: ['src/commands', 'server'],
  'src/commands': ['src/cli.ts', 'src/commands'],
  'src/ui/pages': ['src/ui/pages'],
};

const files = [...tsFiles('src'), ...tsFiles('server')];

/** Lines that open a block which is not a function body (control flow, object literals). */
const NOT_A_FUNCTION = /^\s*(?:\}\s*)?(?:try|if|else|for|while|catch|finally|switch|do|case|default)\b|(?:=|\(|return|,|:|\?\?)\s*\{$/;

/**
 * The function around line `at` (the nearest line above it, less indented, that opens a
 * function body with `{`): its opening line, and its text from `at` to where the body closes.
 */
function enclosing(lines: string[], at: number): { head: string; rest: string } {
  const indent = (l: string) => l.length - l.trimStart().length;
  let h = at - 1;
  while (h >= 0 && !(lines[h]!.trim() !== '' && indent(lines[h]!) < indent(lines[at]!) && lines[h]!.trimEnd().endsWith('{') && !NOT_A_FUNCTION.test(lines[h]!))) h--;
  if (h < 0) return { head: '', rest: lines.slice(at).join('\n') };
  let end = at + 1;
  while (end < lines.length && !(lines[end]!.trim() !== '' && indent(lines[end]!) <= indent(lines[h]!))) end++;
  return { head: lines[h]!, rest: lines.slice(at, end + 1).join('\n') };
}

/** Calls that check a value by its schema: the library's own, or a function of ours that makes one. */
function schemaCheckers(texts: Iterable<string>): Set<string> {
  const names = new Set(['schemaProblem', 'Value.Check']);
  for (const text of texts) {
    const lines = text.split('\n');
    lines.forEach((l, i) => {
      const m = /^\s*(?:export )?(?:async )?function (\w+)/.exec(l);
      if (!m || !l.trimEnd().endsWith('{')) return;
      const body = enclosing(lines, i + 1).rest;
      if (/\bschemaProblem\(|\bValue\.Check\(/.test(body)) names.add(m[1]!);
    });
  }
  return names;
}

/**
 * Each `JSON.parse(` in `text` whose function neither calls a schema checker after it nor
 * returns the value as `unknown` for its caller to check: "file:line".
 */
function uncheckedParses(file: string, text: string, checkers: Set<string>): string[] {
  const call = new RegExp(`(?:^|[^\\w.])(?:${[...checkers].map((c) => c.replace('.', '\\.')).join('|')})\\(`);
  const lines = text.split('\n');
  const bad: string[] = [];
  lines.forEach((l, i) => {
    if (!l.includes('JSON.parse(') || /^\s*(?:\/\/|\*)/.test(l)) return;
    const { head, rest } = enclosing(lines, i);
    if (!call.test(rest) && !/\):\s*unknown\s*\{$/.test(head.trimEnd())) bad.push(`${file}:${i + 1}`);
  });
  return bad;
}

/** Source files of a folder that may use our exports (results and fixtures are data). */
function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(ROOT, dir))) {
    const rel = join(dir, name);
    if (name === 'results' || name === 'node_modules') continue;
    if (statSync(join(ROOT, rel)).isDirectory()) out.push(...sourceFiles(rel));
    else if (/\.(ts|mjs|js|html)$/.test(name)) out.push(rel);
  }
  return out;
}

/** Strongly connected components of more than one file (or a file importing itself): the import circles. */
export function circles(graph: Map<string, string[]>): string[][] {
  // Tarjan's algorithm, iterative so a deep chain cannot overflow the stack.
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  for (const root of graph.keys()) {
    if (index.has(root)) continue;
    const work: Array<{ node: string; edges: string[]; i: number }> = [];
    const enter = (node: string) => {
      index.set(node, next); low.set(node, next); next++;
      stack.push(node); onStack.add(node);
      work.push({ node, edges: (graph.get(node) ?? []).filter((t) => graph.has(t)), i: 0 });
    };
    enter(root);
    while (work.length > 0) {
      const top = work[work.length - 1]!;
      if (top.i < top.edges.length) {
        const to = top.edges[top.i++]!;
        if (!index.has(to)) enter(to);
        else if (onStack.has(to)) low.set(top.node, Math.min(low.get(top.node)!, index.get(to)!));
        continue;
      }
      work.pop();
      if (work.length > 0) {
        const parent = work[work.length - 1]!.node;
        low.set(parent, Math.min(low.get(parent)!, low.get(top.node)!));
      }
      if (low.get(top.node) === index.get(top.node)) {
        const scc: string[] = [];
        let n: string;
        do { n = stack.pop()!; onStack.delete(n); scc.push(n); } while (n !== top.node);
        if (scc.length > 1 || (graph.get(top.node) ?? []).includes(top.node)) out.push(scc.sort());
      }
    }
  }
  return out.sort((a, b) => a[0]!.localeCompare(b[0]!));
}

function allows(list: string[], target: string): boolean {
  return list.some((a) => target === a || target.startsWith(a + '/') || area(target) === a);
}

describe('architecture (docs/design.md section 2)', () => {
  it('reads the imports of every source file', () => {
    expect(files.length).toBeGreaterThan(100);
    // The parser sees real edges: the worker uses the GPU engine, the mesh the wire frames.
    expect(imports('src/worker/trainer.ts')).toContain('src/gpu/engine.ts');
    expect(imports('src/sync/mesh.ts').some((p) => p.startsWith('src/protocol/'))).toBe(true);
  });

  it('dependencies point one way', () => {
    const bad: string[] = [];
    for (const file of files) {
      const from = area(file);
      for (const target of imports(file)) {
        const to = area(target);
        if (to === from) continue;
        const allowed = ALLOWED[from];
        if (allowed && !allows(allowed, target)) bad.push(`${file} imports ${target}: ${from} may use only ${allowed.join(', ') || 'nothing of ours'}`);
        const importers = APPS[to];
        if (importers && !allows(importers, file)) bad.push(`${file} imports ${target}: only ${importers.join(', ')} may`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('catches a forbidden edge (the checker itself)', () => {
    // The rules applied to made-up edges: a sync module reaching for the GPU, a component for the mesh.
    expect(allows(ALLOWED['src/sync']!, 'src/gpu/engine.ts')).toBe(false);
    expect(allows(ALLOWED['src/ui/elements']!, 'src/sync/mesh.ts')).toBe(false);
    expect(allows(ALLOWED['src/model']!, 'src/data/sampler.ts')).toBe(false);
    expect(allows(ALLOWED['src/model']!, 'src/data/batch.ts')).toBe(true);
    expect(allows(APPS['src/ui/pages']!, 'src/ui/elements/dashboard.ts')).toBe(false);
    expect(allows(ALLOWED['src/round']!, 'src/sync/mesh.ts')).toBe(false);
    expect(allows(ALLOWED['src/ui/controllers']!, 'src/sync/mesh.ts')).toBe(false);
    // The coordinator takes what a run's exchange asks of a link from the protocol, none of the mesh.
    expect(allows(ALLOWED.server!, 'src/sync/deadline.ts')).toBe(false);
    expect(allows(ALLOWED.server!, 'src/protocol/exchange-link.ts')).toBe(true);
    // The UI's core takes the protocol's rates for people, nothing else of it.
    expect(allows(ALLOWED['src/ui/core']!, 'src/protocol/units.ts')).toBe(true);
    expect(allows(ALLOWED['src/ui/core']!, 'src/protocol/messages.ts')).toBe(false);
  });

  it('has no import circle in src/ or server/', () => {
    const graph = new Map(files.map((f) => [f, imports(f)]));
    expect(circles(graph).map((c) => c.join(' <-> '))).toEqual([]);
  });

  it('finds a circle (the checker itself)', () => {
    const g = (edges: Record<string, string[]>) => new Map(Object.entries(edges));
    expect(circles(g({ a: ['b'], b: ['c'], c: ['a'], d: ['a'] }))).toEqual([['a', 'b', 'c']]);
    expect(circles(g({ a: ['a'] }))).toEqual([['a']]);
    expect(circles(g({ a: ['b'], b: ['c'], c: [], d: ['a', 'c'] }))).toEqual([]);
  });

  it('declares each shared concept once', () => {
    // A second Clock (with its own time base) or FLOP formula drifts from the first unseen.
    const once: Array<[string, RegExp, string]> = [
      ['Clock', /^export interface Clock\b/m, 'src/protocol/clock.ts'],
      // The base of the coded errors (FrameError, SyncError, VolunteerError narrow its code).
      ['an error base with a code', /constructor\(code: \w+, message: string/, 'src/protocol/errors.ts'],
      // What a run's exchange asks of a link: the deadline's bounds, the run's encodings and their
      // bytes, the rates (src/protocol/exchange-link.ts); the mesh and the coordinator share them.
      ['the receive deadline\'s bounds', /^export (?:interface DeadlineSettings\b|const DEFAULT_DEADLINE\b)/m, 'src/protocol/exchange-link.ts'],
      ['a run\'s wire encodings', /^export (?:interface CompressionSetting\b|function (?:compressionForRun|exchangePayloadBytes)\b)/m, 'src/protocol/exchange-link.ts'],
      ['what a run\'s exchange asks of a link', /^export function (?:exchangeLink|linkWarning)\b/m, 'src/protocol/exchange-link.ts'],
      ['the run\'s compression names', /\[\s*'none',\s*'fp16',\s*'bf16',\s*'int8'\s*\]/, 'src/protocol/messages.ts'],
      // A rate for people: the coordinator's link warning said "0.72 MB/s" where the pages said "723 KB/s".
      ['a byte count or rate for people', /^export function format(?:Bytes|Rate)\b/m, 'src/protocol/units.ts'],
    ];
    for (const [name, pattern, home] of once) {
      const where = files.filter((f) => pattern.test(readFileSync(join(ROOT, f), 'utf8')));
      expect(where, `${name} is declared in`).toEqual([home]);
    }
  });

  it('checks what arrives against one TypeBox schema per message, never by hand', () => {
    // Issue 16: one schema per message, from the library, on every path that parses input.
    // The files that define what arrives (WebSocket, peer, state frame, HTTP) declare no type
    // apart from its schema, write no JSON Schema by hand, and their parse functions run the
    // library's check; no validator of our own exists anywhere.
    const wire = ['src/protocol/messages.ts', 'src/protocol/peer-messages.ts', 'src/protocol/state-frame.ts', 'src/protocol/api.ts', 'src/ui/embed/bridge-schemas.ts', 'server/runs.ts', ...tsFiles('server/routes')];
    /** Declared types that are not messages: decoded binary arrays, not JSON. */
    const notMessages = new Set(['src/protocol/state-frame.ts: StateFrame']);
    const bad: string[] = [];
    for (const f of wire) {
      const text = readFileSync(join(ROOT, f), 'utf8');
      for (const m of text.matchAll(/^export (interface|type) (\w+)([\s\S]*?)(?:;\n|\n\})/gm)) {
        if (notMessages.has(`${f}: ${m[2]}`)) continue;
        if (m[1] === 'interface' || !m[3]!.includes('Static<')) bad.push(`${f}: ${m[1]} ${m[2]} is declared apart from its schema (derive it: Static<typeof Schema>)`);
      }
      if (/\btype: '(object|string|integer|number|boolean|array|null)'/.test(text)) bad.push(`${f}: a JSON schema written by hand (build it with TypeBox)`);
    }
    for (const f of ['src/protocol/messages.ts', 'src/protocol/peer-messages.ts', 'src/protocol/state-frame.ts']) {
      if (!readFileSync(join(ROOT, f), 'utf8').includes('schemaProblem(')) bad.push(`${f}: parses messages without the schema check (src/protocol/check.ts)`);
    }
    expect(readFileSync(join(ROOT, 'src/protocol/check.ts'), 'utf8')).toMatch(/from 'typebox\/value'[\s\S]*from 'typebox\/compile'/);
    for (const f of files) {
      const text = readFileSync(join(ROOT, f), 'utf8');
      if (/function validateSchema\b|interface Schema \{/.test(text)) bad.push(`${f}: a hand-written schema validator`);
      // HTTP: Fastify's Ajv compiles each route's schema; no compiler of our own. Text parts are
      // Ajv's too, then refused when coercion made a non-finite number (finiteOnly, server/app.ts:
      // Ajv checks no bound against "Infinity").
      for (const m of text.matchAll(/setValidatorCompiler\(([^\n]*)/g)) {
        if (!/(Ajv\)\.compile\(schema\)|\? strictAjv\.compile\(schema\) : finiteOnly\(textAjv\.compile\(schema\)\)\))\);$/.test(m[1]!)) bad.push(`${f}: a validator compiler that is not Ajv's`);
      }
    }
    for (const gone of ['src/protocol/schema.ts', 'server/validation.ts']) if (existsSync(join(ROOT, gone))) bad.push(`${gone} is back`);
    expect(bad).toEqual([]);
  });

  it('reads no parsed JSON by casting it: each goes through its schema', () => {
    // Issue 16: `JSON.parse(...) as T` or `(await res.json()) as T` trusts whatever arrived. Each
    // parse is checked with schemaProblem (or Value.Check where a page can only ignore bad input)
    // before its fields are read. The casts left, and why each is safe:
    const allowed: Record<string, string> = {
      // The checkpoint's exported HF config.json (the coordinator's own derived file).
      'src/ui/sampling/sampler.worker.ts': 'config.json handed to modelFromHfConfig, which checks its fields',
    };
    const cast = /JSON\.parse\((?:[^()]|\([^()]*(?:\([^()]*\))?[^()]*\))*\)\s*\)?\s*as\s+(?!unknown\b)|\.json\(\)\)?\s*as\s+(?!unknown\b)/;
    const found = files.filter((f) => (f.startsWith('src/') || f.startsWith('server/')) && cast.test(readFileSync(join(ROOT, f), 'utf8')));
    expect(found.filter((f) => !(f in allowed)), 'parsed JSON cast without its schema').toEqual([]);
    // An entry whose cast is gone is dropped from the list, so the list stays the truth.
    expect(Object.keys(allowed).filter((f) => !found.includes(f)), 'allowed casts that no longer exist').toEqual([]);
  });

  it('checks every JSON.parse by a schema in the function that parses', () => {
    // Issue 16: what JSON.parse returns is checked by its one schema (schemaProblem or Value.Check,
    // directly or through a function of ours that calls one) before the function that parsed it is
    // done, or that function hands it on typed `unknown` for its caller to check.
    const texts = new Map(files.map((f) => [f, readFileSync(join(ROOT, f), 'utf8')]));
    const checkers = schemaCheckers(texts.values());
    expect(checkers).toContain('parseManifest');
    const bad = files.filter((f) => f.startsWith('src/') || f.startsWith('server/')).flatMap((f) => uncheckedParses(f, texts.get(f)!, checkers));
    expect(bad, 'JSON.parse with no schema check in its function').toEqual([]);
    // The rule itself: each of these shapes is caught, each checked one passes.
    const probe = (code: string) => uncheckedParses('x.ts', code, checkers);
    expect(probe('function f(s: string): number {\n  const v = JSON.parse(s) as { n: number };\n  return v.n;\n}\nfunction g(v: unknown) {\n  return schemaProblem(S, v, "v");\n}')).toEqual(['x.ts:2']);
    expect(probe('class A {\n  list(rows: Row[]): Ev[] {\n    return rows.map((r) => ({ ...r, data: JSON.parse(r.data) }));\n  }\n  other(v: unknown) { return Value.Check(S, v); }\n}')).toEqual(['x.ts:3']);
    expect(probe('function f(s: string): T | null {\n  let v: unknown;\n  try {\n    v = JSON.parse(s);\n  } catch {\n    return null;\n  }\n  return schemaProblem(T, v, "t") === null ? v as T : null;\n}')).toEqual([]);
    expect(probe('function f(s: string): Manifest {\n  return parseManifest(JSON.parse(s), "m");\n}')).toEqual([]);
    expect(probe('function f(s: string): unknown {\n  try { return JSON.parse(s); } catch { return null; }\n}')).toEqual([]);
  });

  it('exports nothing that no file uses', () => {
    // An export nobody imports (and its own file does not use either) is dead code that still
    // looks like an API. Tests, benchmarks, pages and scripts count as users.
    const users = ['tests', 'bench', 'web', 'scripts'].flatMap((d) => sourceFiles(d));
    const texts = new Map([...files, ...users].map((f) => [f, readFileSync(join(ROOT, f), 'utf8')]));
    const dead: string[] = [];
    for (const file of files) {
      const own = texts.get(file)!;
      for (const m of own.matchAll(/^export (?:declare )?(?:async )?(?:abstract )?(?:function\*?|class|const|let|type|interface|enum) (\w+)/gm)) {
        const word = new RegExp(`\\b${m[1]}\\b`);
        const usedHere = own.split(word).length > 2;
        if (!usedHere && ![...texts].some(([f, t]) => f !== file && word.test(t))) dead.push(`${file}: ${m[1]}`);
      }
    }
    expect(dead).toEqual([]);
  });
  it('sets no test or hook limit shorter than the config\'s outer guard', () => {
    // A test waits for named conditions with their own deadlines; the limit around it only guards
    // against a hang and must be longer than those waits (vite.config.ts). A per-test limit below
    // the config's cut the end-to-end tests short on a loaded machine while their conditions were
    // still coming; a longer one (a hook that builds a whole swarm) is allowed.
    const config = readFileSync(join(ROOT, 'vite.config.ts'), 'utf8');
    const testLimit = Number(/testTimeout: ([\d_]+)/.exec(config)![1].replace(/_/g, ''));
    const hookLimit = Number(/hookTimeout: ([\d_]+)/.exec(config)![1].replace(/_/g, ''));
    const short = (text: string, file: string): string[] => {
      const found: string[] = [];
      text.split('\n').forEach((line, i) => {
        const m = /^(\s*)\}, ([\d_]{4,})\);$/.exec(line);
        if (!m) return;
        const limit = Number(m[2].replace(/_/g, ''));
        if (limit < (m[1].length === 0 ? hookLimit : testLimit)) found.push(`${file}:${i + 1}`);
      });
      return found;
    };
    const tests = readdirSync(join(ROOT, 'tests')).filter((f) => f.endsWith('.test.ts'));
    expect(tests.flatMap((f) => short(readFileSync(join(ROOT, 'tests', f), 'utf8'), `tests/${f}`))).toEqual([]);
    // The checker itself: a 120 s test limit and a 60 s hook limit are found, 900 s and a timer are not.
    expect(short("  it('x', async () => {\n  }, 120_000);\nbeforeAll(() => {\n}, 60_000);\n  }, 900_000);\n    }, 2);", 'x.ts')).toEqual(['x.ts:2', 'x.ts:4']);
  });
});
