import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';

import { epochSeconds, type Store } from './database.ts';

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
    .values({ kid: jwk.kid as string, private_jwk: JSON.stringify(jwk), status: 'active', created_at: epochSeconds() })
    .execute();
}

/**
 * Returns the signing keys as private JWKs, newest active key first, so oidc-provider signs with it
 * and still publishes older ones. Creates the first key when there is none.
 */
export async function loadSigningKeys(store: Store): Promise<JWK[]> {
  const load = () => store.selectFrom('signing_keys').selectAll()
    .orderBy('status').orderBy('created_at', 'desc').orderBy('kid')
    .execute();

  let rows = await load();
  if (rows.length === 0) {
    await insertSigningKey(store, await generateSigningJwk());
    rows = await load();
  }
  return rows.map((row) => JSON.parse(row.private_jwk) as JWK);
}
