import type Provider from 'oidc-provider';
import type { KoaContextWithOIDC } from 'oidc-provider';
import type { Logger } from 'pino';

/** A refresh token grant request that oidc-provider rejected after the client authenticated. */
interface RejectedRefresh {
  refreshToken: string;
  clientId: string;
}

function rejectedRefresh(ctx: KoaContextWithOIDC): RejectedRefresh | null {
  const body = ctx.body as { error?: unknown } | undefined;
  if (ctx.status !== 400 || body?.error !== 'invalid_grant') {
    return null;
  }

  // `ctx.oidc` exists only on requests that matched an oidc-provider route.
  const oidc = ctx.oidc as KoaContextWithOIDC['oidc'] | undefined;
  const refreshToken = oidc?.params?.refresh_token;
  const clientId = oidc?.client?.clientId;
  if (oidc?.route !== 'token' || oidc.params?.grant_type !== 'refresh_token' || typeof refreshToken !== 'string' || !clientId) {
    return null;
  }

  return { refreshToken, clientId };
}

// The same artefacts oidc-provider removes when it revokes a grant itself. The adapter's
// AccessToken revocation also runs its onGrantRevoked hook, which puts the grant on the deny-list
// and closes the grant's live sockets with 4403.
async function revokeGrant(provider: Provider, grantId: string): Promise<void> {
  await Promise.all([provider.AccessToken, provider.RefreshToken, provider.AuthorizationCode, provider.DeviceCode]
    .map((model) => model.revokeByGrantId(grantId)));
  const grant = await provider.Grant.find(grantId);
  await grant?.destroy();
}

/**
 * Returns auth-server middleware that revokes the whole grant of a refresh token that an
 * authenticated client presents although it was issued to another client. oidc-provider only rejects
 * such a request with `invalid_grant`. But a refresh token in a second client's hands has leaked
 * from the first, so its grant ends as it does when a rotated refresh token is used again.
 */
export function revokeGrantOfMisusedRefreshToken(provider: Provider, logger: Logger) {
  return async function revokeMisusedGrant(ctx: KoaContextWithOIDC, next: () => Promise<void>): Promise<void> {
    await next();

    const rejected = rejectedRefresh(ctx);
    if (!rejected) {
      return;
    }

    try {
      const token = await provider.RefreshToken.find(rejected.refreshToken, { ignoreExpiration: true });
      if (!token?.grantId || token.clientId === rejected.clientId) {
        return;
      }

      await revokeGrant(provider, token.grantId);
      logger.warn({ event: 'refresh_token.misused', client_id: rejected.clientId, grant_client_id: token.clientId, grant_id: token.grantId }, 'refresh token presented by a client it was not issued to; grant revoked');
    } catch (error) {
      // The client already gets invalid_grant. NOTE: the grant then stays valid until its owner's
      // next refresh token reuse or an operator's revocation.
      logger.error({ event: 'refresh_token.misuse_revocation_failed', client_id: rejected.clientId, err: error }, 'revoking the grant of a misused refresh token failed');
    }
  };
}
