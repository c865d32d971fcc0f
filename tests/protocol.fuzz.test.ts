// Seeded fuzz of every decoder that reads bytes or JSON from a party we do not trust: the binary
// frames peers exchange (decodeFrame, the Assembler that joins chunks, the tensor decodings), the
// control messages inside them (parseControl), the state frame a peer serves or uploads, the
// coordinator's WebSocket frames both ways (parseClientMessage, parseServerMessage, the relayed
// mesh signal) and the embed bridge's messages from a host page (parseConnect, parseCommand).
// Each starts from valid messages built with the project's own encoders and mutates them (bit
// flips, truncation, extension, huge length fields, NaN, ±Infinity and -0, wrong types, deep
// nesting, long strings, duplicate and __proto__ keys). A decoder must answer with a value or its
// own named error, never another exception; what it accepts must round-trip; what it returns is
// bounded by its input. The PRNG is seeded, so every run feeds the same inputs; a failure names
// the target, seed and iteration, and a case worth keeping moves to the regressions at the end.
import { describe, expect, it } from 'vitest';
import Value from 'typebox/value';
import { crc32 } from '../src/protocol/crc32.ts';
import { FieldError, FrameError, MessageError } from '../src/protocol/errors.ts';
import {
  DTYPES, MAX_CONTROL_BYTES, MAX_FRAME_BYTES, decodeFrame, encodeChunk, encodeControl, payloadBytes,
  type Dtype,
} from '../src/protocol/frame.ts';
import { DEFAULT_LIMITS, parseClientMessage, parseMeshSignal, parseServerMessage } from '../src/protocol/messages.ts';
import { parseControl } from '../src/protocol/peer-messages.ts';
import { StateFrameError, decodeStateFrame, decodeStateMeta, encodeStateFrame } from '../src/protocol/state-frame.ts';
import { decodeTensor, encodeTensor } from '../src/sync/compress.ts';
import { CompressionError } from '../src/sync/errors.ts';
import { Assembler } from '../src/sync/transfer.ts';
import { ConnectMsg, HOST_COMMANDS } from '../src/ui/embed/bridge-schemas.ts';
import { parseCommand, parseConnect } from '../src/ui/embed/frame-bridge.ts';
import {
  CLIENT_SAMPLES, CONTROL_SAMPLES, P1, Rand, SERVER_SAMPLES, expectOwnError, fuzz, mutateBytes, mutatedJson, reseal, sameBytes, thrown, value,
} from './support/fuzz.ts';

const DTYPE_NAMES = Object.keys(DTYPES) as Dtype[];
const ERROR_CODES = new Set(['bad-json', 'bad-message', 'too-large']);

/** A tensor of `elements` random values in `dtype`, as compress.ts encodes it. */
function tensorBytes(r: Rand, dtype: Dtype, elements: number): Uint8Array {
  const x = new Float32Array(elements);
  for (let i = 0; i < elements; i++) x[i] = (r.next() - 0.5) * 2 ** (r.int(20) - 10);
  return encodeTensor(dtype, x);
}

/** Every chunk frame of one tensor, cut as sendTensor cuts it. */
function chunkFrames(r: Rand, dtype: Dtype, elements: number, chunkSize: number, kind: 'phi' | 'delta' | 'state' = 'delta') {
  const bytes = tensorBytes(r, dtype, elements);
  const chunkCount = Math.max(1, Math.ceil(bytes.length / chunkSize));
  const base = {
    kind, dtype, transferId: 7, round: 3, elements, totalBytes: bytes.length, chunkSize, chunkCount,
    tensorCrc: crc32(bytes), configHash: '0123456789abcdef', runId: 'default', sender: P1,
  };
  const frames = Array.from({ length: chunkCount }, (_, i) =>
    encodeChunk({ ...base, chunkIndex: i }, bytes.subarray(i * chunkSize, Math.min(bytes.length, (i + 1) * chunkSize))));
  return { bytes, frames, header: base };
}

