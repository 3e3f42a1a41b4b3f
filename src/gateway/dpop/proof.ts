import crypto from 'node:crypto';

import { calculateJwkThumbprint, importJWK, jwtVerify, type CryptoKey, type JWSHeaderParameters } from 'jose';

/** The failed part of a rejected DPoP proof; logged, never sent to the client. */
export type ProofProblem =
  | 'missing' | 'repeated' | 'malformed' | 'signature' | 'claims'
  | 'htm' | 'htu' | 'ath' | 'iat' | 'key_mismatch' | 'replayed';

/** A proof that failed one of the checks of RFC 9449 section 4.3. */
export class ProofError extends Error {
  readonly problem: ProofProblem;

  constructor(problem: ProofProblem) {
    super(`DPoP proof refused: ${problem}`);
    this.problem = problem;
  }
}

/** The result of a verified proof: the key's thumbprint, and the `jti` and `iat` for the replay cache. */
export interface VerifiedProof {
  jkt: string;
  jti: string;
  iat: number;
}

/** The values a proof must match. */
export interface ProofExpectations {
  /** The request method; `GET` for a WebSocket handshake. */
  htm: string;
  /** The target URI in `https://` form, as `normalizedHtu` returns it. */
  htu: string;
  /** The access token the proof accompanies; the proof's `ath` is its SHA-256 hash. */
  accessToken: string;
  algorithms: readonly string[];
  /** Oldest accepted `iat`, and newest, in epoch seconds. */
  notBefore: number;
  notAfter: number;
}

/** Maximum proof length before parsing. A proof with an RSA-4096 key in its header is about 2,000 characters. */
export const maxProofLength = 8192;

const maxJtiLength = 256;
const privateMembers = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

// Importing a JWK costs more than verifying the signature with it (about 400 µs against 250 µs of
// CPU for ES256 on the development machine), and a device signs every proof with the same key. So
// imported keys are kept, by algorithm and thumbprint, which together fix the key exactly.
const importedKeys = new Map<string, CryptoKey>();
const maxImportedKeys = 10_000;

/**
 * Returns the public key of a proof's `jwk` header, as jose's `EmbeddedJWK` does, and its thumbprint.
 * A `jwk` with private members, or one that is not an asymmetric public key, is rejected.
 */
async function embeddedPublicKey(header: JWSHeaderParameters): Promise<{ key: CryptoKey; jkt: string }> {
  const jwk = header.jwk;
  if (jwk === null || typeof jwk !== 'object' || Array.isArray(jwk) || privateMembers.some((member) => member in jwk)) {
    throw new ProofError('signature');
  }

  const jkt = await calculateJwkThumbprint(jwk, 'sha256');
  const cacheKey = `${header.alg} ${jkt}`;
  const cached = importedKeys.get(cacheKey);
  if (cached) {
    return { key: cached, jkt };
  }

  const key = await importJWK(jwk, header.alg);
  if (key instanceof Uint8Array || key.type !== 'public') {
    throw new ProofError('signature');
  }
  if (importedKeys.size >= maxImportedKeys) {
    importedKeys.delete(importedKeys.keys().next().value!);
  }
  importedKeys.set(cacheKey, key);
  return { key, jkt };
}
const compactJwsPattern = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

// An absolute http(s) URI in RFC 3986 syntax: `//` after the scheme, no userinfo, no white space,
// control characters or backslashes, and a port without leading zeros. The WHATWG parser below
// would repair all of these, and RFC 9449 section 4.3 compares after RFC 3986 normalization only.
const htuPattern = /^https?:\/\/(\[[0-9a-f:.]+\]|[^\s\x00-\x1f\x7f\\/?#@:[\]]+)(:[1-9][0-9]{0,4})?(\/[^\s\x00-\x1f\x7f\\?#]*)?(\?[^\s\x00-\x1f\x7f\\#]*)?(#[^\s\x00-\x1f\x7f\\]*)?$/i;
const dotSegment = /\/\.\.?(\/|$)/;

/**
 * Returns a URL as compared for `htu`: parsed and printed again, without query or fragment. Returns
 * null for a value that is not an absolute http(s) URI in RFC 3986 syntax, or has dot segments.
 */
export function normalizedHtu(value: unknown): string | null {
  if (typeof value !== 'string' || !htuPattern.test(value)) {
    return null;
  }
  if (dotSegment.test(value.replace(/[?#].*$/s, ''))) {
    return null;
  }
  const url = URL.parse(value);
  if (!url) {
    return null;
  }
  url.search = '';
  url.hash = '';
  return url.href;
}

/** Computes the `ath` claim for an access token: base64url of the SHA-256 of its ASCII bytes. */
export function accessTokenHash(accessToken: string): string {
  return crypto.hash('sha256', accessToken, 'base64url');
}

/**
 * Verifies one DPoP proof JWT: `typ: dpop+jwt`, an allowed asymmetric `alg`, a signature by the
 * public `jwk` of its own header, and the `jti`, `htm`, `htu`, `ath` and `iat` claims. Returns the
 * key's thumbprint; the caller compares it with the token's `cnf.jkt` and checks replay.
 */
export async function verifyProof(proof: string, expected: ProofExpectations): Promise<VerifiedProof> {
  if (proof.length > maxProofLength || !compactJwsPattern.test(proof)) {
    throw new ProofError('malformed');
  }

  let verified: Awaited<ReturnType<typeof jwtVerify>>;
  let jkt = '';
  try {
    // jose rejects `none` and any `alg` outside the list before it calls this key resolver.
    verified = await jwtVerify(proof, async (header) => {
      const embedded = await embeddedPublicKey(header);
      jkt = embedded.jkt;
      return embedded.key;
    }, { typ: 'dpop+jwt', algorithms: [...expected.algorithms] });
  } catch {
    throw new ProofError('signature');
  }

  const { payload } = verified;
  const { jti, htm, iat } = payload as { jti?: unknown; htm?: unknown; iat?: unknown };
  if (typeof jti !== 'string' || jti === '' || jti.length > maxJtiLength || typeof iat !== 'number') {
    throw new ProofError('claims');
  }
  if (htm !== expected.htm) {
    throw new ProofError('htm');
  }
  if (normalizedHtu(payload.htu) !== expected.htu) {
    throw new ProofError('htu');
  }
  if (!hashesEqual(payload.ath, accessTokenHash(expected.accessToken))) {
    throw new ProofError('ath');
  }
  if (iat < expected.notBefore || iat > expected.notAfter) {
    throw new ProofError('iat');
  }

  return { jkt, jti, iat };
}

/** Compares two base64url strings in constant time. */
export function hashesEqual(presented: unknown, expected: string): boolean {
  if (typeof presented !== 'string' || presented.length !== expected.length) {
    return false;
  }
  return crypto.timingSafeEqual(Buffer.from(presented), Buffer.from(expected));
}
