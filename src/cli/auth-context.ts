import type Provider from 'oidc-provider';
import pino from 'pino';

import { createAuthServer } from '../auth/provider.ts';
import type { Options } from '../config/options.ts';
import type { Store } from '../store/database.ts';
import { loadOrCreateSecret } from '../store/secrets.ts';
import { loadSigningKeys } from '../store/signing-keys.ts';

/**
 * Builds an oidc-provider instance over the database for a management command. It serves no
 * requests; commands use its models so artefacts are written exactly as the server writes them.
 */
export async function createOfflineAuthServer(options: Readonly<Options>, store: Store): Promise<Provider> {
  const [cookieKey, gatewayClientSecret] = await Promise.all([
    loadOrCreateSecret(store, 'cookie_key'),
    loadOrCreateSecret(store, 'gateway_client_secret'),
  ]);
  return createAuthServer({
    options,
    store,
    logger: pino({ level: 'silent' }),
    signingKeys: await loadSigningKeys(store),
    cookieKeys: [cookieKey],
    gatewayClientSecret,
  });
}
