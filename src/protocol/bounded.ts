/**
 * The one rule for records keyed by what strangers choose (peer ids, addresses, reporters): a
 * Map or Set keeps insertion order, so past its cap the oldest entries go first. Re-set an entry
 * to make it the newest. The mesh and the coordinator both bound their memory with this.
 */
export function forgetOldest(record: Map<string, unknown> | Set<string>, max: number): void {
  while (record.size > max) record.delete(record.keys().next().value!);
}
