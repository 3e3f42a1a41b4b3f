// DPoP proof verification (RFC 9449 section 4.3) for the ws+jose peer, written with jose as a careful
// team would by hand, so that the peer does per handshake the work that Portcullis's proof check does.
import crypto from 'node:crypto';

import { calculateJwkThumbprint, EmbeddedJWK, jwtVerify, type JWK } from 'jose';

/** Seconds a proof stays acceptable after its `iat`, the same window as Portcullis's. */
const proofMaxAgeSeconds = 60;
/** Seconds of clock difference allowed, the same as Portcullis's default `--clock-leeway`. */
const clockLeewaySeconds = 30;
/** Maximum length of a proof before parsing, the same as Portcullis's. */
const maxProofLength = 8192;
const maxJtiLength = 256;
/** Asymmetric algorithms only, the same list as Portcullis's. */
const proofAlgorithms = ['ES256', 'ES384', 'EdDSA', 'Ed25519', 'PS256', 'RS256'];

/** Checks the `DPoP` header values of one handshake for a token bound to `jkt`, and returns true when they pass. */
export type ProofVerifier = (proofs: readonly string[], accessToken: string, jkt: string) => Promise<boolean>;

/**
 * Creates a verifier that requires exactly one proof with `typ: dpop+jwt`, an allowed `alg`, and a
 * signature by the proof's own `jwk`, whose thumbprint must be `jkt`. The claims must be `htm: GET`,
 * `htu` equal to `htu()`, `ath` of the token, an `iat` within the window, and a `jti` that this key
 * has not used within the window.
 */
export function createProofVerifier(htu: () => string): ProofVerifier {
  let expectedHtu: string | null = null;
  // Used proofs by key thumbprint and `jti`, each until its window closes. Entries go in roughly in
  // expiry order because every proof has the same window, so pruning stops at the first live one.
  const usedProofs = new Map<string, number>();

  function firstUse(key: string, expiresAtMs: number): boolean {
    const now = Date.now();
    for (const [usedKey, expiresAt] of usedProofs) {
      if (expiresAt > now) {
        break;
      }
      usedProofs.delete(usedKey);
    }
    if ((usedProofs.get(key) ?? 0) > now) {
      return false;
    }
    usedProofs.set(key, expiresAtMs);
    return true;
  }

  return async (proofs, accessToken, jkt) => {
    if (proofs.length !== 1 || proofs[0].length > maxProofLength) {
      return false;
    }

    let verified: Awaited<ReturnType<typeof jwtVerify>>;
    try {
      verified = await jwtVerify(proofs[0], EmbeddedJWK, { typ: 'dpop+jwt', algorithms: proofAlgorithms });
    } catch {
      return false;
    }

    const { payload, protectedHeader } = verified;
    const now = Math.floor(Date.now() / 1000);
    const { jti, iat } = payload;
    if (typeof jti !== 'string' || jti === '' || jti.length > maxJtiLength || typeof iat !== 'number') {
      return false;
    }
    expectedHtu ??= normalizedUrl(htu());
    if (payload.htm !== 'GET' || normalizedUrl(payload.htu) !== expectedHtu || !hashEquals(payload.ath, crypto.hash('sha256', accessToken, 'base64url'))) {
      return false;
    }
    if (iat < now - proofMaxAgeSeconds - clockLeewaySeconds || iat > now + clockLeewaySeconds) {
      return false;
    }
    if (await calculateJwkThumbprint(protectedHeader.jwk as JWK, 'sha256') !== jkt) {
      return false;
    }
    return firstUse(`${jkt}:${jti}`, (iat + proofMaxAgeSeconds + clockLeewaySeconds + 1) * 1000);
  };
}

// Parsed and printed again, as Portcullis compares `htu`, so that `https://host:443/ws` equals `https://host/ws`.
function normalizedUrl(value: unknown): string | null {
  const url = typeof value === 'string' ? URL.parse(value) : null;
  if (!url) {
    return null;
  }
  url.search = '';
  url.hash = '';
  return url.href;
}

function hashEquals(presented: unknown, expected: string): boolean {
  return typeof presented === 'string' && presented.length === expected.length && crypto.timingSafeEqual(Buffer.from(presented), Buffer.from(expected));
}
