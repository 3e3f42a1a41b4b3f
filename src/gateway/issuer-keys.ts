import { createLocalJWKSet, createRemoteJWKSet, customFetch, errors, type JWK, type JWTVerifyGetKey, type RemoteJWKSet } from 'jose';
import type { Logger } from 'pino';

import { ThrottledWarning } from '../cluster/throttled-warning.ts';
import { createIssuerFetch, discoverJwksUrl, issuerFetchTimeoutMs, readIssuerCa } from './issuer-fetch.ts';

/** The source of the keys that sign the access tokens the gateway accepts. */
export interface IssuerKeys {
  /** Key resolver for `jwtVerify`; throws `IssuerUnavailableError` when the keys cannot be fetched. */
  getKey: JWTVerifyGetKey;
  /** Whether the keys are available now; `remoteIssuerKeys` limits how often this fetches. */
  probe(): Promise<boolean>;
}

/** The issuer's keys could not be fetched: the handshake gets 503, not 401. */
export class IssuerUnavailableError extends Error {
  constructor(cause: unknown) {
    super('the token issuer\'s keys could not be fetched', { cause });
    this.name = 'IssuerUnavailableError';
  }
}

/** Settings of a remote issuer. */
export interface RemoteIssuerOptions {
  issuer: string;
  /** JWKS URL; null discovers it from the issuer's metadata. */
  jwksUrl: string | null;
  /** PEM file of CAs trusted for the issuer besides the system store; null trusts the system store only. */
  caFile: string | null;
  logger: Logger;
  /** Minimum time between two fetches caused by unknown `kid`s, in milliseconds. Default 30000. */
  cooldownMs?: number;
}

// A token with an unknown `kid` triggers a refetch at most this often, so forged tokens cannot flood the issuer.
const defaultCooldownMs = 30_000;
// Keys stay usable this long after the last fetch, so a short issuer outage does not stop handshakes.
const cacheMaxAgeMs = 3_600_000;
// After a failed fetch of the metadata or the keys, the issuer is left alone this long.
const failureBackOffMs = 5_000;

/** Keys of the built-in auth server, read from the shared store; `keys` returns a new array after a rotation. */
export function localIssuerKeys(keys: () => JWK[]): IssuerKeys {
  let cachedKeys: JWK[] | null = null;
  let keySet: JWTVerifyGetKey | null = null;

  return {
    getKey(header, token) {
      const current = keys();
      if (current !== cachedKeys || !keySet) {
        const publicKeys = current.map(({ d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...publicJwk }) => publicJwk);
        keySet = createLocalJWKSet({ keys: publicKeys });
        cachedKeys = current;
      }
      return keySet(header, token);
    },
    probe: async () => keys().length > 0,
  };
}

/**
 * Keys of an external issuer, fetched over HTTPS with jose's remote JWKS set: cached, refetched on
 * an unknown `kid` at most once per cooldown. Without `jwksUrl`, the `jwks_uri` comes from the
 * issuer's OpenID Connect or OAuth metadata, whose `issuer` must equal the configured one.
 *
 * jose starts its cooldown only after a successful fetch, so a failed fetch starts a back-off here:
 * until it ends, tokens are checked against the keys fetched before and nothing is fetched, which
 * keeps forged tokens from turning an issuer outage into a request per handshake.
 */
export function remoteIssuerKeys(options: RemoteIssuerOptions): IssuerKeys {
  const fetchFromIssuer = createIssuerFetch(options.caFile ? readIssuerCa(options.caFile) : null);
  const cooldownMs = options.cooldownMs ?? defaultCooldownMs;
  const failureWarning = new ThrottledWarning(options.logger);
  let remoteSet: Promise<RemoteJWKSet> | null = null;
  let backOffUntil = 0;
  let lastProbeAt = 0;
  let lastProbeResult = false;

  const noteFailure = (error: unknown, event: string) => {
    backOffUntil = Date.now() + failureBackOffMs;
    failureWarning.warn({ event, issuer: options.issuer, err: error, retry_in_ms: failureBackOffMs }, 'the token issuer could not be reached');
  };

  const resolveSet = (): Promise<RemoteJWKSet> => {
    if (!remoteSet) {
      const pending = (options.jwksUrl ? Promise.resolve(options.jwksUrl) : discoverJwksUrl(options.issuer, fetchFromIssuer))
        .then((url) => createRemoteJWKSet(new URL(url), {
          cooldownDuration: cooldownMs,
          timeoutDuration: issuerFetchTimeoutMs,
          cacheMaxAge: cacheMaxAgeMs,
          [customFetch]: fetchFromIssuer,
        }));
      remoteSet = pending;
      pending.catch((error) => {
        noteFailure(error, 'issuer.discovery_failed');
        remoteSet = null;
      });
    }
    return remoteSet;
  };

  // During a back-off only the keys fetched before count; an unknown kid waits for the next fetch.
  const fromCache = async (set: RemoteJWKSet | null, header: Parameters<JWTVerifyGetKey>[0], token: Parameters<JWTVerifyGetKey>[1]) => {
    const cached = set?.jwks();
    if (!cached) {
      throw new IssuerUnavailableError(new Error('backing off after a failed fetch'));
    }
    try {
      return await createLocalJWKSet(cached)(header, token);
    } catch (error) {
      throw error instanceof errors.JWKSNoMatchingKey ? new IssuerUnavailableError(error) : error;
    }
  };

  return {
    async getKey(header, token) {
      if (Date.now() < backOffUntil) {
        return fromCache(remoteSet ? await remoteSet.catch(() => null) : null, header, token);
      }

      let set: RemoteJWKSet;
      try {
        set = await resolveSet();
      } catch (error) {
        throw new IssuerUnavailableError(error);
      }
      try {
        return await set(header, token);
      } catch (error) {
        if (isKeySelectionError(error)) {
          throw error;
        }
        noteFailure(error, 'issuer.jwks_failed');
        throw new IssuerUnavailableError(error);
      }
    },
    // Fetches the key set itself, not only the cache, so a load balancer learns of an issuer outage
    // even while cached keys still verify tokens.
    async probe() {
      if (Date.now() - lastProbeAt < (lastProbeResult ? cooldownMs : failureBackOffMs)) {
        return lastProbeResult;
      }
      lastProbeAt = Date.now();
      try {
        await (await resolveSet()).reload();
        lastProbeResult = true;
      } catch (error) {
        noteFailure(error, 'issuer.jwks_failed');
        lastProbeResult = false;
      }
      return lastProbeResult;
    },
  };
}

// These mean the keys were fetched and the token does not fit them, which is the token's fault.
function isKeySelectionError(error: unknown): boolean {
  return error instanceof errors.JWKSNoMatchingKey
    || error instanceof errors.JWKSMultipleMatchingKeys
    || error instanceof errors.JOSENotSupported
    || error instanceof errors.JOSEAlgNotAllowed
    || error instanceof errors.JWSInvalid;
}
