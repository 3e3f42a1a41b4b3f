// DPoP proofs (RFC 9449) on the client side of the benchmark: the key a device keeps, and the
// proofs it signs for the token request and for every handshake.
import crypto from 'node:crypto';

import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, SignJWT, type CryptoKey, type JWK } from 'jose';

/** The JWKs of a device's DPoP key, in a form that passes over IPC to the load process. */
export interface ProofKeyPair {
  privateJwk: JWK;
  publicJwk: JWK;
  /** RFC 7638 SHA-256 thumbprint of `publicJwk`: the `cnf.jkt` of the tokens bound to this key. */
  jkt: string;
}

/** A proof key ready to sign. */
export interface ProofSigner {
  privateKey: CryptoKey;
  publicJwk: JWK;
}

/** Claims of one proof. `ath` and `nonce` are left out when absent. */
export interface ProofClaims {
  htm: string;
  htu: string;
  ath?: string;
  nonce?: string;
}

/** Generates an ES256 key pair for DPoP proofs, exportable so that the load process can import it. */
export async function generateProofKeyPair(): Promise<ProofKeyPair> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const publicJwk = await exportJWK(publicKey);
  return { privateJwk: await exportJWK(privateKey), publicJwk, jkt: await calculateJwkThumbprint(publicJwk, 'sha256') };
}

/** Imports the private key of `pair` for signing. */
export async function importProofSigner(pair: ProofKeyPair): Promise<ProofSigner> {
  return { privateKey: await importJWK(pair.privateJwk, 'ES256') as CryptoKey, publicJwk: pair.publicJwk };
}

/** Returns the `ath` claim for an access token: base64url of the SHA-256 of its ASCII bytes. */
export function accessTokenHash(accessToken: string): string {
  return crypto.hash('sha256', accessToken, 'base64url');
}

/** Signs a new proof with a fresh `jti` and `iat` of now, as every request needs. */
export function signProof(signer: ProofSigner, claims: ProofClaims): Promise<string> {
  const payload: Record<string, unknown> = {
    jti: crypto.randomUUID(),
    htm: claims.htm,
    htu: claims.htu,
    iat: Math.floor(Date.now() / 1000),
  };
  if (claims.ath !== undefined) {
    payload.ath = claims.ath;
  }
  if (claims.nonce !== undefined) {
    payload.nonce = claims.nonce;
  }
  return new SignJWT(payload).setProtectedHeader({ typ: 'dpop+jwt', alg: 'ES256', jwk: signer.publicJwk }).sign(signer.privateKey);
}

/**
 * Returns the `htu` of a WebSocket handshake to the benchmark server on `port`: the `https://` form
 * of its `wss://` URL (RFC 6455 section 3), on the host of the public URL, `localhost`.
 */
export function handshakeHtu(port: number): string {
  return `https://localhost:${port}/ws`;
}
