// The wire format between peers: binary frames on a WebRTC data channel, each at most 64 KiB
// (the largest message every browser's SCTP stack delivers whole).
//
// Two frame types share a 6-byte prefix (magic, version, type):
//
//   tensor chunk (type 1), little-endian:
//     0  u32 magic 'MRMR'        4  u8 version        5  u8 type = 1
//     6  u8  kind (phi|delta|state)                    7  u8 dtype (f32|f16|q8|bf16)
//     8  u32 transfer id         12 u32 outer round of the sender
//     16 u32 elements            20 u32 total payload bytes of the whole tensor
//     24 u32 chunk size          28 u32 chunk index   32 u32 chunk count
//     36 u32 CRC-32 of the whole tensor payload
//     40 8B  config hash         48 u8 run id bytes   49 u8 sender bytes   50 u16 zero
//     52 run id (UTF-8), sender (UTF-8), then u32 CRC-32 of every header byte before it
//     then this chunk's payload bytes: [index * chunkSize, min(total, (index+1) * chunkSize))
//
//   control message (type 2):
//     0..5 as above, 6 u16 zero, 8 u32 JSON byte length, 12 u32 CRC-32 of the JSON, 16 JSON
//
// The header carries its own CRC so a corrupt index or length is caught before it is used; the
// whole-tensor CRC is checked only once every chunk is in. The zero bytes must be zero: a frame
// decodes only if encoding what it decoded to gives back the same bytes.
import { crc32 } from './crc32.ts';
import { isConfigHash } from './hash.ts';
import {
  BadMagicError, FieldError, FrameTooLargeError, FrameTypeError, HeaderChecksumError, MessageError,
  SizeError, TruncatedFrameError, VersionError,
} from './errors.ts';

export const MAGIC = 0x524d524d; // 'MRMR' read little-endian
export const VERSION = 1;
export const MAX_FRAME_BYTES = 64 * 1024;
/** Control messages are small JSON objects; anything larger is abuse. */
export const MAX_CONTROL_BYTES = 4 * 1024;
const FRAME_CHUNK = 1;
const FRAME_CONTROL = 2;
const FIXED_HEADER = 52;
const MAX_ID_BYTES = 255;

export const KINDS = { phi: 1, delta: 2, state: 3 } as const;
export type TensorKind = keyof typeof KINDS;
export const DTYPES = { f32: 1, f16: 2, q8: 3, bf16: 4 } as const;
export type Dtype = keyof typeof DTYPES;
const KIND_NAMES = invert(KINDS);
const DTYPE_NAMES = invert(DTYPES);

/** Elements per int8 block sharing one f32 scale: 3% overhead, and one outlier spoils only 128 values. */
export const Q8_BLOCK = 128;

/** Payload bytes of `elements` values in `dtype`: the only definition of every encoding's size. */
export function payloadBytes(dtype: Dtype, elements: number): number {
  switch (dtype) {
    case 'f32': return 4 * elements;
    case 'f16':
    case 'bf16': return 2 * elements;
    // q8: f32 scale per block, then one int8 per element (scales first keeps them 4-aligned).
    case 'q8': return 4 * Math.ceil(elements / Q8_BLOCK) + elements;
  }
}

export interface ChunkHeader {
  kind: TensorKind;
  dtype: Dtype;
  transferId: number;
  round: number;
  elements: number;
  totalBytes: number;
  chunkSize: number;
  chunkIndex: number;
  chunkCount: number;
  tensorCrc: number;
  configHash: string;
  runId: string;
  sender: string;
}

export type Frame =
  | { type: 'chunk'; header: ChunkHeader; payload: Uint8Array }
  | { type: 'control'; message: unknown };

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder('utf-8', { fatal: true });

/** Header bytes for these run id and sender: chunk payload room is MAX_FRAME_BYTES minus this. */
export function chunkHeaderBytes(runId: string, sender: string): number {
  return FIXED_HEADER + utf8.encode(runId).length + utf8.encode(sender).length + 4;
}

/** Largest chunk payload that keeps a frame within MAX_FRAME_BYTES. */
export function maxChunkSize(runId: string, sender: string): number {
  return MAX_FRAME_BYTES - chunkHeaderBytes(runId, sender);
}

