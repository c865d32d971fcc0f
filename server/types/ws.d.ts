// The part of the `ws` package's API the coordinator, its tests and the headless client use
// (@types/ws is not a dependency).
declare module 'ws' {
  import type { EventEmitter } from 'node:events';
  export type RawData = Buffer | ArrayBuffer | Buffer[];
  export class WebSocket extends EventEmitter {
    constructor(url: string, options?: { maxPayload?: number; headers?: Record<string, string>; localAddress?: string });
    static readonly CONNECTING: 0;
    static readonly OPEN: 1;
    static readonly CLOSING: 2;
    static readonly CLOSED: 3;
    readonly CONNECTING: 0;
    readonly OPEN: 1;
    readonly CLOSING: 2;
    readonly CLOSED: 3;
    readonly readyState: 0 | 1 | 2 | 3;
    readonly bufferedAmount: number;
    binaryType: 'nodebuffer' | 'arraybuffer' | 'fragments';
    onopen: ((ev: unknown) => void) | null;
    onclose: ((ev: { code: number; reason: string }) => void) | null;
    onerror: ((ev: unknown) => void) | null;
    onmessage: ((ev: { data: unknown }) => void) | null;
    send(data: string | Buffer | ArrayBuffer | Uint8Array, cb?: (err?: Error) => void): void;
    close(code?: number, reason?: string): void;
    terminate(): void;
    ping(data?: unknown): void;
    on(event: 'message', fn: (data: RawData, isBinary: boolean) => void): this;
    on(event: 'close', fn: (code: number, reason: Buffer) => void): this;
    on(event: 'error', fn: (err: Error) => void): this;
    on(event: 'open', fn: () => void): this;
    on(event: string, fn: (...args: any[]) => void): this;
  }
  export class WebSocketServer extends EventEmitter {
    constructor(options: { port?: number; host?: string; noServer?: boolean; maxPayload?: number });
    close(cb?: () => void): void;
  }
  export default WebSocket;
}
