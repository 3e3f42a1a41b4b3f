import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import { sql } from 'kysely';

import { epochSeconds, type Store } from './database.ts';
import { isPostgres } from './postgres.ts';

/** Creates an ES256 key pair and returns its private JWK with `kid` (the RFC 7638 thumbprint), `alg` and `use`. */
export async function generateSigningJwk(): Promise<JWK> {
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = await exportJWK(privateKey);
  const kid = await calculateJwkThumbprint(jwk);
  return { ...jwk, kid, alg: 'ES256', use: 'sig' };
}

/** Stores a new active signing key. */
export async function insertSigningKey(store: Store, jwk: JWK): Promise<void> {
  await store.insertInto('signing_keys')
    .values({ kid: jwk.kid as string, private_jwk: JSON.stringify(jwk), status: 'active', created_at: epochSeconds(), retired_at: null })
    .execute();
}

/**
 * Returns the signing keys as private JWKs, the active key first so oidc-provider signs with it.
 * Retired keys are included while tokens they signed may still be valid, i.e. for
 * `retentionSeconds` after retirement, and deleted after that. Creates the first key when there is none.
 */
export async function loadSigningKeys(store: Store, retentionSeconds = 86_400): Promise<JWK[]> {
  await store.deleteFrom('signing_keys')
    .where('status', '=', 'retired')
    .where('retired_at', '<=', epochSeconds() - retentionSeconds)
    .execute();

  const load = () => store.selectFrom('signing_keys').selectAll()
    .orderBy('status').orderBy('created_at', 'desc').orderBy('kid')
    .execute();

  let rows = await load();
  if (!rows.some((row) => row.status === 'active')) {
    await insertFirstSigningKey(store, await generateSigningJwk());
    rows = await load();
  }
  return rows.map((row) => JSON.parse(row.private_jwk) as JWK);
}

// PostgreSQL runs concurrent transactions side by side, so two servers starting on an empty
// database, or two rotations, could each leave an active key. Readers take no conflicting lock.
// SQLite allows one writer at a time anyway.
async function lockSigningKeys(trx: Store): Promise<void> {
  if (isPostgres(trx)) {
    await sql`lock table signing_keys in exclusive mode`.execute(trx);
  }
}

/** Stores `jwk` as the active key unless another process stored one first. */
async function insertFirstSigningKey(store: Store, jwk: JWK): Promise<void> {
  if (!isPostgres(store)) {
    await insertSigningKey(store, jwk);
    return;
  }

  await store.transaction().execute(async (trx) => {
    await lockSigningKeys(trx);
    const active = await trx.selectFrom('signing_keys').select('kid').where('status', '=', 'active').executeTakeFirst();
    if (!active) {
      await insertSigningKey(trx, jwk);
    }
  });
}

/** Adds a new active key and retires the current one; returns the new key's `kid`. */
export async function rotateSigningKey(store: Store): Promise<string> {
  const jwk = await generateSigningJwk();
  await store.transaction().execute(async (trx) => {
    await lockSigningKeys(trx);
    await trx.updateTable('signing_keys').set({ status: 'retired', retired_at: epochSeconds() }).where('status', '=', 'active').execute();
    await insertSigningKey(trx, jwk);
  });
  return jwk.kid as string;
}

/** Returns a fingerprint of the stored key set, to notice a rotation made by another process. */
export async function signingKeysFingerprint(store: Store): Promise<string> {
  const rows = await store.selectFrom('signing_keys').select(['kid', 'status']).orderBy('kid').execute();
  return rows.map((row) => `${row.kid}:${row.status}`).join(',');
}