/** A control frame carrying `json` as it is (encodeControl's layout, any text). */
function controlFrameOf(json: string): Uint8Array {
  const body = new TextEncoder().encode(json);
  const head = encodeControl({}).subarray(0, 16);
  return reseal(new Uint8Array([...head, ...body]));
}

// ---------- the fuzz ----------

describe('fuzz: binary frames between peers', () => {
  it('decodeFrame returns a frame or throws a FrameError; what it accepts re-encodes to the same bytes', () => {
    const valid: Uint8Array[] = [];
    const r0 = new Rand(1);
    for (const dtype of DTYPE_NAMES) {
      for (const elements of [0, 1, 127, 129, 1000]) valid.push(...chunkFrames(r0, dtype, elements, r0.pick([1, 7, 64, 1000, 4096])).frames.slice(0, 3));
    }
    valid.push(...chunkFrames(r0, 'f32', 20_000, MAX_FRAME_BYTES - 200).frames);
    for (const m of CONTROL_SAMPLES) valid.push(encodeControl(m));
    fuzz('decodeFrame', 0xf00d, 5000, (r) => {
      let b = r.pick(valid);
      for (let m = 1 + r.int(3); m > 0; m--) b = mutateBytes(r, b);
      if (r.chance(0.6)) b = reseal(b);
      // A data channel may hand us a view at any offset.
      if (r.chance(0.2)) { const wide = new Uint8Array(b.length + 3); wide.set(b, 3); b = wide.subarray(3); }
      let frame: ReturnType<typeof decodeFrame>;
      try {
        frame = decodeFrame(b);
      } catch (err) {
        expectOwnError(err, FrameError);
        return;
      }
      if (frame.type === 'chunk') {
        // The payload is a view of the input: decoding allocates nothing a sender sized.
        expect(frame.payload.buffer).toBe(b.buffer);
        const again = encodeChunk(frame.header, frame.payload);
        expect(sameBytes(again, b)).toBe(true);
      } else {
        expect(b.length).toBeLessThanOrEqual(16 + MAX_CONTROL_BYTES);
        const again = thrown(() => decodeFrame(encodeControl(frame.message)));
        if (again !== null) expectOwnError(again, FrameError); // re-encoded larger than 4 KiB (1e2 → 100)
      }
    });
  });

  it('parseControl returns a message its schema accepts or throws a MessageError naming the field', () => {
    fuzz('parseControl', 0xc0de, 3000, (r) => {
      const { json } = mutatedJson(r, r.pick(CONTROL_SAMPLES));
      let frame;
      try {
        frame = decodeFrame(controlFrameOf(json));
      } catch (err) {
        expectOwnError(err, FrameError);
        return;
      }
      if (frame.type !== 'control') throw new Error('a control frame decoded as a chunk');
      let msg;
      try {
        msg = parseControl(frame.message);
      } catch (err) {
        expectOwnError(err, MessageError);
        return;
      }
      // Accepted: it survives the way back through encodeControl unchanged.
      const back = decodeFrame(encodeControl(msg));
      expect(back.type === 'control' && JSON.stringify(parseControl(back.message))).toBe(JSON.stringify(msg));
    });
  });

  it('the Assembler never throws, allocates only what the announcement said, and yields only the sent bytes', async () => {
    const outcomes: Promise<void>[] = [];
    fuzz('Assembler', 0xa55e, 1000, (r) => {
      const dtype = r.pick(DTYPE_NAMES);
      const elements = r.pick([0, 1, 128, 129, 500 + r.int(3000)]);
      const { bytes, frames } = chunkFrames(r, dtype, elements, r.pick([1, 50, 256, 1000, 4000]));
      const expected = payloadBytes(dtype, elements);
      const a = new Assembler({ runId: 'default', configHash: '0123456789abcdef', sender: P1, kind: 'delta', transferId: 7, dtype, elements });
      let seq = frames.slice(0, 200);
      const clean = seq.length === frames.length && r.chance(0.3);
      if (!clean) {
        for (let m = 1 + r.int(3); m > 0 && seq.length > 0; m--) {
          const i = r.int(seq.length);
          switch (r.int(5)) {
            case 0: seq.splice(i, 1); break;
            case 1: seq.splice(i, 0, seq[r.int(seq.length)]!); break;
            case 2: seq = seq.reverse(); break;
            case 3: seq[i] = reseal(mutateBytes(r, seq[i]!)); break;
            default: seq[i] = mutateBytes(r, seq[i]!);
          }
        }
      }
      for (const f of seq) {
        let frame;
        try {
          frame = decodeFrame(f);
        } catch (err) {
          a.fail(err); // what the mesh does with a bad frame on the link
          continue;
        }
        if (frame.type === 'chunk') a.add(frame.header, frame.payload);
      }
      expect(a.receivedBytes).toBeLessThanOrEqual(expected);
      if (clean) expect(a.finished).toBe(true);
      if (!a.finished) return;
      outcomes.push(a.done.then(
        (got) => { expect(sameBytes(got, bytes)).toBe(true); },
        (err) => {
          if (clean) throw err;
          expectOwnError(err, FrameError);
        },
      ));
    });
    await Promise.all(outcomes);
  });

  it('decodeTensor returns exactly `elements` floats or throws a CompressionError', () => {
    fuzz('decodeTensor', 0x7e45, 3000, (r) => {
      const dtype = r.pick(DTYPE_NAMES);
      const elements = r.pick([0, 1, 127, 128, 129, r.int(3000)]);
      let b = tensorBytes(r, dtype, elements);
      const honest = r.chance(0.3);
      if (!honest) b = mutateBytes(r, b);
      const claimed = honest || r.chance(0.5) ? elements : r.pick([elements + 1, elements - 1, 2 ** 31, 2 ** 32 - 1, r.int(5000)]);
      if (r.chance(0.3)) { const wide = new Uint8Array(b.length + 1); wide.set(b, 1); b = wide.subarray(1); }
      let out: Float32Array;
      try {
        out = decodeTensor(dtype, b, claimed);
      } catch (err) {
        if (honest) throw err;
        expectOwnError(err, CompressionError);
        return;
      }
      expect(out.length).toBe(claimed);
      // Every encoding takes at least one byte an element: nothing beyond the input is allocated.
      expect(out.length).toBeLessThanOrEqual(b.length);
      if (dtype !== 'q8') {
        const again = decodeTensor(dtype, encodeTensor(dtype, out), claimed);
        for (let i = 0; i < out.length; i++) if (!Object.is(again[i], out[i]) && !(Number.isNaN(again[i]) && Number.isNaN(out[i]))) throw new Error(`element ${i} did not round-trip`);
      }
    });
  });

  it('decodeStateFrame returns a state sized by its input or throws a StateFrameError', () => {
    const r0 = new Rand(2);
    const states = [1, 3, 64, 300].map((floats) => {
      const phi = new Float32Array(floats).map(() => r0.next() - 0.5);
      const momentum = new Float32Array(floats).map(() => (r0.next() - 0.5) / 10);
      return encodeStateFrame({ meta: { runId: 'default', step: 500, round: 10, floats, valLoss: r0.chance(0.5) ? 3.2 : null, tokens: 1e6 }, phi, momentum });
    });
    fuzz('decodeStateFrame', 0x57a7e, 4000, (r) => {
      const base = r.pick(states);
      let b: Uint8Array;
      if (r.chance(0.5)) {
        b = base;
        for (let m = 1 + r.int(3); m > 0; m--) b = mutateBytes(r, b);
      } else {
        // Mutate the JSON header and rewrite its length, keeping the floats after it.
        const n = new DataView(base.buffer).getUint32(8, true);
        const meta = JSON.parse(new TextDecoder().decode(base.subarray(12, 12 + n)));
        const json = new TextEncoder().encode(mutatedJson(r, meta).json);
        const head = (12 + json.length + 3) & ~3;
        const floats = base.subarray((12 + n + 3) & ~3);
        b = new Uint8Array(head + floats.length);
        b.set(base.subarray(0, 8));
        new DataView(b.buffer).setUint32(8, json.length, true);
        b.set(json, 12);
        b.set(floats, head);
      }
      const head = thrown(() => decodeStateMeta(b.subarray(0, Math.min(b.length, 4096 + 16))));
      if (head !== null) expectOwnError(head, StateFrameError);
      let s: ReturnType<typeof decodeStateFrame>;
      try {
        s = decodeStateFrame(b);
      } catch (err) {
        expectOwnError(err, StateFrameError);
        return;
      }
      expect(s.phi.length).toBe(s.meta.floats);
      expect(s.momentum.length).toBe(s.meta.floats);
      expect(8 * s.meta.floats).toBeLessThanOrEqual(b.length);
      const again = decodeStateFrame(encodeStateFrame(s));
      expect(JSON.stringify(again.meta)).toBe(JSON.stringify(s.meta));
      expect(sameBytes(new Uint8Array(again.phi.buffer), new Uint8Array(s.phi.buffer))).toBe(true);
    });
  });
});

