// Spoils a valid sample one field at a time, guided by its JSON schema, and says which field
// the refusal must name: the fuzz of every message kind (tests/protocol.messages.test.ts) and
// of the coordinator's HTTP bodies (tests/server.api.test.ts).
/** The parts of a JSON schema the mutations below read. */
export interface Shape {
  type?: string; const?: unknown; enum?: unknown[]; anyOf?: Shape[];
  properties?: Record<string, Shape>; required?: string[]; items?: Shape;
  maxLength?: number; maxItems?: number;
}

/** A number JSON cannot carry; its text is swapped for 1e999, which JSON.parse reads as Infinity. */
export const INF_MARK = 987654321.125;

/** The branch of a union the sample's value belongs to (nullable fields, state-offer's two forms). */
function branchFor(s: Shape, v: unknown): Shape {
  if (!s.anyOf) return s;
  const fits = (b: Shape) => (b.type === 'null' ? v === null : b.const !== undefined ? b.const === v
    : b.properties ? v !== null && typeof v === 'object' && Object.entries(b.properties).every(([k, p]) => p.const === undefined || (v as Record<string, unknown>)[k] === p.const)
      : v !== null);
  return s.anyOf.find(fits) ?? s.anyOf[0]!;
}

export type Mutant = { what: string; value: unknown; names: string };

/**
 * Every way to spoil `sample` one field at a time: a required field missing, an extra field, a
 * wrong type, a non-finite number, a string over its limit, an array over its limit. `names` is
 * the field the refusal must name.
 */
export function mutants(schema: Shape, sample: unknown, path: string, set: (v: unknown) => unknown, nested = false): Mutant[] {
  const s = branchFor(schema, sample);
  const out: Mutant[] = [];
  if (s.properties && sample !== null && typeof sample === 'object' && !Array.isArray(sample)) {
    const o = sample as Record<string, unknown>;
    for (const k of s.required ?? []) {
      if (k === 't') continue;
      const { [k]: _gone, ...rest } = o;
      out.push({ what: `${path}.${k} missing`, value: set(rest), names: `${path}.${k}` });
    }
    out.push({ what: `${path} with an extra field`, value: set({ ...o, sneaky: 1 }), names: `${path}.sneaky` });
    for (const [k, p] of Object.entries(s.properties)) {
      if (k === 't' || !(k in o)) continue;
      out.push(...mutants(p, o[k], `${path}.${k}`, (v) => set({ ...o, [k]: v }), true));
    }
    if (nested) out.push({ what: `${path} as a number`, value: set(7), names: path });
    return out;
  }
  if (s.type === 'object') out.push({ what: `${path} not an object`, value: set('x'), names: path });
  if (s.type === 'number' || s.type === 'integer') {
    out.push({ what: `${path} = Infinity`, value: set(INF_MARK), names: path });
    out.push({ what: `${path} as text`, value: set('12'), names: path });
  } else if (s.type === 'string' || s.type === 'boolean' || s.enum) {
    out.push({ what: `${path} of the wrong type`, value: set(s.type === 'string' ? 12 : s.type === 'boolean' ? 'true' : true), names: path });
  }
  if (s.maxLength !== undefined) out.push({ what: `${path} overlong`, value: set('x'.repeat(s.maxLength + 1)), names: path });
  if (s.type === 'array') {
    out.push({ what: `${path} not an array`, value: set({}), names: path });
    if (s.maxItems !== undefined && Array.isArray(sample) && sample.length > 0) {
      out.push({ what: `${path} huge`, value: set(new Array(s.maxItems + 1).fill(sample[0])), names: path });
    }
    if (s.items && Array.isArray(sample) && sample.length > 0) {
      out.push(...mutants(s.items, sample[0], `${path}[0]`, (v) => set([v, ...sample.slice(1)]), true));
    }
  }
  return out;
}

export const asJson = (v: unknown) => JSON.stringify(v).replaceAll(String(INF_MARK), '1e999');
/** The error must name the field: its path, followed by a word, a bracket or the end. */
export const naming = (path: string) => new RegExp(`(^|\\W)${path.replace(/[.[\]]/g, (c) => '\\' + c)}(?![\\w-])`);

