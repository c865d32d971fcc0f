// The one schema of a cached tuning, as stored (IndexedDB in a browser, a JSON file in Node):
// workgroup sizes within WebGPU's 1024 invocations, grid sizes within one dispatch dimension
// (65535). Node checks each cache entry with it and names the field a bad one gets wrong
// (autotune-node.ts). The training worker runs tuning-check.ts instead: TypeBox's own compiled
// code for this schema (scripts/compile-checks.ts), so the worker's bundle carries none of
// TypeBox (bench/results/bundle-size.json).
import Type from 'typebox';
import { schemaProblem } from '../protocol/check.ts';

const Side = Type.Integer({ minimum: 1, maximum: 1024 });
const MatmulShapeSchema = Type.Object({ wgX: Side, wgY: Side, tm: Type.Union([Type.Literal(4), Type.Literal(8), Type.Literal(16)]), vec4: Type.Boolean(), cols: Type.Optional(Type.Union([Type.Literal(4), Type.Literal(8)])), tile: Type.Optional(Type.Boolean()), splitK: Type.Optional(Type.Integer({ minimum: 1, maximum: 16 })), quad: Type.Optional(Type.Boolean()), prefetch: Type.Optional(Type.Boolean()), tk: Type.Optional(Type.Union([Type.Literal(8), Type.Literal(16)])), swizzle: Type.Optional(Type.Union([Type.Literal(2), Type.Literal(4), Type.Literal(8), Type.Literal(16)])) }, { additionalProperties: false });
const ModesSchema = Type.Object({ nn: MatmulShapeSchema, nt: MatmulShapeSchema, tn: MatmulShapeSchema }, { additionalProperties: false });
export const TuningSchema = Type.Object({
  matmul: ModesSchema,
  matmulLarge: Type.Optional(ModesSchema),
  stride: Type.Object({ wg: Side, groups: Type.Integer({ minimum: 1, maximum: 65535 }) }, { additionalProperties: false }),
  attention: Type.Optional(Type.Union([Type.Literal('rows'), Type.Literal('tiled'), Type.Literal('blocked')])),
  layernorm: Type.Optional(Type.Union([Type.Literal('rows'), Type.Literal('wide')])),
  quads: Type.Optional(Type.Boolean()),
  // Per product (productKey, e.g. "nn+bias+residual:4096x768x3072"); at most MAX_TUNED_PRODUCTS
  // (kernels.ts: this file stays free of the kernels' imports; engine.autotune checks the two agree).
  rates: Type.Optional(Type.Object(Object.fromEntries(['nn', 'nt', 'tn', 'nn.large', 'nt.large', 'tn.large'].map((k) => [k, Type.Optional(Type.Number({ minimum: 0, maximum: 1e7 }))])), { additionalProperties: false })),
  products: Type.Optional(Type.Record(Type.String({ pattern: '^[a-zA-Z+]{2,40}:[0-9]{1,9}x[0-9]{1,9}x[0-9]{1,9}$' }), MatmulShapeSchema, { additionalProperties: false, maxProperties: 128 })),
}, { additionalProperties: false });

/** Null when `t` is a tuning these kernels can run; otherwise the first problem, naming the field. */
export function tuningProblem(t: unknown, key: string): string | null {
  return schemaProblem(TuningSchema, t, `autotune[${JSON.stringify(key)}]`);
}
