import Provider, { errors, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';
import type { JWK } from 'jose';
import type { Logger } from 'pino';

import type { Options } from '../config/options.ts';
import type { Store } from '../store/database.ts';
import { unavailableRetryAfterSeconds } from '../errors.ts';
import { clientSecretMatches, findDevice, hashClientSecret } from '../store/devices.ts';
import { createOidcAdapter, withProviderErrors } from '../store/oidc-adapter.ts';
import { findUser } from '../store/users.ts';
import { currentUserScopes, isDeviceScope, registeredDeviceScopes } from './channel-scopes.ts';
import { deviceFlowPages, renderAuthError } from './pages.ts';
import { bindRefreshTokenToProofKey, dpopAlgorithms, dpopFeature } from './dpop.ts';
import { mtlsClientAuthMethods, mtlsFeature } from './mtls.ts';
import { revokeGrantOfMisusedRefreshToken } from './refresh-token-misuse.ts';

/** Client id of the gateway's own backend-for-frontend, a confidential client of the auth server. */
export const gatewayClientId = 'portcullis-gateway';

/** Path prefix of every oidc-provider endpoint except discovery. */
export const oauthPathPrefix = '/oauth/';

/** Algorithms accepted from clients for `private_key_jwt` assertions; never HMAC or `none`. */
export const clientAssertionAlgorithms = ['ES256', 'ES384', 'EdDSA', 'PS256', 'RS256'];

/** Inputs for creating the auth server. */
export interface AuthServerInit {
  options: Readonly<Options>;
  store: Store;
  logger: Logger;
  signingKeys: JWK[];
  cookieKeys: string[];
  gatewayClientSecret: string;
  /** Runs when a whole grant is revoked, before the auth server responds. */
  onGrantRevoked?: (grantId: string) => Promise<void>;
}

/** Returns the audience (RFC 8707 resource indicator) of access tokens for the gateway. */
export function gatewayAudience(options: Readonly<Options>): string {
  return `${options.publicUrl}/ws`;
}

/**
 * Returns the channel scopes a client may hold for the gateway now: a device's registered scopes,
 * or, for the gateway's own client, those of the user it acts for. Asked again on every token
 * request, so a refresh drops scopes that were withdrawn since.
 */
async function allowedChannelScopes(store: Store, ctx: KoaContextWithOIDC, clientId: string | undefined): Promise<string[]> {
  if (clientId === gatewayClientId) {
    const oidc = ctx.oidc as unknown as { account?: { accountId: string }; entities: { Session?: { accountId?: string } } };
    const accountId = oidc.account?.accountId ?? oidc.entities.Session?.accountId;
    return accountId ? currentUserScopes(store, accountId) : [];
  }

  const device = clientId ? await findDevice(store, clientId) : undefined;
  return device ? registeredDeviceScopes(device) : [];
}

function buildConfiguration(init: AuthServerInit): Configuration {
  const { options, store } = init;
  const audience = gatewayAudience(options);

  return {
    adapter: createOidcAdapter(store, { onGrantRevoked: init.onGrantRevoked }),
    clients: [{
      client_id: gatewayClientId,
      client_secret: hashClientSecret(init.gatewayClientSecret),
      redirect_uris: [`${options.publicUrl}/login/callback`],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    clientAuthMethods: ['client_secret_basic', 'private_key_jwt', ...mtlsClientAuthMethods(options)],
    responseTypes: ['code'],
    clientDefaults: { id_token_signed_response_alg: 'ES256', grant_types: ['authorization_code'], response_types: ['code'], token_endpoint_auth_method: 'client_secret_basic' },
    cookies: { keys: init.cookieKeys, long: { signed: true, httpOnly: true, sameSite: 'lax' }, short: { signed: true, httpOnly: true, sameSite: 'lax' } },
    jwks: { keys: init.signingKeys as any },
    enabledJWA: {
      clientAuthSigningAlgValues: clientAssertionAlgorithms,
      idTokenSigningAlgValues: ['ES256'],
      requestObjectSigningAlgValues: ['ES256'],
      userinfoSigningAlgValues: ['ES256'],
      introspectionSigningAlgValues: ['ES256'],
      authorizationSigningAlgValues: ['ES256'],
      dPoPSigningAlgValues: dpopAlgorithms,
    } as Configuration['enabledJWA'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: {
        enabled: true,
        // Only devices and the gateway itself may introspect, and only their own tokens.
        allowedPolicy: async (_ctx, client, token) => client.clientId === token.clientId || client.clientId === gatewayClientId,
      },
      // A client may revoke only tokens issued to itself.
      revocation: { enabled: true, allowedPolicy: async (_ctx, client, token) => client.clientId === token.clientId },
      rpInitiatedLogout: { enabled: false },
      deviceFlow: { enabled: true, charset: 'base-20', mask: '****-****', ...deviceFlowPages },
      mTLS: mtlsFeature(options),
      dPoP: dpopFeature(init.cookieKeys),
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => audience,
        useGrantedResource: async () => true,
        getResourceServerInfo: withProviderErrors(async (ctx: KoaContextWithOIDC, resourceIndicator: string, client: { clientId: string } | undefined) => {
          // RFC 8707: a resource this server does not serve is an `invalid_target` error.
          if (resourceIndicator !== audience) {
            throw new errors.InvalidTarget(`unknown resource; the gateway's resource indicator is ${audience}`);
          }
          return {
            scope: (await allowedChannelScopes(store, ctx, client?.clientId)).join(' '),
            audience,
            accessTokenTTL: options.accessTokenTtlSeconds,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'ES256' } },
          };
        }),
      },
    },
    extraTokenClaims: async (_ctx, token) => {
      const grantId = (token as { grantId?: string }).grantId;
      return grantId ? { grant_id: grantId } : undefined;
    },
    findAccount: withProviderErrors(async (_ctx: KoaContextWithOIDC, sub: string) => {
      const user = await findUser(store, sub);
      if (!user || user.disabled) {
        return undefined;
      }
      return { accountId: user.username, claims: async () => ({ sub: user.username }) };
    }),
    interactions: { url: async (_ctx, interaction) => `/interaction/${interaction.uid}` },
    // Devices and the gateway get refresh tokens without asking for `offline_access`.
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: true,
    pkce: { required: () => true },
    clockTolerance: options.clockLeewaySeconds,
    renderError: renderAuthError,
    ttl: {
      AccessToken: options.accessTokenTtlSeconds,
      ClientCredentials: options.accessTokenTtlSeconds,
      AuthorizationCode: 60,
      DeviceCode: 600,
      Interaction: 600,
      Session: 3600,
      Grant: options.refreshTokenTtlSeconds,
      RefreshToken: options.refreshTokenTtlSeconds,
      IdToken: 600,
    },
  } as Configuration;
}

