// Asking the coordinator again when it says "not now". It answers 429 with a Retry-After when a
// client address has used its share of reads (server/read-budget.ts) or downloads
// (server/download-budget.ts), and 503 with one while it is busy; many honest volunteers may
// share one address behind a NAT, so Murmur's own clients wait as told and ask again instead of
// failing. Pages import this file, so it imports nothing that needs Node.

/** Times one of Murmur's pages asks a read refused for the coordinator's read budget (429) again, after its Retry-After. */
export const READ_RETRIES = 2;

/** The wait when a 429 names none. */
export const DEFAULT_RETRY_AFTER_S = 5;
/** The longest single wait, whatever the header says: a hostile or broken server cannot park a client for a day. */
export const MAX_RETRY_AFTER_S = 60;

export interface RetryOptions {
  /** Most retries (default: as many as fit in `maxWaitMs`). */
  retries?: number;
  /** Most milliseconds spent waiting in all (default 10 minutes); past it the refusal is returned. */
  maxWaitMs?: number;
  /** Stops waiting (the fetch and the wait both reject with the signal's reason). */
  signal?: AbortSignal;
  /** How to wait (tests pass their own). */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Told of each wait before it starts: the status, how long, and the coordinator's reason. */
  onWait?: (e: { status: number; waitMs: number; reason: string }) => void;
}

/** Milliseconds a refusal asks the client to wait, or null when it is not one to wait out. */
export function retryAfterMs(res: Response): number | null {
  if (res.status !== 429 && res.status !== 503) return null;
  const header = res.headers.get('retry-after')?.trim();
  let s = header && /^\d+(\.\d+)?$/.test(header) ? Number(header) : NaN;
  if (!Number.isFinite(s) && header) {
    const at = Date.parse(header); // the HTTP-date form
    if (Number.isFinite(at)) s = Math.max(0, (at - Date.now()) / 1000);
  }
  if (!Number.isFinite(s)) {
    // A 503 without a time is an outage, not a queue: the caller's own error path handles it.
    if (res.status === 503) return null;
    s = DEFAULT_RETRY_AFTER_S;
  }
  return Math.min(MAX_RETRY_AFTER_S, Math.max(0, s)) * 1000;
}

const defaultSleep = (ms: number, signal?: AbortSignal): Promise<void> => new Promise((resolve, reject) => {
  if (signal?.aborted) return reject(signal.reason);
  const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve(); }, ms);
  const onAbort = () => { clearTimeout(timer); reject(signal!.reason); };
  signal?.addEventListener('abort', onAbort, { once: true });
});

/** What a refusal's JSON says (`error`, or a proxy's `message`), or '' (the body is read). */
export async function refusalText(res: Response): Promise<string> {
  let b: unknown;
  try {
    b = await res.json();
  } catch {
    return '';
  }
  if (typeof b !== 'object' || b === null) return '';
  const { error, message } = b as Record<string, unknown>;
  return typeof error === 'string' ? error : typeof message === 'string' ? message : '';
}

/**
 * `fetchFn(url, init)`, asked again after each 429 (and each 503 with a Retry-After) once the
 * wait it names (at most MAX_RETRY_AFTER_S) has passed, while the retries and the total wait
 * allow; then the last answer, whatever it is, for the caller to judge.
 */
export async function fetchRetrying(fetchFn: typeof fetch, url: string, init: RequestInit = {}, o: RetryOptions = {}): Promise<Response> {
  const sleep = o.sleep ?? defaultSleep;
  const maxWaitMs = o.maxWaitMs ?? 10 * 60_000;
  const signal = o.signal ?? init.signal ?? undefined;
  let waited = 0;
  for (let attempt = 0; ; attempt++) {
    const res = await fetchFn(url, signal ? { ...init, signal } : init);
    const waitMs = retryAfterMs(res);
    if (waitMs === null || attempt >= (o.retries ?? Infinity) || waited + waitMs > maxWaitMs) return res;
    const reason = await refusalText(res);
    o.onWait?.({ status: res.status, waitMs, reason });
    await sleep(waitMs, signal);
    waited += waitMs;
  }
}

/** A refusal that outlasted the waits: the status and the coordinator's reason. */
export class HttpRefusal extends Error {
  constructor(readonly status: number, readonly reason: string, url: string) {
    super(`GET ${url} answered HTTP ${status}${reason ? `: ${reason}` : ''}`);
    this.name = 'HttpRefusal';
  }

  /** "HTTP <status>: <reason>", for the caller's own message. */
  get detail(): string {
    return `HTTP ${this.status}${this.reason ? `: ${this.reason}` : ''}`;
  }
}

class TooLarge extends Error {}
class TooSlow extends Error {}

