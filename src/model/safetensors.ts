// A small safetensors reader/writer (the Hugging Face tensor file format), so checkpoints and
// exports open in PyTorch, numpy or any other safetensors reader without our code.
//
// Format: u64 little-endian N, then N bytes of JSON header
//   { "<name>": { "dtype": "F32", "shape": [..], "data_offsets": [begin, end] }, ...,
//     "__metadata__": { "<key>": "<string value>" } }
// then the raw little-endian tensor bytes; offsets are relative to the end of the header.
// We only write F32 (all Murmur state is f32) but read the common dtypes so a reader can
// inspect files made elsewhere. The header is padded with spaces to 8 bytes, as the reference
// implementation does, so tensor data stays aligned for zero-copy views.

import Type, { type Static } from 'typebox';
import { schemaProblem } from '../protocol/check.ts';

const DTYPES = ['F32', 'F16', 'BF16', 'F64', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL'] as const;
export type SafeDtype = (typeof DTYPES)[number];

const DTYPE_BYTES: Record<SafeDtype, number> = {
  F32: 4, F16: 2, BF16: 2, F64: 8, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

const Size = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
/** One tensor's entry in the header. Offsets and sizes are checked against the data below. */
const HeaderEntry = Type.Object({
  dtype: Type.Enum(DTYPES),
  shape: Type.Array(Size, { maxItems: 64 }),
  data_offsets: Type.Tuple([Size, Size]),
});
/** The JSON header: tensor entries by name, plus an optional string map `__metadata__`. */
const Header = Type.Object({
  __metadata__: Type.Optional(Type.Record(Type.String(), Type.String())),
}, { additionalProperties: HeaderEntry });
type HeaderEntry = Static<typeof HeaderEntry>;

export interface SafeTensorIn {
  name: string;
  shape: number[];
  /** f32 values, shape.reduce(*) of them. */
  data: Float32Array;
}

export interface SafeTensorOut {
  name: string;
  dtype: SafeDtype;
  shape: number[];
  /** Raw little-endian bytes of this tensor (a view into the file buffer). */
  bytes: Uint8Array;
}

export interface SafeFile {
  tensors: Map<string, SafeTensorOut>;
  /** Names in file order (by data offset). */
  names: string[];
  metadata: Record<string, string>;
}

export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
}

/** Largest header we accept: the reference implementation's limit is 100 MB. */
const MAX_HEADER = 100_000_000;

/** Encodes tensors (in the given order) and string metadata into one safetensors buffer. */
export function writeSafetensors(tensors: SafeTensorIn[], metadata: Record<string, string> = {}): Uint8Array {
  return concatBytes(safetensorsParts(tensors, metadata));
}

/** The pieces (e.g. of safetensorsParts) joined into one buffer. */
export function concatBytes(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * The bytes of a safetensors file as a list of pieces, in order: the length prefix and header,
 * then each tensor's little-endian bytes as a view of its data (no copy on little-endian
 * hosts). For writing or hashing a large file piece by piece without building it in memory.
 */
export function safetensorsParts(tensors: SafeTensorIn[], metadata: Record<string, string> = {}): Uint8Array[] {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new SafetensorsError(`metadata "${k}" must be a string, got ${typeof v}`);
    }
    header.__metadata__ = metadata;
  }
  let offset = 0;
  const seen = new Set<string>();
  for (const t of tensors) {
    if (t.name === '__metadata__' || t.name.length === 0) throw new SafetensorsError(`invalid tensor name "${t.name}"`);
    if (seen.has(t.name)) throw new SafetensorsError(`duplicate tensor name "${t.name}"`);
    seen.add(t.name);
    const n = t.shape.reduce((a, x) => a * x, 1);
    if (!t.shape.every((x) => Number.isInteger(x) && x >= 0)) throw new SafetensorsError(`tensor "${t.name}": bad shape [${t.shape}]`);
    if (n !== t.data.length) {
      throw new SafetensorsError(`tensor "${t.name}": shape [${t.shape}] holds ${n} values but data has ${t.data.length}`);
    }
    header[t.name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + n * 4] };
    offset += n * 4;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  const head = new Uint8Array(8 + padded).fill(0x20, 8);
  new DataView(head.buffer).setBigUint64(0, BigInt(padded), true);
  head.set(json, 8);
  return [head, ...tensors.map((t) => f32Bytes(t.data))];
}

