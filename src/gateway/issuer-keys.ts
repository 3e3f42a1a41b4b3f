import fs from 'node:fs';
import tls from 'node:tls';

import { createLocalJWKSet, createRemoteJWKSet, customFetch, errors, type JWK, type JWTVerifyGetKey, type RemoteJWKSet } from 'jose';
import type { Logger } from 'pino';
import { Agent, fetch as undiciFetch } from 'undici';

/** Where the gateway finds the keys that sign the access tokens it accepts. */
export interface IssuerKeys {
  /** Key resolver for `jwtVerify`; throws `IssuerUnavailableError` when the keys cannot be fetched. */
  getKey: JWTVerifyGetKey;
  /** Whether the keys can be had now; a remote issuer is fetched at most once per cooldown to find out. */
  probe(): Promise<boolean>;
}

/** The issuer's keys could not be fetched: the handshake is answered 503, not 401. */
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
  /** Least time between two fetches caused by unknown `kid`s, in milliseconds. Default 30000. */
  cooldownMs?: number;
}

// A token with an unknown `kid` triggers a refetch at most this often, so forged tokens cannot flood the issuer.
const defaultCooldownMs = 30_000;
const fetchTimeoutMs = 5_000;
// Keys stay usable this long after the last fetch, so a short issuer outage does not stop handshakes.
const cacheMaxAgeMs = 3_600_000;
// A failed discovery is retried no sooner than this.
const discoveryRetryMs = 5_000;

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
 */
export function remoteIssuerKeys(options: RemoteIssuerOptions): IssuerKeys {
  const fetchFromIssuer = createIssuerFetch(options.caFile);
  const cooldownMs = options.cooldownMs ?? defaultCooldownMs;
  let remoteSet: Promise<RemoteJWKSet> | null = null;
  let lastProbeAt = 0;
  let lastProbeResult = false;

  const resolveSet = (): Promise<RemoteJWKSet> => {
    if (!remoteSet) {
      remoteSet = (options.jwksUrl ? Promise.resolve(options.jwksUrl) : discoverJwksUrl(options.issuer, fetchFromIssuer))
        .then((url) => createRemoteJWKSet(new URL(url), {
          cooldownDuration: cooldownMs,
          timeoutDuration: fetchTimeoutMs,
          cacheMaxAge: cacheMaxAgeMs,
          [customFetch]: fetchFromIssuer,
        }));
      remoteSet.catch((error) => {
        options.logger.warn({ event: 'issuer.discovery_failed', issuer: options.issuer, err: error }, 'issuer metadata could not be read');
        setTimeout(() => { remoteSet = null; }, discoveryRetryMs).unref();
      });
    }
    return remoteSet;
  };

  return {
    async getKey(header, token) {
      let set: RemoteJWKSet;
      try {
        set = await resolveSet();
        return await set(header, token);
      } catch (error) {
        throw isKeySelectionError(error) ? error : new IssuerUnavailableError(error);
      }
    },
    async probe() {
      // A failed probe is repeated sooner, so a node turns ready soon after its issuer returns.
      if (Date.now() - lastProbeAt < (lastProbeResult ? cooldownMs : discoveryRetryMs)) {
        return lastProbeResult;
      }
      lastProbeAt = Date.now();
      try {
        const set = await resolveSet();
        if (!set.fresh) {
          await set.reload();
        }
        lastProbeResult = true;
      } catch {
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

type IssuerFetch = (url: string, init: { headers?: Headers; method?: 'GET'; redirect?: 'manual'; signal?: AbortSignal }) => Promise<Response>;

function createIssuerFetch(caFile: string | null): IssuerFetch {
  const ca = caFile ? [...tls.rootCertificates, fs.readFileSync(caFile, 'utf8')] : undefined;
  const dispatcher = new Agent({ connect: { ca } });
  // Redirects are not followed, so the issuer's metadata cannot send the gateway to another host.
  return (url, init) => undiciFetch(url, { ...init, redirect: 'manual', dispatcher } as Parameters<typeof undiciFetch>[1]) as unknown as Promise<Response>;
}

async function discoverJwksUrl(issuer: string, fetchFromIssuer: IssuerFetch): Promise<string> {
  const base = issuer.replace(/\/+$/, '');
  let lastError: unknown = null;

  for (const path of ['/.well-known/openid-configuration', '/.well-known/oauth-authorization-server']) {
    try {
      const response = await fetchFromIssuer(`${base}${path}`, { signal: AbortSignal.timeout(fetchTimeoutMs) });
      if (response.status !== 200) {
        lastError = new Error(`${path} answered ${response.status}`);
        continue;
      }

      const metadata = await response.json() as { issuer?: unknown; jwks_uri?: unknown };
      if (metadata.issuer !== issuer) {
        throw new Error(`the metadata names issuer ${JSON.stringify(metadata.issuer)}, not the configured ${JSON.stringify(issuer)}`);
      }
      if (typeof metadata.jwks_uri !== 'string' || !metadata.jwks_uri.startsWith('https://')) {
        throw new Error('the metadata has no https:// jwks_uri');
      }
      return metadata.jwks_uri;
    } catch (error) {
      lastError = error;
    }
  }
  throw lastError;
}