export function encodeChunk(h: ChunkHeader, payload: Uint8Array): Uint8Array {
  const runId = utf8.encode(h.runId);
  const sender = utf8.encode(h.sender);
  if (runId.length > MAX_ID_BYTES || sender.length > MAX_ID_BYTES) {
    throw new FieldError(`run id and sender must be at most ${MAX_ID_BYTES} UTF-8 bytes`);
  }
  checkChunkFields(h);
  const expect = chunkPayloadLength(h);
  if (payload.length !== expect) {
    throw new SizeError(`chunk ${h.chunkIndex} of ${h.chunkCount} needs ${expect} payload bytes, got ${payload.length}`);
  }
  const headerLen = FIXED_HEADER + runId.length + sender.length + 4;
  const total = headerLen + payload.length;
  if (total > MAX_FRAME_BYTES) throw new FrameTooLargeError(total, MAX_FRAME_BYTES);
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, MAGIC, true);
  out[4] = VERSION;
  out[5] = FRAME_CHUNK;
  out[6] = KINDS[h.kind];
  out[7] = DTYPES[h.dtype];
  dv.setUint32(8, h.transferId, true);
  dv.setUint32(12, h.round, true);
  dv.setUint32(16, h.elements, true);
  dv.setUint32(20, h.totalBytes, true);
  dv.setUint32(24, h.chunkSize, true);
  dv.setUint32(28, h.chunkIndex, true);
  dv.setUint32(32, h.chunkCount, true);
  dv.setUint32(36, h.tensorCrc, true);
  dv.setUint32(40, parseInt(h.configHash.slice(0, 8), 16), true);
  dv.setUint32(44, parseInt(h.configHash.slice(8, 16), 16), true);
  out[48] = runId.length;
  out[49] = sender.length;
  out.set(runId, FIXED_HEADER);
  out.set(sender, FIXED_HEADER + runId.length);
  const crcAt = headerLen - 4;
  dv.setUint32(crcAt, crc32(out.subarray(0, crcAt)), true);
  out.set(payload, headerLen);
  return out;
}

export function encodeControl(message: unknown): Uint8Array {
  const json = utf8.encode(JSON.stringify(message));
  if (json.length > MAX_CONTROL_BYTES) throw new FrameTooLargeError(json.length, MAX_CONTROL_BYTES);
  const out = new Uint8Array(16 + json.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, MAGIC, true);
  out[4] = VERSION;
  out[5] = FRAME_CONTROL;
  dv.setUint32(8, json.length, true);
  dv.setUint32(12, crc32(json), true);
  out.set(json, 16);
  return out;
}

