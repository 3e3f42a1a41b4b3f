import type { Database } from '../../../src/store/schema.ts';
import type { Store } from '../../../src/store/database.ts';

/** Every table of the Portcullis schema; a fuzz input must leave all of them as they were. */
const tables: ReadonlyArray<keyof Database> = [
  'users',
  'devices',
  'signing_keys',
  'secrets',
  'revoked_grants',
  'browser_sessions',
  'revocation_events',
  'revoked_tokens',
  'oidc_payloads',
];

/**
 * Reads every row of every table into one string, so two snapshots are equal exactly when no row
 * was added, removed or changed in between.
 */
export async function snapshotStore(store: Store): Promise<string> {
  const contents: Record<string, unknown[]> = {};
  for (const table of tables) {
    contents[table] = await store.selectFrom(table).selectAll().execute();
  }
  return JSON.stringify(contents);
}

/** Names the tables whose rows differ between two snapshots of {@link snapshotStore}. */
export function changedTables(before: string, after: string): string[] {
  const old = JSON.parse(before) as Record<string, unknown[]>;
  const now = JSON.parse(after) as Record<string, unknown[]>;
  return tables.filter((table) => JSON.stringify(old[table]) !== JSON.stringify(now[table]));
}
