// A small JSON-Schema subset and its validator, shared by the coordinator and its clients so
// both sides reject the same messages with the same words. Only what our messages use:
// object (properties, required, additionalProperties), string (length, pattern, enum),
// integer / number (finite, bounds), boolean, null, array (items, maxItems), type unions,
// and `{}` for "any JSON" (bounded separately by size and depth). The objects are plain JSON
// Schema, so the same constants can be handed to Fastify for its routes.

export interface Schema {
  type?: SchemaType | SchemaType[];
  properties?: Record<string, Schema>;
  required?: readonly string[];
  additionalProperties?: boolean;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  enum?: readonly (string | number | boolean | null)[];
  const?: string | number | boolean;
  minimum?: number;
  maximum?: number;
  items?: Schema;
  maxItems?: number;
  description?: string;
}

export type SchemaType = 'object' | 'string' | 'integer' | 'number' | 'boolean' | 'null' | 'array';

export type Validation<T> = { ok: true; value: T } | { ok: false; error: string };

const patternCache = new Map<string, RegExp>();

/** Checks `value` against `schema`; the error names the path and what was wrong. */
export function validateSchema<T>(schema: Schema, value: unknown, path = '$'): Validation<T> {
  const err = check(schema, value, path);
  return err === null ? { ok: true, value: value as T } : { ok: false, error: err };
}

function typeOf(v: unknown): SchemaType | 'other' {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  switch (typeof v) {
    case 'string': return 'string';
    case 'boolean': return 'boolean';
    case 'number': return Number.isInteger(v) ? 'integer' : 'number';
    case 'object': return 'object';
    default: return 'other';
  }
}

function check(s: Schema, v: unknown, path: string): string | null {
  if (s.const !== undefined && v !== s.const) return `${path} must be ${JSON.stringify(s.const)}`;
  if (s.enum && !s.enum.includes(v as never)) return `${path} must be one of ${s.enum.map((x) => JSON.stringify(x)).join(', ')}`;
  if (s.type !== undefined) {
    const types = Array.isArray(s.type) ? s.type : [s.type];
    const t = typeOf(v);
    const okType = types.includes(t as SchemaType) || (t === 'integer' && types.includes('number'));
    if (!okType) return `${path} must be ${types.join(' or ')}, got ${t === 'integer' || t === 'number' ? 'number' : t}`;
  }
  switch (typeOf(v)) {
    case 'number':
    case 'integer': {
      const n = v as number;
      // JSON.parse turns 1e999 into Infinity; no message field may carry it.
      if (!Number.isFinite(n)) return `${path} must be a finite number`;
      if (s.minimum !== undefined && n < s.minimum) return `${path} must be >= ${s.minimum}, got ${n}`;
      if (s.maximum !== undefined && n > s.maximum) return `${path} must be <= ${s.maximum}, got ${n}`;
      return null;
    }
    case 'string': {
      const str = v as string;
      if (s.minLength !== undefined && str.length < s.minLength) return `${path} must have at least ${s.minLength} characters`;
      if (s.maxLength !== undefined && str.length > s.maxLength) return `${path} must have at most ${s.maxLength} characters`;
      if (s.pattern !== undefined) {
        let re = patternCache.get(s.pattern);
        if (!re) { re = new RegExp(s.pattern, 'u'); patternCache.set(s.pattern, re); }
        if (!re.test(str)) return `${path} does not match ${s.pattern}`;
      }
      return null;
    }
    case 'array': {
      const a = v as unknown[];
      if (s.maxItems !== undefined && a.length > s.maxItems) return `${path} must have at most ${s.maxItems} items`;
      if (s.items) {
        for (let i = 0; i < a.length; i++) {
          const e = check(s.items, a[i], `${path}[${i}]`);
          if (e) return e;
        }
      }
      return null;
    }
    case 'object': {
      const o = v as Record<string, unknown>;
      for (const r of s.required ?? []) if (!Object.prototype.hasOwnProperty.call(o, r)) return `${path}.${r} is required`;
      const props = s.properties ?? {};
      for (const k of Object.keys(o)) {
        const ps = Object.prototype.hasOwnProperty.call(props, k) ? props[k] : undefined;
        if (ps) {
          const e = check(ps, o[k], `${path}.${k}`);
          if (e) return e;
        } else if (s.additionalProperties === false) {
          return `${path}.${k.length > 40 ? k.slice(0, 40) + '…' : k} is not an allowed field`;
        }
      }
      return null;
    }
    default:
      return null;
  }
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
