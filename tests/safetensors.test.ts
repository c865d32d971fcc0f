import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readSafetensors, tensorF32, writeSafetensors, SafetensorsError } from '../src/model/safetensors.ts';
import { decodeStateFrame, decodeStateMeta, encodeStateFrame, StateFrameError } from '../src/protocol/state-frame.ts';

describe('safetensors', () => {
  it('round-trips tensors and metadata with an 8-byte aligned header', () => {
    const a = new Float32Array([1, -2.5, 3e-8, Math.PI]);
    const b = new Float32Array(6).map((_, i) => i / 7);
    const buf = writeSafetensors([{ name: 'a', shape: [2, 2], data: a }, { name: 'x.b', shape: [6], data: b }], { k: 'v' });
    const n = Number(new DataView(buf.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    const f = readSafetensors(buf);
    expect(f.metadata).toEqual({ k: 'v' });
    expect(f.names).toEqual(['a', 'x.b']);
    expect(f.tensors.get('a')!.shape).toEqual([2, 2]);
    expect(tensorF32(f, 'a')).toEqual(a);
    expect(tensorF32(f, 'x.b')).toEqual(b);
  });

  it('is read identically by the independent Python reader', () => {
    const dir = mkdtempSync(join(tmpdir(), 'st-'));
    try {
      const w = new Float32Array(12).map((_, i) => (i - 5) * 0.125);
      const path = join(dir, 'x.safetensors');
      writeFileSync(path, writeSafetensors([{ name: 'w', shape: [3, 4], data: w }], { format: 'pt' }));
      const out = JSON.parse(execFileSync('/usr/bin/python3', ['tests/fixtures/read_safetensors.py', path], { encoding: 'utf8' }));
      expect(out.metadata).toEqual({ format: 'pt' });
      expect(out.tensors.w.shape).toEqual([3, 4]);
      expect(out.tensors.w.head).toEqual([...w.slice(0, 4)]);
      expect(out.tensors.w.sum).toBeCloseTo(w.reduce((s, x) => s + x, 0), 6);
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  it('rejects wrong shapes on write and corrupt files on read, naming the problem', () => {
    expect(() => writeSafetensors([{ name: 'a', shape: [3], data: new Float32Array(2) }])).toThrow(/holds 3 values but data has 2/);
    expect(() => writeSafetensors([{ name: 'a', shape: [1], data: new Float32Array(1) }, { name: 'a', shape: [1], data: new Float32Array(1) }])).toThrow(/duplicate/);
    const good = writeSafetensors([{ name: 'a', shape: [2], data: new Float32Array(2) }]);
    expect(() => readSafetensors(good.subarray(0, 5))).toThrow(SafetensorsError);
    expect(() => readSafetensors(good.subarray(0, good.length - 1))).toThrow(/outside the data/);
    const huge = good.slice();
    new DataView(huge.buffer).setBigUint64(0, 1n << 40n, true);
    expect(() => readSafetensors(huge)).toThrow(/exceeds/);
    const badJson = good.slice();
    badJson[8] = 0x7b + 1;
    expect(() => readSafetensors(badJson)).toThrow(/not valid UTF-8 JSON/);
  });

  it('checks the header against its schema first, naming the field', () => {
    /** A file whose header is `header` (as JSON), followed by 8 zero bytes of data. */
    const file = (header: unknown): Uint8Array => {
      const json = new TextEncoder().encode(JSON.stringify(header));
      const buf = new Uint8Array(8 + json.length + 8);
      new DataView(buf.buffer).setBigUint64(0, BigInt(json.length), true);
      buf.set(json, 8);
      return buf;
    };
    const a = { dtype: 'F32', shape: [2], data_offsets: [0, 8] };
    expect(readSafetensors(file({ a })).tensors.get('a')!.shape).toEqual([2]);
    expect(() => readSafetensors(file([a]))).toThrow(/safetensors header must be object/);
    expect(() => readSafetensors(file({ a: { ...a, dtype: 5 } }))).toThrow(/safetensors header\.a\.dtype/);
    expect(() => readSafetensors(file({ a: { ...a, shape: [1e300] } }))).toThrow(/safetensors header\.a\.shape\[0\]/);
    expect(() => readSafetensors(file({ a: { ...a, shape: ['2'] } }))).toThrow(/safetensors header\.a\.shape\[0\]/);
    expect(() => readSafetensors(file({ a: { dtype: 'F32', shape: [2] } }))).toThrow(/safetensors header\.a\.data_offsets/);
    expect(() => readSafetensors(file({ a: { ...a, data_offsets: [0, 8, 16] } }))).toThrow(/safetensors header\.a\.data_offsets/);
    expect(() => readSafetensors(file({ a, __metadata__: { k: 1 } }))).toThrow(/safetensors header\.__metadata__\.k/);
    // The checks the schema cannot make stay: offsets inside the data, sizes that match the shape.
    expect(() => readSafetensors(file({ a: { ...a, data_offsets: [0, 16] } }))).toThrow(/outside the data/);
    expect(() => readSafetensors(file({ a: { ...a, shape: [3] } }))).toThrow(/8 bytes do not match F32 shape \[3\]/);
  });
});

describe('state frame', () => {
  const meta = { runId: 'default', step: 120, round: 3, floats: 5, valLoss: 2.5, tokens: 9000 };
  const phi = new Float32Array([1, 2, 3, 4, 5]);
  const momentum = new Float32Array([-1, -2, -3, -4, -5]);

  it('round-trips φ, momentum and meta', () => {
    const buf = encodeStateFrame({ meta, phi, momentum });
    const f = decodeStateFrame(buf);
    expect(f.meta).toEqual(meta);
    expect(f.phi).toEqual(phi);
    expect(f.momentum).toEqual(momentum);
    // Also from an unaligned view (a network buffer can start anywhere).
    const shifted = new Uint8Array(buf.length + 1);
    shifted.set(buf, 1);
    expect(decodeStateFrame(shifted.subarray(1)).momentum).toEqual(momentum);
  });

  it('rejects wrong magic, version, header and length', () => {
    const buf = encodeStateFrame({ meta, phi, momentum });
    const bad = buf.slice(); bad[0] = 0x58;
    expect(() => decodeStateFrame(bad)).toThrow(/magic/);
    const v2 = buf.slice(); new DataView(v2.buffer).setUint32(4, 2, true);
    expect(() => decodeStateFrame(v2)).toThrow(/version 2/);
    expect(() => decodeStateFrame(buf.subarray(0, buf.length - 4))).toThrow(/needs exactly/);
    expect(() => encodeStateFrame({ meta: { ...meta, floats: 4 }, phi, momentum })).toThrow(StateFrameError);
    const evil = encodeStateFrame({ meta: { ...meta, runId: 'default' }, phi, momentum });
    const text = new TextDecoder().decode(evil.subarray(12, 12 + new DataView(evil.buffer).getUint32(8, true)));
    const forged = new TextEncoder().encode(text.replace('"step":120', '"step":-1 '));
    const e2 = evil.slice(); e2.set(forged, 12);
    expect(() => decodeStateMeta(e2)).toThrow(/step must be >= 0/);
  });
});
