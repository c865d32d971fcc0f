// Seeded fuzz of the coordinator's WebSocket handler past the parser: every frame a volunteer
// sends reaches PeerHub (hello, then signals, ready, reports, offender reports), mutated as
// tests/protocol.fuzz.test.ts mutates them. The hub answers each with what it does or an error
// frame; it must never fail inside its own handler (an `internal` error, which closes the
// connection and logs a stack) nor leave a rejected promise behind. The sockets are in-memory
// stand-ins for ws's: the hub reads only on/send/close/terminate, readyState and bufferedAmount.
import { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WebSocket } from 'ws';
import { buildApp, type Coordinator } from '../server/app.ts';
import { PROTOCOL_VERSION, type ServerMessage } from '../src/protocol/messages.ts';
import { CLIENT_SAMPLES, P1, Rand, atBounds, mutatedJson } from './support/fuzz.ts';

class FakeSocket extends EventEmitter {
  readonly OPEN = 1;
  readonly CLOSED = 3;
  readyState = 1;
  bufferedAmount = 0;
  readonly got: ServerMessage[] = [];
  send(text: string): void { this.got.push(JSON.parse(text) as ServerMessage); }
  close(): void { this.end(); }
  terminate(): void { this.end(); }
  /** What a client writes: one text frame. */
  frame(json: string): void { this.emit('message', Buffer.from(json, 'utf8'), false); }
  private end(): void {
    if (this.readyState === this.CLOSED) return;
    this.readyState = this.CLOSED;
    this.emit('close');
  }
}

let dir: string;
let c: Coordinator;
const errorLines: string[] = [];
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'murmur-ws-fuzz-'));
  // A bucket no fuzz run empties and strikes it never reaches: every frame reaches a handler.
  // What the coordinator logs at level error (a handler that failed, a stack): the fuzz must leave none.
  const logStream = new Writable({ write(chunk, _enc, done) { errorLines.push(String(chunk)); done(); } });
  c = await buildApp({ dataDir: dir, logLevel: 'error', logStream }, { checkpointEveryMs: 0, hub: { limits: { maxMessageBytes: 64 * 1024, messagesPerSecond: 1e6, burst: 1e6, maxSignalDepth: 8 }, maxStrikes: 1e6 } });
});
afterAll(async () => {
  await c?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('fuzz: the coordinator WebSocket handler', () => {
  it('answers every mutated frame from a joined peer without failing inside its handler', async () => {
    const hello = { t: 'hello', v: PROTOCOL_VERSION, run: 'default', client: { kind: 'node', adapter: 'fuzz' } };
    const r = new Rand(0x40b);
    let frames = 0, internal: string[] = [];
    for (let conn = 0; conn < 30; conn++) {
      const ws = new FakeSocket();
      c.hub.attach(ws as unknown as WebSocket, '127.0.0.1');
      // Now and then the hello itself is mutated: the hub must refuse it by name, never fail.
      ws.frame(r.chance(0.2) ? mutatedJson(r, hello).json : JSON.stringify(hello));
      const welcome = ws.got.find((m) => m.t === 'welcome');
      // Signals and offender reports naming the sender itself, besides the samples' stranger.
      const self = welcome?.t === 'welcome' ? welcome.peerId : P1;
      const samples = [...Object.values(CLIENT_SAMPLES), { ...CLIENT_SAMPLES.signal, to: self }, { ...CLIENT_SAMPLES.offender, peer: self }];
      for (let i = 0; i < 60 && ws.readyState === ws.OPEN; i++) {
        const sample = r.pick(samples);
        ws.frame(r.chance(0.3) ? JSON.stringify(sample) : mutatedJson(r, sample).json);
        frames++;
      }
      internal = internal.concat(ws.got.filter((m) => m.t === 'error' && m.code === 'internal').map((m) => JSON.stringify(m)));
      ws.close();
      // Reports are stored and acked asynchronously: let them settle before the next connection.
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(frames).toBeGreaterThan(1000);
    expect(internal).toEqual([]);
    expect(errorLines).toEqual([]);
  });

  it('answers every client message with each of its numbers at a bound without failing inside its handler', async () => {
    const hello = { t: 'hello', v: PROTOCOL_VERSION, run: 'default' };
    const texts = Object.values(CLIENT_SAMPLES).flatMap((m) => atBounds(m));
    const internal: string[] = [];
    // One connection per 50 texts: a peer at the strike limit would be closed, not answered.
    for (let from = 0; from < texts.length; from += 50) {
      const ws = new FakeSocket();
      c.hub.attach(ws as unknown as WebSocket, '127.0.0.1');
      ws.frame(JSON.stringify(hello));
      expect(ws.got[0]?.t).toBe('welcome');
      for (const text of texts.slice(from, from + 50)) if (ws.readyState === ws.OPEN) ws.frame(text);
      internal.push(...ws.got.filter((m) => m.t === 'error' && m.code === 'internal').map((m) => JSON.stringify(m)));
      ws.close();
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(texts.length).toBeGreaterThan(100);
    expect(internal).toEqual([]);
    expect(errorLines).toEqual([]);
  });
});