/** Creates the oidc-provider instance: issuer = public origin, endpoints under `/oauth/`. */
export function createAuthServer(init: AuthServerInit): Provider {
  const configuration = buildConfiguration(init);
  configuration.routes = {
    authorization: '/oauth/authorize',
    code_verification: '/oauth/device',
    device_authorization: '/oauth/device/authorize',
    end_session: '/oauth/session/end',
    introspection: '/oauth/introspect',
    jwks: '/oauth/jwks',
    pushed_authorization_request: '/oauth/par',
    registration: '/oauth/register',
    revocation: '/oauth/revoke',
    token: '/oauth/token',
    userinfo: '/oauth/userinfo',
    backchannel_authentication: '/oauth/backchannel',
    challenge: '/oauth/challenge',
    credential: '/oauth/credential',
  } as Configuration['routes'];

  const provider = new Provider(init.options.publicUrl, configuration);
  defaultToAllowedChannelScopes(provider);
  // Client secrets are stored as SHA-256 hashes, so the library's plain comparison is replaced.
  (provider.Client.prototype as any).compareClientSecret = function compareHashedSecret(this: { clientSecret?: string }, actual: string) {
    return typeof this.clientSecret === 'string' && clientSecretMatches(this.clientSecret, actual);
  };

  if (init.options.trustedProxies.length > 0) {
    provider.proxy = true;
  }
  provider.use(setRetryAfterOn503);
  provider.use(revokeGrantOfMisusedRefreshToken(provider, init.logger));
  provider.use(bindRefreshTokenToProofKey('/oauth/token'));
  logProviderEvents(provider, init.logger);
  return provider;
}

