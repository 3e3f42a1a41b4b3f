import * as oauth from 'openid-client';

/** Settings the gateway's backend-for-frontend uses to reach the auth server. */
export interface BffClientInit {
  issuer: string;
  clientId: string;
  clientSecret: string;
  fetch: typeof fetch;
}

/**
 * Returns a lazily discovered openid-client configuration for the gateway's confidential client.
 * Discovery runs on first use because the server must be listening to respond.
 */
export function createBffClient(init: BffClientInit): () => Promise<oauth.Configuration> {
  let pending: Promise<oauth.Configuration> | null = null;

  return () => {
    if (!pending) {
      pending = oauth.discovery(new URL(init.issuer), init.clientId, undefined, oauth.ClientSecretBasic(init.clientSecret), {
        [oauth.customFetch]: init.fetch as any,
      }).then((configuration) => {
        configuration[oauth.customFetch] = init.fetch as any;
        return configuration;
      });
      pending.catch(() => {
        pending = null;
      });
    }
    return pending;
  };
}
