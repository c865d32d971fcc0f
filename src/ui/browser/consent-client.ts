// The widget frame's ConsentPort over the coordinator's /api/consent (server/routes/consent.ts).
// Same origin as the frame: nothing here crosses to the embedding page.
import { ConsentReply, type ConsentState } from '../../protocol/api.ts';
import { schemaProblem } from '../../protocol/check.ts';
import type { ConsentAsked, ConsentPort, ConsentRefusal, ConsentWindowPort } from '../ports.ts';

export class CoordinatorConsent implements ConsentPort {
  /** `run()`: the run this frame trains (known once the frame's wiring has picked it). */
  constructor(private readonly baseUrl: string, private readonly run: () => Promise<string> | string, private readonly f: typeof fetch = (...a) => fetch(...a)) {}

  async register(nonce: string, site: string, maxIntensity: number): Promise<void> {
    const res = await this.f(`${this.baseUrl}/api/consent`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ nonce, run: await this.run(), site, maxIntensity }),
    });
    if (res.status !== 201) throw new Error(await reason(res));
  }

  async claim(nonce: string): Promise<ConsentState | 'gone'> {
    const res = await this.f(`${this.baseUrl}/api/consent/${nonce}/claim`, { method: 'POST' });
    if (res.status === 404) return 'gone';
    if (!res.ok) throw new Error(await reason(res));
    const body: unknown = await res.json();
    const problem = schemaProblem(ConsentReply, body, 'consent');
    if (problem !== null) throw new Error(`the coordinator answered in a form this frame cannot read: ${problem}`);
    return (body as ConsentReply).state;
  }

  release(nonce: string): void {
    send(this.f, `${this.baseUrl}/api/consent/${nonce}/release`);
  }
}

/** A POST with no body that outlives the page (keepalive); its failure is the session's time running out by itself. */
function send(f: typeof fetch, url: string, body?: unknown): void {
  const json = body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
  void f(url, { method: 'POST', ...json, keepalive: true }).catch(() => { /* gone: the request expires by itself */ });
}

/** The consent window's ConsentWindowPort: the request its nonce names, and the visitor's answer. */
export class CoordinatorConsentWindow implements ConsentWindowPort {
  constructor(private readonly baseUrl: string, private readonly f: typeof fetch = (...a) => fetch(...a)) {}

  async load(nonce: string): Promise<ConsentAsked | ConsentRefusal> {
    const res = await this.f(`${this.baseUrl}/api/consent/${encodeURIComponent(nonce)}`);
    // 410: the coordinator refused to register it (server/consent.ts, refuse).
    return res.status === 410 ? { refused: await reason(res) } : read(res);
  }

  async decide(nonce: string, allow: boolean): Promise<ConsentAsked> {
    return read(await this.f(`${this.baseUrl}/api/consent/${encodeURIComponent(nonce)}/decision`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ allow }),
    }));
  }

  async watch(nonce: string): Promise<ConsentAsked | 'gone'> {
    const res = await this.f(`${this.baseUrl}/api/consent/${encodeURIComponent(nonce)}/watch`, { method: 'POST' });
    return res.status === 404 ? 'gone' : read(res);
  }

  async stop(nonce: string): Promise<ConsentAsked> {
    return read(await this.f(`${this.baseUrl}/api/consent/${encodeURIComponent(nonce)}/stop`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ closed: false }),
    }));
  }

  leaveOnClose(nonce: string): void {
    send(this.f, `${this.baseUrl}/api/consent/${encodeURIComponent(nonce)}/leave`);
  }
}

async function read(res: Response): Promise<ConsentAsked> {
  if (!res.ok) throw new Error(await reason(res));
  const body: unknown = await res.json();
  const problem = schemaProblem(ConsentReply, body, 'consent');
  if (problem !== null) throw new Error(`the coordinator answered in a form this page cannot read: ${problem}`);
  return body as ConsentReply;
}

/** The coordinator's `error`, or the HTTP status. */
async function reason(res: Response): Promise<string> {
  try {
    const body: unknown = await res.json();
    const e: unknown = typeof body === 'object' && body !== null ? Reflect.get(body, 'error') : undefined;
    if (typeof e === 'string') return e.slice(0, 200);
  } catch { /* no JSON */ }
  return `HTTP ${res.status}`;
}
