// Live stream to dashboards as Server-Sent Events (GET /api/runs/:run/stream): one text/event-stream
// per dashboard, events `report`, `peer`, `checkpoint`, `run`. A dashboard that cannot keep up
// (more than maxBufferedBytes unsent) is disconnected rather than allowed to grow memory; the
// browser's EventSource reconnects by itself and fills the gap through the REST query.
import type { ServerResponse } from 'node:http';

export type LiveEvent = 'report' | 'peer' | 'checkpoint' | 'run';

interface Subscriber {
  res: ServerResponse;
  runId: string;
}

export class LiveHub {
  private readonly subs = new Set<Subscriber>();
  private keepAlive: ReturnType<typeof setInterval> | null = null;
  readonly stats = { sent: 0, dropped: 0 };

  constructor(private readonly maxBufferedBytes = 1 << 20, keepAliveMs = 15_000, readonly maxSubscribers = 1000) {
    // A comment line now and then keeps proxies from closing an idle stream.
    this.keepAlive = setInterval(() => {
      for (const s of this.subs) s.res.write(': keep-alive\n\n');
    }, keepAliveMs);
    this.keepAlive.unref?.();
  }

  get size(): number {
    return this.subs.size;
  }

  /** Room for one more dashboard? Each holds a socket and a send buffer. */
  get full(): boolean {
    return this.subs.size >= this.maxSubscribers;
  }

  /** Takes over a raw response (already hijacked from Fastify) as an event stream. */
  subscribe(runId: string, res: ServerResponse): void {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write('retry: 2000\n\n');
    const sub: Subscriber = { res, runId };
    this.subs.add(sub);
    const drop = () => this.subs.delete(sub);
    res.on('close', drop);
    res.on('error', drop);
  }

  publish(runId: string, event: LiveEvent, data: unknown): void {
    if (this.subs.size === 0) return;
    const frame = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    for (const s of this.subs) {
      if (s.runId !== runId) continue;
      if (s.res.writableLength > this.maxBufferedBytes) {
        this.stats.dropped++;
        this.subs.delete(s);
        s.res.destroy();
        continue;
      }
      s.res.write(frame);
      this.stats.sent++;
    }
  }

  close(): void {
    if (this.keepAlive) clearInterval(this.keepAlive);
    this.keepAlive = null;
    for (const s of this.subs) s.res.end();
    this.subs.clear();
  }
}