/** The length prefix and the JSON header at the start of `buf`, checked against its schema. */
function readHeader(buf: Uint8Array): { n: number; header: Record<string, unknown> } {
  if (buf.length < 8) throw new SafetensorsError(`file too short (${buf.length} bytes) for a safetensors header`);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const n64 = dv.getBigUint64(0, true);
  if (n64 > BigInt(MAX_HEADER) || Number(n64) > buf.length - 8) {
    throw new SafetensorsError(`header length ${n64} exceeds the file (${buf.length} bytes) or the 100 MB limit`);
  }
  const n = Number(n64);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(8, 8 + n)));
  } catch (err) {
    throw new SafetensorsError(`header is not valid UTF-8 JSON: ${(err as Error).message}`);
  }
  const problem = schemaProblem(Header, header, 'safetensors header');
  if (problem !== null) throw new SafetensorsError(problem);
  return { n, header: header as Record<string, unknown> };
}

/**
 * The length a safetensors file must have, from its first bytes (`head`: at least the length
 * prefix and the whole header): the end of its last tensor. For telling a file cut short from a
 * whole one without reading its data.
 */
export function safetensorsLength(head: Uint8Array): number {
  const { n, header } = readHeader(head);
  let end = 0;
  for (const [name, raw] of Object.entries(header)) if (name !== '__metadata__') end = Math.max(end, (raw as HeaderEntry).data_offsets[1]);
  return 8 + n + end;
}

/** Parses a safetensors buffer; checks every offset so a corrupt file fails with a reason. */
export function readSafetensors(buf: Uint8Array): SafeFile {
  const { n, header } = readHeader(buf);
  const dataStart = 8 + n;
  const dataLen = buf.length - dataStart;
  const tensors = new Map<string, SafeTensorOut>();
  let metadata: Record<string, string> = {};
  const spans: [number, number, string][] = [];
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = raw as Record<string, string>;
      continue;
    }
    const { dtype, shape, data_offsets: off } = raw as HeaderEntry;
    const [b, end] = off;
    const count = shape.reduce((a, x) => a * x, 1);
    if (end < b || end > dataLen) throw new SafetensorsError(`tensor "${name}": data_offsets [${b}, ${end}] outside the data (${dataLen} bytes)`);
    if (end - b !== count * DTYPE_BYTES[dtype]) {
      throw new SafetensorsError(`tensor "${name}": ${end - b} bytes do not match ${dtype} shape [${shape}]`);
    }
    tensors.set(name, { name, dtype, shape, bytes: buf.subarray(dataStart + b, dataStart + end) });
    spans.push([b, end, name]);
  }
  spans.sort((x, y) => x[0] - y[0]);
  for (let i = 1; i < spans.length; i++) {
    if (spans[i]![0] < spans[i - 1]![1]) throw new SafetensorsError(`tensors "${spans[i - 1]![2]}" and "${spans[i]![2]}" overlap`);
  }
  return { tensors, names: spans.map((s) => s[2]), metadata };
}

/** The f32 values of a tensor (copied, so the result is aligned and independent of the file). */
export function tensorF32(file: SafeFile, name: string): Float32Array {
  const t = file.tensors.get(name);
  if (!t) throw new SafetensorsError(`no tensor named "${name}" in this file`);
  if (t.dtype !== 'F32') throw new SafetensorsError(`tensor "${name}" is ${t.dtype}, expected F32`);
  const out = new Float32Array(t.bytes.length / 4);
  new Uint8Array(out.buffer).set(t.bytes);
  if (!LITTLE_ENDIAN) byteSwap32(new Uint8Array(out.buffer));
  return out;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

function f32Bytes(a: Float32Array): Uint8Array {
  const b = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  if (LITTLE_ENDIAN) return b;
  const c = b.slice();
  byteSwap32(c);
  return c;
}

function byteSwap32(b: Uint8Array): void {
  for (let i = 0; i < b.length; i += 4) {
    let t = b[i]!; b[i] = b[i + 3]!; b[i + 3] = t;
    t = b[i + 1]!; b[i + 1] = b[i + 2]!; b[i + 2] = t;
  }
}
