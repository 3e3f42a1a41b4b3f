import crypto from 'node:crypto';

import type { Configuration } from 'oidc-provider';

/**
 * Algorithms accepted for DPoP proofs (RFC 9449), at the token endpoint and on the WebSocket
 * handshake alike: asymmetric only, never HMAC or `none`.
 */
export const dpopAlgorithms = ['ES256', 'ES384', 'EdDSA', 'Ed25519', 'PS256', 'RS256'];

/**
 * Returns the auth server's DPoP settings. Every DPoP token request must carry a server-issued nonce
 * (RFC 9449 section 8), so a proof made on a device whose clock is wrong or that was prepared in
 * advance is useless. The nonce key is derived from the first cookie key, which every node shares,
 * so a nonce from one node is accepted by the next.
 */
export function dpopFeature(cookieKeys: readonly string[]): NonNullable<Configuration['features']>['dPoP'] {
  const nonceSecret = Buffer.from(crypto.hkdfSync('sha256', cookieKeys[0], Buffer.alloc(0), 'portcullis dpop nonce', 32));
  return { enabled: true, nonceSecret, requireNonce: () => true, allowReplay: false };
}

/** The token entities of a successful token request, as oidc-provider keeps them on the context. */
interface IssuedTokens {
  AccessToken?: { jkt?: string };
  RefreshToken?: { jkt?: string; save(): Promise<string> };
}

/**
 * Binds the refresh token of a confidential device to the key of its DPoP proof, as oidc-provider
 * does only for public clients (RFC 9449 section 5 leaves it to the server). The refresh grant then
 * refuses a proof by any other key, and rotation carries the binding on. A refresh token copied off
 * a device is then useless without its key, even together with the client secret. The first
 * refresh with a proof binds a refresh token that was issued without one.
 */
export function bindRefreshTokenToProofKey(tokenPath: string) {
  return async function bindRefreshToken(ctx: { path: string; status: number; oidc?: { entities?: IssuedTokens } }, next: () => Promise<void>): Promise<void> {
    await next();
    if (ctx.path !== tokenPath || ctx.status !== 200) {
      return;
    }

    const { AccessToken: accessToken, RefreshToken: refreshToken } = ctx.oidc?.entities ?? {};
    if (!refreshToken || refreshToken.jkt || !accessToken?.jkt) {
      return;
    }
    refreshToken.jkt = accessToken.jkt;
    // The same id is stored again with the binding; the value in the response does not change.
    await refreshToken.save();
  };
}
