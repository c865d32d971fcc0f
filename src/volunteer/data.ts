// The run's token files, fetched from the coordinator and checked against the sha256 it
// announced in the welcome (the same hash is the files' ETag): a volunteer never trains on data
// that differs from everyone else's.
import { sha256Hex } from '../data/manifest.ts';
import type { DataAssignment, DataFileRef } from '../protocol/messages.ts';
import { DataIntegrityError } from './errors.ts';
import { fetchWhole, HttpRefusal, type RetryOptions } from '../protocol/retry-fetch.ts';

/**
 * How a volunteer downloads its data: the waits of src/protocol/retry-fetch.ts, and `session`, its
 * welcome's token, sent as `Authorization: Bearer` with each request to the coordinator itself
 * (never to another origin): the coordinator serves a live peer's data from a share of its
 * download budget that anonymous downloads cannot take (server/download-budget.ts).
 */
export type DataFetchOptions = RetryOptions & { session?: string };

/**
 * Downloads one file and verifies its size, hash and token type (byte-level runs only). A
 * coordinator that asks this address to wait for its share of downloads (429, Retry-After;
 * server/download-budget.ts) is waited out and asked again, for `o.maxWaitMs` at most, and a
 * transfer that breaks off is taken up where it stopped (src/protocol/retry-fetch.ts, fetchWhole).
 */
export async function downloadVerified(baseUrl: string, f: DataFileRef, fetchFn: typeof fetch = fetch, o: DataFetchOptions = {}): Promise<Uint8Array> {
  if (f.dtype !== 'u8') throw new DataIntegrityError(`${f.name}: token type ${f.dtype} is not supported (the trainers are byte-level, u8)`);
  const url = new URL(f.url, baseUrl).toString();
  const { session, ...retry } = o;
  // The session only to the coordinator that gave it: a file the welcome names elsewhere is fetched without it.
  const ours = session !== undefined && new URL(url).origin === new URL(baseUrl).origin;
  let bytes: Uint8Array;
  try {
    bytes = await fetchWhole(fetchFn, url, { ...retry, maxBytes: f.bytes, ...(ours ? { headers: { authorization: `Bearer ${session}` } } : {}) });
  } catch (err) {
    if (err instanceof HttpRefusal) throw new DataIntegrityError(`downloading ${f.name} from ${url} failed: ${err.detail}`);
    throw new DataIntegrityError(`downloading ${f.name} from ${url} failed: ${(err as Error).message}`, { cause: err });
  }
  if (bytes.length !== f.bytes) throw new DataIntegrityError(`${f.name}: got ${bytes.length} bytes, the coordinator announced ${f.bytes}; the download was cut short or the file changed`);
  const hash = await sha256Hex(bytes);
  if (hash !== f.sha256) throw new DataIntegrityError(`${f.name}: sha256 ${hash} does not match the coordinator's ${f.sha256}; refusing the data`);
  return bytes;
}

/**
 * Most bytes of data a volunteer takes from one assignment (its shards and the validation file),
 * checked against what the welcome announces before anything is downloaded: a file announced at
 * 2^40 bytes and sent without end filled memory until the process died, before its hash could
 * be checked.
 */
export const MAX_ASSIGNMENT_BYTES = 2 ** 31;

/**
 * This replica's training tokens (its shards, concatenated) and the run's validation tokens: the
 * one place both the Node volunteer and the browser's (src/ui/pages/engine-wiring.ts) fetch their
 * data, with `o.session`.
 */
export async function downloadAssignment(baseUrl: string, a: DataAssignment, fetchFn: typeof fetch = fetch, o: DataFetchOptions = {}, maxBytes = MAX_ASSIGNMENT_BYTES): Promise<{ train: Uint8Array; val: Uint8Array }> {
  if (a.shards.length === 0) throw new DataIntegrityError('the coordinator assigned no training shard to this replica');
  // A shard named twice would be downloaded and trained on twice (10,000 times in a welcome's room).
  if (new Set(a.shards).size !== a.shards.length) throw new DataIntegrityError(`the assignment names a shard more than once (${a.shards.length} entries, ${new Set(a.shards).size} shards)`);
  const refs = a.shards.map((i) => {
    const r = a.train[i];
    if (!r) throw new DataIntegrityError(`the assignment names shard ${i}, but the run has only ${a.train.length} training files`);
    return r;
  });
  const total = refs.reduce((n, r) => n + r.bytes, a.val.bytes);
  if (total > maxBytes) throw new DataIntegrityError(`the assignment announces ${total} bytes of data; a volunteer takes at most ${maxBytes}`);
  const shards = await Promise.all(refs.map((r) => downloadVerified(baseUrl, r, fetchFn, o)));
  const train = new Uint8Array(shards.reduce((n, s) => n + s.length, 0));
  let at = 0;
  for (const s of shards) { train.set(s, at); at += s.length; }
  const val = await downloadVerified(baseUrl, a.val, fetchFn, o);
  return { train, val };
}
