// Which run a page shows: ?run=ID, else the coordinator's first running run.
import { RunList } from '../../protocol/api.ts';
import { schemaProblem } from '../../protocol/check.ts';
import { fetchRetrying, READ_RETRIES, type RetryOptions } from '../../protocol/retry-fetch.ts';

/**
 * The list is a read the coordinator charges to this address (server/read-budget.ts): a 429 is
 * waited out as it says, READ_RETRIES times, since a household or a campus shares one address.
 */
export async function pickRun(baseUrl: string, search: string, fetchImpl: typeof fetch = fetch, retry: RetryOptions = {}): Promise<string> {
  const asked = new URLSearchParams(search).get('run');
  if (asked) return asked;
  const res = await fetchRetrying(fetchImpl, `${baseUrl}/api/runs`, {}, { retries: READ_RETRIES, ...retry });
  if (!res.ok) throw new Error(`the coordinator at ${baseUrl} did not list its runs (HTTP ${res.status})`);
  const body: unknown = await res.json();
  const problem = schemaProblem(RunList, body, 'reply');
  if (problem !== null) throw new Error(`the coordinator at ${baseUrl} listed its runs in a form this page cannot read: ${problem}`);
  const { runs } = body as RunList;
  const run = runs.find((r) => r.status === 'running') ?? runs[0];
  if (!run) throw new Error(`the coordinator at ${baseUrl} has no run yet`);
  return run.id;
}
