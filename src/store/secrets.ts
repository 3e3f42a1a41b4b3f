import crypto from 'node:crypto';

import { epochSeconds, type Store } from './database.ts';

/**
 * Returns the named server secret, creating 32 random bytes (base64url) on first use. Two processes
 * racing on the first start agree on one value because the insert is conditional.
 */
export async function loadOrCreateSecret(store: Store, name: string): Promise<string> {
  const candidate = crypto.randomBytes(32).toString('base64url');
  await store.insertInto('secrets')
    .values({ name, value: candidate, created_at: epochSeconds() })
    .onConflict((conflict) => conflict.column('name').doNothing())
    .execute();

  const row = await store.selectFrom('secrets').select('value').where('name', '=', name).executeTakeFirstOrThrow();
  return row.value;
}
