// Certificates for the mutual-TLS tests: a test CA, device certificates it signs, and self-signed
// device certificates, made with @peculiar/x509 as the development CA is.
import 'reflect-metadata';

import crypto, { webcrypto } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import * as x509 from '@peculiar/x509';

import { rememberSecret } from './capture.ts';

x509.cryptoProvider.set(webcrypto as Crypto);

/** A certificate with its private key, as PEM, and the files they were written to. */
export interface CertificateFiles {
  certPem: string;
  keyPem: string;
  certFile: string;
  keyFile: string;
  /** `x5t#S256`: base64url SHA-256 of the DER certificate. */
  thumbprint: string;
}

/** A test CA that can sign device certificates. */
export interface TestCa extends CertificateFiles {
  signingKey: CryptoKey;
  name: string;
}

const keyAlgorithm = { name: 'ECDSA', namedCurve: 'P-256' };
const signingAlgorithm = { name: 'ECDSA', hash: 'SHA-256' };
const dayMs = 86_400_000;

/** Validity of a test certificate; default from an hour ago to 30 days ahead. */
export interface Validity {
  notBefore?: Date;
  notAfter?: Date;
}

async function generateKeys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(keyAlgorithm, true, ['sign', 'verify'])) as CryptoKeyPair;
}

async function writePair(directory: string, name: string, cert: x509.X509Certificate, privateKey: CryptoKey): Promise<CertificateFiles> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', privateKey));
  const keyPem = crypto.createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }).export({ type: 'pkcs8', format: 'pem' }) as string;
  // The key reaches no log; remembering each base64 line lets the log hygiene check prove it.
  keyPem.split('\n').filter((line) => !line.startsWith('-----')).forEach((line) => rememberSecret(line.trim()));
  const certPem = cert.toString('pem');
  // Two certificates may share a subject, so each pair gets files of its own.
  const stem = `${name.replace(/\W+/g, '-')}-${crypto.randomBytes(4).toString('hex')}`;
  const certFile = path.join(directory, `${stem}.pem`);
  const keyFile = path.join(directory, `${stem}-key.pem`);
  fs.writeFileSync(certFile, certPem);
  fs.writeFileSync(keyFile, keyPem, { mode: 0o600 });
  return { certPem, keyPem, certFile, keyFile, thumbprint: crypto.hash('sha256', Buffer.from(cert.rawData), 'base64url') };
}

function serial(): string {
  return crypto.randomBytes(8).toString('hex');
}

function period(validity: Validity): { notBefore: Date; notAfter: Date } {
  const now = Date.now();
  return { notBefore: validity.notBefore ?? new Date(now - 3_600_000), notAfter: validity.notAfter ?? new Date(now + 30 * dayMs) };
}

/** Creates a CA certificate named `CN=<commonName>` in `directory`. */
export async function createTestCa(directory: string, commonName: string): Promise<TestCa> {
  const keys = await generateKeys();
  const name = `CN=${commonName}`;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name,
    ...period({}),
    keys,
    signingAlgorithm,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ],
  });
  return { ...await writePair(directory, commonName, cert, keys.privateKey), signingKey: keys.privateKey, name };
}

const clientExtensions = [
  new x509.BasicConstraintsExtension(false, undefined, true),
  new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
  new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
];

/** Issues a client certificate with subject `CN=<commonName>` signed by `ca`. */
export async function issueDeviceCertificate(directory: string, ca: TestCa, commonName: string, validity: Validity = {}): Promise<CertificateFiles> {
  const keys = await generateKeys();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${commonName}`,
    issuer: ca.name,
    ...period(validity),
    publicKey: keys.publicKey,
    signingKey: ca.signingKey,
    signingAlgorithm,
    extensions: clientExtensions,
  });
  return writePair(directory, commonName, cert, keys.privateKey);
}

/** Creates a self-signed client certificate with subject `CN=<commonName>`. */
export async function selfSignedDeviceCertificate(directory: string, commonName: string, validity: Validity = {}): Promise<CertificateFiles> {
  const keys = await generateKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${commonName}`,
    ...period(validity),
    keys,
    signingAlgorithm,
    extensions: clientExtensions,
  });
  return writePair(directory, commonName, cert, keys.privateKey);
}