/** Times a broken download is taken up again where it stopped. */
export const DEFAULT_RESUMES = 5;
/** How long a download may go without a byte before it counts as broken (taken up again, or failed). */
export const DEFAULT_IDLE_MS = 60_000;
/**
 * The slowest a download of known size may be on the whole: it fails past DEFAULT_IDLE_MS plus
 * its size at this rate (16 KiB/s; a 1 MiB data file gets 2 minutes). A server sending a byte
 * every few seconds never goes idle, and held a volunteer at its join for good.
 */
export const MIN_BYTES_PER_S = 16 * 1024;

/** The next chunk of `reader`, or an error once `idleMs` pass without one or `deadline` (ms since epoch) passes. */
async function readWithin(reader: ReadableStreamDefaultReader<Uint8Array>, idleMs: number, deadline: number, url: string): Promise<ReadableStreamReadResult<Uint8Array>> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const left = Math.max(0, deadline - Date.now());
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(left <= idleMs
      ? new TooSlow(`GET ${url} was still sending past its deadline (${MIN_BYTES_PER_S / 1024} KiB/s at the least, after ${idleMs / 1000} s)`)
      : new Error(`GET ${url} sent nothing for ${idleMs / 1000} s`)), Math.min(idleMs, left));
  });
  try {
    return await Promise.race([reader.read(), late]);
  } catch (err) {
    void reader.cancel().catch(() => {});
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The whole body of `url`: refusals waited out as `fetchRetrying` does, and a transfer that breaks
 * off taken up where it stopped (a Range from the bytes held, If-Range on the ETag so the rest is
 * of the same content) up to `resumes` times, as long as the server said it serves ranges. Throws
 * HttpRefusal for an answer that is not a success, and the transfer's own error past the resumes.
 * A body past `maxBytes` (what the caller expects, at most) is dropped with an error as soon as
 * it is: a broken or hostile server cannot fill this process's memory. A transfer that sends
 * nothing for `idleMs` is broken (taken up again like any other), and one of known size still
 * going past `idleMs` plus its size at MIN_BYTES_PER_S fails: nor can it hold the caller for good.
 * `headers` go with every request of it, the first and each resumption.
 */
export async function fetchWhole(fetchFn: typeof fetch, url: string, o: RetryOptions & { resumes?: number; maxBytes?: number; idleMs?: number; headers?: Record<string, string> } = {}): Promise<Uint8Array> {
  const idleMs = o.idleMs ?? DEFAULT_IDLE_MS;
  // From each answer, not from the first ask: a 429's waits (minutes, for a crowd behind one
  // address) are not the transfer's time.
  const deadlineFrom = (got: number) => Date.now() + idleMs + ((o.maxBytes ?? Infinity) - got) / MIN_BYTES_PER_S * 1000;
  let res = await fetchRetrying(fetchFn, url, o.headers ? { headers: o.headers } : {}, o);
  let deadline = deadlineFrom(0);
  if (!res.ok) throw new HttpRefusal(res.status, await refusalText(res), url);
  const etag = res.headers.get('etag');
  const resumable = res.headers.get('accept-ranges') === 'bytes' && etag !== null;
  let chunks: Uint8Array[] = [];
  let got = 0;
  for (let resumes = 0; ; ) {
    try {
      if (!res.body) break;
      const reader = res.body.getReader();
      for (;;) {
        const { done, value } = await readWithin(reader, idleMs, deadline, url);
        if (done) break;
        if (got + value.length > (o.maxBytes ?? Infinity)) {
          await reader.cancel();
          throw new TooLarge(`GET ${url} sent more than the ${o.maxBytes} bytes expected`);
        }
        chunks.push(value);
        got += value.length;
      }
      break;
    } catch (err) {
      if (err instanceof TooLarge || err instanceof TooSlow || !resumable || resumes >= (o.resumes ?? DEFAULT_RESUMES) || o.signal?.aborted) throw err;
      resumes++;
      res = await fetchRetrying(fetchFn, url, { headers: { ...o.headers, range: `bytes=${got}-`, 'if-range': etag } }, o);
      deadline = deadlineFrom(res.status === 200 ? 0 : got);
      if (res.status === 200) { chunks = []; got = 0; continue; } // the content changed: start again
      if (res.status !== 206 || !res.headers.get('content-range')?.startsWith(`bytes ${got}-`)) {
        throw new HttpRefusal(res.status, `resuming at byte ${got} got ${res.headers.get('content-range') ?? 'no content-range'}`, url);
      }
    }
  }
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(got);
  let at = 0;
  for (const c of chunks) { out.set(c, at); at += c.length; }
  return out;
}