// The only 503 of the auth server is temporarily_unavailable (see toProviderError). RFC 9110
// section 10.2.3: Retry-After gives the seconds after which the client may retry.
async function setRetryAfterOn503(ctx: { status: number; set(field: string, value: string): void }, next: () => Promise<void>): Promise<void> {
  await next();
  if (ctx.status === 503) {
    ctx.set('Retry-After', String(unavailableRetryAfterSeconds));
  }
}

/**
 * RFC 6749 section 3.3 lets a server apply a default when a request names no scope. Here a request
 * that names neither a channel scope nor `admin:metrics` requests every scope the client may hold,
 * so a device need not know its registered scopes. A request that names some gets those it may hold
 * and no others.
 * oidc-provider reads requested scopes only through this getter, at every grant type and consent.
 */
function defaultToAllowedChannelScopes(provider: Provider): void {
  const prototype = (provider as unknown as { OIDCContext: { prototype: object } }).OIDCContext.prototype;
  Object.defineProperty(prototype, 'requestParamScopes', {
    configurable: true,
    get(this: { params?: { scope?: string }; resourceServers?: Record<string, { scopes: Set<string> }> }) {
      const requested = new Set(String(this.params?.scope ?? '').split(' ').filter(Boolean));
      if ([...requested].some(isDeviceScope)) {
        return requested;
      }
      for (const resourceServer of Object.values(this.resourceServers ?? {})) {
        resourceServer.scopes.forEach((scope) => requested.add(scope));
      }
      return requested;
    },
  });
}

function logProviderEvents(provider: Provider, logger: Logger): void {
  const clientId = (ctx: KoaContextWithOIDC | undefined) => ctx?.oidc?.client?.clientId;

  provider.on('grant.success', (ctx: KoaContextWithOIDC) => {
    logger.info({ event: 'token.issued', client_id: clientId(ctx), grant_type: ctx.oidc.params?.grant_type }, 'token issued');
    // oidc-provider sets this entity only when a refresh grant consumed the old token for a new one.
    const rotated = (ctx.oidc.entities as { RotatedRefreshToken?: { grantId?: string } }).RotatedRefreshToken;
    if (rotated) {
      logger.info({ event: 'refresh_token.rotated', client_id: clientId(ctx), grant_id: rotated.grantId }, 'refresh token rotated');
    }
  });
  provider.on('grant.error', (ctx: KoaContextWithOIDC, error: Error & { error?: string; error_detail?: string }) => {
    // `error_detail` is oidc-provider's internal reason, e.g. a missing assertion claim, and contains no credential.
    logger.warn({ event: 'token.rejected', client_id: clientId(ctx), grant_type: ctx.oidc?.params?.grant_type, error: error.error ?? error.name, detail: error.error_detail }, 'token request rejected');
    // oidc-provider revokes the whole grant when a rotated refresh token is used again, and reports it
    // only through this detail (oidc-provider 9, lib/actions/grants/refresh_token.js).
    if (error.error_detail === 'refresh token already used') {
      const grantId = (ctx.oidc?.entities as { RefreshToken?: { grantId?: string } } | undefined)?.RefreshToken?.grantId;
      logger.warn({ event: 'refresh_token.reused', client_id: clientId(ctx), grant_id: grantId }, 'a rotated refresh token was used again; its grant is revoked');
    }
  });
  provider.on('grant.revoked', (ctx: KoaContextWithOIDC, grantId: string) => {
    logger.info({ event: 'grant.revoked', client_id: clientId(ctx), grant_id: grantId }, 'grant revoked');
  });
  provider.on('server_error', (_ctx: KoaContextWithOIDC, error: Error) => {
    logger.error({ event: 'auth.server_error', err: error }, 'auth server error');
  });
}
