import { KeyObject } from 'node:crypto';

import { importPKCS8 } from 'jose';
import * as oauth from 'openid-client';
import { Agent, fetch as undiciFetch } from 'undici';

import { PortcullisClientError } from './policy.ts';
import { trustContext } from './trust.ts';

/** Client authentication of a device at the token endpoint. */
export type DeviceCredentials =
  | { clientSecret: string }
  | { privateKey: CryptoKey | KeyObject; alg?: string }
  | { none: true };

/**
 * Storage of a device's refresh token. `save` must be durable when it resolves, because the server
 * rejects the previous token from then on (rotation).
 */
export interface RefreshTokenStore {
  /** Returns the current refresh token, or null when the device has none. */
  load(): Promise<string | null>;
  /** Persists a rotated refresh token. */
  save(token: string): Promise<void>;
}

/** Settings of a `TokenSource`. */
export interface TokenSourceInit {
  /** Issuer origin, e.g. `https://localhost:8443`; discovery reads its `/.well-known/oauth-authorization-server`. */
  issuer: string;
  clientId: string;
  credentials: DeviceCredentials;
  /** When present, tokens come from the `refresh_token` grant instead of `client_credentials`. */
  refreshTokenStore?: RefreshTokenStore;
  /** Extra trusted CA certificate in PEM, added to Node's root store. */
  ca?: string;
  /** Timeout of each HTTP request, in seconds. Default 30. */
  timeoutSeconds?: number;
}

/** An access token and when it expires, in epoch milliseconds on this machine's clock. */
export interface AccessToken {
  value: string;
  receivedAtMs: number;
  expiresAtMs: number;
}

// Lifetime assumed when the token response has no `expires_in`; Portcullis always sends one.
const assumedLifetimeSeconds = 60;
const defaultAlgorithms: Record<string, string> = { P256: 'ES256', 'P-256': 'ES256', prime256v1: 'ES256', secp384r1: 'ES384', 'P-384': 'ES384', ed25519: 'EdDSA', rsa: 'PS256', 'rsa-pss': 'PS256' };

// OAuth errors after which asking again cannot succeed until a person changes something.
const permanentOauthErrors = new Set(['invalid_client', 'invalid_grant', 'unauthorized_client', 'access_denied', 'invalid_scope', 'invalid_target', 'unsupported_grant_type', 'invalid_request']);

/** Turns a private key into the CryptoKey openid-client signs `private_key_jwt` assertions with. */
async function signingKey(privateKey: CryptoKey | KeyObject, alg: string | undefined): Promise<{ key: CryptoKey }> {
  if (!(privateKey instanceof KeyObject)) {
    return { key: privateKey };
  }

  const curve = privateKey.asymmetricKeyDetails?.namedCurve;
  const algorithm = alg ?? defaultAlgorithms[curve ?? privateKey.asymmetricKeyType ?? ''];
  if (!algorithm) {
    throw new PortcullisClientError('invalid_private_key', 'credentials.privateKey has an unsupported key type; pass alg or an EC, Ed25519 or RSA key.', false);
  }
  const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  return { key: await importPKCS8(pem, algorithm) };
}

async function clientAuthentication(credentials: DeviceCredentials): Promise<oauth.ClientAuth> {
  if ('clientSecret' in credentials) {
    return oauth.ClientSecretBasic(credentials.clientSecret);
  }
  if ('privateKey' in credentials) {
    return oauth.PrivateKeyJwt(await signingKey(credentials.privateKey, credentials.alg));
  }
  return oauth.None();
}

/**
 * Converts any failure of a token request into a `PortcullisClientError`. OAuth errors keep their
 * code; the server's `error_description` is dropped because it is not ours to repeat.
 */
export function classifyTokenError(error: unknown): PortcullisClientError {
  if (error instanceof PortcullisClientError) {
    return error;
  }
  if (error instanceof oauth.ResponseBodyError) {
    const retryable = error.status >= 500 || error.status === 429 || !permanentOauthErrors.has(error.error);
    return new PortcullisClientError(error.error, `The token endpoint responded ${error.status} ${error.error}.`, retryable);
  }
  if (error instanceof oauth.WWWAuthenticateChallengeError) {
    const code = String(error.cause[0]?.parameters.error ?? 'invalid_client');
    return new PortcullisClientError(code, `The token endpoint responded ${error.status} ${code}.`, error.status >= 500);
  }
  return new PortcullisClientError('token_request_failed', `The token request failed (${(error as Error)?.name ?? typeof error}).`, true);
}

