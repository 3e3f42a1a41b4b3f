import crypto from 'node:crypto';

import { errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';

import { PortcullisError } from '../errors.ts';
import { IssuerUnavailableError } from './issuer-keys.ts';

/** Claims of a verified RFC 9068 access token that the gateway relies on. */
export interface VerifiedToken {
  sub: string;
  clientId: string;
  /** Expiry in epoch seconds. */
  exp: number;
  jti: string;
  grantId: string | null;
  scope: string;
  payload: JWTPayload;
}

/** Settings of a token verifier. */
export interface TokenVerifierOptions {
  issuer: string;
  audience: string;
  /** Resolves the signing key of a token; an `IssuerUnavailableError` becomes `temporarily_unavailable`. */
  getKey: JWTVerifyGetKey;
  /** Accepted `alg` values; never `none` or an HMAC algorithm. */
  algorithms: readonly string[];
  /** Also accept `typ: JWT`, which Keycloak, Entra ID and Auth0's default profile put on access tokens. */
  acceptJwtType: boolean;
  /** Claim with the client id: `client_id` in RFC 9068, `azp` at some issuers. */
  clientIdClaim: string;
  /** Claim with the granted scopes, as a space-separated string or an array of strings. */
  scopeClaim: string;
  /** Claim that identifies the token, for the deny-list: `jti` in RFC 9068, `uti` at Entra ID. */
  tokenIdClaim: string;
  clockLeewaySeconds: number;
  /** Returns a new value whenever the issuer's keys change, which empties the cache of verified tokens. */
  keysVersion?: () => unknown;
}

/** Maximum token length accepted before any parsing, in characters; issued tokens are under 1 KiB. */
export const maxTokenLength = 8192;

const compactJwsPattern = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

function claimString(payload: JWTPayload, name: string): string | null {
  const value = payload[name];
  return typeof value === 'string' && value !== '' ? value : null;
}

function scopeOf(payload: JWTPayload, claim: string): string {
  const value = payload[claim];
  if (Array.isArray(value)) {
    return value.filter((item): item is string => typeof item === 'string' && !/\s/.test(item)).join(' ');
  }
  return typeof value === 'string' ? value : '';
}

// RFC 9068 allows the media type with or without its `application/` prefix, in any case.
function typeAccepted(typ: unknown, acceptJwtType: boolean): boolean {
  if (typeof typ !== 'string') {
    return false;
  }
  const type = typ.toLowerCase().replace(/^application\//, '');
  return type === 'at+jwt' || (acceptJwtType && type === 'jwt');
}

/**
 * Creates a function that verifies an access token with jose: signature by a key of the issuer, an
 * allowed algorithm, `typ: at+jwt` (RFC 9068), issuer, audience, and required `exp`, `iat`, `jti`,
 * `sub` and the client id claim. It throws `PortcullisError` with `token_expired`, `token_invalid`
 * or, when the issuer's keys cannot be fetched, `temporarily_unavailable`.
 */
export function createTokenVerifier(options: TokenVerifierOptions): (token: string) => Promise<VerifiedToken> {
  const verify = createUncachedVerifier(options);
  const verified = new Map<string, VerifiedToken>();
  let keysVersion = options.keysVersion?.();

  // A device reconnecting with the same token, or a browser reopening its tab, skips the signature
  // check: the entry keeps what that check proved, and `exp` is checked again each time.
  return async function verifyWithCache(token: string): Promise<VerifiedToken> {
    if (token.length > maxTokenLength) {
      throw new PortcullisError('token_invalid');
    }
    const currentKeys = options.keysVersion?.();
    if (currentKeys !== keysVersion) {
      verified.clear();
      keysVersion = currentKeys;
    }
    const key = crypto.hash('sha256', token, 'base64url');
    const cached = verified.get(key);
    if (cached) {
      if (cached.exp + options.clockLeewaySeconds <= Math.floor(Date.now() / 1000)) {
        verified.delete(key);
        throw new PortcullisError('token_expired');
      }
      return cached;
    }

    // Frozen, because every connection that presents this token shares the object.
    const result = Object.freeze(await verify(token));
    Object.freeze(result.payload);
    if (token.length > maxCachedTokenLength) {
      return result;
    }
    if (verified.size >= maxCachedTokens) {
      verified.delete(verified.keys().next().value!);
    }
    verified.set(key, result);
    return result;
  };
}

// Enough for every device of a large node to reconnect at once. A built-in token's entry is under
// 1 KiB; longer tokens of an external issuer are not kept, so a full cache stays near 40 MiB.
const maxCachedTokens = 20_000;
const maxCachedTokenLength = 2048;

function createUncachedVerifier(options: TokenVerifierOptions): (token: string) => Promise<VerifiedToken> {
  const algorithms = [...options.algorithms];

  return async function verifyAccessToken(token: string): Promise<VerifiedToken> {
    if (token.length > maxTokenLength || !compactJwsPattern.test(token)) {
      throw new PortcullisError('token_invalid');
    }

    let payload: JWTPayload;
    try {
      const verified = await jwtVerify(token, options.getKey, {
        issuer: options.issuer,
        audience: options.audience,
        algorithms,
        clockTolerance: options.clockLeewaySeconds,
        // jose accepts a token without `exp` unless it is required here.
        requiredClaims: ['exp', 'iat', 'sub'],
      });
      if (!typeAccepted(verified.protectedHeader.typ, options.acceptJwtType)) {
        throw new PortcullisError('token_invalid');
      }
      payload = verified.payload;
    } catch (error) {
      if (error instanceof errors.JWTExpired) {
        throw new PortcullisError('token_expired');
      }
      if (error instanceof IssuerUnavailableError) {
        throw new PortcullisError('temporarily_unavailable');
      }
      throw new PortcullisError('token_invalid');
    }

    const sub = claimString(payload, 'sub');
    const clientId = claimString(payload, options.clientIdClaim);
    const jti = claimString(payload, options.tokenIdClaim);
    if (!sub || !clientId || !jti || typeof payload.exp !== 'number') {
      throw new PortcullisError('token_invalid');
    }

    // jose checks `iat` only together with a maximum token age, so a token from the future is refused here.
    if (typeof payload.iat !== 'number' || payload.iat > Math.floor(Date.now() / 1000) + options.clockLeewaySeconds) {
      throw new PortcullisError('token_invalid');
    }

    return {
      sub,
      clientId,
      exp: payload.exp,
      jti,
      grantId: claimString(payload, 'grant_id'),
      scope: scopeOf(payload, options.scopeClaim),
      payload,
    };
  };
}
