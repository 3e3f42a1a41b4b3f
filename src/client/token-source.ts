import { KeyObject } from 'node:crypto';

import { importPKCS8 } from 'jose';
import * as oauth from 'openid-client';
import { Agent, fetch as undiciFetch } from 'undici';

import { DpopSigner, NonceCache } from './dpop.ts';
import { PortcullisClientError } from './policy.ts';
import { trustContext, type ClientCertificate } from './trust.ts';

/** Client authentication of a device at the token endpoint. */
export type DeviceCredentials =
  | { clientSecret: string }
  | { privateKey: CryptoKey | KeyObject; alg?: string }
  /** Mutual TLS (RFC 8705): the device presents this certificate, and its tokens are bound to it. */
  | { certificate: ClientCertificate }
  | { none: true };

/** Returns the client certificate of certificate credentials, or undefined for any others. */
export function certificateOf(credentials: DeviceCredentials): ClientCertificate | undefined {
  return 'certificate' in credentials ? credentials.certificate : undefined;
}

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
  /** When present, every token request carries a DPoP proof signed by it, so the tokens are bound to its key. */
  dpop?: DpopSigner;
}

/** An access token and when it expires, in epoch milliseconds on this machine's clock. */
export interface AccessToken {
  value: string;
  /** `DPoP` for a token bound to the client's DPoP key, sent with a proof; `Bearer` otherwise. */
  type: 'Bearer' | 'DPoP';
  receivedAtMs: number;
  expiresAtMs: number;
}

type GrantResponse = oauth.TokenEndpointResponse & oauth.TokenEndpointResponseHelpers;

const deviceCodeGrantType = 'urn:ietf:params:oauth:grant-type:device_code';

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
  if ('certificate' in credentials) {
    // The TLS handshake authenticates the device, so the request names only its client id.
    return oauth.TlsClientAuth();
  }
  return oauth.None();
}

// RFC 9449 section 8: the auth server rejects a proof without its current nonce with
// `use_dpop_nonce`, in the body at the token endpoint or in a `WWW-Authenticate` challenge.
function isNonceChallenge(error: unknown): boolean {
  if (error instanceof oauth.ResponseBodyError) {
    return error.error === 'use_dpop_nonce';
  }
  if (error instanceof oauth.WWWAuthenticateChallengeError) {
    return error.cause.some((challenge) => challenge.scheme === 'dpop' && challenge.parameters.error === 'use_dpop_nonce');
  }
  return false;
}

