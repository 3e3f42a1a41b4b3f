// DPoP (RFC 9449) for the device SDK: the key that tokens are bound to, the proofs signed with it,
// and the server nonces the proofs must carry.
import crypto, { KeyObject } from 'node:crypto';

import { calculateJwkThumbprint, compactVerify, exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from 'jose';

import { PortcullisClientError } from './policy.ts';

/** Proof algorithms the Portcullis auth server and gateway accept; asymmetric only. */
export const dpopAlgorithms = ['ES256', 'ES384', 'EdDSA', 'Ed25519', 'PS256', 'RS256'] as const;

/**
 * A DPoP key pair supplied by the caller. `privateKey` is used as is, so it may be a non-extractable
 * CryptoKey or a KeyObject backed by a secure element. `alg` defaults to ES256 for P-256, ES384 for
 * P-384, EdDSA for Ed25519 and PS256 for RSA.
 */
export interface DpopKeyPair {
  privateKey: CryptoKey | KeyObject;
  /** The public key; only its public members (`kty`, `crv`, `x`, `y`, `n`, `e`) go into proofs. */
  publicJwk: JWK;
  alg?: string;
}

/** The `dpop` option: `true` for a key the SDK generates and keeps in memory, or a caller's key pair. */
export type DpopOption = true | DpopKeyPair;

/** The request a proof is made for (RFC 9449 section 4.2). */
export interface ProofTarget {
  /** HTTP method: `POST` for the token endpoint, `GET` for the WebSocket handshake. */
  htm: 'GET' | 'POST';
  /** Request URL; a `wss://` or `ws://` URL is turned into its `https://` or `http://` form. */
  url: string;
  /** Access token the proof goes with; its hash becomes the `ath` claim. */
  accessToken?: string;
  /** Server nonce for the `nonce` claim. */
  nonce?: string;
}

/** A key ready to sign proofs. */
interface SigningKey {
  privateKey: CryptoKey | KeyObject;
  alg: string;
  publicJwk: JWK;
  thumbprint: string;
}

const publicMembers = ['kty', 'crv', 'x', 'y', 'n', 'e'] as const;

function defaultAlgorithm(jwk: JWK): string | undefined {
  if (jwk.kty === 'EC') {
    return { 'P-256': 'ES256', 'P-384': 'ES384' }[jwk.crv ?? ''];
  }
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') {
    return 'EdDSA';
  }
  return jwk.kty === 'RSA' ? 'PS256' : undefined;
}

function invalidKey(message: string): PortcullisClientError {
  return new PortcullisClientError('invalid_dpop_key', message, false);
}

/**
 * Generates a DPoP key pair with WebCrypto. The private key is non-extractable unless `extractable`
 * is true, which a caller needs only to persist the key (for example with jose's `exportJWK`) next
 * to a refresh token bound to it.
 */
export async function generateDpopKey(options: { alg?: string; extractable?: boolean } = {}): Promise<Required<DpopKeyPair>> {
  const alg = options.alg ?? 'ES256';
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: options.extractable ?? false });
  return { privateKey, publicJwk: await exportJWK(publicKey), alg };
}

/** Returns the `htu` claim of a request: the URL without query and fragment, a WebSocket URL in its HTTP form. */
export function proofUrl(url: string): string {
  const parsed = new URL(url);
  if (parsed.protocol === 'wss:') {
    parsed.protocol = 'https:';
  } else if (parsed.protocol === 'ws:') {
    parsed.protocol = 'http:';
  }
  return `${parsed.origin}${parsed.pathname}`;
}

/** Computes the `ath` claim: base64url of the SHA-256 of the access token's ASCII bytes. */
export function accessTokenHash(accessToken: string): string {
  return crypto.createHash('sha256').update(accessToken, 'ascii').digest('base64url');
}