/** Parse one frame. Throws a FrameError subclass naming the first thing wrong; never returns junk. */
export function decodeFrame(bytes: Uint8Array): Frame {
  if (bytes.length > MAX_FRAME_BYTES) throw new FrameTooLargeError(bytes.length, MAX_FRAME_BYTES);
  if (bytes.length < 16) throw new TruncatedFrameError(`frame of ${bytes.length} bytes is shorter than any header`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = dv.getUint32(0, true);
  if (magic !== MAGIC) throw new BadMagicError(magic);
  if (bytes[4] !== VERSION) throw new VersionError(bytes[4], VERSION);
  if (bytes[5] === FRAME_CONTROL) return decodeControl(bytes, dv);
  if (bytes[5] !== FRAME_CHUNK) throw new FrameTypeError(bytes[5]);
  return decodeChunk(bytes, dv);
}

function decodeControl(bytes: Uint8Array, dv: DataView): Frame {
  if (bytes[6] !== 0 || bytes[7] !== 0) throw new FieldError(`control frame bytes 6..7 are reserved and must be zero, got ${bytes[6]}, ${bytes[7]}`);
  const len = dv.getUint32(8, true);
  if (len > MAX_CONTROL_BYTES) throw new FrameTooLargeError(len, MAX_CONTROL_BYTES);
  if (bytes.length !== 16 + len) throw new TruncatedFrameError(`control frame declares ${len} JSON bytes, carries ${bytes.length - 16}`);
  const json = bytes.subarray(16);
  const want = crc32(json);
  const got = dv.getUint32(12, true);
  if (got !== want) throw new HeaderChecksumError(got, want);
  return { type: 'control', message: controlJson(json) };
}

/** A control frame's JSON, as yet unchecked: the receiver checks it by its schema (parseControl). */
function controlJson(json: Uint8Array): unknown {
  try {
    return JSON.parse(fromUtf8.decode(json));
  } catch (err) {
    throw new MessageError('control frame is not valid UTF-8 JSON', { cause: err });
  }
}

function decodeChunk(bytes: Uint8Array, dv: DataView): Frame {
  if (bytes.length < FIXED_HEADER + 4) throw new TruncatedFrameError(`chunk frame of ${bytes.length} bytes is shorter than its header`);
  const headerLen = FIXED_HEADER + bytes[48] + bytes[49] + 4;
  if (bytes.length < headerLen) throw new TruncatedFrameError(`chunk frame of ${bytes.length} bytes is shorter than its ${headerLen}-byte header`);
  const crcAt = headerLen - 4;
  const want = crc32(bytes.subarray(0, crcAt));
  const got = dv.getUint32(crcAt, true);
  if (got !== want) throw new HeaderChecksumError(got, want);
  // Reserved bytes are zero, as every encoder writes them: a frame is accepted only in the one
  // form encodeChunk gives it, so a later version may give these bytes a meaning.
  if (bytes[50] !== 0 || bytes[51] !== 0) throw new FieldError(`chunk header bytes 50..51 are reserved and must be zero, got ${bytes[50]}, ${bytes[51]}`);
  const kind = KIND_NAMES[bytes[6]];
  if (!kind) throw new FieldError(`unknown tensor kind ${bytes[6]}`);
  const dtype = DTYPE_NAMES[bytes[7]];
  if (!dtype) throw new FieldError(`unknown dtype ${bytes[7]}`);
  let runId: string, sender: string;
  try {
    runId = fromUtf8.decode(bytes.subarray(FIXED_HEADER, FIXED_HEADER + bytes[48]));
    sender = fromUtf8.decode(bytes.subarray(FIXED_HEADER + bytes[48], crcAt));
  } catch {
    throw new FieldError('run id or sender is not valid UTF-8');
  }
  const header: ChunkHeader = {
    kind, dtype,
    transferId: dv.getUint32(8, true),
    round: dv.getUint32(12, true),
    elements: dv.getUint32(16, true),
    totalBytes: dv.getUint32(20, true),
    chunkSize: dv.getUint32(24, true),
    chunkIndex: dv.getUint32(28, true),
    chunkCount: dv.getUint32(32, true),
    tensorCrc: dv.getUint32(36, true),
    configHash: hex8(dv.getUint32(40, true)) + hex8(dv.getUint32(44, true)),
    runId, sender,
  };
  checkChunkFields(header);
  const payload = bytes.subarray(headerLen);
  const expect = chunkPayloadLength(header);
  if (payload.length !== expect) {
    throw new SizeError(`chunk ${header.chunkIndex} of ${header.chunkCount} carries ${payload.length} payload bytes, expected ${expect}`);
  }
  return { type: 'chunk', header, payload };
}

/** Ranges every honest encoder respects; a decoder that skipped these could index out of bounds. */
function checkChunkFields(h: ChunkHeader): void {
  const u32 = (x: number) => Number.isInteger(x) && x >= 0 && x <= 0xffffffff;
  for (const k of ['transferId', 'round', 'elements', 'totalBytes', 'chunkSize', 'chunkIndex', 'chunkCount', 'tensorCrc'] as const) {
    if (!u32(h[k])) throw new FieldError(`chunk field ${k}=${h[k]} is not a uint32`);
  }
  if (!isConfigHash(h.configHash)) throw new FieldError(`config hash "${h.configHash}" is not 16 hex digits`);
  if (!(h.kind in KINDS)) throw new FieldError(`unknown tensor kind "${h.kind}"`);
  if (!(h.dtype in DTYPES)) throw new FieldError(`unknown dtype "${h.dtype}"`);
  if (h.totalBytes !== payloadBytes(h.dtype, h.elements)) {
    throw new SizeError(`${h.elements} ${h.dtype} elements take ${payloadBytes(h.dtype, h.elements)} bytes, header says ${h.totalBytes}`);
  }
  if (h.chunkSize < 1 || h.chunkSize > MAX_FRAME_BYTES) throw new FieldError(`chunk size ${h.chunkSize} outside 1..${MAX_FRAME_BYTES}`);
  const count = Math.max(1, Math.ceil(h.totalBytes / h.chunkSize));
  if (h.chunkCount !== count) throw new FieldError(`chunk count ${h.chunkCount} != ceil(${h.totalBytes} / ${h.chunkSize}) = ${count}`);
  if (h.chunkIndex >= h.chunkCount) throw new FieldError(`chunk index ${h.chunkIndex} >= chunk count ${h.chunkCount}`);
}

function chunkPayloadLength(h: ChunkHeader): number {
  const start = h.chunkIndex * h.chunkSize;
  return Math.max(0, Math.min(h.totalBytes, start + h.chunkSize) - start);
}

function hex8(x: number): string {
  return x.toString(16).padStart(8, '0');
}

function invert<T extends Record<string, number>>(o: T): Record<number, keyof T | undefined> {
  const r: Record<number, keyof T> = {};
  for (const k of Object.keys(o) as (keyof T)[]) r[o[k]] = k;
  return r;
}
