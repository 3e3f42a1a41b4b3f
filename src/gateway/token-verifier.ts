import { createLocalJWKSet, errors, jwtVerify, type JWK, type JWTPayload } from 'jose';

import { PortcullisError } from '../errors.ts';

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
  /** Returns the issuer's current signing keys; a new array means the keys changed. */
  keys: () => JWK[];
  clockLeewaySeconds: number;
}

/** Maximum token length accepted before any parsing, in characters; issued tokens are under 1 KiB. */
export const maxTokenLength = 8192;

/** Signature algorithms the gateway accepts; the built-in auth server signs with ES256 only. */
export const acceptedAlgorithms = ['ES256'];

const compactJwsPattern = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

function claimString(payload: JWTPayload, name: string): string | null {
  const value = payload[name];
  return typeof value === 'string' && value !== '' ? value : null;
}

/**
 * Creates a function that verifies an access token with jose: signature by a known key, `ES256`
 * only, `typ: at+jwt` (RFC 9068), issuer, audience, and required `exp`, `iat`, `jti`, `sub` and
 * `client_id`. It throws `PortcullisError` with `token_expired` or `token_invalid`.
 */
export function createTokenVerifier(options: TokenVerifierOptions): (token: string) => Promise<VerifiedToken> {
  let cachedKeys: JWK[] | null = null;
  let keySet: ReturnType<typeof createLocalJWKSet> | null = null;
  const currentKeySet = () => {
    const keys = options.keys();
    if (keys !== cachedKeys || !keySet) {
      const publicKeys = keys.map(({ d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...publicJwk }) => publicJwk);
      keySet = createLocalJWKSet({ keys: publicKeys });
      cachedKeys = keys;
    }
    return keySet;
  };

  return async function verifyAccessToken(token: string): Promise<VerifiedToken> {
    if (token.length > maxTokenLength || !compactJwsPattern.test(token)) {
      throw new PortcullisError('token_invalid');
    }

    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, currentKeySet(), {
        issuer: options.issuer,
        audience: options.audience,
        algorithms: acceptedAlgorithms,
        typ: 'at+jwt',
        clockTolerance: options.clockLeewaySeconds,
        // jose accepts a token without `exp` unless it is required here.
        requiredClaims: ['exp', 'iat', 'jti', 'sub', 'client_id'],
      }));
    } catch (error) {
      if (error instanceof errors.JWTExpired) {
        throw new PortcullisError('token_expired');
      }
      throw new PortcullisError('token_invalid');
    }

    const sub = claimString(payload, 'sub');
    const clientId = claimString(payload, 'client_id');
    const jti = claimString(payload, 'jti');
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
      scope: claimString(payload, 'scope') ?? '',
      payload,
    };
  };
}
