import { epochSeconds, type Store } from './database.ts';

/**
 * Adds a grant to the deny-list until `expiresAt` (epoch seconds), the latest expiry of any access
 * token it could have issued. Revoking twice keeps the later expiry.
 */
export async function insertRevokedGrant(store: Store, grantId: string, expiresAt: number): Promise<void> {
  await store.insertInto('revoked_grants')
    .values({ grant_id: grantId, revoked_at: epochSeconds(), expires_at: expiresAt })
    // A CASE expression because the two-argument max() is SQLite's and greatest() is PostgreSQL's.
    .onConflict((conflict) => conflict.column('grant_id').doUpdateSet((eb) => ({
      expires_at: eb.case()
        .when('revoked_grants.expires_at', '>', eb.ref('excluded.expires_at')).then(eb.ref('revoked_grants.expires_at'))
        .else(eb.ref('excluded.expires_at'))
        .end(),
    })))
    .execute();
}

/** Tells whether a grant is on the deny-list. */
export async function isGrantRevoked(store: Store, grantId: string): Promise<boolean> {
  const row = await store.selectFrom('revoked_grants')
    .select('grant_id')
    .where('grant_id', '=', grantId)
    .where('expires_at', '>', epochSeconds())
    .executeTakeFirst();
  return row !== undefined;
}

/** Forgets deny-list entries whose tokens have all expired; returns how many were removed. */
export async function pruneRevokedGrants(store: Store): Promise<number> {
  const result = await store.deleteFrom('revoked_grants').where('expires_at', '<=', epochSeconds()).executeTakeFirst();
  return Number(result.numDeletedRows);
}
