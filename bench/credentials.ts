// The TLS certificate that every server uses, and the tokens of the ws+jose and socket.io peers.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';

import { loadTlsMaterial } from '../src/tls/dev-ca.ts';
import { peerTokenAudience, peerTokenIssuer } from './config.ts';

/** Files of the shared certificate, and the CA PEM that clients trust. */
export interface BenchTls {
  certFile: string;
  keyFile: string;
  caFile: string;
  caPem: string;
}

/**
 * Creates a development CA and a certificate for localhost, 127.0.0.1 and ::1 under `directory`
 * with Portcullis's own generator, so that all four servers present the same certificate.
 */
export async function createBenchTls(directory: string): Promise<BenchTls> {
  await loadTlsMaterial({ dataDir: directory, certFile: null, keyFile: null });
  const caFile = path.join(directory, 'ca.pem');
  return {
    certFile: path.join(directory, 'tls/server.pem'),
    keyFile: path.join(directory, 'tls/server-key.pem'),
    caFile,
    caPem: fs.readFileSync(caFile, 'utf8'),
  };
}

/** The ES256 key pair behind the peers' tokens. */
export interface PeerTokenKeys {
  privateKey: CryptoKey;
  publicJwk: JWK;
}

/** Creates the key pair that signs the peers' tokens. */
export async function createPeerTokenKeys(): Promise<PeerTokenKeys> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  return { privateKey, publicJwk: await exportJWK(publicKey) };
}

/**
 * Signs an access token for the peers, shaped like Portcullis's client-credentials tokens
 * (RFC 9068 `at+jwt`, ES256), so that both sides verify a comparable token. With `jkt`, the token is
 * DPoP-bound to the key of that thumbprint (`cnf.jkt`, RFC 9449 section 6.1), as Portcullis's are.
 */
export async function signPeerToken(keys: PeerTokenKeys, subject: string, clientId: string, options: { lifetimeSeconds?: number; jkt?: string } = {}): Promise<string> {
  const { lifetimeSeconds = 3_600, jkt } = options;
  return new SignJWT({ client_id: clientId, scope: 'bench', ...(jkt === undefined ? {} : { cnf: { jkt } }) })
    .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'bench' })
    .setIssuer(peerTokenIssuer)
    .setAudience(peerTokenAudience)
    .setSubject(subject)
    .setJti(crypto.randomUUID())
    .setIssuedAt()
    .setExpirationTime(`${lifetimeSeconds}s`)
    .sign(keys.privateKey);
}