describe('fuzz: the coordinator WebSocket, both ways', () => {
  const samples = [...Object.values(CLIENT_SAMPLES), ...Object.values(SERVER_SAMPLES)];

  it('parseClientMessage never throws: a message its schema accepts, or a code and a sentence', () => {
    fuzz('parseClientMessage', 0xc1e7, 5000, (r) => {
      const { json } = mutatedJson(r, r.pick(samples));
      const res = parseClientMessage(json);
      if (!res.ok) {
        expect(ERROR_CODES.has(res.code), res.code).toBe(true);
        expect(res.error.length).toBeGreaterThan(0);
        expect(res.error.length).toBeLessThan(2000);
        return;
      }
      const again = parseClientMessage(JSON.stringify(res.msg));
      expect(again.ok && JSON.stringify(again.msg)).toBe(JSON.stringify(res.msg));
    });
  });

  it('parseServerMessage never throws: a message its schema accepts, or a sentence', () => {
    fuzz('parseServerMessage', 0x5e7e, 3000, (r) => {
      const { json } = mutatedJson(r, r.pick(samples));
      const res = parseServerMessage(json);
      if (!res.ok) {
        expect(res.error.length).toBeGreaterThan(0);
        expect(res.error.length).toBeLessThan(2000);
        return;
      }
      const again = parseServerMessage(JSON.stringify(res.msg));
      expect(again.ok && JSON.stringify(again.msg)).toBe(JSON.stringify(res.msg));
    });
  });

  it('parseMeshSignal never throws on what another peer put in a relayed signal', () => {
    fuzz('parseMeshSignal', 0x516, 2000, (r) => {
      const { j } = mutatedJson(r, { mesh: 1, cid: 'c1', sig: { type: 'offer', sdp: 'v=0' } });
      const res = parseMeshSignal(value(j));
      if (!res.ok) expect(res.error.length).toBeGreaterThan(0);
    });
  });
});