/**
 * Gets access tokens for one device with openid-client: `client_credentials`, or `refresh_token`
 * with a store. At most one token request is in flight at a time; callers during a request share it.
 */
export class TokenSource {
  private readonly init: TokenSourceInit;
  private readonly dispatcher: Agent;
  private configuration: Promise<oauth.Configuration> | null = null;
  private refreshToken: string | null = null;
  private token: AccessToken | null = null;
  private inFlight: Promise<AccessToken> | null = null;

  constructor(init: TokenSourceInit) {
    this.init = init;
    this.dispatcher = new Agent({ connect: { secureContext: trustContext(init.ca) } });
  }

  /** The last token received, whether or not it has expired; null before the first. */
  get current(): AccessToken | null {
    return this.token;
  }

  /** Forgets the cached access token, so the next `get` requests a new one. */
  invalidate(): void {
    this.token = null;
  }

  /** Returns the cached token while it has more than `minimumRemainingMs` left, otherwise a new one. */
  async get(minimumRemainingMs = 0): Promise<{ token: AccessToken; fresh: boolean }> {
    if (this.token && this.token.expiresAtMs - Date.now() > minimumRemainingMs) {
      return { token: this.token, fresh: false };
    }
    return { token: await this.fetch(), fresh: true };
  }

  /** Requests a new access token; concurrent calls share one request. */
  fetch(): Promise<AccessToken> {
    if (!this.inFlight) {
      this.inFlight = this.request().finally(() => {
        this.inFlight = null;
      });
    }
    return this.inFlight;
  }

  /**
   * Waits for a request in flight, then releases the HTTP connections. A refresh request is never
   * aborted: the server may already have rotated the token, and the new one must reach the store.
   */
  async close(): Promise<void> {
    await this.inFlight?.catch(() => undefined);
    await this.dispatcher.close();
  }

  private async request(): Promise<AccessToken> {
    try {
      const configuration = await this.discover();
      const response = this.init.refreshTokenStore
        ? await this.refreshGrant(configuration, this.init.refreshTokenStore)
        : await oauth.clientCredentialsGrant(configuration);
      const receivedAtMs = Date.now();
      const lifetimeSeconds = response.expiresIn() ?? assumedLifetimeSeconds;
      this.token = { value: response.access_token, receivedAtMs, expiresAtMs: receivedAtMs + lifetimeSeconds * 1000 };
      return this.token;
    } catch (error) {
      throw classifyTokenError(error);
    }
  }

  private async refreshGrant(configuration: oauth.Configuration, store: RefreshTokenStore): Promise<oauth.TokenEndpointResponse & oauth.TokenEndpointResponseHelpers> {
    const presented = this.refreshToken ?? await store.load();
    if (!presented) {
      throw new PortcullisClientError('refresh_token_missing', 'The refresh token store has no token; authorize the device first.', false);
    }

    // NOTE: when the response is lost after the server rotated the token (a dropped connection or a
    // timeout), the next request presents a used token, so the server revokes the grant and the
    // device must be authorized again.
    const response = await oauth.refreshTokenGrant(configuration, presented);
    const rotated = response.refresh_token ?? presented;
    // Kept in memory first: the presented token is spent, so even when saving fails this process
    // must never present it again.
    this.refreshToken = rotated;
    if (rotated !== presented) {
      try {
        await store.save(rotated);
      } catch {
        throw new PortcullisClientError('refresh_token_store_failed', 'Saving the rotated refresh token failed; the new access token was not used.', true);
      }
    }
    return response;
  }

  private discover(): Promise<oauth.Configuration> {
    if (!this.configuration) {
      const dispatcher = this.dispatcher;
      const customFetch: oauth.CustomFetch = (url, options) => undiciFetch(url, { ...options, dispatcher } as Parameters<typeof undiciFetch>[1]) as unknown as Promise<Response>;
      const timeout = this.init.timeoutSeconds ?? 30;
      this.configuration = clientAuthentication(this.init.credentials)
        .then((auth) => oauth.discovery(new URL(this.init.issuer), this.init.clientId, undefined, auth, { [oauth.customFetch]: customFetch, algorithm: 'oauth2', timeout }))
        .then((configuration) => {
          configuration[oauth.customFetch] = customFetch;
          configuration.timeout = timeout;
          return configuration;
        });
      this.configuration.catch(() => {
        this.configuration = null;
      });
    }
    return this.configuration;
  }
}
