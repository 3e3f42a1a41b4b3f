// DPoP proofs made in the tests with jose alone, independent of the device SDK, so that a mistake
// shared by the SDK and the gateway cannot hide.
import crypto from 'node:crypto';

import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';

import { rememberSecret } from './capture.ts';
import type { TestServer } from './server.ts';

/** A DPoP key pair of a test client and its thumbprint. */
export interface ProofKey {
  privateKey: CryptoKey;
  publicJwk: JWK;
  jkt: string;
  alg: string;
}

/** Claims of one proof; any field given here replaces the correct value. */
export interface ProofClaims {
  htm?: string;
  htu?: string;
  iat?: number;
  jti?: string;
  ath?: string | null;
  nonce?: string;
}

/** Generates a key pair for DPoP proofs, ES256 by default. */
export async function generateProofKey(alg = 'ES256'): Promise<ProofKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = await exportJWK(publicKey);
  return { privateKey, publicJwk, jkt: await calculateJwkThumbprint(publicJwk, 'sha256'), alg };
}

/** Computes the `ath` of an access token. */
export function athOf(accessToken: string): string {
  return crypto.hash('sha256', accessToken, 'base64url');
}

/** Signs a proof. `header` replaces parts of the protected header, such as `typ` or `jwk`. */
export async function makeProof(key: ProofKey, claims: ProofClaims & { htm: string; htu: string }, header: Record<string, unknown> = {}): Promise<string> {
  const payload: Record<string, unknown> = {
    jti: claims.jti ?? crypto.randomUUID(),
    htm: claims.htm,
    htu: claims.htu,
    iat: claims.iat ?? Math.floor(Date.now() / 1000),
  };
  if (claims.ath) {
    payload.ath = claims.ath;
  }
  if (claims.nonce) {
    payload.nonce = claims.nonce;
  }
  return new SignJWT(payload).setProtectedHeader({ typ: 'dpop+jwt', alg: key.alg, jwk: key.publicJwk, ...header }).sign(key.privateKey);
}

/** Signs a proof for the WebSocket handshake of `accessToken` at `server`; `claims` override single claims. */
export function handshakeProof(server: TestServer, key: ProofKey, accessToken: string, claims: ProofClaims = {}): Promise<string> {
  return makeProof(key, { htm: 'GET', htu: `${server.url}/ws`, ...claims, ath: claims.ath === undefined ? athOf(accessToken) : claims.ath ?? undefined });
}

/** A token endpoint response, with the nonce the server asked for. */
export interface DpopTokenResponse {
  status: number;
  body: Record<string, unknown>;
  /** Number of requests sent: 2 when the first got `use_dpop_nonce`. */
  requests: number;
}

/**
 * Posts a form to `/oauth/token` with a DPoP proof by `key`. The auth server requires a nonce, so
 * the first request gets `use_dpop_nonce` and the second carries the nonce it named.
 */
export async function dpopTokenRequest(server: TestServer, key: ProofKey, form: Record<string, string>, headers: Record<string, string> = {}): Promise<DpopTokenResponse> {
  const htu = `${server.url}/oauth/token`;
  let nonce: string | undefined;
  for (let requests = 1; ; requests += 1) {
    const response = await server.fetch(htu, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: await makeProof(key, { htm: 'POST', htu, nonce }), ...headers },
      body: new URLSearchParams(form).toString(),
    });
    const body = await response.json() as Record<string, unknown>;
    rememberSecret(typeof body.access_token === 'string' ? body.access_token : null);
    rememberSecret(typeof body.refresh_token === 'string' ? body.refresh_token : null);
    const next = response.headers.get('dpop-nonce');
    if (body.error === 'use_dpop_nonce' && next && requests < 2) {
      nonce = next;
      continue;
    }
    return { status: response.status, body, requests };
  }
}

/** Builds the Basic `Authorization` header of a device with a client secret. */
export function basicAuthorization(device: { client_id: string; client_secret: string }): Record<string, string> {
  const pair = `${encodeURIComponent(device.client_id)}:${encodeURIComponent(device.client_secret)}`;
  return { authorization: `Basic ${Buffer.from(pair).toString('base64')}` };
}

/** Gets a DPoP-bound client-credentials token for a device with a client secret. */
export async function dpopDeviceToken(server: TestServer, device: { client_id: string; client_secret: string }, key: ProofKey): Promise<string> {
  const response = await dpopTokenRequest(server, key, { grant_type: 'client_credentials' }, basicAuthorization(device));
  if (typeof response.body.access_token !== 'string') {
    throw new Error(`DPoP token request failed with status ${response.status}: ${String(response.body.error)}`);
  }
  return response.body.access_token;
}
