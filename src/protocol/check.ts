// Checks a value against its TypeBox schema and puts the first problem in words that name the
// field. Every message and request body has exactly one schema (messages.ts, peer-messages.ts,
// state-frame.ts, server/runs.ts, server/routes); this file only runs them. The pages, served
// under a CSP without 'unsafe-eval', and their workers check with TypeBox's Value module, which
// interprets the schema and never evaluates code. Node (the coordinator, headless volunteers)
// compiles each schema once with TypeBox's compiler: the same rules, about ten times faster on
// the coordinator's hot path (a frame per message from every peer). The coordinator's HTTP
// routes check the same schemas with Fastify's Ajv and word Ajv's errors with `describeIssue`
// below, so a bad field reads the same whichever path refused it.
import Value from 'typebox/value';
import Compile from 'typebox/compile';
import type { TSchema } from 'typebox';

/** Only Node compiles: a page never reaches the compiler, so it never tries to evaluate code. */
const COMPILES = typeof (globalThis as { process?: { versions?: { node?: unknown } } }).process?.versions?.node === 'string';
const compiled = new WeakMap<TSchema, (value: unknown) => boolean>();

/** True when `value` matches `schema` (compiled in Node, interpreted elsewhere). */
function matches(schema: TSchema, value: unknown): boolean {
  if (!COMPILES) return Value.Check(schema, value);
  let check = compiled.get(schema);
  if (!check) {
    const validator = Compile(schema);
    check = (v) => validator.Check(v);
    compiled.set(schema, check);
  }
  return check(value);
}

/** One validation error, as both TypeBox (Value.Errors) and Ajv report it. */
export interface SchemaIssue {
  keyword: string;
  instancePath: string;
  schemaPath: string;
  params: Record<string, unknown>;
  message?: string;
}

/** Null when `value` matches `schema`; otherwise the first problem, its path starting at `root`. */
export function schemaProblem(schema: TSchema, value: unknown, root: string): string | null {
  if (matches(schema, value)) return null;
  const issues = Value.Errors(schema, value) as unknown as SchemaIssue[];
  // The compiler and the interpreter implement the same rules; should they ever disagree, the
  // value is still refused.
  return issues.length > 0 ? describeIssues(issues, root, value) : `${root} does not match its schema`;
}

/** The first of `issues` in words (a union's error names the branch that came closest). */
export function describeIssues(issues: readonly SchemaIssue[], root: string, value?: unknown): string {
  return describeIssue(pick(issues, '#'), root, value);
}

/** Keywords that mean "this branch of a union is a different kind of value". */
const KIND_KEYWORDS = new Set(['type', 'const', 'enum']);

/** The issue to report among those under `prefix`: the first outside any union, unions resolved. */
function pick(issues: readonly SchemaIssue[], prefix: string): SchemaIssue {
  const own = issues.filter((e) => e.schemaPath.startsWith(prefix) && !e.schemaPath.slice(prefix.length).includes('/anyOf/'));
  const first = own.find((e) => e.keyword !== 'anyOf') ?? own[0] ?? issues[0]!;
  if (first.keyword !== 'anyOf') return first;
  const base = first.schemaPath.replace(/\/anyOf$/, '') + '/anyOf/';
  const branches = new Map<string, SchemaIssue[]>();
  for (const e of issues) {
    if (!e.schemaPath.startsWith(base)) continue;
    const i = /^\d+/.exec(e.schemaPath.slice(base.length))?.[0];
    if (i !== undefined) branches.set(i, [...(branches.get(i) ?? []), e]);
  }
  // A branch that failed on the value's kind (its type, or a tag such as `ok`) is not the one
  // the sender meant; a branch that failed deeper (a bound, a pattern) is.
  const isKindMiss = (e: SchemaIssue) => KIND_KEYWORDS.has(e.keyword) &&
    (e.instancePath === first.instancePath || (e.keyword === 'const' && parentOf(e.instancePath) === first.instancePath));
  const meant = [...branches].find(([, es]) => !es.some(isKindMiss));
  if (meant) return pick(issues, base + meant[0]);
  const kinds = [...branches.values()].map((es) => es.find(isKindMiss)!).filter((e) => e !== undefined);
  const child = kinds[0]?.instancePath;
  if (kinds.length > 0 && child !== first.instancePath && kinds.every((e) => e.instancePath === child)) {
    return { keyword: 'enum', instancePath: child!, schemaPath: first.schemaPath, params: { allowedValues: kinds.map((e) => e.params.allowedValue) } };
  }
  return { keyword: 'oneOfKinds', instancePath: first.instancePath, schemaPath: first.schemaPath, params: { kinds: [...new Set(kinds.map(kindOf))] } };
}