// openid-client lower-cases `token_type`. A DPoP-bound token without a key to prove it is useless.
// A bearer token in response to a proof means the server ignored the proof. It is refused, because a
// device set up for DPoP must not carry a token that works for anyone who copies it.
function tokenTypeOf(response: oauth.TokenEndpointResponse, dpop: boolean): AccessToken['type'] {
  if (response.token_type !== 'dpop') {
    if (dpop) {
      throw new PortcullisClientError('unexpected_token_type', 'The token endpoint ignored the DPoP proof and issued a bearer token.', false);
    }
    return 'Bearer';
  }
  if (!dpop) {
    throw new PortcullisClientError('unexpected_token_type', 'The token endpoint issued a DPoP-bound token to a client without a DPoP key.', false);
  }
  return 'DPoP';
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
  private tokenEndpoint: string | null = null;
  private readonly nonces = new NonceCache();

  constructor(init: TokenSourceInit) {
    this.init = init;
    this.dispatcher = new Agent({ connect: { secureContext: trustContext(init.ca, certificateOf(init.credentials)) } });
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
      this.inFlight = this.request((configuration) => this.grant(configuration)).finally(() => {
        this.inFlight = null;
      });
    }
    return this.inFlight;
  }

  /** Starts the device authorization grant (RFC 8628); `scope` narrows the device's registered scope. */
  async initiateDeviceAuthorization(scope?: string): Promise<oauth.DeviceAuthorizationResponse> {
    try {
      const configuration = await this.discover();
      return await oauth.initiateDeviceAuthorization(configuration, scope === undefined ? {} : { scope });
    } catch (error) {
      throw classifyTokenError(error);
    }
  }

  /**
   * Sends one device code token request. Until the user approves, it rejects with
   * `authorization_pending` or `slow_down`. After that, it saves the refresh token in the store and
   * resolves with the first access token.
   */
  redeemDeviceCode(deviceCode: string): Promise<AccessToken> {
    return this.request(async (configuration) => {
      const response = await oauth.genericGrantRequest(configuration, deviceCodeGrantType, { device_code: deviceCode });
      if (!response.refresh_token) {
        throw new PortcullisClientError('refresh_token_missing', 'The token endpoint issued no refresh token for the device code.', false);
      }
      await this.keepRefreshToken(response.refresh_token);
      return response;
    });
  }

  /**
   * Waits for a request in flight, then releases the HTTP connections. A refresh request is never
   * aborted: the server may already have rotated the token, and the new one must reach the store.
   */
  async close(): Promise<void> {
    await this.inFlight?.catch(() => undefined);
    await this.dispatcher.close();
  }

  private async request(send: (configuration: oauth.Configuration) => Promise<GrantResponse>): Promise<AccessToken> {
    try {
      // A bad key pair fails here with its own code; inside openid-client's fetch it would not.
      await this.init.dpop?.thumbprint();
      const configuration = await this.discover();
      const response = await this.withNonceRetry(() => send(configuration));
      const type = tokenTypeOf(response, this.init.dpop !== undefined);
      const receivedAtMs = Date.now();
      const lifetimeSeconds = response.expiresIn() ?? assumedLifetimeSeconds;
      this.token = { value: response.access_token, type, receivedAtMs, expiresAtMs: receivedAtMs + lifetimeSeconds * 1000 };
      return this.token;
    } catch (error) {
      throw classifyTokenError(error);
    }
  }

  // The first DPoP request to a server has no nonce yet, so it is rejected with one. The grant is
  // sent once more with that nonce. A second rejection is reported, so a server that changes its
  // nonce on every request cannot keep the client in a loop. A rejected refresh request has not
  // spent its refresh token, so sending it again is safe.
  private async withNonceRetry(send: () => Promise<GrantResponse>): Promise<GrantResponse> {
    try {
      return await send();
    } catch (error) {
      if (!this.init.dpop || !isNonceChallenge(error)) {
        throw error;
      }
      return await send();
    }
  }

  private grant(configuration: oauth.Configuration): Promise<GrantResponse> {
    return this.init.refreshTokenStore
      ? this.refreshGrant(configuration, this.init.refreshTokenStore)
      : oauth.clientCredentialsGrant(configuration);
  }

  // Every token endpoint request carries a fresh proof with the latest nonce of that origin; every
  // response may bring the nonce for the next one.
  private async send(url: string, options: oauth.CustomFetchOptions, dispatcher: Agent): Promise<Response> {
    const headers = { ...options.headers };
    const dpop = this.init.dpop;
    if (dpop && options.method === 'POST' && this.tokenEndpoint !== null && new URL(url).href === this.tokenEndpoint) {
      headers.dpop = await dpop.proof({ htm: 'POST', url, nonce: this.nonces.get(url) });
    }

    const response = await undiciFetch(url, { ...options, headers, dispatcher } as Parameters<typeof undiciFetch>[1]) as unknown as Response;
    this.nonces.remember(url, response.headers.get('dpop-nonce'));
    return response;
  }

  private async refreshGrant(configuration: oauth.Configuration, store: RefreshTokenStore): Promise<GrantResponse> {
    const presented = this.refreshToken ?? await store.load();
    if (!presented) {
      throw new PortcullisClientError('refresh_token_missing', 'The refresh token store has no token; authorize the device first.', false);
    }

    // NOTE: when the response is lost after the server rotated the token (a dropped connection or a
    // timeout), the next request presents a used token, so the server revokes the grant and the
    // device must be authorized again.
    const response = await oauth.refreshTokenGrant(configuration, presented);
    const rotated = response.refresh_token ?? presented;
    if (rotated !== presented) {
      await this.keepRefreshToken(rotated);
    }
    return response;
  }

  // Kept in memory first: a presented refresh token is spent, so even when saving fails this
  // process must never present it again.
  private async keepRefreshToken(token: string): Promise<void> {
    this.refreshToken = token;
    const store = this.init.refreshTokenStore;
    try {
      await store?.save(token);
    } catch {
      throw new PortcullisClientError('refresh_token_store_failed', 'Saving the new refresh token failed; the access token that came with it was not used.', true);
    }
  }

  private discover(): Promise<oauth.Configuration> {
    if (!this.configuration) {
      const dispatcher = this.dispatcher;
      const customFetch: oauth.CustomFetch = (url, options) => this.send(url, options, dispatcher);
      const timeout = this.init.timeoutSeconds ?? 30;
      this.configuration = clientAuthentication(this.init.credentials)
        .then((auth) => oauth.discovery(new URL(this.init.issuer), this.init.clientId, undefined, auth, { [oauth.customFetch]: customFetch, algorithm: 'oauth2', timeout }))
        .then((configuration) => {
          configuration[oauth.customFetch] = customFetch;
          configuration.timeout = timeout;
          const tokenEndpoint = configuration.serverMetadata().token_endpoint;
          this.tokenEndpoint = tokenEndpoint ? new URL(tokenEndpoint).href : null;
          return configuration;
        });
      this.configuration.catch(() => {
        this.configuration = null;
      });
    }
    return this.configuration;
  }
}
