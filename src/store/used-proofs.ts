import { epochSeconds, type Store } from './database.ts';

/**
 * Records the use of a DPoP proof, by the replay key of the gateway's verifier, until `expiresAt`
 * (epoch seconds). Returns true the first time, and false while an earlier use has not expired.
 * One statement, so two nodes that record the same key at once get one true between them.
 */
export async function recordProofUse(store: Store, key: string, expiresAt: number): Promise<boolean> {
  const result = await store.insertInto('used_proofs')
    .values({ key, expires_at: expiresAt })
    // An entry past its expiry no longer counts, so it is taken over rather than kept.
    .onConflict((conflict) => conflict.column('key').doUpdateSet({ expires_at: expiresAt }).where('used_proofs.expires_at', '<=', epochSeconds()))
    .executeTakeFirst();
  return Number(result.numInsertedOrUpdatedRows ?? 0) === 1;
}

/** Deletes expired entries, at most `limit` of them; returns how many it deleted. */
export async function pruneUsedProofs(store: Store, limit = 10_000): Promise<number> {
  const expired = store.selectFrom('used_proofs').select('key').where('expires_at', '<=', epochSeconds()).limit(limit);
  const result = await store.deleteFrom('used_proofs').where('key', 'in', expired).executeTakeFirst();
  return Number(result.numDeletedRows);
}
