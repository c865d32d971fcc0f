// Fastify validator compiler backed by src/protocol/schema.ts, so HTTP bodies are checked by the
// same strict rules as WebSocket frames (no silently removed fields, no "5" read as 5 in a JSON
// body). Query strings and path parameters arrive as text: numbers and booleans are converted
// first where the schema asks for them.
import type { FastifySchemaCompiler } from 'fastify';
import { validateSchema, type Schema } from '../src/protocol/schema.ts';

const NUMBER = /^-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

function coerce(schema: Schema, data: unknown): unknown {
  if (data === null || typeof data !== 'object' || Array.isArray(data) || !schema.properties) return data;
  const out: Record<string, unknown> = { ...(data as Record<string, unknown>) };
  for (const [k, s] of Object.entries(schema.properties)) {
    const v = out[k];
    if (typeof v !== 'string') continue;
    const types = Array.isArray(s.type) ? s.type : s.type ? [s.type] : [];
    if ((types.includes('integer') || types.includes('number')) && NUMBER.test(v)) out[k] = Number(v);
    else if (types.includes('boolean') && (v === 'true' || v === 'false')) out[k] = v === 'true';
  }
  return out;
}

export const validatorCompiler: FastifySchemaCompiler<Schema> = ({ schema, httpPart }) => {
  const textual = httpPart === 'querystring' || httpPart === 'params';
  return (data: unknown) => {
    const value = textual ? coerce(schema, data ?? {}) : data;
    const r = validateSchema(schema, value, httpPart === 'body' ? 'body' : httpPart ?? '$');
    return r.ok ? { value } : { error: new Error(r.error) };
  };
};