function parentOf(pointer: string): string {
  return pointer.slice(0, Math.max(0, pointer.lastIndexOf('/')));
}

function kindOf(e: SchemaIssue): string {
  if (e.keyword === 'type') return ([] as unknown[]).concat(e.params.type).join(' or ');
  if (e.keyword === 'const') return JSON.stringify(e.params.allowedValue);
  return ((e.params.allowedValues as unknown[]) ?? []).map((v) => JSON.stringify(v)).join(' or ');
}

/** `root` followed by the JSON pointer as `.field[3].inner`; long keys are cut. */
function pathOf(root: string, pointer: string): string {
  if (pointer === '') return root;
  return root + pointer.slice(1).split('/').map((k) => k.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((k) => (/^\d+$/.test(k) ? `[${k}]` : `.${cut(k)}`)).join('');
}

function cut(s: string): string {
  return s.length > 40 ? s.slice(0, 40) + '…' : s;
}

function at(value: unknown, pointer: string): unknown {
  let v = value;
  for (const k of pointer === '' ? [] : pointer.slice(1).split('/')) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[k.replace(/~1/g, '/').replace(/~0/g, '~')];
  }
  return v;
}

function shown(v: unknown): string {
  if (typeof v === 'number') return String(v);
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v);
  if (v === null) return 'null';
  return Array.isArray(v) ? 'array' : typeof v;
}

/** One issue in words: "<root>.field must be >= 0, got -1". `value` (the whole input) adds the "got". */
export function describeIssue(e: SchemaIssue, root: string, value?: unknown): string {
  const path = pathOf(root, e.instancePath);
  const p = e.params;
  const v = at(value, e.instancePath);
  const got = value === undefined || v === undefined ? '' : `, got ${shown(v)}`;
  switch (e.keyword) {
    case 'required': {
      const k = (p.missingProperty ?? (p.requiredProperties as string[] | undefined)?.[0]) as string;
      return `${path}.${k} is required`;
    }
    case 'additionalProperties': {
      const k = (p.additionalProperty ?? (p.additionalProperties as string[] | undefined)?.[0]) as string;
      return `${path}.${cut(k)} is not an allowed field`;
    }
    case 'boolean':
      return e.schemaPath.endsWith('/additionalProperties') ? `${path} is not an allowed field` : `${path} is not allowed`;
    case 'type':
    case 'oneOfKinds':
      // JSON.parse turns 1e999 into Infinity; no field may carry it.
      if (typeof v === 'number' && !Number.isFinite(v)) return `${path} must be a finite number${got}`;
      return `${path} must be ${e.keyword === 'type' ? kindOf(e) : (p.kinds as string[]).join(' or ')}${got}`;
    case 'minimum': case 'maximum': case 'exclusiveMinimum': case 'exclusiveMaximum':
      return `${path} must be ${p.comparison as string} ${p.limit as number}${got}`;
    case 'minLength': return `${path} must have at least ${p.limit as number} characters`;
    case 'maxLength': return `${path} must have at most ${p.limit as number} characters`;
    case 'minItems': return `${path} must have at least ${p.limit as number} items`;
    case 'maxItems': return `${path} must have at most ${p.limit as number} items`;
    case 'pattern': return `${path} does not match ${p.pattern as string}${got}`;
    case 'enum': return `${path} must be one of ${(p.allowedValues as unknown[]).map((x) => JSON.stringify(x)).join(', ')}${got}`;
    case 'const': return `${path} must be ${JSON.stringify(p.allowedValue)}${got}`;
    default: return `${path} ${e.message ?? `fails ${e.keyword}`}`;
  }
}

/**
 * A message's type tag in words, whatever the sender put there: a string quoted and cut, anything
 * else only its kind. JSON.stringify of the value itself recursed through a tag nested 32,000
 * arrays deep (a 64 KB frame) and threw RangeError out of a parser that promises never to throw.
 */
export function shownTag(t: unknown): string {
  if (typeof t === 'string') return JSON.stringify(t.length > 40 ? t.slice(0, 40) + '…' : t);
  if (typeof t === 'number' || typeof t === 'boolean' || t === null || t === undefined) return String(t);
  return Array.isArray(t) ? 'an array' : 'an object';
}

/** Nesting depth of a parsed JSON value (scalars are 0); bounds "any JSON" fields. */
export function jsonDepth(v: unknown, limit = 64): number {
  let max = 0;
  const stack: [unknown, number][] = [[v, 0]];
  while (stack.length > 0) {
    const [x, d] = stack.pop()!;
    if (d > max) max = d;
    if (max > limit) return max;
    if (x !== null && typeof x === 'object') {
      for (const c of Array.isArray(x) ? x : Object.values(x)) stack.push([c, d + 1]);
    }
  }
  return max;
}