describe('fuzz: the embed bridge, from a host page of any origin', () => {
  it('parseConnect and parseCommand never throw; what they return is within the schema', () => {
    const connects = [
      { type: 'murmur:connect', run: '' },
      { type: 'murmur:connect', run: 'default', maxIntensity: 0.5, intensity: 0.3 },
    ];
    const commands = [{ cmd: 'pause' }, { cmd: 'resume' }, { cmd: 'stop' }, { cmd: 'intensity', value: 0.7 }];
    fuzz('parseConnect', 0xe4bed, 3000, (r) => {
      const { j } = mutatedJson(r, r.pick(connects));
      const c = parseConnect(value(j));
      if (c !== null) {
        expect(Value.Check(ConnectMsg, c)).toBe(true);
        for (const x of [c.maxIntensity, c.intensity]) expect(x >= 0.1 && x <= 1).toBe(true);
      }
      const { j: jc } = mutatedJson(r, r.pick(commands));
      const cmd = parseCommand(value(jc));
      if (cmd !== null) expect(Value.Check(HOST_COMMANDS[cmd.cmd], cmd)).toBe(true);
    });
  });
});

// ---------- what the fuzz found, kept as named cases ----------

describe('fuzz: the cases it found', () => {
  it('a type tag nested 32,000 arrays deep is refused by its kind, not with a RangeError', () => {
    // parseClientMessage, seed 0xc1e7: JSON.stringify of the tag, for the error, recursed through it.
    const deep = '['.repeat(32_000) + ']'.repeat(32_000);
    const raw = `{"t":${deep}}`;
    expect(raw.length).toBeLessThanOrEqual(DEFAULT_LIMITS.maxMessageBytes);
    expect(parseClientMessage(raw)).toMatchObject({ ok: false, code: 'bad-message', error: expect.stringMatching(/^unknown message type an array; expected one of hello,/) });
    expect(parseServerMessage(raw)).toMatchObject({ ok: false, error: expect.stringMatching(/^unknown message type an array; expected one of welcome,/) });
    expect(() => parseControl(JSON.parse(raw))).toThrow(/^unknown control message type an array$/);
    expect(parseClientMessage(`{"t":${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}}`)).toMatchObject({ ok: false, error: expect.stringMatching(/^unknown message type an object;/) });
  });

  it('a relayed signal nested deeper than the coordinator relays is refused by the client too', () => {
    // parseServerMessage, seed 0x5e7e: it took a signal 30,000 arrays deep, which no JSON.stringify could write again.
    const signal = (data: string) => `{"t":"signal","from":"p-fedcba9876543210","data":{"sig":${data}}}`;
    for (const depth of [DEFAULT_LIMITS.maxSignalDepth + 1, 30_000]) {
      expect(parseServerMessage(signal('['.repeat(depth) + ']'.repeat(depth)))).toEqual({ ok: false, error: `signal.data nests deeper than ${DEFAULT_LIMITS.maxSignalDepth}` });
    }
    const ok = signal('['.repeat(DEFAULT_LIMITS.maxSignalDepth) + ']'.repeat(DEFAULT_LIMITS.maxSignalDepth));
    expect(parseServerMessage(ok).ok).toBe(true);
    expect(parseClientMessage(ok.replace('"from"', '"to"')).ok).toBe(true);
  });

  it('a frame whose reserved bytes are not zero is refused: what decodes re-encodes to the same bytes', () => {
    // decodeFrame, seed 0xf00d: a chunk with byte 50 set to 32 and its header CRC made again was
    // accepted, and encodeChunk of what it decoded to gave other bytes.
    const payload = new Uint8Array([1, 2, 3, 4]);
    const chunk = encodeChunk({
      kind: 'delta', dtype: 'f32', transferId: 7, round: 3, elements: 1, totalBytes: 4, chunkSize: 1, chunkIndex: 1, chunkCount: 4,
      tensorCrc: 0x89d2984c, configHash: '0123456789abcdef', runId: 'default', sender: 'p-0123456789abcdef',
    }, payload.subarray(1, 2));
    expect(decodeFrame(chunk).type).toBe('chunk');
    const crcAt = chunk.length - 1 - 4;
    for (const at of [50, 51]) {
      const bad = chunk.slice();
      bad[at] = 32;
      new DataView(bad.buffer).setUint32(crcAt, crc32(bad.subarray(0, crcAt)), true);
      expect(() => decodeFrame(bad)).toThrow(FieldError);
      expect(() => decodeFrame(bad)).toThrow(/bytes 50\.\.51 are reserved and must be zero/);
    }
    for (const at of [6, 7]) {
      const bad = encodeControl({ t: 'bye' });
      bad[at] = 1;
      expect(() => decodeFrame(bad)).toThrow(/control frame bytes 6\.\.7 are reserved and must be zero/);
    }
  });
});