// Signs one proof and verifies it with the public JWK, so a key pair whose halves do not match, or
// an algorithm that does not fit the key, fails here with a clear code instead of at the server.
async function checkKeyPair(key: Omit<SigningKey, 'thumbprint'>): Promise<void> {
  let verified = false;
  try {
    const proof = await new SignJWT({ htm: 'GET', htu: 'https://key-check.invalid/' }).setProtectedHeader({ alg: key.alg, typ: 'dpop+jwt', jwk: key.publicJwk }).sign(key.privateKey);
    await compactVerify(proof, await importJWK(key.publicJwk, key.alg));
    verified = true;
  } catch {
    verified = false;
  }

  if (!verified) {
    throw invalidKey(`dpop.privateKey does not sign ${key.alg} proofs that dpop.publicJwk verifies; pass a matching key pair and alg.`);
  }
}

async function resolveKey(option: DpopOption): Promise<SigningKey> {
  const pair = option === true ? await generateDpopKey() : option;
  const publicJwk: JWK = Object.fromEntries(publicMembers.filter((name) => pair.publicJwk[name] !== undefined).map((name) => [name, pair.publicJwk[name]]));
  const alg = pair.alg ?? defaultAlgorithm(publicJwk);
  if (!alg || !(dpopAlgorithms as readonly string[]).includes(alg)) {
    throw invalidKey(`dpop.alg must be one of ${dpopAlgorithms.join(', ')}, got ${JSON.stringify(alg ?? null)} for a ${publicJwk.kty ?? 'typeless'} key.`);
  }

  const key = { privateKey: pair.privateKey, alg, publicJwk };
  await checkKeyPair(key);
  return { ...key, thumbprint: await calculateJwkThumbprint(publicJwk, 'sha256') };
}

/**
 * Signs DPoP proofs with one key for the lifetime of a client, so every token it receives is bound
 * to the same key. The key is resolved (generated or checked) once, on first use.
 */
export class DpopSigner {
  private readonly option: DpopOption;
  private key: Promise<SigningKey> | null = null;

  constructor(option: DpopOption) {
    this.option = option;
  }

  /** Returns the key's JWK SHA-256 thumbprint (RFC 7638), which a bound token carries as `cnf.jkt`. */
  async thumbprint(): Promise<string> {
    return (await this.signingKey()).thumbprint;
  }

  /** Signs a proof for one request, with a fresh `jti` and the current time as `iat`. */
  async proof(target: ProofTarget): Promise<string> {
    const key = await this.signingKey();
    const claims: Record<string, string> = { htm: target.htm, htu: proofUrl(target.url), jti: crypto.randomBytes(16).toString('base64url') };
    if (target.accessToken !== undefined) {
      claims.ath = accessTokenHash(target.accessToken);
    }
    if (target.nonce !== undefined) {
      claims.nonce = target.nonce;
    }
    return new SignJWT(claims).setProtectedHeader({ typ: 'dpop+jwt', alg: key.alg, jwk: key.publicJwk }).setIssuedAt().sign(key.privateKey);
  }

  private signingKey(): Promise<SigningKey> {
    if (!this.key) {
      this.key = resolveKey(this.option);
    }
    return this.key;
  }
}

// RFC 9449 section 8.1: a nonce is one or more NQCHAR (printable ASCII except `"` and `\`). The
// length cap keeps a faulty server from growing every later proof.
const validNonce = /^[\x21\x23-\x5B\x5D-\x7E]{1,1024}$/;
const maxOrigins = 16;

/** The last `DPoP-Nonce` each origin sent, for the `nonce` claim of the next proof to it. */
export class NonceCache {
  private readonly byOrigin = new Map<string, string>();

  /** Returns the nonce last seen from the origin of `url`, if any. */
  get(url: string): string | undefined {
    return this.byOrigin.get(new URL(proofUrl(url)).origin);
  }

  /** Keeps the response's `DPoP-Nonce` for the origin of `url`; returns true when it is new. */
  remember(url: string, nonce: string | string[] | null | undefined): boolean {
    if (typeof nonce !== 'string' || !validNonce.test(nonce)) {
      return false;
    }

    const origin = new URL(proofUrl(url)).origin;
    const previous = this.byOrigin.get(origin);
    this.byOrigin.delete(origin);
    if (this.byOrigin.size >= maxOrigins) {
      this.byOrigin.delete(this.byOrigin.keys().next().value!);
    }
    this.byOrigin.set(origin, nonce);
    return previous !== nonce;
  }
}
